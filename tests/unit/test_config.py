"""Settings: defaults < config file < environment < flags; bad values stop start-up."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import pytest

from workstream.config import SETTINGS, Settings, load_settings
from workstream.converters import masked_url
from workstream.errors import ConfigError
from workstream.store import store_from_url
from workstream.system import check_bind

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def no_default_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no config/workstream.toml here unless a test writes one


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_match_the_spec() -> None:
    settings = load_settings(env={})
    assert settings == Settings()
    assert (settings.port, settings.host, settings.worker_count) == (8080, "127.0.0.1", 10)
    assert (settings.job_queue_capacity, settings.sweeper_interval) == (100, 10.0)
    assert (settings.max_retries, settings.retry_backoff, settings.retry_backoff_max) == (
        3,
        1.0,
        3600.0,
    )
    assert (settings.shutdown_timeout, settings.lease_duration) == (30.0, 30.0)
    assert settings.database_url == "sqlite:///data/workstream.db"
    assert (settings.log_level, settings.log_format, settings.api_token) == ("info", "json", None)


def test_layers_file_then_environment_then_flags(tmp_path: Path) -> None:
    config = write(tmp_path / "ws.toml", 'worker_count = 4\nport = 9000\nsweeper_interval = "2s"\n')
    settings = load_settings(
        env={"WORKER_COUNT": "6", "SWEEPER_INTERVAL": "1m30s"},
        flags={"worker_count": "8", "port": None},
        config_file=config,
    )
    assert settings.worker_count == 8  # flag beats environment beats file
    assert settings.sweeper_interval == 90.0  # environment beats file
    assert settings.port == 9000  # file beats default


def test_the_default_file_is_read_when_present(tmp_path: Path) -> None:
    write(tmp_path / "config" / "workstream.toml", "job_queue_capacity = 7\n")
    assert load_settings(env={}).job_queue_capacity == 7


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"WORKER_COUNT": "abc"}, "WORKER_COUNT = 'abc'"),
        ({"WORKER_COUNT": "0"}, "WORKER_COUNT = '0'"),
        ({"WORKER_COUNT": "-3"}, "WORKER_COUNT = '-3'"),
        ({"SWEEPER_INTERVAL": "soon"}, "SWEEPER_INTERVAL = 'soon'"),
        ({"SWEEPER_INTERVAL": "0s"}, "SWEEPER_INTERVAL = '0s'"),
        ({"PORT": "70000"}, "PORT = '70000'"),
        ({"LOG_FORMAT": "xml"}, "LOG_FORMAT = 'xml'"),
        ({"DATABASE_URL": "mysql://x"}, "DATABASE_URL = 'mysql://x'"),
        ({"SMTP_STARTTLS": "maybe"}, "SMTP_STARTTLS = 'maybe'"),
        ({"JOB_HANDLERS": "good, not-a-module"}, "JOB_HANDLERS"),
        ({"MAX_RETRIES": "1.5"}, "MAX_RETRIES = '1.5'"),
    ],
)
def test_an_invalid_value_names_the_setting_and_the_value(env: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(env=env)
    message = caught.value.message
    assert named in message
    assert "\n" not in message
    assert "(environment)" in message


def test_durations_accept_the_documented_forms() -> None:
    for text, seconds in [("500ms", 0.5), ("10s", 10.0), ("1m30s", 90.0), ("2h", 7200.0)]:
        assert load_settings(env={"SHUTDOWN_TIMEOUT": text}).shutdown_timeout == seconds
    assert load_settings(env={"RETRY_BACKOFF": "0s"}).retry_backoff == 0.0


def test_file_errors_name_the_file_and_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(env={}, config_file=tmp_path / "missing.toml")
    bad = write(tmp_path / "bad.toml", "wroker_count = 3\n")
    with pytest.raises(ConfigError, match="unknown setting 'wroker_count'"):
        load_settings(env={}, config_file=bad)
    broken = write(tmp_path / "broken.toml", "port = \n")
    with pytest.raises(ConfigError, match="cannot be read"):
        load_settings(env={}, config_file=broken)
    typed = write(tmp_path / "typed.toml", 'worker_count = "many"\n')
    with pytest.raises(ConfigError, match=r"WORKER_COUNT = 'many' \(in .*typed.toml\)"):
        load_settings(env={}, config_file=typed)


def test_flag_errors_name_the_flag() -> None:
    with pytest.raises(ConfigError, match="flag --worker-count"):
        load_settings(env={}, flags={"worker_count": "lots"})


def test_secrets_never_appear_in_messages_or_descriptions() -> None:
    settings = load_settings(
        env={"API_TOKEN": "s3cret-token-0123456789", "SMTP_PASSWORD": "pw-123"}
    )
    assert settings.api_token == "s3cret-token-0123456789"
    assert "s3cret" not in repr(settings) and "pw-123" not in repr(settings)
    described = settings.described()
    assert described["api_token"] == "***" and described["smtp_password"] == "***"


def test_the_shipped_config_file_documents_every_setting_with_its_default() -> None:
    text = (REPO / "config" / "workstream.toml").read_text(encoding="utf-8")
    for setting in SETTINGS:
        assert re.search(rf"^#? ?{setting.name} =", text, re.MULTILINE), setting.name
    values = tomllib.loads(text)
    assert load_settings(env={}, config_file=REPO / "config" / "workstream.toml") == Settings()
    assert set(values) <= {setting.name for setting in SETTINGS}


def test_a_public_bind_needs_a_token_or_an_explicit_allowance() -> None:
    check_bind(Settings(host="127.0.0.1"))
    check_bind(Settings(host="::1"))
    check_bind(Settings(host="localhost"))
    with pytest.raises(ConfigError, match=r"HOST = '0\.0\.0\.0'"):
        check_bind(Settings(host="0.0.0.0"))
    check_bind(Settings(host="0.0.0.0", api_token="t"))
    check_bind(Settings(host="0.0.0.0", allow_insecure_bind=True))


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "1e400"])
def test_a_non_finite_duration_in_the_file_is_refused(tmp_path: Path, value: str) -> None:
    config = write(tmp_path / "ws.toml", f"sweeper_interval = {value}\nrequest_timeout = 5\n")
    with pytest.raises(ConfigError, match="SWEEPER_INTERVAL"):
        load_settings(env={}, config_file=config)


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"LEASE_DURATION": "1ms"}, "LEASE_DURATION"),
        ({"SWEEPER_INTERVAL": "10ms"}, "SWEEPER_INTERVAL"),
        ({"REQUEST_TIMEOUT": "31d"}, "REQUEST_TIMEOUT"),
        ({"SHUTDOWN_TIMEOUT": "1000h"}, "SHUTDOWN_TIMEOUT"),
    ],
)
def test_durations_outside_sane_bounds_are_refused(env: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        load_settings(env=env)


# -- DATABASE_URL: the password is never shown, the user name is -----------------------


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://app:hunter2@db:5432/q", "postgresql://app:***@db:5432/q"),
        ("postgres://app@db/q", "postgres://app@db/q"),
        ("postgresql://app:hun/ter2@db/q", "postgresql://app:***@db/q"),  # unencoded /
        ("postgresql://app:hun@ter2@db/q", "postgresql://app:***@db/q"),  # unencoded @
        ("postgresql://app:hun?ter2@db/q", "postgresql://app:***@db/q"),  # unencoded ?
        (
            "postgresql://db/q?user=app&password=hunter2&sslmode=require",
            "postgresql://db/q?user=app&password=***&sslmode=require",
        ),
        ("postgresql://db/q?sslPassword=hunter2", "postgresql://db/q?sslPassword=***"),
        ("postgresql://db/q?pass%77ord=hunter2", "postgresql://db/q?pass%77ord=***"),
        ("sqlite:///data/workstream.db", "sqlite:///data/workstream.db"),
    ],
)
def test_masked_url_hides_the_password_and_keeps_the_user(url: str, shown: str) -> None:
    assert masked_url(url) == shown
    assert "hunter2" not in masked_url(url) and "ter2" not in masked_url(url)


def test_the_start_up_description_masks_the_database_password() -> None:
    url = "postgresql://app:hunter2@db.example:5432/queue?password=hunter2"
    described = load_settings(env={"DATABASE_URL": url}).described()
    assert described["database_url"] == "postgresql://app:***@db.example:5432/queue?password=***"
    assert "hunter2" not in json.dumps(described)


@pytest.mark.parametrize("source", ["env", "flag", "file"])
def test_an_invalid_database_url_is_echoed_masked(tmp_path: Path, source: str) -> None:
    url = "mysql://app:hunter2@db.example/queue"
    with pytest.raises(ConfigError) as caught:
        if source == "env":
            load_settings(env={"DATABASE_URL": url})
        elif source == "flag":
            load_settings(env={}, flags={"database_url": url})
        else:
            path = write(tmp_path / "ws.toml", f'database_url = "{url}"\n')
            load_settings(env={}, config_file=path)
    assert "hunter2" not in caught.value.message
    assert "'mysql://app:***@db.example/queue'" in caught.value.message


@pytest.mark.parametrize(
    "url",
    [
        "sqlite:///data/ws.db?password=hunter2",
        "sqlite://app:hunter2@db/ws",
        "mysql://app:hunter2@db.example/queue",
    ],
)
def test_store_errors_never_echo_the_whole_url(url: str) -> None:
    with pytest.raises(ConfigError) as caught:
        store_from_url(url)
    assert "hunter2" not in caught.value.message
    assert caught.value.message.startswith("DATABASE_URL: ")


# -- API_TOKEN: long enough not to be guessed ------------------------------------------


@pytest.mark.parametrize("token", ["Q", "Z" * 15, "  short-token  "])
def test_a_short_api_token_is_refused_naming_the_setting_without_the_value(token: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(env={"API_TOKEN": token})
    message = caught.value.message
    assert message.startswith("invalid API_TOKEN = *** (environment): ")
    assert "at least 16 characters" in message
    assert token.strip() not in message


def test_a_token_of_16_characters_is_accepted_and_an_empty_one_means_none() -> None:
    assert load_settings(env={"API_TOKEN": "x" * 16}).api_token == "x" * 16
    assert load_settings(env={"API_TOKEN": ""}).api_token is None


def test_the_install_step_upgrades_setuptools_in_the_venv() -> None:
    """`python -m venv` seeds an old setuptools (with known advisories) that nothing else
    would upgrade: the Makefile's install step does."""
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    recipe = makefile.split("$(STAMP): pyproject.toml", 1)[1].split("\n\n", 1)[0]
    upgrades = [
        line for line in recipe.splitlines() if "pip install" in line and "--upgrade" in line
    ]
    assert any("setuptools" in line.split() for line in upgrades), recipe
