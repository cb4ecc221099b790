"""``soma mcp`` end to end, through the real MCP client of the ``mcp`` package.

The server runs as a subprocess of the installed console script, over stdio
(launched by the client, as an agent would) and over streamable HTTP; the
tests call every tool and read the structured results.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

pytest.importorskip("mcp", reason="the [mcp] extra is not installed")

from mcp import ClientSession, StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.types import CallToolResult

from somafractalmemory.mcp import TOOL_NAMES

SOMA = Path(sys.executable).with_name("soma")
_SCRUB = ("SOMA_", "MEMORY_MODE", "POSTGRES_", "REDIS_", "QDRANT_", "KAFKA_", "EVENTING_", "SFM_")


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_SCRUB)}
    env["SOMA_FORCE_HASH_EMBEDDINGS"] = "1"
    return env


def _run(scenario: Callable[[], Awaitable[None]], timeout: float = 45.0) -> None:
    async def bounded() -> None:
        with anyio.fail_after(timeout):
            await scenario()

    anyio.run(bounded)


async def call(session: ClientSession, tool: str, **arguments: Any) -> dict[str, Any]:
    """Call a tool that must succeed; its structured result."""
    result = await session.call_tool(tool, arguments)
    assert isinstance(result, CallToolResult)
    text = " ".join(getattr(block, "text", "") for block in result.content)
    assert not result.is_error, f"{tool}({arguments}) failed: {text}"
    assert isinstance(result.structured_content, dict), result
    return result.structured_content


async def tool_error(session: ClientSession, tool: str, **arguments: Any) -> str:
    """Call a tool that must fail; the error text the agent reads."""
    result = await session.call_tool(tool, arguments)
    assert isinstance(result, CallToolResult)
    assert result.is_error, f"{tool}({arguments}) should have failed: {result}"
    return " ".join(getattr(block, "text", "") for block in result.content)


def test_stdio_every_tool(tmp_path: Path) -> None:
    assert SOMA.exists(), f"console script not installed at {SOMA}"
    params = StdioServerParameters(
        command=str(SOMA),
        args=["--mode", "development", "--data-dir", str(tmp_path), "-n", "agent", "mcp"],
        env=_env(),
        cwd=str(tmp_path),
    )

    log = tmp_path / "server.log"

    async def scenario() -> None:
        with log.open("w") as errlog:
            async with stdio_client(params, errlog=errlog) as streams, ClientSession(*streams) as session:
                await exercise(session)

    async def exercise(session: ClientSession) -> None:
        init = await session.initialize()
        assert init.server_info.name == "soma-fractal-memory"
        assert "agent" in (init.instructions or "")

        listed = {tool.name: tool for tool in (await session.list_tools()).tools}
        assert set(listed) == set(TOOL_NAMES) == {
            "store", "remember", "recall", "link", "neighbors", "path", "range", "delete", "stats",
        }  # fmt: skip
        for tool in listed.values():
            assert tool.description, tool.name
            assert tool.input_schema["type"] == "object", tool.name
            assert tool.output_schema and tool.output_schema["type"] == "object", tool.name
        store_schema = listed["store"].input_schema
        assert store_schema["required"] == ["coordinate", "payload"]
        assert store_schema["properties"]["memory_type"]["enum"] == ["episodic", "semantic"]
        coordinate_kinds = {s["type"] for s in store_schema["properties"]["coordinate"]["anyOf"]}
        assert coordinate_kinds == {"array", "string"}
        recall_props = listed["recall"].input_schema["properties"]
        assert listed["recall"].input_schema["required"] == ["query"]
        assert set(recall_props) == {"query", "top_k", "memory_type", "filters", "min_score"}
        assert (recall_props["top_k"]["minimum"], recall_props["top_k"]["maximum"]) == (1, 1000)
        assert set(listed["range"].input_schema["required"]) == {"min", "max"}
        assert listed["recall"].annotations and listed["recall"].annotations.read_only_hint

        # store (text coordinate) and remember (the service picks the coordinate)
        stored = await call(
            session,
            "store",
            coordinate="1,2,3",
            payload={"text": "the user drinks green tea every morning", "importance": 5},
            memory_type="semantic",
        )
        assert stored["coordinate"] == [1.0, 2.0, 3.0]
        assert (stored["namespace"], stored["memory_type"], stored["version"]) == ("agent", "semantic", 1)
        second = await call(
            session, "store", coordinate=[4, 5, 6], payload={"text": "the user booked a train to Lyon"}
        )
        assert second["memory_type"] == "episodic" and "timestamp" in second["payload"]
        remembered = await call(session, "remember", payload={"fact": "the cat is called Miso"})
        picked = remembered["coordinate"]
        assert picked and all(isinstance(c, float) for c in picked)

        # recall: hits with coord, payload, score and parts, best first
        found = await call(session, "recall", query="green tea", top_k=2)
        hits = found["hits"]
        assert 1 <= len(hits) <= 2
        assert hits[0]["coord"] == [1.0, 2.0, 3.0]
        assert hits[0]["payload"]["text"].startswith("the user drinks green tea")
        assert hits[0]["payload"]["coordinate"] == [1.0, 2.0, 3.0]
        assert 0.0 < hits[0]["score"] <= 1.0
        assert set(hits[0]["parts"]) == {"vector", "keyword", "importance", "recency", "graph"}
        assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)
        only_semantic = await call(session, "recall", query="train", memory_type="semantic", top_k=10)
        assert all(h["payload"]["memory_type"] == "semantic" for h in only_semantic["hits"])
        important = {"importance": {"gte": 5}}
        filtered = await call(session, "recall", query="user", filters=important, top_k=10)
        assert [h["coord"] for h in filtered["hits"]] == [[1.0, 2.0, 3.0]]
        assert (await call(session, "recall", query="tea", min_score=1.0))["hits"] == []

        # link, neighbors, path
        link = await call(
            session, "link", from_coord="1,2,3", to_coord=[4, 5, 6], link_type="causes", weight=0.5
        )
        assert (link["from_coord"], link["to_coord"]) == ([1.0, 2.0, 3.0], [4.0, 5.0, 6.0])
        assert (link["link_type"], link["weight"]) == ("causes", 0.5)
        await call(session, "link", from_coord=[4, 5, 6], to_coord=picked)
        out = (await call(session, "neighbors", coord="1,2,3"))["links"]
        assert [(x["to_coord"], x["link_type"]) for x in out] == [([4.0, 5.0, 6.0], "causes")]
        incoming = (await call(session, "neighbors", coord=[4, 5, 6], direction="in"))["links"]
        assert [x["from_coord"] for x in incoming] == [[1.0, 2.0, 3.0]]
        assert (await call(session, "neighbors", coord="4,5,6", link_type="causes"))["links"] == []
        route = await call(session, "path", from_coord="1,2,3", to_coord=picked)
        assert route == {"path": [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], picked], "found": True, "hops": 2}
        only_causes = await call(session, "path", from_coord="1,2,3", to_coord=picked, link_type="causes")
        assert only_causes == {"path": [], "found": False, "hops": 0}

        # range
        box = await call(session, "range", min="0,0,0", max=[5, 5, 5])
        assert [m["coordinate"] for m in box["memories"]] == [[1.0, 2.0, 3.0]]
        box = await call(session, "range", min=[0, 0, 0], max=[10, 10, 10], memory_type="episodic")
        assert [m["coordinate"] for m in box["memories"]] == [[4.0, 5.0, 6.0]]

        # stats, delete, stats again
        stats = await call(session, "stats")
        assert (stats["namespace"], stats["mode"]) == ("agent", "development")
        assert (stats["total_memories"], stats["semantic"], stats["links"]) == (3, 1, 2)
        gone = await call(session, "delete", coordinate="4,5,6")
        assert gone == {"coordinate": [4.0, 5.0, 6.0], "deleted": True}
        assert (await call(session, "delete", coordinate=[4, 5, 6]))["deleted"] is False
        stats = await call(session, "stats")
        assert (stats["total_memories"], stats["episodic"], stats["links"]) == (2, 1, 0)
        assert (await call(session, "path", from_coord="1,2,3", to_coord=picked))["found"] is False

        # errors are tool errors naming the field; the server keeps serving
        message = await tool_error(session, "store", coordinate="nan,1,2", payload={"text": "x"})
        assert "coordinate: values must be finite" in message
        # the client's JSON encoder sends NaN as null
        message = await tool_error(session, "store", coordinate=[float("nan"), 1, 2], payload={"t": "x"})
        assert "coordinate: values must be numbers" in message
        message = await tool_error(session, "store", coordinate=[1, 2], payload={"importance": -1})
        assert "payload.importance" in message
        message = await tool_error(session, "link", from_coord="1,2,3", to_coord="x,y")
        assert "to_coord: values must be numbers" in message
        message = await tool_error(session, "neighbors", coord="")
        assert "coord: expected comma-separated numbers" in message
        message = await tool_error(session, "path", from_coord="1,2", to_coord=[1, "inf"])
        assert "to_coord: values must be finite" in message
        message = await tool_error(session, "range", min=[0, 0], max=[1])
        assert "max: must have as many values as min" in message
        message = await tool_error(session, "delete", coordinate=list(range(17)))
        assert "coordinate: must have 1 to 16 values" in message
        message = await tool_error(session, "link", from_coord="1,2,3", to_coord="9,9,9")
        assert "to_coord: no memory at 9.0,9.0,9.0" in message
        message = await tool_error(session, "recall", query="tea", top_k=0)
        assert "top_k" in message
        message = await tool_error(session, "store", coordinate="1", payload={"x": 1}, memory_type="x")
        assert "memory_type" in message
        assert (await call(session, "stats"))["total_memories"] == 2

    _run(scenario)
    output = log.read_text(errors="replace")
    assert "Tool 'store' failed" in output  # tool errors are logged, plainly
    assert "Traceback" not in output, output
    # the server wrote to the data directory and let go of it
    stats = subprocess.run(
        [str(SOMA), "--json", "--data-dir", str(tmp_path), "-n", "agent", "stats"],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=60,
    )
    assert stats.returncode == 0, stats.stderr
    assert json.loads(stats.stdout)["total_memories"] == 2


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_for_port(proc: subprocess.Popen[bytes], port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"soma mcp exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"soma mcp did not listen on port {port} within {timeout}s")


def test_streamable_http(tmp_path: Path) -> None:
    port = _free_port()
    args = ["--data-dir", str(tmp_path), "-n", "web", "mcp", "--transport", "http", "--port", str(port)]
    log = tmp_path / "server.log"
    with log.open("wb") as stderr:
        proc = subprocess.Popen(
            [str(SOMA), *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            env=_env(),
            cwd=tmp_path,
        )
    try:
        _wait_for_port(proc, port)

        async def scenario() -> None:
            url = f"http://127.0.0.1:{port}/mcp"
            async with streamable_http_client(url) as (read, write), ClientSession(read, write) as session:
                await session.initialize()
                names = {tool.name for tool in (await session.list_tools()).tools}
                assert names == set(TOOL_NAMES)
                stored = await call(session, "store", coordinate=[7, 8], payload={"task": "water the plants"})
                assert (stored["namespace"], stored["coordinate"]) == ("web", [7.0, 8.0])
                hits = (await call(session, "recall", query="plants"))["hits"]
                assert hits and hits[0]["coord"] == [7.0, 8.0]
                assert "finite" in await tool_error(session, "delete", coordinate="inf")

        _run(scenario)
    finally:
        proc.terminate()
        try:
            code = proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    output = log.read_text(errors="replace")
    assert code == 0, f"soma mcp exited with {code}\n{output}"
    assert "Traceback" not in output, output
    # the memory system was closed on SIGTERM: a new process sees the memory
    stats = subprocess.run(
        [str(SOMA), "--json", "--data-dir", str(tmp_path), "-n", "web", "recall", "plants"],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=60,
    )
    assert stats.returncode == 0, stats.stderr
    assert "water the plants" in stats.stdout


def _python(code: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter in which ``import mcp`` fails."""
    blocked = "import sys; sys.modules['mcp'] = None\n"
    return subprocess.run([sys.executable, "-c", blocked + code], capture_output=True, text=True, timeout=60)


def test_missing_extra_names_the_install_command() -> None:
    install = "pip install 'somafractalmemory[mcp]'"
    proc = _python(
        "from somafractalmemory.errors import MissingDependency\n"
        "try:\n"
        "    import somafractalmemory.mcp\n"
        "except MissingDependency as exc:\n"
        "    assert isinstance(exc, ImportError)\n"
        "    print(exc)\n"
    )
    assert proc.returncode == 0, proc.stderr
    assert install in proc.stdout
    proc = _python("from somafractalmemory.cli.main import main\nmain(['--mode', 'test', 'mcp'])\n")
    assert proc.returncode == 3, proc.stderr
    assert proc.stderr.strip() == f"error: mcp is not installed; install it with: {install}"
