"""Calibration diagnostics of a trained estimator on held-out simulations.

For held-out pairs :math:`(\\theta_i, x_i)`, :math:`i = 1..N`, never trained on, the
estimator draws :math:`L` times from :math:`q(\\theta \\mid x_i)` once, and every check
reads those draws:

- **SBC** (Talts et al. 2018): the rank of :math:`\\theta_{i,d}` among the draws of
  parameter :math:`d` is uniform on :math:`\\{0..L\\}` when :math:`q` is the posterior.
  Kolmogorov-Smirnov p-values (sbi's ``check_uniformity_frequentist``), rank histograms,
  the share of true values inside the central 50% and 90% intervals (a narrow posterior
  covers less than it claims), and the mean normalized rank (0.5 without bias).
- **Expected coverage, TARP** (Lemos et al. 2023): needs draws only, so generators get
  it too. The curve of expected coverage against credibility, sbi's ``check_tarp``
  (signed area beyond credibility 0.5 and a KS p-value), and the unsigned area between
  the curve and the diagonal.
- **Held-out energy score** (:math:`\\beta = 1`, in the units of :math:`\\theta`) for
  every family, and the **held-out negative log-likelihood** for families with a
  normalized density.

A plain-words ``verdict`` sums them up ("over-confident in theta_2", ...).

References:
    | Validating Bayesian Inference Algorithms with Simulation-Based Calibration
      (Talts et al., 2018) https://arxiv.org/abs/1804.06788
    | Sampling-Based Accuracy Testing of Posterior Estimators for General Inference
      (Lemos et al., 2023) https://arxiv.org/abs/2302.03026

Example:
    >>> draws = torch.randn(200, 300, 2); theta = torch.randn(300, 2)
    >>> calibration(draws, theta).verdict
    'calibrated: no evidence of miscalibration in 300 held-out simulations'
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
from sbi.diagnostics.sbc import check_uniformity_frequentist
from sbi.diagnostics.tarp import check_tarp
from torch import Tensor

from .base import PosteriorEstimator
from .config import Config, require
from .energy_score import energy_score
from .errors import TrainingCancelled
from .training import TrainConfig, _split

Progress = Callable[[str, int, int], None]
"""Called as ``progress(stage, done, total)`` while the diagnostics run."""


@dataclasses.dataclass(frozen=True)
class DiagnosticsConfig(Config):
    """How much the diagnostics may cost, and how strict their verdict is.

    Arguments:
        num_pairs: Held-out pairs used at most (0 turns the diagnostics off).
        num_draws: Posterior draws per held-out pair (the SBC ranks run over 0..num_draws).
        rank_bins: Bins of the stored rank histograms.
        max_draws_per_pass: Most draws in one forward pass (bounds memory).
        significance: Family-wise level of the uniformity tests (Bonferroni over the
            parameters); coverage and bias need a z-score of 3 besides.
        seed: Seed of the draws and of TARP's reference points.
    """

    num_pairs: int = 200
    num_draws: int = 256
    rank_bins: int = 16
    max_draws_per_pass: int = 65_536
    significance: float = 0.01
    seed: int = 0

    def validate(self) -> None:
        require(self.num_pairs >= 0, "num_pairs must be >= 0")
        require(self.num_draws >= 2, "num_draws must be >= 2")
        require(self.rank_bins >= 2, "rank_bins must be >= 2")
        require(self.max_draws_per_pass >= 1, "max_draws_per_pass must be >= 1")
        require(0 < self.significance < 1, "significance must lie in (0, 1)")


@dataclasses.dataclass
class Calibration:
    """SBC and TARP results of ``L`` draws for ``N`` held-out pairs (JSON-ready lists)."""

    num_pairs: int
    num_draws: int
    sbc_p_values: list[float]
    """Per parameter: KS test of the ranks against uniform."""
    rank_counts: list[list[int]]
    """Per parameter: counts of the normalized ranks in ``rank_bins`` equal bins of [0, 1]."""
    coverage_50: list[float]
    """Per parameter: share of true values inside the central 50% interval of the draws."""
    coverage_90: list[float]
    mean_rank: list[float]
    """Per parameter: mean normalized rank; above 0.5, the draws lie below the truth."""
    tarp_alpha: list[float]
    tarp_coverage: list[float]
    tarp_atc: float
    """sbi's area to curve beyond credibility 0.5: < 0 over-, > 0 under-confident."""
    tarp_p_value: float
    tarp_area: float
    """Unsigned area between the expected-coverage curve and the diagonal, in [0, 0.5]."""
    findings: list[str]
    verdict: str


@dataclasses.dataclass
class Diagnostics(Calibration):
    """:class:`Calibration` plus held-out scores and what it cost."""

    energy_score: float
    nll: float | None
    """Mean held-out negative log-likelihood; ``None`` without a normalized density."""
    parameter_names: list[str]
    wall_time_s: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (NaN becomes ``None``)."""
        return _json_ready(dataclasses.asdict(self))


def _json_ready(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_ready(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_ready(v) for v in value]
    return value


def default_names(prefix: str, count: int) -> list[str]:
    """``prefix_1 .. prefix_count`` (1-based, as people number parameters)."""
    return [f"{prefix}_{i + 1}" for i in range(count)]


def held_out_indices(num: int, config: TrainConfig) -> Tensor:
    """Rows :func:`~sbiserve.models.fit` held out for validation with ``config``.

    The same split as training (same seed and fraction), so the diagnostics see only
    simulations the weights were never fitted on. Shape ``(num_val,)``.
    """
    # fit() draws the split first from a generator seeded with config.seed; repeating
    # that call gives the same rows without changing the training loop.
    _, val_idx = _split(num, config.validation_fraction, torch.Generator().manual_seed(config.seed))
    return val_idx


def calibration(
    draws: Tensor,
    theta: Tensor,
    names: Sequence[str] | None = None,
    config: DiagnosticsConfig | None = None,
) -> Calibration:
    """SBC ranks, TARP coverage and a verdict from posterior draws.

    Arguments:
        draws: ``L`` draws per held-out pair, shape ``(L, N, D)``.
        theta: The true parameters of the pairs, shape ``(N, D)``.
        names: Parameter names for the findings (default ``theta_1..theta_D``).
        config: Bins, significance level and seed.

    Returns:
        A :class:`Calibration`.
    """
    config = config or DiagnosticsConfig()
    draws, theta = draws.detach().double().cpu(), theta.detach().double().cpu()
    num_draws, num_pairs, dim = draws.shape
    names = list(names) if names is not None else default_names("theta", dim)
    # A plain comparison per draw; sbi's run_sbc wants an sbi posterior and draws anew,
    # while these draws are shared by every check.
    ranks = (draws < theta).sum(dim=0).double()  # (N, D), in 0..L
    p_values = check_uniformity_frequentist(ranks, num_draws).double()
    u = ranks / num_draws
    edges = torch.linspace(0, 1, config.rank_bins + 1, dtype=torch.float64)
    bins = torch.bucketize(u, edges[1:-1], right=True)  # (N, D) in 0..bins-1
    counts = [torch.bincount(bins[:, d], minlength=config.rank_bins).tolist() for d in range(dim)]
    coverage_50 = ((u - 0.5).abs() < 0.25).double().mean(dim=0)
    coverage_90 = ((u - 0.5).abs() < 0.45).double().mean(dim=0)
    mean_rank = u.mean(dim=0)
    alpha, ecp = tarp_curve(draws, theta, config.seed)
    atc, tarp_p = check_tarp(ecp.float(), alpha.float())
    # Trapezoid rule on the curve's grid: how far it strays from the diagonal overall.
    area = float(torch.trapezoid((ecp - alpha).abs(), alpha))
    findings = _findings(
        names, p_values, coverage_50, coverage_90, mean_rank, float(atc), num_pairs, config
    )
    verdict = (
        "; ".join(findings)
        if findings
        else f"calibrated: no evidence of miscalibration in {num_pairs} held-out simulations"
    )
    return Calibration(
        num_pairs=num_pairs,
        num_draws=num_draws,
        sbc_p_values=p_values.tolist(),
        rank_counts=counts,
        coverage_50=coverage_50.tolist(),
        coverage_90=coverage_90.tolist(),
        mean_rank=mean_rank.tolist(),
        tarp_alpha=alpha.tolist(),
        tarp_coverage=ecp.tolist(),
        tarp_atc=float(atc),
        tarp_p_value=float(tarp_p),
        tarp_area=area,
        findings=findings,
        verdict=verdict,
    )


def tarp_curve(draws: Tensor, theta: Tensor, seed: int = 0) -> tuple[Tensor, Tensor]:
    """TARP's expected coverage against credibility, from draws ``(L, N, D)``.

    The algorithm of sbi's ``run_tarp`` (z-scored parameters, L2 distance, one uniform
    reference point per pair over the range of ``theta``), on draws already made; its
    bins are ``N // 10`` as in sbi (at least 2). Returns ``(alpha, ecp)``, both
    ``(bins + 1,)``, from 0 to 1.
    """
    num_pairs = draws.shape[1]
    low, high = theta.min(dim=0).values, theta.max(dim=0).values
    scale = high - low + 1e-10
    generator = torch.Generator().manual_seed(seed)
    references = low + (high - low) * torch.rand(
        theta.shape, generator=generator, dtype=theta.dtype
    )
    z_draws, z_theta, z_ref = (
        (draws - low) / scale,
        (theta - low) / scale,
        (references - low) / scale,
    )
    draw_dist = (z_draws - z_ref).norm(dim=-1)  # (L, N)
    theta_dist = (z_theta - z_ref).norm(dim=-1)  # (N,)
    covered = (draw_dist < theta_dist).double().mean(dim=0)  # credibility of each truth
    bins = max(2, num_pairs // 10)
    alpha = torch.linspace(0, 1, bins + 1, dtype=torch.float64)
    ecp = (covered[None, :] <= alpha[:, None]).double().mean(dim=1)
    ecp[0] = 0.0
    return alpha, ecp


def _findings(
    names: list[str],
    p_values: Tensor,
    coverage_50: Tensor,
    coverage_90: Tensor,
    mean_rank: Tensor,
    atc: float,
    num_pairs: int,
    config: DiagnosticsConfig,
) -> list[str]:
    """Plain-words problems, one per miscalibrated parameter, plus TARP's overall one."""
    findings = []
    threshold = config.significance / len(names)
    se_50 = 0.5 / math.sqrt(num_pairs)  # binomial standard errors of the coverages
    se_90 = 0.3 / math.sqrt(num_pairs)
    se_rank = math.sqrt(1 / 12 / num_pairs)  # standard error of a uniform mean
    for d, name in enumerate(names):
        if p_values[d] >= threshold:
            continue
        c50, c90 = float(coverage_50[d]), float(coverage_90[d])
        z50, z90 = (c50 - 0.5) / se_50, (c90 - 0.9) / se_90
        held = f"its 50% intervals hold {c50:.0%} of true values, its 90% intervals {c90:.0%}"
        shift = float(mean_rank[d]) - 0.5
        what = []
        if z50 < -3 and z90 > 3:
            what.append(
                f"mis-shaped in {name}: too narrow at the centre, too wide in the tails ({held})"
            )
        elif z50 > 3 and z90 < -3:
            what.append(
                f"mis-shaped in {name}: too wide at the centre, too narrow in the tails ({held})"
            )
        elif z50 < -3 or z90 < -3:
            what.append(f"over-confident in {name} ({held})")
        elif z50 > 3 or z90 > 3:
            what.append(f"under-confident in {name} ({held})")
        if abs(shift) / se_rank > 3:
            side = "low" if shift > 0 else "high"
            what.append(f"biased {side} in {name} (mean rank {0.5 + shift:.2f}, ideal 0.50)")
        if not what:
            what.append(f"miscalibrated in {name} (ranks not uniform, p={float(p_values[d]):.1e})")
        findings.extend(what)
    # Under exact calibration the signed area's standard deviation is about 0.19/sqrt(N)
    # (0.013 over 200 replicates of exact linear-Gaussian posteriors, N=200, L=256).
    if abs(atc) > 3.5 * 0.19 / math.sqrt(num_pairs):
        kind = "over-confident" if atc < 0 else "under-confident"
        findings.append(f"{kind} overall (TARP area to curve {atc:+.3f}, ideal 0)")
    return findings


@torch.no_grad()
def draw_for(
    estimator: PosteriorEstimator,
    x: Tensor,
    config: DiagnosticsConfig,
    progress: Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> Tensor:
    """``num_draws`` draws for each row of ``x`` ``(N, L)``, shape ``(num_draws, N, D)``.

    Drawn in passes of at most ``max_draws_per_pass`` draws, calling ``should_stop``
    between passes (true raises :class:`TrainingCancelled`) and ``progress`` after each.
    """
    generator = torch.Generator(device=estimator.device).manual_seed(config.seed)
    per_pass = max(1, config.max_draws_per_pass // config.num_draws)
    parts = []
    for start in range(0, x.shape[0], per_pass):
        if should_stop is not None and should_stop():
            raise TrainingCancelled("cancelled while computing diagnostics")
        chunk = x[start : start + per_pass].to(estimator.device)
        parts.append(estimator.sample((config.num_draws,), chunk, generator=generator).cpu())
        if progress is not None:
            progress("sampling", min(start + per_pass, x.shape[0]), x.shape[0])
    return torch.cat(parts, dim=1)


@torch.no_grad()
def held_out_energy_score(draws: Tensor, theta: Tensor, max_draws: int = 64) -> float:
    """Mean energy score (:math:`\\beta = 1`) of the first ``max_draws`` draws ``(L, N, D)``.

    Its pairwise term grows as draws², so a subset of draws (still unbiased) bounds it.
    """
    subset = draws[:max_draws].float()
    scores = [
        energy_score(subset[:, i : i + 256], theta[i : i + 256].float(), beta=1.0)
        for i in range(0, theta.shape[0], 256)
    ]
    return float(torch.cat(scores).mean())


@torch.no_grad()
def held_out_nll(estimator: PosteriorEstimator, theta: Tensor, x: Tensor) -> float | None:
    """Mean :math:`-\\log q(\\theta_i \\mid x_i)` over pairs ``(N, D)``, ``(N, L)``.

    ``None`` for families without a normalized density (generators, unnormalized ones).
    """
    if estimator.log_prob_kind not in ("exact", "estimate"):
        return None
    values = [
        estimator.log_prob(theta[i : i + 256].to(estimator.device), x[i : i + 256]).cpu()
        for i in range(0, theta.shape[0], 256)
    ]
    return float(-torch.cat(values).double().mean())


def diagnose(
    estimator: PosteriorEstimator,
    theta: Tensor,
    x: Tensor,
    config: DiagnosticsConfig | None = None,
    names: Sequence[str] | None = None,
    progress: Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> Diagnostics:
    """Every diagnostic of ``estimator`` on held-out pairs ``theta`` ``(N, D)``, ``x`` ``(N, L)``.

    The first ``config.num_pairs`` pairs are used. ``progress(stage, done, total)`` is
    called as draws are made (stage ``sampling``) and once per later stage (``scores``).
    """
    config = config or DiagnosticsConfig()
    start = time.perf_counter()
    theta = torch.as_tensor(theta)[: config.num_pairs].float().cpu()
    x = torch.as_tensor(x)[: config.num_pairs].float().cpu()
    estimator.eval()
    draws = draw_for(estimator, x, config, progress, should_stop)
    names = list(names) if names is not None else default_names("theta", theta.shape[1])
    result = calibration(draws, theta, names, config)
    if progress is not None:
        progress("scores", 0, 1)
    energy = held_out_energy_score(draws, theta)
    nll = held_out_nll(estimator, theta, x)
    if progress is not None:
        progress("scores", 1, 1)
    return Diagnostics(
        **dataclasses.asdict(result),
        energy_score=energy,
        nll=nll,
        parameter_names=names,
        wall_time_s=time.perf_counter() - start,
    )
