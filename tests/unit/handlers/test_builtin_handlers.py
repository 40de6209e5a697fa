"""builtin_handlers(settings): the four built-ins, configured from the settings."""

from __future__ import annotations

from pathlib import Path

from workstream.config import Settings
from workstream.handlers import HandlerTable
from workstream.handlers.builtin import builtin_handlers
from workstream.jobs.model import JobContext


def test_builtin_handlers_are_the_four_documented_types() -> None:
    table = HandlerTable(builtin_handlers(Settings()))
    assert table.types() == ["echo", "email_send", "sleep", "webhook"]


def test_email_send_takes_its_outbox_and_sender_from_the_settings(tmp_path: Path) -> None:
    settings = Settings(outbox_dir=str(tmp_path / "outbox"), smtp_from="ops@example.org")
    table = HandlerTable(builtin_handlers(settings))
    handler = table.get("email_send")
    assert handler is not None
    job = JobContext("a1b2c3d4-0000-4000-8000-000000000001", "email_send", 1, 3, 0.0)

    result = handler.fn({"to": "ann@example.com", "subject": "s", "body": "b"}, job)

    assert result["delivery"] == "file"
    assert result["message_id"] == f"<{job.id}@example.org>"
    assert result["file"] == f"{job.id}.eml"
    assert b"From: ops@example.org\r\n" in (tmp_path / "outbox" / result["file"]).read_bytes()
