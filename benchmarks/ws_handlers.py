"""The no-op job type WorkStream runs in the benchmarks (JOB_HANDLERS=benchmarks.ws_handlers)."""

import time

from benchmarks.record import record
from workstream import handler


@handler("bench_noop")
def bench_noop(payload, job):
    started = time.time()
    record(payload.get("t0", 0.0) if isinstance(payload, dict) else 0.0, started)


@handler("bench_cpu")
def bench_cpu(payload, job):
    from benchmarks.cpu_work import cpu_task

    cpu_task()


# The same no-op, with limits set high enough never to bind (the `sched` workload): what
# the scheduling machinery costs a drain (row locks, running counts, the rate window).
@handler("bench_sched", max_concurrency=1000, rate_limit="100000/s")
def bench_sched(payload, job):
    started = time.time()
    record(payload.get("t0", 0.0) if isinstance(payload, dict) else 0.0, started)
