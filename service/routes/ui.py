"""``/ui``: the dashboard, static files from ``service/static`` (no build step).

The files hold no data and are served without the API key; the page asks for the key
(if the service has one) and sends it with every request it makes to ``/v1``.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"


def mount(app: FastAPI) -> None:
    """Serves the dashboard at ``/ui/`` (``/ui`` redirects there)."""

    @app.get("/ui", include_in_schema=False)
    async def ui_root() -> RedirectResponse:
        return RedirectResponse("/ui/")

    app.mount("/ui/", StaticFiles(directory=STATIC_DIR, html=True), name="ui")
