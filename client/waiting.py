"""Waiting for a training job: follow its event stream, reconnecting when it drops."""

from __future__ import annotations

import time
from collections.abc import Generator
from contextlib import closing
from typing import Any

import httpx

from .errors import JobCancelledError, JobFailedError, UnavailableError, WaitTimeoutError
from .events import EpochBar, Event, parse_events
from .transport import Transport

TERMINAL = ("succeeded", "failed", "cancelled")
# The server sends a keep-alive every 15 s on a quiet stream; a longer silence means the
# connection is dead.
STREAM_READ_TIMEOUT_S = 45.0


def wait_for_job(
    transport: Transport, job_id: str, progress: bool = True, timeout_s: float | None = None
) -> dict[str, Any]:
    """Blocks until job ``job_id`` ends; returns its final state when it succeeded.

    Arguments:
        transport: Where to ask.
        job_id: The job.
        progress: Show a tqdm bar over epochs, fed by the job's server-sent events.
        timeout_s: Give up after this many seconds (``None``: wait as long as it takes).

    Raises:
        JobFailedError: The job failed (``.job["error"]`` says why).
        JobCancelledError: The job was cancelled.
        WaitTimeoutError: ``timeout_s`` passed first; the job goes on.
        UnavailableError: The service stayed unreachable through every retry.
    """
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    bar = EpochBar(f"training job {job_id[:8]}", enabled=progress)
    status = "unknown"
    failures = 0
    try:
        while True:
            try:
                with closing(_events(transport, job_id, deadline)) as events:
                    for event in events:
                        failures = 0
                        if event.kind == "progress":
                            bar.update(event.data)
                        elif event.kind == "status":
                            break
            except httpx.TransportError as e:  # the stream dropped mid-way
                failures += 1
                if failures >= transport.retry.attempts:
                    raise UnavailableError(f"lost the event stream of job {job_id}: {e}") from e
                time.sleep(transport.retry.delay(failures - 1))
            job: dict[str, Any] = transport.request("GET", f"/v1/jobs/{job_id}").json()
            status = job["status"]
            if status in TERMINAL:
                return _outcome(job)
            if deadline is not None and time.monotonic() >= deadline:
                raise WaitTimeoutError(
                    f"job {job_id} is still {status} after {timeout_s} s", field="job_id"
                )
            time.sleep(transport.retry.backoff_s)  # the stream ended early: don't spin
    finally:
        bar.close(status)


def _events(
    transport: Transport, job_id: str, deadline: float | None
) -> Generator[Event, None, None]:
    """The job's events until the stream ends (or, quietly, until the deadline)."""
    remaining = STREAM_READ_TIMEOUT_S
    if deadline is not None:
        remaining = max(0.1, min(remaining, deadline - time.monotonic()))
    timeout = httpx.Timeout(transport.http.timeout.connect, read=remaining)
    try:
        with transport.stream("GET", f"/v1/jobs/{job_id}/events", timeout=timeout) as response:
            yield from parse_events(response.iter_lines())
    except httpx.ReadTimeout:
        if deadline is None or time.monotonic() < deadline:
            raise
        # past the deadline: the caller checks the job once more and reports the timeout


def _outcome(job: dict[str, Any]) -> dict[str, Any]:
    if job["status"] == "succeeded":
        return job
    if job["status"] == "cancelled":
        raise JobCancelledError(f"job {job['job_id']} was cancelled", job)
    raise JobFailedError(f"job {job['job_id']} failed: {job.get('error') or 'no reason'}", job)
