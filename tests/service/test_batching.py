"""The batching maths (no Redis): parts bounded by draws, and many requests drawn in one
pass giving each request exactly what it gets alone."""

from __future__ import annotations

import uuid
from typing import Any

import numpy as np
import torch

from sbiserve.models import EnergyFlow, EnergyFlowConfig, prepare_for_serving
from sbiserve.service.batching import draws_of, sample_many, split_by_draws


def request(num_samples: int, num_obs: int = 1, seed: int = 0) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    return {
        "id": uuid.uuid4().hex,
        "x": rng.normal(size=(num_obs, 2)).astype(np.float32),
        "num_samples": num_samples,
        "seed": seed,
    }


def test_split_by_draws_bounds_every_part_and_puts_small_requests_first() -> None:
    requests = [request(700), request(10), request(300, num_obs=2), request(5), request(2000)]
    parts = split_by_draws(requests, max_draws=1000)
    assert [[draws_of(r) for r in part] for part in parts] == [[5, 10, 600], [700], [2000]]
    assert sorted(id(r) for part in parts for r in part) == sorted(map(id, requests))
    assert split_by_draws([], 10) == []


def test_many_requests_in_one_pass_get_what_each_gets_alone() -> None:
    torch.manual_seed(0)
    flow = prepare_for_serving(EnergyFlow(2, 2, EnergyFlowConfig(hidden_features=(16,))))
    requests = [request(3, 1, seed=1), request(50, 2, seed=2), request(7, 3, seed=3)]
    together = sample_many(flow, requests, max_draws=64)  # also split into slices of 64
    assert [d.shape for d in together] == [(3, 1, 2), (50, 2, 2), (7, 3, 2)]
    for r, draws in zip(requests, together, strict=True):
        (alone,) = sample_many(flow, [r], max_draws=10_000)
        np.testing.assert_allclose(draws, alone, rtol=1e-5, atol=1e-6)
    assert not np.allclose(together[1][:, 0], together[1][:, 1])  # observations differ


def test_one_request_larger_than_a_slice_draws_what_one_pass_draws() -> None:
    # One request of one observation passes its context as one broadcast row; its noise
    # is still cut into slices of max_draws rows, each reading that same row.
    torch.manual_seed(0)
    flow = EnergyFlow(2, 2, EnergyFlowConfig(hidden_features=(16,), mixture_heads=4))
    flow.fit_standardization(torch.randn(100, 2) * 3 + 1, torch.randn(100, 2) * 2 - 1)
    flow = prepare_for_serving(flow)  # z-scorings folded into the first and last layers
    assert flow.context_broadcasts and flow._outputs_phi
    r = request(150, 1, seed=4)
    (sliced,) = sample_many(flow, [r], max_draws=64)
    (whole,) = sample_many(flow, [r], max_draws=10_000)
    assert sliced.shape == whole.shape == (150, 1, 2)
    np.testing.assert_allclose(sliced, whole, rtol=1e-5, atol=1e-6)
    with torch.inference_mode():
        seeded = torch.Generator().manual_seed(4)
        direct = flow.sample((150,), x=torch.from_numpy(r["x"][0]), generator=seeded)
    np.testing.assert_allclose(whole[:, 0], direct.numpy(), rtol=1e-5, atol=1e-6)
