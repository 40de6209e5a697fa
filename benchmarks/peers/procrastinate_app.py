import os
import time

import procrastinate

from benchmarks.record import record

app = procrastinate.App(
    connector=procrastinate.PsycopgConnector(
        conninfo=os.environ.get(
            "BENCH_PG_DSN", "postgresql://postgres@127.0.0.1:5432/bench_procrastinate"
        )
    )
)


@app.task(name="noop")
def noop(t0=0.0):
    started = time.time()
    record(t0, started)
