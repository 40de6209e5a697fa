"""Task modules for the peers; each is imported by the peer's own worker command."""

import os

REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/13")
