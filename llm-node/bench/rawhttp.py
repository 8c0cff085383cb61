"""A minimal HTTP/1.1 client on asyncio streams, for measuring, not for general use.

Why not httpx (used for the control requests: /ready, /metrics): its asyncio connection pool
costs milliseconds per request once dozens of requests are in flight. On a 2-core machine, 50
simultaneous GET /health through one httpx.AsyncClient took 340-420 ms at the median, the same
burst over plain sockets 16-18 ms: the figures would be the client's, not the server's. This
client does nothing per request beyond writing the request and parsing the answer: one
keep-alive connection per simulated client, Content-Length and chunked bodies, nothing else.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

# Reconnect before a request when the connection has been idle this long (uvicorn: 5 s).
IDLE_REOPEN_SECONDS = 3.0


class ProtocolError(Exception):
    """The server's answer is not the HTTP/1.1 this client understands."""


@dataclass
class Head:
    status: int
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def chunked(self) -> bool:
        return "chunked" in self.headers.get("transfer-encoding", "").lower()

    @property
    def keep_alive(self) -> bool:
        return self.headers.get("connection", "").lower() != "close"


class Connection:
    """One keep-alive HTTP/1.1 connection: send a request, read its head, then its body."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._used = 0.0

    async def open(self) -> Connection:
        """Connect, or reconnect when the server may have dropped the idle connection.

        uvicorn closes keep-alive connections idle for 5 s; callers call this before they start
        a timer, so a reconnection is never part of a measured figure.
        """
        stale = self._reader is not None and (
            self._reader.at_eof() or time.monotonic() - self._used > IDLE_REOPEN_SECONDS
        )
        if stale:
            self.close()
        if self._writer is None:
            self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        self._used = time.monotonic()
        return self

    def close(self) -> None:
        """Close the socket at once (mid-response too: the server sees the client go away)."""
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None

    async def send(self, method: str, path: str, body: dict[str, Any] | None = None) -> None:
        await self.open()
        assert self._writer is not None
        payload = b"" if body is None else json.dumps(body).encode()
        head = f"{method} {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
        if body is not None:
            head += f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n"
        self._writer.write(head.encode() + b"\r\n" + payload)
        await self._writer.drain()
        self._used = time.monotonic()

    async def read_head(self) -> Head:
        assert self._reader is not None
        raw = await self._reader.readuntil(b"\r\n\r\n")
        lines = raw.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1."):
            raise ProtocolError(f"bad status line {lines[0]!r}")
        head = Head(int(parts[1]))
        for line in lines[1:]:
            if ":" in line:
                name, value = line.split(":", 1)
                head.headers[name.strip().lower()] = value.strip()
        return head

    async def iter_body(self, head: Head) -> AsyncIterator[bytes]:
        """The body as it arrives (each chunk of a chunked body as soon as it is complete)."""
        assert self._reader is not None
        reader = self._reader
        if head.chunked:
            while True:
                size_line = await reader.readuntil(b"\r\n")
                size = int(size_line.split(b";", 1)[0].strip(), 16)
                if size == 0:
                    await reader.readuntil(b"\r\n")  # no trailers are sent by uvicorn
                    break
                data = await reader.readexactly(size + 2)
                yield data[:-2]
        elif "content-length" in head.headers:
            length = int(head.headers["content-length"])
            if length:
                yield await reader.readexactly(length)
        else:
            yield await reader.read()
            head.headers["connection"] = "close"
        self._used = time.monotonic()
        if not head.keep_alive:
            self.close()

    async def read_body(self, head: Head) -> bytes:
        return b"".join([piece async for piece in self.iter_body(head)])


async def iter_lines(chunks: AsyncIterator[bytes]) -> AsyncIterator[str]:
    """Split a streamed body into lines (for server-sent events)."""
    buffer = b""
    async for chunk in chunks:
        buffer += chunk
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            yield line.rstrip(b"\r").decode()
    if buffer:
        yield buffer.decode()
