"""Many sampling requests for one model in shared forward passes: plain functions over
an estimator, no Redis (the worker feeds them from the sample lane).

A request here is a dict with ``x`` (``(B, x_dim)`` float32), ``num_samples`` and
``seed``. Each request's noise comes from its own seeded generator, so batching never
changes what a seed gives.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np
import torch

from sbiserve.models import PosteriorEstimator

T = TypeVar("T")


def _joined(parts: list[T], join: Callable[[list[T]], T]) -> T:
    """``join(parts)``, or the only part as it is: for a single draw a concatenation
    costs about as much as a layer."""
    return parts[0] if len(parts) == 1 else join(parts)


def draws_of(request: dict[str, Any]) -> int:
    """Draws a request asks for: ``num_samples`` for each of its observations."""
    return int(request["num_samples"]) * int(request["x"].shape[0])


def split_by_draws(requests: list[dict[str, Any]], max_draws: int) -> list[list[dict[str, Any]]]:
    """Parts of at most ``max_draws`` draws each, smallest requests first.

    Small requests go first so one huge request cannot hold many small ones behind it;
    a request bigger than ``max_draws`` forms a part of its own.
    """
    parts: list[list[dict[str, Any]]] = []
    size = 0
    for request in sorted(requests, key=draws_of):
        if parts and size + draws_of(request) <= max_draws:
            parts[-1].append(request)
            size += draws_of(request)
        else:
            parts.append([request])
            size = draws_of(request)
    return parts


def sample_many(
    estimator: PosteriorEstimator,
    requests: list[dict[str, Any]],
    max_draws: int,
    device: torch.device | str = "cpu",
) -> list[np.ndarray]:
    """Draws for every request, ``(num_samples, B, theta_dim)`` float32 each.

    The observations are embedded once; each request's context rows are repeated for its
    draws and paired with its own seeded noise; the generator then runs over all rows in
    slices of at most ``max_draws``.
    """
    # Operators that would change nothing are skipped (one request needs no concatenation,
    # one part no slicing): for a single draw each costs about as much as a layer.
    with torch.inference_mode():
        x = torch.from_numpy(
            np.ascontiguousarray(_joined([r["x"] for r in requests], np.concatenate), np.float32)
        )
        if x.device != torch.device(device):
            x = x.to(device)
        h = estimator.context(x)
        rows, noise, offset = [], [], 0
        for r in requests:
            batch, num = r["x"].shape[0], r["num_samples"]
            h_r = h if len(requests) == 1 else h[offset : offset + batch]
            offset += batch
            if batch == 1 and len(requests) == 1 and estimator.context_broadcasts:
                rows.append(h_r)  # (1, C) read by every row of noise: no view at all
            elif batch == 1:  # (1, C) to (num, C): one view
                rows.append(h_r.expand(num, -1))
            else:
                rows.append(h_r.expand(num, *h_r.shape).reshape(num * batch, -1))
            generator = torch.Generator().manual_seed(r["seed"])
            noise.append(estimator.draw_noise(num * batch, generator))
        h_all, noise_all = _joined(rows, torch.cat), _joined(noise, torch.cat)
        step = max_draws  # one request may exceed it alone
        parts = []
        rows_all = noise_all.shape[0]  # h_all may be one broadcast row
        for i in range(0, rows_all, step):
            whole = i == 0 and rows_all <= step
            h_part = h_all if whole or h_all.shape[0] == 1 else h_all[i : i + step]
            noise_part = noise_all if whole else noise_all[i : i + step]
            part = estimator.sample_from_context(h_part, noise_part)
            if part.dtype != torch.float32 or part.device.type != "cpu":
                part = part.float().cpu()
            parts.append(part.numpy())
        theta = _joined(parts, np.concatenate)
    out, start = [], 0
    for r in requests:
        count = draws_of(r)
        out.append(theta[start : start + count].reshape(r["num_samples"], r["x"].shape[0], -1))
        start += count
    return out
