"""Pictures of models and posteriors as PNG bytes (matplotlib's Agg canvas, no display).

Every figure is drawn on its own :class:`~matplotlib.figure.Figure` (not ``pyplot``, whose
global state is not thread-safe: the API renders in a thread pool) and comes out exactly
``width x height`` pixels. They read without colour: black and grey lines told apart by
their style and markers, densities in grey levels, and a legend or labels everywhere.

- :func:`training_png`: training and validation loss per epoch, the best epoch marked.
- :func:`sbc_png`: SBC rank histograms per parameter with the band uniform ranks stay in.
- :func:`coverage_png`: TARP's expected coverage against credibility, and each
  parameter's 50% and 90% interval coverage.
- :func:`pair_png`: a posterior pair plot (marginals on the diagonal, pairwise densities
  below it).
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

DPI = 100
MODEL_PLOTS = ("training", "sbc", "coverage")
"""Names of the plots ``GET /v1/models/{id}/plots/{name}.png`` serves."""
MAX_PAIR_DIMS = 8


def _figure(width: int, height: int) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=(width / DPI, height / DPI), dpi=DPI, layout="constrained")


def _png(figure: Any) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)  # no bbox_inches: keep the exact size
    return buffer.getvalue()


def training_png(
    training: dict[str, Any], title: str, width: int = 800, height: int = 500
) -> bytes:
    """Loss curves from a model's ``training`` metadata (``train_losses``, ``val_losses``)."""
    figure = _figure(width, height)
    ax = figure.add_subplot()
    train = training.get("train_losses") or []
    val = training.get("val_losses") or []
    epochs = np.arange(1, len(train) + 1)
    ax.plot(epochs, train, "-", color="black", label="training loss")
    ax.plot(np.arange(1, len(val) + 1), val, "--", color="0.45", label="validation loss")
    best = training.get("best_epoch")
    if best:
        ax.axvline(best, linestyle=":", color="black", label=f"best epoch ({best})")
    kept = training.get("kept_epoch")
    if kept and kept != best:
        ax.axvline(kept, linestyle="-.", color="0.3", label=f"kept epoch ({kept})")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss (lower is better)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    return _png(figure)


def _grid(count: int) -> tuple[int, int]:
    columns = min(count, 4)
    return math.ceil(count / columns), columns


def sbc_png(
    diagnostics: dict[str, Any], names: Sequence[str], width: int = 800, height: int = 500
) -> bytes:
    """One rank histogram per parameter, with the 99% band of uniform ranks' bin counts.

    A U shape means over-confident, a hump under-confident, a slope biased.
    """
    counts = np.asarray(diagnostics["rank_counts"], dtype=float)  # (D, bins)
    dim, bins = counts.shape
    total = counts[0].sum()
    expected = total / bins
    # Normal approximation of a binomial bin count: about 99% of bins stay inside.
    half = 2.576 * math.sqrt(total * (1 / bins) * (1 - 1 / bins))
    figure = _figure(width, height)
    rows, columns = _grid(dim)
    centers = (np.arange(bins) + 0.5) / bins
    for d in range(dim):
        ax = figure.add_subplot(rows, columns, d + 1)
        ax.axhspan(max(expected - half, 0), expected + half, color="0.88", label="99% if uniform")
        ax.axhline(expected, linestyle="--", color="0.4", label="uniform")
        ax.bar(centers, counts[d], width=1 / bins, color="0.25", edgecolor="white")
        p_value = diagnostics["sbc_p_values"][d]
        ax.set_title(f"{names[d]}  (KS p={p_value:.2g})", fontsize=10)
        ax.set_xlim(0, 1)
        ax.set_xlabel("normalized rank")
        if d % columns == 0:
            ax.set_ylabel("held-out simulations")
        if d == 0:
            ax.legend(fontsize=8, loc="lower center")
    figure.suptitle(f"SBC ranks ({diagnostics['num_pairs']} held-out simulations)")
    return _png(figure)


def coverage_png(
    diagnostics: dict[str, Any], names: Sequence[str], width: int = 800, height: int = 500
) -> bytes:
    """TARP's expected-coverage curve and each parameter's interval coverage."""
    figure = _figure(width, height)
    left, right = figure.subplots(1, 2, width_ratios=(3, 2))
    alpha = diagnostics["tarp_alpha"]
    left.plot([0, 1], [0, 1], "--", color="0.5", label="calibrated")
    left.plot(alpha, diagnostics["tarp_coverage"], "-", color="black", label="model (TARP)")
    left.set_xlabel("credibility level")
    left.set_ylabel("expected coverage")
    left.set_title(
        f"area to diagonal {diagnostics['tarp_area']:.3f}; "
        f"below it: over-confident, above: under-confident",
        fontsize=9,
    )
    left.set_aspect("equal")
    left.set_xlim(0, 1)
    left.set_ylim(0, 1)
    left.legend(loc="upper left")
    positions = np.arange(len(names))
    right.axhline(0.5, linestyle="--", color="0.5")
    right.axhline(0.9, linestyle=":", color="0.5")
    right.plot(positions, diagnostics["coverage_50"], "o", color="black", label="50% intervals")
    right.plot(positions, diagnostics["coverage_90"], "s", color="0.5", label="90% intervals")
    right.set_xticks(positions, names, rotation=45 if len(names) > 4 else 0)
    right.set_xlim(-0.5, len(names) - 0.5)
    right.set_ylim(0, 1)
    right.set_ylabel("share of true values inside")
    right.set_title("per parameter (ideal: the dashed lines)", fontsize=9)
    right.legend(loc="lower right", fontsize=8)
    figure.suptitle(diagnostics.get("verdict", ""), fontsize=9)
    return _png(figure)


def _limits(samples: np.ndarray, prior: dict[str, Any] | None, d: int) -> tuple[float, float]:
    """The prior's bounds where it has them, else the draws' 0.5-99.5% range."""
    low_q, high_q = np.quantile(samples[:, d], [0.005, 0.995])
    low = (prior or {}).get("low", [None] * (d + 1))[d]
    high = (prior or {}).get("high", [None] * (d + 1))[d]
    span = max(high_q - low_q, 1e-9)
    # A bound the draws reach is shown; a far one would squash the posterior to a line.
    low = low if low is not None and low_q - low < 0.1 * span else low_q - 0.05 * span
    high = high if high is not None and high - high_q < 0.1 * span else high_q + 0.05 * span
    return float(low), float(high)


def pair_png(
    samples: np.ndarray,
    names: Sequence[str],
    title: str,
    prior: dict[str, Any] | None = None,
    truth: Sequence[float] | None = None,
    width: int = 800,
    height: int = 800,
) -> bytes:
    """Pair plot of posterior draws ``(N, D)``: histograms on the diagonal, 2-D below.

    At most :data:`MAX_PAIR_DIMS` parameters (the first ones); ``truth`` marks a
    parameter vector with a cross.
    """
    dim = min(samples.shape[1], MAX_PAIR_DIMS)
    figure = _figure(width, height)
    axes = np.asarray(figure.subplots(dim, dim, squeeze=False))
    limits = [_limits(samples, prior, d) for d in range(dim)]
    for i in range(dim):
        for j in range(dim):
            ax = axes[i, j]
            if j > i:
                ax.set_axis_off()
                continue
            if i == j:
                ax.hist(samples[:, i], bins=40, range=limits[i], histtype="step", color="black")
                ax.set_yticks([])
                if truth is not None:
                    ax.axvline(truth[i], linestyle="--", color="0.4")
            else:
                ax.hist2d(
                    samples[:, j],
                    samples[:, i],
                    bins=50,
                    range=[limits[j], limits[i]],
                    cmap="Greys",
                )
                if truth is not None:
                    # A white cross under a black one stays visible on dark density.
                    ax.plot(truth[j], truth[i], "x", color="white", markersize=11, mew=4)
                    ax.plot(truth[j], truth[i], "x", color="black", markersize=9, mew=2)
            ax.set_xlim(limits[j])
            if i != j:
                ax.set_ylim(limits[i])
            if i == dim - 1:
                ax.set_xlabel(names[j])
            else:
                ax.set_xticklabels([])
            if j == 0 and i > 0:
                ax.set_ylabel(names[i])
            elif i != j:
                ax.set_yticklabels([])
    shown = "" if dim == samples.shape[1] else f" (first {dim} of {samples.shape[1]} parameters)"
    figure.suptitle(f"{title}{shown}", fontsize=10)
    return _png(figure)


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
