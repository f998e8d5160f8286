"""The worker's replies (batches split by draws, errors, deadlines on Redis's clock, one
pipeline per batch, no wait for a lone request) and the API's error body for the
unexpected, on real Redis."""

from __future__ import annotations

import io
import signal
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import redis

from sbiserve.models import EnergyFlow, EnergyFlowConfig
from sbiserve.service.arrays import load_npy, to_npy_bytes
from sbiserve.service.sample_lane import decode_array, decode_request, unpack_reply
from sbiserve.service.worker import Worker

from .conftest import cleanup, fast_settings


def request(num_samples: int, num_obs: int = 1, seed: int = 0, **extra: Any) -> dict[str, Any]:
    return {
        "id": uuid.uuid4().hex,
        "op": "sample",
        "model_id": "m",
        "deadline": time.time() + 60,
        "x": np.zeros((num_obs, 2), dtype=np.float32),
        "num_samples": num_samples,
        "seed": seed,
        **extra,
    }


@pytest.fixture
def worker(tmp_path: Path) -> Any:
    settings = fast_settings(tmp_path, sample_max_draws=64)
    worker = Worker(settings, name="batching-test")
    flow = EnergyFlow(2, 2, EnergyFlowConfig(hidden_features=(8,)))
    staging, model_id = worker.models.stage(flow, metrics={})
    worker.models.publish(staging, model_id, {"family": flow.family})
    try:
        yield worker, model_id
    finally:
        cleanup(settings)


def pop_reply(worker: Worker, r: dict[str, Any]) -> tuple[dict[str, Any], bytes]:
    """The worker's reply to request ``r`` (meta and payload), taken off its list."""
    message = redis.Redis.from_url(worker.settings.redis_url or "").lpop(worker.keys.reply(r["id"]))
    assert message is not None, f"no reply to request {r['id']}"
    return unpack_reply(message)


def replies(worker: Worker, requests: list[dict[str, Any]]) -> list[np.ndarray]:
    out = []
    for r in requests:
        meta, payload = pop_reply(worker, r)
        assert "error" not in meta, meta
        out.append(decode_array(meta, payload))
        assert np.array_equal(out[-1], load_npy(io.BytesIO(payload), "draws"))  # a real .npy
    return out


def test_split_batches_give_the_same_draws_as_one_pass(worker: Any) -> None:
    worker, model_id = worker
    sizes = [(3, 1), (50, 2), (200, 1), (1, 3)]  # 403 draws in parts of at most 64
    requests = [request(n, b, seed=i, model_id=model_id) for i, (n, b) in enumerate(sizes)]
    worker._answer(requests)
    split = replies(worker, requests)
    assert [d.shape for d in split] == [(n, b, 2) for n, b in sizes]

    worker.settings.sample_max_draws = 10_000
    worker._answer(requests)
    for parts, whole in zip(split, replies(worker, requests), strict=True):
        np.testing.assert_allclose(parts, whole, rtol=1e-5, atol=1e-6)


def test_requests_past_their_deadline_are_skipped(worker: Any) -> None:
    worker, model_id = worker
    late = request(10, model_id=model_id, deadline=time.time() - 1)
    live = request(10, model_id=model_id)
    worker._answer([late, live])
    assert replies(worker, [live])[0].shape == (10, 1, 2)
    client = redis.Redis.from_url(worker.settings.redis_url or "")
    assert client.llen(worker.keys.reply(late["id"])) == 0


def test_every_request_gets_a_reply_whatever_fails(worker: Any) -> None:
    worker, model_id = worker
    flow = EnergyFlow(2, 2, EnergyFlowConfig(hidden_features=(8,)))
    staging, damaged_id = worker.models.stage(flow, metrics={"damaged": True})
    worker.models.publish(staging, damaged_id, {"family": flow.family})
    weights = next(worker.models.path(damaged_id).glob("*.safetensors"))
    weights.write_bytes(weights.read_bytes()[:-8] + b"corrupt!")

    good = request(5, model_id=model_id)
    unknown = request(5, model_id="0" * 24)
    damaged = request(5, model_id=damaged_id)
    no_density = {**request(1, model_id=model_id), "op": "log_prob", "theta": np.zeros((1, 2))}
    worker._answer([unknown, damaged, no_density, good])

    assert replies(worker, [good])[0].shape == (5, 1, 2)
    assert pop_reply(worker, unknown)[0] | {"error": ""} == {
        "error": "",
        "status": 404,
        "code": "not_found",
        "field": "model_id",
    }
    broken = pop_reply(worker, damaged)[0]
    assert broken["status"] == 500 and broken["code"] == "internal_error"
    assert "ManifestError" in broken["error"]
    refused = pop_reply(worker, no_density)[0]
    assert refused["status"] == 422 and "density" in refused["error"]


def test_the_api_keeps_the_status_code_and_field_of_a_worker_error() -> None:
    from sbiserve.service.routes.posterior import WorkerError

    error = WorkerError({"error": "unknown model", "status": 404, "code": "not_found"})
    assert (error.status, error.body()["error"]["code"]) == (404, "not_found")
    legacy = WorkerError({"error": "bad x", "status": 422})  # a reply without a code
    assert (legacy.status, legacy.code, legacy.field) == (422, "invalid_input", None)


def test_deadlines_run_on_the_redis_clock(worker: Any) -> None:
    worker, model_id = worker
    client = redis.Redis.from_url(worker.settings.redis_url or "")
    fields = {
        "id": "r1",
        "op": "sample",
        "model_id": model_id,
        "timeout_s": 30.0,
        "x": to_npy_bytes(np.zeros((1, 2), dtype=np.float32)),
        "num_samples": 3,
        "seed": 1,
    }
    entry_id = client.xadd(worker.keys.sample, fields)
    [(_, stored)] = client.xrange(worker.keys.sample, entry_id, entry_id)
    decoded = decode_request(stored, entry_id)
    assert abs(decoded["deadline"] - (worker._redis_now() + 30.0)) < 2.0
    assert decoded["x"].shape == (1, 2) and decoded["seed"] == 1


def lane_entry(model_id: str, num_samples: int = 3, seed: int = 1) -> dict[str, Any]:
    return {
        "id": uuid.uuid4().hex,
        "op": "sample",
        "model_id": model_id,
        "timeout_s": 30.0,
        "x": to_npy_bytes(np.zeros((1, 2), dtype=np.float32)),
        "num_samples": num_samples,
        "seed": seed,
    }


def test_a_request_older_than_its_time_limit_on_the_redis_clock_is_dropped(worker: Any) -> None:
    worker, model_id = worker
    client = redis.Redis.from_url(worker.settings.redis_url or "")
    seconds, _ = client.time()
    old, fresh = lane_entry(model_id), lane_entry(model_id)
    # Taken by Redis 60 s ago (the entry id says so) with a 30 s limit: the API gave up.
    client.xadd(worker.keys.sample, old, id=f"{(int(seconds) - 60) * 1000}-0")
    client.xadd(worker.keys.sample, fresh)
    worker._ensure_groups()
    worker._sample_once()
    assert client.llen(worker.keys.reply(old["id"])) == 0
    assert replies(worker, [{"id": fresh["id"]}])[0].shape == (3, 1, 2)
    assert client.xlen(worker.keys.sample) == 0  # both acknowledged and deleted


def test_a_batch_is_answered_and_acknowledged_in_one_pipeline(
    worker: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    worker, model_id = worker
    client = redis.Redis.from_url(worker.settings.redis_url or "")
    entries = [lane_entry(model_id, seed=i) for i in range(3)]
    for entry in entries:
        client.xadd(worker.keys.sample, entry)
    worker._ensure_groups()
    worker._redis_now()  # the clock offset, measured once (the heartbeat refreshes it)
    executed: list[int] = []
    original = redis.client.Pipeline.execute

    def counted(self: Any, *args: Any, **kwargs: Any) -> Any:
        executed.append(len(self.command_stack))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(redis.client.Pipeline, "execute", counted)
    worker._sample_once()
    assert executed == [4 + 2 * 3 + 2]  # stats, a reply and its expiry each, XACK + XDEL
    draws = replies(worker, [{"id": e["id"]} for e in entries])
    assert [d.shape for d in draws] == [(3, 1, 2)] * 3
    assert client.xlen(worker.keys.sample) == 0
    stats = client.hgetall(worker.keys.stats)
    assert (stats[b"sample_batches"], stats[b"sample_requests"]) == (b"1", b"3")
    assert stats[b"sample_batch_le_4"] == b"1"


def test_a_lone_request_is_answered_without_waiting_for_more(
    worker: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    worker, model_id = worker
    client = redis.Redis.from_url(worker.settings.redis_url or "")
    entry = lane_entry(model_id)
    client.xadd(worker.keys.sample, entry)
    worker._ensure_groups()

    def no_wait(messages: Any) -> None:
        raise AssertionError("a lone request waited for others")

    monkeypatch.setattr(worker, "_gather", no_wait)
    worker._sample_once()
    assert replies(worker, [{"id": entry["id"]}])[0].shape == (3, 1, 2)


def test_under_load_a_batch_takes_requests_that_arrive_meanwhile(worker: Any) -> None:
    worker, model_id = worker
    worker.settings.sample_wait_ms = 5_000  # a bound, not a sleep: it ends when none arrive
    client = redis.Redis.from_url(worker.settings.redis_url or "")
    worker._ensure_groups()
    first = [lane_entry(model_id, seed=i) for i in range(2)]
    for entry in first:
        client.xadd(worker.keys.sample, entry)
    messages = worker._read_lane(block_ms=1000, count=10)
    late = lane_entry(model_id, seed=9)
    client.xadd(worker.keys.sample, late)
    start = time.monotonic()
    worker._gather(messages)
    assert len(messages) == 3
    assert time.monotonic() - start < 2.0  # stopped once nothing more arrived


def test_gathering_never_blocks_in_redis(worker: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # Redis times a blocked read out on its timer (10 Hz by default): a BLOCK of 1 ms on
    # a quiet lane can hold every waiting client for 100 ms. Gathering must poll.
    worker, model_id = worker
    worker.settings.sample_wait_ms = 50
    client = redis.Redis.from_url(worker.settings.redis_url or "")
    worker._ensure_groups()
    for i in range(2):
        client.xadd(worker.keys.sample, lane_entry(model_id, seed=i))
    messages = worker._read_lane(block_ms=1000, count=10)
    blocks: list[Any] = []
    read = worker._read_lane

    def recording(block_ms: Any, count: int) -> list[Any]:
        blocks.append(block_ms)
        if len(blocks) == 2:  # one arrives during the first pause
            client.xadd(worker.keys.sample, lane_entry(model_id, seed=9))
        return read(block_ms, count)

    monkeypatch.setattr(worker, "_read_lane", recording)
    worker._gather(messages)
    assert len(messages) == 3
    # Empty, paused, the late one, empty, paused, empty: then it stops.
    assert blocks == [None] * 4


def test_gathering_stops_at_sample_wait_ms_while_requests_keep_arriving(
    worker: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    worker, model_id = worker
    worker.settings.sample_wait_ms = 20
    worker.settings.sample_max_batch = 100_000
    client = redis.Redis.from_url(worker.settings.redis_url or "")
    worker._ensure_groups()
    read = worker._read_lane

    def always_one_more(block_ms: Any, count: int) -> list[Any]:
        client.xadd(worker.keys.sample, lane_entry(model_id))
        return read(block_ms, count)

    monkeypatch.setattr(worker, "_read_lane", always_one_more)
    messages: list[Any] = []
    start = time.monotonic()
    worker._gather(messages)
    # The bound holds although the lane is never quiet: it stops near 20 ms, far from
    # the batch cap.
    assert 0 < len(messages) < 100_000
    assert time.monotonic() - start < 2.0


def test_a_stop_signal_never_waits_on_the_stop_event(worker: Any) -> None:
    worker, _ = worker
    # As if SIGTERM landed while the main thread held the event's lock (inside
    # Event.wait, or an earlier handler's Event.set): the handler must return at once.
    with worker.stopping._cond:
        worker._on_signal(signal.SIGTERM, None)
        worker._on_signal(signal.SIGTERM, None)  # a repeated signal, too
        assert not worker.stopping.is_set()
    assert worker.stopping.wait(5)  # set by another thread once the lock is free


def test_an_unexpected_error_is_a_json_500(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from sbiserve.service.app import create_app

    settings = fast_settings(tmp_path)
    app = create_app(settings)

    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError("kaput")

    try:
        with TestClient(app, raise_server_exceptions=False) as client:
            response = client.get("/boom")
        assert response.status_code == 500
        reference = response.headers["X-Sbiserve-Error-Id"]
        assert response.json()["error"] == {  # the details stay in the log
            "code": "internal_error",
            "message": f"internal error (reference {reference}); the details are in the "
            "server's log",
            "field": None,
        }
    finally:
        cleanup(settings)
