"""email_send: no header injection through encoded words, no clear-text login to another
machine, implicit TLS, and results and errors without the server's paths."""

from __future__ import annotations

import email
import email.policy
import logging
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from tests.unit.handlers.conftest import Certificate
from workstream.errors import ConfigError
from workstream.handlers import email_delivery
from workstream.handlers.email import (
    EmailDeliveryError,
    EmailRequest,
    build_message,
    make_email_handler,
    parse_address,
    serialize,
    validate_email_payload,
)
from workstream.jobs.model import JobContext

JOB = JobContext("0b7d8c1e-6a43-4c55-9f5e-2d1b3c4a5e6f", "email_send", 1, 3, 1_700_000_000.0)
SENDER = "WorkStream <noreply@example.com>"
EVIL_SUBJECT = "=?utf-8?q?Invoice=0D=0AFrom:_ceo@bank.example=0D=0A=0D=0APay_now?="
EVIL_NAME = "=?utf-8?q?evil=0D=0ABcc:_x@y.com?= <ann@example.com>"


def handler(**overrides: Any) -> Any:
    options: dict[str, Any] = {
        "outbox_dir": "unused",
        "smtp_host": None,
        "smtp_port": 25,
        "smtp_user": None,
        "smtp_password": None,
        "smtp_from": SENDER,
        "smtp_starttls": False,
    }
    options.update(overrides)
    return make_email_handler(**options)


# -- header injection through RFC 2047 encoded words ---------------------------------------


@pytest.mark.parametrize(
    "payload",
    [
        {"to": "ann@example.com", "subject": EVIL_SUBJECT, "body": "b"},
        {"to": EVIL_NAME, "subject": "s", "body": "b"},
        {"to": "ann@example.com", "cc": [EVIL_NAME], "subject": "s", "body": "b"},
        {"to": "ann@example.com", "reply_to": EVIL_NAME, "subject": "s", "body": "b"},
        {"to": "ann@example.com", "subject": "Re: =?ISO-8859-1?B?SGk=?= there", "body": "b"},
    ],
)
def test_encoded_words_are_refused_at_submission(payload: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="encoded words"):
        validate_email_payload(payload)


@pytest.mark.parametrize(
    "payload",
    [
        {"to": "ann@example.com", "subject": EVIL_SUBJECT, "body": "b"},
        {"to": EVIL_NAME, "subject": "s", "body": "b"},
    ],
)
def test_no_eml_with_injected_headers_is_written(tmp_path: Path, payload: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="encoded words"):
        handler(outbox_dir=str(tmp_path)).fn(payload, JOB)
    assert list(tmp_path.iterdir()) == []


def test_text_that_only_looks_odd_is_still_accepted(tmp_path: Path) -> None:
    payload = {"to": "Ann =? Lee <ann@example.com>", "subject": "2+2=? and ?= too", "body": "b"}
    result = handler(outbox_dir=str(tmp_path)).fn(payload, JOB)
    msg = email.message_from_bytes(
        (tmp_path / result["file"]).read_bytes(), policy=email.policy.default
    )
    assert msg["Subject"] == "2+2=? and ?= too"
    [address] = msg["To"].addresses
    assert (address.display_name, address.addr_spec) == ("Ann =? Lee", "ann@example.com")


def test_serialize_never_lets_a_value_break_out_of_its_header() -> None:
    """The second guard, for a value that got past validation (an older stored job, a
    gap in the check): the message is refused, or comes out with exactly its headers (an
    interpreter whose email package has no such defect)."""
    request = EmailRequest(
        to=(parse_address("ann@example.com", "to"),),
        cc=(),
        reply_to=(),
        subject=EVIL_SUBJECT,
        body="b",
    )
    msg = build_message(request, JOB, parse_address(SENDER, "from"))
    try:
        data = serialize(msg)
    except EmailDeliveryError as exc:
        assert "broke out" in str(exc)
        return
    parsed = email.message_from_bytes(data, policy=email.policy.default)
    assert parsed.get_all("From") == [SENDER]
    assert parsed.get_content().strip() == "b"


# -- SMTP: no clear-text login to another machine; implicit TLS -----------------------------


def test_a_login_without_tls_to_another_machine_is_a_start_up_error() -> None:
    with pytest.raises(ConfigError, match=r"SMTP_USER.*SMTP_STARTTLS") as caught:
        handler(smtp_host="smtp.example.com", smtp_user="robot", smtp_password="pw")
    assert "pw" not in str(caught.value).replace("password", "")


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "127.0.0.53"])
def test_a_login_without_tls_to_this_machine_is_allowed(host: str) -> None:
    handler(smtp_host=host, smtp_user="robot", smtp_password="pw")


@pytest.mark.parametrize("options", [{"smtp_starttls": True}, {"smtp_tls": True}, {}])
def test_tls_or_no_login_makes_a_remote_server_acceptable(options: dict[str, Any]) -> None:
    user = "robot" if options else None
    handler(smtp_host="smtp.example.com", smtp_user=user, **options)


def test_tls_and_starttls_together_are_a_start_up_error() -> None:
    with pytest.raises(ConfigError, match="SMTP_TLS and SMTP_STARTTLS"):
        handler(smtp_host="smtp.example.com", smtp_tls=True, smtp_starttls=True)


class _Recorder:
    def __init__(self) -> None:
        self.messages: list[Any] = []
        self.logins: list[tuple[bytes, bool]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(envelope)
        return "250 Message accepted"


def _server_tls(certificate: Certificate) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certificate.cert, certificate.key)
    return context


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def smtps_server(certificate: Certificate) -> Iterator[tuple[int, _Recorder]]:
    """SMTP over TLS from the first byte (what port 465 speaks)."""
    recorder, port = _Recorder(), _free_port()
    controller = Controller(
        recorder, hostname="127.0.0.1", port=port, ssl_context=_server_tls(certificate)
    )
    controller.start()
    try:
        yield port, recorder
    finally:
        controller.stop()


@pytest.fixture
def starttls_server(certificate: Certificate) -> Iterator[tuple[int, _Recorder]]:
    """STARTTLS offered, and a login accepted only once the session is encrypted."""
    recorder, port = _Recorder(), _free_port()

    def authenticator(server: Any, session: Any, envelope: Any, mechanism: str, auth: Any):
        ok = isinstance(auth, LoginPassword) and auth.password == b"right"
        recorder.logins.append((auth.login, session.ssl is not None))
        return AuthResult(success=ok, handled=False)

    controller = Controller(
        recorder,
        hostname="127.0.0.1",
        port=port,
        tls_context=_server_tls(certificate),
        require_starttls=True,
        authenticator=authenticator,
        auth_require_tls=True,
    )
    controller.start()
    try:
        yield port, recorder
    finally:
        controller.stop()


def test_implicit_tls_delivers(
    smtps_server: tuple[int, _Recorder], client_tls: ssl.SSLContext
) -> None:
    port, recorder = smtps_server
    send = handler(smtp_host="127.0.0.1", smtp_port=port, smtp_tls=True, tls_context=client_tls)
    result = send.fn({"to": "ann@example.com", "subject": "s", "body": "b"}, JOB)
    assert result["delivery"] == "smtp"
    [envelope] = recorder.messages
    assert envelope.rcpt_tos == ["ann@example.com"]


def test_implicit_tls_refuses_an_untrusted_certificate(
    smtps_server: tuple[int, _Recorder],
) -> None:
    port, recorder = smtps_server
    send = handler(smtp_host="127.0.0.1", smtp_port=port, smtp_tls=True)  # system CAs
    with pytest.raises(EmailDeliveryError, match="TLS connection failed"):
        send.fn({"to": "ann@example.com", "subject": "s", "body": "b"}, JOB)
    assert recorder.messages == []


def test_starttls_then_login(
    starttls_server: tuple[int, _Recorder], client_tls: ssl.SSLContext
) -> None:
    port, recorder = starttls_server
    send = handler(
        smtp_host="127.0.0.1",
        smtp_port=port,
        smtp_user="robot",
        smtp_password="right",
        smtp_starttls=True,
        tls_context=client_tls,
    )
    send.fn({"to": "ann@example.com", "subject": "s", "body": "b"}, JOB)
    assert recorder.logins == [(b"robot", True)]
    assert len(recorder.messages) == 1


# -- results and errors without paths -------------------------------------------------------


def test_the_file_result_names_the_file_not_the_path(tmp_path: Path) -> None:
    outbox = tmp_path / "secret-location" / "outbox"
    result = handler(outbox_dir=str(outbox)).fn(
        {"to": "a@example.com", "subject": "s", "body": "b"}, JOB
    )
    assert result["file"] == f"{JOB.id}.eml"
    assert "path" not in result
    assert "secret-location" not in str(result)
    assert (outbox / result["file"]).is_file()


def test_an_unwritable_outbox_fails_plainly_and_logs_the_detail(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise PermissionError(13, "Permission denied", str(tmp_path / "secret-location"))

    monkeypatch.setattr(email_delivery.tempfile, "mkstemp", refuse)
    caplog.set_level(logging.ERROR, logger="workstream.handlers.email_delivery")
    with pytest.raises(EmailDeliveryError) as caught:
        handler(outbox_dir=str(tmp_path)).fn(
            {"to": "a@example.com", "subject": "s", "body": "b"}, JOB
        )

    message = str(caught.value)
    assert message == (
        "could not write the message to the outbox (permission denied; the server log "
        "has the detail)"
    )
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
    [record] = caplog.records
    assert "secret-location" in record.getMessage() and "Errno 13" in record.getMessage()


def test_an_outbox_that_is_a_file_fails_without_its_path(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    with pytest.raises(EmailDeliveryError) as caught:
        handler(outbox_dir=str(blocker / "outbox")).fn(
            {"to": "a@example.com", "subject": "s", "body": "b"}, JOB
        )
    assert str(tmp_path) not in str(caught.value)
    assert "Errno" not in str(caught.value)
