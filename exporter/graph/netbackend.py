"""httpcore's network layer on asyncio's own streams (``network_backend``, httpcore's public
extension point), in place of its default one through anyio.

Why: a 400 KB page of ``userRegistrationDetails`` arrives as some 25 TLS records. anyio's TLS
stream decrypts one record per read, and each read climbs back up through httpcore, h11 and
httpx. asyncio's SSL transport decrypts everything the socket has in one go into a stream
buffer, so a read takes up to 64 KB at once: about 7 reads a page instead of 25, and 2.38 →
1.78 ms of CPU a page (docs/performance.md). Everything above stays httpx: pools, limits,
timeouts, TLS settings (the same ``ssl.SSLContext``) and the exceptions callers see, which
are httpcore's, mapped as its anyio backend maps them.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Iterable, Iterator
from typing import Any

import httpcore

# A connection's receive buffer: asyncio stops reading the socket past twice this much.
BUFFER_LIMIT = 1024 * 1024


@contextlib.contextmanager
def _mapped(timeout_error: type[Exception], os_error: type[Exception]) -> Iterator[None]:
    """asyncio's and the socket's exceptions as httpcore's (as its anyio backend does)."""
    try:
        yield
    except TimeoutError as err:
        raise timeout_error(str(err) or "timed out") from err
    except (OSError, EOFError) as err:  # ssl.SSLError is an OSError
        raise os_error(str(err) or type(err).__name__) from err


class AsyncioStream(httpcore.AsyncNetworkStream):
    """One connection: asyncio's ``StreamReader``/``StreamWriter``."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        with _mapped(httpcore.ReadTimeout, httpcore.ReadError):
            async with asyncio.timeout(timeout):
                return await self._reader.read(max_bytes)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if not buffer:
            return
        with _mapped(httpcore.WriteTimeout, httpcore.WriteError):
            async with asyncio.timeout(timeout):
                self._writer.write(buffer)
                await self._writer.drain()

    async def aclose(self) -> None:
        # Closing the transport is enough; waiting for a peer's TLS close_notify is not.
        self._writer.close()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.AsyncNetworkStream:
        with _mapped(httpcore.ConnectTimeout, httpcore.ConnectError):
            try:
                async with asyncio.timeout(timeout):
                    await self._writer.start_tls(ssl_context, server_hostname=server_hostname)
            except BaseException:
                self._writer.close()
                raise
        return self

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable":
            # An idle connection the server closed (or wrote to) is not reused.
            return self._reader.at_eof() or self._writer.transport.is_closing()
        name = {
            "ssl_object": "ssl_object",
            "client_addr": "sockname",
            "server_addr": "peername",
            "socket": "socket",
        }.get(info)
        return None if name is None else self._writer.get_extra_info(name)


class AsyncioBackend(httpcore.AsyncNetworkBackend):
    """Connections for httpcore's pools, on the running event loop."""

    def __init__(self) -> None:
        self.connections_opened = 0

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        with _mapped(httpcore.ConnectTimeout, httpcore.ConnectError):
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_connection(
                    host,
                    port,
                    local_addr=(local_address, 0) if local_address else None,
                    limit=BUFFER_LIMIT,
                )
        self.connections_opened += 1
        sock = writer.get_extra_info("socket")
        for option in socket_options or ():
            sock.setsockopt(*option)
        return AsyncioStream(reader, writer)

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        with _mapped(httpcore.ConnectTimeout, httpcore.ConnectError):
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_unix_connection(path, limit=BUFFER_LIMIT)
        return AsyncioStream(reader, writer)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
