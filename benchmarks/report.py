"""The table printed at the end of a run, the ratios against the targets, and
docs/benchmarks.md."""

from __future__ import annotations

import dataclasses
import json
import math
from datetime import UTC, datetime
from pathlib import Path

from benchmarks.common import Result, machine, sqlite_version, version
from benchmarks.workloads import WS, WS_16, Plan, Session

PEER_DISTS = ("dramatiq", "huey", "celery", "rq", "procrastinate", "redis", "psycopg")
OWN_DISTS = ("falcon", "waitress", "pykka", "prometheus-client")
ANALYSIS = Path(__file__).with_name("analysis.md")


def _num(value: float | None) -> str:
    if value is None or math.isnan(value):
        return "-"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def cell(result: Result) -> str:
    if result.not_run:
        return f"not run: {result.not_run}"
    if not result.values:
        return "-"
    text = _num(result.median)
    if len(result.values) > 1:
        text += f" ({_num(min(result.values))}-{_num(max(result.values))})"
    return text


def rows(session: Session) -> list[tuple[str, str, str, str, str, str]]:
    out = []
    for result in session.results:
        runs = str(len(result.values)) if result.values else ""
        out.append((result.workload, result.system, result.metric, result.unit, cell(result), runs))
    return out


def print_table(session: Session) -> None:
    header = ("workload", "system", "metric", "unit", "median (min-max)", "runs")
    table = [header, *rows(session)]
    widths = [min(60, max(len(row[i]) for row in table)) for i in range(len(header))]
    print()
    for row in table:
        print("  ".join(text.ljust(widths[i]) for i, text in enumerate(row)).rstrip())
    print()
    for line in ratios(session):
        print(line)
    for note in session.notes:
        print(f"note: {note}")


def _find(session: Session, workload: str, system: str, metric_start: str) -> Result | None:
    for result in session.results:
        if (
            result.workload == workload
            and result.system == system
            and result.metric.startswith(metric_start)
            and result.values
        ):
            return result
    return None


def _check(ok: bool) -> str:
    return "met" if ok else "NOT met"


def ratios(session: Session) -> list[str]:
    """Each target as a ratio from this run."""
    lines = []
    ws = _find(session, "drain", WS, "")
    peers = [
        r for r in session.results
        if r.workload == "drain" and not r.system.startswith("WorkStream") and r.values
    ]  # fmt: skip
    if ws and peers:
        best = max(peers, key=lambda r: r.median or 0)
        ratio = ws.median / best.median
        lines.append(
            f"- Drain: WorkStream {_num(ws.median)} jobs/s = {ratio:.2f}x the fastest peer "
            f"({best.system}, {_num(best.median)} jobs/s); target >= 2x: {_check(ratio >= 2)}"
        )
    dramatiq = _find(session, "drain", "Dramatiq (Redis, 2 proc x 8 threads)", "")
    ws16 = _find(session, "drain", WS_16, "")
    for own in (ws, ws16):
        if own and dramatiq:
            ratio = own.median / dramatiq.median
            lines.append(
                f"- Drain (issue 12): {own.system} {_num(own.median)} jobs/s = {ratio:.2f}x "
                f"Dramatiq with one process per core ({_num(dramatiq.median)} jobs/s); "
                f"target >= 2x: {_check(ratio >= 2)}"
            )
    procrastinate = _find(session, "drain", "procrastinate (PostgreSQL, concurrency 8)", "")
    for nodes in ("1 node", "2 nodes"):
        pg = _find(session, "drain", f"WorkStream (PostgreSQL, {nodes})", "")
        if pg:
            lines.append(
                f"- Drain on PostgreSQL, {nodes}: {_num(pg.median)} jobs/s"
                + (
                    f" = {pg.median / procrastinate.median:.1f}x procrastinate on the same server"
                    if procrastinate
                    else ""
                )
            )
    single = _find(session, "http", WS, "POST /jobs, delayed")
    due = _find(session, "http", WS, "POST /jobs, due")
    ceiling = _find(session, "http", "bare Falcon + waitress (ceiling)", "POST /jobs")
    b1000 = _find(session, "http", WS, "POST /jobs/batch (1000)")
    if single and ceiling:
        ratio = single.median / ceiling.median
        lines.append(
            f"- POST /jobs (delayed jobs: submission alone): {_num(single.median)} req/s = "
            f"{ratio:.0%} of the bare Falcon + waitress ceiling ({_num(ceiling.median)} "
            f"req/s); target >= 60%: {_check(ratio >= 0.6)}"
        )
    if due and ceiling:
        lines.append(
            f"- POST /jobs (due jobs, run by the same server meanwhile): {_num(due.median)} "
            f"req/s = {due.median / ceiling.median:.0%} of the ceiling"
        )
    if single and b1000:
        ratio = b1000.median / single.median
        lines.append(
            f"- POST /jobs/batch (1000): {_num(b1000.median)} jobs/s = {ratio:.1f}x the "
            f"single-job rate (both delayed jobs); target >= 10x: {_check(ratio >= 10)}"
        )
    for result in session.results:
        if (
            result.workload == "latency"
            and result.system == WS
            and result.metric.startswith("submit→start p99")
            and result.values
        ):
            at = result.metric.split("@", 1)[1].strip()
            peer_p99 = [
                r for r in session.results
                if r.workload == "latency" and r.system != WS and r.values
                and r.metric.startswith("submit→start p99") and r.metric.endswith(
                    at if not at.startswith("50% of drain") else ")"
                ) and ("50% of drain" in r.metric) == at.startswith("50% of drain")
            ]  # fmt: skip
            if peer_p99:
                best = min(peer_p99, key=lambda r: r.median)
                own = best.metric.split("@")[1].strip() if "50% of" in at else ""
                lines.append(
                    f"- p99 submit→start @ {at}: WorkStream {_num(result.median)} ms, best "
                    f"peer {best.system} {_num(best.median)} ms"
                    + (f" (at its own {own})" if own else "")
                    + f"; target <= best peer: {_check(result.median <= best.median)}"
                )
    backlog = [
        r for r in session.results
        if r.workload == "backlog" and r.metric.startswith("drain rate") and r.values
    ]  # fmt: skip
    if len(backlog) >= 2:
        ratio = backlog[-1].median / backlog[0].median
        lines.append(
            f"- Backlog: drain at {backlog[-1].metric.split(', ')[1]} = {ratio:.0%} of the rate "
            f"at {backlog[0].metric.split(', ')[1]}; target >= 80%: {_check(ratio >= 0.8)}"
        )
    rss = [
        r for r in session.results
        if r.workload == "backlog" and r.metric.startswith("server RSS") and r.values
    ]  # fmt: skip
    if len(rss) >= 2:
        lines.append(
            f"- RSS with the backlog: {' / '.join(_num(r.median) for r in rss)} MiB "
            f"({', '.join(r.metric.split(', ')[1] for r in rss)})"
        )
    lines += cpu_ratios(session)
    before = _find(session, "overload", WS, "server RSS before")
    after = _find(session, "overload", WS, "server RSS after")
    if before and after:
        lines.append(
            f"- RSS through the 429 flood: {_num(before.median)} -> {_num(after.median)} MiB"
        )
    return lines


def write_markdown(
    session: Session, path: Path, command: str, seconds: float, date: str | None = None
) -> None:
    info = machine()
    md = [
        "# Benchmarks",
        "",
        "Generated by `benchmarks/` — do not edit by hand; rerun the command below.",
        "",
        f"- **Command**: `{command}` ({seconds / 60:.0f} min)",
        f"- **Date**: {date or datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- **Machine**: {info['cpu']}, {info['cores']} cores, {info['ram']} RAM, {info['os']}",
        f"- **Python** {info['python']}, SQLite {sqlite_version()}; WorkStream's dependencies: "
        + ", ".join(f"{name} {version(name)}" for name in OWN_DISTS),
        "- **Peers**: " + ", ".join(f"{name} {version(name)}" for name in PEER_DISTS),
        f"- **Runs**: median of {session.plan.runs} runs, (min-max) beside it; runs of the "
        "systems are interleaved so that noise from the shared machine hits all alike.",
        "",
        "## Targets, as ratios from this run",
        "",
        *ratios(session),
        "",
        "## Results",
        "",
        "| workload | system | metric | unit | median (min-max) | runs |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows(session):
        md.append("| " + " | ".join(text.replace("|", "\\|") for text in row) + " |")
    notes = [r for r in session.results if r.note]
    if notes or session.notes:
        md += ["", "Notes on rows:", ""]
        md += [f"- {r.system}, {r.metric}: {r.note}" for r in notes]
        md += [f"- {note}" for note in session.notes]
    if ANALYSIS.exists():
        md += ["", ANALYSIS.read_text().strip()]
    path.write_text("\n".join(md) + "\n")


def save(session: Session, path: Path, command: str, seconds: float) -> None:
    """The run's results as JSON beside the report, so that the report can be rendered
    again (`python -m benchmarks render`) after its analysis text is edited."""
    data = {
        "plan": dataclasses.asdict(session.plan),
        "results": [dataclasses.asdict(result) for result in session.results],
        "notes": session.notes,
        "command": command,
        "seconds": seconds,
        "machine": machine(),
        "written": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    path.write_text(json.dumps(data, indent=1) + "\n")


def load(path: Path) -> tuple[Session, str, float, str]:
    data = json.loads(path.read_text())
    plan_fields = dict(data["plan"])
    for key, value in plan_fields.items():
        if isinstance(value, list):
            plan_fields[key] = tuple(value)
    session = Session(Plan(**plan_fields), path.parent)
    session.results = [Result(**item) for item in data["results"]]
    session.notes = data["notes"]
    return session, data["command"], data["seconds"], data["written"]


def cpu_ratios(session: Session) -> list[str]:
    """The `cpu` workload's targets: processes against threads and against Dramatiq with
    one process per CPU; /health p99 while every worker is busy."""
    from benchmarks.cpu_bench import CPUS, WS_PROCS, WS_THREADS

    lines = []
    procs = _find(session, "cpu", WS_PROCS, "")
    threads = _find(session, "cpu", WS_THREADS, "")
    dramatiq = _find(session, "cpu", f"Dramatiq (Redis, {CPUS} proc x 8 threads)", "")
    if procs and threads:
        ratio = procs.median / threads.median
        lines.append(
            f"- CPU-bound jobs: worker processes {_num(procs.median)} jobs/s = {ratio:.2f}x "
            f"in-process threads ({_num(threads.median)}); target >= 1.8x: "
            f"{_check(ratio >= 1.8)}"
        )
    if procs and dramatiq:
        ratio = procs.median / dramatiq.median
        lines.append(
            f"- CPU-bound jobs: worker processes = {ratio:.2f}x Dramatiq with {CPUS} processes "
            f"({_num(dramatiq.median)} jobs/s); target >= 0.9x: {_check(ratio >= 0.9)}"
        )
    health = _find(session, "cpu", WS_PROCS, "GET /health p99")
    if health:
        lines.append(
            f"- GET /health p99 while CPU-bound jobs run in worker processes: "
            f"{_num(health.median)} ms; target <= 20 ms: {_check(health.median <= 20)}"
        )
    return lines
