"""Noise levels of a multi-step energy flow (distributional diffusion).

A multi-step energy flow (:class:`~sbiserve.models.energy_flow.EnergyFlow` with
``diffusion_steps = K > 1``) learns, at each of ``K`` noise levels, the distribution of
the clean parameters given the observation and a noised copy
:math:`u_k = \\sqrt{\\bar\\alpha_k}\\, u + \\sqrt{1 - \\bar\\alpha_k}\\, \\varepsilon`,
each trained with the energy score against the clean parameters. Sampling starts from
pure noise at the top level and alternates a generator draw of the clean parameters with
the variance-preserving posterior step to the next level down, :math:`q(u_{k-1} \\mid
u_k, \\hat u_0)`. The last level's draw is the sample. This is the distributional
diffusion model of De Bortoli et al. (2025) with a few levels; at ``K = 1`` it is the
one-pass energy flow.

These are the schedule's formulas only, as plain functions on tensors; no torch or
library function computes a variance-preserving posterior step for given levels.

References:
    | Distributional Diffusion Models with Scoring Rules (De Bortoli et al., 2025)
    | https://arxiv.org/abs/2502.02483
    | Improved Denoising Diffusion Probabilistic Models (Nichol & Dhariwal, 2021): the
      cosine schedule.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def alpha_bars(levels: int) -> Tensor:
    """Signal fractions :math:`\\bar\\alpha_k` of levels ``1..K``, shape ``(K,)``.

    The cosine schedule :math:`\\bar\\alpha(t) = \\cos^2(\\pi t / 2)` at :math:`t = k/K`:
    the top level is pure noise (0) and level 1 keeps most of the signal (0.5 at
    ``K = 2``, 0.75 at ``K = 3``).
    """
    t = torch.arange(1, levels + 1, dtype=torch.float64) / levels
    return (torch.cos(0.5 * math.pi * t) ** 2).clamp_min(0.0).float()


def noised(u: Tensor, alpha_bar: Tensor, eps: Tensor) -> Tensor:
    """:math:`\\sqrt{\\bar\\alpha}\\, u + \\sqrt{1 - \\bar\\alpha}\\, \\varepsilon`.

    ``alpha_bar`` broadcasts against ``u`` (e.g. ``(N, 1)`` for one level per row).
    """
    return alpha_bar.sqrt() * u + (1 - alpha_bar).sqrt() * eps


def posterior_step(u_t: Tensor, u_0: Tensor, ab_t: float, ab_s: float, eps: Tensor) -> Tensor:
    """A draw of :math:`u_s \\sim q(u_s \\mid u_t, u_0)` for levels ``s`` below ``t``.

    With :math:`\\alpha = \\sqrt{\\bar\\alpha}`, :math:`\\sigma^2 = 1 - \\bar\\alpha`,
    :math:`\\alpha_{t|s} = \\alpha_t / \\alpha_s` and :math:`\\sigma^2_{t|s} = \\sigma^2_t -
    \\alpha^2_{t|s} \\sigma^2_s`, the mean is :math:`(\\alpha_{t|s} \\sigma^2_s u_t + \\alpha_s
    \\sigma^2_{t|s} u_0) / \\sigma^2_t` and the variance :math:`\\sigma^2_{t|s} \\sigma^2_s /
    \\sigma^2_t`. From pure noise (:math:`\\bar\\alpha_t = 0`) it is
    :math:`q(u_s \\mid u_0)`, whatever ``u_t``.
    """
    alpha_s, var_s, var_t = math.sqrt(ab_s), 1.0 - ab_s, 1.0 - ab_t
    alpha_ts = math.sqrt(ab_t / ab_s)
    var_ts = var_t - alpha_ts**2 * var_s
    mean = (alpha_ts * var_s / var_t) * u_t + (alpha_s * var_ts / var_t) * u_0
    return mean + math.sqrt(var_ts * var_s / var_t) * eps
