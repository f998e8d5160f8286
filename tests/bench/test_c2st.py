"""The fast C2ST: the same answer as sbibm's on fixed cases, and the edges of its range."""

from __future__ import annotations

import pytest
import torch

from bench import tasks
from bench.c2st import c2st, fast_c2st, sbibm_c2st


def _two_moons_pair() -> tuple[torch.Tensor, torch.Tensor]:
    """Reference draws of two_moons (observation 1) against a blurred copy of others."""
    reference = tasks.reference_draws(tasks.load_task("two_moons"), 1, 10_000)
    # sbibm stores the draws grouped by crescent: shuffle before splitting.
    order = torch.randperm(10_000, generator=torch.Generator().manual_seed(0))
    first, second = reference[order[:2000]], reference[order[2000:4000]]
    blur = torch.randn(second.shape, generator=torch.Generator().manual_seed(1))
    return first, second + 0.1 * blur


@pytest.mark.slow
def test_agrees_with_sbibm_on_a_fixed_case() -> None:
    reference, draws = _two_moons_pair()
    fast = fast_c2st(reference, draws)
    slow = sbibm_c2st(reference, draws)
    assert 0.55 < slow < 0.95  # the case is neither trivial nor indistinguishable
    assert fast == pytest.approx(slow, abs=0.02)


def test_same_distribution_scores_near_one_half() -> None:
    generator = torch.Generator().manual_seed(0)
    a, b = torch.randn(2, 3000, 3, generator=generator)
    assert fast_c2st(a, b) == pytest.approx(0.5, abs=0.03)


def test_disjoint_sets_score_near_one() -> None:
    generator = torch.Generator().manual_seed(0)
    a, b = torch.randn(2, 2000, 2, generator=generator)
    assert fast_c2st(a, b + 5.0) > 0.99


def test_is_reproducible_and_dispatches_by_kind() -> None:
    generator = torch.Generator().manual_seed(0)
    a, b = torch.randn(2, 1000, 2, generator=generator)
    b[:, 0] += 0.5
    assert fast_c2st(a, b) == fast_c2st(a, b) == c2st(a, b, 5, "fast")
    with pytest.raises(ValueError, match="unknown C2ST kind"):
        c2st(a, b, 5, "other")  # type: ignore[arg-type]


def test_refuses_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match="must be"):
        fast_c2st(torch.randn(10, 2), torch.randn(10, 3))
    with pytest.raises(ValueError, match="folds"):
        fast_c2st(torch.randn(10, 2), torch.randn(10, 2), folds=1)
