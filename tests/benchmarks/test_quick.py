"""The benchmark suite's quick variant runs end to end and reports every workload.

It checks completion and coverage only, never speed: peers that are not installed (CI
installs `.[dev]` only) or cannot reach Redis/PostgreSQL must be reported as "not run"
with a reason, and without `wrk` the built-in HTTP generator must be used and said so.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from benchmarks.peers.runners import all_peers
from benchmarks.workloads import WORKLOADS

ROOT = Path(__file__).resolve().parents[2]


def test_quick_run_reports_every_workload(tmp_path: Path) -> None:
    report = tmp_path / "benchmarks.md"
    docs = ROOT / "docs" / "benchmarks.md"
    before = docs.stat().st_mtime_ns if docs.exists() else None
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "run", "--quick", "--output", str(report)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    out = done.stdout
    assert done.returncode == 0, out[-3000:] + done.stderr[-3000:]
    reported = next(line for line in out.splitlines() if line.startswith("reported workloads:"))
    assert set(reported.split(":", 1)[1].replace(" ", "").split(",")) == set(WORKLOADS)
    assert "crashed" not in out, out[-3000:]
    table = report.read_text()
    for workload in WORKLOADS:
        assert f"| {workload} | WorkStream (SQLite" in table
    for peer in all_peers():  # every peer has a drain row: a figure or "not run: why"
        assert f"| drain | {peer.label} |" in table, peer.label
    assert "HTTP load generator: " in out
    # the quick run leaves the published report alone
    assert (docs.stat().st_mtime_ns if docs.exists() else None) == before
