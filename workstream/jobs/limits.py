"""Every bound the server enforces on what it is sent and what it keeps, defined once.

The HTTP layer, the domain checks, the handlers and the OpenAPI description all read
these, so a limit cannot drift between what is documented and what is enforced.
"""

from __future__ import annotations

import re

# A request body, a job's payload and a handler's result: what is stored is also served,
# so all three share one bound.
MAX_DOCUMENT_BYTES = 1_048_576
# A page of GET /jobs stops growing past this much payload and result.
PAGE_BYTES = 4 * MAX_DOCUMENT_BYTES

MAX_TYPE_LENGTH = 200
# A job type: letters, digits and _.:- (the registered name and every submitted one).
JOB_TYPE_PATTERN = r"[A-Za-z0-9_.:\-]+"
JOB_TYPE = re.compile(JOB_TYPE_PATTERN)

MAX_RETRIES_LIMIT = 100
MAX_DELAY_SECONDS = 366 * 24 * 3600.0

# How many jobs one sweep (due retries, expired leases) moves in one transaction.
SWEEP_BATCH = 1000
# How many finished jobs retention deletes in one transaction (it never holds the writer
# long: other commands of the group commit wait behind it).
RETENTION_BATCH = 500


def is_job_type(name: str) -> bool:
    return 0 < len(name) <= MAX_TYPE_LENGTH and JOB_TYPE.fullmatch(name) is not None
