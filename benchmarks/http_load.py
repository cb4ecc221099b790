"""HTTP load test of ``soma serve``: bulk preload, then /recall and /store under concurrency.

    .venv/bin/python benchmarks/http_load.py                     # 10k preload, 32 clients, 30 s each
    .venv/bin/python benchmarks/http_load.py --duration 10 --concurrency 16 --engine python

It starts ``soma serve`` (DEVELOPMENT mode, a temporary SOMA_DATA_DIR, hash
embeddings, no rate limit, ``--workers`` processes) on a free loopback port,
loads ``--preload`` memories through ``/store_bulk`` (1,000 per request), then
drives each endpoint in turn with ``--concurrency`` keep-alive connections for
``--duration`` seconds (after ``--warmup`` seconds of the same load, not
counted: the first seconds after a bulk load build the vector index and
warm the caches) and prints requests/s, latency percentiles and
responses by status, and the CPU time the server's processes spent per
request (from ``/proc``: on a small machine, where the load generator
shares the cores, that decides the throughput). The load generator is
``wrk`` when it is installed
(``apt-get install wrk``), else a small asyncio HTTP/1.1 client in this file
(lighter than a full client library, so it leaves more CPU to the server when
both share a machine). Traffic goes to 127.0.0.1 only and every phase is
bounded in time.

Targets: /recall >= 1,000 requests/s with p99 <= 50 ms; /store >= 1,000 requests/s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from proccpu import cpu_seconds, process_tree
from rawhttp import exchange

TARGETS = {"/recall": (1000.0, 50.0), "/store": (1000.0, None)}


# -- test data ------------------------------------------------------------------
def vocabulary(size: int, rng: random.Random) -> list[str]:
    letters = "abcdefghijklmnopqrstuvwxyz"
    words: set[str] = set()
    while len(words) < size:
        words.add("".join(rng.choice(letters) for _ in range(rng.randint(3, 9))))
    return sorted(words)


def sentence(words: list[str], rng: random.Random) -> str:
    # Zipf-like: a few common words, a long tail, as in real text
    picks = [words[min(int(rng.paretovariate(1.1)) - 1, len(words) - 1)] for _ in range(rng.randint(6, 14))]
    return " ".join(picks)


@dataclass
class Result:
    endpoint: str
    engine: str
    seconds: float
    latencies_ms: list[float] = field(default_factory=list)
    statuses: Counter[str] = field(default_factory=Counter)
    percentiles: dict[str, float] = field(default_factory=dict)
    requests: int = 0
    server_cpu: float | None = None  # seconds of CPU the server's processes used

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def cpu_us(self) -> float:
        """Server CPU per request, in microseconds (nan where /proc is not there)."""
        if self.server_cpu is None or not self.requests:
            return float("nan")
        return self.server_cpu / self.requests * 1e6

    def pct(self, p: float) -> float:
        if self.percentiles:
            return self.percentiles[f"p{p:g}"]
        ordered = sorted(self.latencies_ms)
        if not ordered:
            return float("nan")
        return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


# -- the server -----------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def soma_command() -> list[str]:
    script = shutil.which("soma", path=str(Path(sys.executable).parent))
    return (
        [script] if script else [sys.executable, "-c", "from somafractalmemory.cli.main import main; main()"]
    )


def start_server(
    data_dir: Path, port: int, workers: int, log_level: str, log_file: Path
) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "SOMA_DATA_DIR": str(data_dir),
        "SOMA_FORCE_HASH_EMBEDDINGS": "1",
        "SOMA_RATE_LIMIT_MAX": "0",
        "SOMA_OPENAPI_PATH": "",
    }
    for name in (
        "SOMA_API_KEYS",
        "SOMA_API_KEYS_FILE",
        "POSTGRES_URL",
        "REDIS_URL",
        "REDIS_HOST",
        "MEMORY_MODE",
    ):
        env.pop(name, None)
    command = [
        *soma_command(),
        "--mode",
        "development",
        "serve",
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--log-level",
        log_level,
        "--timeout-graceful",
        "10",
    ]
    with open(log_file, "wb") as out:
        return subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)


def wait_ready(base_url: str, process: subprocess.Popen[bytes], timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the server exited with {process.returncode} before it was ready")
        try:
            if httpx.get(base_url + "/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise SystemExit("the server was not ready in time")


# -- load: the asyncio engine ------------------------------------------------------
async def _one_connection(
    port: int,
    post: bool,
    choose: Callable[[random.Random], bytes],
    path: str,
    stop_at: float,
    result: Result,
    rng: random.Random,
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    method = "POST" if post else "GET"
    head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n".encode()
    try:
        while time.perf_counter() < stop_at:
            body = choose(rng) if post else b""
            started = time.perf_counter()
            status = await exchange(reader, writer, head, body)
            result.latencies_ms.append((time.perf_counter() - started) * 1000)
            result.statuses[status] += 1
    except (ConnectionError, asyncio.IncompleteReadError) as exc:
        result.statuses[f"error:{type(exc).__name__}"] += 1
    finally:
        writer.close()


async def _drive(
    port: int,
    path: str,
    bodies: list[bytes],
    concurrency: int,
    duration: float,
    pick: Callable[[random.Random], bytes] | None = None,
) -> Result:
    result = Result(path, "python-asyncio", duration)
    started = time.perf_counter()
    stop_at = started + duration
    choose = pick or (lambda rng: rng.choice(bodies))
    await asyncio.gather(
        *(
            _one_connection(port, bool(bodies), choose, path, stop_at, result, random.Random(i))
            for i in range(concurrency)
        )
    )
    result.seconds = time.perf_counter() - started
    result.requests = len(result.latencies_ms)
    return result


def load_python(
    port: int,
    path: str,
    bodies: list[bytes],
    concurrency: int,
    duration: float,
    tmp: Path,
    start: int | None = None,
) -> Result:
    if start is not None:  # in order from ``start``: each connection takes the next body
        ordered = iter(bodies[start:])
        return asyncio.run(_drive(port, path, bodies, concurrency, duration, lambda rng: next(ordered)))
    return asyncio.run(_drive(port, path, bodies, concurrency, duration))


# -- load: the wrk engine -------------------------------------------------------------
WRK_SCRIPT = """
local bodies = {BODIES}
local path = "{PATH}"
statuses = {{}}
local sequential, start = {SEQUENTIAL}, {START}
local threads = {{}}
function setup(thread)
  table.insert(threads, thread)
  thread:set("slot", #threads - 1)
end
local step, n = {THREADS}, nil
function init(args) math.randomseed(os.time() + math.floor(os.clock() * 1000000)) end
function request()
  if #bodies == 0 then return wrk.format("GET", path) end
  local body
  if sequential then  -- threads take turns through the list: no body is sent twice
    n = (n or (start + slot - step)) + step
    body = bodies[(n % #bodies) + 1]
  else
    body = bodies[math.random(#bodies)]
  end
  return wrk.format("POST", path, {{["Content-Type"] = "application/json"}}, body)
end
function response(status, headers, body)
  local key = tostring(status)
  statuses[key] = (statuses[key] or 0) + 1
end
function done(summary, latency, requests)
  local merged = {{}}
  for _, t in ipairs(threads) do
    local s = t:get("statuses")
    for k, v in pairs(s) do merged[k] = (merged[k] or 0) + v end
  end
  local parts = {{}}
  for k, v in pairs(merged) do table.insert(parts, string.format('"%s": %d', k, v)) end
  io.write(string.format(
    'WRK_JSON {{"requests": %d, "duration_us": %d, "p50": %f, "p90": %f, "p99": %f, "max": %f, ' ..
    '"errors": {{"connect": %d, "read": %d, "write": %d, "timeout": %d}}, "statuses": {{%s}}}}\\n',
    summary.requests, summary.duration, latency:percentile(50) / 1000, latency:percentile(90) / 1000,
    latency:percentile(99) / 1000, latency.max / 1000, summary.errors.connect, summary.errors.read,
    summary.errors.write, summary.errors.timeout, table.concat(parts, ", ")))
end
"""


def _lua_string(data: bytes) -> str:
    return '"' + data.decode().replace("\\", "\\\\").replace('"', '\\"') + '"'


def load_wrk(
    port: int,
    path: str,
    bodies: list[bytes],
    concurrency: int,
    duration: float,
    tmp: Path,
    start: int | None = None,
) -> Result:
    """``start``: send the bodies in order from this index (else pick at random)."""
    script = tmp / f"load{path.replace('/', '_')}.lua"
    lua_bodies = "{" + ", ".join(_lua_string(b) for b in bodies) + "}"
    threads = max(1, min(2, concurrency))
    script.write_text(
        WRK_SCRIPT.format(
            BODIES=lua_bodies,
            PATH=path,
            SEQUENTIAL="false" if start is None else "true",
            START=start or 0,
            THREADS=threads,
        )
    )
    command = [
        "wrk",
        f"-t{threads}",
        f"-c{concurrency}",
        f"-d{max(1, int(duration))}s",
        "--timeout",
        "10s",
        "-s",
        str(script),
        f"http://127.0.0.1:{port}{path}",
    ]
    output = subprocess.run(command, capture_output=True, text=True, timeout=duration + 60, check=True).stdout
    line = next(x for x in output.splitlines() if x.startswith("WRK_JSON "))
    data = json.loads(line[len("WRK_JSON ") :])
    result = Result(path, "wrk", data["duration_us"] / 1e6)
    result.requests = data["requests"]
    result.percentiles = {"p50": data["p50"], "p90": data["p90"], "p99": data["p99"], "p100": data["max"]}
    result.statuses.update({k: int(v) for k, v in data["statuses"].items()})
    for kind, count in data["errors"].items():
        if count:
            result.statuses[f"error:{kind}"] += count
    return result


# -- the run --------------------------------------------------------------------------------
def machine_info(workers: int) -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = "?"
    try:
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        memory = f"{kb / 1024 / 1024:.1f} GiB"
    except (OSError, ValueError, IndexError):
        pass

    def installed(name: str) -> bool:
        try:
            __import__(name)
        except ImportError:
            return False
        return True

    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory": memory,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load avg": " ".join(f"{x:.2f}" for x in os.getloadavg()) + " (1/5/15 min, before the run)",
        "server": f"uvicorn, {workers} worker(s), http={'httptools' if installed('httptools') else 'h11'}, "
        f"loop={'uvloop' if installed('uvloop') else 'asyncio'}",
    }


def preload(base_url: str, count: int, words: list[str], rng: random.Random) -> float:
    started = time.perf_counter()
    with httpx.Client(base_url=base_url, timeout=300) as client:
        for start in range(0, count, 1000):
            items = [
                {"coord": [i % 100, (i // 100) % 100, i // 10_000], "payload": {"text": sentence(words, rng)}}
                for i in range(start, min(count, start + 1000))
            ]
            client.post("/store_bulk", json={"items": items}).raise_for_status()
    return time.perf_counter() - started


def report(results: list[Result]) -> None:
    print()
    columns = (("requests", 9), ("req/s", 9), ("p50 ms", 8), ("p90 ms", 8), ("p99 ms", 8), ("cpu us/req", 10))
    print(f"{'endpoint':<10} {'engine':<15} " + " ".join(f"{c:>{w}}" for c, w in columns))
    for r in results:
        print(
            f"{r.endpoint:<10} {r.engine:<15} {r.requests:>9} {r.rps:>9.0f} "
            f"{r.pct(50):>8.2f} {r.pct(90):>8.2f} {r.pct(99):>8.2f} {r.cpu_us:>10.0f}"
        )
    print("(cpu us/req: CPU time of the server's processes per request, user + system)")
    print()
    for r in results:
        print(f"{r.endpoint}: responses by status: {dict(sorted(r.statuses.items()))}")
    print()
    for r in results:
        target = TARGETS.get(r.endpoint)
        if target is None:
            continue
        rps_goal, p99_goal = target
        ok = r.rps >= rps_goal and (p99_goal is None or r.pct(99) <= p99_goal)
        goal = f">= {rps_goal:.0f} req/s" + (f", p99 <= {p99_goal:.0f} ms" if p99_goal else "")
        print(f"target {r.endpoint} {goal}: {'met' if ok else 'NOT met'}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preload", type=int, default=10_000, help="memories loaded before the load phases")
    parser.add_argument("--concurrency", type=int, default=32, help="concurrent keep-alive connections")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds per endpoint")
    parser.add_argument(
        "--warmup", type=float, default=5.0, help="seconds of load before each endpoint's, not counted"
    )
    parser.add_argument("--workers", type=int, default=2, help="API worker processes")
    parser.add_argument(
        "--endpoints", default="/recall,/store", help="comma-separated, from /recall, /store, /healthz"
    )
    parser.add_argument(
        "--unique-stores",
        action="store_true",
        help="every /store writes a new memory (default: 2,000 bodies, sent again and again)",
    )
    parser.add_argument("--engine", choices=["auto", "wrk", "python"], default="auto")
    parser.add_argument("--log-level", default="warning", help="server log level (info logs every request)")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)

    engine = args.engine
    if engine == "auto":
        engine = "wrk" if shutil.which("wrk") else "python"
    if engine == "wrk" and not shutil.which("wrk"):
        raise SystemExit("wrk is not installed (apt-get install wrk), use --engine python")

    info = machine_info(args.workers)
    print("machine:")
    for key, value in info.items():
        print(f"  {key:<9} {value}")
    print(
        f"load:      {engine}, {args.concurrency} connections, {args.duration:g} s per endpoint "
        f"after {args.warmup:g} s of warm-up"
    )
    print(
        "stores:    "
        + (
            "every request a new memory (--unique-stores)"
            if args.unique_stores
            else "2,000 bodies sent again and again: after the first pass, rewrites of the same content"
        )
    )

    # the default cycles 2,000 bodies: after the first pass a store rewrites a memory
    # with the same content; --unique-stores gives every request a new memory
    store_bodies = int((args.duration + args.warmup) * 2500) if args.unique_stores else 2000
    rng = random.Random(args.seed)
    words = vocabulary(3000, rng)
    queries = [
        json.dumps({"query": " ".join(rng.sample(words[:800], rng.randint(1, 3))), "top_k": 5}).encode()
        for _ in range(500)
    ]
    stores = [
        json.dumps(
            {
                "coord": [rng.uniform(-1e6, 1e6), rng.uniform(-1e6, 1e6), 7.0],
                "payload": {"text": sentence(words, rng)},
            }
        ).encode()
        for _ in range(store_bodies)
    ]
    # /healthz (no body, no backend work) shows what the HTTP stack alone can serve
    bodies: dict[str, list[bytes]] = {"/recall": queries, "/store": stores, "/healthz": []}

    with tempfile.TemporaryDirectory(prefix="soma-load-") as tmp_name:
        tmp = Path(tmp_name)
        port = free_port()
        base_url = f"http://127.0.0.1:{port}"
        process = start_server(tmp / "data", port, args.workers, args.log_level, tmp / "server.log")
        try:
            wait_ready(base_url, process)
            seconds = preload(base_url, args.preload, words, rng)
            print(
                f"preload:   {args.preload} memories via /store_bulk in {seconds:.1f} s "
                f"({args.preload / seconds:,.0f} memories/s)"
            )
            results = []
            for endpoint in [e.strip() for e in args.endpoints.split(",") if e.strip()]:
                if endpoint not in bodies:
                    raise SystemExit(f"unknown endpoint {endpoint!r}; known: {', '.join(bodies)}")
                load = load_wrk if engine == "wrk" else load_python
                ordered = args.unique_stores and endpoint == "/store"
                start = 0 if ordered else None
                if args.warmup > 0:
                    warm = load(port, endpoint, bodies[endpoint], args.concurrency, args.warmup, tmp, start)
                    start = warm.requests + args.concurrency if ordered else None
                server = process_tree(process.pid)
                before = cpu_seconds(server)
                result = load(port, endpoint, bodies[endpoint], args.concurrency, args.duration, tmp, start)
                after = cpu_seconds(server)
                if before is not None and after is not None:
                    result.server_cpu = after - before
                results.append(result)
            stats = httpx.get(base_url + "/stats", timeout=30).json()
            print(
                f"after:     {stats['total_memories']} memories, {stats['vectors']} vectors "
                f"(as seen by one worker)"
            )
            report(results)
            print("load avg after: " + " ".join(f"{x:.2f}" for x in os.getloadavg()))
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                code = process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                code = process.wait()
            print(f"\nserver stopped with exit code {code}")
            if code != 0:
                print((tmp / "server.log").read_text()[-4000:])
    return 0


if __name__ == "__main__":
    sys.exit(main())
