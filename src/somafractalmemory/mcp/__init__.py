"""The MCP server of Soma Fractal Memory (needs the ``[mcp]`` extra).

``build_server(memory)`` exposes one namespace of a memory system to AI
agents as MCP tools; ``soma mcp`` runs it over stdio or streamable HTTP.
Importing this package without the ``mcp`` package installed raises
``MissingDependency`` (an ``ImportError``) naming the extra to install.
"""

from __future__ import annotations

from .server import SERVER_NAME, TOOL_NAMES, build_server

__all__ = ["SERVER_NAME", "TOOL_NAMES", "build_server"]
