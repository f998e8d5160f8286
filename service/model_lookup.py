"""The API's look-up of a model reference (a model id or an alias) on the request path.

Sampling, log-prob and plot requests name a model; finding it means reading the
registry on disk (the alias file, the model's directory, its ``metadata.json``). Those
reads run in the thread pool, never on the event loop, and what a reference resolved to
is remembered for ``model_ref_ttl_s`` seconds, so a stream of requests for one model
reads the disk about once per period rather than once per request.

Changes made through this process (``PUT``/``DELETE`` of an alias, ``DELETE`` of a
model) take effect at once: those routes call :meth:`ModelLookup.forget`. Changes made
by another API process sharing the data directory are seen within ``model_ref_ttl_s``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from starlette.concurrency import run_in_threadpool

from .stores import ModelStore


class ModelLookup:
    """Model references to model metadata, read off the event loop, kept ``ttl_s``."""

    def __init__(
        self,
        store: ModelStore,
        ttl_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store, self.ttl_s, self._clock = store, ttl_s, clock
        self._known: dict[str, tuple[float, dict[str, Any]]] = {}  # ref -> (until, metadata)
        self._generation = 0  # bumped by forget(): a read begun before it is not kept

    async def meta(self, ref: str) -> dict[str, Any]:
        """The metadata of the model ``ref`` names, or :class:`~.errors.NotFound`."""
        known = self._known.get(ref)
        if known is not None and known[0] > self._clock():
            return known[1]
        generation = self._generation
        try:
            meta = await run_in_threadpool(self._read, ref, known[1] if known else None)
        except Exception:
            self._known.pop(ref, None)  # deleted, or the alias removed
            raise
        if generation == self._generation:
            self._known[ref] = (self._clock() + self.ttl_s, meta)
        return meta

    def _read(self, ref: str, before: dict[str, Any] | None) -> dict[str, Any]:
        """Resolves ``ref`` on disk; a model's metadata is read again only if it is
        another model than ``before`` (a model id's content never changes)."""
        model_id = self.store.resolve(ref)
        if before is not None and before["model_id"] == model_id:
            return before
        return self.store.get(model_id)

    def forget(self) -> None:
        """Drops everything known: an alias or a model changed."""
        self._generation += 1
        self._known.clear()
