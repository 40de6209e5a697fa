"""Durations and timestamps (workstream/units.py), shared by config, API and CLI."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from workstream.units import format_duration, format_time, parse_duration, parse_time

# -- durations --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("500ms", 0.5),
        ("10s", 10.0),
        ("1m30s", 90.0),
        ("2h", 7200.0),
        ("1.5s", 1.5),
        ("0s", 0.0),
        ("0", 0.0),
        ("10", 10.0),
        ("2.5", 2.5),
        ("1h2m3s", 3723.0),
        ("1m500ms", 60.5),
        ("5m", 300.0),
        (" 10s ", 10.0),
        ("2H", 7200.0),
        ("1MS", 0.001),
    ],
)
def test_parse_duration(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds, abs=1e-12)


@pytest.mark.parametrize(
    "text", ["soon", "", "   ", "10x", "-1s", "1s2", "s", "ms", "1 s", "1m 30s", "10sec", "1.s"]
)
def test_parse_duration_refuses_non_durations(text):
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


@pytest.mark.parametrize("text", ["-1", "-0.5", "nan", "inf", "-inf", "1e400"])
def test_parse_duration_refuses_negative_and_non_finite(text):
    with pytest.raises(ValueError, match=r"finite and not negative|is not a duration"):
        parse_duration(text)


def test_parse_duration_message_quotes_the_input():
    with pytest.raises(ValueError) as caught:
        parse_duration("soon")
    assert "'soon'" in str(caught.value)
    assert "500ms" in str(caught.value)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (0.5, "500ms"),
        (1.5, "1.5s"),
        (10, "10s"),
        (90, "1m30s"),
        (3600, "1h"),
        (3723, "1h2m3s"),
        (7200, "2h"),
    ],
)
def test_format_duration(seconds, text):
    assert format_duration(seconds) == text
    assert parse_duration(text) == seconds


# -- timestamps -------------------------------------------------------------------------

NOW = 1_700_000_000.0  # 2023-11-14T22:13:20Z


def test_format_time_is_rfc3339_utc_with_microseconds():
    assert format_time(NOW) == "2023-11-14T22:13:20.000000Z"
    assert format_time(NOW + 0.123456) == "2023-11-14T22:13:20.123456Z"
    assert format_time(0.0) == "1970-01-01T00:00:00.000000Z"


@settings(max_examples=300)
@given(st.floats(min_value=-2_000_000_000, max_value=4_000_000_000))
def test_format_time_writes_every_field_as_strftime_would(timestamp: float) -> None:
    """The fast form (isoformat, cached) against the plain one, seconds before and
    after 1970 included."""
    plain = datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    assert format_time(timestamp) == plain
    assert format_time(timestamp) == plain  # from the cache


def test_format_time_of_none_is_none():
    assert format_time(None) is None


@pytest.mark.parametrize(
    "timestamp", [0.0, 1.0, NOW, NOW + 0.5, NOW + 0.25, 1_800_000_000.125, 4_102_444_800.0]
)
def test_round_trip_is_exact_for_microsecond_times(timestamp):
    assert parse_time(format_time(timestamp)) == timestamp


@pytest.mark.parametrize("timestamp", [NOW + 0.123456, 1_764_403_784.987654, 1.000001])
def test_round_trip_keeps_microseconds(timestamp):
    assert parse_time(format_time(timestamp)) == pytest.approx(timestamp, abs=1e-6)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2023-11-14T22:13:20Z", NOW),
        ("2023-11-14T22:13:20z", NOW),
        ("2023-11-14T22:13:20.000000Z", NOW),
        ("2023-11-14T22:13:20+00:00", NOW),
        ("2023-11-14T23:43:20+01:30", NOW),
        ("2023-11-14T17:13:20-05:00", NOW),
        ("2023-11-15T07:13:20+09:00", NOW),
        ("2023-11-14T22:13:20.5Z", NOW + 0.5),
        ("2023-11-14 22:13:20Z", NOW),
        ("  2023-11-14T22:13:20Z  ", NOW),
    ],
)
def test_parse_time_with_z_and_offsets(text, expected):
    assert parse_time(text) == expected


@pytest.mark.parametrize(
    "text", ["2023-11-14T22:13:20", "2023-11-14T22:13:20.123456", "2023-11-14"]
)
def test_parse_time_refuses_a_time_without_a_zone(text):
    with pytest.raises(ValueError, match="no time zone"):
        parse_time(text)


@pytest.mark.parametrize(
    "text", ["", "now", "2023-11-14T25:00:00Z", "14/11/2023 22:13Z", "x" * 65, "2023-11-14T22Z0"]
)
def test_parse_time_refuses_garbage(text):
    with pytest.raises(ValueError):
        parse_time(text)


@pytest.mark.parametrize("value", [None, 1700000000, 1.5, b"2023-11-14T22:13:20Z"])
def test_parse_time_refuses_non_strings(value):
    with pytest.raises(ValueError, match="not an RFC 3339 timestamp"):
        parse_time(value)


def test_parse_time_agrees_with_datetime():
    moment = datetime(2031, 2, 3, 4, 5, 6, 789000, tzinfo=UTC)
    assert parse_time("2031-02-03T04:05:06.789Z") == moment.timestamp()
