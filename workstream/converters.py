"""Converters for settings: each turns a raw value (text from the environment or a flag,
or a TOML value) into a typed one, or raises ValueError with a message for the user.

`Setting` is one row of a settings table: the core's (`workstream.config.SETTINGS`) and
each extension's own section (`workstream.extensions.ExtensionContext.settings`).
"""

from __future__ import annotations

import math
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from workstream.errors import ConfigError
from workstream.units import parse_duration

# -- converters: raw value (str from env/flags, or a TOML value) -> typed value -------------


def as_text(raw: Any) -> str:
    if isinstance(raw, bool) or not isinstance(raw, str | int | float):
        raise ValueError("expected text")
    return str(raw).strip()


def whole(raw: Any, lowest: int, highest: int | None = None) -> int:
    if isinstance(raw, bool):
        raise ValueError("expected a whole number")
    if isinstance(raw, int):
        value = raw
    else:
        text = as_text(raw)
        if not text.lstrip("+-").isdigit():
            raise ValueError("expected a whole number")
        value = int(text)
    if value < lowest or (highest is not None and value > highest):
        bound = f"from {lowest} to {highest}" if highest is not None else f"{lowest} or more"
        raise ValueError(f"must be {bound}")
    return value


def positive_int(raw: Any) -> int:
    return whole(raw, 1, 100_000)


def non_negative_int(raw: Any) -> int:
    return whole(raw, 0, 1000)


def port(raw: Any) -> int:
    return whole(raw, 0, 65535)


MAX_DURATION = 30 * 24 * 3600.0  # beyond this a setting is a mistake, not a plan


def _duration(raw: Any) -> float:
    if isinstance(raw, bool):
        raise ValueError("expected a duration like 500ms, 10s or 1m30s")
    seconds = float(raw) if isinstance(raw, int | float) else parse_duration(as_text(raw))
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError("must be a finite duration, not negative")
    if seconds > MAX_DURATION:
        raise ValueError("must be at most 30 days")
    return seconds


def duration(raw: Any) -> float:
    """A duration that must be more than zero."""
    seconds = _duration(raw)
    if seconds <= 0:
        raise ValueError("must be more than zero")
    return seconds


def duration_or_zero(raw: Any) -> float:
    return _duration(raw)


MAX_RETENTION = 10 * 365 * 24 * 3600.0


def retention(raw: Any) -> float:
    """How long finished jobs are kept: a duration (up to 10 years; days: `7d`), 0 for
    ever."""
    if isinstance(raw, bool):
        raise ValueError("expected a duration like 7d, 12h or 30m, or 0 to keep for ever")
    if isinstance(raw, int | float):
        seconds = float(raw)
    else:
        text = as_text(raw).lower()
        days = text.removesuffix("d")
        if days != text and days.replace(".", "", 1).isdigit():
            seconds = float(days) * 86400.0  # whole days: `7d`, `30d`
        else:
            seconds = parse_duration(text)
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError("must be a finite duration, not negative (0 keeps for ever)")
    if seconds > MAX_RETENTION:
        raise ValueError("must be at most 10 years (0 keeps for ever)")
    return seconds


def interval(raw: Any) -> float:
    """How often something periodic runs: at least 50ms, so that it cannot spin."""
    seconds = _duration(raw)
    if seconds < 0.05:
        raise ValueError("must be at least 50ms")
    return seconds


_SIZE_UNITS = {"": 1, "b": 1, "k": 1024, "kb": 1024, "kib": 1024, "m": 1024**2, "mb": 1024**2}
_SIZE_UNITS |= {"mib": 1024**2, "g": 1024**3, "gb": 1024**3, "gib": 1024**3}


def byte_size(raw: Any) -> int:
    """A size like 512MB, 2GB or a number of bytes (1024-based units); 0 is allowed."""
    if isinstance(raw, bool):
        raise ValueError("expected a size like 512MB")
    if isinstance(raw, int):
        value = float(raw)
    else:
        text = as_text(raw).lower().replace(" ", "")
        number = text.rstrip("abcdefghijklmnopqrstuvwxyz")
        unit = text[len(number) :]
        try:
            value = float(number) * _SIZE_UNITS[unit]
        except (ValueError, KeyError):
            raise ValueError("expected a size like 512MB, 2GB or a number of bytes") from None
    if not math.isfinite(value) or value < 0 or value > 1024**5:
        raise ValueError("must be from 0 to 1PB")
    return int(value)


def boolean(raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    text = as_text(raw).lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError("expected true or false")


def optional_text(raw: Any) -> str | None:
    text = as_text(raw)
    return text or None


MIN_TOKEN_LENGTH = 16


def api_token(raw: Any) -> str | None:
    """A bearer token, or None (empty: no token). Short tokens are guessed: refused."""
    text = optional_text(raw)
    if text is not None and len(text) < MIN_TOKEN_LENGTH:
        raise ValueError(
            f"must be at least {MIN_TOKEN_LENGTH} characters (for instance: python3 -c "
            '"import secrets; print(secrets.token_urlsafe(32))")'
        )
    return text


def host(raw: Any) -> str:
    text = as_text(raw)
    if not text or any(ch.isspace() for ch in text):
        raise ValueError("expected an IP address or host name")
    return text


def module_list(raw: Any) -> tuple[str, ...]:
    items = raw if isinstance(raw, list) else as_text(raw).split(",")
    names = tuple(as_text(item) for item in items if as_text(item))
    for name in names:
        if not all(part.isidentifier() for part in name.split(".")):
            raise ValueError(f"{name!r} is not a Python module name")
    return names


def text_list(raw: Any) -> tuple[str, ...]:
    """Comma-separated entries (or a TOML list), spaces around each stripped."""
    items = raw if isinstance(raw, list) else as_text(raw).split(",")
    return tuple(as_text(item) for item in items if as_text(item))


def middleware_list(raw: Any) -> tuple[str, ...]:
    """`module:attribute` entries, comma-separated (or a TOML list)."""
    items = raw if isinstance(raw, list) else as_text(raw).split(",")
    entries = tuple(as_text(item) for item in items if as_text(item))
    for entry in entries:
        module, _, attribute = entry.partition(":")
        if not module_list(module) or not attribute.isidentifier():
            raise ValueError(f"{entry!r} is not module:attribute")
    return entries


def choice(*allowed: str) -> Callable[[Any], str]:
    def convert(raw: Any) -> str:
        text = as_text(raw).lower()
        if text not in allowed:
            raise ValueError(f"expected one of {', '.join(allowed)}")
        return text

    return convert


def masked_url(url: str) -> str:
    """`url` with its password hidden, the user name kept: `postgresql://app:***@db/q`;
    a `password` (or `sslpassword`, ...) query parameter's value is hidden too.

    For any text, valid URL or not (it is what error messages show): the user part ends at
    the last `@` before the query (a password may hold an unencoded `/` or `@`), or, for a
    password with an unencoded `?`, at the last `@` at all; all after its first `:` is hidden.
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    at = rest.partition("?")[0].rfind("@")
    if at < 0 and ":" in rest.partition("?")[0]:
        at = rest.rfind("@")
    userinfo, tail = (rest[:at], rest[at:]) if at >= 0 else ("", rest)
    user, colon, _ = userinfo.partition(":")
    path, question, query = tail.partition("?")
    if question:
        query = "&".join(_masked_parameter(item) for item in query.split("&"))
    return scheme + sep + user + (":***" if colon else "") + path + question + query


def _masked_parameter(item: str) -> str:
    key, equals, _ = item.partition("=")
    if equals and "password" in urllib.parse.unquote(key).lower():
        return f"{key}=***"
    return item


def database_url(raw: Any) -> str:
    text = as_text(raw)
    if not text.startswith(("sqlite:///", "postgresql://", "postgres://")) or text == "sqlite:///":
        raise ValueError(
            "expected sqlite:///relative/path, sqlite:////absolute/path or postgresql://..."
        )
    return text


@dataclass(frozen=True)
class Setting:
    name: str  # attribute name; env var = name.upper(); TOML key = name; flag = --name
    default: Any
    convert: Callable[[Any], Any]
    help: str
    secret: bool = False
    # Shows a value with what is secret in it hidden (e.g. a URL's password); for values
    # wholly secret, `secret`.
    mask: Callable[[str], str] | None = None

    def shown(self, value: Any) -> Any:
        """The value as logs and error messages may show it."""
        if self.secret and value:
            return "***"
        if self.mask is not None and isinstance(value, str):
            return self.mask(value)
        return value

    @property
    def env(self) -> str:
        return self.name.upper()

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


def convert_setting(setting: Setting, raw: Any, source: str, env: str | None = None) -> Any:
    """`setting.convert(raw)`, or a ConfigError (exit 2) naming the variable (`env`, by
    default the setting's own), where the value came from, and the value as it may be
    shown. The core's settings and every extension's section are checked by this."""
    try:
        return setting.convert(raw)
    except ValueError as exc:
        shown = "***" if setting.secret else repr(setting.shown(raw))
        raise ConfigError(f"invalid {env or setting.env} = {shown} ({source}): {exc}") from None
