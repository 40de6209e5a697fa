"""builtin_handlers(email=..., webhook=...): the four built-ins, configured from plain
options (the handlers layer does not know the settings)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import workstream.handlers.builtin as builtin_module
from workstream.errors import ConfigError, InvalidPayload
from workstream.handlers import HandlerTable
from workstream.handlers.builtin import EmailOptions, WebhookOptions, builtin_handlers
from workstream.jobs.model import JobContext

JOB = JobContext("a1b2c3d4-0000-4000-8000-000000000001", "email_send", 1, 3, 0.0)
HANDLERS_DIR = Path(builtin_module.__file__).parent
ALLOWED = ("workstream.handlers", "workstream.jobs", "workstream.errors", "workstream.units")


def test_builtin_handlers_are_the_four_documented_types() -> None:
    table = HandlerTable(builtin_handlers())
    assert table.types() == ["echo", "email_send", "sleep", "webhook"]


def test_email_send_takes_its_outbox_and_sender_from_its_options(tmp_path: Path) -> None:
    options = EmailOptions(outbox_dir=str(tmp_path / "outbox"), smtp_from="ops@example.org")
    handler = HandlerTable(builtin_handlers(email=options)).get("email_send")
    assert handler is not None

    result = handler.fn({"to": "ann@example.com", "subject": "s", "body": "b"}, JOB)

    assert result["delivery"] == "file"
    assert result["message_id"] == f"<{JOB.id}@example.org>"
    assert result["file"] == f"{JOB.id}.eml"
    assert b"From: ops@example.org\r\n" in (tmp_path / "outbox" / result["file"]).read_bytes()


def test_email_options_refuse_a_clear_text_login() -> None:
    options = EmailOptions(smtp_host="smtp.example.com", smtp_user="robot")
    with pytest.raises(ConfigError, match="SMTP_USER"):
        builtin_handlers(email=options)


def test_webhook_takes_its_destination_policy_from_its_options() -> None:
    default = HandlerTable(builtin_handlers())
    with pytest.raises(InvalidPayload, match="loopback"):
        default.check_submission("webhook", {"url": "http://10.1.2.3/hook"})

    allowed = HandlerTable(builtin_handlers(webhook=WebhookOptions(allow_hosts=("10.0.0.0/8",))))
    allowed.check_submission("webhook", {"url": "http://10.1.2.3/hook"})

    with pytest.raises(ConfigError, match="WEBHOOK_DENY_NETWORKS"):
        builtin_handlers(webhook=WebhookOptions(deny_networks=("nonsense",)))


def test_the_options_do_not_show_the_password() -> None:
    assert "hunter2" not in repr(EmailOptions(smtp_password="hunter2"))


@pytest.mark.parametrize("path", sorted(HANDLERS_DIR.glob("*.py")), ids=lambda p: p.name)
def test_handlers_import_only_handlers_jobs_errors_and_units(path: Path) -> None:
    """The layer's arrow points down: no settings, no actors, no HTTP."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    inner = sorted(name for name in names if name.startswith("workstream"))
    assert [name for name in inner if not name.startswith(ALLOWED)] == []
