"""``soma --url``: the CLI against a real ``soma serve``, compared with local mode.

One server (development mode, its own data directory) serves the module; the
remote commands run as ``soma --url ...`` subprocesses. The congruence test
runs the same script of commands twice, locally (in this process, on a data
directory of its own) and against the server, and compares exit codes and
the ``--json`` documents: equal, up to timestamps and latencies. A second
server with API keys checks ``--api-key``.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from somafractalmemory.cli.context import runs_remotely
from somafractalmemory.cli.main import cli

SOMA = Path(sys.executable).with_name("soma")
_SCRUB = ("SOMA_", "MEMORY_MODE", "POSTGRES_", "REDIS_", "QDRANT_", "KAFKA_", "EVENTING_", "SFM_", "UVICORN_")
#: What differs between two runs of the same script: wall-clock times, latencies, file paths.
VOLATILE = frozenset({"created_at", "updated_at", "changed_at", "timestamp", "latency_ms", "path"})
REMOTE_COMMANDS = {
    "store",
    "remember",
    "get",
    "history",
    "delete",
    "range",
    "recall",
    "recall-batch",
    "store-bulk",
    "link",
    "neighbors",
    "path",
    "export",
    "import",
    "stats",
    "health",
    "metrics",
}


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_SCRUB)}
    env["SOMA_FORCE_HASH_EMBEDDINGS"] = "1"
    env.update(extra)
    return env


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _serve(tmp: Path, **env: str) -> Iterator[str]:
    """Run ``soma serve`` until the generator is closed; yield its URL once it answers."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp / "server.log"
    environ = _env(SOMA_DATA_DIR=str(tmp / "data"), SOMA_OPENAPI_PATH="", SOMA_RATE_LIMIT_MAX="0", **env)
    command = [str(SOMA), "serve", "--port", str(port), "--log-level", "warning"]
    with open(log, "wb") as out:
        process = subprocess.Popen(command, cwd=tmp, env=environ, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, f"server exited early:\n{log.read_text()}"
            assert time.monotonic() < deadline, f"server not up after 60s:\n{log.read_text()}"
            try:
                if httpx.get(url + "/healthz", timeout=1.0).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        yield url
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    yield from _serve(tmp_path_factory.mktemp("soma-server"))


@pytest.fixture(scope="module")
def keyed_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    keys = "k-agent=agent-a:rw,k-reader=agent-a:ro"
    yield from _serve(tmp_path_factory.mktemp("soma-keyed"), SOMA_API_KEYS=keys)


@pytest.fixture(scope="module")
def local_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("soma-local")


@pytest.fixture
def ns() -> str:
    return f"r{uuid.uuid4().hex[:10]}"


def soma(*args: str, stdin: str | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    assert SOMA.exists(), f"console script not installed at {SOMA}"
    return subprocess.run(
        [str(SOMA), *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=_env(**env),
        timeout=60,
    )


def ok(*args: str, stdin: str | None = None, **env: str) -> str:
    proc = soma(*args, stdin=stdin, **env)
    assert proc.returncode == 0, f"soma {' '.join(args)} -> {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    assert "Traceback" not in proc.stderr
    return proc.stdout


def fails(code: int, *args: str, stdin: str | None = None, **env: str) -> str:
    proc = soma(*args, stdin=stdin, **env)
    assert proc.returncode == code, (
        f"soma {' '.join(args)} -> {proc.returncode} (want {code})\n{proc.stdout}\n{proc.stderr}"
    )
    assert "Traceback" not in proc.stderr and proc.stderr.startswith("error: "), proc.stderr
    return proc.stderr


def normalize(value: Any) -> Any:
    """A JSON document without what differs between runs (floats to 4 decimals: scores age)."""
    if isinstance(value, Mapping):
        return {k: "<volatile>" if k in VOLATILE else normalize(v) for k, v in value.items()}
    if isinstance(value, list):
        return [normalize(v) for v in value]
    if isinstance(value, float):
        return round(value, 4)
    return value


# -- the same script, locally and remotely ------------------------------------------------------

BULK = [
    {"coord": [4, 5, 6], "payload": {"text": "the zebra crossing near the harbour", "tags": ["travel"]}},
    {"coordinate": [7, 8, 9], "payload": {"fact": "harbour tours start at nine"}, "type": "semantic"},
    {"coord": [0, 0, 1], "payload": {"text": "plan the release", "importance": 3}, "memory_type": "episodic"},
]
BAD_BULK = json.dumps([{"coord": [i, 1], "payload": {"text": "x"} if i != 3 else [1]} for i in range(5)])
Step = tuple[list[str], str | None, int]  # (arguments, stdin, exit code)
#: The script: phases run in order; the steps of a "parallel" phase change nothing, so run concurrently.
#: "{ns}" is the test's namespace, "{dir}" a directory of the run's own.
PHASES: list[tuple[str, list[Step]]] = [
    (
        "in order",
        [
            (["store", "1,2,3", '{"task": "write the docs", "importance": 5}'], None, 0),
            (
                ["store", "1,2,3.0", '{"task": "docs are written", "tags": ["docs"]}', "--type", "semantic"],
                None,
                0,
            ),
            (["remember", '{"fact": "the user prefers tea"}', "--type", "semantic"], None, 0),
            (["remember", '{"text": "placed by hand"}', "--coord", "0.5,0.5,0.5"], None, 0),
            (["store-bulk", "-", "--batch-size", "2"], "\n".join(json.dumps(i) for i in BULK), 0),
            (
                ["link", "1,2,3", "4,5,6", "--type", "next", "--weight", "0.5", "--metadata", '{"why": "t"}'],
                None,
                0,
            ),
            (["link", "4,5,6", "7,8,9"], None, 0),
        ],
    ),
    (
        "parallel",
        [
            (["get", "1,2,3"], None, 0),
            (["history", "1,2,3"], None, 0),
            (["range", "--min", "0,0,0", "--max", "10,10,10"], None, 0),
            (["range", "--min", "0,0,0", "--max", "10,10,10", "--type", "semantic"], None, 0),
            (["neighbors", "4,5,6", "--direction", "both"], None, 0),
            (["neighbors", "4,5,6", "--direction", "in", "--link-type", "next", "--limit", "5"], None, 0),
            (["path", "1,2,3", "7,8,9"], None, 0),
            (["path", "1,2,3", "4,5,6", "--link-type", "next", "--max-depth", "2"], None, 0),
            (["recall", "zebra harbour", "-k", "3"], None, 0),
            (
                [
                    "recall",
                    "crossing",
                    "--scores",
                    "--filter",
                    "tags=travel",
                    "--filters",
                    '{"tags": "travel"}',
                ],
                None,
                0,
            ),
            (["recall", "docs", "--scores", "--type", "semantic", "--min-score", "0.1"], None, 0),
            (["recall", "release", "--context", '{"coordinate": [1, 2, 3]}'], None, 0),
            (
                ["recall", "release", "--context", '{"coordinate": [1, 2, 3]}', "--scores", "-k", "10"],
                None,
                0,
            ),
            (["recall-batch", "zebra", "tea", "-k", "2"], None, 0),
            (["recall-batch", "--file", "-", "harbour", "--type", "semantic"], "docs\n\nrelease\n", 0),
            (["stats"], None, 0),
            (["health"], None, 0),
            (["health", "--ready"], None, 0),
            (["export", "{dir}/dump.jsonl"], None, 0),
            (["history", "9,9,7"], None, 1),
            (["link", "9,9,6", "9,9,5"], None, 1),
            (["path", "7,8,9", "1,2,3"], None, 1),
            (["get", "nan,1,2"], None, 2),
            (["get", ",".join(["1"] * 17)], None, 2),
            (["store", "a,b", "{}"], None, 2),
            (["store", "1,2", "[1, 2]"], None, 2),
            (["store", "1,2", "{}", "--type", "dream"], None, 2),
            (["delete", "1,2", "x"], None, 2),
            (["range", "--min", "5,5", "--max", "1,1"], None, 2),
            (["recall", "x", "--top-k", "0"], None, 2),
            (["recall-batch"], None, 2),
        ],
    ),
    (
        "in order",
        [
            (["-n", "{ns}-copy", "import", "{dir}/dump.jsonl"], None, 0),
            (["-n", "{ns}-copy", "stats"], None, 0),
            (["delete", "7,8,9", "9,9,9", "7.0,8,9"], None, 1),
            (["get", "7,8,9"], None, 1),
            (["store-bulk", "-", "--batch-size", "2"], BAD_BULK, 2),
        ],
    ),
]
SCRIPT: list[Step] = [step for _, steps in PHASES for step in steps]


Outcome = tuple[int, Any, str]  # exit code, normalized JSON document, "error: <field>" of an error
Call = Callable[[list[str], str | None], tuple[int, str, str]]  # (args, stdin) -> (code, stdout, stderr)


def _run_script(call: Call, ns: str, own_dir: Path, concurrently: bool) -> list[Outcome]:
    def run(step: Step) -> Outcome:
        args, stdin, _ = step
        filled = [a.replace("{ns}", ns).replace("{dir}", str(own_dir)) for a in args]
        code, stdout, stderr = call(["--json", "-n", ns, *filled], stdin)
        assert "Traceback" not in stderr, stderr
        document = json.loads(stdout) if stdout.strip() else None
        # an error's first words: "error: <field>:" (the server's wording of a bound may differ)
        error = ":".join(stderr.split(":")[:2]) if code else ""
        return code, normalize(document), error

    results: list[Outcome] = []
    with ThreadPoolExecutor(max_workers=3) as pool:
        for how, steps in PHASES:
            parallel = concurrently and how == "parallel"
            results += pool.map(run, steps) if parallel else [run(step) for step in steps]
    return results


def _remote_call(url: str) -> Call:
    def call(args: list[str], stdin: str | None) -> tuple[int, str, str]:
        proc = soma("--url", url, *args, stdin=stdin)
        return proc.returncode, proc.stdout, proc.stderr

    return call


def _local_call(data_dir: Path) -> Call:
    """Local mode in this process (a fresh memory system per command, as ``soma`` builds)."""
    env: dict[str, str | None] = {k: None for k in os.environ if k.startswith(_SCRUB)}
    env.update(SOMA_DATA_DIR=str(data_dir), SOMA_FORCE_HASH_EMBEDDINGS="1")

    def call(args: list[str], stdin: str | None) -> tuple[int, str, str]:
        result = CliRunner().invoke(cli, args, input=stdin, env=env)
        assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
        return result.exit_code, result.stdout, result.stderr

    return call


def test_every_command_gives_the_same_answer_locally_and_remotely(
    server: str, local_dir: Path, ns: str, tmp_path: Path
) -> None:
    (tmp_path / "local").mkdir()
    (tmp_path / "remote").mkdir()
    with ThreadPoolExecutor(max_workers=1) as pool:
        remote = pool.submit(_run_script, _remote_call(server), ns, tmp_path / "remote", True)
        local_results = _run_script(_local_call(local_dir), ns, tmp_path / "local", False)
        remote_results = remote.result()

    problems = []
    for (args, _, code), mine, theirs in zip(SCRIPT, local_results, remote_results, strict=True):
        if mine[0] != code:
            problems.append(f"local soma {' '.join(args)}: exit {mine[0]}, want {code}: {mine[2]}")
        if theirs != mine:
            problems.append(f"soma {' '.join(args)}:\n  local  {mine}\n  remote {theirs}")
    assert not problems, "\n".join(problems)

    # spot checks that the script did what it says, so equal answers are not equally wrong
    by_args = {" ".join(args): result for (args, _, _), result in zip(SCRIPT, remote_results, strict=True)}
    assert by_args["get 1,2,3"][1]["version"] == 2 and by_args["get 1,2,3"][1]["memory_type"] == "semantic"
    both = by_args["neighbors 4,5,6 --direction both"][1]
    assert [(n["type"], n["metadata"]) for n in both] == [("next", {"why": "t"}), ("related", {})]
    assert by_args["path 1,2,3 7,8,9"][1]["hops"] == 2
    assert by_args["recall zebra harbour -k 3"][1][0]["coordinate"] == [4.0, 5.0, 6.0]
    assert [b["query"] for b in by_args["recall-batch --file - harbour --type semantic"][1]] == [
        "harbour",
        "docs",
        "release",
    ]
    assert by_args["stats"][1]["total_memories"] == 6 and by_args["stats"][1]["links"] == 2
    assert by_args["delete 7,8,9 9,9,9 7.0,8,9"][1] == {"deleted": 1, "requested": 2}
    assert by_args["get nan,1,2"][2] == "error: coordinate"
    assert by_args["store-bulk - --batch-size 2"][2] == "error: items[3].payload"
    assert by_args["recall x --top-k 0"][2] == "error: top_k"

    dumps = [
        [normalize(json.loads(line)) for line in (tmp_path / mode / "dump.jsonl").read_text().splitlines()]
        for mode in ("local", "remote")
    ]
    assert dumps[0] == dumps[1] and len(dumps[0]) > 6


def test_remote_output_is_the_local_output(server: str, local_dir: Path, ns: str) -> None:
    """Human output too: the same lines, where nothing volatile is shown."""
    items = [
        {"coord": [1, 2], "payload": {"text": "same words"}, "type": "semantic"},
        {"coord": [3, 4], "payload": {"text": "other words"}, "type": "semantic"},
    ]
    local, remote = _local_call(local_dir), _remote_call(server)
    for call in (local, remote):
        assert call(["-n", ns, "store-bulk", "-"], json.dumps(items))[:2] == (
            0,
            f"stored 2 memories from 2 items in namespace '{ns}'\n",
        )
        assert call(["-n", ns, "link", "1,2", "3,4"], None)[0] == 0
    for args in (
        ["range", "--min", "0,0", "--max", "5,5"],
        ["neighbors", "1,2", "--direction", "both"],
        ["path", "1,2", "3,4"],
        ["recall", "same"],
        ["recall-batch", "same", "other"],
        ["health", "--ready"],
        ["delete", "3,4"],
    ):
        code, out, _ = local(["-n", ns, *args], None)
        assert code == 0 and out.count("\n") >= 1, (args, out)
        assert remote(["-n", ns, *args], None) == (0, out, ""), args
    stored = ok("--url", server, "-n", ns, "store", "1,2", '{"text": "v2"}', "--type", "semantic")
    assert stored.startswith("stored semantic memory at 1,2 (version 2, id ")


def test_export_and_import_stream_through_stdin_and_stdout(server: str, ns: str) -> None:
    items = [{"coord": [i], "payload": {"text": f"item {i}"}} for i in range(30)]
    ok("--url", server, "-n", ns, "store-bulk", "-", stdin=json.dumps(items))
    ok("--url", server, "-n", ns, "link", "1", "2")
    streamed = soma("--url", server, "-n", ns, "export", "-")
    assert streamed.returncode == 0 and f"exported 62 lines from namespace '{ns}'" in streamed.stderr
    assert len(streamed.stdout.splitlines()) == 62
    out = ok("--url", server, "-n", ns + "-b", "import", "-", stdin=streamed.stdout)
    assert out == f"imported 30 memories, 30 history entries and 1 links into namespace '{ns}-b'\n"
    copied = json.loads(ok("--url", server, "-n", ns + "-b", "--json", "stats"))
    assert (copied["namespace"], copied["total_memories"], copied["links"]) == (ns + "-b", 30, 1)
    assert json.loads(ok("--url", server, "-n", ns + "-b", "--json", "path", "1", "2"))["hops"] == 1


def test_server_only_commands(server: str) -> None:
    metrics = ok("--url", server, "metrics")
    assert "# TYPE soma_http_requests_total counter" in metrics
    assert json.loads(ok("--url", server, "--json", "metrics"))["metrics"].startswith("# HELP")
    assert json.loads(ok("--url", server, "--json", "health", "--live")) == {"status": "ok"}


def _invoke(*args: str) -> tuple[int, str]:
    """Run ``soma`` in this process: for refusals, which happen before any backend or request."""
    result = CliRunner().invoke(cli, list(args), env={"SOMA_URL": None, "SOMA_API_KEY": None})
    return result.exit_code, result.output


def test_local_only_commands_and_options_refuse_a_url() -> None:
    assert {name for name, command in cli.commands.items() if runs_remotely(command)} == REMOTE_COMMANDS
    local_only = sorted(set(cli.commands) - REMOTE_COMMANDS)
    assert {"decay", "consolidate", "reindex", "serve", "mcp"} <= set(local_only)
    url = "http://127.0.0.1:9"  # never reached: the refusal comes first
    for name in local_only:
        assert _invoke("--url", url, name) == (
            2,
            f"error: --url: soma {name} needs local mode (it runs on the backends directly); "
            "drop --url and SOMA_URL\n",
        )
    code, output = _invoke("--url", url, "decay", "--help")
    assert code == 0 and "decay [OPTIONS]" in output
    for option, value in (("--mode", "test"), ("--data-dir", "/tmp"), ("--config", "{}")):
        assert _invoke("--url", url, option, value, "stats") == (
            2,
            f"error: {option}: chooses local backends; the server at --url uses its own settings\n",
        )
    assert _invoke("--api-key", "k", "stats")[0] == 2
    assert _invoke("metrics") == (
        2,
        "error: --url: soma metrics needs a server: give --url (or set SOMA_URL)\n",
    )
    assert _invoke("health", "--live")[1].startswith("error: --url: soma health --live needs a server")


def test_url_from_the_environment_and_the_servers_namespace(server: str) -> None:
    stats = json.loads(ok("--json", "stats", SOMA_URL=server))
    assert stats["namespace"] == "default" and stats["mode"] == "development"
    # without -n the server picks the namespace; results that name it ask the server which
    ok("--url", server, "store", "42", '{"text": "in the default namespace"}')
    assert json.loads(ok("--url", server, "--json", "history", "42"))[0]["namespace"] == "default"
    assert "in namespace 'default'" in fails(1, "--url", server, "get", "43")


def test_server_down_exits_3(local_dir: Path) -> None:
    url = f"http://127.0.0.1:{_free_port()}"
    for args in (["stats"], ["get", "1,2,3"], ["health", "--live"], ["export", "-"]):
        message = fails(3, "--url", url, *args)
        assert f"Soma API is unavailable (check --url or SOMA_URL): {url}" in message, message


def test_api_keys(keyed_server: str) -> None:
    url = keyed_server
    stored = json.loads(
        ok("--url", url, "--api-key", "k-agent", "--json", "store", "1,2,3", '{"text": "mine"}')
    )
    assert stored["namespace"] == "agent-a"  # the key's only namespace, picked by the server
    history = json.loads(ok("--url", url, "--json", "history", "1,2,3", SOMA_API_KEY="k-agent"))
    assert history[0]["namespace"] == "agent-a" and history[0]["action"] == "created"
    assert ok("--url", url, "--api-key", "k-reader", "recall", "mine").splitlines()[1].startswith("1,2,3 ")

    missing = fails(5, "--url", url, "stats")
    assert "an API key is required" in missing and "(check --api-key or SOMA_API_KEY)" in missing
    assert "error: unknown API key (check --api-key or SOMA_API_KEY)" in fails(
        5, "--url", url, "--api-key", "k-wrong", "stats"
    )
    other = fails(5, "--url", url, "--api-key", "k-agent", "-n", "agent-b", "get", "1,2,3")
    assert "may not read namespace 'agent-b'" in other
    read_only = fails(5, "--url", url, "--api-key", "k-reader", "store", "1,2,3", '{"text": "x"}')
    assert "may not write namespace 'agent-a'" in read_only
