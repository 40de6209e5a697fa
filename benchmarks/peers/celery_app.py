import time

from celery import Celery

from benchmarks.peers import REDIS_URL, SESSION
from benchmarks.record import record

app = Celery("bench", broker=REDIS_URL)
app.conf.task_ignore_result = True
app.conf.task_default_queue = f"bench-celery-{SESSION}"
app.conf.worker_hijack_root_logger = False
app.conf.broker_connection_retry_on_startup = True


@app.task
def noop(t0=0.0):
    started = time.time()
    record(t0, started)
