"""A closed-loop HTTP/1.1 load generator whose cost per request does not grow with the
number of connections: one coroutine per keep-alive connection over raw asyncio streams
(uvloop when installed), each sending its next request as soon as its last answer is in.

Run as its own process, so that it shares no interpreter (and no GIL) with the server it
measures; it prints one JSON object: latencies, failures, wall time and its own CPU time.

    python -m bench.http_load --url http://127.0.0.1:8000 --model M --draws 1 \\
        --connections 64 --requests 2000 --format json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

NPY = "application/x-npy"


@dataclass
class Tally:
    """What the connections measured."""

    latencies: list[float] = field(default_factory=list)
    # When each measured request was sent, in seconds from the start of the run: with the
    # latencies, a timeline that tells a stall (slow requests at one moment) from a spread.
    starts: list[float] = field(default_factory=list)
    origin: float = 0.0
    failures: list[int] = field(default_factory=list)
    bytes_in: int = 0


def request_bytes(host: str, path: str, body: bytes, accept: str) -> bytes:
    """One POST with a JSON body, keep-alive."""
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Accept: {accept}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """Status and body of one response (Content-Length framed, as the server sends)."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return status, await reader.readexactly(length)


async def connection(
    url: str,
    body_for: Callable[[int], bytes],
    indices: list[int],
    accept: str,
    tally: Tally,
    warm: int,
) -> None:
    """One keep-alive connection sending the requests ``indices`` one after the other."""
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    path = "/v1/posterior/sample"
    try:
        for n, i in enumerate(indices):
            message = request_bytes(parts.netloc, path, body_for(i), accept)
            start = time.perf_counter()
            writer.write(message)
            status, body = await read_response(reader)
            elapsed = time.perf_counter() - start
            if n < warm:
                continue
            tally.bytes_in += len(body)
            if status == 200:
                tally.latencies.append(elapsed)
                tally.starts.append(start - tally.origin)
            else:
                tally.failures.append(status)
    finally:
        writer.close()


async def run_load(
    url: str, model: str, draws: int, connections: int, requests: int, fmt: str, warm: int
) -> dict[str, object]:
    """``requests`` calls over ``connections`` connections (plus ``warm`` each, unrecorded)."""

    def body_for(i: int) -> bytes:
        x = 0.1 * (i % 7)
        return (
            f'{{"model":"{model}","x":[0.0,{x:.1f}],"num_samples":{draws},"seed":{i}}}'
        ).encode()

    accept = NPY if fmt == "npy" else "application/json"
    tally = Tally(origin=time.perf_counter())
    # Each connection's warm-up requests first (not recorded; seeds past the measured
    # ones), then its share of the measured ones.
    plans = [
        [requests + c * warm + k for k in range(warm)] + list(range(c, requests, connections))
        for c in range(connections)
    ]
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    start = time.perf_counter()
    await asyncio.gather(*(connection(url, body_for, plan, accept, tally, warm) for plan in plans))
    wall = time.perf_counter() - start
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    return {
        "latencies": tally.latencies,
        "starts": tally.starts,
        "failures": tally.failures,
        "wall_s": wall,
        "client_cpu_s": cpu,
        "bytes_in": tally.bytes_in,
        "warm_requests": warm * connections,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--draws", type=int, default=1)
    parser.add_argument("--connections", type=int, default=1)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--format", choices=("json", "npy"), default="json")
    parser.add_argument("--warm", type=int, default=2, help="unrecorded requests per connection")
    args = parser.parse_args(argv)
    try:
        from uvloop import run
    except ImportError:
        run = asyncio.run  # type: ignore[assignment]
    result = run(
        run_load(
            args.url,
            args.model,
            args.draws,
            args.connections,
            args.requests,
            args.format,
            args.warm,
        )
    )
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()
