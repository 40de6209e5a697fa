import time

import dramatiq
from dramatiq.brokers.redis import RedisBroker

from benchmarks.peers import REDIS_URL, SESSION
from benchmarks.record import record

broker = RedisBroker(url=REDIS_URL, namespace=f"bench-dramatiq-{SESSION}")
dramatiq.set_broker(broker)


@dramatiq.actor(max_retries=0)
def noop(t0=0.0):
    started = time.time()
    record(t0, started)


@dramatiq.actor(max_retries=0)
def cpu():
    from benchmarks.cpu_work import cpu_task

    cpu_task()
