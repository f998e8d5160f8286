"""``sbiserve demo``: simulate two-moons, train an energy flow, plot the posterior."""

from __future__ import annotations

import numpy as np
import torch
from tqdm import tqdm

from sbiserve.models import BoxPrior, EnergyFlow, EpochInfo, TrainConfig, fit

from .plots import plot_posterior
from .simulators import TWO_MOONS_HIGH, TWO_MOONS_LOW, two_moons_prior, two_moons_simulator


def run_demo(out: str, num_simulations: int = 10_000, max_epochs: int = 200) -> np.ndarray:
    """Runs the demo in-process and returns the posterior draws for ``x_o = (0, 0)``."""
    rng = np.random.default_rng(0)
    theta = two_moons_prior(num_simulations, rng)
    x = two_moons_simulator(theta, rng)
    prior = BoxPrior(low=TWO_MOONS_LOW, high=TWO_MOONS_HIGH)
    estimator = EnergyFlow(theta_dim=2, x_dim=2, prior=prior)
    with tqdm(total=max_epochs, desc="training energy flow", unit="epoch") as bar:

        def progress(info: EpochInfo) -> None:
            bar.update(1)
            bar.set_postfix(train=f"{info.train_loss:.4f}", val=f"{info.val_loss:.4f}")

        result = fit(
            estimator,
            torch.as_tensor(theta, dtype=torch.float32),
            torch.as_tensor(x, dtype=torch.float32),
            TrainConfig(max_epochs=max_epochs, batch_size=256),
            progress=progress,
        )
    with torch.no_grad():
        draws = estimator.sample((20_000,), x=torch.zeros(2)).cpu().numpy()
    plot_posterior(
        draws,
        out,
        f"energy flow posterior, two-moons, x_o = (0, 0)\n"
        f"{num_simulations} simulations, {result.epochs} epochs",
        limits=(-1.0, 1.0),
    )
    print(f"wrote {out} ({result.epochs} epochs, {result.wall_time_s:.1f} s on {result.device})")
    return draws
