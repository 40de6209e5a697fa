"""The `email_send` built-in handler: one plain-text email per job.

    {"to": "ann@example.com" | [...], "subject": "Hi", "body": "...", "cc"?: ..., "reply_to"?: ...}

With `SMTP_HOST` set the message goes to that server; without it, it is written as an
RFC 5322 file `<OUTBOX_DIR>/<job id>.eml`, so the README's examples work on a machine
with no mail server. Delivery is at-least-once, so both paths are built to repeat safely:
the message (Date and Message-ID included) depends only on the job, and a retried file
delivery replaces the same file.

Headers carry only what WorkStream set: line breaks, control characters and RFC 2047
encoded words (`=?utf-8?q?...?=`) are refused in the subject and in display names (some
Python releases decode an encoded word while writing the message, turning `=0D=0A` into a
real line break, hence a new header). As a second guard the serialized message is parsed
back, and it is sent only if it has exactly the headers that were set.

SMTP: with `smtp_tls` the connection is TLS from the start (SMTPS, usually port 465); with
`smtp_starttls` it is upgraded (usually port 587). A login without either is refused at
start (ConfigError) unless the server is on this machine (loopback): the password would
cross the network in clear text.

Results and errors name the outbox file only (`<job id>.eml`), never the server's path,
and a failure to write it is reported plainly (the OS error's detail goes to the log).
"""

from __future__ import annotations

import email.policy
import logging
import re
import ssl
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import format_datetime
from typing import Any

from workstream.errors import ConfigError
from workstream.handlers import Handler
from workstream.handlers.email_delivery import (
    EmailDeliveryError,
    check_smtp_security,
    send_smtp,
    write_eml,
)
from workstream.jobs.limits import MAX_DOCUMENT_BYTES
from workstream.jobs.model import JobContext

MAX_RECIPIENTS = 100
MAX_SUBJECT_CHARS = 998
MAX_BODY_BYTES = MAX_DOCUMENT_BYTES
MAX_ADDRESS_CHARS = 320
HANDLER_TIMEOUT = 60.0
_FIELDS = frozenset({"to", "subject", "body", "cc", "reply_to"})

# A dot-atom local part and a host name: strict enough to refuse typos and injection, loose
# enough for every address people actually use (no quoted local parts, no IDN: SMTPUTF8
# support cannot be assumed of the server).
_LOCAL = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_DOMAIN = rf"{_LABEL}(?:\.{_LABEL})*"
_ADDR_SPEC = re.compile(rf"{_LOCAL}@{_DOMAIN}")
# "Display Name <addr>" or a bare addr; the parts are checked separately below.
_NAME_ADDR = re.compile(r"(?P<name>[^<>]*?)\s*<(?P<addr>[^<>]*)>")
# An RFC 2047 encoded word `=?charset?q|b?text?=`, loosely: whatever any decoder might
# take for one (a charset with odd characters, text with spaces), so that none does.
_ENCODED_WORD = re.compile(r"=\?[^?]*\?[bBqQ]\?.*?\?=", re.DOTALL)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EmailRequest:
    """A validated `email_send` payload."""

    to: tuple[Address, ...]
    cc: tuple[Address, ...]
    reply_to: tuple[Address, ...]
    subject: str
    body: str

    @property
    def envelope_recipients(self) -> list[str]:
        """To and Cc, each address once: a duplicate would be delivered twice."""
        seen: dict[str, str] = {}
        for address in (*self.to, *self.cc):
            seen.setdefault(f"{address.username}@{address.domain.lower()}", address.addr_spec)
        return list(seen.values())


def _check_header_text(value: str, what: str) -> None:
    """Refuse line breaks, control characters and encoded words: in a header they could
    start a new header (injection) or be folded unpredictably."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"{what} is not valid Unicode text") from None
    for ch in value:
        if ch in "\r\n":
            raise ValueError(f"{what} must not contain line breaks (CR or LF)")
        if ch != "\t" and unicodedata.category(ch) in ("Cc", "Zl", "Zp"):
            raise ValueError(f"{what} must not contain control characters")
    if _ENCODED_WORD.search(value):
        raise ValueError(
            f"{what} must not contain RFC 2047 encoded words (=?...?=); send the text "
            "itself, WorkStream encodes it"
        )


def parse_address(value: Any, what: str) -> Address:
    """One address, bare (`ann@example.com`) or with a display name
    (`Ann Lee <ann@example.com>`); raises ValueError saying what is wrong."""
    if not isinstance(value, str):
        raise ValueError(f"{what} must be a string")
    _check_header_text(value, what)
    text = value.strip()
    if not text:
        raise ValueError(f"{what} must not be empty")
    if len(text) > MAX_ADDRESS_CHARS:
        raise ValueError(f"{what} is longer than {MAX_ADDRESS_CHARS} characters")
    match = _NAME_ADDR.fullmatch(text)
    if match:
        name, addr = match["name"].strip(), match["addr"].strip()
        if len(name) >= 2 and name[0] == name[-1] == '"':
            name = name[1:-1]
        if '"' in name or "\\" in name:
            raise ValueError(f"{what}: the display name must not contain quotes or backslashes")
    else:
        name, addr = "", text
    if addr.count("@") != 1 or not _ADDR_SPEC.fullmatch(addr):
        raise ValueError(f"{what}: {addr!r} is not a valid email address")
    try:
        return Address(display_name=name, addr_spec=addr)
    except (ValueError, IndexError) as exc:  # the email package's own parser disagrees
        raise ValueError(f"{what}: {addr!r} is not a valid email address ({exc})") from None


def _address_list(value: Any, field: str, *, required: bool) -> tuple[Address, ...]:
    if isinstance(value, str):
        return (parse_address(value, f"'{field}'"),)
    if not isinstance(value, list):
        raise ValueError(f"'{field}' must be an address or a list of addresses")
    if required and not value:
        raise ValueError(f"'{field}' must name at least one address")
    if len(value) > MAX_RECIPIENTS:
        raise ValueError(f"'{field}' has more than {MAX_RECIPIENTS} addresses")
    return tuple(parse_address(item, f"'{field}[{i}]'") for i, item in enumerate(value))


def parse_email_payload(payload: Any) -> EmailRequest:
    """Check an `email_send` payload and return it normalised; ValueError says why not."""
    if not isinstance(payload, dict):
        raise ValueError('expected an object like {"to": "...", "subject": "...", "body": "..."}')
    unknown = sorted(str(key) for key in payload if key not in _FIELDS)
    if unknown:
        raise ValueError(f"unknown field {unknown[0]!r} (allowed: {', '.join(sorted(_FIELDS))})")
    for field in ("to", "subject", "body"):
        if field not in payload:
            raise ValueError(f"'{field}' is required")
    to = _address_list(payload["to"], "to", required=True)
    cc = _address_list(payload.get("cc", []), "cc", required=False)
    reply_to = _address_list(payload.get("reply_to", []), "reply_to", required=False)
    if len(to) + len(cc) > MAX_RECIPIENTS:
        raise ValueError(f"more than {MAX_RECIPIENTS} recipients in 'to' and 'cc'")
    subject, body = payload["subject"], payload["body"]
    if not isinstance(subject, str):
        raise ValueError("'subject' must be a string")
    _check_header_text(subject, "'subject'")
    if len(subject) > MAX_SUBJECT_CHARS:
        raise ValueError(f"'subject' is longer than {MAX_SUBJECT_CHARS} characters")
    if not isinstance(body, str):
        raise ValueError("'body' must be a string")
    try:
        body_bytes = len(body.encode("utf-8"))
    except UnicodeEncodeError:
        raise ValueError("'body' is not valid Unicode text") from None
    if body_bytes > MAX_BODY_BYTES:
        raise ValueError(f"'body' is larger than {MAX_BODY_BYTES} bytes (1 MiB) as UTF-8")
    return EmailRequest(to, cc, reply_to, subject, body)


def validate_email_payload(payload: Any) -> None:
    """Refuse at submission a payload that could never be sent."""
    parse_email_payload(payload)


def message_id_for(job: JobContext, sender: Address) -> str:
    """The same id on every attempt, so receivers and mail clients can spot a re-send."""
    return f"<{job.id}@{sender.domain or 'workstream'}>"


def build_message(request: EmailRequest, job: JobContext, sender: Address) -> EmailMessage:
    """The RFC 5322 message for one job. Date is the job's creation time, not the attempt's:
    a retry builds exactly the same message."""
    msg = EmailMessage(policy=email.policy.SMTP)
    msg["Date"] = format_datetime(datetime.fromtimestamp(job.created_at, UTC))
    msg["Message-ID"] = message_id_for(job, sender)
    msg["From"] = sender
    msg["To"] = request.to
    if request.cc:
        msg["Cc"] = request.cc
    if request.reply_to:
        msg["Reply-To"] = request.reply_to
    msg["Subject"] = request.subject
    msg.set_content(request.body, subtype="plain", charset="utf-8")
    return msg


def serialize(msg: EmailMessage) -> bytes:
    """The message as it is delivered (CRLF line ends), once it is certain to carry
    exactly the headers that were set: parsed back, a header more (or fewer) means some
    value broke out of its header, and nothing is sent."""
    data = msg.as_bytes(policy=email.policy.SMTP)
    parsed = BytesParser(policy=email.policy.SMTP).parsebytes(data, headersonly=True)
    expected = sorted(name.lower() for name in msg)
    found = sorted(name.lower() for name in parsed)
    if found != expected:
        log.error(
            "email_send: the serialized message has headers %s, not %s; not sent",
            found,
            expected,
            extra={"event": "email_header_injection"},
        )
        raise EmailDeliveryError(
            "refused to send: a header value broke out into other headers when the "
            "message was written"
        )
    return data


def make_email_handler(
    *,
    outbox_dir: str,
    smtp_host: str | None,
    smtp_port: int,
    smtp_user: str | None,
    smtp_password: str | None,
    smtp_from: str,
    smtp_starttls: bool,
    smtp_tls: bool = False,
    tls_context: ssl.SSLContext | None = None,
) -> Handler:
    """The `email_send` handler configured from the SMTP_* settings. A bad SMTP_FROM, or a
    login that would go unencrypted to another machine, is a start-up error
    (ConfigError), not a failure of every email job later. `tls_context` replaces the
    system's trust store (for tests)."""
    try:
        sender = parse_address(smtp_from, "SMTP_FROM")
    except ValueError as exc:
        raise ConfigError(f"invalid SMTP_FROM = {smtp_from!r}: {exc}") from None
    check_smtp_security(smtp_host, smtp_user, smtp_starttls, smtp_tls)
    if smtp_host and (smtp_tls or smtp_starttls) and tls_context is None:
        tls_context = ssl.create_default_context()

    def email_send(payload: Any, job: JobContext) -> dict[str, Any]:
        """Send (or write) the job's email; the result says how, and under which name."""
        request = parse_email_payload(payload)
        msg = build_message(request, job, sender)
        data = serialize(msg)
        recipients = request.envelope_recipients
        message_id = msg["Message-ID"]
        if not smtp_host:
            return {
                "delivery": "file",
                "message_id": message_id,
                "recipients": len(recipients),
                "file": write_eml(outbox_dir, job, data),
            }
        refused = send_smtp(
            data,
            sender.addr_spec,
            recipients,
            host=smtp_host,
            port=smtp_port,
            user=smtp_user,
            password=smtp_password,
            starttls=smtp_starttls,
            tls=smtp_tls,
            tls_context=tls_context,
        )
        result: dict[str, Any] = {
            "delivery": "smtp",
            "message_id": message_id,
            "recipients": len(recipients) - len(refused),
        }
        if refused:
            # Some were accepted: failing now would make the retry send them a second copy.
            result["refused"] = sorted(refused)
        return result

    return Handler(
        "email_send", email_send, timeout=HANDLER_TIMEOUT, validate=validate_email_payload
    )
