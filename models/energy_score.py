"""The energy score, a proper scoring rule that needs samples only.

For a predictive distribution :math:`q` and an observed :math:`\\theta`,

.. math:: \\mathrm{ES}_\\beta(q, \\theta) = \\mathbb{E}\\|T - \\theta\\|^\\beta
    - \\tfrac{1}{2}\\,\\mathbb{E}\\|T - T'\\|^\\beta, \\qquad T, T' \\sim q \\text{ i.i.d.}

It is strictly proper for :math:`\\beta \\in (0, 2)`: its expectation over
:math:`\\theta \\sim p` is minimized only by :math:`q = p`. With :math:`m \\ge 2` draws
:math:`t_1, \\dots, t_m` the unbiased estimate is

.. math:: \\frac{1}{m}\\sum_j \\|t_j - \\theta\\|^\\beta
    - \\frac{1}{2 m (m - 1)} \\sum_{j \\neq k} \\|t_j - t_k\\|^\\beta .

References:
    | Strictly Proper Scoring Rules, Prediction, and Estimation (Gneiting & Raftery, 2007)
    | https://doi.org/10.1198/016214506000001437

    | Semi-Autoregressive Energy Flows: Exploring Likelihood-Free Training of
      Normalizing Flows (Si et al., 2023)
    | https://arxiv.org/abs/2206.06672
"""

from __future__ import annotations

import torch
from torch import Tensor

from .errors import ConfigError, ShapeError


def check_beta(beta: float) -> None:
    """Raises :class:`ConfigError` unless :math:`0 < \\beta < 2`."""
    if not 0.0 < beta < 2.0:
        raise ConfigError(f"beta must lie in (0, 2) for the energy score to be proper, got {beta}")


def distance_power(diff: Tensor, beta: float) -> Tensor:
    """:math:`\\|v\\|^\\beta` over the last dimension, with a zero gradient at :math:`v = 0`.

    The plain expression has an infinite (``beta < 1``) or undefined gradient at zero;
    here the zero rows are routed around the power so they give value 0 and gradient 0.

    Arguments:
        diff: Differences :math:`v`, with shape :math:`(*, D)`.
        beta: The exponent :math:`\\beta`.

    Returns:
        The powered norms, with shape :math:`(*)`.
    """
    squared = diff.square().sum(dim=-1)
    positive = squared > 0
    safe = torch.where(positive, squared, torch.ones_like(squared))
    return torch.where(positive, safe.pow(beta / 2), torch.zeros_like(squared))


def mean_spread(samples: Tensor, beta: float) -> Tensor:
    """:math:`\\frac{1}{m(m-1)}\\sum_{j \\neq k} \\|t_j - t_k\\|^\\beta` per target.

    Arguments:
        samples: Draws with shape :math:`(m, N, D)` (or :math:`(m, N, *, D)`: any
            dimensions between the draws and the coordinates are kept), :math:`m \\ge 2`.
        beta: The exponent :math:`\\beta`.

    Returns:
        The mean powered distance between distinct draws, with shape :math:`(N,)`.
    """
    m = samples.shape[0]
    pairwise = distance_power(samples[:, None] - samples[None, :], beta)  # (m, m, N)
    # The diagonal is exactly zero (with zero gradient), so the sum runs over j != k.
    return pairwise.sum(dim=(0, 1)) / (m * (m - 1))


def energy_score(samples: Tensor, target: Tensor, beta: float = 1.0) -> Tensor:
    """Unbiased estimate of :math:`\\mathrm{ES}_\\beta` for each target.

    Arguments:
        samples: Draws :math:`t_j \\sim q(\\cdot \\mid x_i)`, with shape :math:`(m, N, D)`,
            :math:`m \\ge 2`; reparameterized draws let the gradient reach the generator.
        target: Observed values :math:`\\theta_i`, with shape :math:`(N, D)`.
        beta: The exponent, in :math:`(0, 2)`.

    Returns:
        The scores, with shape :math:`(N,)`. Lower is better.

    Example:
        >>> t = torch.randn(16, 8, 2)
        >>> energy_score(t, torch.zeros(8, 2)).shape
        torch.Size([8])
    """
    check_beta(beta)
    if samples.ndim != 3 or target.ndim != 2 or samples.shape[1:] != target.shape:
        raise ShapeError(
            f"samples must have shape (m, N, D) and target (N, D), got {list(samples.shape)} "
            f"and {list(target.shape)}"
        )
    m = samples.shape[0]
    if m < 2:
        raise ConfigError(f"the energy score needs at least 2 draws per target, got {m}")
    accuracy = distance_power(samples - target, beta).mean(dim=0)
    return accuracy - mean_spread(samples, beta) / 2


def marginal_spreads(samples: Tensor, beta: float) -> Tensor:
    """:func:`mean_spread` of each coordinate on its own.

    Arguments:
        samples: Draws with shape :math:`(m, N, D)`, :math:`m \\ge 2`.
        beta: The exponent :math:`\\beta`.

    Returns:
        The mean powered distance between distinct draws per coordinate, shape :math:`(N, D)`.
    """
    return mean_spread(samples.unsqueeze(-1), beta)  # each coordinate as a 1-D draw


def marginal_energy_scores(samples: Tensor, target: Tensor, beta: float) -> Tensor:
    """The energy score of each coordinate's marginal (for :math:`\\beta = 1`, its CRPS).

    Each is proper for its marginal, so a positive combination of them added to the
    joint :func:`energy_score` keeps the joint score strictly proper.

    Arguments:
        samples: Draws with shape :math:`(m, N, D)`, :math:`m \\ge 2`.
        target: Observed values, shape :math:`(N, D)`.
        beta: The exponent, in :math:`(0, 2)`.

    Returns:
        The scores, shape :math:`(N, D)`. Lower is better.
    """
    accuracy = distance_power((samples - target).unsqueeze(-1), beta).mean(dim=0)
    return accuracy - marginal_spreads(samples, beta) / 2


def truncated_energy_score(
    samples: Tensor, target: Tensor, inside: Tensor, beta: float = 1.0
) -> Tensor:
    """The energy score of the draws that lie inside a region, per target.

    A generator whose draws outside the prior box are rejected (redrawn) samples from
    :math:`q` truncated to the box. Given how many of the ``m`` draws of a target lie
    inside, those draws are i.i.d. from the truncated :math:`q`, so the estimate of
    :func:`energy_score` over them alone is an unbiased estimate of the truncated
    distribution's score, which is proper for it. Targets with fewer than two draws
    inside score 0 (no estimate of the spread term); the caller keeps draws near the
    region another way (a penalty on the distance outside).

    Arguments:
        samples: Draws with shape :math:`(m, N, D)`, :math:`m \\ge 2`.
        target: Observed values, shape :math:`(N, D)`.
        inside: Which draws count, boolean :math:`(m, N)`.
        beta: The exponent, in :math:`(0, 2)`.

    Returns:
        The scores, with shape :math:`(N,)`.
    """
    check_beta(beta)
    weight = inside.to(samples.dtype)  # (m, N)
    count = weight.sum(dim=0)  # (N,)
    accuracy = (weight * distance_power(samples - target, beta)).sum(dim=0)
    pairwise = distance_power(samples[:, None] - samples[None, :], beta)  # (m, m, N)
    spread = (weight[:, None] * weight[None, :] * pairwise).sum(dim=(0, 1))
    scored = count >= 2
    accuracy = accuracy / count.clamp_min(1)
    spread = spread / (count * (count - 1)).clamp_min(1)
    return torch.where(scored, accuracy - spread / 2, torch.zeros_like(accuracy))
