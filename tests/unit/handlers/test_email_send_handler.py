"""email_send against a real SMTP server (aiosmtpd, on 127.0.0.1) and in file mode."""

from __future__ import annotations

import email
import email.policy
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from workstream.errors import ConfigError, InvalidPayload
from workstream.handlers import Handler, HandlerTable
from workstream.handlers.email import (
    MAX_BODY_BYTES,
    EmailDeliveryError,
    make_email_handler,
    validate_email_payload,
)
from workstream.jobs.model import JobContext

JOB_ID = "0b7d8c1e-6a43-4c55-9f5e-2d1b3c4a5e6f"
SENDER = "WorkStream <noreply@example.com>"
PASSWORD = "s3cret-pa55word"
REFUSED = "nobody@example.com"


def job(attempt: int = 1, job_id: str = JOB_ID) -> JobContext:
    return JobContext(job_id, "email_send", attempt, 3, 1_700_000_000.0)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Recorder:
    """aiosmtpd handler: keeps what arrives, refuses one recipient."""

    messages: list[Any] = field(default_factory=list)

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address == REFUSED:
            return "550 5.1.1 no such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(envelope)
        return "250 Message accepted"


@dataclass
class SmtpServer:
    port: int
    recorder: Recorder


def _start(recorder: Recorder, **kwargs: Any) -> tuple[Controller, int]:
    port = free_port()
    controller = Controller(recorder, hostname="127.0.0.1", port=port, **kwargs)
    controller.start()
    return controller, port


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    recorder = Recorder()
    controller, port = _start(recorder)
    try:
        yield SmtpServer(port, recorder)
    finally:
        controller.stop()


def _authenticator(server, session, envelope, mechanism, auth_data) -> AuthResult:
    ok = isinstance(auth_data, LoginPassword) and auth_data.password == b"right"
    return AuthResult(success=ok, handled=False)  # handled=False: aiosmtpd answers 535


@pytest.fixture
def smtp_server_with_auth() -> Iterator[SmtpServer]:
    recorder = Recorder()
    controller, port = _start(recorder, authenticator=_authenticator, auth_require_tls=False)
    try:
        yield SmtpServer(port, recorder)
    finally:
        controller.stop()


def smtp_handler(port: int, **overrides: Any) -> Handler:
    options: dict[str, Any] = {
        "outbox_dir": "unused",
        "smtp_host": "127.0.0.1",
        "smtp_port": port,
        "smtp_user": None,
        "smtp_password": None,
        "smtp_from": SENDER,
        "smtp_starttls": False,
    }
    options.update(overrides)
    return make_email_handler(**options)


def file_handler(outbox: Path) -> Handler:
    return make_email_handler(
        outbox_dir=str(outbox),
        smtp_host=None,
        smtp_port=25,
        smtp_user=None,
        smtp_password=None,
        smtp_from=SENDER,
        smtp_starttls=False,
    )


def _text() -> dict[str, str]:
    return {"subject": "s", "body": "b"}


PAYLOAD = {
    "to": ["Ann Lee <ann@example.com>", "bob@example.org"],
    "cc": "carol@example.net",
    "reply_to": "support@example.com",
    "subject": "Grüße from WorkStream",
    "body": "Hello Ann,\nyour report is ready: ünïcödé included.\n",
}


# -- SMTP delivery ------------------------------------------------------------------------


def test_smtp_delivers_the_message_with_its_headers(smtp_server: SmtpServer) -> None:
    result = smtp_handler(smtp_server.port).fn(PAYLOAD, job())

    assert result == {
        "delivery": "smtp",
        "message_id": f"<{JOB_ID}@example.com>",
        "recipients": 3,
    }
    [envelope] = smtp_server.recorder.messages
    assert envelope.mail_from == "noreply@example.com"
    assert envelope.rcpt_tos == ["ann@example.com", "bob@example.org", "carol@example.net"]
    msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
    assert msg["From"] == SENDER
    assert msg["To"] == "Ann Lee <ann@example.com>, bob@example.org"
    assert msg["Cc"] == "carol@example.net"
    assert msg["Reply-To"] == "support@example.com"
    assert msg["Subject"] == "Grüße from WorkStream"
    assert msg["Message-ID"] == f"<{JOB_ID}@example.com>"
    assert msg["Date"].datetime.timestamp() == 1_700_000_000.0
    assert msg.get_content_type() == "text/plain"
    assert msg.get_content_charset() == "utf-8"
    assert msg.get_content().replace("\r\n", "\n") == PAYLOAD["body"]


def test_smtp_sends_each_recipient_once(smtp_server: SmtpServer) -> None:
    payload = {"to": ["a@example.com", "a@EXAMPLE.com"], "cc": ["a@example.com"], **_text()}
    result = smtp_handler(smtp_server.port).fn(payload, job())

    assert result["recipients"] == 1
    assert smtp_server.recorder.messages[0].rcpt_tos == ["a@example.com"]


def test_smtp_all_recipients_refused_fails_the_attempt(smtp_server: SmtpServer) -> None:
    with pytest.raises(EmailDeliveryError, match="550") as caught:
        smtp_handler(smtp_server.port).fn({"to": REFUSED, **_text()}, job())

    assert REFUSED in str(caught.value)
    assert smtp_server.recorder.messages == []


def test_smtp_some_recipients_refused_completes_and_says_which(smtp_server: SmtpServer) -> None:
    payload = {"to": ["ann@example.com", REFUSED], **_text()}
    result = smtp_handler(smtp_server.port).fn(payload, job())

    assert result["recipients"] == 1
    assert result["refused"] == [REFUSED]
    assert smtp_server.recorder.messages[0].rcpt_tos == ["ann@example.com"]


def test_smtp_nothing_listening_fails_the_attempt() -> None:
    port = free_port()  # closed again: nothing listens there
    with pytest.raises(EmailDeliveryError, match=f"127.0.0.1:{port}"):
        smtp_handler(port).fn({"to": "ann@example.com", **_text()}, job())


def test_smtp_starttls_asked_of_a_server_without_it_fails(smtp_server: SmtpServer) -> None:
    handler = smtp_handler(smtp_server.port, smtp_starttls=True)
    with pytest.raises(EmailDeliveryError, match="STARTTLS"):
        handler.fn({"to": "ann@example.com", **_text()}, job())
    assert smtp_server.recorder.messages == []


def test_smtp_login_with_the_right_password(smtp_server_with_auth: SmtpServer) -> None:
    server = smtp_server_with_auth
    handler = smtp_handler(server.port, smtp_user="robot", smtp_password="right")
    assert handler.fn({"to": "ann@example.com", **_text()}, job())["delivery"] == "smtp"
    assert len(server.recorder.messages) == 1


def test_smtp_login_refused_fails_without_showing_the_password(
    smtp_server_with_auth: SmtpServer,
) -> None:
    server = smtp_server_with_auth
    handler = smtp_handler(server.port, smtp_user="robot", smtp_password=PASSWORD)
    with pytest.raises(EmailDeliveryError, match="535") as caught:
        handler.fn({"to": "ann@example.com", **_text()}, job())
    assert PASSWORD not in str(caught.value)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
    assert server.recorder.messages == []


# -- file delivery ------------------------------------------------------------------------


def test_file_mode_writes_a_parseable_eml_with_crlf(tmp_path: Path) -> None:
    outbox = tmp_path / "data" / "outbox"  # missing: the handler creates it
    result = file_handler(outbox).fn(PAYLOAD, job())

    path = outbox / f"{JOB_ID}.eml"
    assert result == {
        "delivery": "file",
        "message_id": f"<{JOB_ID}@example.com>",
        "recipients": 3,
        "file": f"{JOB_ID}.eml",
    }
    raw = path.read_bytes()
    assert b"\r\n" in raw
    assert raw.count(b"\n") == raw.count(b"\r\n")
    assert raw.count(b"\r") == raw.count(b"\r\n")
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert msg["Subject"] == PAYLOAD["subject"]
    assert msg["From"] == SENDER
    assert msg["To"] == "Ann Lee <ann@example.com>, bob@example.org"
    assert msg["Message-ID"] == result["message_id"]
    assert msg["Date"] is not None
    assert msg.get_content().replace("\r\n", "\n") == PAYLOAD["body"]
    assert os.listdir(outbox) == [f"{JOB_ID}.eml"]  # no temporary file left behind


def test_file_mode_keeps_the_outbox_and_its_files_private(tmp_path: Path) -> None:
    old = os.umask(0o022)  # the usual: files 0644 and directories 0755 unless asked
    try:
        outbox = tmp_path / "data" / "outbox"
        result = file_handler(outbox).fn(PAYLOAD, job())
    finally:
        os.umask(old)
    assert (outbox / result["file"]).stat().st_mode & 0o777 == 0o600
    assert outbox.stat().st_mode & 0o777 == 0o700
    assert (tmp_path / "data").stat().st_mode & 0o777 == 0o700


def test_file_mode_retry_rewrites_the_same_file(tmp_path: Path) -> None:
    handler = file_handler(tmp_path)
    first = handler.fn(PAYLOAD, job(attempt=1))
    content = (tmp_path / first["file"]).read_bytes()
    second = handler.fn(PAYLOAD, job(attempt=2))

    assert second == first
    assert (tmp_path / second["file"]).read_bytes() == content
    assert os.listdir(tmp_path) == [f"{JOB_ID}.eml"]


def test_file_mode_refuses_a_job_id_that_is_not_a_file_name(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="job id"):
        file_handler(tmp_path / "outbox").fn(PAYLOAD, job(job_id="../escape"))
    assert not (tmp_path / "escape.eml").exists()


# -- validation ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ("to ann", "expected an object"),
        (["ann@example.com"], "expected an object"),
        ({"subject": "s", "body": "b"}, "'to' is required"),
        ({"to": "ann@example.com", "body": "b"}, "'subject' is required"),
        ({"to": "ann@example.com", "subject": "s"}, "'body' is required"),
        ({"to": "", **_text()}, "must not be empty"),
        ({"to": [], **_text()}, "at least one"),
        ({"to": 7, **_text()}, "address or a list"),
        ({"to": [7], **_text()}, "must be a string"),
        ({"to": "ann", **_text()}, "not a valid email address"),
        ({"to": "ann@@example.com", **_text()}, "not a valid email address"),
        ({"to": "ann lee@example.com", **_text()}, "not a valid email address"),
        ({"to": "ann@example.com, bob@example.com", **_text()}, "not a valid email address"),
        ({"to": "Ann <ann@example.com>, bob@x.org", **_text()}, "not a valid email address"),
        ({"to": "ann@exa_mple.com", **_text()}, "not a valid email address"),
        ({"to": [f"u{i}@example.com" for i in range(101)], **_text()}, "more than 100"),
        (
            {"to": [f"u{i}@example.com" for i in range(60)], "cc": ["c@x.org"] * 41, **_text()},
            "more than 100 recipients",
        ),
        ({"to": "ann@example.com", "subject": 5, "body": "b"}, "'subject' must be a string"),
        ({"to": "ann@example.com", "subject": "s", "body": None}, "'body' must be a string"),
        ({"to": "ann@example.com", "subject": "x" * 999, "body": "b"}, "longer than 998"),
        (
            {"to": "ann@example.com", "subject": "s", "body": "é" * (MAX_BODY_BYTES // 2 + 1)},
            "larger than",
        ),
        ({"to": "ann@example.com", "bcc": "spy@example.com", **_text()}, "unknown field 'bcc'"),
        ({"to": "ann@example.com", "cc": "nope", **_text()}, "'cc'"),
        ({"to": "ann@example.com", "reply_to": ["ok@x.org", "bad"], **_text()}, "reply_to"),
    ],
)
def test_validation_refuses(payload: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        validate_email_payload(payload)


@pytest.mark.parametrize(
    "payload",
    [
        {"to": "ann@example.com", "subject": "Hi\r\nBcc: spy@example.com", "body": "b"},
        {"to": "ann@example.com", "subject": "Hi\nBcc: spy@example.com", "body": "b"},
        {"to": "ann@example.com\r\nBcc: spy@example.com", **_text()},
        {"to": "Ann\n <ann@example.com>", **_text()},
        {"to": "ann@example.com", "cc": ["c@example.com\rX-Evil: 1"], **_text()},
        {"to": "ann@example.com", "reply_to": "r@example.com\n", **_text()},
    ],
)
def test_validation_refuses_header_injection(payload: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="line breaks"):
        validate_email_payload(payload)


def test_validation_accepts_the_limits() -> None:
    validate_email_payload(
        {
            "to": [f"u{i}@example.com" for i in range(100)],
            "subject": "x" * 998,
            "body": "a" * MAX_BODY_BYTES,
        }
    )
    validate_email_payload({"to": '"Lee, Ann" <ann@mail.example.com>', "subject": "", "body": ""})


def test_the_handler_checks_its_payload_again_when_it_runs(tmp_path: Path) -> None:
    """A payload stored before a stricter validator still fails cleanly, writing nothing."""
    with pytest.raises(ValueError, match="line breaks"):
        file_handler(tmp_path).fn({"to": "a@example.com\nBcc: b@x.org", **_text()}, job())
    assert list(tmp_path.iterdir()) == []


def test_submission_refuses_a_bad_payload_with_the_validators_message(tmp_path: Path) -> None:
    table = HandlerTable([file_handler(tmp_path)])
    with pytest.raises(InvalidPayload, match="payload for 'email_send': 'to' is required"):
        table.check_submission("email_send", {"subject": "s", "body": "b"})


def test_a_bad_smtp_from_is_a_start_up_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="SMTP_FROM"):
        make_email_handler(
            outbox_dir=str(tmp_path),
            smtp_host=None,
            smtp_port=25,
            smtp_user=None,
            smtp_password=None,
            smtp_from="not an address",
            smtp_starttls=False,
        )


def test_handler_declares_its_timeout(tmp_path: Path) -> None:
    handler = file_handler(tmp_path)
    assert handler.type == "email_send"
    assert handler.timeout == 60
    assert handler.validate is validate_email_payload
