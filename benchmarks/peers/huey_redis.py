import time

from huey import RedisHuey

from benchmarks.peers import REDIS_URL, SESSION
from benchmarks.record import record

huey = RedisHuey(f"bench-huey-{SESSION}", url=REDIS_URL)


@huey.task()
def noop(t0=0.0):
    started = time.time()
    record(t0, started)
