"""`python -m benchmarks run [--quick] [--only WORKLOAD] [--runs N] [--output PATH]`

Runs every workload for WorkStream and each peer in one session, prints a table and the
ratios against the targets, and (full run only, or with --output) writes the report.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
import time
import traceback
from pathlib import Path

from benchmarks import httpload
from benchmarks.common import ROOT, Result
from benchmarks.cpu_bench import run_cpu
from benchmarks.report import load, print_table, save, write_markdown
from benchmarks.sched_bench import run_sched
from benchmarks.workloads import (
    WORKLOADS,
    Plan,
    Session,
    check_peers,
    cleanup_peers,
    run_backlog,
    run_drain,
    run_http,
    run_latency,
    run_overload,
)

RUNNERS = {
    "drain": run_drain,
    "http": run_http,
    "latency": run_latency,
    "backlog": run_backlog,
    "overload": run_overload,
    "cpu": run_cpu,
    "sched": run_sched,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run the benchmarks")
    run.add_argument("--quick", action="store_true", help="small sizes, one run (~1-2 min)")
    run.add_argument("--only", action="append", choices=WORKLOADS, help="run only this workload")
    run.add_argument("--runs", type=int, default=None, help="runs per measurement")
    run.add_argument(
        "--output",
        type=Path,
        default=None,
        help="write the report here (default: docs/benchmarks.md for a full run of every "
        "workload; a quick or partial run writes nothing unless asked)",
    )
    render = commands.add_parser("render", help="write the report again from saved results")
    render.add_argument("results", type=Path, help="the .json a full run wrote")
    render.add_argument("--output", type=Path, default=None, help="default: beside it, .md")
    args = parser.parse_args(argv)
    if args.command == "render":
        session, command, seconds, written = load(args.results)
        output = args.output or args.results.with_suffix(".md")
        write_markdown(session, output, command, seconds, written[:16].replace("T", " ") + " UTC")
        print(f"wrote {output}")
        return 0
    plan = Plan.make(args.quick, args.runs)
    selected = args.only or list(WORKLOADS)
    output = args.output
    if output is None and not args.quick and not args.only:
        output = ROOT / "docs" / "benchmarks.md"
    command = "python -m benchmarks run" + (
        " " + shlex.join((argv if argv is not None else sys.argv[1:])[1:])
        if (argv if argv is not None else sys.argv[1:])[1:]
        else ""
    )
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="wsbench-") as folder:
        session = Session(plan, Path(folder))
        print(f"benchmarks: {'quick' if plan.quick else 'full'} run, workloads {selected}, "
              f"HTTP load generator: {httpload.generator_name()}", flush=True)  # fmt: skip
        if httpload.generator_name() == "python":
            print("  wrk is not installed: HTTP load comes from the built-in Python generator")
        check_peers(session)
        for label, reason in session.peer_problems.items():
            print(f"  {label}: not run: {reason}", flush=True)
        try:
            for name in WORKLOADS:
                if name not in selected:
                    continue
                print(f"[{name}]", flush=True)
                try:
                    RUNNERS[name](session)
                except Exception as exc:
                    traceback.print_exc()
                    session.add(Result(name, "(workload)", "", "", not_run=f"crashed: {exc!r}"))
        finally:
            cleanup_peers(session)
        elapsed = time.monotonic() - started
        print_table(session)
        print(f"reported workloads: {', '.join(sorted({r.workload for r in session.results}))}")
        if output is not None:
            write_markdown(session, output, command, elapsed)
            save(session, output.with_suffix(".json"), command, elapsed)
            print(f"wrote {output} and {output.with_suffix('.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
