"""The reusable parts of the OpenAPI document (`components`): the Job and submission
schemas, the error bodies, response headers and shared parameters.

Kept apart from `openapi.py` (the operations) so that each file reads as one thing. The
limits come from the modules that enforce them, so the document cannot drift from them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from workstream.http.idempotency import MAX_KEY_LENGTH
from workstream.http.openapi_patterns import DELAY_TEXT_PATTERN, run_at_pattern
from workstream.http.submissions import MAX_BATCH_SIZE
from workstream.jobs.attempts import MAX_TRACEBACK_BYTES, OUTCOMES
from workstream.jobs.limits import (
    MAX_DELAY_SECONDS,
    MAX_RETRIES_LIMIT,
    MAX_TYPE_LENGTH,
)
from workstream.jobs.model import JobStatus

Schema = dict[str, Any]

MAX_TIME_TEXT = 64  # characters of a `run_at` (parse_time refuses longer ones)


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _attempt_schema() -> Schema:
    timestamp = {"type": "string", "format": "date-time"}
    text = {"type": "string", "nullable": True}
    return {
        "type": "object",
        "additionalProperties": False,
        "required": [
            "number",
            "outcome",
            "started_at",
            "finished_at",
            "duration_ms",
            "node",
            "worker",
            "pid",
            "error",
            "error_class",
            "traceback",
        ],
        "properties": {
            "number": {"type": "integer", "minimum": 0},
            "outcome": {"type": "string", "enum": list(OUTCOMES)},
            "started_at": {**timestamp, "nullable": True},
            "finished_at": timestamp,
            "duration_ms": {"type": "number", "nullable": True},
            "node": {**text, "description": "the id of the server process that ran it"},
            "worker": {**text, "description": "the worker, or process.slot in process mode"},
            "pid": {"type": "integer", "nullable": True},
            "error": text,
            "error_class": text,
            "traceback": {
                **text,
                "description": f"at most {MAX_TRACEBACK_BYTES} bytes; cut in the middle, "
                "with a marker, when longer",
            },
        },
    }


def _job_schema() -> Schema:
    timestamp = {"type": "string", "format": "date-time"}
    optional_timestamp = {**timestamp, "nullable": True}
    return {
        "type": "object",
        "additionalProperties": False,
        "required": [
            "id",
            "type",
            "payload",
            "status",
            "attempts",
            "max_retries",
            "last_error",
            "result",
            "created_at",
            "updated_at",
            "started_at",
            "finished_at",
            "run_at",
        ],
        "properties": {
            "id": {"type": "string", "format": "uuid"},
            "type": {"type": "string", "minLength": 1, "maxLength": MAX_TYPE_LENGTH},
            "payload": {"description": "any JSON value, as submitted"},
            "status": {"type": "string", "enum": [status.value for status in JobStatus]},
            "attempts": {"type": "integer", "minimum": 0},
            "max_retries": {"type": "integer", "minimum": 0},
            "last_error": {"type": "string", "nullable": True},
            "result": {"description": "null, or the JSON value the handler returned"},
            "created_at": timestamp,
            "updated_at": timestamp,
            "started_at": optional_timestamp,
            "finished_at": optional_timestamp,
            "run_at": {
                **optional_timestamp,
                "description": "when the job may next start; null once finished or cancelled",
            },
        },
    }


def _job_type_schema(job_types: Sequence[str]) -> Schema:
    schema: Schema = {
        "type": "string",
        "description": "a job type with a registered handler: this server's, listed when it "
        "started (any other is refused, 422 unknown_job_type)",
    }
    if job_types:
        schema["enum"] = list(job_types)
    else:
        schema["not"] = {}  # no handler at all: no submission can succeed
    return schema


def _job_submission_schema(job_types: Sequence[str], now: float) -> Schema:
    return {
        "type": "object",
        "additionalProperties": False,
        "required": ["type"],
        "not": {"required": ["delay", "run_at"]},
        "properties": {
            "type": _job_type_schema(job_types),
            "payload": {
                "description": "any JSON value handed to the handler (default {}); a "
                "handler may check it at submission (400 invalid_payload)"
            },
            "max_retries": {
                "type": "integer",
                "minimum": 0,
                "maximum": MAX_RETRIES_LIMIT,
                "nullable": True,
                "description": "retries after the first attempt; null or absent: the default",
            },
            "delay": {
                "description": "start no sooner than this: seconds, or a duration like '2s'",
                # nullable on each branch: OpenAPI 3.0 ignores it on a schema without a type.
                "anyOf": [
                    {
                        "type": "number",
                        "minimum": 0,
                        "maximum": MAX_DELAY_SECONDS,
                        "nullable": True,
                    },
                    {
                        "type": "string",
                        "maxLength": 64,
                        "pattern": DELAY_TEXT_PATTERN,
                        "nullable": True,
                        "description": "units h, m, s, ms, each at most once and in this "
                        "order (1h30m, 500ms), or seconds; at most 366 days in all (the "
                        "pattern bounds each unit so that every match is within it)",
                    },
                ],
            },
            "run_at": {
                "type": "string",
                "format": "date-time",
                "maxLength": MAX_TIME_TEXT,
                "pattern": run_at_pattern(now),
                "nullable": True,
                "description": "start no sooner than this RFC 3339 time; the server refuses "
                "one more than 366 days ahead. The pattern, computed when the server "
                "started, allows the months that are within that bound for sure",
            },
        },
    }


def schemas(job_types: Sequence[str], now: float) -> dict[str, Schema]:
    return {
        "Error": {
            "type": "object",
            "additionalProperties": False,
            "required": ["error", "code"],
            "properties": {"error": {"type": "string"}, "code": {"type": "string"}},
        },
        "ServerError": {
            "type": "object",
            "additionalProperties": False,
            "required": ["error", "code", "request_id"],
            "properties": {
                "error": {"type": "string"},
                "code": {"type": "string"},
                "request_id": {"type": "string"},
            },
        },
        "Job": _job_schema(),
        "JobList": {"type": "array", "items": ref("Job")},
        "Attempt": _attempt_schema(),
        "AttemptList": {"type": "array", "items": ref("Attempt")},
        "JobSubmission": _job_submission_schema(job_types, now),
        "BatchSubmission": {
            "type": "object",
            "additionalProperties": False,
            "required": ["jobs"],
            "properties": {
                "jobs": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": MAX_BATCH_SIZE,
                    "items": ref("JobSubmission"),
                }
            },
        },
        "NoInput": {
            "type": "object",
            "additionalProperties": False,
            "maxProperties": 0,
            "description": "these operations take no input: send no body, or {}",
        },
        "Stats": {
            "type": "object",
            "additionalProperties": True,
            "required": [
                "total_jobs_created",
                "jobs_completed",
                "jobs_failed",
                "jobs_retried",
                "jobs_in_progress",
                "queue_size",
            ],
            "properties": {
                name: {"type": "integer", "minimum": 0}
                for name in (
                    "total_jobs_created",
                    "jobs_completed",
                    "jobs_failed",
                    "jobs_retried",
                    "jobs_in_progress",
                    "queue_size",
                )
            },
        },
        "Health": {
            "type": "object",
            "additionalProperties": True,
            "required": ["status"],
            "properties": {
                "status": {
                    "type": "string",
                    "description": "ok; otherwise shutting_down or unavailable",
                }
            },
        },
    }


def headers() -> dict[str, Schema]:
    return {
        "X-Request-Id": {
            "description": "an id for this request; 5xx bodies and the server log carry it too",
            "required": True,
            "schema": {"type": "string"},
        },
        "Location": {
            "description": "the path of the job",
            "required": True,
            "schema": {"type": "string"},
        },
        "Link": {
            "description": 'the next page, `<...>; rel="next"`, when more jobs remain',
            "schema": {"type": "string"},
        },
        "Retry-After": {
            "description": "seconds to wait before trying again",
            "schema": {"type": "integer", "minimum": 1},
        },
        "WWW-Authenticate": {
            "description": "always `Bearer`",
            "required": True,
            "schema": {"type": "string"},
        },
    }


def parameters() -> dict[str, Schema]:
    return {
        "JobId": {
            "name": "job_id",
            "in": "path",
            "required": True,
            "schema": {"type": "string", "format": "uuid"},
        },
        "IdempotencyKey": {
            "name": "Idempotency-Key",
            "in": "header",
            "required": False,
            "description": (
                "a repeat with the same key returns the first job (200); the same key with "
                "another body is refused (409 idempotency_key_reused)"
            ),
            "schema": {
                "type": "string",
                "minLength": 1,
                "maxLength": MAX_KEY_LENGTH,
                "pattern": "^[!-~]+$",
            },
        },
    }
