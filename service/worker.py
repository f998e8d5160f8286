"""``sbiserve worker``: trains models from the train lane and answers the sample lane.

One process per GPU. Three threads side by side, so sampling never waits for training:

- the trainer takes one job at a time (new ones with ``XREADGROUP``, abandoned ones of
  dead workers with ``XAUTOCLAIM``), runs :func:`sbiserve.models.fit` with progress
  written to Redis and a cancellation check, and publishes the model exactly once
  (``HSETNX`` on the job decides which attempt publishes);
- the sampler drains every waiting sampling request, groups them per model and draws
  for them in shared forward passes of at most ``sample_max_draws`` draws (small requests
  first, so a huge one cannot hold them back); each request brings its own seed, so the
  noise is drawn per request and batching does not change what a seed gives;
- the heartbeat marks the worker live and keeps the idle time of its current job at 0.

Trained models stay resident in an LRU cache. Redis outages are waited out.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import shutil
import signal
import socket
import threading
import time
import uuid
from collections import OrderedDict, defaultdict
from typing import Any

import numpy as np
import redis
import torch

from sbiserve.models import (
    BoxPrior,
    EpochInfo,
    ModelError,
    PosteriorEstimator,
    TrainingCancelled,
    fit,
    prepare_for_serving,
    resolve_device,
    tune_malloc,
)

from . import jobs
from .batching import draws_of, sample_many, split_by_draws
from .errors import ServiceError
from .hyperparameters import from_stored
from .job_diagnostics import dataset_names, run_diagnostics
from .queue import SAMPLE_GROUP, TERMINAL, TRAIN_GROUP, Keys, decode
from .sample_lane import Outbox, decode_request, encode_array, error_reply
from .settings import Settings
from .stores import DatasetStore, ModelStore

log = logging.getLogger("sbiserve.worker")
REDIS_DOWN = (redis.ConnectionError, redis.TimeoutError)
# How long a gathering batch waits for one more request before it is answered (this
# process's clock; see Worker._gather).
GATHER_PAUSE_S = 0.001


class WorkerStopping(Exception):
    """The worker is shutting down; the current job goes back to the queue."""


class ModelCache:
    """The most recently used models, resident on the worker's device."""

    def __init__(self, store: ModelStore, device: torch.device, size: int) -> None:
        self.store, self.device, self.size = store, device, size
        self._models: OrderedDict[str, PosteriorEstimator] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, model_id: str) -> PosteriorEstimator:
        """The model, loaded (and hash-checked) on first use."""
        with self._lock:
            if model_id in self._models:
                self._models.move_to_end(model_id)
                return self._models[model_id]
        estimator = prepare_for_serving(self.store.load(model_id, device=str(self.device)))
        with self._lock:
            self._models[model_id] = estimator
            while len(self._models) > self.size:
                self._models.popitem(last=False)
        gc.freeze()  # a resident model is long-lived: keep full collections from walking it
        return estimator

    def __len__(self) -> int:
        return len(self._models)


class Worker:
    """A worker process's state and loops."""

    def __init__(self, settings: Settings, name: str | None = None) -> None:
        if not settings.redis_url:
            raise ServiceError("the worker needs REDIS_URL (or use `sbiserve serve`)")
        self.settings = settings
        self.keys = Keys(settings.key_prefix)
        # Any: redis-py's response types are unions over decode modes and protocol
        # versions that mypy cannot narrow; this client always returns bytes (RESP2).
        self.redis: Any = redis.Redis.from_url(
            settings.redis_url, socket_timeout=10, socket_connect_timeout=5, health_check_interval=5
        )
        self.datasets = DatasetStore(settings.data_dir)
        self.models = ModelStore(settings.data_dir)
        self.device = resolve_device(settings.device)
        if settings.torch_threads > 0:
            torch.set_num_threads(settings.torch_threads)
        if settings.tune_malloc and not tune_malloc():
            log.info("glibc's malloc thresholds not set (not glibc): sampling works as is")
        self.name = name or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.cache = ModelCache(self.models, self.device, settings.model_cache_size)
        self.stopping = threading.Event()
        self.current: tuple[str, bytes] | None = None  # (job id, stream message id)
        self._last_cancel_check = 0.0
        self._clock_offset: float | None = None  # Redis's clock minus ours, in seconds
        self._last_batch = 0  # requests in the last sampling batch
        self._stop_signalled = False

    # ------------------------------------------------------------------ running
    def run(self) -> None:
        """Runs until SIGTERM/SIGINT (or :meth:`stop`)."""
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, self._on_signal)
        threads = [
            threading.Thread(target=self._loop, args=(self._heartbeat,), daemon=True),
            threading.Thread(target=self._loop, args=(self._sample_once,), daemon=True),
        ]
        # torch and the rest, imported for good: out of the collector's sight, a full
        # collection no longer walks them (such pauses of 0.2-0.4 s were the p99 under load).
        gc.freeze()
        for thread in threads:
            thread.start()
        log.info("worker %s on %s", self.name, self.device)
        self._loop(self._train_once)
        for thread in threads:
            thread.join(timeout=5)
        with contextlib.suppress(*REDIS_DOWN):
            self.redis.zrem(self.keys.workers, self.name)

    def stop(self) -> None:
        """Asks every loop to end; a running job is handed back to the queue."""
        self.stopping.set()

    def _on_signal(self, signum: int, frame: Any) -> None:
        """SIGTERM/SIGINT: stop, from another thread.

        A handler runs in the main thread between two bytecodes, possibly while that
        thread holds the stop event's (non-reentrant) lock, inside ``Event.wait`` or an
        earlier handler's ``Event.set``: setting the event here could wait forever (a
        worker once hung so when serve was SIGKILLed). Repeated signals do nothing more.
        """
        if self._stop_signalled:
            return
        self._stop_signalled = True
        threading.Thread(target=self.stop, name="sbiserve-stop", daemon=True).start()

    def _loop(self, step: Any) -> None:
        """Calls ``step`` until stopping, waiting out Redis outages."""
        while not self.stopping.is_set():
            try:
                step()
            except REDIS_DOWN as e:
                log.warning("redis unreachable (%s); retrying", e)
                self.stopping.wait(1.0)
            except redis.ResponseError as e:
                if "NOGROUP" in str(e):  # Redis restarted without its data
                    self._ensure_groups()
                else:
                    log.exception("redis error")
                    self.stopping.wait(1.0)
            except Exception:
                log.exception("unexpected error in %s", getattr(step, "__name__", step))
                self.stopping.wait(1.0)

    def _ensure_groups(self) -> None:
        for stream, group in ((self.keys.train, TRAIN_GROUP), (self.keys.sample, SAMPLE_GROUP)):
            try:
                self.redis.xgroup_create(stream, group, id="0", mkstream=True)
            except redis.ResponseError as e:
                if "BUSYGROUP" not in str(e):
                    raise

    def _heartbeat(self) -> None:
        now = time.time()
        pipe = self.redis.pipeline()
        pipe.zadd(self.keys.workers, {self.name: now})
        pipe.hset(
            self.keys.worker_info(self.name),
            mapping={
                "device": str(self.device),
                "models_resident": len(self.cache),
                "job": self.current[0] if self.current else "",
                "seen": now,
            },
        )
        pipe.expire(self.keys.worker_info(self.name), int(self.settings.worker_ttl_s * 4) + 1)
        current = self.current
        if current is not None:
            # Resetting the idle time tells other workers this job is not abandoned.
            pipe.xclaim(self.keys.train, TRAIN_GROUP, self.name, 0, [current[1]], justid=True)
            jobs.heartbeat(pipe, self.keys, current[0], now)
        pipe.time()
        self._sync_clock(pipe.execute()[-1])
        self.stopping.wait(self.settings.heartbeat_s)

    # ------------------------------------------------------------------ training
    def _train_once(self) -> None:
        self._ensure_groups()
        claimed = self.redis.xautoclaim(
            self.keys.train,
            TRAIN_GROUP,
            self.name,
            int(self.settings.claim_after_s * 1000),
            start_id="0-0",
            count=1,
        )
        messages = claimed[1] if claimed else []
        if messages:
            log.info("reclaimed abandoned job message %s", messages[0][0])
        else:
            response = self.redis.xreadgroup(
                TRAIN_GROUP, self.name, {self.keys.train: ">"}, count=1, block=1000
            )
            messages = response[0][1] if response else []
        for message_id, fields in messages:
            if fields is None:  # deleted meanwhile
                self.redis.xack(self.keys.train, TRAIN_GROUP, message_id)
                continue
            self._run_job(decode(fields)["job_id"], message_id)

    def _finish(
        self, job: jobs.Job, message_id: bytes, status: str, dead: str | None = None, **fields: Any
    ) -> None:
        """Marks a job terminal (first on the dead-letter stream with ``dead`` as error)."""
        pipe = self.redis.pipeline()
        if dead is not None:
            jobs.dead_letter(pipe, self.keys, job.job_id, dead)
        jobs.finish(pipe, self.keys, job.job_id, job.dataset_id, message_id, status, **fields)
        pipe.execute()

    def _run_job(self, job_id: str, message_id: bytes) -> None:
        job = jobs.Job.from_hash(jobs.read(self.redis, self.keys, job_id))
        if job is None or job.status in TERMINAL:
            self.redis.xack(self.keys.train, TRAIN_GROUP, message_id)
            return
        if jobs.cancel_requested(self.redis, self.keys, job_id):
            self._finish(job, message_id, "cancelled")
            return
        pipe = self.redis.pipeline()
        jobs.count_attempt(pipe, self.keys, job_id)
        [attempts] = pipe.execute()
        if attempts > self.settings.max_attempts:
            error = f"gave up after {attempts - 1} attempt(s); last error: {job.error or ''}"
            self._finish(job, message_id, "failed", dead=error, error=error)
            return
        pipe = self.redis.pipeline()
        jobs.mark_running(pipe, self.keys, job_id, self.name)
        pipe.execute()
        self.current = (job_id, message_id)
        try:
            self._train(job, message_id)
        except TrainingCancelled:
            self._finish(job, message_id, "cancelled")
        except WorkerStopping:
            # Hand the job back at once rather than waiting for a reclaim.
            pipe = self.redis.pipeline()
            jobs.requeue(pipe, self.keys, job_id, message_id)
            pipe.execute()
        except (ModelError, ServiceError) as e:
            # The request itself is wrong (options, data outside the prior): no retry.
            self._finish(job, message_id, "failed", error=str(getattr(e, "message", e)))
        except REDIS_DOWN:
            raise  # the message stays pending and is reclaimed later
        except Exception as e:
            log.exception("job %s failed", job_id)
            error = f"{type(e).__name__}: {e}"
            if attempts >= self.settings.max_attempts:
                self._finish(job, message_id, "failed", dead=error, error=error)
            else:
                pipe = self.redis.pipeline()
                jobs.requeue(pipe, self.keys, job_id, message_id, error=error)
                pipe.execute()
        finally:
            self.current = None

    def _train(self, job: jobs.Job, message_id: bytes) -> None:
        job_id, dataset_id = job.job_id, job.dataset_id or ""
        theta, x = self.datasets.load(dataset_id)
        # Checked by the route when the job was made; trained on this worker's device.
        options = from_stored(job.family or "", job.hyperparameters, self.device)
        train_config = options.training
        prior = BoxPrior.from_dict(job.prior) if job.prior else None
        estimator = options.build(theta.shape[1], x.shape[1], prior)
        pipe = self.redis.pipeline()
        jobs.training_started(pipe, self.keys, job_id, train_config.max_epochs)
        pipe.execute()

        def progress(info: EpochInfo) -> None:
            fields = {
                "epoch": info.epoch,
                "max_epochs": info.max_epochs,
                "train_loss": info.train_loss,
                "val_loss": info.val_loss,
            }
            pipe = self.redis.pipeline()
            jobs.progress(pipe, self.keys, job_id, fields)
            pipe.execute()

        def should_stop() -> bool:
            if self.stopping.is_set():
                raise WorkerStopping
            now = time.monotonic()
            if now - self._last_cancel_check < 0.25:
                return False
            self._last_cancel_check = now
            return bool(jobs.cancel_requested(self.redis, self.keys, job_id))

        result = fit(
            estimator,
            torch.as_tensor(theta),
            torch.as_tensor(x),
            train_config,
            progress=progress,
            should_stop=should_stop,
        )
        theta_names, x_names = dataset_names(
            self.datasets.get(dataset_id), theta.shape[1], x.shape[1]
        )
        diagnostics = run_diagnostics(
            self.redis,
            self.keys,
            job_id,
            estimator,
            theta,
            x,
            train_config,
            self.settings,
            theta_names,
            should_stop,
        )
        estimator.cpu()
        metrics = {
            "best_val_loss": result.best_val_loss,
            "epochs": result.epochs,
            "best_epoch": result.best_epoch,
            "kept_epoch": result.kept_epoch,
            "wall_time_s": result.wall_time_s,
        }
        staging, model_id = self.models.stage(estimator, metrics)
        # Whichever attempt sets model_id first publishes; a late duplicate is discarded,
        # unless the winner died before its files were in place.
        publishes, model_id = jobs.publish_once(
            self.redis, self.keys, job_id, model_id, self.models.exists
        )
        if publishes:
            self.models.publish(
                staging,
                model_id,
                {
                    "name": job.name,
                    "family": options.family,
                    "theta_dim": int(theta.shape[1]),
                    "x_dim": int(x.shape[1]),
                    "dataset_id": dataset_id,
                    "job_id": job_id,
                    "hyperparameters": options.to_dict(),  # what the job shows
                    "prior": estimator.prior.to_dict(),
                    "log_prob_kind": estimator.log_prob_kind,
                    "training": result.to_dict(),
                    "metrics": metrics,
                    "theta_names": theta_names,
                    "x_names": x_names,
                    "diagnostics": diagnostics,
                    "created_at": time.time(),
                },
            )
        else:
            shutil.rmtree(staging, ignore_errors=True)  # an earlier attempt's model stands
        self._finish(job, message_id, "succeeded", model_id=model_id)

    # ------------------------------------------------------------------ sampling
    def _sample_once(self) -> None:
        """Takes what waits on the sample lane (blocking while it is empty) and answers it."""
        # No group check here (hot path): a NOGROUP error makes _loop recreate the groups.
        messages = self._read_lane(block_ms=1000, count=self.settings.sample_max_batch)
        if not messages:
            return
        if len(messages) > 1 or self._last_batch > 1:
            self._gather(messages)
        self._last_batch = len(messages)
        ids = [message_id for message_id, _ in messages]
        try:
            requests = [decode_request(fields, message_id) for message_id, fields in messages]
        except Exception:
            outbox = Outbox(self.redis, self.keys)
            outbox.acknowledge(ids)  # a malformed entry would otherwise come back forever
            outbox.flush()
            raise
        self._answer(requests, ack=ids)

    def _read_lane(self, block_ms: int | None, count: int) -> list[Any]:
        """Up to ``count`` new entries of the sample lane; ``block_ms=None`` does not block."""
        response = self.redis.xreadgroup(
            SAMPLE_GROUP, self.name, {self.keys.sample: ">"}, count=count, block=block_ms
        )
        return list(response[0][1]) if response else []

    def _gather(self, messages: list[Any]) -> None:
        """Adds requests to ``messages`` while they keep arriving, for ``sample_wait_ms``
        at most: it stops once :data:`GATHER_PAUSE_S` passes with none new.

        Only called under load (this read or the last batch had several requests): a lone
        request is answered at once, without any wait. The reads do not block and the
        pause is this process's own: Redis checks a blocked read's timeout on its timer
        (``hz``: 10 times a second by default), so an ``XREADGROUP BLOCK 1`` on a quiet
        lane returned after up to 100 ms, and the lane is quiet exactly when every client
        is waiting for this batch (64 clients, end of a load round: p99 100 ms against
        50 ms; ``docs/SERVING.md``).
        """
        settings = self.settings
        limit = time.monotonic() + settings.sample_wait_ms / 1000
        paused = False
        while len(messages) < settings.sample_max_batch and (left := limit - time.monotonic()) > 0:
            more = self._read_lane(block_ms=None, count=settings.sample_max_batch - len(messages))
            if more:
                messages.extend(more)
                paused = False
            elif paused:
                return
            else:
                time.sleep(min(GATHER_PAUSE_S, left))
                paused = True

    def _answer(self, requests: list[dict[str, Any]], ack: list[bytes] | None = None) -> None:
        """Answers every request; whatever fails, each gets a reply (never a silent drop).

        Replies, statistics and the acknowledgement of ``ack`` go out in one pipeline per
        forward pass (one in all for the usual batch); replies already computed are sent
        before the next forward pass starts.
        """
        outbox = Outbox(self.redis, self.keys)
        try:
            self._answer_into(outbox, requests)
        finally:
            outbox.acknowledge(ack or [])
            outbox.flush()

    def _answer_into(self, outbox: Outbox, requests: list[dict[str, Any]]) -> None:
        now = self._redis_now()
        groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for request in requests:
            if request["deadline"] >= now:  # the API gave up on older ones
                groups[request["model_id"]].append(request)
        for model_id, group in groups.items():
            try:
                estimator = self.cache.get(model_id)
            except Exception as e:
                self._fail(outbox, group, e)
                continue
            sampling = [r for r in group if r["op"] == "sample"]
            for part in split_by_draws(sampling, self.settings.sample_max_draws):
                outbox.flush()  # answers ready so far leave before this forward pass
                now = self._redis_now()  # a part after a long one may be past its deadline
                live = [r for r in part if r["deadline"] >= now]
                try:
                    if live:
                        self._sample_group(outbox, estimator, live)
                except Exception as e:
                    self._fail(outbox, live, e)
            for request in group:
                if request["op"] == "log_prob":
                    try:
                        self._log_prob(outbox, estimator, request)
                    except Exception as e:
                        self._fail(outbox, [request], e)

    def _redis_now(self) -> float:
        """Redis's clock in seconds (request deadlines are measured on it), from this
        machine's clock and the offset the heartbeat measures: no round trip per batch."""
        if self._clock_offset is None:
            self._sync_clock(self.redis.time())
        return time.time() + (self._clock_offset or 0.0)

    def _sync_clock(self, redis_time: tuple[int, int]) -> None:
        seconds, micros = redis_time
        self._clock_offset = float(seconds) + float(micros) / 1e6 - time.time()

    def _fail(self, outbox: Outbox, requests: list[dict[str, Any]], error: Exception) -> None:
        """Replies with ``error`` to each request; Redis outages propagate (no one to tell)."""
        if isinstance(error, REDIS_DOWN):
            raise error
        meta = error_reply(error)
        if meta["status"] >= 500:
            log.error("answering %d request(s) failed", len(requests), exc_info=error)
        for request in requests:
            outbox.reply(request["id"], meta)

    def _sample_group(
        self, outbox: Outbox, estimator: PosteriorEstimator, group: list[dict[str, Any]]
    ) -> None:
        """Draws for every request of one model in shared forward passes."""
        draws = sample_many(estimator, group, self.settings.sample_max_draws, self.device)
        # Counted before the replies, so a client that has its answer sees it counted.
        outbox.count_batch(len(group), sum(draws_of(r) for r in group))
        for r, d in zip(group, draws, strict=True):
            array, payload = encode_array(d)
            meta = {"batch_requests": len(group), "seed": r["seed"], **array}
            outbox.reply(r["id"], meta, payload)

    def _log_prob(
        self, outbox: Outbox, estimator: PosteriorEstimator, request: dict[str, Any]
    ) -> None:
        with torch.no_grad():  # not inference_mode: an exact trace may use autograd
            theta = torch.as_tensor(request["theta"], device=self.device)
            x = torch.as_tensor(request["x"], device=self.device)
            lp = estimator.log_prob(theta, x).cpu().numpy().astype(np.float64)
        shape, payload = encode_array(lp)
        outbox.reply(request["id"], {"kind": estimator.log_prob_kind, **shape}, payload)
