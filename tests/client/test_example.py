"""``examples/two_moons_workflow.py`` runs end to end in a tiny configuration."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from sbiserve.client import Client
from sbiserve.service.stack import LocalStack

EXAMPLE = Path(__file__).parents[2] / "examples" / "two_moons_workflow.py"


def test_two_moons_example_writes_a_plot(stack: LocalStack, tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("two_moons_workflow", EXAMPLE)
    assert spec is not None and spec.loader is not None
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    out = tmp_path / "posterior.png"
    argv = ["--url", stack.url, "--num-simulations", "400", "--max-epochs", "2"]
    argv += ["--hidden", "16,16", "--num-samples", "200", "--alias", "example", "--quiet"]
    assert example.main([*argv, "--out", str(out)]) == 0
    assert out.stat().st_size > 10_000
    with Client(stack.url) as client:
        model = client.model("example")
        assert model["prior"]["low"] == [-1.0, -1.0]
        client.delete_model("example")
        assert model["model_id"] not in {m["model_id"] for m in client.models()}
