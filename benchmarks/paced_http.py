"""A paced HTTP/1.1 load generator in its own process, for ``pipeline.py``.

    python benchmarks/paced_http.py --port 9595 --rate 500 --seconds 10 \
        --connections 8 --header "Authorization: Bearer KEY" --header "X-Soma-Namespace: bench"

Sends ``POST /store`` (one new memory each, coordinate ``[j, 4]``) at
``--rate`` requests per second for ``--seconds``, request ``j`` on keep-alive
connection ``j % connections`` when its time comes (or as soon as that
connection's previous answer arrived, if later), and prints one JSON line:
each request's latency in ms (from sending it to the end of its answer), how
late each was sent (ms after its time: a connection still waiting for the
previous answer sends late, so a slow server is sent less than ``--rate``),
the seconds from the first request's time to the last answer, and the count
of answers by status. asyncio streams and no client library: in a
process of its own, so that the load generator's CPU and GIL never delay
the requests it times (the benchmark process also runs the outbox relay).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections import Counter

from rawhttp import exchange


async def _connection(
    port: int,
    head: bytes,
    jobs: range,
    begin: float,
    rate: float,
    out: dict[str, list[float]],
    statuses: Counter[str],
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for j in jobs:
            pause = begin + j / rate - time.perf_counter()
            if pause > 0:
                await asyncio.sleep(pause)
            body = json.dumps({"coord": [float(j), 4.0], "payload": {"text": f"api write {j}"}}).encode()
            started = time.perf_counter()
            status = await exchange(reader, writer, head, body)
            out["latencies_ms"].append((time.perf_counter() - started) * 1000)
            out["late_ms"].append(max(0.0, started - (begin + j / rate)) * 1000)
            statuses[status] += 1
    finally:
        writer.close()


async def _run(args: argparse.Namespace) -> dict[str, object]:
    headers = "".join(f"{h}\r\n" for h in args.header)
    head = (
        "POST /store HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n" + headers
    ).encode()
    total = int(args.rate * args.seconds)
    out: dict[str, list[float]] = {"latencies_ms": [], "late_ms": []}
    statuses: Counter[str] = Counter()
    begin = time.perf_counter() + 0.2
    jobs = [range(k, total, args.connections) for k in range(args.connections)]
    await asyncio.gather(*(_connection(args.port, head, j, begin, args.rate, out, statuses) for j in jobs))
    return {**out, "seconds": time.perf_counter() - begin, "statuses": dict(statuses)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--rate", type=float, default=500.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--header", action="append", default=[], help="'Name: value', repeatable")
    args = parser.parse_args(argv)
    print(json.dumps(asyncio.run(_run(args))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
