"""Submit→start latency of one WorkStream server, alone: the latency workload's open-loop
HTTP sender at a fixed rate, without the peers, for quick A/B runs of two commits.

    python -m benchmarks.latency_probe [--rate 50] [--seconds 6] [--runs 3] [SETTING=VALUE ...]

Each run starts a fresh server (with the given settings), sends one warm-up job, then
`rate` jobs/s for `seconds`, and prints p50, p90, p99 and max of client send → handler
start. To compare two commits, run it in a checkout of each, alternating.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from benchmarks import record
from benchmarks.common import percentile
from benchmarks.workloads import _paced, _wait_records, _ws_sender
from benchmarks.wsrun import Server


def probe(rate: float, seconds: float, settings: dict[str, str]) -> list[float]:
    """Submit→start of every timed job, ms, sorted."""
    folder = Path(tempfile.mkdtemp(prefix="ws-latency-probe-"))
    records = folder / "records"
    records.mkdir()
    server = Server(folder, records, **settings)
    server.start()
    try:
        server.wait_ready()
        sender = _ws_sender(server.port)
        sender()(0.0)  # warm-up, not timed (t0 = 0)
        _wait_records(records, 1, [server.proc], 60, server.log)
        sent, _ = _paced(sender, 8, rate, seconds)
        _wait_records(records, sent + 1, [server.proc], 60, server.log)
    finally:
        server.stop()
    return sorted((start - t0) * 1000 for t0, start, _ in record.read(records) if t0 > 0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=50.0)
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("settings", nargs="*", help="SETTING=VALUE for the server")
    args = parser.parse_args()
    settings = dict(item.split("=", 1) for item in args.settings)
    p50s, p99s = [], []
    for run in range(1, args.runs + 1):
        ms = probe(args.rate, args.seconds, settings)
        p50s.append(percentile(ms, 50))
        p99s.append(percentile(ms, 99))
        print(f"run {run}: {len(ms)} jobs at {args.rate:g}/s; submit→start p50 "
              f"{p50s[-1]:.2f}, p90 {percentile(ms, 90):.2f}, p99 {p99s[-1]:.2f}, "
              f"max {ms[-1]:.2f} ms")  # fmt: skip
    print(f"median: p50 {statistics.median(p50s):.2f} ms, p99 {statistics.median(p99s):.2f} ms")


if __name__ == "__main__":
    main()
