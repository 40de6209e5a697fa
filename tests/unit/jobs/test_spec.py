"""Submission checks (workstream/jobs/spec.py): untrusted JSON in, JobSpec or InvalidRequest out."""

from __future__ import annotations

import json

import pytest

from workstream.errors import InvalidRequest
from workstream.jobs.spec import (
    JOB_FIELDS,
    MAX_DELAY_SECONDS,
    MAX_RETRIES_LIMIT,
    MAX_TYPE_LENGTH,
    JobSpec,
    parse_job_spec,
)
from workstream.units import format_time

NOW = 1_700_000_000.0


def refused(body, *, index=None) -> str:
    with pytest.raises(InvalidRequest) as caught:
        parse_job_spec(body, now=NOW, index=index)
    assert caught.value.code == "invalid_request"
    return caught.value.message


# -- accepted ---------------------------------------------------------------------------


def test_minimal_spec():
    assert parse_job_spec({"type": "echo"}, now=NOW) == JobSpec(
        type="echo", payload={}, max_retries=None, run_at=None
    )


def test_full_spec_with_delay():
    spec = parse_job_spec(
        {
            "type": "resize_image",
            "payload": {"w": 10, "tags": ["a"]},
            "max_retries": 7,
            "delay": 30,
        },
        now=NOW,
    )
    assert spec == JobSpec(
        type="resize_image", payload={"w": 10, "tags": ["a"]}, max_retries=7, run_at=NOW + 30
    )


def test_full_spec_with_run_at():
    spec = parse_job_spec(
        {
            "type": "email_send",
            "payload": None,
            "max_retries": 0,
            "run_at": "2023-11-14T22:13:20.500000Z",
        },
        now=NOW,
    )
    assert spec == JobSpec(type="email_send", payload=None, max_retries=0, run_at=NOW + 0.5)


@pytest.mark.parametrize(
    "payload", [None, 0, "text", [1, 2], {"nested": {"deep": [None, True, 1.5]}}, "日本語"]
)
def test_payload_is_any_json_value(payload):
    assert parse_job_spec({"type": "echo", "payload": payload}, now=NOW).payload == payload


@pytest.mark.parametrize("job_type", ["a", "echo", "A.b:c-d_e", "0", "x" * MAX_TYPE_LENGTH])
def test_valid_types(job_type):
    assert parse_job_spec({"type": job_type}, now=NOW).type == job_type


@pytest.mark.parametrize("max_retries", [0, 1, MAX_RETRIES_LIMIT])
def test_valid_max_retries(max_retries):
    assert parse_job_spec({"type": "t", "max_retries": max_retries}, now=NOW).max_retries == (
        max_retries
    )


@pytest.mark.parametrize(
    ("delay", "seconds"),
    [
        (0, 0.0),
        (2, 2.0),
        (1.5, 1.5),
        ("2s", 2.0),
        ("1m30s", 90.0),
        ("500ms", 0.5),
        ("2h", 7200.0),
        ("10", 10.0),
        (MAX_DELAY_SECONDS, MAX_DELAY_SECONDS),
    ],
)
def test_delay_as_number_or_duration(delay, seconds):
    assert parse_job_spec({"type": "t", "delay": delay}, now=NOW).run_at == NOW + seconds


def test_null_delay_or_run_at_means_now():
    assert parse_job_spec({"type": "t", "delay": None}, now=NOW).run_at is None
    assert parse_job_spec({"type": "t", "run_at": None}, now=NOW).run_at is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2023-11-14T22:13:20Z", NOW),
        ("2023-11-14T22:13:20z", NOW),
        ("2023-11-14T23:13:20+01:00", NOW),
        ("2023-11-14T17:13:20.25-05:00", NOW + 0.25),
        ("2023-11-14T22:13:30.000000Z", NOW + 10),
    ],
)
def test_run_at_in_rfc3339(text, expected):
    assert parse_job_spec({"type": "t", "run_at": text}, now=NOW).run_at == expected


def test_run_at_in_the_past_is_accepted():
    assert parse_job_spec({"type": "t", "run_at": format_time(NOW - 60)}, now=NOW).run_at == (
        NOW - 60
    )


def test_spec_from_json_text():
    body = json.loads('{"type": "echo", "payload": {"k": "v"}, "delay": "1m30s"}')
    assert parse_job_spec(body, now=NOW, index=0).run_at == NOW + 90


# -- refused ----------------------------------------------------------------------------


@pytest.mark.parametrize("body", [None, [], ["type"], "echo", 1, True])
def test_a_job_must_be_an_object(body):
    assert "must be a JSON object" in refused(body)


def test_unknown_field_is_named():
    message = refused({"type": "t", "urgency": 5})
    assert "'urgency'" in message
    for field in JOB_FIELDS:
        assert field in message


def test_first_unknown_field_is_named_in_sorted_order():
    assert "'aaa'" in refused({"type": "t", "zzz": 1, "aaa": 2})


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"type": None},
        {"type": ""},
        {"type": "   "},
        {"type": "\t\n"},
        {"type": 5},
        {"type": ["echo"]},
        {"type": True},
        {"payload": {}},
    ],
    ids=[
        "missing",
        "null",
        "empty",
        "blank",
        "whitespace",
        "number",
        "list",
        "bool",
        "only-payload",
    ],
)
def test_type_is_required_and_a_non_empty_string(body):
    assert "'type' is required" in refused(body)


@pytest.mark.parametrize(
    "job_type",
    ["x" * (MAX_TYPE_LENGTH + 1), "a b", "a/b", "é", "echo;", " echo", "a\tb", "a\x00b"],
)
def test_type_length_and_characters(job_type):
    assert "'type' must be at most" in refused({"type": job_type})


@pytest.mark.parametrize("job_type", ["echo\n", "\necho", "echo\r\n", "ech\no"])
def test_type_with_a_newline_is_refused(job_type):
    # `$` alone would let a trailing newline through.
    assert "'type' must be at most" in refused({"type": job_type})


@pytest.mark.parametrize(
    "max_retries", [True, False, -1, MAX_RETRIES_LIMIT + 1, 1.0, 2.5, "3", [3], {"n": 3}]
)
def test_max_retries_must_be_a_whole_number_in_range(max_retries):
    message = refused({"type": "t", "max_retries": max_retries})
    assert "'max_retries' must be a whole number from 0 to 100" in message


@pytest.mark.parametrize(
    "delay",
    [-1, -0.001, float("nan"), float("inf"), float("-inf")],
)
def test_delay_number_must_be_finite_and_not_negative(delay):
    assert "'delay' must be zero or more seconds" in refused({"type": "t", "delay": delay})


@pytest.mark.parametrize("delay", [True, False, [1], {"s": 1}, "9" * 65])
def test_delay_must_be_a_number_or_duration(delay):
    assert "'delay' must be seconds" in refused({"type": "t", "delay": delay})


@pytest.mark.parametrize(
    "delay", ["soon", "", "10x", "-1s", "1s2", "nan", "inf", "1e400", "-5", "2 s"]
)
def test_delay_string_must_be_a_duration(delay):
    message = refused({"type": "t", "delay": delay})
    assert message.startswith("'delay': ")
    assert "duration" in message


@pytest.mark.parametrize(
    "delay", [MAX_DELAY_SECONDS + 1, 1e300, "8785h", "99999999999999999999h", 10**12]
)
def test_delay_at_most_366_days(delay):
    assert "at most 366 days" in refused({"type": "t", "delay": delay})


@pytest.mark.parametrize("sign", ["", "-"])
def test_delay_integer_beyond_float_range_is_refused(sign):
    # Valid JSON; float() of it raises OverflowError, which must not escape.
    body = json.loads('{"type": "t", "delay": ' + sign + "1" + "0" * 400 + "}")
    assert "'delay'" in refused(body, index=2)


@pytest.mark.parametrize("run_at", [None, "2023-11-14T22:13:20Z"])
def test_delay_and_run_at_together_are_refused(run_at):
    message = refused({"type": "t", "delay": 5, "run_at": run_at})
    assert "'delay' or 'run_at', not both" in message


@pytest.mark.parametrize("run_at", ["2023-11-14T22:13:20", "2023-11-14T22:13:20.5", "2023-11-14"])
def test_run_at_without_a_zone_is_refused(run_at):
    message = refused({"type": "t", "run_at": run_at})
    assert message.startswith("'run_at': ")
    assert "time zone" in message


@pytest.mark.parametrize("run_at", [1700000000, 1.5, True, ["2023-11-14T22:13:20Z"], {}])
def test_run_at_must_be_a_string(run_at):
    message = refused({"type": "t", "run_at": run_at})
    assert "'run_at' must be an RFC 3339 timestamp string" in message


@pytest.mark.parametrize("run_at", ["", "tomorrow", "2023-13-40T00:00:00Z", "x" * 65])
def test_run_at_must_parse(run_at):
    assert refused({"type": "t", "run_at": run_at}).startswith("'run_at': ")


def test_run_at_at_most_366_days_ahead():
    far = format_time(NOW + MAX_DELAY_SECONDS + 60)
    assert "at most 366 days ahead" in refused({"type": "t", "run_at": far})


# -- batch positions --------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        "not an object",
        {"type": "t", "bogus": 1},
        {"type": ""},
        {"type": "bad type"},
        {"type": "t", "max_retries": -1},
        {"type": "t", "delay": 1, "run_at": "2023-11-14T22:13:20Z"},
        {"type": "t", "delay": "soon"},
        {"type": "t", "delay": -1},
        {"type": "t", "delay": True},
        {"type": "t", "delay": 10**12},
        {"type": "t", "run_at": 5},
        {"type": "t", "run_at": "2023-11-14T22:13:20"},
    ],
)
def test_messages_name_the_index_within_a_batch(body):
    assert refused(body, index=3).startswith("jobs[3]: ")
    assert not refused(body).startswith("jobs[")


# -- priority ---------------------------------------------------------------------------


@pytest.mark.parametrize("priority", [0, 5, 9])
def test_priority_is_kept(priority):
    assert parse_job_spec({"type": "t", "priority": priority}, now=NOW).priority == priority


def test_priority_absent_or_null_takes_the_default():
    assert parse_job_spec({"type": "t"}, now=NOW).priority is None
    assert parse_job_spec({"type": "t", "priority": None}, now=NOW).priority is None


@pytest.mark.parametrize("priority", [-1, 10, 1.5, "1", True, [1], 10**20])
def test_bad_priority_is_refused_naming_the_field(priority):
    message = refused({"type": "t", "priority": priority})
    assert "'priority'" in message and "0" in message and "9" in message


def test_bad_priority_in_a_batch_names_the_index():
    assert refused({"type": "t", "priority": 11}, index=3).startswith("jobs[3]: 'priority'")
