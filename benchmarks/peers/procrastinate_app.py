import os
import time

import procrastinate

from benchmarks.peers import SESSION
from benchmarks.record import record

app = procrastinate.App(
    connector=procrastinate.PsycopgConnector(
        conninfo=os.environ.get(
            "BENCH_PG_DSN", f"postgresql://postgres@127.0.0.1:5432/bench_procrastinate_{SESSION}"
        )
    )
)


@app.task(name="noop")
def noop(t0=0.0):
    started = time.time()
    record(t0, started)
