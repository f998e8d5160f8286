"""Preparing a trained estimator for serving: masks folded into weights, no autograd.

zuko's ``MaskedLinear`` computes ``F.linear(x, mask * weight, bias)``: the elementwise
product is redone on every call. When a request asks for a handful of draws that product
costs more than the matrix multiply itself (a profile of one draw from the default
energy flow: 57% of the time). A model loaded for serving never trains again, so each
masked layer is replaced, once, by a plain ``nn.Linear`` holding ``mask * weight``;
the draws for a given noise are the same (a test checks it).

The swap is done by hand because zuko offers no frozen form of its masked layers.

Example:
    >>> flow = prepare_for_serving(EnergyFlow(2, 2))
    >>> with torch.inference_mode():
    ...     flow.sample((4,), x=torch.zeros(2)).shape
    torch.Size([4, 2])
"""

from __future__ import annotations

import torch
from torch import nn
from zuko.nn import MaskedLinear

from .base import PosteriorEstimator


def _folded(layer: MaskedLinear) -> nn.Linear:
    """A plain linear layer computing what ``layer`` computes."""
    out_features, in_features = layer.weight.shape
    plain = nn.Linear(
        in_features,
        out_features,
        bias=layer.bias is not None,
        device=layer.weight.device,
        dtype=layer.weight.dtype,
    )
    with torch.no_grad():
        plain.weight.copy_(layer.mask * layer.weight)
        if layer.bias is not None:
            plain.bias.copy_(layer.bias)
    return plain


def fold_masks(module: nn.Module) -> int:
    """Replaces every ``MaskedLinear`` inside ``module`` in place; returns how many."""
    count = 0
    for name, child in list(module.named_children()):
        if isinstance(child, MaskedLinear):
            setattr(module, name, _folded(child))
            count += 1
        else:
            count += fold_masks(child)
    return count


def prepare_for_serving(estimator: PosteriorEstimator) -> PosteriorEstimator:
    """Folds masks, lets the family fold what else it can
    (:meth:`~sbiserve.models.base.PosteriorEstimator.fold_for_serving`), switches to eval
    mode and turns gradients off; returns ``estimator``.

    The estimator can still sample and evaluate densities, but it is not meant to be
    trained or saved again (its masked layers are gone).
    """
    fold_masks(estimator)
    estimator.fold_for_serving()
    estimator.eval()
    estimator.requires_grad_(False)
    return estimator
