"""A small asyncio TCP proxy for fault injection (e.g. cutting aribot's ARI WebSocket)."""

from __future__ import annotations

import asyncio
import contextlib


class TcpProxy:
    """Forward 127.0.0.1:<port> to ``target_host:target_port``; can cut or refuse connections.

    ``refuse = True`` closes new connections at once (the target stays untouched);
    ``await drop_all()`` aborts every live connection on both sides (RST, no FIN handshake).
    """

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target_host = target_host
        self.target_port = target_port
        self.refuse = False
        self.port = 0
        self.accepted = 0  # connections forwarded so far
        self._server: asyncio.Server | None = None
        self._links: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self, port: int = 0) -> int:
        """Listen on 127.0.0.1 (``port`` 0: any free port); return the port."""
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    @property
    def url_host(self) -> str:
        """``127.0.0.1:<port>``, handy for building URLs."""
        return f"127.0.0.1:{self.port}"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.refuse:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(self.target_host, self.target_port)
        except OSError:
            writer.transport.abort()
            return
        self.accepted += 1
        link = (writer, up_writer)
        self._links.add(link)
        pumps = [
            asyncio.create_task(self._pump(reader, up_writer)),
            asyncio.create_task(self._pump(up_reader, writer)),
        ]
        self._tasks.update(pumps)
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._links.discard(link)
            for task in pumps:
                task.cancel()
                self._tasks.discard(task)
            for w in link:
                w.transport.abort()

    @staticmethod
    async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()

    async def drop_all(self) -> int:
        """Abort every live connection (both sides); return how many were dropped."""
        links = list(self._links)
        for client, upstream in links:
            client.transport.abort()
            upstream.transport.abort()
        for _ in range(200):  # let the handlers notice and clean up (normally 1-2 loop turns)
            if not any(link in self._links for link in links):
                break
            await asyncio.sleep(0.005)
        return len(links)

    @property
    def live(self) -> int:
        """Connections currently open through the proxy."""
        return len(self._links)

    async def close(self) -> None:
        """Stop listening and drop every connection."""
        if self._server is not None:
            self._server.close()
            await self.drop_all()
            await self._server.wait_closed()
            self._server = None
