"""The sbibm tasks the quality benchmark runs, and what it needs from each.

Only the eight tasks whose simulators run in Python (no Julia) are listed. Everything
here returns CPU tensors; the methods move them where they train.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, distributions

from sbiserve.models import BoxPrior

TASKS: tuple[str, ...] = (
    "two_moons",
    "gaussian_linear",
    "gaussian_linear_uniform",
    "gaussian_mixture",
    "slcp",
    "slcp_distractors",
    "bernoulli_glm",
    "bernoulli_glm_raw",
)


# Where cached_simulation keeps simulations; SBISERVE_BENCH_CACHE overrides it.
SIMULATION_CACHE = Path(
    os.environ.get("SBISERVE_BENCH_CACHE", Path(tempfile.gettempdir()) / "sbiserve-bench")
)


class UnknownTaskError(ValueError):
    """A task name that is not one of :data:`TASKS`."""


def load_task(name: str) -> Any:
    """Returns the sbibm task object for ``name``."""
    if name not in TASKS:
        raise UnknownTaskError(f"unknown task {name!r}; available: {', '.join(TASKS)}")
    import sbibm  # slow import, only when a task is asked for

    return sbibm.get_task(name)


def _base_prior(task: Any) -> Any:
    """The task's prior with ``Independent`` wrappers removed."""
    dist: Any = task.get_prior_dist()
    while isinstance(dist, distributions.Independent):
        dist = dist.base_dist
    return dist


def prior_distribution(task: Any, device: torch.device | str = "cpu") -> distributions.Distribution:
    """The task's prior rebuilt as a plain torch distribution on ``device`` (for sbi).

    sbi insists that the prior lives on its training device; sbibm builds priors on the
    CPU, so the two prior kinds sbibm uses (box uniform, Gaussian) are rebuilt here.
    """
    dist = _base_prior(task)
    if isinstance(dist, distributions.Uniform):
        from sbi.utils import BoxUniform

        dim = int(task.dim_parameters)
        return BoxUniform(dist.low.expand(dim), dist.high.expand(dim), device=str(device))
    if isinstance(dist, distributions.MultivariateNormal):
        return distributions.MultivariateNormal(
            dist.loc.to(device), scale_tril=dist.scale_tril.to(device)
        )
    raise TypeError(f"unsupported prior {type(dist).__name__} for task {task.name}")


def box_prior(task: Any) -> BoxPrior:
    """Reads the prior support as a :class:`BoxPrior`: uniform -> box, anything else -> open.

    sbibm priors are either an ``Independent(Uniform)`` or a Gaussian, so the two cases
    cover every task in :data:`TASKS`.
    """
    dist = _base_prior(task)
    dim = int(task.dim_parameters)
    if isinstance(dist, distributions.Uniform):
        low = dist.low.expand(dim).tolist()
        high = dist.high.expand(dim).tolist()
        return BoxPrior(low=tuple(low), high=tuple(high))
    return BoxPrior.unbounded(dim)


def _pickled_task_globals() -> list[type]:
    """Classes inside the pickled distributions that slcp_distractors loads with torch.load.

    torch >= 2.6 loads with ``weights_only=True``; these files ship inside the installed
    sbibm package, so allowing exactly these classes is safe.
    """
    from pyro.distributions import torch as pyro_torch
    from pyro.distributions.multivariate_studentt import MultivariateStudentT

    return [
        pyro_torch.MixtureSameFamily,
        pyro_torch.Categorical,
        pyro_torch.Independent,
        pyro_torch.Chi2,
        MultivariateStudentT,
    ]


def simulate(task: Any, num_simulations: int, seed: int) -> tuple[Tensor, Tensor]:
    """Draws ``theta`` from the prior and ``x`` from the simulator, reproducibly.

    Returns:
        ``theta`` with shape ``(N, D)`` and ``x`` with shape ``(N, L)``, float32.
    """
    torch.manual_seed(seed)
    np.random.seed(seed)
    with torch.serialization.safe_globals(_pickled_task_globals()):
        theta = task.get_prior()(num_samples=num_simulations)
        x = task.get_simulator()(theta)
    return theta.float(), x.float()


def cached_simulation(
    name: str, num_simulations: int, seed: int, cache: Path | None = None
) -> tuple[Tensor, Tensor]:
    """:func:`simulate` once per task, budget, seed and package versions, shared by
    every process: the first to ask runs the simulator while the others wait on a file
    lock, then each loads the saved tensors (``cache``, default :data:`SIMULATION_CACHE`).

    Not a speed-up first: sbibm's slcp_distractors simulator holds about 14 GB at 10^4
    simulations, so two cells simulating it at once (``--jobs 2``) exhausted a 24 GB
    machine and the kernel killed one of them. The lock runs one simulator at a time.
    """
    cache = cache or SIMULATION_CACHE
    cache.mkdir(parents=True, exist_ok=True)
    versions = f"sbibm{metadata.version('sbibm')}-torch{torch.__version__}"
    path = cache / f"{name}-{num_simulations}-{seed}-{versions}.pt"
    with open(cache / "simulations.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if not path.exists():
            theta, x = simulate(load_task(name), num_simulations, seed)
            partial = path.with_suffix(".partial")
            torch.save({"theta": theta, "x": x}, partial)
            os.replace(partial, path)  # whole or absent, whoever reads it
            return theta, x  # the simulator's own tensors: no need to read them back
    saved = torch.load(path, weights_only=True)
    return saved["theta"], saved["x"]


def observation(task: Any, index: int) -> Tensor:
    """Observation ``index`` (1-based, as in sbibm), shape ``(L,)``."""
    return task.get_observation(num_observation=index).reshape(-1).float()


def reference_draws(task: Any, index: int, num: int) -> Tensor:
    """The first ``num`` of sbibm's 10,000 reference posterior draws, shape ``(num, D)``."""
    return task.get_reference_posterior_samples(num_observation=index)[:num].float()
