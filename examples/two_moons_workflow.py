"""Two-moons from simulation to a posterior plot, through the sbiserve Python client.

The simulator is plain numpy; nothing here needs torch. The steps:

1. draw ``theta`` from the prior ``U(-1, 1)^2`` and simulate ``x`` (the two-moons model);
2. upload the pairs (JSON for small sets, streamed ``.npy`` for large ones);
3. train an energy flow on the service, following its progress bar;
4. draw from the posterior at two observations and plot them.

Run it against a running service::

    sbiserve serve &    # or: docker compose up -d
    python examples/two_moons_workflow.py --url http://127.0.0.1:8000

Without ``--url`` it starts a private service on this machine for the run (this needs
``pip install 'sbiserve[server]'``). ``--help`` lists the knobs; tiny values
(``--num-simulations 500 --max-epochs 2``) make a quick smoke run.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from sbiserve.client import Client

LOW, HIGH = -1.0, 1.0
Panel = tuple[np.ndarray, str, np.ndarray | None]  # draws (N, 2), title, true theta


def simulate_two_moons(theta: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The two-moons simulator (as in sbibm): ``theta`` ``(N, 2)`` -> ``x`` ``(N, 2)``.

    A point on a noisy half circle of radius about 0.1 is shifted by a rotation of
    ``theta`` in which the first coordinate only sees ``|theta_1 + theta_2|``; that
    absolute value is what makes the posterior bimodal.
    """
    n = theta.shape[0]
    angle = rng.uniform(-np.pi / 2, np.pi / 2, n)
    radius = 0.1 + 0.01 * rng.standard_normal(n)
    arc = np.column_stack((0.25 + radius * np.cos(angle), radius * np.sin(angle)))
    rotated = np.column_stack((np.abs(theta.sum(axis=1)), theta[:, 1] - theta[:, 0]))
    sign = np.array([-1.0, 1.0])
    return arc + sign * rotated / np.sqrt(2.0)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="service URL (default: start a private one here)")
    parser.add_argument("--api-key", help="the service's API key, if it has one")
    parser.add_argument("--num-simulations", type=int, default=20_000)
    parser.add_argument("--max-epochs", type=int, default=200)
    parser.add_argument(
        "--hidden", default="128,128,128", help="hidden layer widths, comma separated"
    )
    parser.add_argument("--num-samples", type=int, default=10_000, help="draws per plot")
    parser.add_argument("--alias", default="two-moons", help="alias to give the model")
    parser.add_argument("--out", default="two_moons_client.png", help="PNG to write")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser.parse_args(argv)


@contextmanager
def service(url: str | None) -> Iterator[str]:
    """``url`` as given, or a private service (Redis, worker, API) for the run's length."""
    if url:
        yield url
        return
    from sbiserve.service.settings import Settings
    from sbiserve.service.stack import LocalStack

    with (
        tempfile.TemporaryDirectory(prefix="sbiserve-example-") as data_dir,
        LocalStack(Settings(redis_url=None, data_dir=Path(data_dir), port=0)) as stack,
    ):
        yield stack.url


def plot(panels: list[Panel], out: str) -> None:
    """One 2-D histogram per ``(draws (N, 2), title, true theta or None)``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 5), dpi=110)
    for ax, (draws, title, truth) in zip(np.atleast_1d(axes), panels, strict=True):
        ax.hist2d(draws[:, 0], draws[:, 1], bins=100, range=[[LOW, HIGH]] * 2, cmap="magma")
        if truth is not None:
            ax.plot(truth[0], truth[1], "c*", markersize=14, label="true theta")
            ax.legend(loc="upper right")
        ax.set(xlabel=r"$\theta_1$", ylabel=r"$\theta_2$", title=title)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)


def run(client: Client, args: argparse.Namespace) -> list[Panel]:
    """Simulate, upload, train, sample; returns ``(draws, title, true theta)`` per plot."""
    rng = np.random.default_rng(args.seed)
    theta = rng.uniform(LOW, HIGH, size=(args.num_simulations, 2))
    x = simulate_two_moons(theta, rng)
    dataset = client.upload(theta, x, name="two-moons")
    print(f"uploaded {dataset['num_simulations']} simulations as {dataset['dataset_id']}")

    hidden = [int(width) for width in args.hidden.split(",")]
    job = client.train(
        dataset,
        hyperparameters={"hidden_features": hidden, "max_epochs": args.max_epochs},
        prior=([LOW, LOW], [HIGH, HIGH]),
        name="two-moons",
    )
    model_id = client.wait(job, progress=not args.quiet)["model_id"]
    client.set_alias(model_id, args.alias)
    print(f"trained model {model_id} (alias {args.alias!r})")

    theta_true = np.array([0.3, -0.4])
    observations = [
        ("x_o = (0, 0)", np.zeros(2), None),
        (
            "x_o simulated at theta = (0.3, -0.4)",
            simulate_two_moons(theta_true[None], rng)[0],
            theta_true,
        ),
    ]
    batch = np.stack([x_o for _, x_o, _ in observations])
    draws = client.sample(args.alias, batch, num_samples=args.num_samples, seed=args.seed)
    return [(draws[:, i], title, truth) for i, (title, _, truth) in enumerate(observations)]


def main(argv: list[str] | None = None) -> int:
    """Runs the workflow and writes the plot; returns the exit status."""
    args = parse_args(argv)
    with service(args.url) as url, Client(url, api_key=args.api_key) as client:
        panels = run(client, args)
    plot(panels, args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
