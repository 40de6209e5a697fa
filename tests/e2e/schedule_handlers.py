"""A scheduled handler for the end-to-end scheduler tests (JOB_HANDLERS).

`slot_tick` is scheduled every second (six cron fields: seconds first) and appends one line
per run to the file named by SLOT_LEDGER: the job's id (whose idempotency key names its
slot), the node that ran it and when.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from workstream import handler


@handler("slot_tick", schedule="* * * * * *", timezone="Europe/Paris")
def slot_tick(payload: Any, job: Any) -> Any:
    path = os.environ.get("SLOT_LEDGER")
    if path:
        line = json.dumps({"job_id": job.id, "pid": os.getpid(), "at": time.time()})
        with open(path, "a", encoding="utf-8") as ledger:
            ledger.write(line + "\n")
            ledger.flush()
            os.fsync(ledger.fileno())
    return {"ok": True}
