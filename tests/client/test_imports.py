"""The client stays thin: importing it loads neither torch nor the server side."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("torch", "sbi", "fastapi", "starlette", "uvicorn", "redis", "pydantic", "matplotlib")


def test_client_import_graph_excludes_torch_and_the_server() -> None:
    code = (
        "import sys, sbiserve.client\n"
        "c = sbiserve.client.Client('http://127.0.0.1:1')\n"
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == "", f"the client imported {result.stdout.strip()}"
