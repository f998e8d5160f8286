"""The ``sbiserve`` command line."""

from __future__ import annotations

import argparse
import sys


def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    run_demo(out=args.out, num_simulations=args.num_simulations, max_epochs=args.max_epochs)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (every option also reads its ``SBISERVE_*`` variable)."""
    parser = argparse.ArgumentParser(
        prog="sbiserve", description="Posterior-estimation service for simulation-based inference."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="the whole workflow on two-moons, ending in a plot")
    demo.add_argument("--out", default="two_moons_posterior.png", help="PNG to write")
    demo.add_argument("--num-simulations", type=int, default=10_000)
    demo.add_argument("--max-epochs", type=int, default=200)
    demo.set_defaults(func=_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``sbiserve`` console script."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except ModuleNotFoundError as e:
        print(
            f"sbiserve: {e.name} is not installed; the server side needs "
            "`pip install 'sbiserve[server]'`",
            file=sys.stderr,
        )
        return 2


if __name__ == "__main__":
    sys.exit(main())
