"""The transport's connections on asyncio's streams: real TLS servers on loopback, each one
behaving as a Graph front end sometimes does (keeps a connection, closes it while idle, never
answers, presents a certificate we do not trust), and what the exporter makes of it."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import httpx
import pytest
import trustme

from exporter.graph.failures import NETWORK_ERROR, TIMEOUT, classify_transport_error, describe_error
from exporter.graph.transport import Transport, build_ssl_context

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
ANSWER = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok"


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@asynccontextmanager
async def tls_server(ca: trustme.CA, handler: Handler) -> AsyncIterator[str]:
    """An HTTPS server on loopback (certificate for 127.0.0.1 from ``ca``); yields its URL."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    server = await asyncio.start_server(handler, "127.0.0.1", 0, ssl=context)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"https://127.0.0.1:{port}/"
    finally:
        server.close()


async def read_request(reader: asyncio.StreamReader) -> bool:
    """Read one request's head; False when the client closed the connection."""
    try:
        await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        return False
    return True


@pytest.fixture(scope="module")
def ca_file(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> str:
    bundle = tmp_path_factory.mktemp("ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    return str(bundle)


@asynccontextmanager
async def open_transport(ca_file: str | None) -> AsyncIterator[Transport]:
    """The exporter's transport trusting ``ca_file`` (None: the system's roots only)."""
    transport = Transport(build_ssl_context(ca_file), concurrency=4)
    try:
        yield transport
    finally:
        await transport.aclose()


async def test_requests_go_through_the_asyncio_backend_and_reuse_the_connection(
    ca: trustme.CA, ca_file: str
) -> None:
    async def keep_alive(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await read_request(reader):
            writer.write(ANSWER)
            await writer.drain()
        writer.close()

    async with open_transport(ca_file) as transport, tls_server(ca, keep_alive) as url:
        for _ in range(3):
            response = await transport.request("GET", url, timeout=5)
            assert (response.status_code, response.body) == (200, b"ok")
        assert transport.backend.connections_opened == 1


async def test_a_connection_the_server_closed_while_idle_is_not_reused(
    ca: trustme.CA, ca_file: str
) -> None:
    closed = asyncio.Event()

    async def one_answer_then_close(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        if await read_request(reader):
            writer.write(ANSWER)  # keep-alive as far as the client knows
            await writer.drain()
        writer.close()
        await writer.wait_closed()  # close_notify and FIN are in the client's socket
        closed.set()

    async with open_transport(ca_file) as transport, tls_server(ca, one_answer_then_close) as url:
        assert (await transport.request("GET", url, timeout=5)).body == b"ok"
        await asyncio.wait_for(closed.wait(), 5)
        for _ in range(3):  # the loop's next turns read them: the idle connection is shut
            await asyncio.sleep(0)
        second = await transport.request("GET", url, timeout=5)
        assert second.body == b"ok"
        assert transport.backend.connections_opened == 2


async def test_an_untrusted_certificate_is_a_network_error_that_says_so(
    ca: trustme.CA,
) -> None:
    async def never_reached(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    async with open_transport(None) as transport, tls_server(ca, never_reached) as url:
        with pytest.raises(httpx.ConnectError) as failed:
            await transport.request("GET", url, timeout=5)
    assert classify_transport_error(failed.value) == NETWORK_ERROR
    assert "CERTIFICATE_VERIFY_FAILED" in describe_error(failed.value)


async def test_a_refused_connection_is_a_network_error() -> None:
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    async with open_transport(None) as transport:
        with pytest.raises(httpx.ConnectError) as failed:
            await transport.request("GET", f"https://127.0.0.1:{port}/", timeout=5)
    assert classify_transport_error(failed.value) == NETWORK_ERROR


async def test_a_server_that_never_answers_is_a_timeout(ca: trustme.CA, ca_file: str) -> None:
    release = asyncio.Event()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await release.wait()
        writer.close()

    async with open_transport(ca_file) as transport, tls_server(ca, silent) as url:
        with pytest.raises((httpx.TimeoutException, TimeoutError)) as failed:
            await transport.request("GET", url, timeout=0.3)
        release.set()
    assert classify_transport_error(failed.value) == TIMEOUT


async def test_a_response_cut_short_is_a_network_error(ca: trustme.CA, ca_file: str) -> None:
    async def cut(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nonly this")
        await writer.drain()
        writer.close()

    async with open_transport(ca_file) as transport, tls_server(ca, cut) as url:
        with pytest.raises(httpx.TransportError) as failed:
            await transport.request("GET", url, timeout=5)
    assert classify_transport_error(failed.value) == NETWORK_ERROR
