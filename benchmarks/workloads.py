"""The five workloads, for WorkStream and for each peer that can run here."""

from __future__ import annotations

import contextlib
import http.client
import json
import shutil
import statistics
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks import httpload, record
from benchmarks.common import (
    PYTHON,
    NotRun,
    Result,
    child_env,
    free_port,
    percentile,
    rss_mib,
    spawn,
    stop,
    tail,
    wait_until,
)
from benchmarks.peers.runners import Peer, Procrastinate, all_peers
from benchmarks.wsrun import (
    JOB_TYPE,
    Server,
    count_status,
    pg_count,
    pg_create,
    pg_drop,
    pg_preload,
    pg_url,
    preload,
)

WS = "WorkStream (SQLite)"
# The drain again with as many handler slots as Dramatiq's 2 processes x 8 threads run at
# once (WORKER_COUNT's default is 10): the same concurrency, so the difference is the rest.
WS_16 = "WorkStream (SQLite, WORKER_COUNT=16)"
WS_PG = {1: "WorkStream (PostgreSQL, 1 node)", 2: "WorkStream (PostgreSQL, 2 nodes)"}
WORKLOADS = ("drain", "http", "latency", "backlog", "overload", "cpu", "sched")


@dataclass
class Plan:
    quick: bool
    runs: int
    drain_jobs: int
    http_seconds: float
    latency_seconds: float  # per phase; `runs` phases per rate
    latency_rates: tuple[str, ...]  # "50" (jobs/s, all systems) and/or "half" (50% of drain)
    backlog_sizes: tuple[int, ...]
    backlog_window: int  # completions timed per window; `runs` windows per size
    overload_seconds: float
    drain_timeout: float = 900.0

    @classmethod
    def make(cls, quick: bool, runs: int | None) -> Plan:
        if quick:
            return cls(True, runs or 1, 1000, 2, 1.5, ("50",), (1_000, 5_000), 400, 3, 60.0)
        return cls(
            False, runs or 3, 20_000, 8, 4, ("50", "half"),
            (10_000, 100_000, 1_000_000), 3_000, 60,
        )  # fmt: skip


@dataclass
class Session:
    plan: Plan
    folder: Path
    results: list[Result] = field(default_factory=list)
    peers: list[Peer] = field(default_factory=list)
    peer_problems: dict[str, str] = field(default_factory=dict)
    drain_rates: dict[str, float] = field(default_factory=dict)  # system -> median jobs/s
    extra_runs: dict[str, int] = field(default_factory=dict)  # system -> jobs run twice
    notes: list[str] = field(default_factory=list)
    _counter: int = 0

    def fresh(self, name: str) -> Path:
        self._counter += 1
        path = self.folder / f"{self._counter:03d}-{name}"
        path.mkdir(parents=True)
        return path

    def add(self, result: Result) -> Result:
        self.results.append(result)
        return result

    def log(self, text: str) -> None:
        print(f"  {text}", flush=True)


def check_peers(session: Session) -> None:
    for peer in all_peers():
        try:
            peer.check(session.folder)
        except NotRun as exc:
            session.peer_problems[peer.label] = str(exc)
        except Exception as exc:
            session.peer_problems[peer.label] = f"cannot start: {type(exc).__name__}: {exc}"
        else:
            session.peers.append(peer)


def cleanup_peers(session: Session) -> None:
    for peer in session.peers:
        if isinstance(peer, Procrastinate):
            try:
                peer.drop()
            except Exception as exc:
                print(f"  (could not drop the procrastinate database: {exc})")


def _not_run(session: Session, workload: str, metric: str, unit: str) -> None:
    for label, reason in session.peer_problems.items():
        session.add(Result(workload, label, metric, unit, not_run=reason))


# -- 1. drain ------------------------------------------------------------------------


def _wait_records(folder: Path, count: int, procs: list, timeout: float, log: Path) -> None:
    def done() -> bool:
        for proc in procs:
            if proc.poll() is not None:
                raise NotRun(f"exited with {proc.returncode}: {tail(log)}")
        return record.count(folder) >= count

    if not wait_until(done, timeout, 0.02):
        raise NotRun(f"only {record.count(folder)} of {count} jobs done in {timeout:.0f}s")


def drain_workstream(
    session: Session,
    count: int,
    job_type: str = JOB_TYPE,
    priority: Callable[[int], int] = lambda index: 5,
    **settings: str,
) -> float:
    """Jobs/s of a server draining `count` preloaded jobs of `job_type`."""
    folder = session.fresh(f"ws-drain-{job_type}")
    records = folder / "records"
    records.mkdir()
    preload(folder / "workstream.db", count, job_type, priority)
    server = Server(folder, records, **settings)
    started = server.start()
    try:
        _wait_records(records, count, [server.proc], session.plan.drain_timeout, server.log)
    finally:
        code = server.stop()
    rows = record.read(records)
    completed = count_status(server.db, "completed")
    if len(rows) != count or completed != count:
        raise NotRun(f"count mismatch: {len(rows)} run, {completed} completed of {count}")
    if code != 0:
        raise NotRun(f"workstream serve exited with {code}")
    return count / (max(row[2] for row in rows) - started)


def drain_workstream_pg(session: Session, count: int, nodes: int) -> float:
    """`nodes` servers on one PostgreSQL database, the jobs stored before they start."""
    folder = session.fresh(f"ws-pg{nodes}-drain")
    records = folder / "records"
    records.mkdir()
    pg_preload(count)
    servers = [
        Server(folder, records, f"node{i}", DATABASE_URL=pg_url()) for i in range(1, nodes + 1)
    ]
    started = time.time()
    for server in servers:
        server.start()
    try:
        procs = [server.proc for server in servers]
        _wait_records(records, count, procs, session.plan.drain_timeout, servers[0].log)
    finally:
        codes = [server.stop() for server in servers]
    rows = record.read(records)
    completed = pg_count("completed")
    if len(rows) != count or completed != count:
        raise NotRun(f"count mismatch: {len(rows)} run, {completed} completed of {count}")
    if any(codes):
        raise NotRun(f"workstream serve exited with {codes}")
    return count / (max(row[2] for row in rows) - started)


def drain_peer(session: Session, peer: Peer, count: int) -> float:
    folder = session.fresh(f"{peer.key}-drain")
    records = folder / "records"
    records.mkdir()
    peer.reset()
    peer.enqueue_many(count)
    log = folder / "worker.log"
    env = child_env(records, **peer.worker_env())
    started = time.time()
    proc = spawn(peer.worker_command(), env, log)
    try:
        _wait_records(records, count, [proc], session.plan.drain_timeout, log)
        _settle(records)  # a peer that runs some jobs twice has not finished at `count`
    finally:
        stop(proc)
    rows = record.read(records)
    if len(rows) < count:
        raise NotRun(f"count mismatch: {len(rows)} runs recorded for {count} jobs")
    if len(rows) > count:
        session.extra_runs[peer.label] = session.extra_runs.get(peer.label, 0) + len(rows) - count
    return count / (max(row[2] for row in rows) - started)


def _settle(records: Path, quiet: float = 1.0) -> None:
    """Wait until no run has been recorded for `quiet` seconds."""
    last, since = record.count(records), time.monotonic()
    while time.monotonic() - since < quiet:
        time.sleep(0.1)
        now = record.count(records)
        if now != last:
            last, since = now, time.monotonic()


def run_drain(session: Session) -> None:
    plan = session.plan
    count = plan.drain_jobs
    systems: list[tuple[str, Callable[[], float]]] = [
        (WS, lambda: drain_workstream(session, count)),
        (WS_16, lambda: drain_workstream(session, count, WORKER_COUNT="16")),
    ]
    try:
        pg_create()
    except NotRun as exc:
        for nodes in (1, 2):
            session.add(Result("drain", WS_PG[nodes], f"{count:,} no-op jobs", "jobs/s",
                               not_run=str(exc)))  # fmt: skip
    else:
        for nodes in (1, 2):
            systems.append(
                (WS_PG[nodes], lambda nodes=nodes: drain_workstream_pg(session, count, nodes))
            )
    for peer in session.peers:
        systems.append((peer.label, lambda peer=peer: drain_peer(session, peer, count)))
    results = {
        name: session.add(Result("drain", name, f"{count:,} no-op jobs", "jobs/s"))
        for name, _ in systems
    }
    for run in range(1, plan.runs + 1):
        for name, fn in systems:  # interleaved: noise hits every system alike
            result = results[name]
            if result.not_run:
                continue
            try:
                rate = fn()
            except NotRun as exc:
                result.not_run = f"failed: {exc}"
                session.log(f"drain {name}: {result.not_run}")
                continue
            result.values.append(rate)
            session.log(f"drain run {run} {name}: {rate:,.0f} jobs/s")
    for name, result in results.items():
        if result.values:
            session.drain_rates[name] = statistics.median(result.values)
        if session.extra_runs.get(name):
            result.note = (
                f"{session.extra_runs[name]} runs more than jobs over all runs (a job run "
                "twice); the clock stopped at the last run"
            )
    with contextlib.suppress(Exception):
        pg_drop()
    _not_run(session, "drain", f"{count:,} no-op jobs", "jobs/s")


# -- 2. HTTP submission --------------------------------------------------------------


def _job_body(t0: float = 0.0, delay: str | None = None) -> dict:
    body: dict = {"type": JOB_TYPE, "payload": {"t0": t0}}
    if delay is not None:
        body["delay"] = delay
    return body


CEILING = "bare Falcon + waitress (ceiling)"


def run_http(session: Session) -> None:
    """POST /jobs and POST /jobs/batch against a fresh server each run. "due" jobs are run
    by the server's workers while the load goes on (what a user's server does); "delayed"
    jobs (delay 1h) are stored exactly the same way, durably, but not run during the
    measurement, so that the row measures submission alone, as the ceiling does."""
    plan = session.plan
    generator = httpload.generator_name()
    if generator == "python":
        session.notes.append(
            "HTTP load came from the built-in Python generator (wrk is not installed): "
            "it shares the CPU with the server and is slower than wrk, so these rates are "
            "a floor."
        )
    rows = [
        ("ceiling", CEILING, "POST /jobs", "req/s", _single(None), 1),
        ("single", WS, "POST /jobs, due jobs (run meanwhile)", "req/s", _single(None), 1),
        ("single-delayed", WS, "POST /jobs, delayed jobs", "req/s", _single("1h"), 1),
        ("b100", WS, "POST /jobs/batch (100), delayed jobs", "jobs/s", _batch(100, "1h"), 100),
        ("b1000", WS, "POST /jobs/batch (1000), delayed jobs", "jobs/s", _batch(1000, "1h"), 1000),
    ]
    note = f"{generator}, {httpload.CONNECTIONS} connections, {plan.http_seconds:g} s per run"
    results = {
        key: session.add(Result("http", system, metric, unit, note=note))
        for key, system, metric, unit, _, _ in rows
    }
    folder = session.fresh("bare")
    port = free_port()
    bare = spawn(
        [PYTHON, "-m", "benchmarks.bare_app", "--port", str(port)],
        child_env(),
        folder / "bare.log",
    )
    try:
        if not wait_until(lambda: _listening(port), 30, 0.05):
            raise NotRun(f"bare app did not start: {tail(folder / 'bare.log')}")
        for run in range(1, plan.runs + 1):
            for key, system, metric, _, body, size in rows:
                result = results[key]
                if result.not_run:
                    continue
                path = "/jobs" if size == 1 else "/jobs/batch"
                try:
                    if key == "ceiling":
                        load = httpload.run(port, path, body, plan.http_seconds)
                    else:
                        load = _ws_load(session, path, body, plan.http_seconds)
                except (NotRun, RuntimeError, subprocess.SubprocessError) as exc:
                    result.not_run = f"failed: {exc}"
                    continue
                good = load.total - load.non_2xx
                if load.non_2xx:
                    result.note = f"{note}; {load.non_2xx} of {load.total} answers not 2xx"
                rate = load.requests_per_s * (good / load.total if load.total else 0) * size
                result.values.append(rate)
                session.log(f"http run {run} {system} {metric}: {rate:,.0f} {result.unit}")
    finally:
        stop(bare)


def _single(delay: str | None) -> bytes:
    return json.dumps(_job_body(delay=delay)).encode()


def _batch(size: int, delay: str | None) -> bytes:
    return json.dumps({"jobs": [_job_body(delay=delay) for _ in range(size)]}).encode()


def _listening(port: int) -> bool:
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
        conn.request("GET", "/")
        conn.getresponse().read()
        conn.close()
        return True
    except OSError:
        return False


def _ws_load(session: Session, path: str, body: bytes, seconds: float) -> httpload.Load:
    folder = session.fresh("ws-http")
    records = folder / "records"
    records.mkdir()
    # The capacity at its maximum, so that due jobs are not refused while the workers
    # drain them beside the load (delayed jobs do not count against it).
    server = Server(folder, records, JOB_QUEUE_CAPACITY="100000")
    server.start()
    try:
        server.wait_ready()
        return httpload.run(server.port, path, body, seconds)
    finally:
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)


# -- 3. latency ----------------------------------------------------------------------


def _paced(factory: Callable[[], Callable[[float], None]], threads: int, rate: float,
           seconds: float) -> tuple[int, int]:  # fmt: skip
    """Open loop: job k is sent at start + k/rate (by thread k mod threads). Returns
    (sent, failed)."""
    total = max(1, int(rate * seconds))
    start = time.perf_counter() + 0.1
    counts = [0, 0]
    lock = threading.Lock()

    def loop(first: int) -> None:
        send = factory()
        sent = failed = 0
        for k in range(first, total, threads):
            delay = start + k / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            try:
                send(time.time())
                sent += 1
            except Exception:
                failed += 1
        with lock:
            counts[0] += sent
            counts[1] += failed

    pool = [threading.Thread(target=loop, args=(i,)) for i in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    return counts[0], counts[1]


def _ws_sender(port: int) -> Callable[[], Callable[[float], None]]:
    def factory() -> Callable[[float], None]:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        headers = {"Content-Type": "application/json"}

        def send(t0: float) -> None:
            conn.request("POST", "/jobs", body=json.dumps(_job_body(t0)), headers=headers)
            response = conn.getresponse()
            response.read()
            if response.status != 201:
                raise RuntimeError(f"POST /jobs answered {response.status}")

        return send

    return factory


def _latency_rates(session: Session, system: str) -> list[tuple[str, float]]:
    rates = []
    for key in session.plan.latency_rates:
        if key == "50":
            rates.append(("50 jobs/s", 50.0))
        elif system in session.drain_rates:
            rate = round(session.drain_rates[system] / 2)
            rates.append((f"50% of drain ({rate:,}/s)", float(rate)))
    return rates


def _measure_latency(session: Session, system: str, records: Path, factory,
                     threads: int, procs: list, log: Path) -> None:  # fmt: skip
    plan = session.plan
    factory()(0.0)  # warm-up job: the workers are up once it has run
    _wait_records(records, 1, procs, 120, log)
    done = 1
    for label, rate in _latency_rates(session, system):
        metrics = {}
        for kind in ("start", "finish"):
            for stat in ("p50", "p99", "max"):
                metrics[(kind, stat)] = session.add(
                    Result("latency", system, f"submit→{kind} {stat} @ {label}", "ms")
                )
        for _ in range(plan.runs):
            phase = time.time()
            sent, failed = _paced(factory, threads, rate, plan.latency_seconds)
            done += sent
            try:
                _wait_records(records, done, procs, max(60, sent / 20), log)
            except NotRun as exc:
                for result in metrics.values():
                    result.not_run = f"failed: {exc}"
                return
            rows = [row for row in record.read(records) if row[0] >= phase]
            starts = [(row[1] - row[0]) * 1000 for row in rows]
            finishes = [(row[2] - row[0]) * 1000 for row in rows]
            for kind, values in (("start", starts), ("finish", finishes)):
                metrics[(kind, "p50")].values.append(percentile(values, 50))
                metrics[(kind, "p99")].values.append(percentile(values, 99))
                metrics[(kind, "max")].values.append(max(values))
            if failed:
                for result in metrics.values():
                    result.note = f"{failed} sends failed"
            session.log(
                f"latency {system} @ {label}: start p50 {percentile(starts, 50):.1f} "
                f"p99 {percentile(starts, 99):.1f} ms ({sent} jobs)"
            )


def run_latency(session: Session) -> None:
    folder = session.fresh("ws-latency")
    records = folder / "records"
    records.mkdir()
    server = Server(folder, records)
    server.start()
    try:
        server.wait_ready()
        _measure_latency(session, WS, records, _ws_sender(server.port), 8, [server.proc],
                         server.log)  # fmt: skip
    except (NotRun, RuntimeError) as exc:
        session.add(Result("latency", WS, "submit→start", "ms", not_run=f"failed: {exc}"))
    finally:
        server.stop()
    for peer in session.peers:
        folder = session.fresh(f"{peer.key}-latency")
        records = folder / "records"
        records.mkdir()
        log = folder / "worker.log"
        peer.reset()
        proc = spawn(peer.worker_command(), child_env(records, **peer.worker_env()), log)
        try:
            _measure_latency(session, peer.label, records, peer.sender, peer.sender_threads,
                             [proc], log)  # fmt: skip
        except (NotRun, RuntimeError) as exc:
            session.add(
                Result("latency", peer.label, "submit→start", "ms", not_run=f"failed: {exc}")
            )
        finally:
            stop(proc)
    _not_run(session, "latency", "submit→start", "ms")


# -- 4. backlog ----------------------------------------------------------------------


class _Rollback(Exception):
    pass


def _claim_time(path: Path, samples: int = 30) -> float:
    """Median ms of the Registry's claim of 10 jobs (query + conditional updates) on this
    database, without the commit (whose fsync does not depend on the backlog)."""
    from workstream.jobs import states
    from workstream.store.sqlite import SqliteStore

    store = SqliteStore(path)
    store.open()
    times = []
    try:
        for _ in range(samples):
            started = time.perf_counter()
            try:
                with store.transaction() as tx:
                    now = time.time()
                    for job in tx.claimable(now, 10):
                        tx.update(states.claim(job, owner="bench", now=now, lease=30.0), job)
                    times.append((time.perf_counter() - started) * 1000)
                    raise _Rollback
            except _Rollback:
                pass
    finally:
        store.close()
    return statistics.median(times)


def run_backlog(session: Session) -> None:
    plan = session.plan
    for size in plan.backlog_sizes:
        label = f"{size:,} pending"
        window = min(plan.backlog_window, size // plan.runs)
        windows = f"{plan.runs} windows of {window:,} completions"
        rate = session.add(Result("backlog", WS, f"drain rate, {label}", "jobs/s", note=windows))
        claim = session.add(Result("backlog", WS, f"claim of 10 jobs, {label}", "ms",
                                   note="query + updates, before commit"))  # fmt: skip
        rss = session.add(Result("backlog", WS, f"server RSS, {label}", "MiB",
                                 note="max while draining"))  # fmt: skip
        size_mb = session.add(Result("backlog", WS, f"database size per 1M jobs, {label}", "MB"))
        folder = session.fresh(f"ws-backlog-{size}")
        records = folder / "records"
        records.mkdir()
        db = folder / "workstream.db"
        took = preload(db, size)
        session.log(f"backlog {label}: stored in {took:.1f}s")
        size_mb.values.append((db.stat().st_size / size) * 1e6 / 1e6)
        claim.values.append(_claim_time(db))
        server = Server(folder, records)
        server.start()
        peak = [0.0]
        sampling = threading.Event()

        def sample(
            server: Server = server, sampling: threading.Event = sampling, peak: list = peak
        ) -> None:
            while not sampling.is_set():
                try:
                    peak[0] = max(peak[0], rss_mib(server.pid))
                except OSError:
                    return
                time.sleep(0.1)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            for run in range(1, plan.runs + 1):
                _wait_records(records, window * run, [server.proc], plan.drain_timeout, server.log)
            sampling.set()
            rows = sorted(record.read(records), key=lambda row: row[2])
            for run in range(plan.runs):
                part = rows[run * window : (run + 1) * window]
                rate.values.append((len(part) - 1) / (part[-1][2] - part[0][2]))
            rss.values.append(peak[0])
            session.log(f"backlog {label}: {rate.values} jobs/s, claim {claim.values[0]:.2f} ms, "
                        f"RSS {peak[0]:.0f} MiB")  # fmt: skip
        except NotRun as exc:
            rate.not_run = f"failed: {exc}"
        finally:
            sampling.set()
            server.stop()
            shutil.rmtree(folder, ignore_errors=True)


# -- 5. overload ---------------------------------------------------------------------


def run_overload(session: Session) -> None:
    plan = session.plan
    folder = session.fresh("ws-overload")
    records = folder / "records"
    records.mkdir()
    metric = f"429 flood, {plan.overload_seconds:g} s"
    before = session.add(Result("overload", WS, f"server RSS before ({metric})", "MiB"))
    after = session.add(Result("overload", WS, f"server RSS after ({metric})", "MiB"))
    peak = session.add(Result("overload", WS, f"server RSS max during ({metric})", "MiB"))
    p99 = session.add(Result("overload", WS, f"p99 of the 429 answers ({metric})", "ms"))
    rate = session.add(Result("overload", WS, f"429 answers per second ({metric})", "req/s"))
    server = Server(folder, records, SHUTDOWN_TIMEOUT="1s")
    server.start()
    try:
        server.wait_ready()
        workers = 10
        for _ in range(workers):  # every worker busy for the whole flood
            server.request("POST", "/jobs", {"type": "sleep", "payload": {"seconds": 3600}})
        time.sleep(0.5)
        for _ in range(1000):  # fill the queue to JOB_QUEUE_CAPACITY (default 100)
            status, _ = server.request("POST", "/jobs", _job_body())
            if status == 429:
                break
        else:
            raise NotRun("the queue never filled")
        before.values.append(rss_mib(server.pid))
        samples: list[float] = []
        stop_sampling = threading.Event()

        def sample() -> None:
            while not stop_sampling.wait(0.5):
                samples.append(rss_mib(server.pid))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        load = httpload.run(server.port, "/jobs", json.dumps(_job_body()).encode(),
                            plan.overload_seconds)  # fmt: skip
        stop_sampling.set()
        sampler.join()
        after.values.append(rss_mib(server.pid))
        peak.values.append(max(samples, default=after.values[0]))
        p99.values.append(load.latency_ms.get("p99", float("nan")))
        rate.values.append(load.requests_per_s)
        accepted = load.total - load.non_2xx
        p99.note = f"{load.generator}; {load.non_2xx:,} of {load.total:,} answers were 429"
        if accepted:
            p99.note += f", {accepted} accepted"
        session.log(
            f"overload: {load.requests_per_s:,.0f} req/s, p99 {p99.values[0]:.1f} ms, RSS "
            f"{before.values[0]:.0f} -> {after.values[0]:.0f} MiB"
        )
    except (NotRun, RuntimeError, OSError) as exc:
        for result in (before, after, peak, p99, rate):
            result.not_run = f"failed: {exc}"
    finally:
        server.stop()
