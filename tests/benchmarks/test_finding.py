"""The finding-jobs benchmark runs end to end on a small queue (its speed is measured with
1,000,000 jobs by hand: docs/finding-jobs-benchmark.md). Checks coverage, never speed."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks import finding


def test_the_finding_benchmark_reports_every_filter_and_summary(tmp_path: Path) -> None:
    figures = tmp_path / "finding.json"
    report = tmp_path / "finding.md"

    args = ["--store", "sqlite", "--jobs", "3000", "--runs", "1"]
    assert finding.main([*args, "--json", str(figures), "--markdown", str(report)]) == 0

    rows = json.loads(figures.read_text())["sqlite"]
    names = [row[0] for row in rows]
    assert len(names) == len(set(names)) == 26
    assert all(row[1] >= 0 for row in rows)
    listed = {row[0]: row[3] for row in rows if row[0].startswith("GET /jobs")}
    assert listed["GET /jobs newest first (no filter)"] == "100 jobs"
    assert listed["GET /jobs idempotency_key"] == "1 jobs"
    assert listed["GET /jobs error, no match"] == "0 jobs"
    assert "| failure groups" in report.read_text()
