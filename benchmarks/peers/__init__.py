"""Task modules for the peers; each is imported by the peer's own worker command."""

import os

REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/13")
# Names of queues and databases carry the session (the benchmark's process id, inherited
# by the workers it starts), so that two benchmark runs on one machine never share a queue.
SESSION = os.environ.setdefault("BENCH_SESSION", str(os.getpid()))
