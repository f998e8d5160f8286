"""The sample lane's protocol, both sides: what the API puts on the lane, what the worker
reads from it, and the reply it pushes back.

A request is one entry of the stream ``<p>:lane:sample`` with the fields ``id``, ``op``
(``sample`` or ``log_prob``), ``model_id``, ``timeout_s``, ``x`` (``.npy`` bytes) and
either ``num_samples`` and ``seed`` or ``theta`` (``.npy`` bytes). The answer is one
message on the list ``<p>:reply:<id>``: compact JSON, a newline, then ``.npy`` bytes
(:func:`pack_reply`). The worker batches its replies, statistics and acknowledgements
into one pipeline per forward pass (:class:`Outbox`).
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import orjson

from sbiserve.models import ManifestError, ModelError

from .arrays import load_npy, npy_header
from .errors import ServiceError
from .queue import SAMPLE_GROUP, Keys

REPLY_TTL_S = 60
# Upper bounds of the requests-per-forward-pass histogram in /metrics.
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


def encode_request(request_id: str, timeout_s: float, fields: dict[str, Any]) -> dict[str, Any]:
    """The stream entry of a request (``fields``: ``op``, ``model_id``, arrays as .npy).

    A time limit, not a deadline: the worker measures it from the entry's id (Redis's
    clock), so clocks that differ between machines do not matter.
    """
    return {**fields, "id": request_id, "timeout_s": timeout_s}


def decode_request(fields: dict[bytes, bytes], message_id: bytes) -> dict[str, Any]:
    """A sampling/log-prob request from its stream entry.

    Its ``deadline`` is on Redis's clock: the entry id's milliseconds (when Redis took
    the request) plus the API's time limit.
    """
    enqueued_s = int(message_id.split(b"-")[0]) / 1000
    request: dict[str, Any] = {
        "id": fields[b"id"].decode(),
        "op": fields[b"op"].decode(),
        "model_id": fields[b"model_id"].decode(),
        "deadline": enqueued_s + float(fields[b"timeout_s"]),
        "x": load_npy(io.BytesIO(fields[b"x"]), "x"),
    }
    if request["op"] == "sample":
        request["num_samples"] = int(fields[b"num_samples"])
        request["seed"] = int(fields[b"seed"])
    else:
        request["theta"] = load_npy(io.BytesIO(fields[b"theta"]), "theta")
    return request


def pack_reply(meta: dict[str, Any], payload: bytes = b"") -> bytes:
    """One reply message: compact JSON, a newline, then raw ``.npy`` bytes."""
    return orjson.dumps(meta) + b"\n" + payload


def unpack_reply(message: bytes) -> tuple[dict[str, Any], bytes]:
    """Inverse of :func:`pack_reply`."""
    head, _, payload = message.partition(b"\n")
    meta: dict[str, Any] = orjson.loads(head)
    return meta, payload


def encode_array(array: np.ndarray) -> tuple[dict[str, Any], bytes]:
    """An answer's array: its shape and dtype for the reply's JSON, and its ``.npy`` bytes."""
    array = np.ascontiguousarray(array)
    meta = {"shape": list(array.shape), "dtype": array.dtype.str}
    return meta, npy_header(array.shape, array.dtype.str) + array.tobytes()


def decode_array(meta: dict[str, Any], payload: bytes) -> np.ndarray:
    """The array of a reply, read in place from the worker's own ``.npy`` bytes (only the
    header's length is parsed: shape and dtype come with the reply)."""
    if "shape" not in meta:  # a worker from before shapes came with replies
        return load_npy(io.BytesIO(payload), "reply")
    start = 10 + int.from_bytes(payload[8:10], "little")
    array = np.frombuffer(payload, dtype=np.dtype(meta["dtype"]), offset=start)
    return array.reshape(meta["shape"])


def error_reply(error: Exception) -> dict[str, Any]:
    """The reply for a request that failed: status, code, message and field for the API.

    The caller's mistakes (:class:`ModelError`) are 422s with their message; a damaged
    model file and anything unexpected (out of device memory, a bug) are the server's.
    """
    if isinstance(error, ServiceError):
        status, code, message, field = error.status, error.code, error.message, error.field
    elif isinstance(error, ModelError) and not isinstance(error, ManifestError):
        status, code, message, field = 422, "invalid_input", str(error), None
    else:
        status, code = 500, "internal_error"
        message, field = f"the worker failed: {type(error).__name__}: {error}", None
    return {"error": message, "status": status, "code": code, "field": field}


def batch_bucket(requests: int) -> str:
    """The histogram bucket (``le``) of a forward pass that served ``requests``."""
    return str(next((b for b in BATCH_BUCKETS if requests <= b), "inf"))


class Outbox:
    """The worker's writes for one batch, sent in one pipeline (one round trip).

    Statistics are queued before the replies they count, so a client that has its answer
    sees it counted; acknowledgements go last.
    """

    def __init__(self, redis: Any, keys: Keys) -> None:
        self.redis, self.keys = redis, keys
        self._pipe = redis.pipeline(transaction=False)
        self._pending = 0

    def count_batch(self, requests: int, draws: int) -> None:
        """Counts one forward pass for ``/metrics``."""
        stats = self.keys.stats
        self._pipe.hincrby(stats, "sample_batches", 1)
        self._pipe.hincrby(stats, "sample_requests", requests)
        self._pipe.hincrby(stats, "sample_draws", draws)
        self._pipe.hincrby(stats, f"sample_batch_le_{batch_bucket(requests)}", 1)
        self._pending += 4

    def reply(self, request_id: str, meta: dict[str, Any], payload: bytes = b"") -> None:
        """Queues the answer to request ``request_id``."""
        key = self.keys.reply(request_id)
        self._pipe.rpush(key, pack_reply(meta, payload))
        self._pipe.expire(key, REPLY_TTL_S)
        self._pending += 2

    def acknowledge(self, message_ids: list[bytes]) -> None:
        """Queues the removal of answered entries from the lane."""
        if message_ids:
            self._pipe.xack(self.keys.sample, SAMPLE_GROUP, *message_ids)
            self._pipe.xdel(self.keys.sample, *message_ids)
            self._pending += 2

    def flush(self) -> None:
        """Sends whatever is queued (nothing when nothing is)."""
        if self._pending:
            self._pending = 0
            self._pipe.execute()
