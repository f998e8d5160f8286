"""The lab deployment files refer to things that exist: real ``sbiserve`` subcommands,
real settings, real routes, matching ports. (No Docker engine is needed: the files are
parsed, not run.)"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from sbiserve.service.app import create_app
from sbiserve.service.cli import build_parser
from sbiserve.service.settings import Settings

ROOT = Path(__file__).parents[2]
SBISERVE_SERVICES = ("api", "worker", "worker-cpu")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return loaded


@pytest.fixture(scope="module")
def dockerfile() -> dict[str, list[str]]:
    """Instructions of the Dockerfile (continuations joined, comments dropped)."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, _, rest = line.partition(" ")
            out.setdefault(name.upper(), []).append(rest.strip())
    return out


def setting_variables() -> set[str]:
    """Every environment variable the service reads."""
    names = set()
    for name, field in Settings.model_fields.items():
        names.add(f"SBISERVE_{name.upper()}")
        alias = field.validation_alias
        names.update(getattr(alias, "choices", []))
    return names


def parses(command: list[str]) -> str:
    """The subcommand of an ``sbiserve ...`` command line (exits if the CLI refuses it)."""
    assert command[0] == "sbiserve", command
    args = build_parser().parse_args(command[1:])
    return str(args.command)


def test_compose_commands_are_real_subcommands(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert parses(services["api"]["command"]) == "api"
    assert parses(services["worker"]["command"]) == "worker"
    assert parses(services["worker-cpu"]["command"]) == "worker"


def test_compose_environment_names_are_settings(compose: dict[str, Any]) -> None:
    known = setting_variables()
    for name in SBISERVE_SERVICES:
        environment = compose["services"][name]["environment"]
        assert set(environment) <= known, (name, set(environment) - known)
        assert environment["REDIS_URL"].startswith("redis://redis:")
    assert compose["services"]["worker-cpu"]["environment"]["SBISERVE_DEVICE"] == "cpu"


def test_stores_are_shared_and_redis_persists_unpublished(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in SBISERVE_SERVICES:
        service = services[name]
        mounts = dict(volume.split(":", 1) for volume in service["volumes"])
        assert mounts["stores"] == service["environment"]["SBISERVE_DATA_DIR"]
        assert "container_name" not in service  # would forbid --scale
    redis = services["redis"]
    assert "ports" not in redis
    assert "--appendonly" in redis["command"]
    assert redis["command"][redis["command"].index("--appendonly") + 1] == "yes"
    assert any(volume.endswith(":/data") for volume in redis["volumes"])
    assert {"stores", "redis-data"} <= set(compose["volumes"])


def test_worker_reserves_a_gpu(compose: dict[str, Any]) -> None:
    devices = compose["services"]["worker"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"]
    assert compose["services"]["worker"]["healthcheck"]["disable"] is True


def test_ports_match(compose: dict[str, Any], dockerfile: dict[str, list[str]]) -> None:
    api = compose["services"]["api"]
    port = int(api["environment"]["SBISERVE_PORT"])
    assert api["ports"][0].rsplit(":", 1)[1] == str(port)
    assert dockerfile["EXPOSE"] == [str(port)]
    env = " ".join(dockerfile["ENV"])
    assert f"SBISERVE_PORT={port}" in env and "SBISERVE_HOST=0.0.0.0" in env
    assert api["environment"]["SBISERVE_HOST"] == "0.0.0.0"


def test_dockerfile_runs_real_commands_and_routes(dockerfile: dict[str, list[str]]) -> None:
    assert "ENTRYPOINT" not in dockerfile
    (cmd,) = dockerfile["CMD"]
    assert parses(json.loads(cmd)) == "api"
    (healthcheck,) = dockerfile["HEALTHCHECK"]
    route = re.search(r"127\.0\.0\.1:%s(/\w+)", healthcheck)
    assert route is not None, healthcheck
    app = create_app(Settings(redis_url="redis://127.0.0.1:1/0"))
    assert "get" in app.openapi()["paths"][route.group(1)]
    assert dockerfile["USER"] == ["sbiserve"]  # not root
    assert len(dockerfile["FROM"]) >= 2  # multi-stage
    env_names = {part.split("=", 1)[0] for part in shlex.split(" ".join(dockerfile["ENV"]))}
    service_names = {name for name in env_names if name.startswith(("SBISERVE_", "REDIS"))}
    assert service_names <= setting_variables()
    args = " ".join(dockerfile["ARG"])
    assert "TORCH_INDEX=" in args and "BASE=" in args
