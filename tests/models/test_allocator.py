"""glibc's malloc thresholds: fixed high, large sampling passes stop mapping fresh pages."""

from __future__ import annotations

import platform
import resource

import pytest
import torch

from sbiserve.models import BoxPrior, EnergyFlow, EnergyFlowConfig, prepare_for_serving, tune_malloc

glibc = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's mallopt only")


@glibc
def test_large_sampling_passes_reuse_memory_once_malloc_is_tuned() -> None:
    flow = EnergyFlow(
        2, 2, EnergyFlowConfig(hidden_features=(48, 48, 48)), BoxPrior([-1] * 2, [1] * 2)
    )
    flow.fit_standardization(torch.rand(100, 2) * 2 - 1, torch.randn(100, 2))
    flow = prepare_for_serving(flow)
    x = torch.tensor([0.0, 0.1])
    assert tune_malloc() and tune_malloc()  # takes, and may be called again
    with torch.inference_mode():
        for _ in range(3):  # the heap grows to its working size once
            flow.sample((10_000,), x)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        for _ in range(20):
            flow.sample((10_000,), x)
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    # Each pass's activations are a few MiB: mapped afresh, 20 passes fault tens of
    # thousands of pages (27,000-70,000 measured); reused, a few hundred at most.
    assert faults < 5_000
