"""The ``soma`` CLI, run as a subprocess of the installed console script.

Every test works in its own namespace of one DEVELOPMENT data directory per
module (SQLite + fast core on disk), so the tests stay independent while the
suite starts few fresh stores.
"""

from __future__ import annotations

import json
import os
import pty
import re
import subprocess
import sys
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import click
import pytest

from somafractalmemory.cli.main import EXIT_CODES, cli, exit_code
from somafractalmemory.errors import (
    BackendUnavailable,
    ConfigurationError,
    Conflict,
    Forbidden,
    InvalidInput,
    LockTimeout,
    MissingDependency,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    Unauthorized,
)

SOMA = Path(sys.executable).with_name("soma")
DOCS = Path(__file__).resolve().parents[2] / "docs" / "CLI.md"
_SCRUB = ("SOMA_", "MEMORY_MODE", "POSTGRES_", "REDIS_", "QDRANT_", "KAFKA_", "EVENTING_", "SFM_")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("soma-cli")


@pytest.fixture
def ns() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


def _env(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_SCRUB)}
    env["SOMA_FORCE_HASH_EMBEDDINGS"] = "1"
    env["SOMA_DATA_DIR"] = str(data_dir)
    return env


def run(
    data_dir: Path, *args: str, stdin: str | None = None, stderr: Any = subprocess.PIPE
) -> subprocess.CompletedProcess[str]:
    assert SOMA.exists(), f"console script not installed at {SOMA}"
    return subprocess.run(
        [str(SOMA), *args],
        input=stdin,
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
        env=_env(data_dir),
        cwd=data_dir,
        timeout=60,
    )


def ok(data_dir: Path, *args: str, stdin: str | None = None) -> str:
    proc = run(data_dir, *args, stdin=stdin)
    assert proc.returncode == 0, f"soma {' '.join(args)} -> {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    assert "Traceback" not in proc.stderr
    return proc.stdout


def ok_json(data_dir: Path, *args: str, stdin: str | None = None) -> Any:
    return json.loads(ok(data_dir, "--json", *args, stdin=stdin))


def fails(data_dir: Path, code: int, *args: str, stdin: str | None = None) -> str:
    proc = run(data_dir, *args, stdin=stdin)
    assert proc.returncode == code, (
        f"soma {' '.join(args)} -> {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    )
    assert "Traceback" not in proc.stderr
    return proc.stderr


# -- memories -------------------------------------------------------------------------------------


def test_store_get_history(data_dir: Path, ns: str) -> None:
    stored = ok_json(data_dir, "-n", ns, "store", "-1.5,2,3", '{"task": "write the docs", "importance": 5}')
    assert stored["coordinate"] == [-1.5, 2.0, 3.0]
    assert stored["payload"]["task"] == "write the docs"
    assert stored["memory_type"] == "episodic" and stored["namespace"] == ns

    payload = data_dir / f"{ns}-payload.json"
    payload.write_text('{"fact": "docs are written", "importance": 2}')
    out = ok(data_dir, "-n", ns, "store", "-1.5,2.0,3", f"@{payload}", "--type", "semantic")
    assert out.startswith("stored semantic memory at -1.5,2,3 (version 2, id " + stored["id"])

    out = ok(data_dir, "-n", ns, "get", "-1.5,2,3")
    assert re.search(r"^coordinate\s+-1\.5,2,3$", out, re.M)
    assert re.search(r"^version\s+2$", out, re.M)
    assert '"fact": "docs are written"' in out

    versions = ok_json(data_dir, "-n", ns, "history", "-1.5,2,3")
    assert [v["action"] for v in versions] == ["created", "updated"]
    assert "fact" in versions[1]["changed_keys"]


def test_remember_range_delete(data_dir: Path, ns: str) -> None:
    out = ok(data_dir, "-n", ns, "remember", '{"fact": "water boils at 100 C"}', "--type", "semantic")
    assert out.startswith("remembered semantic memory at ")
    at = ok_json(data_dir, "-n", ns, "remember", '{"text": "placed"}', "--coord", "0.5,0.5,0.5")
    assert at["coordinate"] == [0.5, 0.5, 0.5] and at["memory_type"] == "episodic"
    items = [
        {"coord": [1, 1, 1], "payload": {"text": "inside"}},
        {"coordinate": [2, 2, 2], "payload": {"text": "inside too"}, "type": "semantic"},
        {"coord": [9, 9, 9], "payload": {"text": "outside"}, "memory_type": "episodic"},
    ]
    assert ok_json(data_dir, "-n", ns, "store-bulk", "-", stdin=json.dumps(items))["stored"] == 3

    found = ok_json(data_dir, "-n", ns, "range", "--min", "0,0,0", "--max", "3,3,3")
    assert sorted(m["coordinate"] for m in found) == [[0.5, 0.5, 0.5], [1.0, 1.0, 1.0], [2.0, 2.0, 2.0]]
    table = ok(data_dir, "-n", ns, "range", "--min", "0,0,0", "--max", "3,3,3", "--type", "semantic")
    assert table.splitlines()[1].split()[:2] == ["2,2,2", "semantic"] and len(table.splitlines()) == 2

    assert ok_json(data_dir, "-n", ns, "delete", "1,1,1", "2.0,2,2", "2,2,2") == {
        "deleted": 2,
        "requested": 2,
    }
    assert "deleted 1 of 1 memory" in ok(data_dir, "-n", ns, "delete", "9,9,9")
    fails(data_dir, 1, "-n", ns, "get", "1,1,1")


# -- recall ---------------------------------------------------------------------------------------


def test_store_bulk_jsonl_from_stdin_then_recall(data_dir: Path, ns: str) -> None:
    lines = [
        json.dumps({"coord": [i, 0, 0], "payload": {"text": f"filler note number {i}", "tags": ["filler"]}})
        for i in range(1500)
    ]
    lines.insert(700, "")
    zebra = {"text": "the zebra crossing near the harbour", "tags": ["travel"], "importance": 3}
    lines.append(json.dumps({"coordinate": [5000, 1, 1], "payload": zebra, "memory_type": "semantic"}))
    proc = run(data_dir, "-n", ns, "store-bulk", "-", stdin="\n".join(lines) + "\n")
    assert proc.returncode == 0, proc.stderr
    assert "stored 1501 memories from 1501 items" in proc.stdout
    assert proc.stderr == ""  # no progress bar when stderr is not a terminal

    hits = ok_json(data_dir, "-n", ns, "recall", "zebra harbour", "--top-k", "3")
    assert hits[0]["coordinate"] == [5000.0, 1.0, 1.0]
    assert hits[0]["memory_type"] == "semantic" and hits[0]["text"] == zebra["text"]

    scored = ok_json(
        data_dir,
        "-n",
        ns,
        "recall",
        "crossing",
        "--scores",
        "-k",
        "10",
        "--type",
        "semantic",
        "--filter",
        "tags=travel",
        "--filters",
        '{"importance": {"gte": 2}}',
    )
    assert [h["coord"] for h in scored] == [[5000.0, 1.0, 1.0]]
    assert 0 < scored[0]["score"] <= 1 and set(scored[0]["parts"]) >= {"vector", "keyword", "importance"}

    assert ok_json(data_dir, "-n", ns, "recall", "zebra", "--min-score", "0.999") == []

    table = ok(data_dir, "-n", ns, "recall", "zebra harbour", "--scores", "-k", "1")
    header, row = table.splitlines()
    assert header.split()[:3] == ["score", "vector", "keyword"]
    assert "5000,1,1" in row and "semantic" in row


def test_progress_bar_only_on_a_terminal(data_dir: Path, ns: str) -> None:
    items = "\n".join(json.dumps({"coord": [i], "payload": {"text": f"n{i}"}}) for i in range(1200))

    def stderr_on_tty(*extra: str) -> bytes:
        master, slave = pty.openpty()
        try:
            proc = run(data_dir, "-n", ns, "store-bulk", "-", *extra, stdin=items, stderr=slave)
        finally:
            os.close(slave)
        assert proc.returncode == 0
        data = b""
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            if not chunk:
                break
            data += chunk
        os.close(master)
        return data

    assert b"storing" in stderr_on_tty()
    assert b"storing" not in stderr_on_tty("--no-progress")


# -- graph ----------------------------------------------------------------------------------------


def test_links_and_paths_persist_across_runs(data_dir: Path, ns: str) -> None:
    items = [
        {"coord": [0, 0, 0], "payload": {"text": "start"}},
        {"coord": [1, 1, 1], "payload": {"text": "middle"}},
        {"coord": [2, 2, 2], "payload": {"text": "end"}},
    ]
    ok(data_dir, "-n", ns, "store-bulk", "-", stdin="\n".join(json.dumps(i) for i in items))
    link = ok_json(data_dir, "-n", ns, "link", "0,0,0", "2,2,2", "--type", "next", "--weight", "0.5")
    assert link["type"] == "next" and link["weight"] == 0.5
    out = ok(data_dir, "-n", ns, "link", "0,0,0", "1,1,1", "--metadata", '{"why": "test"}')
    assert "linked 0,0,0 -> 1,1,1 (related, weight 1)" in out

    path = ok_json(data_dir, "-n", ns, "path", "0,0,0", "2,2,2")
    assert path == {"path": [[0.0, 0.0, 0.0], [2.0, 2.0, 2.0]], "hops": 1}
    out = ok(data_dir, "-n", ns, "path", "0,0,0", "1,1,1", "--link-type", "related", "--max-depth", "2")
    assert "0,0,0 -> 1,1,1  (1 hop)" in out

    out = ok_json(data_dir, "-n", ns, "neighbors", "0,0,0")
    assert sorted((n["to_coord"], n["type"], n["metadata"]) for n in out) == [
        ([1.0, 1.0, 1.0], "related", {"why": "test"}),
        ([2.0, 2.0, 2.0], "next", {}),
    ]
    args = ("neighbors", "2,2,2", "--direction", "in", "--link-type", "next", "--limit", "5")
    assert [n["from_coord"] for n in ok_json(data_dir, "-n", ns, *args)] == [[0.0, 0.0, 0.0]]


# -- transfer and admin ---------------------------------------------------------------------------


def test_export_import_into_another_namespace(data_dir: Path, ns: str, tmp_path: Path) -> None:
    items = [{"coord": [1, 0], "payload": {"text": "alpha"}}, {"coord": [2, 0], "payload": {"text": "beta"}}]
    ok(data_dir, "-n", ns, "store-bulk", "-", stdin=json.dumps(items))
    ok(data_dir, "-n", ns, "store", "1,0", '{"text": "alpha v2", "tags": ["a"]}', "--type", "semantic")
    ok(data_dir, "-n", ns, "link", "1,0", "2,0")

    dump = tmp_path / "dump.jsonl"
    summary = ok_json(data_dir, "-n", ns, "export", str(dump))
    assert summary["lines"] == len(dump.read_text().splitlines()) == 1 + 2 + 3 + 1
    streamed = run(data_dir, "-n", ns, "export", "-")
    assert streamed.returncode == 0 and streamed.stdout == dump.read_text()
    assert "exported 7 lines" in streamed.stderr

    other = ns + "b"
    out = ok(data_dir, "-n", other, "import", str(dump))
    assert "imported 2 memories, 3 history entries and 1 links" in out
    source_stats, target_stats = (ok_json(data_dir, "-n", name, "stats") for name in (ns, other))
    for key in ("total_memories", "episodic", "semantic", "links", "vectors", "keyword_documents"):
        assert source_stats[key] == target_stats[key], key
    assert target_stats["namespace"] == other and target_stats["total_memories"] == 2
    assert [v["action"] for v in ok_json(data_dir, "-n", other, "history", "1,0")] == ["created", "updated"]


def test_admin_commands(data_dir: Path, ns: str) -> None:
    items = [
        {"coord": [i, 5], "payload": {"text": f"met the team {i}", "tags": ["standup"]}} for i in range(3)
    ]
    ok(data_dir, "-n", ns, "store-bulk", "-", stdin=json.dumps(items))

    health = ok_json(data_dir, "-n", ns, "health")
    assert health["ok"] is True and health["backends"]["kv"]["backend"] == "sqlite"
    assert ok_json(data_dir, "-n", ns, "decay") == {"expired": 0, "decayed": 0, "pruned": 0}

    out = ok(data_dir, "-n", ns, "consolidate", "--window", "3600")
    assert out.startswith("created 1 semantic memory") and "semantic" in out.splitlines()[2]

    assert ok_json(data_dir, "-n", ns, "reindex", "--batch-size", "2") == {"reindexed": 4, "removed": 0}
    stats = ok(data_dir, "-n", ns, "stats")
    assert re.search(r"^total_memories\s+4$", stats, re.M)
    assert re.search(r"^semantic\s+1$", stats, re.M)
    assert re.search(r"^links\s+3$", stats, re.M)  # consolidated_from each source
    assert re.search(r"^vectors\s+4$", stats, re.M)


def test_global_options(data_dir: Path, tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    config.write_text('{"vector": {"backend": "memory"}}')
    own_dir = tmp_path / "own"
    report = ok_json(data_dir, "--data-dir", str(own_dir), "--config", str(config), "-n", "g1", "health")
    assert report["backends"]["vectors"]["backend"] == "memory"
    assert (own_dir / "memories.db").exists()
    stats = ok_json(
        data_dir, "--mode", "test", "--namespace", "g2", "--config", '{"redis": {"testing": true}}', "stats"
    )
    assert stats["mode"] == "test" and stats["namespace"] == "g2" and stats["total_memories"] == 0
    assert ok(data_dir, "--version").startswith("soma, version ")


# -- errors and exit codes ------------------------------------------------------------------------

BAD_ITEMS = json.dumps([{"coord": [i, 1], "payload": {"text": "x"} if i != 3 else [1]} for i in range(5)])
ERROR_CASES: list[tuple[str, int, list[str], str, str | None]] = [
    ("get absent", 1, ["get", "9,9,9"], "error: no memory at 9,9,9", None),
    ("delete absent", 1, ["delete", "9,9,8"], "error: 1 of the coordinates held no memory", None),
    ("history absent", 1, ["history", "9,9,7"], "error: no history", None),
    ("link absent", 1, ["link", "9,9,6", "9,9,5"], "error: from_coord: no memory", None),
    ("path absent", 1, ["path", "9,9,6", "9,9,5"], "error: no path", None),
    ("NaN", 2, ["get", "nan,1,2"], "error: coordinate: values must be finite", None),
    ("17 dims", 2, ["get", ",".join(["1"] * 17)], "error: coordinate: must have 1 to 16 values", None),
    ("letters", 2, ["store", "a,b", "{}"], "error: coordinate: values must be numbers", None),
    ("bad JSON", 2, ["store", "1,2", "{oops"], "error: payload: not valid JSON", None),
    ("non-object", 2, ["store", "1,2", "[1, 2]"], "error: payload: must be a JSON object", None),
    ("bad type", 2, ["store", "1,2", "{}", "--type", "dream"], "error: memory_type: must be", None),
    ("bad filter", 2, ["recall", "x", "--filter", "novalue"], "error: filter: expected key=value", None),
    ("bad top-k", 2, ["recall", "x", "--top-k", "0"], "error: top_k:", None),
    ("missing file", 2, ["store", "1", "@/nonexistent/p.json"], "error: payload: cannot read", None),
    ("bulk item", 2, ["store-bulk", "-", "--batch-size", "2"], "error: items[3].payload: must be", BAD_ITEMS),
    ("bulk line", 2, ["store-bulk", "-"], "error: line 2: not valid JSON", '{"coord": [1]}\n{oops\n'),
    ("bad mode", 2, ["--mode", "bogus", "stats"], "error: mode: unknown mode", None),
    ("bad config", 2, ["--config", "[1]", "stats"], "error: config: must be a JSON object", None),
    ("usage", 2, ["store", "1,2,3"], "Missing argument", None),
    ("needs services", 3, ["--mode", "evented_enterprise", "stats"], "error: evented_enterprise needs", None),
    (
        "unreachable",
        3,
        ["--config", '{"postgres": {"url": "postgresql://127.0.0.1:9/x"}}', "stats"],
        "error: ",
        None,
    ),
]


def test_error_exit_codes(data_dir: Path, ns: str) -> None:
    """The cases run in parallel; every failing case is reported."""

    def check(case: tuple[str, int, list[str], str, str | None]) -> str | None:
        name, code, args, expected, stdin = case
        proc = run(data_dir, "-n", ns, *args, stdin=stdin)
        if proc.returncode != code or expected not in proc.stderr or "Traceback" in proc.stderr:
            return f"{name}: exit {proc.returncode} (want {code}), stderr {proc.stderr!r}"
        return None

    with ThreadPoolExecutor(max_workers=4) as pool:
        problems = [p for p in pool.map(check, ERROR_CASES) if p]
    assert not problems, "\n".join(problems)


def test_exit_code_table() -> None:
    assert exit_code(NotFound("x")) == 1
    assert exit_code(InvalidInput("f", "m")) == 2
    assert exit_code(PayloadTooLarge("f", "m")) == 2
    assert exit_code(FileNotFoundError(2, "No such file", "x")) == 2
    assert exit_code(BackendUnavailable("Redis")) == 3
    assert exit_code(ConfigurationError("x")) == 3
    assert exit_code(MissingDependency("redis", "redis")) == 3
    assert exit_code(Conflict("x")) == 4
    assert exit_code(LockTimeout("x")) == 4
    assert exit_code(RateLimited(2.0)) == 3
    assert exit_code(Unauthorized("x")) == 5
    assert exit_code(Forbidden("x")) == 5
    assert exit_code(BrokenPipeError()) == 141
    assert {code for _, code in EXIT_CODES} == {1, 2, 3, 4, 5, 141}


# -- docs -----------------------------------------------------------------------------------------


def _sections(text: str) -> dict[str, str]:
    parts = re.split(r"^### `soma ([a-z-]+)`\s*$", text, flags=re.M)
    return {parts[i]: parts[i + 1] for i in range(1, len(parts) - 1, 2)}


def _long_options(params: Sequence[click.Parameter]) -> list[str]:
    return [o for p in params if isinstance(p, click.Option) for o in p.opts if o.startswith("--")]


def test_every_command_and_option_is_documented() -> None:
    text = DOCS.read_text(encoding="utf-8")
    sections = _sections(text)
    missing = [name for name in cli.commands if name not in sections]
    assert not missing, f"commands missing from docs/CLI.md: {missing}"
    for name, command in cli.commands.items():
        section = sections[name]
        examples = section.split("```")[1::2]
        assert any(f"soma {name}" in block for block in examples), (
            f"docs/CLI.md: `soma {name}` has no example"
        )
        for option in _long_options(command.params):
            if option == "--help":
                continue
            assert option in section, f"docs/CLI.md: `soma {name}` does not document {option}"
    for option in _long_options(cli.params):
        if option not in ("--help",):
            assert option in text, f"docs/CLI.md does not document the global option {option}"
