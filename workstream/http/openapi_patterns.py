"""The regular expressions of the API description that state a server-side bound.

A schema-driven client or fuzzer takes every string matching a pattern as valid, so each
pattern here only matches what the server accepts. Where the server's rule cannot be
written as a regular expression (a sum of durations up to 366 days, a time up to 366 days
from *now*), the pattern describes a part of what the server accepts that is always
accepted, and the description says so:

* `DELAY_TEXT_PATTERN`: a duration string of `delay`, in the forms `parse_duration`
  accepts (units h, m, s, ms, each at most once, in that order, or a bare number of
  seconds), with digits bounded so that every match is at most 366 days;
* `run_at_pattern(now)`: an RFC 3339 time whose year and month come before the month
  that is 365 days after `now`. The document is built when the server starts, so the
  bound only becomes more cautious while the server runs: a time it allows is always
  within 366 days of any later moment.

Patterns are ECMA-262 (JSON Schema's dialect) and also valid Python `re`.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from workstream.jobs.limits import MAX_DELAY_SECONDS

# What Python's str.strip() removes (the server strips `delay` and `run_at`), written
# out: ECMA's \s differs from it (it has U+FEFF and lacks U+001C-U+001F and U+0085).
_SPACE = r"[\t\n\x0b\x0c\r\x1c-\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*"
_FRACTION = r"(\.[0-9]+)?"


def _bounded(max_digits: int) -> str:
    """A decimal number below 10**max_digits, leading zeros allowed."""
    return rf"0*[0-9]{{1,{max_digits}}}{_FRACTION}"


# Below 8000 h + 10000 m + 100000 s + 100000 s = 29,600,000 s, under 366 days (31,622,400).
_HOURS = rf"0*([0-9]{{1,3}}|[1-7][0-9]{{3}}){_FRACTION}[hH]"
_MINUTES = rf"{_bounded(4)}[mM]"
_SECONDS = rf"{_bounded(5)}[sS]"
_MILLISECONDS = rf"{_bounded(8)}[mM][sS]"
_UNITS = (_HOURS, _MINUTES, _SECONDS, _MILLISECONDS)
# One or more units in order: each alternative starts with a different unit present.
_DURATION = "|".join(
    "".join(
        f"({unit})" if position == first else f"({unit})?"
        for position, unit in enumerate(_UNITS)
        if position >= first
    )
    for first in range(len(_UNITS))
)
DELAY_TEXT_PATTERN = f"^{_SPACE}({_DURATION}|{_bounded(7)}){_SPACE}$"
DELAY_TEXT_MAX_SECONDS = 8000 * 3600 + 10**4 * 60 + 10**5 + 10**5
assert DELAY_TEXT_MAX_SECONDS <= MAX_DELAY_SECONDS


def from_to(low: int, limit: int, width: int) -> str:
    """A regex for the `width`-digit decimal numbers (zero-padded) from `low` (1 to 9) to
    `limit`, which must have `width` digits itself."""
    digits = str(limit)
    if len(digits) != width or not 1 <= low <= 9:
        raise ValueError(f"{limit} does not have {width} digits, or {low} is not 1 to 9")
    options = ["0" * (width - 1) + (f"[{low}-9]" if low < 9 else "9")]
    options += ["0" * (width - size) + f"[1-9][0-9]{{{size - 1}}}" for size in range(2, width)]
    options.append(digits)
    for index, digit in enumerate(digits):
        lowest = 1 if index == 0 else 0
        if int(digit) > lowest:
            below = f"[{lowest}-{int(digit) - 1}]" if int(digit) - 1 > lowest else str(lowest)
            rest = width - index - 1
            options.append(digits[:index] + below + (f"[0-9]{{{rest}}}" if rest else ""))
    return "(" + "|".join(options) + ")"


def run_at_pattern(now: float) -> str:
    """RFC 3339 times (as `format: date-time` has them, `T` or `t` or a space, `Z` or `z`
    or an offset) in a month before the one 365 days after `now`, from year 0002 (a
    time in year 1 may be refused: with a positive offset it lies in year 0).

    Why that is safe: such a time is before day 1 of that month, 00:00 local; its offset
    is less than a day, so it is before day 2, 00:00 UTC, which is at most 366 days after
    `now` since day 1 is at most 365 days after it."""
    bound = datetime.fromtimestamp(now, UTC) + timedelta(days=365)
    year, month = bound.year, bound.month
    options = [f"{from_to(2, year - 1, 4)}-(0[1-9]|1[0-2])"]
    if month > 1:
        months = "|".join(f"{earlier:02d}" for earlier in range(1, month))
        options.append(f"{year:04d}-({months})")
    year_month = "(" + "|".join(options) + ")"
    time = r"[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})"
    return f"^{_SPACE}{year_month}-[0-9]{{2}}[Tt ]{time}{_SPACE}$"


def _time_filter_pattern() -> str:
    """RFC 3339 times the `created_after` / `created_before` filters take, exactly: years
    0002 to 9998 (so that any offset stays within Python's datetimes), days 01 to 28 of
    any month, 29 to 31 of the months that always have them (February's 29th only in
    years divisible by 4 but not by 100, or by 400), `T`, `Z` or an offset: the strictest
    reading of `format: date-time`, so that a validator never calls a time of this pattern
    invalid. The server refuses any other text before it parses the rest."""
    year = from_to(2, 9998, 4)
    leap = r"([0-9]{2}(0[48]|[2468][048]|[13579][26])|(0[48]|[2468][048]|[13579][26])00)"
    day = (
        r"(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])"
        r"|(0[13-9]|1[0-2])-(29|30)"
        r"|(0[13578]|1[02])-31"
    )
    date = f"({year}-({day})|{leap}-02-29)"
    clock = r"([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,9})?"
    offset = r"(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])"
    return f"^{date}T{clock}{offset}$"


TIME_FILTER_PATTERN = _time_filter_pattern()
