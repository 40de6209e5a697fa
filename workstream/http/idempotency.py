"""The `Idempotency-Key` header of `POST /jobs`.

The service stores the key with the job, plus a hash of the request, so that a repeat
with the same key returns the first job, and the same key with a different body is
refused (409 `idempotency_key_reused`) rather than silently answered with another job.
The hash is taken over canonical JSON (sorted keys, no spaces), so the same request sent
with different key order or whitespace still counts as the same request.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from workstream.errors import InvalidRequest

HEADER = "Idempotency-Key"
MAX_KEY_LENGTH = 255
_VISIBLE_ASCII = re.compile(rf"[\x21-\x7e]{{1,{MAX_KEY_LENGTH}}}")


def parse_idempotency_key(value: str | None) -> str | None:
    """The key, None when the header is absent; InvalidRequest when it is malformed."""
    if value is None:
        return None
    if not _VISIBLE_ASCII.fullmatch(value):
        raise InvalidRequest(
            f"{HEADER} must be 1 to {MAX_KEY_LENGTH} visible ASCII characters (no spaces)"
        )
    return value


def request_hash(body: Any) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()
