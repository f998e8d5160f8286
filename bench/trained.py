"""What every benchmarked method hands back once trained: a sampler and its costs."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from torch import Tensor

Sampler = Callable[[int, Tensor], Tensor]
"""``sampler(num, x)``: ``num`` posterior draws per observation.

``x`` is one observation ``(L,)`` (draws ``(num, D)``) or a batch ``(B, L)`` (draws
``(num, B, D)``); draws come back on the CPU.
"""


@dataclasses.dataclass
class Trained:
    """A trained method: its sampler and what training cost.

    Arguments:
        sample: Draws from the trained posterior.
        train_seconds: Wall time of building and training, in seconds.
        train_cpu_seconds: CPU time of this process over the same span (a fairer
            measure than wall time on a machine shared with other jobs).
        epochs: Epochs trained.
        hyperparameters: Every option the method ran with, JSON-ready.
    """

    sample: Sampler
    train_seconds: float
    train_cpu_seconds: float
    epochs: int
    hyperparameters: dict[str, Any]
