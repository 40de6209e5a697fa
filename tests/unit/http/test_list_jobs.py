"""GET /jobs: filters, limit, the opaque cursor and the Link header."""

from __future__ import annotations

import base64
import re
from datetime import UTC, datetime
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.unit.http.support import error_code
from workstream.http.openapi_patterns import TIME_FILTER_PATTERN
from workstream.http.query import (
    CURSOR_PATTERN,
    MAX_POSITION,
    decode_cursor,
    encode_cursor,
    parse_list_query,
)
from workstream.jobs.model import JobStatus
from workstream.units import parse_time

LINK = re.compile(r'^<(?P<url>[^>]+)>; rel="next"$')


def _next_url(result) -> str | None:
    link = result.headers.get("link")
    if link is None:
        return None
    match = LINK.match(link)
    assert match, link
    return match["url"]


def test_an_empty_queue_lists_no_jobs(client):
    result = client.simulate_get("/jobs")

    assert result.status_code == 200
    assert result.json == []
    assert "link" not in result.headers


def test_jobs_are_listed_newest_first_with_a_default_limit_of_100(client, service):
    jobs = [service.add_job() for _ in range(3)]

    result = client.simulate_get("/jobs")

    assert [job["id"] for job in result.json] == [job.id for job in reversed(jobs)]
    assert service.list_calls == [{"status": None, "job_type": None, "limit": 100, "after": None}]


def test_filters_reach_the_service(client, service):
    service.add_job(status=JobStatus.FAILED, type="sleep")
    service.add_job(status=JobStatus.FAILED, type="echo")

    result = client.simulate_get("/jobs", query_string="status=failed&type=sleep&limit=5")

    assert [job["type"] for job in result.json] == ["sleep"]
    assert service.list_calls[-1] == {
        "status": JobStatus.FAILED,
        "job_type": "sleep",
        "limit": 5,
        "after": None,
    }


def test_pages_follow_the_link_header_keeping_filters_and_limit(client, service):
    ids = [service.add_job(type="sleep").id for _ in range(5)]
    service.add_job(type="echo")
    seen: list[str] = []
    url: str | None = "/jobs?type=sleep&limit=2"

    while url is not None:
        parts = urlsplit(url)
        result = client.simulate_get(parts.path, query_string=parts.query)
        assert result.status_code == 200
        seen += [job["id"] for job in result.json]
        url = _next_url(result)
        if url is not None:
            query = parse_qs(urlsplit(url).query)
            assert query["type"] == ["sleep"] and query["limit"] == ["2"]

    assert seen == ids[::-1]
    assert len(service.list_calls) == 3


def test_the_cursor_is_opaque_and_round_trips():
    cursor = encode_cursor((1_800_000_000.123456, 12345))

    assert "12345" not in cursor
    assert re.fullmatch(r"[A-Za-z0-9_-]{22}", cursor)
    assert decode_cursor(cursor) == (1_800_000_000.123456, 12345)


@pytest.mark.parametrize(
    "position",
    [
        (0.0, 0),
        (1.0, 1),
        (1_800_000_000.5, 255),
        (5e-324, 2**32),
        (1.7976931348623157e308, MAX_POSITION),
    ],
)
def test_every_position_round_trips_through_a_cursor_of_the_pattern(position):
    cursor = encode_cursor(position)

    assert re.fullmatch(CURSOR_PATTERN, cursor)
    assert decode_cursor(cursor) == position


@given(st.from_regex(CURSOR_PATTERN.removeprefix("^").removesuffix("$"), fullmatch=True))
def test_every_cursor_the_description_allows_is_accepted(cursor):
    # The pattern in /openapi.json is exact: what matches it decodes, to a position the
    # encoder gives the same text for.
    assert encode_cursor(decode_cursor(cursor)) == cursor


@pytest.mark.parametrize(
    "cursor",
    [
        "",
        "not base64!",
        "abc",
        base64.urlsafe_b64encode(b"v2:5").decode(),
        base64.urlsafe_b64encode(b"v1:-5").decode(),
        base64.urlsafe_b64encode(b"v1:abc").decode(),
        base64.urlsafe_b64encode(b"v1:05").decode(),
        base64.urlsafe_b64encode(b"v1:" + b"9" * 30).decode(),
        base64.urlsafe_b64encode(b"\xff\xfe").decode(),
        "A" * 65,
        "0",  # the description allowed it once; now neither does
        "AAAAAAAAAA",  # 10 characters
        "AAAAAAAAAAAA",  # 12
        "AAAAAAAAAAB",  # 11, but not the canonical encoding of any 8 bytes
        "gAAAAAAAAAA",  # 2**63: past any store's integer range
        "AAAAAAAAA=A",
        "AAAAAAAAAAAAAAAAAAAAAB",  # 22, but not the canonical encoding of any 16 bytes
        "gAAAAAAAAAAAAAAAAAAAAA",  # a negative time
        "f_AAAAAAAAAAAAAAAAAAAA",  # an infinite time
        "AAAAAAAAAACAAAAAAAAAAA",  # a submission number of 2**63 or more
    ],
)
def test_an_invalid_cursor_is_400_invalid_cursor(client, service, cursor):
    result = client.simulate_get("/jobs", query_string=f"cursor={cursor}")

    assert error_code(result, 400) == "invalid_cursor"
    assert service.list_calls == []


@pytest.mark.parametrize(
    "query",
    [
        "status=done",
        "status=",
        "status=PENDING",
        "type=",
        "type=" + "x" * 201,
        "limit=0",
        "limit=1001",
        "limit=-1",
        "limit=ten",
        "limit=1.5",
        "limit=",
        "limit=99999999999999999999",
        "staus=failed",
        "status=failed&status=pending",
        "limit=1&limit=1",
        "type=%ff",
        "&".join(f"x{index}=1" for index in range(50)),
    ],
)
def test_bad_parameters_are_400(client, service, query):
    result = client.simulate_get("/jobs", query_string=query)

    assert error_code(result, 400) == "invalid_request"
    assert service.list_calls == []


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ("order=new", "'order'"),
        ("order=", "'order'"),
        ("order=NEWEST", "'order'"),
        ("created_after=yesterday", "'created_after'"),
        ("created_after=2026-01-31", "'created_after'"),
        ("created_after=2026-01-31T12:00:00", "'created_after'"),  # no zone
        ("created_before=", "'created_before'"),
        ("id_prefix=", "'id_prefix'"),
        ("id_prefix=xyz", "'id_prefix'"),
        ("id_prefix=" + "a" * 37, "'id_prefix'"),
        ("idempotency_key=", "'idempotency_key'"),
        ("idempotency_key=a%20b", "'idempotency_key'"),
        ("error=ab", "'error'"),
        ("error=" + "x" * 201, "'error'"),
        ("error=a%0Abc", "'error'"),
    ],
)
def test_bad_filters_are_400_naming_the_parameter(client, service, query, named):
    result = client.simulate_get("/jobs", query_string=query)

    assert error_code(result, 400) == "invalid_request"
    assert named in result.json["error"]
    assert service.list_calls == []


def test_order_and_every_filter_reach_the_service(client, service):
    query = (
        "order=oldest&created_after=2027-01-15T08:00:00Z&created_before=2027-01-15T09:00:00%2B01:00"
        "&id_prefix=ABC-1&idempotency_key=key-1&error=Boom%20here"
    )

    assert client.simulate_get("/jobs", query_string=query).status_code == 200

    seen = service.queries[-1]
    assert seen.order == "oldest"
    eight = datetime(2027, 1, 15, 8, tzinfo=UTC).timestamp()
    assert seen.created_after == eight
    assert seen.created_before == eight  # 09:00 at +01:00 is the same instant
    assert seen.id_prefix == "abc-1"  # ids are lower case
    assert seen.idempotency_key == "key-1"
    assert seen.error == "Boom here"


def test_filters_select_and_the_link_keeps_them(client, service):
    wanted = [
        service.add_job(status=JobStatus.FAILED, last_error="RuntimeError: Disk FULL here")
        for _ in range(3)
    ]
    service.add_job(status=JobStatus.FAILED, last_error="ValueError: bad input")
    service.add_job()
    seen: list[str] = []
    url: str | None = "/jobs?order=oldest&status=failed&error=disk%20full&limit=2"

    while url is not None:
        parts = urlsplit(url)
        result = client.simulate_get(parts.path, query_string=parts.query)
        assert result.status_code == 200
        seen += [job["id"] for job in result.json]
        url = _next_url(result)
        if url is not None:
            query = parse_qs(urlsplit(url).query)
            assert query["error"] == ["disk full"] and query["order"] == ["oldest"]
            assert query["status"] == ["failed"]

    assert seen == [job.id for job in wanted]


def test_a_time_range_round_trips_through_the_link(client, service):
    for _ in range(3):
        service.add_job()
    query = "created_after=2020-01-01T00:00:00.000001Z&created_before=2030-01-01T00:00:00Z&limit=1"

    first = client.simulate_get("/jobs", query_string=query)
    url = _next_url(first)
    assert url is not None
    link_query = parse_qs(urlsplit(url).query)
    assert link_query["created_after"] == ["2020-01-01T00:00:00.000001Z"]
    assert link_query["created_before"] == ["2030-01-01T00:00:00.000000Z"]
    assert len(first.json) == 1


def test_unknown_parameters_are_named(client):
    result = client.simulate_get("/jobs", query_string="page=2&sort=asc")

    assert "page, sort" in result.json["error"]


@pytest.mark.parametrize("limit", ["1", "1000", "0100"])
def test_limits_in_range_are_accepted(client, limit):
    assert client.simulate_get("/jobs", query_string=f"limit={limit}").status_code == 200


def test_listing_while_storage_is_down_is_503(client, service):
    service.storage_down = True

    assert error_code(client.simulate_get("/jobs"), 503) == "storage_unavailable"


def test_a_cursor_past_any_stored_position_is_refused_not_a_500(client) -> None:
    import base64

    for position in (2**63, 10**19 - 1):
        cursor = base64.urlsafe_b64encode(f"v1:{position}".encode()).decode().rstrip("=")
        result = client.simulate_get("/jobs", query_string=f"cursor={cursor}")
        assert result.status_code == 400
        assert result.json["code"] == "invalid_cursor"


def test_a_huge_unknown_parameter_name_is_echoed_clipped(client):
    name = "x" * 60_000
    result = client.simulate_get("/jobs", query_string=f"{name}=1&sort=asc")

    assert error_code(result, 400) == "invalid_request"
    assert len(result.content) < 400
    assert "sort, " + "x" * 40 + "... (allowed" in result.json["error"]


@settings(max_examples=200, deadline=None)
@given(st.from_regex(TIME_FILTER_PATTERN.removeprefix("^").removesuffix("$"), fullmatch=True))
def test_every_time_the_description_allows_is_accepted(text):
    query = parse_list_query(urlencode({"created_after": text, "created_before": text}))
    assert query.created_after == query.created_before == parse_time(text)


@pytest.mark.parametrize(
    "text",
    [
        "2027-02-29T00:00:00Z",  # not a leap year
        "2100-02-29T00:00:00Z",  # divisible by 100, not by 400
        "2027-04-31T00:00:00Z",
        "2027-01-15T24:00:00Z",
        "2027-01-15T08:00:60Z",  # a leap second: Python has none
        "0001-01-01T00:00:00+01:00",  # before year 1 in UTC
        "9999-12-31T23:59:59-01:00",  # after year 9999 in UTC
        " 2027-01-15T08:00:00Z",
        "2027-01-15T08:00:00.1234567890Z",  # more than nanoseconds
        "2027-01-15 08:00:00Z",  # RFC 3339 allows a space; JSON Schema's date-time does not
        "2027-01-15t08:00:00z",
    ],
)
def test_times_outside_the_pattern_are_400(client, service, text):
    result = client.simulate_get("/jobs", query_string=urlencode({"created_after": text}))
    assert error_code(result, 400) == "invalid_request"
    assert "'created_after'" in result.json["error"]


def test_leap_days_that_exist_are_accepted(client):
    for text in ("2028-02-29T00:00:00Z", "2000-02-29T12:00:00+05:30", "2400-02-29T00:00:00Z"):
        query = urlencode({"created_before": text})
        assert client.simulate_get("/jobs", query_string=query).status_code == 200, text
