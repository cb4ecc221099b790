"""One HTTP/1.1 request and its answer over an asyncio stream, for the load generators.

No client library: on a small machine the load generator shares the cores
with the server, and a full client costs more CPU per request than this.
"""

from __future__ import annotations

import asyncio


async def exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, head: bytes, body: bytes
) -> str:
    """Send ``head`` (request line and headers, without Content-Length) and
    ``body`` on a keep-alive connection; read the whole answer; return its
    status code."""
    writer.write(head + b"Content-Length: %d\r\n\r\n" % len(body) + body)
    status_line = await reader.readline()
    if not status_line:
        raise ConnectionError("the server closed the connection")
    length = 0
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b""):
            break
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    await reader.readexactly(length)
    parts = status_line.split()
    return parts[1].decode() if len(parts) > 1 else "?"
