"""Posterior plots (matplotlib, no display needed)."""

from __future__ import annotations

import os

import numpy as np


def plot_posterior(
    samples: np.ndarray,
    path: str | os.PathLike[str],
    title: str,
    limits: tuple[float, float] | None = None,
    truth: np.ndarray | None = None,
) -> None:
    """Writes a scatter/histogram plot of 2-D posterior draws ``(N, 2)`` to a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 5), dpi=120)
    ax.hist2d(
        samples[:, 0],
        samples[:, 1],
        bins=120,
        range=[limits, limits] if limits else None,
        cmap="viridis",
    )
    if truth is not None:
        ax.plot(*np.asarray(truth).T, "r*", markersize=12, label="true theta")
        ax.legend(loc="upper right")
    ax.set_xlabel(r"$\theta_1$")
    ax.set_ylabel(r"$\theta_2$")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
