"""Retries run at RETRY_BACKOFF's pace, not the sweeper's: the real server, a handler that
always fails, a 200 ms backoff and a sweeper ten minutes away."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

from tests.e2e.conftest import StartServer


def test_each_retry_starts_when_its_backoff_is_over(
    start_server: StartServer, workdir: Path
) -> None:
    ledger = workdir / "ledger"
    server = start_server(
        env={
            "JOB_HANDLERS": "tests.e2e.probe_handlers",
            "PROBE_LEDGER": str(ledger),
            "RETRY_BACKOFF": "200ms",
            "SWEEPER_INTERVAL": "10m",
        }
    )
    status, _, job = server.request(
        "POST", "/jobs", {"type": "probe", "payload": {"fail": True}, "max_retries": 2}
    )
    assert status == 201, job
    # Without the fix the second attempt waits for the sweep, ten minutes away.
    server.wait_for_log("job_failed", timeout=15, job_id=job["id"], final=True)
    records = [json.loads(line) for line in ledger.read_text().splitlines()]
    starts = [record["at"] for record in records if record["outcome"] == "start"]
    assert [record["attempt"] for record in records] == [1, 2, 3]
    gaps = [later - earlier for earlier, later in itertools.pairwise(starts)]
    # Backoff after attempt n: 200 ms x 2^(n-1), +-10%; the claim follows within a moment.
    assert 0.18 - 0.02 <= gaps[0] < 0.22 + 1.5, gaps
    assert 0.36 - 0.02 <= gaps[1] < 0.44 + 1.5, gaps
