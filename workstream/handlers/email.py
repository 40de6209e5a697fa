"""The `email_send` built-in handler: one plain-text email per job.

    {"to": "ann@example.com" | [...], "subject": "Hi", "body": "...", "cc"?: ..., "reply_to"?: ...}

With `SMTP_HOST` set the message goes to that server; without it, it is written as an
RFC 5322 file `<OUTBOX_DIR>/<job id>.eml`, so the README's examples work on a machine
with no mail server. Delivery is at-least-once, so both paths are built to repeat safely:
the message (Date and Message-ID included) depends only on the job, and a retried file
delivery replaces the same file.
"""

from __future__ import annotations

import contextlib
import email.policy
import os
import re
import smtplib
import ssl
import tempfile
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Any

from workstream.errors import ConfigError
from workstream.handlers import Handler
from workstream.jobs.limits import MAX_DOCUMENT_BYTES
from workstream.jobs.model import JobContext

MAX_RECIPIENTS = 100
MAX_SUBJECT_CHARS = 998
MAX_BODY_BYTES = MAX_DOCUMENT_BYTES
MAX_ADDRESS_CHARS = 320
SMTP_TIMEOUT = 30.0
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
_SAFE_JOB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,199}")


class EmailDeliveryError(Exception):
    """The SMTP server could not be reached or did not accept the message."""


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
    """Refuse line breaks and control characters: in a header they would start a new
    header (injection) or be folded unpredictably."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"{what} is not valid Unicode text") from None
    for ch in value:
        if ch in "\r\n":
            raise ValueError(f"{what} must not contain line breaks (CR or LF)")
        if ch != "\t" and unicodedata.category(ch) in ("Cc", "Zl", "Zp"):
            raise ValueError(f"{what} must not contain control characters")


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


def _safe_job_id(job: JobContext) -> str:
    # The id names a file: refuse anything that could step out of the outbox.
    if not _SAFE_JOB_ID.fullmatch(job.id):
        raise ValueError(f"job id {job.id!r} cannot name an outbox file")
    return job.id


def write_eml(outbox_dir: str, job: JobContext, msg: EmailMessage) -> str:
    """Write `<outbox_dir>/<job id>.eml` atomically: a temporary file in the same
    directory, fsync, rename. A crash leaves the old file or the new one, never half of
    one; a retry replaces the file, so each job has exactly one."""
    name = f"{_safe_job_id(job)}.eml"
    os.makedirs(outbox_dir, exist_ok=True)
    path = os.path.join(outbox_dir, name)
    data = msg.as_bytes(policy=email.policy.SMTP)
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=outbox_dir)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(outbox_dir)
    return path


def _fsync_dir(directory: str) -> None:
    """Make the rename itself durable; not possible everywhere (Windows), hence best effort."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)


def _smtp_reply(code: int, text: bytes | str) -> str:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return f"{code} {' '.join(text.split())}".strip()


def describe_smtp_error(exc: BaseException) -> str:
    """A one-line account of an SMTP failure for `last_error`."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        refused = "; ".join(
            f"{addr} ({_smtp_reply(code, text)})" for addr, (code, text) in exc.recipients.items()
        )
        return f"the server refused every recipient: {refused}"
    if isinstance(exc, smtplib.SMTPSenderRefused):
        reply = _smtp_reply(exc.smtp_code, exc.smtp_error)
        return f"the server refused the sender {exc.sender}: {reply}"
    if isinstance(exc, smtplib.SMTPAuthenticationError):
        return f"login refused: {_smtp_reply(exc.smtp_code, exc.smtp_error)}"
    if isinstance(exc, smtplib.SMTPResponseException):
        return f"the server answered {_smtp_reply(exc.smtp_code, exc.smtp_error)}"
    if isinstance(exc, TimeoutError):
        return f"no answer within {SMTP_TIMEOUT:g}s"
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def send_smtp(
    msg: EmailMessage,
    sender: str,
    recipients: list[str],
    *,
    host: str,
    port: int,
    user: str | None,
    password: str | None,
    starttls: bool,
) -> dict[str, Any]:
    """Hand the message to the SMTP server. Any failure raises EmailDeliveryError, its
    message free of the password. Returns the recipients the server refused, if only some."""
    try:
        with smtplib.SMTP(host, port, timeout=SMTP_TIMEOUT) as smtp:
            if starttls:
                smtp.starttls(context=ssl.create_default_context())
            if user:
                smtp.login(user, password or "")
            refused = smtp.send_message(msg, from_addr=sender, to_addrs=recipients)
    except (smtplib.SMTPException, OSError) as exc:
        reason = describe_smtp_error(exc)
        if password:
            reason = reason.replace(password, "***")
        raise EmailDeliveryError(f"SMTP delivery via {host}:{port} failed: {reason}") from None
    return refused


def make_email_handler(
    *,
    outbox_dir: str,
    smtp_host: str | None,
    smtp_port: int,
    smtp_user: str | None,
    smtp_password: str | None,
    smtp_from: str,
    smtp_starttls: bool,
) -> Handler:
    """The `email_send` handler configured from the SMTP_* settings. A bad SMTP_FROM is a
    start-up error (ConfigError), not a failure of every email job later."""
    try:
        sender = parse_address(smtp_from, "SMTP_FROM")
    except ValueError as exc:
        raise ConfigError(f"invalid SMTP_FROM = {smtp_from!r}: {exc}") from None

    def email_send(payload: Any, job: JobContext) -> dict[str, Any]:
        """Send (or write) the job's email; the result says how, and where."""
        request = parse_email_payload(payload)
        msg = build_message(request, job, sender)
        recipients = request.envelope_recipients
        message_id = msg["Message-ID"]
        if not smtp_host:
            path = write_eml(outbox_dir, job, msg)
            return {
                "delivery": "file",
                "message_id": message_id,
                "recipients": len(recipients),
                "path": path,
            }
        refused = send_smtp(
            msg,
            sender.addr_spec,
            recipients,
            host=smtp_host,
            port=smtp_port,
            user=smtp_user,
            password=smtp_password,
            starttls=smtp_starttls,
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
