"""The synchronous client: :class:`Client`.

Example::

    from sbiserve.client import Client

    client = Client("http://127.0.0.1:8000")
    dataset = client.upload(theta, x)  # (N, theta_dim), (N, x_dim)
    job = client.train(dataset, hyperparameters={"max_epochs": 200})
    model_id = client.wait(job)["model_id"]  # a tqdm bar over epochs
    draws = client.sample(model_id, x_o, num_samples=1000)  # (1000, theta_dim)
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import numpy as np

from sbiserve import __version__

from .arrays import as_rows, check_finite, is_tensor, to_numpy, to_torch
from .errors import InvalidInputError, NoDensityError, SbiserveError
from .npy_stream import NpyStream
from .plots import fetch_plot, save_or_show
from .transport import RetryPolicy, Transport
from .waiting import wait_for_job

NPY_MEDIA_TYPE = "application/x-npy"
DEFAULT_URL = "http://127.0.0.1:8000"
# The client's caps and the names the server publishes them under (GET /v1/limits), and
# the server's defaults, assumed when a server does not publish them.
SERVER_CAPS = {
    "max_observations": "max_observations",
    "max_draws": "max_total_draws",
    "max_num_samples": "max_num_samples",
    "max_request_bytes": "max_request_bytes",
}
SERVER_DEFAULT_CAPS = {
    "max_observations": 1_000,
    "max_draws": 2_000_000,
    "max_num_samples": 100_000,
    "max_request_bytes": 16 * 2**20,
}


class Client:
    """Talks to an sbiserve service over HTTP; numpy in and out (torch when given tensors).

    Arguments:
        base_url: The service, e.g. ``http://gpu-box:8000`` (default: ``$SBISERVE_URL``,
            else ``http://127.0.0.1:8000``).
        api_key: Sent as ``X-API-Key`` (default: ``$SBISERVE_API_KEY``, if set).
        timeout: Seconds to wait for a connection or for data, or an :class:`httpx.Timeout`.
        retries: Retries of transient failures (503, connection refused or reset,
            timeouts) with exponential backoff, or a full :class:`RetryPolicy`.
        json_max_values: Datasets with at most this many numbers go as JSON; larger ones
            are streamed as ``.npy`` files.
        max_observations: Most observations per sampling request (the server's
            ``max_observations``); larger batches are split into several requests.
        max_draws: Most ``num_samples x observations`` per sampling request (the
            server's ``max_total_draws``), and most ``theta`` rows per ``log_prob``
            request.
        max_num_samples: Most ``num_samples`` per sampling request (the server's
            ``max_num_samples``); more draws are asked for in several requests.
        max_request_bytes: Largest JSON request body (the server's
            ``max_request_bytes``); ``log_prob`` splits ``theta`` into requests that stay
            below it.
        transport: A custom httpx transport (tests, proxies).

    The four caps must not exceed the server's (``SBISERVE_MAX_OBSERVATIONS``,
    ``SBISERVE_MAX_TOTAL_DRAWS``, ``SBISERVE_MAX_NUM_SAMPLES``,
    ``SBISERVE_MAX_REQUEST_BYTES``). Those not given are read from the server
    (``GET /v1/limits``) the first time one is needed; a server that does not publish
    them (an older version) is taken to have the default caps.
    """

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        timeout: float | httpx.Timeout = 60.0,
        retries: int | RetryPolicy = 4,
        *,
        json_max_values: int = 100_000,
        max_observations: int | None = None,
        max_draws: int | None = None,
        max_num_samples: int | None = None,
        max_request_bytes: int | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = (base_url or os.environ.get("SBISERVE_URL") or DEFAULT_URL).rstrip("/")
        api_key = api_key if api_key is not None else os.environ.get("SBISERVE_API_KEY")
        headers = {"User-Agent": f"sbiserve-client/{__version__}"}
        if api_key:
            headers["X-API-Key"] = api_key
        if not isinstance(timeout, httpx.Timeout):
            timeout = httpx.Timeout(timeout, connect=min(timeout, 10.0))
        policy = retries if isinstance(retries, RetryPolicy) else RetryPolicy(attempts=retries + 1)
        http = httpx.Client(
            base_url=self.base_url, headers=headers, timeout=timeout, transport=transport
        )
        self.transport = Transport(http, policy)
        self.json_max_values = json_max_values
        given = {
            "max_observations": max_observations,
            "max_draws": max_draws,
            "max_num_samples": max_num_samples,
            "max_request_bytes": max_request_bytes,
        }
        for cap, value in given.items():
            if value is not None and value < 1:
                raise ValueError(f"{cap} must be at least 1, got {value}")
        self._caps = {cap: value for cap, value in given.items() if value is not None}

    @property
    def max_observations(self) -> int:
        """Most observations per sampling request."""
        return self._cap("max_observations")

    @property
    def max_draws(self) -> int:
        """Most ``num_samples x observations`` per sampling request, ``theta`` rows per
        ``log_prob`` request."""
        return self._cap("max_draws")

    @property
    def max_num_samples(self) -> int:
        """Most ``num_samples`` per sampling request."""
        return self._cap("max_num_samples")

    @property
    def max_request_bytes(self) -> int:
        """Largest JSON request body."""
        return self._cap("max_request_bytes")

    def _cap(self, name: str) -> int:
        if name not in self._caps:
            published = self._published_limits()
            for cap, server_name in SERVER_CAPS.items():
                value = published.get(server_name)
                default = SERVER_DEFAULT_CAPS[cap]
                ok = isinstance(value, int) and value >= 1
                self._caps.setdefault(cap, value if ok else default)  # type: ignore[arg-type]
        return self._caps[name]

    def _published_limits(self) -> dict[str, Any]:
        """The server's caps (``GET /v1/limits``), or ``{}`` when it does not say."""
        try:
            answer = self._json("GET", "/v1/limits")
        except (SbiserveError, httpx.HTTPError, ValueError):
            return {}
        return answer if isinstance(answer, dict) else {}

    def __repr__(self) -> str:
        return f"Client({self.base_url!r})"

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Closes the connection pool."""
        self.transport.http.close()

    # -- health ---------------------------------------------------------------------------

    def ready(self) -> dict[str, Any]:
        """``/readyz``: ``{"status": "ready", "workers": n}``, or :class:`UnavailableError`."""
        return self._json("GET", "/readyz")

    # -- datasets -------------------------------------------------------------------------

    def upload(
        self,
        theta: Any,
        x: Any,
        name: str | None = None,
        *,
        theta_names: Sequence[str] | None = None,
        x_names: Sequence[str] | None = None,
    ) -> dict[str, Any]:
        """Uploads simulations; returns the dataset (``dataset_id``, ``num_simulations``...).

        Small sets go as JSON; larger ones stream as float32 ``.npy`` files a few rows at a
        time, so memory stays flat (a memory-mapped array works too). Uploading the same
        data again returns the stored dataset (it is content-addressed).

        Arguments:
            theta: Parameters ``(N, theta_dim)`` (numpy, torch or nested lists).
            x: Simulator outputs ``(N, x_dim)``, row ``i`` simulated from ``theta[i]``.
            name: A label shown in listings.
            theta_names: A name per parameter, used in the model's plots and diagnostics.
            x_names: A name per feature of ``x``.
        """
        labels = {
            key: list(value)
            for key, value in (("theta_names", theta_names), ("x_names", x_names))
            if value is not None
        }
        theta_rows, x_rows = as_rows(theta, "theta"), as_rows(x, "x")
        if theta_rows.shape[0] != x_rows.shape[0]:
            raise InvalidInputError(
                f"theta has {theta_rows.shape[0]} rows but x has {x_rows.shape[0]}; each row "
                "of theta must pair with one row of x",
                field="x",
            )
        if theta_rows.size + x_rows.size <= self.json_max_values:
            check_finite(theta_rows, "theta")
            check_finite(x_rows, "x")
            body = {"theta": theta_rows.tolist(), "x": x_rows.tolist(), "name": name, **labels}
            return self._json("POST", "/v1/datasets", json=body)

        def files() -> dict[str, Any]:
            return {
                "files": {
                    "theta": ("theta.npy", NpyStream(theta_rows), NPY_MEDIA_TYPE),
                    "x": ("x.npy", NpyStream(x_rows), NPY_MEDIA_TYPE),
                },
                "data": {
                    **({"name": name} if name else {}),
                    **{key: json.dumps(value) for key, value in labels.items()},
                }
                or None,
            }

        return self._json("POST", "/v1/datasets", make_body=files)

    def upload_npz(self, path: str | os.PathLike[str], name: str | None = None) -> dict[str, Any]:
        """Uploads an ``.npz`` file holding arrays ``theta`` and ``x``, streamed from disk."""
        path = Path(path)
        if not path.is_file():
            raise InvalidInputError(f"no such file: {path}", field="file")
        handles: list[Any] = []

        def files() -> dict[str, Any]:
            handle = path.open("rb")
            handles.append(handle)
            return {
                "files": {"file": (path.name, handle, "application/octet-stream")},
                "data": {"name": name} if name else None,
            }

        try:
            return self._json("POST", "/v1/datasets", make_body=files)
        finally:
            for handle in handles:
                handle.close()

    def datasets(self) -> list[dict[str, Any]]:
        """Every stored dataset."""
        return self._json("GET", "/v1/datasets")  # type: ignore[return-value]

    def dataset(self, dataset_id: str) -> dict[str, Any]:
        """One dataset's description."""
        return self._json("GET", f"/v1/datasets/{_path(dataset_id)}")

    def delete_dataset(self, dataset: str | Mapping[str, Any]) -> None:
        """Deletes a dataset (:class:`ConflictError` while a job trains on it)."""
        self.transport.request("DELETE", f"/v1/datasets/{_path(_id(dataset, 'dataset_id'))}")

    # -- training -------------------------------------------------------------------------

    def train(
        self,
        dataset: str | Mapping[str, Any],
        family: str = "energy_flow",
        hyperparameters: Mapping[str, Any] | None = None,
        prior: Mapping[str, Any] | tuple[Any, Any] | None = None,
        name: str | None = None,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        """Starts training; returns the job (``job_id``, ``status``) at once.

        Arguments:
            dataset: A dataset id, or the dict :meth:`upload` returned.
            family: The model family (``energy_flow``, ``npe``, ...).
            hyperparameters: Family and training options, e.g. ``{"max_epochs": 200,
                "hidden_features": [64, 64]}``; unknown names are refused.
            prior: The support of theta: ``(low, high)`` or ``{"low": [...], "high":
                [...]}``, one bound per dimension, ``None``/``inf`` for an unbounded side.
            name: A label for the job and its model.
            idempotency_key: Makes retries safe: the same key returns the same job. A fresh
                one is made per call by default.
        """
        body: dict[str, Any] = {
            "dataset_id": _id(dataset, "dataset_id"),
            "family": family,
            "hyperparameters": dict(hyperparameters or {}),
            "name": name,
        }
        if prior is not None:
            body["prior"] = box_prior(prior)
        headers = {
            "Idempotency-Key": idempotency_key or uuid.uuid4().hex,
            "Content-Type": "application/json",
        }
        content = json.dumps(body, default=_plain)
        return self._json("POST", "/v1/jobs", content=content, headers=headers)

    def wait(
        self, job: str | Mapping[str, Any], progress: bool = True, timeout: float | None = None
    ) -> dict[str, Any]:
        """Blocks until a job ends; returns its final state (with ``model_id``).

        Arguments:
            job: A job id, or the dict :meth:`train` returned.
            progress: Show a tqdm bar over epochs, fed by the job's server-sent events.
            timeout: Seconds to wait at most (``None``: as long as it takes).

        Raises:
            JobFailedError, JobCancelledError: The job did not succeed.
            WaitTimeoutError: ``timeout`` passed first (the job goes on).
        """
        return wait_for_job(self.transport, _path(_id(job, "job_id")), progress, timeout)

    def job(self, job: str | Mapping[str, Any]) -> dict[str, Any]:
        """A job's state: ``status``, ``progress``, ``model_id`` when done, ``error``."""
        return self._json("GET", f"/v1/jobs/{_path(_id(job, 'job_id'))}")

    def jobs(self, limit: int = 100) -> list[dict[str, Any]]:
        """Recent jobs, newest first."""
        return self._json("GET", "/v1/jobs", params={"limit": limit})  # type: ignore[return-value]

    def cancel(self, job: str | Mapping[str, Any]) -> dict[str, Any]:
        """Cancels a job (a running one stops at its next step); returns its state."""
        return self._json("DELETE", f"/v1/jobs/{_path(_id(job, 'job_id'))}")

    # -- models ---------------------------------------------------------------------------

    def models(self) -> list[dict[str, Any]]:
        """Every trained model, oldest first."""
        return self._json("GET", "/v1/models")  # type: ignore[return-value]

    def model(self, ref: str) -> dict[str, Any]:
        """A model's metadata (family, dims, prior, training curve...); ``ref``: id or alias."""
        return self._json("GET", f"/v1/models/{_path(ref)}")

    def diagnostics(self, ref: str) -> dict[str, Any] | None:
        """A model's calibration report: SBC p-values and rank histograms, TARP coverage,
        held-out energy score and NLL, ``findings`` and a plain-words ``verdict``
        (``None`` when the service computed none)."""
        report: dict[str, Any] | None = self.model(ref).get("diagnostics")
        return report

    def plot(
        self,
        model: str,
        name: str = "training",
        path: str | os.PathLike[str] | None = None,
        *,
        show: bool = False,
        x: Any = None,
        theta: Any = None,
        num_samples: int = 5000,
        seed: int | None = None,
        width: int | None = None,
        height: int | None = None,
    ) -> bytes:
        """A picture drawn by the service, as PNG bytes; saved to ``path`` and/or shown.

        Arguments:
            model: Model id or alias.
            name: ``training`` (loss curves), ``sbc`` (rank histograms), ``coverage``
                (expected coverage), or ``posterior`` (a pair plot of draws for ``x``).
            path: Where to write the PNG (optional).
            show: Show it in a matplotlib window (needs matplotlib).
            x: The observation ``(x_dim,)`` of a ``posterior`` plot.
            theta: A parameter vector ``(theta_dim,)`` to mark in a ``posterior`` plot.
            num_samples: Draws behind a ``posterior`` plot.
            seed: Seed of those draws.
            width: Image width in pixels (server default: 800).
            height: Image height in pixels (server default: 500, 800 for ``posterior``).
        """
        png = fetch_plot(
            self.transport,
            model,
            name,
            x=x,
            theta=theta,
            num_samples=num_samples,
            seed=seed,
            width=width,
            height=height,
        )
        save_or_show(png, path, show)
        return png

    def delete_model(self, ref: str) -> None:
        """Deletes a model (by id or alias)."""
        self.transport.request("DELETE", f"/v1/models/{_path(ref)}")

    def set_alias(self, model_id: str, alias: str) -> dict[str, Any]:
        """Points ``alias`` (e.g. ``two-moons``) at a model; returns the model."""
        return self._json("PUT", f"/v1/models/{_path(model_id)}/aliases/{_path(alias)}")

    def remove_alias(self, model_id: str, alias: str) -> None:
        """Removes ``alias`` from a model."""
        self.transport.request("DELETE", f"/v1/models/{_path(model_id)}/aliases/{_path(alias)}")

    # -- posterior ------------------------------------------------------------------------

    def sample(self, model: str, x: Any, num_samples: int = 1000, seed: int | None = None) -> Any:
        """Posterior draws for one observation or a batch.

        Arguments:
            model: A model id or alias.
            x: One observation ``(x_dim,)`` or a batch ``(B, x_dim)``.
            num_samples: Draws per observation.
            seed: Makes the draws reproducible. A request over the client's caps
                (``max_observations``, ``max_num_samples``, ``max_draws``) is split into
                several requests: the ``i``-th group of observations uses ``seed + i``
                for its first chunk of draws, and each further chunk of draws a
                seed derived from ``(seed, i, chunk)`` by a hash. So the same seed and the
                same caps give the same draws, but draws split into chunks differ from
                those one request of the same ``num_samples`` would give on a server with
                larger caps (only the first chunk is the same).

        Returns:
            ``(num_samples, theta_dim)`` for one observation, ``(num_samples, B,
            theta_dim)`` for a batch; a float32 numpy array, or a tensor when ``x`` is one.
        """
        rows = to_numpy(x, "x")
        if rows.ndim not in (1, 2) or rows.size == 0:
            raise InvalidInputError(
                f"x must be one observation (x_dim,) or a batch (B, x_dim), got shape "
                f"{list(rows.shape)}",
                field="x",
            )
        single = rows.ndim == 1
        rows = rows[None] if single else rows
        check_finite(rows, "x")
        if num_samples < 1:
            raise InvalidInputError(
                f"num_samples must be at least 1, got {num_samples}", field="num_samples"
            )
        # Draws per request, then observations per request, within every cap.
        per_draws = min(num_samples, self.max_num_samples, self.max_draws)
        per_rows = max(1, min(self.max_observations, self.max_draws // per_draws))
        groups = []
        for i, start in enumerate(range(0, rows.shape[0], per_rows)):
            chunk = rows[start : start + per_rows]
            parts = []
            for j, first in enumerate(range(0, num_samples, per_draws)):
                body = {
                    "model": model,
                    "x": chunk[0].tolist() if single else chunk.tolist(),
                    "num_samples": min(per_draws, num_samples - first),
                    "seed": None if seed is None else chunk_seed(seed, i, j),
                }
                parts.append(self._npy("/v1/posterior/sample", body))
            groups.append(parts[0] if len(parts) == 1 else np.concatenate(parts, axis=0))
        draws = groups[0] if len(groups) == 1 else np.concatenate(groups, axis=1)
        return to_torch(draws, like=x) if is_tensor(x) else draws

    def log_prob(self, model: str, theta: Any, x: Any) -> Any:
        """``log q(theta | x)`` for families with a density, shape ``(N,)``.

        ``theta`` outside the prior's support has density zero, so its value is ``-inf``.
        JSON cannot carry infinities: the server sends ``null`` for them, and this method
        turns every ``null`` back into ``-inf``.

        Large ``theta`` is split into several requests of at most ``max_draws`` rows
        each, every one below ``max_request_bytes``.

        Arguments:
            model: A model id or alias.
            theta: Parameters ``(N, theta_dim)``.
            x: One observation ``(x_dim,)`` for every row, or one per row ``(N, x_dim)``.

        Returns:
            ``(N,)`` float64 numpy array (``-inf`` outside the prior's support), or a
            float32 tensor when ``theta`` is one.

        Raises:
            NoDensityError: The model's family is a generator without a density.
        """
        theta_rows, x_rows = to_numpy(theta, "theta"), to_numpy(x, "x")
        check_finite(theta_rows, "theta")
        check_finite(x_rows, "x")
        parts = [
            self._log_prob_request(model, theta_part, x_part)
            for theta_part, x_part in self._log_prob_chunks(model, theta_rows, x_rows)
        ]
        values = parts[0] if len(parts) == 1 else np.concatenate(parts)
        return to_torch(values, like=theta) if is_tensor(theta) else values

    def _log_prob_chunks(
        self, model: str, theta: np.ndarray, x: np.ndarray
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """``(theta, x)`` pieces of one ``log_prob`` call, each a request under the caps.

        Only well-formed calls are split (``theta`` 1-D or 2-D; one ``x``, or one per
        ``theta`` row); anything else goes as one request for the server to explain.
        """
        one_x = x.ndim == 1
        if theta.ndim not in (1, 2) or theta.shape[0] == 0:
            yield theta, x
            return
        if not one_x and (x.ndim != 2 or x.shape[0] != theta.shape[0]):
            yield theta, x
            return
        # Worst-case JSON: 26 characters per number (a float's repr and its separator),
        # 8 per row for its brackets; the model id and a single x count once.
        numbers_per_row = (theta.size // theta.shape[0]) + (0 if one_x else x.shape[1])
        row_bytes = 26 * numbers_per_row + 8
        fixed = 256 + 4 * len(model) + (26 * x.size if one_x else 0)
        per_request = max(1, min(self.max_draws, (self.max_request_bytes - fixed) // row_bytes))
        for start in range(0, theta.shape[0], per_request):
            stop = start + per_request
            yield theta[start:stop], x if one_x else x[start:stop]

    def _log_prob_request(self, model: str, theta: np.ndarray, x: np.ndarray) -> np.ndarray:
        body = {"model": model, "theta": theta.tolist(), "x": x.tolist()}
        try:
            answer = self._json("POST", "/v1/posterior/log_prob", json=body)
        except InvalidInputError as e:
            if e.code == "no_density" or e.field == "model":
                raise NoDensityError(e.message, code=e.code, field=e.field, status=e.status) from e
            raise
        return np.array(
            [-np.inf if value is None else value for value in answer["log_prob"]],
            dtype=np.float64,
        )

    # -- plumbing -------------------------------------------------------------------------

    def _json(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        response = self.transport.request(method, path, **kwargs)
        answer: dict[str, Any] = response.json()
        return answer

    def _npy(self, path: str, body: dict[str, Any]) -> np.ndarray:
        response = self.transport.request(
            "POST", path, json=body, headers={"Accept": NPY_MEDIA_TYPE}
        )
        if response.headers.get("content-type", "").startswith("application/json"):
            return np.asarray(response.json()["samples"], dtype=np.float32)
        array: np.ndarray = np.load(io.BytesIO(response.content), allow_pickle=False)
        return array


def box_prior(prior: Mapping[str, Any] | tuple[Any, Any] | Sequence[Any]) -> dict[str, Any]:
    """The API's ``{"type": "box", "low": [...], "high": [...]}`` from a pair or a dict.

    ``None``, ``low = -inf`` and ``high = +inf`` become ``null`` (unbounded on that side).

    Raises:
        InvalidInputError: (a ``ValueError``) for a bound that is not a number, NaN, a
            ``low`` of ``+inf`` or a ``high`` of ``-inf``, naming the side and index.
    """
    if isinstance(prior, Mapping):
        low, high = prior.get("low"), prior.get("high")
    elif len(prior) == 2:
        low, high = prior
    else:
        raise InvalidInputError(
            "prior must be (low, high) or {'low': ..., 'high': ...}", field="prior"
        )
    bounds = [_bounds(side, name) for side, name in ((low, "low"), (high, "high"))]
    if len(bounds[0]) != len(bounds[1]):
        raise InvalidInputError(
            f"prior low has {len(bounds[0])} entries but high has {len(bounds[1])}", field="prior"
        )
    return {"type": "box", "low": bounds[0], "high": bounds[1]}


def _bounds(side: Any, name: str) -> list[float | None]:
    if side is None:
        raise InvalidInputError(f"prior {name} is missing", field="prior")
    if is_tensor(side):
        side = side.detach().cpu().tolist()
    unbounded = -np.inf if name == "low" else np.inf
    out: list[float | None] = []
    for index, value in enumerate(np.asarray(side, dtype=object).reshape(-1).tolist()):
        try:
            number = None if value is None else float(value)
        except (TypeError, ValueError):
            raise InvalidInputError(
                f"prior {name}[{index}] holds {value!r}, not a number", field="prior"
            ) from None
        if number is None or number == unbounded:
            out.append(None)
        elif np.isnan(number):
            raise InvalidInputError(
                f"prior {name}[{index}] is NaN; use a number, or None for an unbounded side",
                field="prior",
            )
        elif np.isinf(number):
            raise InvalidInputError(
                f"prior {name}[{index}] is {number:+}: a {name} bound must be finite, or "
                f"{unbounded:+} (or None) for an unbounded side",
                field="prior",
            )
        else:
            out.append(number)
    return out


def chunk_seed(seed: int, group: int, chunk: int) -> int:
    """The seed of one sampling request when :meth:`Client.sample` splits a call.

    Group ``group`` of observations uses ``seed + group`` for its first chunk of draws (as
    an unsplit call would); chunk ``chunk > 0`` gets a seed hashed from all three, so no
    two requests of one call share a seed and nearby user seeds do not overlap.
    """
    if chunk == 0:
        return (seed + group) % 2**63
    digest = hashlib.sha256(f"sbiserve-sample:{seed}:{group}:{chunk}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % 2**63


def _plain(value: Any) -> Any:
    """JSON for numpy and torch values inside hyperparameters."""
    if is_tensor(value):
        return value.detach().cpu().tolist()
    if isinstance(value, np.generic | np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _id(value: str | Mapping[str, Any], key: str) -> str:
    """An id given as such, or read from the dict the server returned."""
    if isinstance(value, Mapping):
        if key not in value:
            raise InvalidInputError(f"expected an id or a dict with {key!r}", field=key)
        return str(value[key])
    return str(value)


def _path(segment: str) -> str:
    return quote(segment, safe=":@")
