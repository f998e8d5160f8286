"""The job data layer on real Redis: each state change writes what the routes, the worker
and /metrics read, through the same functions for the sync and the asyncio client."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis

from sbiserve.service import jobs
from sbiserve.service.hyperparameters import normalize
from sbiserve.service.queue import TRAIN_GROUP, Keys, decode
from sbiserve.service.settings import Settings

from .conftest import cleanup, fast_settings


@pytest.fixture
def lane(tmp_path: Path) -> Iterator[tuple[redis.Redis, Keys]]:
    settings: Settings = fast_settings(tmp_path)
    client = redis.Redis.from_url(settings.redis_url or "")
    keys = Keys(settings.key_prefix)
    client.xgroup_create(keys.train, TRAIN_GROUP, id="0", mkstream=True)
    try:
        yield client, keys
    finally:
        cleanup(settings)


def run(client: redis.Redis, write: object, *args: object, **kwargs: object) -> None:
    pipe = client.pipeline()
    write(pipe, *args, **kwargs)  # type: ignore[operator]
    pipe.execute()


def take(client: redis.Redis, keys: Keys) -> bytes:
    """The worker's read of the next lane entry: its id."""
    [(_, [(message_id, fields)])] = client.xreadgroup(TRAIN_GROUP, "w", {keys.train: ">"}, 1)
    assert decode(fields)["job_id"] == "j1"
    return message_id


def shown(client: redis.Redis, keys: Keys, job_id: str) -> dict[str, Any]:
    """The job as ``GET /v1/jobs/{id}`` shows it."""
    job = jobs.Job.from_hash(jobs.read(client, keys, job_id))
    assert job is not None
    return job.view()


def test_a_job_from_creation_to_its_model(lane: tuple[redis.Redis, Keys]) -> None:
    client, keys = lane
    prior = {"type": "box", "low": [-1], "high": [1]}
    options = normalize("energy_flow", {"max_epochs": 2})
    run(client, jobs.create, keys, "j1", dataset_id="d1", options=options, prior=prior, name=None)
    view = shown(client, keys, "j1")
    assert view["status"] == "queued" and view["family"] == "energy_flow"
    assert view["hyperparameters"] == options.to_dict()
    assert view["hyperparameters"]["training"]["max_epochs"] == 2
    assert view["prior"] == prior and view["name"] is None and view["attempts"] == 0
    assert decode(jobs.of_dataset(client, keys, "d1")) == ["j1"]
    assert decode(jobs.recent(client, keys, 10)) == ["j1"]

    message_id = take(client, keys)
    run(client, jobs.count_attempt, keys, "j1")
    run(client, jobs.mark_running, keys, "j1", "w")
    run(client, jobs.requeue, keys, "j1", message_id)  # handed back by a stopping worker
    view = shown(client, keys, "j1")
    assert (view["status"], view["attempts"], view["worker"]) == ("queued", 0, None)

    message_id = take(client, keys)
    run(client, jobs.requeue, keys, "j1", message_id, error="boom")  # a failed attempt
    assert shown(client, keys, "j1")["error"] == "boom"

    message_id = take(client, keys)
    run(client, jobs.count_attempt, keys, "j1")
    run(client, jobs.mark_running, keys, "j1", "w")
    run(client, jobs.heartbeat, keys, "j1", 123.0)
    run(client, jobs.training_started, keys, "j1", 2)
    view = shown(client, keys, "j1")
    assert (view["status"], view["worker"], view["progress"]["max_epochs"]) == ("running", "w", 2)
    run(client, jobs.progress, keys, "j1", {"epoch": 1, "max_epochs": 2, "train_loss": 0.5})
    run(client, jobs.diagnostics_progress, keys, "j1", "sbc", 3, 10)
    assert jobs.publish_once(client, keys, "j1", "m1", exists=lambda _: True) == (True, "m1")
    assert jobs.publish_once(client, keys, "j1", "m2", exists=lambda _: True) == (False, "m1")
    winner_died = jobs.publish_once(client, keys, "j1", "m3", exists=lambda _: False)
    assert winner_died == (True, "m3")
    run(client, jobs.finish, keys, "j1", "d1", message_id, "succeeded", model_id="m3")
    view = shown(client, keys, "j1")
    assert (view["status"], view["model_id"], view["error"]) == ("succeeded", "m3", None)
    assert view["progress"]["epoch"] == 1 and view["attempts"] == 1
    assert client.smembers(keys.dataset_jobs("d1")) == set()
    assert client.xpending(keys.train, TRAIN_GROUP)["pending"] == 0
    events = [jobs.event(fields) for _, fields in client.xrange(keys.events("j1"))]
    assert events == [
        ("progress", {"epoch": 1, "max_epochs": 2, "train_loss": 0.5}),
        ("diagnostics", {"stage": "sbc", "done": "3", "total": "10"}),
        ("status", {"status": "succeeded", "model_id": "m3"}),
    ]
    assert decode(client.hgetall(keys.stats)) == {"epochs_trained": "1", "jobs_succeeded": "1"}
    # Every field written is one FIELDS names: the hash's one list of fields.
    assert set(decode(client.hgetall(keys.job("j1")))) <= set(jobs.FIELDS)


def test_the_api_reads_through_the_same_functions_on_an_asyncio_client(
    lane: tuple[redis.Redis, Keys],
) -> None:
    client, keys = lane
    run(client, jobs.create, keys, "j1", dataset_id="d1",
        options=normalize("energy_flow", {}), prior=None, name="n")  # fmt: skip

    async def read() -> tuple[jobs.Job | None, jobs.Job | None, list[Any]]:
        api = aioredis.Redis.from_url(os.environ["SBISERVE_TEST_REDIS_URL"])
        try:
            known = jobs.Job.from_hash(await jobs.read(api, keys, "j1"))
            unknown = jobs.Job.from_hash(await jobs.read(api, keys, "nope"))
            events = await jobs.read_events(api, keys, "j1", "0-0", block_ms=1)
            return known, unknown, events
        finally:
            await api.aclose()

    known, unknown, events = asyncio.run(read())
    assert known is not None and (known.status, known.name, known.prior) == ("queued", "n", None)
    assert unknown is None and events == []


def test_cancel_stops_a_queued_job_at_once_and_only_flags_a_running_one(
    lane: tuple[redis.Redis, Keys],
) -> None:
    client, keys = lane
    for job_id, status in (("q", "queued"), ("r", "running")):
        client.hset(keys.job(job_id), mapping={"job_id": job_id, "status": status})
        run(client, jobs.cancel, keys, job_id, "d1", 60)
        assert client.exists(keys.cancel(job_id))
    assert decode(client.hget(keys.job("q"), "status")) == "cancelled"
    assert decode(client.hget(keys.job("r"), "status")) == "running"  # stops at its next step


def test_a_dead_letter_names_the_job_and_its_error(lane: tuple[redis.Redis, Keys]) -> None:
    client, keys = lane
    run(client, jobs.dead_letter, keys, "j9", "gave up")
    [(_, fields)] = client.xrange(keys.dead)
    assert decode(fields) == {"job_id": "j9", "error": "gave up"}
