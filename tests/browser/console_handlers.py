"""Handlers the browser tests load (JOB_HANDLERS): `flaky` fails while the file that
FLAKY_FLAG names exists, so a test can make jobs fail, then let their retry complete."""

from __future__ import annotations

import os
from typing import Any

from workstream import handler


class FlagRaised(RuntimeError):
    """The flag file is there: this attempt fails on purpose."""


def _check(payload: Any) -> None:
    flag = os.environ.get("FLAKY_FLAG", "")
    if flag and os.path.exists(flag):
        raise FlagRaised(f"flag file is set for {payload!r}")


@handler("flaky")
def flaky(payload: Any, job: Any) -> Any:
    _check(payload)
    return {"ok": True, "attempt": job.attempt}
