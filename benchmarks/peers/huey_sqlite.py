import os
import time

from huey import SqliteHuey

from benchmarks.record import record

huey = SqliteHuey("bench-huey", filename=os.environ.get("BENCH_HUEY_SQLITE", "huey-bench.db"))


@huey.task()
def noop(t0=0.0):
    started = time.time()
    record(t0, started)
