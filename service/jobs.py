"""The job data layer: one home for the job hash's fields and for every state change.

A job lives in the hash ``<p>:job:<id>`` (:data:`FIELDS`), its events in the stream
``<p>:job:<id>:events``, its place in the train lane as one stream entry. The routes
create, view and cancel jobs; the worker marks them running, reports progress and
diagnostics, finishes, requeues or dead-letters them and publishes their model once;
``/metrics`` reads their epoch, the dataset routes their status. No other module names a
field of the hash or a key of a job.

Every writer here queues its commands on a pipeline it is given, sync (``redis.Redis``,
the worker) or asyncio (``redis.asyncio``, the API) alike: queuing is synchronous in
both, the caller executes. A reader (:func:`read`, :func:`cancel_requested`,
:func:`read_events`) returns what the client it is given returns: the reply on a sync
client, an awaitable on an asyncio one; :meth:`Job.from_hash` and :func:`event` parse it.
"""

from __future__ import annotations

import dataclasses
import json
import time
from typing import Any

from .hyperparameters import JobOptions
from .queue import EVENTS_MAXLEN, TRAIN_GROUP, Keys, decode

# The job hash's fields: the request, then the state the worker writes.
FIELDS = (
    "job_id",
    "status",
    "dataset_id",
    "family",
    "hyperparameters",  # JSON, the normalized form (hyperparameters.JobOptions.to_dict)
    "prior",  # JSON, "" for none
    "name",
    "created_at",
    "attempts",
    "worker",
    "started_at",
    "finished_at",
    "heartbeat_at",
    "epoch",
    "max_epochs",
    "train_loss",
    "val_loss",
    "model_id",
    "error",
    "diagnostics_stage",
    "diagnostics_done",
    "diagnostics_total",
)


@dataclasses.dataclass(frozen=True)
class Job:
    """A job hash, parsed (``None`` for what is not set yet)."""

    job_id: str
    status: str
    dataset_id: str | None
    family: str | None
    hyperparameters: dict[str, Any]  # the stored form, see hyperparameters.from_stored
    prior: dict[str, Any] | None
    name: str | None
    created_at: float | None
    attempts: int
    worker: str | None
    started_at: float | None
    finished_at: float | None
    epoch: int
    max_epochs: int | None
    train_loss: float | None
    val_loss: float | None
    model_id: str | None
    error: str | None

    @classmethod
    def from_hash(cls, raw: dict[Any, Any]) -> Job | None:
        """The job of a hash as Redis returns it; ``None`` for an empty one (no such job)."""
        job = decode(raw)
        if not job:
            return None

        def number(name: str, kind: type = float) -> Any:
            value = job.get(name)
            return kind(value) if value not in (None, "") else None

        return cls(
            job_id=job["job_id"],
            status=job["status"],
            dataset_id=job.get("dataset_id") or None,
            family=job.get("family") or None,
            hyperparameters=json.loads(job.get("hyperparameters") or "{}"),
            prior=json.loads(job["prior"]) if job.get("prior") else None,
            name=job.get("name") or None,
            created_at=number("created_at"),
            attempts=number("attempts", int) or 0,
            worker=job.get("worker") or None,
            started_at=number("started_at"),
            finished_at=number("finished_at"),
            epoch=number("epoch", int) or 0,
            max_epochs=number("max_epochs", int),
            train_loss=number("train_loss"),
            val_loss=number("val_loss"),
            model_id=job.get("model_id") or None,
            error=job.get("error") or None,
        )

    def view(self) -> dict[str, Any]:
        """The public view (``GET /v1/jobs/{id}``)."""
        return {
            "job_id": self.job_id,
            "status": self.status,
            "dataset_id": self.dataset_id,
            "family": self.family,
            "name": self.name,
            "hyperparameters": self.hyperparameters,
            "prior": self.prior,
            "progress": {
                "epoch": self.epoch,
                "max_epochs": self.max_epochs,
                "train_loss": self.train_loss,
                "val_loss": self.val_loss,
            },
            "model_id": self.model_id,
            "error": self.error,
            "attempts": self.attempts,
            "worker": self.worker,
            "created_at": self.created_at,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
        }


def read(client: Any, keys: Keys, job_id: str) -> Any:
    """The job's hash (for :meth:`Job.from_hash`): the reply, or an awaitable of it."""
    return client.hgetall(keys.job(job_id))


def recent(client: Any, keys: Keys, limit: int) -> Any:
    """The ids of the ``limit`` newest jobs, newest first: the reply, or an awaitable."""
    return client.zrevrange(keys.jobs, 0, limit - 1)


def of_dataset(client: Any, keys: Keys, dataset_id: str) -> Any:
    """The ids of the unfinished jobs of a dataset: the reply, or an awaitable."""
    return client.smembers(keys.dataset_jobs(dataset_id))


def cancel_requested(client: Any, keys: Keys, job_id: str) -> Any:
    """Whether someone asked the job to stop (:func:`cancel`): the reply, or an awaitable."""
    return client.exists(keys.cancel(job_id))


def read_events(client: Any, keys: Keys, job_id: str, after: str, block_ms: int) -> Any:
    """The job's events after the id ``after`` (``XREAD``, waiting up to ``block_ms``)."""
    return client.xread({keys.events(job_id): after}, block=block_ms)


def event(fields: dict[Any, Any]) -> tuple[str, dict[str, Any]]:
    """An event of the job's stream as its kind (``progress``, ``diagnostics``, ``status``)
    and its data, numbers typed."""
    data = decode(fields)
    kind = data.pop("type", "progress")
    for name, kind_of in (
        ("epoch", int),
        ("max_epochs", int),
        ("train_loss", float),
        ("val_loss", float),
    ):
        if name in data:
            data[name] = kind_of(data[name])
    return kind, data


def create(
    pipe: Any,
    keys: Keys,
    job_id: str,
    *,
    dataset_id: str,
    options: JobOptions,
    prior: dict[str, Any] | None,
    name: str | None,
) -> None:
    """A new queued job: its hash, its place in the job list and the dataset's, the lane."""
    now = time.time()
    fields = {
        "job_id": job_id,
        "status": "queued",
        "dataset_id": dataset_id,
        "family": options.family,
        "hyperparameters": json.dumps(options.to_dict()),
        "prior": json.dumps(prior) if prior else "",
        "name": name or "",
        "created_at": now,
        "attempts": 0,
    }
    pipe.hset(keys.job(job_id), mapping=fields)
    pipe.zadd(keys.jobs, {job_id: now})
    pipe.sadd(keys.dataset_jobs(dataset_id), job_id)
    pipe.xadd(keys.train, {"job_id": job_id})


# Cancels a job only while it is still queued (atomically: a worker that has just started
# it keeps "running" and stops at its next step). KEYS: job hash, events, dataset's jobs.
CANCEL_IF_QUEUED = """
if redis.call('HGET', KEYS[1], 'status') ~= 'queued' then return 0 end
redis.call('HSET', KEYS[1], 'status', 'cancelled', 'finished_at', ARGV[1])
redis.call('XADD', KEYS[2], '*', 'type', 'status', 'status', 'cancelled')
redis.call('SREM', KEYS[3], ARGV[2])
return 1
"""


def cancel(pipe: Any, keys: Keys, job_id: str, dataset_id: str, ttl_s: int) -> None:
    """Asks a job to stop: the flag a running job checks, and at once if still queued."""
    pipe.set(keys.cancel(job_id), 1, ex=ttl_s)
    pipe.eval(
        CANCEL_IF_QUEUED,
        3,
        keys.job(job_id),
        keys.events(job_id),
        keys.dataset_jobs(dataset_id),
        time.time(),
        job_id,
    )


def count_attempt(pipe: Any, keys: Keys, job_id: str) -> None:
    """One more start of the job (the pipeline's result: the count, this one included)."""
    pipe.hincrby(keys.job(job_id), "attempts", 1)


def mark_running(pipe: Any, keys: Keys, job_id: str, worker: str) -> None:
    """The worker ``worker`` has started the job."""
    pipe.hset(
        keys.job(job_id), mapping={"status": "running", "worker": worker, "started_at": time.time()}
    )


def training_started(pipe: Any, keys: Keys, job_id: str, max_epochs: int) -> None:
    """Training has begun, for at most ``max_epochs`` epochs."""
    pipe.hset(keys.job(job_id), "max_epochs", max_epochs)


def heartbeat(pipe: Any, keys: Keys, job_id: str, now: float) -> None:
    """The worker running the job is alive at ``now``."""
    pipe.hset(keys.job(job_id), "heartbeat_at", now)


def progress(pipe: Any, keys: Keys, job_id: str, fields: dict[str, Any]) -> None:
    """One epoch done: the hash's progress fields, an event, the counter."""
    pipe.hset(keys.job(job_id), mapping=fields)
    pipe.xadd(
        keys.events(job_id),
        {"type": "progress", **{k: str(v) for k, v in fields.items()}},
        maxlen=EVENTS_MAXLEN,
        approximate=True,
    )
    pipe.hincrby(keys.stats, "epochs_trained", 1)


def diagnostics_progress(
    pipe: Any, keys: Keys, job_id: str, stage: str, done: int, total: int
) -> None:
    """The diagnostics after training: ``done`` of ``total`` in ``stage``, and an event."""
    fields = {"diagnostics_stage": stage, "diagnostics_done": done, "diagnostics_total": total}
    pipe.hset(keys.job(job_id), mapping=fields)
    pipe.xadd(
        keys.events(job_id),
        {"type": "diagnostics", "stage": stage, "done": str(done), "total": str(total)},
        maxlen=EVENTS_MAXLEN,
        approximate=True,
    )


def finish(
    pipe: Any,
    keys: Keys,
    job_id: str,
    dataset_id: str | None,
    message_id: bytes,
    status: str,
    **fields: Any,
) -> None:
    """Marks a job terminal, emits the final event, acknowledges its lane entry."""
    pipe.hset(keys.job(job_id), mapping={"status": status, "finished_at": time.time(), **fields})
    if status == "succeeded":
        pipe.hdel(keys.job(job_id), "error")  # an earlier attempt's error no longer applies
    pipe.xadd(
        keys.events(job_id),
        {"type": "status", "status": status, **{k: str(v) for k, v in fields.items()}},
        maxlen=EVENTS_MAXLEN,
        approximate=True,
    )
    if dataset_id:
        pipe.srem(keys.dataset_jobs(dataset_id), job_id)
    pipe.xack(keys.train, TRAIN_GROUP, message_id)
    pipe.hincrby(keys.stats, f"jobs_{status}", 1)


def requeue(
    pipe: Any, keys: Keys, job_id: str, message_id: bytes, error: str | None = None
) -> None:
    """Puts the job back on the lane: after a failed attempt (``error``), or handed back
    by a stopping worker (no error; the attempt is not counted)."""
    if error is None:
        pipe.hset(keys.job(job_id), mapping={"status": "queued", "worker": ""})
        pipe.hincrby(keys.job(job_id), "attempts", -1)
    else:
        pipe.hset(keys.job(job_id), mapping={"status": "queued", "error": error})
    pipe.xadd(keys.train, {"job_id": job_id})
    pipe.xack(keys.train, TRAIN_GROUP, message_id)


def dead_letter(pipe: Any, keys: Keys, job_id: str, error: str) -> None:
    """Records a job that gave up on the dead-letter stream (then :func:`finish` it)."""
    pipe.xadd(keys.dead, {"job_id": job_id, "error": error})


def publish_once(
    redis: Any, keys: Keys, job_id: str, model_id: str, exists: Any
) -> tuple[bool, str]:
    """Whether this attempt publishes the job's model, and the job's model id: the first
    attempt to set ``model_id`` publishes, unless that winner died before its files were in
    place (``exists(id)`` is false). Sync client only."""
    if redis.hsetnx(keys.job(job_id), "model_id", model_id):
        return True, model_id
    earlier = decode(redis.hget(keys.job(job_id), "model_id"))
    if exists(earlier):
        return False, earlier
    redis.hset(keys.job(job_id), "model_id", model_id)
    return True, model_id
