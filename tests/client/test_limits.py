"""The client reads the server's caps (``GET /v1/limits``) instead of keeping a copy of
the defaults; a server that does not publish them is taken to have the defaults."""

from __future__ import annotations

import httpx
import numpy as np

from sbiserve.client import Client, RemotePosterior
from sbiserve.client.client import SERVER_DEFAULT_CAPS
from sbiserve.service.stack import LocalStack

from .conftest import SampleRecorder, extra_api, moons


def test_a_client_splits_requests_under_the_caps_the_server_publishes(
    stack: LocalStack, posterior: RemotePosterior
) -> None:
    caps = {"max_num_samples": 40, "max_total_draws": 100, "max_observations": 3}
    recorder = SampleRecorder()
    with (
        extra_api(stack.settings.model_copy(update=caps)) as url,
        Client(url, transport=recorder) as small,  # told nothing about the caps
    ):
        draws = small.sample(posterior.model_id, moons(np.zeros((4, 2))), 130, seed=1)
        assert draws.shape == (130, 4, 2)
        assert (small.max_num_samples, small.max_draws, small.max_observations) == (40, 100, 3)
        assert small.max_request_bytes == stack.settings.max_request_bytes
    seen = recorder.bodies
    assert len(seen) == 2 * 4  # (2 + 2 observations) x (40 + 40 + 40 + 10 draws)
    for body in seen:
        rows = np.asarray(body["x"]).reshape(-1, 2).shape[0]
        assert body["num_samples"] <= 40 and rows <= 3 and body["num_samples"] * rows <= 100


def test_caps_given_to_the_client_win_and_an_older_server_means_the_defaults() -> None:
    asked: list[str] = []

    def older_server(request: httpx.Request) -> httpx.Response:
        asked.append(request.url.path)
        return httpx.Response(404, json={"error": {"code": "not_found", "message": "no"}})

    client = Client("http://sbiserve", transport=httpx.MockTransport(older_server), retries=0)
    assert client.max_observations == SERVER_DEFAULT_CAPS["max_observations"]
    assert client.max_draws == SERVER_DEFAULT_CAPS["max_draws"]
    assert asked == ["/v1/limits"]  # asked once, for every cap
    given = Client("http://sbiserve", transport=httpx.MockTransport(older_server), max_draws=7)
    assert given.max_draws == 7 and asked == ["/v1/limits"]  # nothing asked
