"""Checks at the boundary where data enters the models: shapes, counts and finiteness.

They raise named errors (:mod:`sbiserve.models.errors`) whose messages say which
argument, row or dimension is at fault, so that a service can return them as they are.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .errors import NonFiniteError, ShapeError


def as_float_tensor(value: Tensor | object, name: str) -> Tensor:
    """Returns ``value`` as a floating-point tensor (float32 unless already floating)."""
    tensor = value if isinstance(value, Tensor) else torch.as_tensor(value)
    if not torch.is_floating_point(tensor):
        tensor = tensor.to(torch.float32)
    return tensor


def check_finite(tensor: Tensor, name: str) -> None:
    """Raises :class:`NonFiniteError` naming the first row and column holding NaN/inf."""
    # The common case in one reduction: a sum is finite unless an element is NaN or inf
    # (or the sum overflows, which the full check below tells apart). torch.isfinite is
    # a composite of several operators, the largest cost of a one-draw request besides
    # the network's multiplies.
    if math.isfinite(float(tensor.sum())):
        return
    bad = ~torch.isfinite(tensor)
    if bool(bad.any()):
        index = tuple(int(i) for i in bad.nonzero()[0])
        count = int(bad.sum())
        value = tensor[index].item()
        raise NonFiniteError(
            f"{name} contains {count} non-finite value(s); the first is {value} at index "
            f"{list(index)} (shape {list(tensor.shape)})"
        )


def check_features(tensor: Tensor, features: int, name: str) -> None:
    """Raises :class:`ShapeError` unless the last dimension of ``tensor`` is ``features``."""
    if tensor.ndim == 0 or tensor.shape[-1] != features:
        raise ShapeError(
            f"{name} must have {features} feature(s) in its last dimension, "
            f"got shape {list(tensor.shape)}"
        )


def check_pairs(theta: Tensor, x: Tensor) -> tuple[Tensor, Tensor]:
    """Validates a set of simulations ``(theta, x)`` for training.

    Arguments:
        theta: Parameters, with shape :math:`(N, D)`; a 1-D tensor is read as :math:`(N, 1)`.
        x: Simulator outputs, with shape :math:`(N, L)`; a 1-D tensor is read as :math:`(N, 1)`.

    Returns:
        ``theta`` and ``x`` as 2-D float tensors.
    """
    theta = as_float_tensor(theta, "theta")
    x = as_float_tensor(x, "x")
    if theta.ndim == 1:
        theta = theta[:, None]
    if x.ndim == 1:
        x = x[:, None]
    if theta.ndim != 2:
        raise ShapeError(f"theta must be 2-D (num_simulations, theta_dim), got {list(theta.shape)}")
    if x.ndim != 2:
        raise ShapeError(f"x must be 2-D (num_simulations, x_dim), got {list(x.shape)}")
    if theta.shape[0] != x.shape[0]:
        raise ShapeError(
            f"theta and x must have the same number of rows, got {theta.shape[0]} and {x.shape[0]}"
        )
    if theta.shape[0] < 2:
        raise ShapeError(f"at least 2 simulations are needed, got {theta.shape[0]}")
    check_finite(theta, "theta")
    check_finite(x, "x")
    return theta, x
