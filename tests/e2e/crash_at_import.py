"""A JOB_HANDLERS module that kills a worker process as it imports while the file that
CRASH_FLAG names exists (as a broken deploy or a C extension crashing at import would), and
imports cleanly otherwise. The server imports it too, but never dies of it."""

from __future__ import annotations

import os
import sys

if getattr(sys.modules["__main__"].__spec__, "name", "") == "workstream.proc.child":
    flag = os.environ.get("CRASH_FLAG")
    if flag and os.path.exists(flag):
        os._exit(3)
