"""Raw HTTP in tests: requests no well-behaved client library would send."""

from __future__ import annotations

import asyncio


async def raw_status_line(url: str, request: bytes) -> bytes:
    """The status line the server at ``url`` (http://host:port) answers a hand-written request with."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(request)
        await writer.drain()
        return await asyncio.wait_for(reader.readline(), 5)
    finally:
        writer.close()
