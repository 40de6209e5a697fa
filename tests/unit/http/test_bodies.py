"""Request bodies: every kind of bad input is a 4xx with the JSON error body, nothing is
stored, and nothing answers 5xx (RELIABILITY.md items 12-14)."""

from __future__ import annotations

import io

import pytest

from tests.unit.http.support import JSON_HEADERS, error_code
from workstream.errors import InvalidJson
from workstream.http.body import MAX_BODY_BYTES, MAX_NESTING, check_structure, parse_json

ONE_MIB = 1_048_576


def _nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def _job_with_payload(payload: bytes) -> bytes:
    return b'{"type": "echo", "payload": ' + payload + b"}"


MALFORMED_BODIES = {
    "truncated": b'{"type": "echo", "payload": {"a": ',
    "trailing-comma-object": b'{"type": "echo",}',
    "trailing-comma-array": _job_with_payload(b"[1, 2,]"),
    "single-quotes": b"{'type': 'echo'}",
    "whitespace-only": b"   \n ",
    "two-documents": b'{"type": "echo"} {"type": "echo"}',
    "invalid-utf8": b'{"type": "echo", "payload": "\xff\xfe"}',
    "utf8-encoded-surrogate": b'{"type": "echo", "payload": "\xed\xa0\x80"}',
    "lone-surrogate-escape": _job_with_payload(b'"\\ud800"'),
    "lone-low-surrogate-in-key": _job_with_payload(b'{"\\udc00": 1}'),
    "NaN": _job_with_payload(b"NaN"),
    "Infinity": _job_with_payload(b"Infinity"),
    "-Infinity": _job_with_payload(b"-Infinity"),
    "1e999": _job_with_payload(b"1e999"),
    "-1e999": _job_with_payload(b"-1e999"),
    "5000-digit-integer": _job_with_payload(b"9" * 5000),
    "10000-deep-arrays": _job_with_payload(_nested(10_000)),
    "10000-deep-objects": _job_with_payload(b'{"a":' * 10_000 + b"1" + b"}" * 10_000),
    "33-deep": _job_with_payload(_nested(MAX_NESTING)),
    "utf8-bom": b'\xef\xbb\xbf{"type": "echo"}',
}


@pytest.mark.parametrize("raw", MALFORMED_BODIES.values(), ids=MALFORMED_BODIES.keys())
@pytest.mark.parametrize("path", ["/jobs", "/jobs/batch"])
def test_malformed_json_is_400_invalid_json(client, service, raw, path):
    result = client.simulate_post(path, body=raw, headers=JSON_HEADERS)

    assert error_code(result, 400) == "invalid_json"
    assert service.submitted == []


def test_an_empty_body_is_400(client, service):
    result = client.simulate_post("/jobs", body=b"", headers=JSON_HEADERS)

    assert error_code(result, 400) == "invalid_json"
    assert "empty" in result.json["error"]


@pytest.mark.parametrize(
    "raw", [b"[]", b'[{"type": "echo"}]', b'"echo"', b"42", b"null", b"true"], ids=repr
)
@pytest.mark.parametrize("path", ["/jobs", "/jobs/batch"])
def test_a_top_level_other_than_an_object_is_400(client, service, raw, path):
    result = client.simulate_post(path, body=raw, headers=JSON_HEADERS)

    assert error_code(result, 400) == "invalid_request"
    assert service.submitted == []


def test_100000_keys_are_accepted(client, service):
    payload = b"{" + b",".join(b'"%x":0' % index for index in range(100_000)) + b"}"
    raw = _job_with_payload(payload)
    assert len(raw) <= MAX_BODY_BYTES

    result = client.simulate_post("/jobs", body=raw, headers=JSON_HEADERS)

    assert result.status_code == 201
    assert len(result.json["payload"]) == 100_000


def test_nesting_up_to_the_limit_is_accepted(client):
    # The job object is level 1, so the payload may add MAX_NESTING - 1 levels.
    raw = _job_with_payload(_nested(MAX_NESTING - 1))

    assert client.simulate_post("/jobs", body=raw, headers=JSON_HEADERS).status_code == 201


def test_valid_surrogate_pairs_and_unicode_are_accepted(client):
    raw = _job_with_payload('{"emoji": "\\ud83d\\ude00", "text": "żółw"}'.encode())

    result = client.simulate_post("/jobs", body=raw, headers=JSON_HEADERS)

    assert result.status_code == 201
    assert result.json["payload"] == {"emoji": "\U0001f600", "text": "żółw"}


# -- sizes -----------------------------------------------------------------------------------


def _body_of_size(size: int) -> bytes:
    head, tail = b'{"type": "echo", "payload": "', b'"}'
    return head + b"x" * (size - len(head) - len(tail)) + tail


def test_a_body_of_exactly_1_mib_is_accepted(client):
    result = client.simulate_post("/jobs", body=_body_of_size(ONE_MIB), headers=JSON_HEADERS)

    assert result.status_code == 201


def test_a_body_one_byte_over_1_mib_is_413(client, service):
    result = client.simulate_post("/jobs", body=_body_of_size(ONE_MIB + 1), headers=JSON_HEADERS)

    assert error_code(result, 413) == "payload_too_large"
    assert service.submitted == []


def test_a_declared_huge_content_length_is_413_without_reading(client):
    class Unreadable(io.BytesIO):
        def read(self, size: int | None = -1) -> bytes:
            raise AssertionError("the body must not be read")

    headers = {**JSON_HEADERS, "Content-Length": str(10**12)}

    result = client.simulate_post("/jobs", headers=headers, extras={"wsgi.input": Unreadable()})

    assert error_code(result, 413) == "payload_too_large"


def test_a_body_longer_than_its_content_length_is_bounded(make_client):
    """A stream with no end is never read to its end: every read is bounded."""
    limited = make_client(max_body_bytes=100)
    read_sizes: list[int] = []

    class Endless(io.BytesIO):
        def read(self, size: int | None = -1) -> bytes:
            assert size is not None and size >= 0, "an unbounded read"
            read_sizes.append(size)
            return b" " * size

    headers = {**JSON_HEADERS, "Content-Length": "100"}
    result = limited.simulate_post("/jobs", headers=headers, extras={"wsgi.input": Endless()})

    assert error_code(result, 400) == "invalid_json"  # 100 spaces: within the limit, not JSON
    assert sum(read_sizes) <= 101


def test_the_body_limit_is_configurable(make_client):
    limited = make_client(max_body_bytes=64)

    result = limited.simulate_post("/jobs", body=_body_of_size(65), headers=JSON_HEADERS)

    assert error_code(result, 413) == "payload_too_large"


# -- content types ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content_type",
    [
        None,
        "",
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/json; charset=latin-1",
        "application/json; charset=utf-16",
        "application/json; boundary=x",
        "application/json; charset=utf-8; extra=1",
        "application/jsonx",
        "application/problem+json",
    ],
)
@pytest.mark.parametrize("path", ["/jobs", "/jobs/batch"])
def test_other_content_types_are_415(client, service, content_type, path):
    headers = {} if content_type is None else {"Content-Type": content_type}

    result = client.simulate_post(path, body=b'{"type": "echo"}', headers=headers)

    assert error_code(result, 415) == "unsupported_media_type"
    assert service.submitted == []


# -- the parser on its own -------------------------------------------------------------------


def test_nesting_depth_counts_the_top_level_as_one():
    check_structure(parse_json(_nested(MAX_NESTING)))
    with pytest.raises(InvalidJson):
        check_structure(parse_json(_nested(MAX_NESTING + 1)))


def test_the_structure_check_does_not_recurse():
    deep: list = []
    for _ in range(100_000):
        deep = [deep]

    with pytest.raises(InvalidJson):
        check_structure(deep)


@pytest.mark.parametrize("raw", [b"0.5", b"-0.0", b"1e308", b"9" * 4300, b'"\\u00e9"'])
def test_edge_values_that_are_valid_json_parse(raw):
    parse_json(raw)


def test_a_byte_order_mark_is_refused_in_plain_words(client) -> None:
    result = client.simulate_post(
        "/jobs", body=b"\xef\xbb\xbf{}", headers={"Content-Type": "application/json"}
    )
    assert result.status_code == 400
    assert "byte order mark" in result.json["error"]
    assert "utf-8-sig" not in result.json["error"]


DUPLICATE_KEYS = {
    "top-level": b'{"type": "echo", "type": "nope"}',
    "in-the-payload": _job_with_payload(b'{"amount": 1, "amount": 1000}'),
    "deep-in-the-payload": _job_with_payload(b'[{"a": {"b": 1, "b": 2}}]'),
    "same-value": b'{"type": "echo", "type": "echo"}',
}


@pytest.mark.parametrize("raw", DUPLICATE_KEYS.values(), ids=DUPLICATE_KEYS.keys())
def test_a_key_repeated_in_one_object_is_400_naming_it(client, service, raw):
    # Last-one-wins would let a proxy or a client library validate one value while the
    # server keeps another.
    result = client.simulate_post("/jobs", body=raw, headers=JSON_HEADERS)

    assert error_code(result, 400) == "invalid_json"
    assert "appears twice" in result.json["error"]
    assert service.submitted == []


def test_a_repeated_key_is_refused_in_a_batch_and_in_cancel(client, service):
    job = service.add_job()
    batch = b'{"jobs": [{"type": "echo"}], "jobs": [{"type": "echo"}]}'
    cancel = b'{"a": 1, "a": 1}'

    assert error_code(client.simulate_post("/jobs/batch", body=batch, headers=JSON_HEADERS), 400)
    assert error_code(
        client.simulate_post(f"/jobs/{job.id}/cancel", body=cancel, headers=JSON_HEADERS), 400
    )
    assert service.submitted == []


def test_the_same_key_in_different_objects_is_fine():
    assert parse_json(b'{"a": {"a": 1}, "b": [{"a": 2}, {"a": 3}]}') == {
        "a": {"a": 1},
        "b": [{"a": 2}, {"a": 3}],
    }


def test_a_repeated_long_key_is_named_clipped():
    with pytest.raises(InvalidJson) as refused:
        parse_json(b'{"' + b"k" * 5000 + b'": 1, "' + b"k" * 5000 + b'": 2}')

    assert len(refused.value.message) < 200
