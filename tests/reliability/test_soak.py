"""Scenario 3 (soak; slow only): RELIABILITY_SOAK_JOBS jobs (1,000,000 by default) at 70% of
the measured capacity. Throughput, RSS, threads, file descriptors and database size are
sampled; each must stay flat (the last third of the run against the middle third), and
every acknowledged job must complete.

    .venv/bin/pytest tests/reliability/test_soak.py -m slow -s
    RELIABILITY_SOAK_JOBS=50000 .venv/bin/pytest tests/reliability/test_soak.py -m slow -s
"""

from __future__ import annotations

import itertools
import json
import sqlite3
import threading
import time

import psutil
import pytest

from tests.reliability.checker import Figures
from tests.reliability.harness import Harness, report, scale
from tests.reliability.ledger import sqlite_path
from tests.support import wait_until

BATCH = 100


def _counts(harness: Harness) -> dict[str, int]:
    conn = sqlite3.connect(f"file:{sqlite_path(harness.database_url)}?mode=ro", uri=True)
    try:
        return dict(conn.execute("SELECT status, count(*) FROM jobs GROUP BY status").fetchall())
    finally:
        conn.close()


def _submit_batch(harness: Harness, n: int) -> int:
    """Submit n echo jobs in one batch; on 429 wait Retry-After (the machine may be slower
    now than when capacity was measured) and return 0."""
    jobs = [{"type": "echo", "payload": {"n": i}} for i in range(n)]
    status, headers, body = harness.request("POST", "/jobs/batch", {"jobs": jobs}, timeout=60)
    if status == 201:
        return len(body)
    assert status == 429, body
    time.sleep(float(headers.get("Retry-After", "1")))  # as a client must
    return 0


@pytest.mark.slow
def test_soak_at_70_percent_of_capacity(harness: Harness) -> None:
    total = int(scale(1_000_000, "RELIABILITY_SOAK_JOBS"))
    harness.start(JOB_QUEUE_CAPACITY="100000", LOG_LEVEL="warning")
    # Capacity: how fast a backlog of 20,000 drains.
    for _ in range(200):
        assert _submit_batch(harness, BATCH) == BATCH
    started = time.monotonic()
    wait_until(lambda: _counts(harness).get("completed", 0) >= 20_000, 600, "the backlog")
    capacity = 20_000 / (time.monotonic() - started)
    rate = 0.7 * capacity
    proc = psutil.Process(harness.pid())
    db = sqlite_path(harness.database_url)
    samples: list[dict[str, float]] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(2.0):
            done = _counts(harness).get("completed", 0)
            wal = db.with_name(db.name + "-wal")
            samples.append(
                {
                    "t": time.monotonic(),
                    "rss_mb": proc.memory_info().rss / 2**20,
                    "threads": proc.num_threads(),
                    "fds": proc.num_fds(),
                    "db_mb": (db.stat().st_size + (wal.stat().st_size if wal.exists() else 0))
                    / 2**20,
                    "completed": done,
                }
            )

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    acked = shed = 0
    began = time.monotonic()
    while acked < total:
        due = began + acked / rate
        pause = due - time.monotonic()
        if pause > 0:
            time.sleep(pause)  # pacing the offered load, not synchronisation
        stored = _submit_batch(harness, min(BATCH, total - acked))
        acked += stored
        shed += 0 if stored else 1
    wait_until(
        lambda: _counts(harness).get("completed", 0) >= total + 20_000,
        max(600, total / rate * 2),
        "every job to complete",
    )
    stop.set()
    sampler.join(5)
    counts = _counts(harness)
    third = max(1, len(samples) // 3)
    middle, last = samples[third : 2 * third], samples[2 * third :]

    def growth(key: str) -> float:
        return max(s[key] for s in last) - max(s[key] for s in middle)

    rates = [
        (b["completed"] - a["completed"]) / (b["t"] - a["t"])
        for a, b in itertools.pairwise(samples)
    ]
    fig = Figures("soak", submitted=total, acked=acked, shed=shed)
    fig.stuck = counts.get("processing", 0) + counts.get("pending", 0)
    fig.lost = total + 20_000 - counts.get("completed", 0)
    fig.rss_peak_mb = max(s["rss_mb"] for s in samples)
    fig.extra.update(
        capacity_per_s=round(capacity),
        rate_per_s=round(rate),
        throughput_mid=round(sum(rates[third : 2 * third]) / max(1, len(rates[third : 2 * third]))),
        throughput_last=round(sum(rates[2 * third :]) / max(1, len(rates[2 * third :]))),
        rss_growth_mb=round(growth("rss_mb"), 1),
        threads_growth=growth("threads"),
        fds_growth=growth("fds"),
        db_mb=round(samples[-1]["db_mb"], 1),
        seconds=round(time.monotonic() - began),
    )
    report(fig)
    print(json.dumps(samples[-1]))
    fig.assert_clean()
    assert growth("rss_mb") < 50 and growth("threads") <= 2 and growth("fds") <= 5
