"""The ``sbiserve`` command line: ``serve``, ``api``, ``worker``, ``demo``.

Every option also reads from its ``SBISERVE_*`` environment variable (and ``REDIS_URL``);
an option given on the command line wins.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import time
from typing import Any


def _settings(args: argparse.Namespace) -> Any:
    from .settings import Settings

    overrides = {
        name: getattr(args, name)
        for name in ("host", "port", "data_dir", "device")
        if getattr(args, name, None) is not None
    }
    return Settings(**overrides)


class Interrupted(BaseException):
    """SIGTERM or SIGINT reached ``serve``: leave whatever it does and stop in order."""


def _on_stop_signal(signum: int, frame: Any) -> None:
    # A second signal while stopping exits at once; the children die with this process
    # (PR_SET_PDEATHSIG), a worker's job is then reclaimed after claim_after_s.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda number, _: os._exit(128 + number))
    raise Interrupted(signal.Signals(signum).name)


def _serve(args: argparse.Namespace) -> int:
    from .errors import redact
    from .stack import LocalStack

    settings = _settings(args)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _on_stop_signal)
    try:
        with LocalStack(settings, workers=args.workers, quiet=False) as stack:
            mode = (
                "private Redis" if stack.redis else redact(f"Redis at {stack.settings.redis_url}")
            )
            print(
                f"sbiserve on {stack.url} ({mode}, {args.workers} worker(s), data in "
                f"{stack.settings.data_dir}); docs at {stack.url}/docs; Ctrl-C stops",
                flush=True,
            )
            while True:  # until a signal; meanwhile the stack restarts dead children
                time.sleep(3600)
    except Interrupted as e:
        print(f"sbiserve: stopped on {e}", flush=True)
    return 0


def _api(args: argparse.Namespace) -> int:
    import uvicorn

    from .app import create_app

    settings = _settings(args)
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port)
    return 0


def _worker(args: argparse.Namespace) -> int:
    from .worker import Worker

    Worker(_settings(args)).run()
    return 0


def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    run_demo(out=args.out, num_simulations=args.num_simulations, max_epochs=args.max_epochs)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser."""
    parser = argparse.ArgumentParser(
        prog="sbiserve",
        description="Posterior-estimation service for simulation-based inference.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="API + worker (+ a private Redis if REDIS_URL is unset)")
    serve.add_argument("--host", help="bind address (SBISERVE_HOST, default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (SBISERVE_PORT, default 8000)")
    serve.add_argument("--data-dir", help="stores (SBISERVE_DATA_DIR, default ./sbiserve-data)")
    serve.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    serve.add_argument("--device", help="worker device (SBISERVE_DEVICE, default auto)")
    serve.set_defaults(func=_serve)

    api = sub.add_parser("api", help="the API alone (needs REDIS_URL)")
    api.add_argument("--host")
    api.add_argument("--port", type=int)
    api.add_argument("--data-dir")
    api.set_defaults(func=_api)

    worker = sub.add_parser("worker", help="one worker (needs REDIS_URL); one per GPU")
    worker.add_argument("--device", help="cuda, cuda:N or cpu (SBISERVE_DEVICE, default auto)")
    worker.add_argument("--data-dir")
    worker.set_defaults(func=_worker)

    demo = sub.add_parser("demo", help="the whole workflow on two-moons, ending in a plot")
    demo.add_argument("--out", default="two_moons_posterior.png", help="PNG to write")
    demo.add_argument("--num-simulations", type=int, default=5_000)
    demo.add_argument("--max-epochs", type=int, default=60)
    demo.set_defaults(func=_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``sbiserve`` console script."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # not one line per request
    args = build_parser().parse_args(argv)
    if getattr(args, "data_dir", None) is not None:
        from pathlib import Path

        args.data_dir = Path(args.data_dir)
    from .errors import ServiceError

    try:
        return int(args.func(args))
    except ModuleNotFoundError as e:
        print(
            f"sbiserve: {e.name} is not installed; the server side needs "
            "`pip install 'sbiserve[server]'`",
            file=sys.stderr,
        )
        return 2
    except ServiceError as e:
        print(f"sbiserve: {e.message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
