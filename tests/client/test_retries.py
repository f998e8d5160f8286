"""Transient failures are retried with backoff; the event stream feeds ``wait``.

These run against tiny real HTTP servers (no sbiserve service needed): one that answers
503 a few times before it works, one that comes up late, one that serves a job's events.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from sbiserve.client import (
    Client,
    JobFailedError,
    NotFoundError,
    RetryPolicy,
    UnavailableError,
)
from sbiserve.client.events import parse_events
from sbiserve.service.stack import free_port

FAST = RetryPolicy(attempts=4, backoff_s=0.05, max_backoff_s=0.2)
Reply = tuple[int, dict[str, str], bytes]


@contextmanager
def http_server(answer: Callable[[str], Reply], port: int = 0) -> Iterator[tuple[str, list[str]]]:
    """Serves ``answer(path) -> (status, headers, body)``; yields its URL and the paths hit."""
    hits: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            hits.append(self.path)
            status, headers, body = answer(self.path)
            self.send_response(status)
            for name, value in {"Content-Length": str(len(body)), **headers}.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", hits
    finally:
        server.shutdown()
        server.server_close()


def error(status: int, code: str) -> Reply:
    body = {"error": {"code": code, "message": f"{code} here", "field": None}}
    return status, {"Content-Type": "application/json"}, json.dumps(body).encode()


def ok(body: object) -> Reply:
    return 200, {"Content-Type": "application/json"}, json.dumps(body).encode()


def test_503_is_retried_until_it_works() -> None:
    def answer(path: str) -> Reply:
        return error(503, "unavailable") if len(hits) <= 2 else ok([{"model_id": "m"}])

    with http_server(answer) as (url, hits), Client(url, retries=FAST) as client:
        assert client.models() == [{"model_id": "m"}]
    assert hits == ["/v1/models"] * 3


def test_retries_give_up_with_the_last_error_and_404_is_not_retried() -> None:
    def answer(path: str) -> Reply:
        return error(503, "unavailable") if path == "/v1/models" else error(404, "not_found")

    with http_server(answer) as (url, hits), Client(url, retries=FAST) as client:
        with pytest.raises(UnavailableError, match="unavailable here") as raised:
            client.models()
        assert raised.value.status == 503 and len(hits) == 4
        with pytest.raises(NotFoundError):
            client.model("x")
        assert len(hits) == 5


def test_a_server_that_comes_up_late_is_reached() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(UnavailableError, match="cannot reach"), Client(url, retries=0) as client:
        client.datasets()  # nothing listens yet, and no retry
    up, stop = threading.Event(), threading.Event()

    def serve_later() -> None:
        time.sleep(0.4)
        with http_server(lambda path: ok([]), port=int(url.rsplit(":", 1)[1])):
            up.set()
            stop.wait(10)

    thread = threading.Thread(target=serve_later)
    thread.start()
    try:
        patient = RetryPolicy(attempts=10, backoff_s=0.1, max_backoff_s=0.3)
        with Client(url, retries=patient) as client:
            assert client.datasets() == []
        assert up.is_set()
    finally:
        stop.set()
        thread.join()


def test_wait_follows_events_then_reports_the_failure() -> None:
    stream = (
        b": keep-alive\n\n"
        b'event: progress\ndata: {"epoch": 1, "max_epochs": 2, "train_loss": 1.5}\n\n'
        b'event: status\ndata: {"status": "failed", "error": "diverged"}\n\n'
    )
    job = {"job_id": "j1", "status": "failed", "error": "diverged: loss is NaN"}

    def answer(path: str) -> Reply:
        if path.endswith("/events"):
            return 200, {"Content-Type": "text/event-stream"}, stream
        return ok(job)

    with (
        http_server(answer) as (url, hits),
        Client(url, retries=FAST) as client,
        pytest.raises(JobFailedError, match="loss is NaN") as raised,
    ):
        client.wait("j1", progress=True)
    assert raised.value.job == job
    assert hits == ["/v1/jobs/j1/events", "/v1/jobs/j1"]


def test_event_parser() -> None:
    lines = ["event: progress", 'data: {"epoch": 3}', "", ": ping", "", "data: [1]", ""]
    events = list(parse_events(lines))
    assert [(e.kind, e.data) for e in events] == [
        ("progress", {"epoch": 3}),
        ("message", {"value": [1]}),
    ]
