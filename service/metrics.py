"""Prometheus metrics: the API's own, plus queue and worker figures read from Redis.

Request latency is measured in the API process. Sampling batches, training progress and
resident models happen in the workers, which count them in Redis (``<p>:stats``, the
worker hashes); they are read at scrape time so one ``/metrics`` shows the whole service.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from . import jobs
from .queue import SAMPLE_GROUP, TRAIN_GROUP, Keys, decode

BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class RedisSnapshot:
    """Collector that yields the figures of the last :meth:`refresh`."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}

    async def refresh(self, redis: Any, keys: Keys, worker_ttl_s: float) -> None:
        """Reads stats, lane depths and worker states from Redis."""
        now = time.time()
        stats = decode(await redis.hgetall(keys.stats))
        depths = {}
        for lane, stream, group in (
            ("train", keys.train, TRAIN_GROUP),
            ("sample", keys.sample, SAMPLE_GROUP),
        ):
            try:
                groups = {decode(g["name"]): g for g in await redis.xinfo_groups(stream)}
                info = groups.get(group, {})
                depths[lane] = int(info.get("lag") or 0) + int(info.get("pending") or 0)
            except Exception:  # stream not created yet
                depths[lane] = 0
        workers = []
        for name in decode(await redis.zrangebyscore(keys.workers, now - worker_ttl_s, "+inf")):
            info = decode(await redis.hgetall(keys.worker_info(name)))
            job = None
            if info.get("job"):
                job = jobs.Job.from_hash(await jobs.read(redis, keys, info["job"]))
            workers.append((name, info, job.epoch if job else None))
        dead = await redis.xlen(keys.dead)
        self.data = {"stats": stats, "depths": depths, "workers": workers, "dead": dead}

    def collect(self) -> Iterator[Metric]:
        if not self.data:
            return
        stats = self.data["stats"]
        depth = GaugeMetricFamily(
            "sbiserve_queue_depth", "Messages waiting or in progress per lane", labels=["lane"]
        )
        for lane, value in self.data["depths"].items():
            depth.add_metric([lane], value)
        yield depth
        yield GaugeMetricFamily(
            "sbiserve_dead_letter_jobs", "Jobs in the dead-letter stream", value=self.data["dead"]
        )
        yield GaugeMetricFamily(
            "sbiserve_workers_live", "Workers seen recently", value=len(self.data["workers"])
        )
        resident = GaugeMetricFamily(
            "sbiserve_models_resident", "Models resident per worker", labels=["worker"]
        )
        epoch = GaugeMetricFamily(
            "sbiserve_training_epoch", "Epoch of the job a worker trains", labels=["worker", "job"]
        )
        for name, info, job_epoch in self.data["workers"]:
            resident.add_metric([name], float(info.get("models_resident", 0)))
            if info.get("job"):
                epoch.add_metric([name, info["job"]], float(job_epoch or 0))
        yield resident
        yield epoch
        for key, help_text in (
            ("sample_batches", "Forward passes that served sampling requests"),
            ("sample_requests", "Sampling requests served"),
            ("sample_draws", "Posterior draws made"),
            ("epochs_trained", "Training epochs completed"),
        ):
            yield CounterMetricFamily(f"sbiserve_{key}", help_text, value=int(stats.get(key, 0)))
        jobs = CounterMetricFamily("sbiserve_jobs_finished", "Finished jobs", labels=["status"])
        for status in ("succeeded", "failed", "cancelled"):
            jobs.add_metric([status], int(stats.get(f"jobs_{status}", 0)))
        yield jobs
        # Requests per forward pass, as a cumulative histogram.
        batch = GaugeMetricFamily(
            "sbiserve_sample_batch_requests_bucket",
            "Sampling forward passes that served at most `le` requests (cumulative)",
            labels=["le"],
        )
        total = 0
        for bound in (*BUCKETS, "inf"):
            total += int(stats.get(f"sample_batch_le_{bound}", 0))
            batch.add_metric(["+Inf" if bound == "inf" else str(bound)], total)
        yield batch


class Metrics:
    """The API's registry (one per app, so tests can build several apps)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.latency = Histogram(
            "sbiserve_http_request_duration_seconds",
            "Latency of HTTP requests",
            ["method", "route", "status"],
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10, 60),
        )
        self.redis_snapshot = RedisSnapshot()
        self.registry.register(self.redis_snapshot)  # type: ignore[arg-type]

    def render(self) -> bytes:
        """The text exposition format."""
        return generate_latest(self.registry)
