"""Redis layout of the job queue, shared by the API and the workers.

Two lanes, each a Redis Stream with a consumer group, so a sampling request never waits
behind a training job:

- ``<p>:lane:train`` (group ``trainers``): one message per training job; the job's state
  lives in the hash ``<p>:job:<id>``, its progress events in the stream
  ``<p>:job:<id>:events``. A worker keeps its message's idle time at zero while it trains
  (``XCLAIM ... JUSTID`` as heartbeat); a message idle for ``claim_after_s`` belonged to a
  dead worker and is taken over with ``XAUTOCLAIM``. After ``max_attempts`` starts a job
  goes to the dead-letter stream ``<p>:lane:dead``.
- ``<p>:lane:sample`` (group ``samplers``): sampling and log-prob requests. A worker
  drains all waiting requests at once, groups them per model into one forward pass, and
  pushes each answer onto the list ``<p>:reply:<request id>``, on which the API waits.

Live workers are the members of the sorted set ``<p>:workers`` seen within the last
``worker_ttl_s``; counters for ``/metrics`` live in the hash ``<p>:stats``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

TRAIN_GROUP = "trainers"
SAMPLE_GROUP = "samplers"
TERMINAL = ("succeeded", "failed", "cancelled")
ACTIVE = ("queued", "running")
EVENTS_MAXLEN = 2_000
SAMPLE_LANE_MAXLEN = 100_000


@dataclass(frozen=True)
class Keys:
    """Every Redis key, under one prefix (tests use their own)."""

    prefix: str

    @property
    def train(self) -> str:
        return f"{self.prefix}:lane:train"

    @property
    def sample(self) -> str:
        return f"{self.prefix}:lane:sample"

    @property
    def dead(self) -> str:
        return f"{self.prefix}:lane:dead"

    @property
    def jobs(self) -> str:
        return f"{self.prefix}:jobs"

    @property
    def workers(self) -> str:
        return f"{self.prefix}:workers"

    @property
    def stats(self) -> str:
        return f"{self.prefix}:stats"

    def job(self, job_id: str) -> str:
        return f"{self.prefix}:job:{job_id}"

    def events(self, job_id: str) -> str:
        return f"{self.prefix}:job:{job_id}:events"

    def cancel(self, job_id: str) -> str:
        return f"{self.prefix}:job:{job_id}:cancel"

    def idempotency(self, key: str) -> str:
        return f"{self.prefix}:idempotency:{key}"

    def dataset_jobs(self, dataset_id: str) -> str:
        return f"{self.prefix}:dataset:{dataset_id}:jobs"

    def reply(self, request_id: str) -> str:
        return f"{self.prefix}:reply:{request_id}"

    def worker_info(self, name: str) -> str:
        return f"{self.prefix}:worker:{name}"


def decode(value: Any) -> Any:
    """Bytes from Redis to str, recursively for dicts, lists and sets (sets become lists)."""
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, dict):
        return {decode(k): decode(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [decode(v) for v in value]
    return value
