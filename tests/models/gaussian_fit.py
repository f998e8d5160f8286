"""A 2-D Gaussian problem with an analytic posterior, for the exact-density families.

``theta ~ N(0, I_2)`` and ``x = theta + NOISE * eps``, so
``theta | x ~ N(x / (1 + NOISE^2), NOISE^2 / (1 + NOISE^2) I_2)``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import torch

from sbiserve.models import FitResult, PosteriorEstimator, TrainConfig, build_estimator, fit

NOISE = 0.5
X_O = torch.tensor([0.8, -0.5])


@dataclasses.dataclass
class GaussianFit:
    """A flow trained on the problem, and how it compares with the analytic posterior."""

    flow: PosteriorEstimator
    result: FitResult
    posterior: torch.distributions.Normal
    kl: float  # KL(posterior || flow) at X_O, by Monte Carlo
    draws: torch.Tensor  # (4000, 2) draws of the flow at X_O

    def draws_match(self, mean_tol: float = 0.2, std_tol: float = 0.15) -> bool:
        """Mean within ``mean_tol`` posterior SDs and SD within ``std_tol`` (relative)."""
        sd = self.posterior.stddev
        mean_ok = ((self.draws.mean(0) - self.posterior.mean).abs() / sd < mean_tol).all()
        std_ok = ((self.draws.std(0) / sd - 1).abs() < std_tol).all()
        return bool(mean_ok and std_ok)


def fit_gaussian(family: str, options: dict[str, Any]) -> GaussianFit:
    """Trains ``family`` for 8 quick epochs on 1,600 pairs and scores it at ``X_O``."""
    torch.manual_seed(0)
    theta = torch.randn(1600, 2)
    x = theta + NOISE * torch.randn(1600, 2)
    flow = build_estimator(family, 2, 2, options)
    config = TrainConfig(
        max_epochs=8,
        batch_size=128,
        learning_rate=1e-2,
        lr_schedule="constant",
        ema_decay=0.9,
        device="cpu",
    )
    result = fit(flow, theta, x, config)
    shrink = 1 / (1 + NOISE**2)
    posterior = torch.distributions.Normal(shrink * X_O, math.sqrt(NOISE**2 * shrink))
    with torch.no_grad():
        exact = posterior.sample((4000,))
        kl = float((posterior.log_prob(exact).sum(-1) - flow.log_prob(exact, X_O)).mean())
        draws = flow.sample((4000,), X_O, generator=torch.Generator().manual_seed(1))
    return GaussianFit(flow, result, posterior, kl, draws)
