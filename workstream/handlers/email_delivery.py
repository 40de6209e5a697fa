"""How `email_send` delivers a message: an `.eml` file in the outbox, or SMTP.

Both are built to repeat safely (delivery is at-least-once): a retried file delivery
replaces the same file, and the message itself depends only on the job. What is reported
back (the job's result or `last_error`, shown to every API client) names the outbox file
only, never the server's paths, and says plainly what went wrong; the OS error's detail
goes to the log. The password never appears in either.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import smtplib
import ssl
import tempfile
from collections.abc import Iterable
from typing import Any

from workstream.errors import ConfigError
from workstream.handlers.netguard import is_localhost_name, literal_address
from workstream.jobs.model import JobContext

SMTP_TIMEOUT = 30.0
_SAFE_JOB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,199}")

log = logging.getLogger(__name__)


class EmailDeliveryError(Exception):
    """The message could not be delivered (outbox or SMTP server), or was refused as unsafe
    to send."""


def _safe_job_id(job: JobContext) -> str:
    # The id names a file: refuse anything that could step out of the outbox.
    if not _SAFE_JOB_ID.fullmatch(job.id):
        raise ValueError(f"job id {job.id!r} cannot name an outbox file")
    return job.id


def write_eml(outbox_dir: str, job: JobContext, data: bytes) -> str:
    """Write `<outbox_dir>/<job id>.eml` atomically: a temporary file in the same
    directory, fsync, rename. A crash leaves the old file or the new one, never half of
    one; a retry replaces the file, so each job has exactly one. Returns the file name;
    an OS error (permissions, disk full) is logged and raised as EmailDeliveryError
    without the server's paths."""
    name = f"{_safe_job_id(job)}.eml"
    try:
        _write_atomically(outbox_dir, name, data)
    except OSError as exc:
        log.error(
            "email_send: cannot write %s in the outbox %s: %s",
            name,
            outbox_dir,
            exc,
            extra={"event": "outbox_write_failed", "job_id": job.id},
        )
        raise EmailDeliveryError(
            f"could not write the message to the outbox ({_os_error_text(exc)}; the "
            "server log has the detail)"
        ) from None
    return name


def remove_outbox_files(outbox_dir: str, job_ids: Iterable[str]) -> int:
    """Retention: remove `<outbox_dir>/<job id>.eml` of deleted jobs (those that have one);
    how many were removed. An id that cannot name an outbox file has none."""
    removed = 0
    for job_id in job_ids:
        if not _SAFE_JOB_ID.fullmatch(job_id):
            continue
        try:
            os.unlink(os.path.join(outbox_dir, f"{job_id}.eml"))
        except FileNotFoundError:
            continue
        except OSError as exc:
            log.warning(
                "cannot remove %s.eml from the outbox: %s",
                job_id,
                exc.strerror,
                extra={"event": "outbox_remove_failed", "job_id": job_id},
            )
            continue
        removed += 1
    return removed


def _os_error_text(exc: OSError) -> str:
    """A plain account of a file system error: no path, no errno number."""
    if isinstance(exc, PermissionError):
        return "permission denied"
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return "no space left"
    if exc.errno == errno.EROFS:
        return "read-only file system"
    if isinstance(exc, FileNotFoundError | NotADirectoryError):
        return "the outbox directory cannot be created"
    return "a file system error"


def _make_private_dirs(directory: str) -> None:
    """Create the outbox and its missing parents 0700: messages are for no other local user
    (existing directories are the operator's: left as they are)."""
    missing = []
    while directory and not os.path.isdir(directory):
        missing.append(directory)
        parent = os.path.dirname(directory)
        if parent == directory:
            break
        directory = parent
    for new in reversed(missing):
        with contextlib.suppress(FileExistsError):
            os.mkdir(new, 0o700)


def _write_atomically(outbox_dir: str, name: str, data: bytes) -> None:
    _make_private_dirs(outbox_dir)
    path = os.path.join(outbox_dir, name)
    # mkstemp creates the file 0600, and the rename keeps that mode: the .eml is private.
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
    if isinstance(exc, ssl.SSLError):
        return "the TLS connection failed"
    if isinstance(exc, OSError) and not isinstance(exc, smtplib.SMTPException):
        return "could not connect"
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def send_smtp(
    data: bytes,
    sender: str,
    recipients: list[str],
    *,
    host: str,
    port: int,
    user: str | None,
    password: str | None,
    starttls: bool,
    tls: bool = False,
    tls_context: ssl.SSLContext | None = None,
) -> dict[str, Any]:
    """Hand the message to the SMTP server, over TLS from the start (`tls`) or after
    STARTTLS (`starttls`). Any failure raises EmailDeliveryError, its message free of the
    password (the detail of a network error goes to the log). Returns the recipients the
    server refused, if only some."""
    context = tls_context
    if context is None and (tls or starttls):
        context = ssl.create_default_context()
    try:
        smtp_class = smtplib.SMTP_SSL if tls else smtplib.SMTP
        smtp_args: dict[str, Any] = {"context": context} if tls else {}
        with smtp_class(host, port, timeout=SMTP_TIMEOUT, **smtp_args) as smtp:
            if starttls and not tls:
                smtp.starttls(context=context)
            if user:
                smtp.login(user, password or "")
            refused = smtp.sendmail(sender, recipients, data)
    except (smtplib.SMTPException, OSError) as exc:
        reason = describe_smtp_error(exc)
        if password:
            reason = reason.replace(password, "***")
        if not isinstance(exc, smtplib.SMTPException):
            log.warning(
                "email_send: SMTP via %s:%s failed: %s",
                host,
                port,
                f"{type(exc).__name__}: {exc}",
                extra={"event": "smtp_failed"},
            )
        raise EmailDeliveryError(f"SMTP delivery via {host}:{port} failed: {reason}") from None
    return refused


def is_loopback_host(host: str) -> bool:
    """`localhost` (and names under it), or a loopback address in any spelling."""
    address = literal_address(host)
    return address.is_loopback if address is not None else is_localhost_name(host)


def check_smtp_security(host: str | None, user: str | None, starttls: bool, tls: bool) -> None:
    if tls and starttls:
        raise ConfigError(
            "invalid SMTP_TLS and SMTP_STARTTLS: both are true; SMTP_TLS=true is TLS from "
            "the start (port 465), SMTP_STARTTLS=true an upgrade after connecting (port "
            "587): choose one"
        )
    if host and user and not (tls or starttls) and not is_loopback_host(host):
        raise ConfigError(
            f"invalid SMTP_USER with SMTP_STARTTLS = false: the login to {host} would send "
            "the password in clear text; set SMTP_STARTTLS=true (or SMTP_TLS=true for "
            "port 465), or use an SMTP server on this machine"
        )
