"""Process lifecycle of the embedded stack (``sbiserve serve``, :class:`LocalStack`).

SIGTERM stops the workers, then Redis, then exits; a SIGKILLed ``serve`` leaves no child
behind; a dead worker or private Redis is restarted; jobs survive a restart of ``serve``.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import redis

from sbiserve.service.embedded_redis import DirectoryInUse, EmbeddedRedis, RedisNotFound
from sbiserve.service.stack import LocalStack
from sbiserve.service.supervisor import Backoff

from .conftest import fast_settings, train, wait_job
from .test_resilience import kill_worker_running, start_long_job

pytestmark = pytest.mark.slow
FAST_TIMERS = {
    "SBISERVE_HEARTBEAT_S": "0.5",
    "SBISERVE_WORKER_TTL_S": "5",
    "SBISERVE_CLAIM_AFTER_S": "4",
}


def children(pid: int) -> list[int]:
    """Processes whose parent is ``pid`` (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def running(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def wait_gone(pids: list[int], timeout_s: float) -> list[int]:
    """Waits until none of ``pids`` runs; returns those still running."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        alive = [pid for pid in pids if running(pid)]
        if not alive:
            return []
        time.sleep(0.2)
    return alive


@contextmanager
def serve(data_dir: Path) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """``sbiserve serve`` in a subprocess with a private Redis; yields it and its URL."""
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"} | FAST_TIMERS
    command = [sys.executable, "-m", "sbiserve.service.cli", "serve", "--port", "0"]
    process = subprocess.Popen(
        [*command, "--data-dir", str(data_dir)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        banner = process.stdout.readline()
        assert banner.startswith("sbiserve on http://"), banner
        yield process, banner.split()[2]
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()


def wait_running(api: httpx.Client, job_id: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while api.get(f"/v1/jobs/{job_id}").json()["status"] != "running":
        assert time.monotonic() < deadline, f"job {job_id} never ran"
        time.sleep(0.1)


def test_sigterm_stops_children_first_and_a_restart_keeps_jobs(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    with serve(data_dir) as (process, url):
        kids = children(process.pid)
        assert len(kids) == 2  # Redis and one worker
        with httpx.Client(base_url=url, timeout=30) as api:
            done = train(api)
            assert done["status"] == "succeeded", done
            running = start_long_job(api, seed=23)
            wait_running(api, running)
        process.send_signal(signal.SIGTERM)
        assert process.wait(60) == 0
        assert wait_gone(kids, 5) == []
    # The worker stopped while Redis was still up: it handed its job back to the queue
    # and took itself off the live set.
    stored = EmbeddedRedis(directory=data_dir / "redis")
    try:
        client = redis.Redis.from_url(stored.start())
        assert client.hget(f"sbiserve:job:{running}", "status") == b"queued"
        assert client.zcard("sbiserve:workers") == 0
    finally:
        stored.stop()

    with serve(data_dir) as (process, url), httpx.Client(base_url=url, timeout=30) as api:
        again = api.get(f"/v1/jobs/{done['job_id']}")
        assert again.status_code == 200, again.text
        assert again.json()["model_id"] == done["model_id"]
        finished = wait_job(api, running, timeout_s=240)
        assert finished["status"] == "succeeded" and finished["attempts"] == 1, finished
        assert {j["job_id"] for j in api.get("/v1/jobs").json()} == {done["job_id"], running}
        process.send_signal(signal.SIGTERM)
        assert process.wait(60) == 0


def test_children_die_with_a_killed_serve(tmp_path: Path) -> None:
    with serve(tmp_path / "data") as (process, _):
        kids = children(process.pid)
        assert len(kids) == 2
        process.kill()
        process.wait()
        assert wait_gone(kids, 20) == []


@pytest.fixture(scope="module")
def supervised(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    settings = fast_settings(tmp_path_factory.mktemp("supervised"), redis_url=None)
    with LocalStack(settings, workers=1) as stack:
        yield stack


def test_dead_worker_is_restarted_and_its_job_finishes(
    supervised: LocalStack, caplog: pytest.LogCaptureFixture
) -> None:
    with (
        caplog.at_level(logging.WARNING, logger="sbiserve.stack"),
        httpx.Client(base_url=supervised.url, timeout=30) as api,
    ):
        job_id = start_long_job(api, seed=21)
        killed = kill_worker_running(api, supervised, job_id)
        job = wait_job(api, job_id, timeout_s=240)
        assert job["status"] == "succeeded" and job["worker"] != killed, job
        published = [m for m in api.get("/v1/models").json() if m["job_id"] == job_id]
        assert [m["model_id"] for m in published] == [job["model_id"]]
    messages = "\n".join(r.getMessage() for r in caplog.records)
    assert "worker 0 (pid" in messages and "signal SIGKILL); restarting it in" in messages
    assert "worker 0 restarted as pid" in messages


def test_dead_redis_comes_back_on_the_same_files(supervised: LocalStack) -> None:
    with httpx.Client(base_url=supervised.url, timeout=30) as api:
        job = train(api, seed=22)
        assert supervised.redis is not None and supervised.redis.process is not None
        os.kill(supervised.redis.process.pid, signal.SIGKILL)
        supervised.wait_ready(timeout_s=60)
        again = api.get(f"/v1/jobs/{job['job_id']}")
        assert again.status_code == 200 and again.json()["status"] == "succeeded", again.text


def test_restarts_back_off() -> None:
    backoff = Backoff(base_s=1.0, max_s=8.0, stable_s=60.0)
    assert [backoff.next_delay(ran_s=0.5) for _ in range(5)] == [1, 2, 4, 8, 8]
    assert backoff.next_delay(ran_s=120.0) == 1  # it had run well: start over


def test_one_private_redis_per_data_directory(tmp_path: Path) -> None:
    first, second = EmbeddedRedis(directory=tmp_path), EmbeddedRedis(directory=tmp_path)
    first.start()
    try:
        with pytest.raises(DirectoryInUse, match="another running sbiserve"):
            second.start()
        assert second.process is None
    finally:
        first.stop()
    second.start()  # free again
    second.stop()


def test_a_port_taken_by_another_redis_is_not_mistaken_for_ours() -> None:
    other = EmbeddedRedis()
    other.start()
    try:
        with pytest.raises(RedisNotFound, match="did not start"):
            EmbeddedRedis(port=other.port).start(timeout_s=10)
    finally:
        other.stop()
