"""Parsing and formatting of durations and timestamps, shared by config, API and CLI."""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, datetime
from functools import lru_cache

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_NUMBER = re.compile(r"\d+(?:\.\d+)?")
_UNIT_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


def parse_duration(text: str) -> float:
    """Parse `500ms`, `10s`, `1m30s`, `2h`, or a bare number of seconds, into seconds.

    Raises ValueError with a message fit for a user.
    """
    raw = text.strip().lower()
    if not raw:
        raise ValueError("empty duration")
    if _NUMBER.fullmatch(raw):
        seconds = float(raw)
    else:
        pos = 0
        seconds = 0.0
        last_unit = math.inf
        for match in _DURATION_PART.finditer(raw):
            unit = _UNIT_SECONDS[match.group(2)]
            if match.start() != pos or unit >= last_unit:
                break  # a gap, or units out of order or repeated ("1s1s")
            seconds += float(match.group(1)) * unit
            last_unit = unit
            pos = match.end()
        if pos != len(raw) or pos == 0:
            raise ValueError(f"{text!r} is not a duration (use forms like 500ms, 10s, 1m30s, 2h)")
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"{text!r} is not a duration (must be finite and not negative)")
    return seconds


def shorten(text: str, limit: int = 80) -> str:
    """For messages that quote what a client sent: never echo a huge value back."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def valid_text(text: str) -> str:
    """The text with whatever cannot be encoded as UTF-8 (lone surrogates, e.g. from
    undecodable file names) replaced, so that it can be stored and served."""
    if text.isascii():
        return text
    return text.encode("utf-8", "replace").decode("utf-8")


def json_problem(value: object, *, max_bytes: int | None = None) -> str | None:
    """Why `value` cannot be stored and served as JSON, or None if it can: JSON types only,
    no NaN or Infinity, valid Unicode text, and at most `max_bytes` once encoded."""
    try:
        encoded = json.dumps(value, allow_nan=False, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return "it has text that is not valid Unicode"
    except (TypeError, ValueError, RecursionError) as exc:
        return str(exc) or type(exc).__name__
    if max_bytes is not None and len(encoded) > max_bytes:
        return f"it is {len(encoded)} bytes of JSON, more than the limit of {max_bytes}"
    return None


def format_duration(seconds: float) -> str:
    if seconds < 1 and seconds != 0:
        return f"{round(seconds * 1000)}ms"
    minutes, secs = divmod(seconds, 60)
    hours, minutes = divmod(int(minutes), 60)
    parts = []
    if hours:
        parts.append(f"{hours}h")
    if minutes:
        parts.append(f"{minutes}m")
    if secs or not parts:
        parts.append(f"{secs:g}s")
    return "".join(parts)


def format_time(timestamp: float | None) -> str | None:
    """Unix seconds to RFC 3339 UTC with microseconds, e.g. 2026-11-29T08:09:44.123456Z."""
    if timestamp is None:
        return None
    return _format_seconds(timestamp)


@lru_cache(maxsize=1024)
def _format_seconds(timestamp: float) -> str:
    # Cached: the jobs of one batch share their time stamps (created, updated, run at),
    # and rendering them was a tenth of the time of a 1000-job POST /jobs/batch.
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="microseconds")[:-6] + "Z"


def parse_time(text: str) -> float:
    """RFC 3339 timestamp (with a zone: `Z` or an offset) to Unix seconds."""
    if not isinstance(text, str) or len(text) > 64:
        raise ValueError("not an RFC 3339 timestamp")
    candidate = text.strip()
    if candidate[-1:] in ("z", "Z"):
        candidate = candidate[:-1] + "+00:00"
    try:
        moment = datetime.fromisoformat(candidate)
    except ValueError:
        raise ValueError(f"{text!r} is not an RFC 3339 timestamp") from None
    if moment.tzinfo is None:
        raise ValueError(f"{text!r} has no time zone (add Z or an offset such as +00:00)")
    if "T" not in candidate.upper() and " " not in candidate:
        raise ValueError(f"{text!r} is a date, not a timestamp")
    return moment.timestamp()
