"""One draw in-process against the floor: a bare MLP of the same weights.

The goal of issue 10: in-process, one draw from the default energy flow in its serving
form (:func:`sbiserve.models.prepare_for_serving`, under ``inference_mode``) costs at
most 2x a forward pass of a bare ``nn.Sequential`` MLP holding the same ``Linear``
weights (same shapes, the model's activation between them). One torch thread, as the
worker runs.

Five calls are timed, interleaved in rounds so they share the machine's load:

- ``sample``: ``estimator.sample((1,), x, generator=Generator().manual_seed(i))``, the
  in-process reference of ``bench.service_latency`` (a seeded draw, as a request gets);
- ``sample_unseeded``: the same without creating a generator;
- ``worker``: what the worker runs for one request of one draw
  (:func:`sbiserve.service.batching.sample_many`: context, seeded noise, the draw, numpy);
- ``network``: the model's own network on one input row (its residual blocks included):
  the part of ``sample`` that is matrix multiplies;
- ``bare_mlp``: the bare MLP on the same input row.

The model is the default energy flow for two-moons shapes (theta 2, x 2, prior box
[-1, 1]^2 as in ``bench.service_latency``), untrained unless ``--model`` names a stored
one: the time of a draw does not depend on the weights' values.

    python -m bench.serving_floor
    python -m bench.serving_floor --calls 5000 --rounds 20 --json /tmp/floor.json
    python -m bench.serving_floor --model sbiserve-data/models/<id>
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sbiserve.models import (
    BoxPrior,
    EnergyFlow,
    EnergyFlowConfig,
    PosteriorEstimator,
    load_estimator,
    prepare_for_serving,
)
from sbiserve.models.base import ACTIVATIONS
from sbiserve.service.batching import sample_many

from .provenance import environment


def default_model(
    prior: bool = True, bounded_map: str | None = None, **options: Any
) -> PosteriorEstimator:
    """The default energy flow for two-moons shapes, in its serving form; ``prior=False``
    and ``bounded_map`` vary what a draw goes through after the network, ``options``
    (``mixture_heads``, ``hidden_features``) the network."""
    box = BoxPrior.from_dict({"type": "box", "low": [-1, -1], "high": [1, 1]}) if prior else None
    if bounded_map:
        options["bounded_map"] = bounded_map
    config = EnergyFlowConfig(**options)
    torch.manual_seed(0)
    return prepare_for_serving(EnergyFlow(2, 2, config, box))


def bare_mlp(estimator: PosteriorEstimator) -> nn.Sequential:
    """``Linear, activation, Linear, ..., Linear``: copies of the model's (folded) linear
    layers, in order, with the model's activation between them; checked to chain."""
    linears = [m for m in estimator.modules() if isinstance(m, nn.Linear)]
    activation = ACTIVATIONS[estimator.config.activation]
    layers: list[nn.Module] = []
    for i, layer in enumerate(linears):
        if i > 0:
            if linears[i - 1].out_features != layer.in_features:
                raise ValueError(f"linear layers {i - 1} and {i} do not chain")
            layers.append(activation())
        copy = nn.Linear(layer.in_features, layer.out_features, bias=layer.bias is not None)
        copy.load_state_dict(layer.state_dict())
        layers.append(copy)
    return nn.Sequential(*layers).eval().requires_grad_(False)


def timed(call: Callable[[int], Any], calls: int, seed_base: int) -> list[float]:
    """Seconds per call, ``calls`` calls."""
    out = []
    for i in range(calls):
        start = time.perf_counter()
        call(seed_base + i)
        out.append(time.perf_counter() - start)
    return out


def op_count(call: Callable[[int], Any]) -> int:
    """Torch operators one call runs from Python (the profiler's top-level events): with
    one row, each costs about the same fixed overhead, so this is what a draw pays for."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profile:
        call(0)
    return sum(1 for event in profile.events() if event.cpu_parent is None)


def run(estimator: PosteriorEstimator, calls: int, rounds: int) -> dict[str, Any]:
    """Median, p10 and p90 per call of each of the four calls, in microseconds."""
    torch.set_num_threads(1)
    mlp = bare_mlp(estimator)
    network: nn.Module = getattr(estimator, "network", mlp)
    first = next(m for m in mlp if isinstance(m, nn.Linear))
    row = torch.randn(1, first.in_features)
    x = torch.tensor([0.0, 0.1])
    x_rows = x[None].numpy()
    calls_by_name: dict[str, Callable[[int], Any]] = {
        "sample": lambda i: estimator.sample((1,), x, generator=torch.Generator().manual_seed(i)),
        "sample_unseeded": lambda i: estimator.sample((1,), x),
        "worker": lambda i: sample_many(
            estimator, [{"x": x_rows, "num_samples": 1, "seed": i}], max_draws=262_144
        ),
        "network": lambda i: network(row),
        "bare_mlp": lambda i: mlp(row),
    }
    seconds: dict[str, list[float]] = {name: [] for name in calls_by_name}
    load_before = os.getloadavg()[0]
    with torch.inference_mode():
        for call in calls_by_name.values():  # warm-up
            timed(call, 200, 0)
        for r in range(rounds):
            names = list(calls_by_name)
            for name in names if r % 2 == 0 else reversed(names):
                seconds[name] += timed(calls_by_name[name], calls // rounds, r * calls)
        ops = {name: op_count(call) for name, call in calls_by_name.items()}
    figures = {}
    for name, values in seconds.items():
        q = statistics.quantiles(values, n=10)
        figures[name] = {
            "torch_ops": ops[name],
            "median_us": statistics.median(values) * 1e6,
            "p10_us": q[0] * 1e6,
            "p90_us": q[-1] * 1e6,
            "calls": len(values),
        }
    medians = {name: f["median_us"] for name, f in figures.items()}
    return {
        **environment(torch.device("cpu")),
        "torch_threads": torch.get_num_threads(),
        "load_before": load_before,
        "load_after": os.getloadavg()[0],
        "layers": [tuple(m.weight.shape) for m in mlp if isinstance(m, nn.Linear)],
        "figures": figures,
        "ratio_sample_to_bare_mlp": medians["sample"] / medians["bare_mlp"],
        "ratio_unseeded_to_bare_mlp": medians["sample_unseeded"] / medians["bare_mlp"],
        "ratio_network_to_bare_mlp": medians["network"] / medians["bare_mlp"],
    }


def table(result: dict[str, Any]) -> list[str]:
    lines = [
        "| call | torch ops | median | p10 | p90 | median / bare MLP | p10 / bare MLP |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    bare = result["figures"]["bare_mlp"]
    for name, f in result["figures"].items():
        lines.append(
            f"| {name} | {f['torch_ops']} | {f['median_us']:.0f} us | {f['p10_us']:.0f} us | "
            f"{f['p90_us']:.0f} us | {f['median_us'] / bare['median_us']:.2f}x | "
            f"{f['p10_us'] / bare['p10_us']:.2f}x |"
        )
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=4000, help="timed calls of each kind")
    parser.add_argument("--rounds", type=int, default=80, help="interleaved rounds")
    parser.add_argument("--model", type=Path, help="a stored model directory (default: new)")
    parser.add_argument("--no-prior", action="store_true", help="the default model, no prior")
    parser.add_argument("--bounded-map", choices=("fold", "logit"), help="instead of default")
    parser.add_argument("--mixture-heads", type=int, help="heads (the class default: 1)")
    parser.add_argument(
        "--hidden-features",
        type=lambda text: tuple(int(n) for n in text.split(",")),
        help="hidden layer sizes, e.g. 96,96,96 (the class default: 128,128,128)",
    )
    parser.add_argument("--json", type=Path, help="also write the result here")
    args = parser.parse_args(argv)
    network = {
        name: value
        for name, value in (
            ("mixture_heads", args.mixture_heads),
            ("hidden_features", args.hidden_features),
        )
        if value is not None
    }
    if args.model:
        estimator = prepare_for_serving(load_estimator(args.model))
        model = str(args.model)
    else:
        estimator = default_model(not args.no_prior, args.bounded_map, **network)
        prior = "no prior" if args.no_prior else "box prior"
        model = f"default energy_flow, {prior}, bounded_map={args.bounded_map or 'default'}"
        model += "".join(f", {name}={value}" for name, value in network.items())
    result = {"model": model, **run(estimator, args.calls, args.rounds)}
    print(
        f"{model}; {result['cpu']}, {result['cpu_count']} cores, {result['torch_threads']} "
        f"torch thread; load average {result['load_before']:.2f} before, "
        f"{result['load_after']:.2f} after; layers {result['layers']}"
    )
    print("\n".join(table(result)))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
