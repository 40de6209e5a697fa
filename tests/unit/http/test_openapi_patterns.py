"""The patterns of /openapi.json that state a bound: every string they match is accepted
by the server (a schema-driven fuzzer checks exactly that: schemathesis's positive data
acceptance)."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from workstream.http.openapi_patterns import DELAY_TEXT_PATTERN, from_to, run_at_pattern
from workstream.jobs.limits import MAX_DELAY_SECONDS
from workstream.units import parse_duration, parse_time

# Hypothesis generates from Python's `re`, where `$` also matches before a final newline;
# JSON Schema's `$` does not, hence fullmatch on the pattern without its anchors.


def _strings(pattern: str) -> st.SearchStrategy[str]:
    return st.from_regex(pattern.removeprefix("^").removesuffix("$"), fullmatch=True)


@settings(max_examples=500)
@given(_strings(DELAY_TEXT_PATTERN).filter(lambda text: len(text) <= 64))
@example("7999.9h9999.9m99999.9s99999999.9ms")
@example("9999999.99")
@example(" 1M30s ")
def test_every_delay_text_of_the_pattern_is_accepted(text):
    assert 0 <= parse_duration(text) <= MAX_DELAY_SECONDS


@pytest.mark.parametrize("text", ["1s1s", "1s1m", "8000h", "99999999", "1 s", "", "1d"])
def test_the_delay_pattern_refuses_what_it_cannot_vouch_for(text):
    assert not re.fullmatch(DELAY_TEXT_PATTERN[1:-1], text)


NOW = datetime(2026, 12, 6, 8, 0, tzinfo=UTC).timestamp()
LEAP_NEW_YEAR = datetime(2028, 1, 1, tzinfo=UTC).timestamp()  # 2028 has 366 days


_OFFSETS = st.one_of(
    st.sampled_from(["Z", "z", "+00:00", "-23:59", "+23:59"]),
    st.builds(
        "{}{:02d}:{:02d}".format, st.sampled_from("+-"), st.integers(0, 23), st.integers(0, 59)
    ),
)
_TIMES = st.builds(
    lambda moment, separator, offset: moment.strftime(f"%Y-%m-%d{separator}%H:%M:%S.%f") + offset,
    st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(2100, 12, 31)),
    st.sampled_from("Tt "),
    _OFFSETS,
)


@pytest.mark.parametrize("now", [NOW, LEAP_NEW_YEAR, LEAP_NEW_YEAR - 1])
@settings(max_examples=1000)
@given(text=_TIMES)
@example(text="2027-11-30T23:59:59.999999-23:59")
@example(text="2028-11-30T23:59:59.999999-23:59")
@example(text="0002-01-01T00:00:00.000000+23:59")
def test_every_run_at_of_the_pattern_is_within_366_days(now, text):
    # strftime pads years below 1000 with zeros only on some platforms: skip the others.
    if not re.fullmatch(r"[0-9]{4}-.*", text):
        return
    if re.fullmatch(run_at_pattern(now)[1:-1], text):
        assert parse_time(text) - now <= MAX_DELAY_SECONDS
        assert datetime.fromtimestamp(parse_time(text), UTC).year >= 1  # renderable


def test_the_run_at_pattern_allows_the_next_eleven_months_and_refuses_later_ones():
    pattern = run_at_pattern(NOW)  # 2026-12-06: 365 days later is 2027-12-06

    assert re.fullmatch(pattern[1:-1], "2027-11-30T23:59:59.999999-23:59")
    assert re.fullmatch(pattern[1:-1], "0002-01-01t00:00:00z")
    assert re.fullmatch(pattern[1:-1], "2020-02-29 12:00:00+05:30")
    for refused in ("2027-12-01T00:00:00Z", "2727-01-01T00:00:00Z", "0001-01-01T00:00:00Z"):
        assert not re.fullmatch(pattern[1:-1], refused)


def test_from_to_matches_exactly_the_range():
    for low, limit in ((1, 1000), (2, 2026), (2, 1999), (9, 9999)):
        matched = [n for n in range(10_000) if re.fullmatch(from_to(low, limit, 4), f"{n:04d}")]
        assert matched == list(range(low, limit + 1))
