"""The OpenAPI 3.0.3 description served at `GET /openapi.json`.

Written by hand as data, next to the code it describes, and kept true by tests: the set of
(method, path) operations must equal the app's routes, and every status code a route can
answer is listed with its body schema. Request schemas state the limits the server
enforces (`additionalProperties: false` where unknown fields are refused), so that a
client generator or a schema-driven fuzzer sees the same rules as the server.

Transport-level refusals by the HTTP server itself (a malformed request or an unsupported
transfer coding 400, a body over the limit 413, headers over 64 KiB 431) can happen on any
route, before routing; they carry the same Error body, are described in
`info.description`, and every operation lists them (`_TRANSPORT`), so that a client or a
fuzzer checking status codes against the document finds them there.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence
from typing import Any

from workstream.http import openapi_components as components
from workstream.http.body import MAX_BODY_BYTES, MAX_NESTING
from workstream.http.idempotency import MAX_KEY_LENGTH
from workstream.http.openapi_components import Schema, ref
from workstream.http.openapi_patterns import TIME_FILTER_PATTERN
from workstream.http.query import CURSOR_PATTERN, DEFAULT_LIMIT, ERROR_TEXT_PATTERN, MAX_LIMIT
from workstream.http.resources import MAX_ATTEMPTS_SHOWN
from workstream.jobs.limits import MAX_TYPE_LENGTH
from workstream.jobs.listing import MAX_ERROR_TEXT, MAX_ID_PREFIX, MIN_ERROR_TEXT, ORDERS
from workstream.jobs.model import JobStatus

API_VERSION = "0.1.0"

_DESCRIPTION = f"""\
A durable job queue: submit jobs, list them, cancel or retry them.

Request bodies are JSON sent as `Content-Type: application/json` (charset utf-8 only), at
most {MAX_BODY_BYTES} bytes, nested at most {MAX_NESTING} levels. Every error body is
`{{"error": "<message>", "code": "<code>"}}`; 5xx errors add `request_id`, also sent as
the `X-Request-Id` header of every response and written to the server log.

When the server is configured with an API token, every operation except `/health` (GET
and HEAD) requires `Authorization: Bearer <token>` and answers 401 without it. Without a token, no
authentication is needed.

Without a token, requests must be addressed to this server: `Host` must be its configured
HOST, `localhost`, `127.0.0.1` or `[::1]`, and a request that changes state must not carry
an `Origin` other than the server's own; otherwise 403 `forbidden` (DNS rebinding).

Before routing, the HTTP server itself may refuse any request with 400 (malformed HTTP,
or a transfer coding other than chunked), 413 (body over the limit) or 431 (headers over
64 KiB), with the same Error body. OPTIONS is not served (405).
"""


def _header(name: str) -> Schema:
    return {"$ref": f"#/components/headers/{name}"}


def _response(
    description: str, schema: Schema | None = None, headers: tuple[str, ...] = ()
) -> Schema:
    response: Schema = {
        "description": description,
        "headers": {name: _header(name) for name in ("X-Request-Id", *headers)},
    }
    if schema is not None:
        response["content"] = {"application/json": {"schema": schema}}
    return response


def _error(description: str, headers: tuple[str, ...] = ()) -> Schema:
    return _response(description, ref("Error"), headers)


def _server_error(description: str, headers: tuple[str, ...] = ()) -> Schema:
    return _response(description, ref("ServerError"), headers)


_UNAUTHORIZED = _error(
    "missing or invalid API token (only when the server has one)", ("WWW-Authenticate",)
)
_INTERNAL = _server_error("internal error (code `internal_error`); see the log for request_id")
_UNAVAILABLE = _server_error(
    "shutting down (`shutting_down`), storage unavailable (`storage_unavailable`) or the "
    "engine did not answer in time (`service_busy`)",
    headers=("Retry-After",),
)
_NOT_FOUND = _error("no job with this id (`not_found`)")
_BAD_BODY = _error(
    "invalid JSON (`invalid_json`: malformed, empty, NaN or Infinity, numbers out of range, "
    f"nesting over {MAX_NESTING} levels, lone surrogates), an invalid field "
    "(`invalid_request`), or a payload the job type's handler refuses (`invalid_payload`)"
)
_TOO_LARGE = _error(f"body over {MAX_BODY_BYTES} bytes (`payload_too_large`)")
_NOT_JSON = _error("Content-Type is not application/json (`unsupported_media_type`)")
_UNKNOWN_TYPE = _error("no handler for the job type (`unknown_job_type`); lists the known types")
_QUEUE_FULL = _error("the queue is at capacity (`queue_full`); retry later", ("Retry-After",))


_MALFORMED_HTTP = _error(
    "malformed HTTP, or a transfer coding other than chunked (`invalid_request`)"
)
_HEADERS_TOO_LARGE = _error("request headers over 64 KiB (`headers_too_large`)")
_FOREIGN = _error(
    "only without an API token: the Host is not this server's name or a loopback address, "
    "or a request that changes state comes from another Origin (`forbidden`)"
)
# What the HTTP server may answer on any operation before routing (see the module doc),
# and the refusals of requests addressed to another name (DNS rebinding).
_TRANSPORT = {
    "400": _MALFORMED_HTTP,
    "403": _FOREIGN,
    "413": _TOO_LARGE,
    "431": _HEADERS_TOO_LARGE,
}


def _with_transport_errors(paths: dict[str, Schema]) -> dict[str, Schema]:
    for item in paths.values():
        for operation in item.values():
            responses = operation["responses"]
            for status, response in _TRANSPORT.items():
                responses.setdefault(status, response)
            operation["responses"] = dict(sorted(responses.items()))
    return paths


def _list_parameters() -> list[Schema]:
    return [
        {
            "name": "status",
            "in": "query",
            "schema": {"type": "string", "enum": [status.value for status in JobStatus]},
        },
        {
            "name": "type",
            "in": "query",
            "schema": {"type": "string", "minLength": 1, "maxLength": MAX_TYPE_LENGTH},
        },
        {
            "name": "limit",
            "in": "query",
            "schema": {
                "type": "integer",
                "minimum": 1,
                "maximum": MAX_LIMIT,
                "default": DEFAULT_LIMIT,
            },
        },
        {
            "name": "cursor",
            "in": "query",
            "description": "opaque; copy it from the Link header of the previous page",
            "schema": {"type": "string", "pattern": CURSOR_PATTERN},
        },
        {
            "name": "order",
            "in": "query",
            "description": "`newest` first (by created_at) or `oldest` first",
            "schema": {"type": "string", "enum": list(ORDERS), "default": "newest"},
        },
        {
            "name": "created_after",
            "in": "query",
            "description": "jobs created at or after this time (RFC 3339, with a zone)",
            "schema": {"type": "string", "format": "date-time", "pattern": TIME_FILTER_PATTERN},
        },
        {
            "name": "created_before",
            "in": "query",
            "description": "jobs created before this time (RFC 3339, with a zone)",
            "schema": {"type": "string", "format": "date-time", "pattern": TIME_FILTER_PATTERN},
        },
        {
            "name": "id_prefix",
            "in": "query",
            "description": "jobs whose id starts with this (case-insensitive)",
            "schema": {"type": "string", "pattern": f"^[0-9a-fA-F-]{{1,{MAX_ID_PREFIX}}}$"},
        },
        {
            "name": "idempotency_key",
            "in": "query",
            "description": "the job submitted with this Idempotency-Key",
            "schema": {"type": "string", "pattern": f"^[\\x21-\\x7e]{{1,{MAX_KEY_LENGTH}}}$"},
        },
        {
            "name": "error",
            "in": "query",
            "description": "text found in the job's last error, case-insensitively",
            "schema": {
                "type": "string",
                "minLength": MIN_ERROR_TEXT,
                "maxLength": MAX_ERROR_TEXT,
                "pattern": ERROR_TEXT_PATTERN,
            },
        },
    ]


def _json_body(schema_name: str, required: bool = True) -> Schema:
    return {
        "required": required,
        "content": {"application/json": {"schema": ref(schema_name)}},
    }


# From a job in a response to the operations on it: stateful testing follows these.
def _job_links(pointer: str) -> Schema:
    return {
        name: {"operationId": operation, "parameters": {"job_id": f"$response.body#{pointer}"}}
        for name, operation in (
            ("GetJob", "getJob"),
            ("CancelJob", "cancelJob"),
            ("RetryJob", "retryJob"),
        )
    }


def _with_links(response: Schema, pointer: str) -> Schema:
    return {**response, "links": _job_links(pointer)}


def _job_action(operation_id: str, summary: str, conflict: str) -> Schema:
    return {
        "operationId": operation_id,
        "summary": summary,
        "parameters": [{"$ref": "#/components/parameters/JobId"}],
        "requestBody": _json_body("NoInput", required=False),
        "responses": {
            "200": _response("the job after the change", ref("Job")),
            "400": _error("a body other than {} (`invalid_json`, `invalid_request`)"),
            "401": _UNAUTHORIZED,
            "404": _NOT_FOUND,
            "409": _error(conflict),
            "413": _TOO_LARGE,
            "415": _NOT_JSON,
            "500": _INTERNAL,
            "503": _UNAVAILABLE,
        },
    }


def _paths() -> dict[str, Schema]:
    return {
        "/jobs": {
            "post": {
                "operationId": "submitJob",
                "summary": "Submit a job",
                "parameters": [{"$ref": "#/components/parameters/IdempotencyKey"}],
                "requestBody": _json_body("JobSubmission"),
                "responses": {
                    "200": _with_links(
                        _response(
                            "an Idempotency-Key repeat: the job first stored",
                            ref("Job"),
                            ("Location",),
                        ),
                        "/id",
                    ),
                    "201": _with_links(
                        _response("the job, stored", ref("Job"), ("Location",)), "/id"
                    ),
                    "400": _BAD_BODY,
                    "401": _UNAUTHORIZED,
                    "409": _error("the Idempotency-Key was used with another body"),
                    "413": _TOO_LARGE,
                    "415": _NOT_JSON,
                    "422": _UNKNOWN_TYPE,
                    "429": _QUEUE_FULL,
                    "500": _INTERNAL,
                    "503": _UNAVAILABLE,
                },
            },
            "get": {
                "operationId": "listJobs",
                "summary": "List jobs, newest first (or oldest first), filtered",
                "parameters": _list_parameters(),
                "responses": {
                    "200": _response("a page of jobs", ref("JobList"), ("Link",)),
                    "400": _error(
                        "a bad, unknown or repeated parameter (`invalid_request`), or a cursor "
                        "this server did not issue (`invalid_cursor`)"
                    ),
                    "401": _UNAUTHORIZED,
                    "500": _INTERNAL,
                    "503": _UNAVAILABLE,
                },
            },
        },
        "/jobs/batch": {
            "post": {
                "operationId": "submitBatch",
                "summary": "Submit many jobs, all or none",
                "requestBody": _json_body("BatchSubmission"),
                "responses": {
                    "201": _with_links(
                        _response("the jobs, stored, in order", ref("JobList")), "/0/id"
                    ),
                    "400": _error(
                        "invalid JSON, a bad job (the message names `jobs[i]`), or an "
                        "Idempotency-Key header (supported on POST /jobs only)"
                    ),
                    "401": _UNAUTHORIZED,
                    "413": _TOO_LARGE,
                    "415": _NOT_JSON,
                    "422": _UNKNOWN_TYPE,
                    "429": _QUEUE_FULL,
                    "500": _INTERNAL,
                    "503": _UNAVAILABLE,
                },
            }
        },
        "/jobs/{job_id}": {
            "get": {
                "operationId": "getJob",
                "summary": "One job",
                "parameters": [{"$ref": "#/components/parameters/JobId"}],
                "responses": {
                    "200": _response("the job", ref("Job")),
                    "401": _UNAUTHORIZED,
                    "404": _NOT_FOUND,
                    "500": _INTERNAL,
                    "503": _UNAVAILABLE,
                },
            }
        },
        "/jobs/{job_id}/attempts": {
            "get": {
                "operationId": "getJobAttempts",
                "summary": "A job's attempts, oldest first, with errors and tracebacks",
                "parameters": [{"$ref": "#/components/parameters/JobId"}],
                "responses": {
                    "200": _response(
                        f"the attempts (the latest {MAX_ATTEMPTS_SHOWN})", ref("AttemptList")
                    ),
                    "401": _UNAUTHORIZED,
                    "404": _NOT_FOUND,
                    "500": _INTERNAL,
                    "503": _UNAVAILABLE,
                },
            }
        },
        "/jobs/{job_id}/cancel": {
            "post": _job_action(
                "cancelJob",
                "Cancel a pending or failed job",
                "the job is not pending or failed (`invalid_state`)",
            )
        },
        "/jobs/{job_id}/retry": {
            "post": _job_action(
                "retryJob",
                "Re-queue a job that failed for good, with a fresh budget of runs",
                "the job has not failed for good (`invalid_state`)",
            )
        },
        "/metrics": {
            "get": {
                "operationId": "getMetrics",
                "summary": "Metrics: Prometheus text, or JSON with Accept: application/json",
                "responses": {
                    "200": {
                        "description": "the metrics",
                        "headers": {"X-Request-Id": _header("X-Request-Id")},
                        "content": {
                            "text/plain": {"schema": {"type": "string"}},
                            "application/json": {"schema": ref("Stats")},
                        },
                    },
                    "401": _UNAUTHORIZED,
                    "500": _INTERNAL,
                    "503": _UNAVAILABLE,
                },
            }
        },
        "/health": {
            "get": {
                "operationId": "getHealth",
                "summary": "Health; needs no token",
                "security": [],
                "responses": {
                    "200": _response("healthy", ref("Health")),
                    "500": _INTERNAL,
                    "503": _response(
                        "shutting down, a core part is down, or storage is unreachable",
                        {"anyOf": [ref("Health"), ref("ServerError")]},
                    ),
                },
            },
            "head": {
                "operationId": "headHealth",
                "summary": "Health as GET answers it, without the body; needs no token",
                "security": [],
                "responses": {
                    "200": _response("healthy"),
                    "500": _response("internal error"),
                    "503": _response(
                        "shutting down, a core part is down, or storage is unreachable"
                    ),
                },
            },
        },
        "/openapi.json": {
            "get": {
                "operationId": "getOpenApi",
                "summary": "This document",
                "responses": {
                    "200": _response("the OpenAPI description", {"type": "object"}),
                    "401": _UNAUTHORIZED,
                    "500": _INTERNAL,
                },
            }
        },
    }


def openapi_document(job_types: Sequence[str], *, now: float | None = None) -> dict[str, Any]:
    """A fresh copy of the document: the response objects above are shared between
    operations, and a caller that edits its copy must not change anyone else's.

    `job_types` are the registered types (the submission schema lists them); `now` is when
    the server starts (the bound of `run_at` is computed from it; see openapi_patterns)."""
    document = {
        "openapi": "3.0.3",
        "info": {"title": "WorkStream", "version": API_VERSION, "description": _DESCRIPTION},
        "security": [{"bearerAuth": []}, {}],
        "paths": _with_transport_errors(_paths()),
        "components": {
            "schemas": components.schemas(job_types, time.time() if now is None else now),
            "headers": components.headers(),
            "parameters": components.parameters(),
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "required on every operation but /health when the "
                    "server is configured with API_TOKEN; not used otherwise",
                }
            },
        },
    }
    return copy.deepcopy(document)
