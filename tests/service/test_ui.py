"""The dashboard at ``/ui`` in a real headless Chromium (Debian's ``chromium``, driven by
Playwright through its ``executable_path``; no browser download): it lists a job, the
job's loss curve grows while it trains, the model page shows its diagnostics and plots,
and the posterior form draws a pair plot.

Skipped, saying why, where Chromium or Playwright is missing (``.ci/run`` installs both).
``SBISERVE_SCREENSHOTS=<dir>`` saves a screenshot of each page there (the README's).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from sbiserve.service.stack import LocalStack

from .conftest import API_KEY, PRIOR, wait_job

CHROMIUM = os.environ.get("SBISERVE_CHROMIUM", "/usr/bin/chromium")
SCREENSHOTS = os.environ.get("SBISERVE_SCREENSHOTS")
TIMEOUT_MS = 60_000


def test_static_files_are_served_without_the_key(stack: LocalStack) -> None:
    root = httpx.get(f"{stack.url}/ui", follow_redirects=True)
    assert root.status_code == 200 and "sbiserve dashboard" in root.text
    assert httpx.get(f"{stack.url}/ui/app.js").status_code == 200
    assert httpx.get(f"{stack.url}/ui/style.css").status_code == 200
    assert httpx.get(f"{stack.url}/v1/jobs").status_code == 401  # the data still needs it


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not (Path(CHROMIUM).is_file() or shutil.which(CHROMIUM)):
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium; .ci/run does)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed (pip install playwright)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-dev-shm-usage"]
        )
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Any, stack: LocalStack) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    opened = context.new_page()
    opened.set_default_timeout(TIMEOUT_MS)
    opened.goto(f"{stack.url}/ui")
    yield opened
    context.close()


def shot(page: Any, name: str) -> None:
    if SCREENSHOTS:
        Path(SCREENSHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SCREENSHOTS) / f"{name}.png"), full_page=True)


def start_job(api: httpx.Client) -> str:
    """A job long enough (tens of epochs of 4,000 pairs) to watch while it trains."""
    rng = np.random.default_rng(5)
    theta = rng.uniform(-1, 1, size=(4000, 2))
    x = np.column_stack([theta, theta[:, 0] * theta[:, 1]]) + 0.05 * rng.normal(size=(4000, 3))
    dataset = api.post(
        "/v1/datasets",
        json={
            "theta": theta.tolist(),
            "x": x.tolist(),
            "name": "ui-toy",
            "theta_names": ["alpha", "beta"],
        },
    ).json()
    body = {
        "dataset_id": dataset["dataset_id"],
        "name": "ui-demo",
        "hyperparameters": {"hidden_features": [32, 32], "max_epochs": 25, "batch_size": 32},
        "prior": PRIOR,
    }
    return str(api.post("/v1/jobs", json=body).json()["job_id"])


def test_without_the_key_the_page_says_it_needs_one(page: Any) -> None:
    page.wait_for_selector("#notice:not([hidden])")
    assert "API key" in page.inner_text("#notice")


def test_the_dashboard_follows_a_job_to_its_model_and_posterior(
    page: Any, api: httpx.Client
) -> None:
    page.fill("#api-key", API_KEY)
    page.click("#key-form button")
    job_id = start_job(api)

    # The job list shows it.
    page.wait_for_selector(f"a[href='#/jobs/{job_id}']")
    assert "ui-demo" in page.inner_text("main")

    # Its curve grows while it trains: two different point counts before it ends.
    page.click(f"a[href='#/jobs/{job_id}']")
    points = "Number(document.querySelector('svg.curve')?.dataset.points ?? 0)"
    page.wait_for_function(f"{points} >= 2")
    first = int(page.get_attribute("svg.curve", "data-points"))
    running = page.inner_text("main")
    page.wait_for_function(f"{points} > {first}")
    assert "running" in running, running
    shot(page, "ui_job")
    page.wait_for_selector("#model-link a")
    assert "succeeded" in page.inner_text("main")
    assert "Diagnostics:" in page.inner_text("#diagnostics-progress")
    job = wait_job(api, job_id)
    assert int(page.get_attribute("svg.curve", "data-points")) == job["progress"]["epoch"]

    # The model page shows the calibration report and its plots.
    page.click("#model-link a")
    page.wait_for_selector("#diagnostics .verdict")
    verdict = page.inner_text("#diagnostics .verdict")
    model = api.get(f"/v1/models/{job['model_id']}").json()
    assert model["diagnostics"]["verdict"] in verdict
    assert "alpha" in page.inner_text("#diagnostics table")
    for name in ("training", "sbc", "coverage"):
        page.wait_for_function(
            f"document.querySelector('img[data-plot={name}]')?.naturalWidth === 800"
        )
    shot(page, "ui_model")
    if SCREENSHOTS:  # the plots themselves, as the API serves them
        for name in ("training", "sbc", "coverage"):
            png = api.get(f"/v1/models/{job['model_id']}/plots/{name}.png").content
            (Path(SCREENSHOTS) / f"plot_{name}.png").write_bytes(png)
        body = {"model": job["model_id"], "x": [0.2, -0.4, -0.08], "theta": [0.2, -0.4], "seed": 1}
        png = api.post("/v1/posterior/plot", json=body).content
        (Path(SCREENSHOTS) / "plot_posterior.png").write_bytes(png)

    # The posterior form draws a pair plot.
    page.click(f"a[href='#/posterior/{job['model_id']}']")
    page.fill("#plot-x", "0.2, -0.4, -0.08")
    page.fill("#plot-theta", "0.2, -0.4")
    page.fill("#plot-seed", "1")
    page.click("#posterior-form button")
    page.wait_for_function("document.querySelector('#posterior-plot')?.naturalWidth === 800")
    shot(page, "ui_posterior")

    # Lists of datasets and models, with names and verdicts.
    page.click("nav a[data-section=datasets]")
    page.wait_for_selector("main table")
    assert "alpha, beta" in page.inner_text("main table")
    page.click("nav a[data-section=models]")
    page.wait_for_selector(f"main a[href='#/models/{job['model_id']}']")
    shot(page, "ui_models")


def test_a_bad_observation_is_explained_in_the_form(page: Any, api: httpx.Client) -> None:
    page.fill("#api-key", API_KEY)
    page.click("#key-form button")
    models = api.get("/v1/models").json()
    if not models:
        pytest.skip("no model trained yet in this session")
    page.goto(f"{page.url.split('#')[0]}#/posterior/{models[-1]['model_id']}")
    page.wait_for_selector("#posterior-form")
    assert models[-1]["model_id"] == page.input_value("#plot-model")
    page.fill("#plot-x", "1, 2")
    page.click("#posterior-form button")
    alert = page.wait_for_selector("#posterior-result [role=alert]")
    assert "x has 2 value(s)" in alert.inner_text()
