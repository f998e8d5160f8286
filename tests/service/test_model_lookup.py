"""The request path's model look-up: disk reads in the thread pool, what a reference
resolved to kept for a while, and forgotten at once when this process changes it."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any, NamedTuple
from unittest import mock

import pytest

from sbiserve.service.errors import NotFound
from sbiserve.service.model_lookup import ModelLookup
from sbiserve.service.stores import ModelStore


class CountingStore(ModelStore):
    """A model registry that records which thread reads it and how often."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.reads: list[tuple[str, int]] = []
        self.gate: threading.Event | None = None  # when set, get() waits for it

    def resolve(self, ref: str) -> str:
        self.reads.append(("resolve", threading.get_ident()))
        return super().resolve(ref)

    def get(self, model_id: str) -> dict[str, Any]:
        self.reads.append(("get", threading.get_ident()))
        if self.gate is not None:
            self.gate.wait(5)
        return super().get(model_id)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def publish(store: ModelStore, digit: str) -> str:
    """A model entry with metadata only (the look-up reads nothing else)."""
    model_id = digit * 24
    store.publish(store.staging(), model_id, {"x_dim": 3, "theta_dim": 2})
    return model_id


class Registry(NamedTuple):
    store: CountingStore
    clock: Clock
    lookup: ModelLookup
    first: str  # "latest" points here at first
    second: str

    async def latest(self) -> str:
        return str((await self.lookup.meta("latest"))["model_id"])


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    store, clock = CountingStore(tmp_path), Clock()
    first, second = publish(store, "a"), publish(store, "b")
    store.set_alias("latest", first)
    return Registry(store, clock, ModelLookup(store, ttl_s=1.0, clock=clock), first, second)


def test_the_disk_is_read_off_the_event_loop_and_once_per_period(registry: Registry) -> None:
    async def run() -> tuple[int, list[str]]:
        return threading.get_ident(), [await registry.latest() for _ in range(5)]

    loop_thread, ids = asyncio.run(run())
    assert ids == [registry.first] * 5
    assert [kind for kind, _ in registry.store.reads] == ["resolve", "get"]
    assert all(thread != loop_thread for _, thread in registry.store.reads)


def test_a_changed_alias_is_seen_after_the_period_or_at_once_when_forgotten(
    registry: Registry,
) -> None:
    store, clock, lookup, first, second = registry
    resolved = registry.latest

    async def run() -> None:
        assert await resolved() == first
        store.set_alias("latest", second)  # as another API process would
        assert await resolved() == first  # still within the period
        clock.now += 1.5
        assert await resolved() == second
        store.set_alias("latest", first)
        lookup.forget()  # as this process's alias route does
        assert await resolved() == first
        clock.now += 1.5
        store.reads.clear()
        assert await resolved() == first
        assert [kind for kind, _ in store.reads] == ["resolve"]  # same model: no metadata read
        store.delete(first)
        clock.now += 1.5
        with pytest.raises(NotFound):
            await resolved()

    asyncio.run(run())


def test_a_read_begun_before_forget_is_not_kept(registry: Registry) -> None:
    store = registry.store

    async def run() -> None:
        store.gate = threading.Event()
        slow = asyncio.create_task(registry.latest())  # resolved; reads metadata slowly
        while ("get", mock.ANY) not in store.reads:  # resolved, now reading metadata
            await asyncio.sleep(0.01)
        store.set_alias("latest", registry.second)
        registry.lookup.forget()  # the alias route, while that read is under way
        store.gate.set()
        assert await slow == registry.first  # that request began before the move
        store.gate = None
        assert await registry.latest() == registry.second  # the clock has not moved

    asyncio.run(run())
