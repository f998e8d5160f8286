"""Child processes of ``sbiserve serve`` that never outlive it.

:func:`spawn` starts a child in its own process group (so a Ctrl-C in the terminal
reaches only ``serve``, which then stops its children in order) and, on Linux, asks the
kernel to signal the child when its parent dies (``PR_SET_PDEATHSIG``): a SIGKILLed
``serve`` leaves no worker or Redis behind. Elsewhere the children are only stopped by
an orderly shutdown.

The kernel sends that signal when the *thread* that spawned the child ends, so spawn
children only from a thread that lives as long as they should (the main thread, or the
stack's supervisor thread, which ends after the children are stopped).
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from typing import IO, Any

PR_SET_PDEATHSIG = 1


def _load_prctl() -> Any:
    """libc's ``prctl``, or None off Linux. Loaded before any fork: no ``dlopen`` in a child."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


_PRCTL = _load_prctl()


def _die_with_parent(parent: int, death_signal: int) -> Callable[[], None]:
    """What the child runs between fork and exec."""

    def setup() -> None:
        if _PRCTL is not None:
            _PRCTL(PR_SET_PDEATHSIG, death_signal, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os.kill(os.getpid(), death_signal)

    return setup


def spawn(
    args: list[str],
    env: dict[str, str] | None = None,
    output: IO[bytes] | int | None = None,
    death_signal: int = signal.SIGTERM,
) -> subprocess.Popen[bytes]:
    """Starts ``args`` as a child that gets ``death_signal`` if this process dies.

    Arguments:
        args: The command line.
        env: Its environment (default: this process's).
        output: Where its stdout and stderr go (default: inherited).
        death_signal: Sent to the child when this process (thread) ends; SIGTERM lets a
            worker hand its job back and Redis flush its append-only file.
    """
    return subprocess.Popen(
        args,
        env=env,
        stdout=output,
        stderr=subprocess.STDOUT if output is not None else None,
        process_group=0,
        preexec_fn=_die_with_parent(os.getpid(), death_signal),
    )


def terminate(process: subprocess.Popen[bytes], timeout_s: float) -> int | None:
    """SIGTERM, then SIGKILL after ``timeout_s``; returns the exit code."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


def describe_exit(code: int | None) -> str:
    """``exit code 1`` or ``signal SIGKILL`` for a finished process's return code."""
    if code is None:
        return "did not start"
    if code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"exit code {code}"
