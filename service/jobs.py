"""The job data layer: one home for the job hash's fields and for every state change.

A job lives in the hash ``<p>:job:<id>`` (:data:`FIELDS`), its events in the stream
``<p>:job:<id>:events``, its place in the train lane as one stream entry. The routes
create, view and cancel jobs; the worker marks them running, reports progress, finishes,
requeues or dead-letters them and publishes their model once; ``/metrics`` reads their
epoch. Every writer here queues its commands on a pipeline it is given, sync
(``redis.Redis``, the worker) or asyncio (``redis.asyncio``, the API) alike: queuing is
synchronous in both, the caller executes.
"""

from __future__ import annotations

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
)


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


def mark_running(pipe: Any, keys: Keys, job_id: str, worker: str) -> None:
    """The worker ``worker`` has started the job."""
    pipe.hset(
        keys.job(job_id), mapping={"status": "running", "worker": worker, "started_at": time.time()}
    )


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


def publish_once(redis: Any, keys: Keys, job_id: str, model_id: str, exists: Any) -> bool:
    """Whether this attempt publishes the job's model: the first to set ``model_id`` does,
    unless that winner died before its files were in place (``exists(id)`` is false)."""
    if redis.hsetnx(keys.job(job_id), "model_id", model_id):
        return True
    earlier = decode(redis.hget(keys.job(job_id), "model_id"))
    if exists(earlier):
        return False
    redis.hset(keys.job(job_id), "model_id", model_id)
    return True


def view(raw: dict[Any, Any]) -> dict[str, Any]:
    """The public view of a job hash (``GET /v1/jobs/{id}``)."""
    job = decode(raw)

    def number(name: str, kind: type = float) -> Any:
        value = job.get(name)
        return kind(value) if value not in (None, "") else None

    return {
        "job_id": job["job_id"],
        "status": job["status"],
        "dataset_id": job.get("dataset_id"),
        "family": job.get("family"),
        "name": job.get("name") or None,
        "hyperparameters": json.loads(job.get("hyperparameters") or "{}"),
        "prior": json.loads(job["prior"]) if job.get("prior") else None,
        "progress": {
            "epoch": number("epoch", int) or 0,
            "max_epochs": number("max_epochs", int),
            "train_loss": number("train_loss"),
            "val_loss": number("val_loss"),
        },
        "model_id": job.get("model_id") or None,
        "error": job.get("error") or None,
        "attempts": number("attempts", int) or 0,
        "worker": job.get("worker") or None,
        "created_at": number("created_at"),
        "started_at": number("started_at"),
        "finished_at": number("finished_at"),
    }
