"""Configuration: one typed `Settings` object from four layers.

    defaults < config file (config/workstream.toml, or --config) < environment < flags

Every setting is one row of `SETTINGS`: its name (the environment variable; the TOML key is
the same in lower case; the flag is `--name-with-dashes`), its default, one converter and
one line of help. An invalid value raises `ConfigError` with a one-line message naming the
setting, where it came from, and the value; the CLI prints it and exits with status 2.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from workstream.converters import (
    Setting,
    api_token,
    as_text,
    boolean,
    byte_size,
    choice,
    convert_setting,
    database_url,
    duration,
    duration_or_zero,
    host,
    interval,
    masked_url,
    middleware_list,
    module_list,
    non_negative_int,
    optional_text,
    port,
    positive_int,
    retention,
    text_list,
    whole,
)
from workstream.errors import ConfigError
from workstream.jobs.types import TYPE_TABLE_KEYS
from workstream.units import format_duration

DEFAULT_CONFIG_FILE = Path("config/workstream.toml")
# Handlers run in one worker process per CPU by default (docs/architecture.md).
DEFAULT_WORKER_PROCESSES = os.cpu_count() or 1


SETTINGS: tuple[Setting, ...] = (
    Setting("port", 8080, port, "HTTP port (0 picks a free one)"),
    Setting("host", "127.0.0.1", host, "bind address; 0.0.0.0 must be asked for"),
    Setting(
        "worker_count",
        10,
        positive_int,
        "most handler calls running at once (threads; in process mode shared among the "
        "worker processes)",
    ),
    Setting(
        "worker_processes",
        DEFAULT_WORKER_PROCESSES,
        lambda raw: whole(raw, 0, 256),
        "worker processes that run handlers (0: threads inside the server process)",
    ),
    Setting(
        "worker_max_jobs",
        0,
        lambda raw: whole(raw, 0, 1_000_000_000),
        "a worker process is replaced after this many jobs (0: never)",
    ),
    Setting(
        "worker_max_memory",
        0,
        byte_size,
        "a worker process whose resident memory passes this (e.g. 512MB) is replaced once "
        "its running jobs finish (0: never)",
    ),
    Setting(
        "job_queue_capacity",
        100,
        positive_int,
        "most jobs waiting to start (pending and due); past it, submissions get 429",
    ),
    Setting(
        "max_scheduled_jobs",
        1_000_000,
        lambda raw: whole(raw, 1, 1_000_000_000),
        "most delayed jobs (pending, run_at in the future) waiting at once; past it, "
        "submissions of delayed jobs get 429 too_many_scheduled_jobs",
    ),
    Setting(
        "retain_completed",
        7 * 86400.0,
        retention,
        "completed and cancelled jobs (and their outbox files) are deleted this long after "
        "they ended (e.g. 7d, 12h; 0: kept for ever)",
    ),
    Setting(
        "retain_failed",
        30 * 86400.0,
        retention,
        "jobs failed for good (and their outbox files) are deleted this long after they "
        "ended (0: kept for ever)",
    ),
    Setting(
        "sweeper_interval",
        10.0,
        interval,
        "how often expired leases are recovered (and due retries that no worker took yet "
        "re-queued)",
    ),
    Setting(
        "max_retries",
        3,
        non_negative_int,
        "default retries after the first attempt (a job runs at most 1 + max_retries times)",
    ),
    Setting(
        "retry_backoff",
        1.0,
        duration_or_zero,
        "backoff base: wait after failed attempt n is base x 2^(n-1), +-10%; 0s = at once",
    ),
    Setting("retry_backoff_max", 3600.0, duration, "the longest backoff"),
    Setting(
        "shutdown_timeout",
        30.0,
        duration_or_zero,
        "how long a graceful shutdown waits for running jobs",
    ),
    Setting(
        "database_url",
        "sqlite:///data/workstream.db",
        database_url,
        "storage: sqlite:///relative/path, sqlite:////absolute/path, postgresql://...",
        mask=masked_url,  # the password is never shown, the user name is
    ),
    Setting(
        "lease_duration",
        30.0,
        interval,
        "how long a claimed job stays owned without renewal (renewed every third of it)",
    ),
    Setting(
        "job_handlers",
        (),
        module_list,
        "comma-separated Python modules to import at start; each registers handlers",
    ),
    Setting(
        "extensions",
        (),
        module_list,
        "comma-separated Python modules whose setup(context) adds actors, middleware, routes",
    ),
    Setting(
        "worker_middleware",
        (),
        middleware_list,
        "comma-separated module:attribute entries run around every handler call, in order",
    ),
    Setting(
        "api_token",
        None,
        api_token,
        "when set (16 characters or more), every request but GET /health needs "
        "'Authorization: Bearer <token>'",
        secret=True,
    ),
    Setting(
        "allow_insecure_bind",
        False,
        boolean,
        "allow a non-loopback HOST without API_TOKEN (otherwise start-up refuses)",
    ),
    Setting("log_level", "info", choice("debug", "info", "warning", "error"), "log level"),
    Setting(
        "log_format",
        "json",
        choice("json", "text"),
        "json: one JSON object per line on stderr; text: for humans",
    ),
    Setting(
        "outbox_dir",
        "data/outbox",
        as_text,
        "where email_send writes .eml files when SMTP_HOST is not set",
    ),
    Setting(
        "smtp_host", None, optional_text, "SMTP server for email_send (unset: write .eml files)"
    ),
    Setting("smtp_port", 25, lambda raw: whole(raw, 1, 65535), "SMTP port"),
    Setting("smtp_user", None, optional_text, "SMTP user name (login when set)"),
    Setting("smtp_password", None, optional_text, "SMTP password", secret=True),
    Setting("smtp_from", "workstream@localhost", as_text, "sender address for email_send"),
    Setting(
        "smtp_starttls",
        False,
        boolean,
        "upgrade the SMTP connection with STARTTLS (usually port 587); required with "
        "SMTP_USER unless SMTP_HOST is loopback",
    ),
    Setting(
        "smtp_tls",
        False,
        boolean,
        "connect to the SMTP server over TLS from the start (SMTPS, usually port 465); not "
        "together with SMTP_STARTTLS",
    ),
    Setting(
        "webhook_allow_hosts",
        (),
        text_list,
        "host names, IP addresses or networks (CIDR) the webhook may reach although they "
        "are loopback, private or otherwise non-public (default: none)",
    ),
    Setting(
        "webhook_deny_networks",
        (),
        text_list,
        "IP addresses or networks (CIDR) the webhook must never reach, besides the "
        "non-public ranges; wins over WEBHOOK_ALLOW_HOSTS",
    ),
    # Request threads mostly wait for the Registry's group commit: more of them make
    # bigger commits. 32 against 8: +30% single-job submissions at 64 connections.
    Setting("http_threads", 32, lambda raw: whole(raw, 1, 256), "HTTP worker threads (waitress)"),
    Setting(
        "http_connection_limit",
        500,
        lambda raw: whole(raw, 1, 100_000),
        "most open HTTP connections; more wait in the listen backlog",
    ),
    Setting(
        "http_channel_timeout",
        30.0,
        duration,
        "an idle or stalled HTTP connection is closed after this long",
    ),
    Setting(
        "request_timeout",
        10.0,
        duration,
        "how long an HTTP request waits for the engine before answering 503",
    ),
    Setting(
        "priority_aging",
        300.0,
        duration_or_zero,
        "a due job waiting longer than this starts as if it had the top priority (0s: never)",
    ),
    Setting(
        "console",
        True,
        boolean,
        "serve the operator's console at GET / and /ui/ (false: those paths answer 404)",
    ),
    Setting(
        "console_read_only",
        False,
        boolean,
        "the console shows everything but offers no action, and refuses them with 403",
    ),
)
# Tables of the config file that the core reads (the others are extensions' sections):
# `[types.<job type>]` sets max_concurrency, concurrency_key and rate_limit of a type.
CORE_SECTIONS = frozenset({"types"})
_BY_NAME = {setting.name: setting for setting in SETTINGS}
_DURATIONS = (duration, duration_or_zero, interval, retention)


@dataclass(frozen=True)
class Settings:
    port: int = 8080
    host: str = "127.0.0.1"
    worker_count: int = 10
    worker_processes: int = DEFAULT_WORKER_PROCESSES
    worker_max_jobs: int = 0
    worker_max_memory: int = 0
    job_queue_capacity: int = 100
    max_scheduled_jobs: int = 1_000_000
    retain_completed: float = 7 * 86400.0
    retain_failed: float = 30 * 86400.0
    sweeper_interval: float = 10.0
    max_retries: int = 3
    retry_backoff: float = 1.0
    retry_backoff_max: float = 3600.0
    shutdown_timeout: float = 30.0
    database_url: str = "sqlite:///data/workstream.db"
    lease_duration: float = 30.0
    job_handlers: tuple[str, ...] = ()
    extensions: tuple[str, ...] = ()
    worker_middleware: tuple[str, ...] = ()
    api_token: str | None = field(default=None, repr=False)
    allow_insecure_bind: bool = False
    log_level: str = "info"
    log_format: str = "json"
    outbox_dir: str = "data/outbox"
    smtp_host: str | None = None
    smtp_port: int = 25
    smtp_user: str | None = None
    smtp_password: str | None = field(default=None, repr=False)
    smtp_from: str = "workstream@localhost"
    smtp_starttls: bool = False
    smtp_tls: bool = False
    webhook_allow_hosts: tuple[str, ...] = ()
    webhook_deny_networks: tuple[str, ...] = ()
    http_threads: int = 32
    http_connection_limit: int = 500
    http_channel_timeout: float = 30.0
    request_timeout: float = 10.0
    priority_aging: float = 300.0
    console: bool = True
    console_read_only: bool = False
    # Where extensions read their own sections (`ExtensionContext.settings`): the config
    # file's tables that are not core settings, and the environment the settings came from.
    config_tables: Mapping[str, Mapping[str, Any]] = field(
        default_factory=dict, repr=False, compare=False
    )
    config_path: str = field(default=str(DEFAULT_CONFIG_FILE), repr=False, compare=False)
    environment: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)

    def loopback_only(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False

    def described(self) -> dict[str, Any]:
        """The settings for a start-up log line, secrets masked."""
        out: dict[str, Any] = {}
        for setting in SETTINGS:
            value = getattr(self, setting.name)
            if setting.secret or setting.mask is not None:
                value = setting.shown(value)
            elif isinstance(value, float) and setting.convert in _DURATIONS:
                value = format_duration(value)
            elif isinstance(value, tuple):
                value = ",".join(value)
            out[setting.name] = value
        return out


def read_config_file(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"config file {path} cannot be read: {exc}") from None
    # A table ([name]) is an extension's section, checked once extensions are set up.
    unknown = sorted(key for key in data if key not in _BY_NAME and not isinstance(data[key], dict))
    if unknown:
        raise ConfigError(
            f"config file {path}: unknown setting {unknown[0]!r} (see config/workstream.toml)"
        )
    return data


def load_settings(
    *,
    env: Mapping[str, str] | None = None,
    flags: Mapping[str, Any] | None = None,
    config_file: str | os.PathLike[str] | None = None,
) -> Settings:
    """Build the Settings: defaults < config file < environment < flags.

    `config_file` None means `config/workstream.toml` if it exists; a file that was asked
    for explicitly must exist. `flags` maps setting names to raw values (None = not given).
    """
    env = os.environ if env is None else env
    flags = flags or {}
    values: dict[str, Any] = {}
    if config_file is not None:
        path = Path(config_file)
        file_values = read_config_file(path)
    elif DEFAULT_CONFIG_FILE.is_file():
        path = DEFAULT_CONFIG_FILE
        file_values = read_config_file(path)
    else:
        path, file_values = DEFAULT_CONFIG_FILE, {}
    values["config_tables"] = {k: v for k, v in file_values.items() if isinstance(v, dict)}
    values["config_path"] = str(path)
    values["environment"] = dict(env)
    for setting in SETTINGS:
        if flags.get(setting.name) is not None:
            values[setting.name] = convert_setting(
                setting, flags[setting.name], f"flag {setting.flag}"
            )
        elif setting.env in env:
            values[setting.name] = convert_setting(setting, env[setting.env], "environment")
        elif setting.name in file_values:
            values[setting.name] = convert_setting(setting, file_values[setting.name], f"in {path}")
    settings = Settings(**values)
    return settings


def type_tables(settings: Settings) -> dict[str, Mapping[str, Any]]:
    """The `[types.<name>]` tables of the config file, checked for unknown keys (each a
    ConfigError naming the table and the key: exit 2). Values are checked when the limits
    are built (`type_limits`)."""
    tables = settings.config_tables.get("types", {})
    out: dict[str, Mapping[str, Any]] = {}
    for name, table in tables.items():
        if not isinstance(table, Mapping):
            raise ConfigError(
                f"config file {settings.config_path}: [types] holds tables only "
                f"([types.{name}] with max_concurrency, concurrency_key, rate_limit)"
            )
        unknown = sorted(set(table) - TYPE_TABLE_KEYS)
        if unknown:
            raise ConfigError(
                f"config file {settings.config_path}: unknown setting {unknown[0]!r} in "
                f"[types.{name}] (known: {', '.join(sorted(TYPE_TABLE_KEYS))})"
            )
        out[name] = table
    return out
