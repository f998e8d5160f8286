"""``sbiserve demo``: the whole workflow on the embedded stack, ending in a plot.

It starts a private service (its own Redis server, a worker process, the API on a free
port), simulates two-moons with ``sbi``, uploads the simulations through the Python
client, trains an energy flow with a live progress bar (server-sent events), draws
posterior samples over HTTP, writes a PNG and shuts everything down.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from sbiserve.client import Client, simulate_and_train

from .plots import plot_posterior
from .settings import Settings
from .simulators import TWO_MOONS_HIGH, TWO_MOONS_LOW, two_moons_simulator
from .stack import LocalStack

X_OBSERVED = (0.0, 0.0)


def two_moons_sbi_simulator(theta: torch.Tensor) -> torch.Tensor:
    """The two-moons simulator with sbi's calling convention (torch batch in and out)."""
    rng = np.random.default_rng(int(torch.randint(0, 2**31 - 1, ())))
    return torch.as_tensor(two_moons_simulator(theta.numpy(), rng), dtype=torch.float32)


# The demo caps training at 60 epochs (1,080 steps on 4,500 training pairs): the
# default schedule decays the learning rate over whatever length the run is given, and
# 60 epochs this way fit the crescents as well as 100 epochs with the earlier plateau
# schedule did, in 60% of the time (fast C2ST at three observations, two training seeds:
# 0.686 and 0.684 against 0.707 and 0.675; docs/BENCHMARKS.md, section 2.4).


def run_demo(out: str, num_simulations: int = 5_000, max_epochs: int = 60) -> np.ndarray:
    """Runs the demo; returns the posterior draws for ``x_o = (0, 0)``."""
    from sbi.utils import BoxUniform

    torch.manual_seed(0)
    prior = BoxUniform(torch.tensor(TWO_MOONS_LOW), torch.tensor(TWO_MOONS_HIGH))
    with tempfile.TemporaryDirectory(prefix="sbiserve-demo-") as data_dir:
        settings = Settings(redis_url=None, data_dir=Path(data_dir), port=0)
        print("starting a private sbiserve (Redis, worker, API) ...", flush=True)
        with LocalStack(settings) as stack, Client(stack.url) as client:
            print(f"service up at {stack.url}", flush=True)
            started = time.perf_counter()
            posterior = simulate_and_train(
                client,
                prior,
                two_moons_sbi_simulator,
                num_simulations,
                family="energy_flow",
                # The service's defaults for this budget; only the epochs are capped.
                hyperparameters={"max_epochs": max_epochs},
                name="two-moons",
                simulation_batch_size=1000,
                seed=0,
            )
            trained = time.perf_counter() - started
            x_o = torch.tensor(X_OBSERVED)
            started = time.perf_counter()
            draws = posterior.sample((20_000,), x=x_o).numpy()
            sampled = time.perf_counter() - started
            model = posterior.meta
    plot_posterior(
        draws,
        out,
        f"sbiserve energy flow, two-moons, x_o = {X_OBSERVED}\n"
        f"{num_simulations} simulations, {model['training']['epochs']} epochs",
        limits=(-1.0, 1.0),
    )
    print(
        f"wrote {out}: model {model['model_id']} trained in {trained:.0f} s "
        f"({model['training']['epochs']} epochs on {model['training']['device']}); "
        f"20,000 draws over HTTP in {sampled * 1000:.0f} ms"
    )
    return draws
