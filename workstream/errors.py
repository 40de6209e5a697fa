"""One error tree for the whole product.

Every error a user can cause or observe is a `WorkStreamError` with a stable, HTTP-free
`code`. The HTTP layer maps codes to status codes in one place (`http/errors.py`); the CLI
maps them to exit statuses. Messages are written for the person who sent the request and
never carry tracebacks, paths or library names.
"""

from __future__ import annotations


class WorkStreamError(Exception):
    """Root of every error WorkStream raises on purpose."""

    code = "error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidRequest(WorkStreamError):
    """The request is malformed or a field has a bad value."""

    code = "invalid_request"


class InvalidJson(InvalidRequest):
    code = "invalid_json"


class PayloadTooLarge(WorkStreamError):
    code = "payload_too_large"


class UnsupportedMediaType(WorkStreamError):
    code = "unsupported_media_type"


class Unauthorized(WorkStreamError):
    code = "unauthorized"


class NotFound(WorkStreamError):
    code = "not_found"


class MethodNotAllowed(WorkStreamError):
    code = "method_not_allowed"


class UnknownJobType(WorkStreamError):
    code = "unknown_job_type"


class InvalidPayload(InvalidRequest):
    """A registered handler's validator refused the payload at submission."""

    code = "invalid_payload"


class IllegalTransition(WorkStreamError):
    """The job's state does not allow the requested change (cancel a completed job, ...)."""

    code = "invalid_state"


class Conflict(WorkStreamError):
    """A write would break a uniqueness rule (job id, idempotency key). Nothing was written."""

    code = "conflict"


class IdempotencyKeyReused(WorkStreamError):
    code = "idempotency_key_reused"


class QueueFull(WorkStreamError):
    code = "queue_full"

    def __init__(self, message: str, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ScheduledJobsFull(QueueFull):
    """MAX_SCHEDULED_JOBS: too many delayed jobs wait for their run_at (429)."""

    code = "too_many_scheduled_jobs"


class ShuttingDown(WorkStreamError):
    code = "shutting_down"


class StorageUnavailable(WorkStreamError):
    """The store could not commit or read (locked, full, unreachable). Nothing was changed."""

    code = "storage_unavailable"


class ServiceBusy(WorkStreamError):
    """An actor did not answer within its bound; the request's outcome is unknown."""

    code = "service_busy"


class StaleAttempt(WorkStreamError):
    """A completion or failure arrived for an attempt that no longer owns the job (fencing)."""

    code = "stale_attempt"


class DatabaseInUse(WorkStreamError):
    """Another WorkStream process holds the database."""

    code = "database_in_use"


class ConfigError(WorkStreamError):
    """A setting has an invalid value; start-up stops."""

    code = "invalid_setting"
