"""A JOB_HANDLERS module that imports in the server but fails in a worker process (as a
module needing something only the server's environment has would)."""

from __future__ import annotations

import sys

if getattr(sys.modules["__main__"].__spec__, "name", "") == "workstream.proc.child":
    raise RuntimeError("not in a worker process")
