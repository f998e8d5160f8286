"""The C2ST score: sbibm's implementation, or a fast torch one with the same classifier.

:func:`sbibm_c2st` is :func:`sbibm.metrics.c2st`, the metric every published sbibm figure
uses: the two sets are z-scored with the reference's mean and standard deviation, and a
scikit-learn ``MLPClassifier`` (ReLU, two hidden layers of ``10 * D`` units, Adam, batch
200, up to 10,000 epochs until its training loss stalls) is scored by 5-fold
cross-validated accuracy. The stalling rule makes it slow exactly when the two sets are
alike: 30 s to 4 minutes per observation on one CPU core.

:func:`fast_c2st` keeps that definition (same z-scoring, same network shape, same folds,
held-out accuracy averaged over folds) and changes only how the classifiers are trained:
the ``k`` fold classifiers train *together* as one batched network (one ``bmm`` per layer
for all folds), with larger batches and a fixed, short schedule (Adam, one-cycle learning
rate) instead of sklearn's open-ended loop. scikit-learn has no batched or fixed-budget
mode for this, hence the hand-written loop. Its agreement with sbibm's score is measured
by ``python -m bench.c2st_agreement`` (``docs/bench/c2st_agreement.md``) and checked on a
small fixed case in the tests.

Example:
    >>> a, b = torch.randn(2000, 2), torch.randn(2000, 2) + 3.0
    >>> fast_c2st(a, b) > 0.95
    True
"""

from __future__ import annotations

import dataclasses
import math
from typing import Literal

import torch
from torch import Tensor

C2stKind = Literal["fast", "sbibm"]
C2ST_KINDS: tuple[str, ...] = ("fast", "sbibm")


@dataclasses.dataclass(frozen=True)
class FastC2stSchedule:
    """How :func:`fast_c2st` trains its fold classifiers.

    Arguments:
        steps: Optimizer steps (each fold's classifier takes one per step).
        batch_size: Rows per step and fold (at most a quarter of a fold's training part).
        learning_rate: Peak learning rate of the one-cycle schedule.
        weight_decay: L2 penalty (sklearn's ``alpha`` is 1e-4).
    """

    steps: int = 2000
    batch_size: int = 500
    learning_rate: float = 1e-2
    weight_decay: float = 1e-4


def _zscore(reference: Tensor, draws: Tensor) -> tuple[Tensor, Tensor]:
    """Both sets standardized with the reference's mean and (unbiased) std, as sbibm does."""
    mean, std = reference.mean(dim=0), reference.std(dim=0)
    return (reference - mean) / std, (draws - mean) / std


def _fold_ids(num: int, folds: int, generator: torch.Generator) -> Tensor:
    """Fold of each row ``(num,)``: a shuffled split into ``folds`` near-equal parts."""
    sizes = [num // folds + (1 if k < num % folds else 0) for k in range(folds)]
    ids = torch.repeat_interleave(torch.arange(folds), torch.tensor(sizes))
    return ids[torch.randperm(num, generator=generator)]


def _init_layer(folds: int, fan_in: int, fan_out: int, generator: torch.Generator) -> list[Tensor]:
    """Weights ``(F, in, out)`` and biases ``(F, 1, out)``, Glorot-uniform like sklearn's MLP."""
    bound = math.sqrt(6.0 / (fan_in + fan_out))
    weight = (torch.rand(folds, fan_in, fan_out, generator=generator) * 2 - 1) * bound
    bias = (torch.rand(folds, 1, fan_out, generator=generator) * 2 - 1) * bound
    return [weight.requires_grad_(), bias.requires_grad_()]


def _logits(params: list[Tensor], inputs: Tensor) -> Tensor:
    """The fold classifiers' logits ``(F, B)`` for inputs ``(F, B, D)``."""
    w1, b1, w2, b2, w3, b3 = params
    h = torch.relu(torch.baddbmm(b1, inputs, w1))
    h = torch.relu(torch.baddbmm(b2, h, w2))
    return torch.baddbmm(b3, h, w3).squeeze(-1)


def fast_c2st(
    reference: Tensor,
    draws: Tensor,
    folds: int = 5,
    seed: int = 1,
    schedule: FastC2stSchedule | None = None,
) -> float:
    """Cross-validated accuracy of an MLP classifier telling ``draws`` from ``reference``.

    Arguments:
        reference: Reference posterior draws ``(N, D)``.
        draws: Draws of the method under test ``(M, D)``.
        folds: Cross-validation folds (>= 2).
        seed: Seed of the fold split, the initialization and the batches.
        schedule: Training schedule of the classifiers.

    Returns:
        Mean held-out accuracy over the folds, in [0, 1]; 0.5 means indistinguishable.
    """
    if folds < 2:
        raise ValueError(f"folds must be >= 2, got {folds}")
    if reference.ndim != 2 or draws.ndim != 2 or reference.shape[1] != draws.shape[1]:
        raise ValueError(
            f"reference and draws must be (N, D) and (M, D), got {list(reference.shape)} "
            f"and {list(draws.shape)}"
        )
    schedule = schedule or FastC2stSchedule()
    generator = torch.Generator().manual_seed(seed)
    ref, drawn = _zscore(reference.double().cpu(), draws.double().cpu())
    data = torch.cat([ref, drawn]).float()
    labels = torch.cat([torch.zeros(len(ref)), torch.ones(len(drawn))])
    fold = _fold_ids(len(data), folds, generator)
    # Each classifier trains on every fold but its own; rows are drawn per fold from its
    # training part (the parts differ in size by at most one row: the shortest is used).
    train_rows = [torch.nonzero(fold != k).squeeze(-1) for k in range(folds)]
    num_train = min(len(rows) for rows in train_rows)
    train_index = torch.stack([rows[:num_train] for rows in train_rows])  # (F, n)
    dim = data.shape[1]
    width = 10 * dim
    params = [
        *_init_layer(folds, dim, width, generator),
        *_init_layer(folds, width, width, generator),
        *_init_layer(folds, width, 1, generator),
    ]
    batch = max(1, min(schedule.batch_size, num_train // 4))
    steps_per_epoch = num_train // batch
    optimizer = torch.optim.AdamW(
        params, lr=schedule.learning_rate, weight_decay=schedule.weight_decay
    )
    lr_schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, schedule.learning_rate, total_steps=schedule.steps
    )
    for step in range(schedule.steps):
        if step % steps_per_epoch == 0:  # a new pass: reshuffle each fold's rows
            order = torch.argsort(torch.rand(folds, num_train, generator=generator), dim=1)
            shuffled = torch.gather(train_index, 1, order)
        start = (step % steps_per_epoch) * batch
        rows = shuffled[:, start : start + batch]
        loss = torch.nn.functional.binary_cross_entropy_with_logits(
            _logits(params, data[rows]), labels[rows]
        )
        optimizer.zero_grad(set_to_none=True)
        (loss * folds).backward()  # each fold's mean loss drives its own weights
        optimizer.step()
        lr_schedule.step()
    with torch.no_grad():
        accuracies = []
        for k in range(folds):
            held = torch.nonzero(fold == k).squeeze(-1)
            logits = _logits([p[k : k + 1] for p in params], data[held][None])[0]
            accuracies.append(float(((logits > 0).float() == labels[held]).float().mean()))
    return sum(accuracies) / folds


def sbibm_c2st(reference: Tensor, draws: Tensor, folds: int = 5, seed: int = 1) -> float:
    """:func:`sbibm.metrics.c2st` (scikit-learn's MLP trained until it stalls)."""
    from sbibm.metrics import c2st as sbibm_metric

    return float(sbibm_metric(reference, draws, seed=seed, n_folds=folds))


def c2st(
    reference: Tensor,
    draws: Tensor,
    folds: int,
    kind: C2stKind = "fast",
    schedule: FastC2stSchedule | None = None,
) -> float:
    """C2ST of ``draws`` against ``reference`` with the implementation ``kind``."""
    if kind == "sbibm":
        return sbibm_c2st(reference, draws, folds)
    if kind == "fast":
        return fast_c2st(reference, draws, folds, schedule=schedule)
    raise ValueError(f"unknown C2ST kind {kind!r}; known: {C2ST_KINDS}")
