"""The one training loop every family uses: :func:`fit`.

It validates the simulations once, fits the estimator's standardization on the training
split, then runs mini-batch Adam on ``estimator.loss`` with gradient clipping, a
learning-rate schedule, an optional exponential moving average (EMA) of the weights, and
early stopping on the validation loss with the best weights restored. Between steps it
calls the caller's cancellation check; after each epoch, the progress callback.

Example:
    >>> from sbiserve.models import EnergyFlow, TrainConfig, fit
    >>> theta = torch.randn(512, 2); x = theta + 0.1 * torch.randn(512, 2)
    >>> result = fit(EnergyFlow(2, 2), theta, x, TrainConfig(max_epochs=2))
    >>> result.epochs
    2
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from collections.abc import Callable
from typing import Any, Generic, TypeVar

import torch
from torch import Tensor

from .base import PosteriorEstimator
from .config import Config, require
from .errors import ConfigError, TrainingCancelled
from .validation import check_features, check_pairs

SCHEDULES = ("plateau", "cosine", "constant")
ModuleT = TypeVar("ModuleT", bound=torch.nn.Module)


def _require_optional_count(name: str, value: int | None, minimum: int) -> None:
    """Raises :class:`ConfigError` unless ``value`` is null or an integer >= ``minimum``
    (its field's default is null, so :class:`Config` leaves its type unchecked)."""
    if value is not None:
        require(
            isinstance(value, int) and not isinstance(value, bool),
            f"{name} must be an integer or null, got {value!r}",
        )
        require(value >= minimum, f"{name} must be >= {minimum}")


@dataclasses.dataclass(frozen=True)
class TrainConfig(Config):
    """Options of :func:`fit`.

    Arguments:
        max_epochs: Upper bound on passes over the training split.
        max_steps: Upper bound on optimizer steps (``None``: none); training ends at the
            step that reaches it, after that step's validation. Whichever of
            ``max_epochs`` and ``max_steps`` comes first is the run's planned length,
            which the ``cosine`` schedule decays over.
        batch_size: Pairs per optimizer step.
        learning_rate: Adam's initial learning rate.
        weight_decay: Adam's (decoupled, AdamW) weight decay.
        validation_fraction: Share of the simulations held out for early stopping.
        patience: Epochs without a better validation loss before stopping.
        min_steps: Optimizer steps before early stopping or a plateau cut of the learning
            rate may happen; ``None`` (the default) takes the family's
            ``default_min_steps`` before early stopping (2,000 for the energy flows, none
            for the families trained by likelihood) and ``default_plateau_steps`` before
            a cut (2,000 and 1,000).
            Energy-score training sits on a long plateau (the location and scale are
            fitted) before it learns a posterior's shape, and its validation score
            barely sees the shape; on small data sets that plateau spans many short
            epochs, and stopping there leaves a poor fit (sbibm two_moons, 1,000
            simulations, same initialization: 0.859 at 1,000 steps, 0.651 at 2,000,
            0.654 at 3,000; ``docs/bench/curves``).
        planned_patience: In a planned run (``cosine``), end training once no epoch has
            been kept (see ``restore_best``) for this many epochs, after ``min_steps`` or
            half the planned steps, whichever comes first (``None``: never). The epoch
            kept can then no longer change unless a later epoch comes back within a
            standard error of the best, which a validation score that has risen for that
            long under a falling learning rate does not do in the measured runs; an
            overfitted run stops instead of training on.
        clip_grad_norm: Largest gradient norm per step (0 turns clipping off).
        lr_schedule: ``plateau`` (halve on stalls), ``cosine`` or ``constant``. ``cosine``
            decays the learning rate to 0 on a half cosine, step by step, over the
            planned length (``max_epochs`` or ``max_steps``); such a run is planned, so
            ``patience`` does not end it early (the learning rate would not have reached
            0; ``planned_patience`` may), and the epoch kept is chosen as for the other
            schedules.
        ema_decay: Decay of the weights' exponential moving average, which is what is
            validated and kept (0 turns it off). Energy-score training is noisy near its
            optimum; averaging the weights removes most of that noise.
        seed: Seed of the split, the batches and the training noise. The initial weights
            come from ``build_estimator(..., seed=...)``; pass it the same seed.
        device: ``auto`` (cuda when available), ``cpu``, ``cuda`` or ``cuda:N``.
        max_seconds: Wall-clock budget for training (0 means none).
        restore_best: Keep the weights of the best epoch; false keeps the last epoch's.
            The best epoch has the lowest validation loss, except for families whose
            ``prefer_later_epochs`` is true (the energy flows): for them it is the latest
            epoch whose validation loss lies within one standard error (over the
            validation pairs) of the lowest seen so far.
    """

    max_epochs: int = 1000
    max_steps: int | None = None
    batch_size: int = 256
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    validation_fraction: float = 0.1
    patience: int = 30
    min_steps: int | None = None
    planned_patience: int | None = None
    clip_grad_norm: float = 5.0
    lr_schedule: str = "plateau"
    ema_decay: float = 0.995
    seed: int = 0
    device: str = "auto"
    max_seconds: float = 0.0
    restore_best: bool = True

    def validate(self) -> None:
        require(self.max_epochs >= 1, "max_epochs must be >= 1")
        _require_optional_count("max_steps", self.max_steps, 1)
        require(self.batch_size >= 1, "batch_size must be >= 1")
        require(self.learning_rate > 0, "learning_rate must be > 0")
        require(self.weight_decay >= 0, "weight_decay must be >= 0")
        require(0 < self.validation_fraction < 1, "validation_fraction must lie in (0, 1)")
        require(self.patience >= 1, "patience must be >= 1")
        _require_optional_count("min_steps", self.min_steps, 0)
        _require_optional_count("planned_patience", self.planned_patience, 1)
        require(self.clip_grad_norm >= 0, "clip_grad_norm must be >= 0")
        require(self.lr_schedule in SCHEDULES, f"lr_schedule must be one of {SCHEDULES}")
        require(0 <= self.ema_decay < 1, "ema_decay must lie in [0, 1)")
        require(self.max_seconds >= 0, "max_seconds must be >= 0")
        require(
            self.device == "auto" or self.device == "cpu" or self.device.startswith("cuda"),
            f"device must be auto, cpu, cuda or cuda:N, got {self.device!r}",
        )


@dataclasses.dataclass(frozen=True)
class EpochInfo:
    """What the progress callback receives after each epoch."""

    epoch: int
    max_epochs: int
    train_loss: float
    val_loss: float
    best_val_loss: float
    learning_rate: float
    elapsed_s: float


@dataclasses.dataclass
class FitResult:
    """Summary of a finished training run (losses per epoch, timings)."""

    epochs: int
    best_epoch: int
    best_val_loss: float
    kept_epoch: int
    train_losses: list[float]
    val_losses: list[float]
    wall_time_s: float
    stopped_early: bool
    num_train: int
    num_val: int
    device: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return dataclasses.asdict(self)


class WeightAverage(Generic[ModuleT]):
    """An exponential moving average of a module's weights, with a warm-up.

    The decay ramps up as ``min(decay, (1 + n) / (10 + n))`` after ``n`` updates;
    without the ramp a short run's average is still mostly the initial weights (0.995
    after 35 steps keeps 84% of them).

    Written here rather than taken from ``torch.optim.swa_utils.AveragedModel``: with a
    custom decay that class updates the parameters one by one (three operators each) and
    copies every buffer on every step, about 4% of a small network's training step on a
    CPU; here one fused ``lerp`` moves all parameters, and the buffers, which are not
    averaged, are copied only when the average is read (:meth:`synced`).

    Arguments:
        model: The module being trained; a copy of it holds the average.
        decay: The largest decay, in ``(0, 1)``.
    """

    def __init__(self, model: ModuleT, decay: float) -> None:
        self.module = copy.deepcopy(model)
        self.decay = decay
        self.updates = 0
        self._averaged = [p.detach() for p in self.module.parameters()]

    def update(self, model: ModuleT, current: list[Tensor] | None = None) -> None:
        """Moves the average towards ``model``'s current parameters (``current``: their
        detached list, if the caller keeps one: walking the module tree for it costs
        about three times the update itself on a 3 x 64 network)."""
        if current is None:
            current = [p.detach() for p in model.parameters()]
        rate = min(self.decay, (1.0 + self.updates) / (10.0 + self.updates))
        if self.updates == 0:
            torch._foreach_copy_(self._averaged, current)
        else:
            torch._foreach_lerp_(self._averaged, current, 1.0 - rate)
        self.updates += 1

    def synced(self, model: ModuleT) -> ModuleT:
        """The averaged module, its buffers copied from ``model`` (which may have changed
        them in training)."""
        with torch.no_grad():
            for mine, theirs in zip(self.module.buffers(), model.buffers(), strict=True):
                mine.copy_(theirs)
        return self.module


def resolve_device(name: str) -> torch.device:
    """Maps ``auto`` to cuda when available, else cpu; checks an explicit cuda request."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} was asked for but no CUDA device is available")
    return device


def _split(num: int, fraction: float, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Random train/validation row indices; both non-empty."""
    num_val = min(max(1, round(fraction * num)), num - 1)
    perm = torch.randperm(num, generator=generator)
    return perm[num_val:], perm[:num_val]


@torch.no_grad()
def _mean_loss(
    model: PosteriorEstimator, theta: Tensor, x: Tensor, batch_size: int, seed: int
) -> tuple[float, float]:
    """Mean validation loss over a data set and its standard error, with fixed noise so
    epochs compare fairly."""
    devices = [theta.device] if theta.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        losses = torch.cat(
            [
                model.validation_loss(
                    theta[start : start + batch_size], x[start : start + batch_size]
                )
                for start in range(0, theta.shape[0], batch_size)
            ]
        ).double()
    error = losses.std() / math.sqrt(losses.shape[0]) if losses.shape[0] > 1 else 0.0
    return float(losses.mean()), float(error)


def fit(
    estimator: PosteriorEstimator,
    theta: Tensor,
    x: Tensor,
    config: TrainConfig | None = None,
    progress: Callable[[EpochInfo], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> FitResult:
    """Trains ``estimator`` on simulations ``(theta, x)`` in place.

    Arguments:
        estimator: Any family; its standardization is fitted on the training split.
        theta: Parameters, shape ``(N, D)``, inside the estimator's prior.
        x: Simulator outputs, shape ``(N, L)``.
        config: Training options.
        progress: Called after every epoch with an :class:`EpochInfo`.
        should_stop: Called between steps; returning true raises :class:`TrainingCancelled`.

    Returns:
        A :class:`FitResult`. The estimator holds the best weights (EMA weights when
        ``ema_decay > 0``) and stays on the training device.
    """
    config = config or TrainConfig()
    theta, x = check_pairs(theta, x)

    check_features(theta, estimator.theta_dim, "theta")
    check_features(x, estimator.x_dim, "x")
    device = resolve_device(config.device)
    generator = torch.Generator().manual_seed(config.seed)
    torch.manual_seed(config.seed)
    train_idx, val_idx = _split(theta.shape[0], config.validation_fraction, generator)
    estimator.fit_standardization(theta[train_idx], x[train_idx])
    estimator.to(device)
    theta, x = theta.to(device), x.to(device)
    theta_train, x_train = theta[train_idx.to(device)], x[train_idx.to(device)]
    theta_val, x_val = theta[val_idx.to(device)], x[val_idx.to(device)]

    num_train = theta_train.shape[0]
    steps_per_epoch = math.ceil(num_train / config.batch_size)
    planned_steps = config.max_epochs * steps_per_epoch
    if config.max_steps is not None:
        planned_steps = min(planned_steps, config.max_steps)
    planned_epochs = math.ceil(planned_steps / steps_per_epoch)

    # The fused kernel updates every parameter in one operator: a small network's step on
    # a CPU spends about 4% of its time in the unfused update's per-parameter loop.
    parameters = list(estimator.parameters())  # walked once, not on every step
    detached = [p.detach() for p in parameters]
    optimizer = torch.optim.AdamW(
        parameters,
        lr=config.learning_rate,
        weight_decay=config.weight_decay,
        fused=device.type in ("cpu", "cuda"),
    )
    plateau = per_step = None  # stepped after each epoch / after each optimizer step
    if config.lr_schedule == "plateau":
        plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, factor=0.5, patience=max(1, config.patience // 3)
        )
    elif config.lr_schedule == "cosine":
        per_step = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, planned_steps)
    ema = WeightAverage(estimator, config.ema_decay) if config.ema_decay > 0 else None

    best_val, best_error, best_epoch = math.inf, 0.0, 0
    kept_epoch, kept_state = 0, copy.deepcopy(estimator.state_dict())
    train_losses: list[float] = []
    val_losses: list[float] = []
    start_time = time.perf_counter()
    stopped_early = False
    epoch = steps = 0
    if config.min_steps is None:
        min_steps, plateau_steps = estimator.default_min_steps, estimator.default_plateau_steps
    else:
        min_steps = plateau_steps = config.min_steps
    # planned_patience's floor: min_steps or half the plan, whichever comes first (a plan
    # shorter than the energy flows' 2,000-step floor would otherwise never be cut).
    planned_floor = min(min_steps, planned_steps // 2)
    for epoch in range(1, planned_epochs + 1):
        estimator.train()
        perm = torch.randperm(num_train, generator=generator).to(device)
        total, seen = 0.0, 0
        for start in range(0, num_train, config.batch_size):
            if steps >= planned_steps:
                break
            if should_stop is not None and should_stop():
                raise TrainingCancelled(f"training was cancelled during epoch {epoch}")
            batch = perm[start : start + config.batch_size]
            loss = estimator.loss(theta_train[batch], x_train[batch]).mean()
            if not torch.isfinite(loss):
                raise FloatingPointError(
                    f"the training loss became {float(loss)} in epoch {epoch}; "
                    "try a smaller learning_rate or clip_grad_norm"
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if config.clip_grad_norm > 0:
                torch.nn.utils.clip_grad_norm_(parameters, config.clip_grad_norm)
            optimizer.step()
            if per_step is not None:
                per_step.step()
            steps += 1
            if ema is not None:
                ema.update(estimator, detached)
            total += float(loss.detach()) * batch.shape[0]
            seen += batch.shape[0]
        train_losses.append(total / seen)

        evaluated = estimator if ema is None else ema.synced(estimator)
        evaluated.eval()
        val_loss, val_error = _mean_loss(evaluated, theta_val, x_val, 4096, config.seed + 1)
        val_losses.append(val_loss)
        settled = steps >= min_steps  # early stopping may end the run
        improved = val_loss < best_val
        if improved:
            best_val, best_error, best_epoch = val_loss, val_error, epoch
        if improved or (estimator.prefer_later_epochs and val_loss <= best_val + best_error):
            kept_epoch, kept_state = epoch, copy.deepcopy(evaluated.state_dict())
        if plateau is not None and steps >= plateau_steps:
            plateau.step(val_loss)
        elapsed = time.perf_counter() - start_time
        if progress is not None:
            progress(
                EpochInfo(
                    epoch=epoch,
                    max_epochs=planned_epochs,
                    train_loss=train_losses[-1],
                    val_loss=val_loss,
                    best_val_loss=best_val,
                    learning_rate=optimizer.param_groups[0]["lr"],
                    elapsed_s=elapsed,
                )
            )
        if settled and per_step is None and epoch - best_epoch >= config.patience:
            stopped_early = True
            break
        stale = epoch - kept_epoch  # epochs since one was last kept
        planned_stop = config.planned_patience
        planned_end = per_step is not None and planned_stop is not None and stale >= planned_stop
        if planned_end and steps >= planned_floor:
            stopped_early = True
            break
        if config.max_seconds and elapsed >= config.max_seconds:
            stopped_early = True
            break

    if config.restore_best:
        estimator.load_state_dict(kept_state)
    elif ema is not None:
        estimator.load_state_dict(ema.synced(estimator).state_dict())
    estimator.eval()
    return FitResult(
        epochs=epoch,
        best_epoch=best_epoch,
        best_val_loss=best_val,
        kept_epoch=kept_epoch if config.restore_best else epoch,
        train_losses=train_losses,
        val_losses=val_losses,
        wall_time_s=time.perf_counter() - start_time,
        stopped_early=stopped_early,
        num_train=num_train,
        num_val=theta_val.shape[0],
        device=str(device),
    )
