"""The exporter's one HTTP client, shared by Graph calls and MSAL's token requests.

One TLS setup and a few httpcore connection pools serve everything: httpx builds each request
(URL, headers, Host), httpcore sends it, through public API only. A semaphore
no larger than the pool keeps requests from queueing inside httpcore's pool, whose bookkeeping
grows with the queue, and caps requests in flight at ``concurrency`` for all tenants together.
MSAL is synchronous: :class:`MsalHttpAdapter` gives it the ``get``/``post`` interface it wants
and runs each request on the event loop, so ``tls_ca_file`` applies to MSAL as well and
``REQUESTS_CA_BUNDLE`` (which ``requests`` would honour) plays no part.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import ssl
import threading
import urllib.parse
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import httpcore
import httpx

from exporter import __version__
from exporter.graph.netbackend import AsyncioBackend

MAX_BODY_BYTES = 1024 * 1024
# Connections per httpx pool (see Transport).
POOL_SIZE = 4
# Idle connections are kept this long for the next poll.
KEEPALIVE_SECONDS = 60.0
USER_AGENT = f"entra-registration-exporter/{__version__}"
DEFAULT_HEADERS = MappingProxyType({"User-Agent": USER_AGENT, "Accept-Encoding": "gzip"})


class ResponseBodyError(Exception):
    """The response body was over the size cap or could not be decoded."""


@dataclass(frozen=True, slots=True)
class HttpResponse:
    """A fully read response."""

    status_code: int
    headers: httpx.Headers
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")


def build_ssl_context(ca_file: str | None) -> ssl.SSLContext:
    """The system trust store, plus ``ca_file`` when given."""
    context = ssl.create_default_context()
    if ca_file:
        context.load_verify_locations(cafile=ca_file)
    return context


class Transport:
    """Shared async HTTP client with a global in-flight cap and a body-size cap.

    Inside, the connections are split over a few small httpx pools (:data:`POOL_SIZE` each):
    httpcore's pool does work quadratic in its number of connections every time a request
    starts or ends (it checks every connection's socket, and for each idle one counts them
    all), which at 50 connections cost more CPU than the requests themselves. Each request
    goes to the least busy pool; the semaphore keeps the total at ``concurrency``, so no
    request ever queues inside a pool.

    Requests go to httpcore's ``AsyncConnectionPool`` directly (its public
    ``handle_async_request``), built with our network backend (see netbackend), not through
    ``httpx.AsyncClient``: what the client adds — cookies, auth flows, redirects, event hooks —
    the exporter uses none of, and it cost a quarter of a request's CPU. httpcore's exceptions
    are raised as httpx's (:data:`HTTPX_ERRORS`), the one family the rest of the code knows.
    """

    def __init__(
        self, ssl_context: ssl.SSLContext, concurrency: int, max_body_bytes: int = MAX_BODY_BYTES
    ) -> None:
        pools = max(1, math.ceil(concurrency / POOL_SIZE))
        per_pool = math.ceil(concurrency / pools)
        self.backend = AsyncioBackend()  # every pool's connections (and their count)
        self._pools = [_pool(ssl_context, per_pool, self.backend) for _ in range(pools)]
        self._busy = [0] * pools
        self._in_flight = asyncio.Semaphore(concurrency)
        self._max_body_bytes = max_body_bytes
        self.loop = asyncio.get_running_loop()

    async def request(
        self,
        method: str,
        url: str,
        *,
        timeout: float,
        headers: Mapping[str, str] | None = None,
        content: bytes | None = None,
    ) -> HttpResponse:
        """Send one request and read the whole body (at most the cap) within ``timeout``."""
        request = httpx.Request(
            method,
            url,
            headers={**DEFAULT_HEADERS, **(headers or {})},
            content=content,
        )
        outgoing = httpcore.Request(
            request.method,
            httpcore.URL(
                scheme=request.url.raw_scheme,
                host=request.url.raw_host,
                port=request.url.port,
                target=request.url.raw_path,
            ),
            headers=request.headers.raw,
            content=content or b"",
            extensions={"timeout": httpx.Timeout(timeout).as_dict()},
        )
        async with self._in_flight:
            index = self._busy.index(min(self._busy))
            self._busy[index] += 1
            try:
                with as_httpx_errors():
                    headers, status, body = await self._exchange(index, outgoing, timeout)
            finally:
                self._busy[index] -= 1
        encoding = headers.get("content-encoding", "").lower()
        if encoding and encoding != "identity":
            body = _decode_body(body, encoding, self._max_body_bytes)
        return HttpResponse(status, headers, body)

    async def _exchange(
        self, index: int, request: httpcore.Request, timeout: float
    ) -> tuple[httpx.Headers, int, bytes]:
        # The read timeout covers each socket read; the overall bound covers a server that
        # trickles bytes forever.
        async with asyncio.timeout(timeout):
            response = await self._pools[index].handle_async_request(request)
            try:
                body = await self._read_body(response)
            finally:
                await response.aclose()
        return httpx.Headers(response.headers), response.status, body

    async def _read_body(self, response: httpcore.Response) -> bytes:
        """The whole body as sent (still encoded), refused past the size cap."""
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.aiter_stream():
            size += len(chunk)
            if size > self._max_body_bytes:
                raise ResponseBodyError(f"response body larger than {self._max_body_bytes} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    async def aclose(self) -> None:
        """Close every pooled connection."""
        for pool in self._pools:
            await pool.aclose()


def _pool(
    ssl_context: ssl.SSLContext, connections: int, backend: AsyncioBackend
) -> httpcore.AsyncConnectionPool:
    """An httpcore pool (HTTP/1.1) whose connections run on asyncio's streams (netbackend)."""
    return httpcore.AsyncConnectionPool(
        ssl_context=ssl_context,
        max_connections=connections,
        max_keepalive_connections=connections,
        keepalive_expiry=KEEPALIVE_SECONDS,
        network_backend=backend,
    )


# httpcore's exception → httpx's, most specific first (httpx's own transport maps them alike).
HTTPX_ERRORS: tuple[tuple[type[Exception], type[httpx.TransportError]], ...] = (
    (httpcore.ConnectTimeout, httpx.ConnectTimeout),
    (httpcore.ReadTimeout, httpx.ReadTimeout),
    (httpcore.WriteTimeout, httpx.WriteTimeout),
    (httpcore.PoolTimeout, httpx.PoolTimeout),
    (httpcore.TimeoutException, httpx.TimeoutException),
    (httpcore.ConnectError, httpx.ConnectError),
    (httpcore.ReadError, httpx.ReadError),
    (httpcore.WriteError, httpx.WriteError),
    (httpcore.NetworkError, httpx.NetworkError),
    (httpcore.RemoteProtocolError, httpx.RemoteProtocolError),
    (httpcore.LocalProtocolError, httpx.LocalProtocolError),
    (httpcore.ProtocolError, httpx.ProtocolError),
    (httpcore.UnsupportedProtocol, httpx.UnsupportedProtocol),
    (httpcore.ProxyError, httpx.ProxyError),
)


@contextlib.contextmanager
def as_httpx_errors() -> Iterator[None]:
    """Raise httpcore's transport errors as the matching httpx ones."""
    try:
        yield
    except tuple(theirs for theirs, _ in HTTPX_ERRORS) as err:
        mapped = next(ours for theirs, ours in HTTPX_ERRORS if isinstance(err, theirs))
        raise mapped(str(err)) from err


def _decode_body(body: bytes, encoding: str, limit: int) -> bytes:
    """Decompress a gzip body (the only encoding we ask for) without exceeding ``limit``."""
    if encoding != "gzip":
        raise ResponseBodyError(f"unexpected content encoding {encoding!r}")
    wbits = 16 + zlib.MAX_WBITS
    decompressor = zlib.decompressobj(wbits)
    try:
        decoded = decompressor.decompress(body, limit + 1)
    except zlib.error as err:
        raise ResponseBodyError(f"gzip body that does not decompress: {err}") from None
    if len(decoded) > limit:
        raise ResponseBodyError(f"decoded response body larger than {limit} bytes")
    return decoded


class MsalResponse:
    """The response shape MSAL's ``http_client`` contract asks for."""

    def __init__(self, response: HttpResponse) -> None:
        self.status_code = response.status_code
        self.text = response.text
        self.headers = {k.lower(): v for k, v in response.headers.items()}

    def raise_for_status(self) -> None:
        if self.status_code >= 400:
            raise httpx.HTTPStatusError(
                f"identity provider answered HTTP {self.status_code}",
                request=None,  # type: ignore[arg-type]
                response=None,  # type: ignore[arg-type]
            )


class MsalHttpAdapter:
    """A synchronous ``http_client`` for MSAL that sends through :class:`Transport`.

    MSAL runs in a worker thread; each call hands the request to the event loop and waits.
    ``token_requests`` counts POSTs to the token endpoint (cache hits send none).
    """

    def __init__(self, transport: Transport, timeout: float, counted_method: str = "POST") -> None:
        self._transport = transport
        self.timeout = timeout
        self.token_requests = 0
        # Token requests are POSTs to a token endpoint, or GETs to a managed-identity endpoint.
        self._counted_method = counted_method
        # Per MSAL worker thread (its ident): a 5xx the identity provider answered (MSAL does
        # not say). A dict, not a threading.local: some 700 bytes less a tenant.
        self._seen: dict[int, int] = {}

    def _send(
        self,
        method: str,
        url: str,
        params: Mapping[str, Any] | None,
        data: Any,
        headers: Mapping[str, str] | None,
    ) -> MsalResponse:
        if params:
            url = f"{url}{'&' if '?' in url else '?'}{urllib.parse.urlencode(params)}"
        content: bytes | None = None
        send_headers = dict(headers or {})
        if isinstance(data, dict):
            content = urllib.parse.urlencode(data).encode()
            send_headers.setdefault("Content-Type", "application/x-www-form-urlencoded")
        elif isinstance(data, str):
            content = data.encode()
        elif isinstance(data, bytes):
            content = data
        coroutine = self._transport.request(
            method, url, timeout=self.timeout, headers=send_headers, content=content
        )
        future = asyncio.run_coroutine_threadsafe(coroutine, self._transport.loop)
        response = MsalResponse(future.result())
        if response.status_code >= 500:
            self._seen[threading.get_ident()] = response.status_code
        return response

    def begin(self) -> None:
        """Start a token acquisition in this thread (forget the last server error seen)."""
        self._seen.pop(threading.get_ident(), None)

    def server_error(self) -> int | None:
        """The 5xx status the identity provider answered in this thread since :meth:`begin`."""
        return self._seen.get(threading.get_ident())

    def post(
        self,
        url: str,
        params: Mapping[str, Any] | None = None,
        data: Any = None,
        headers: Mapping[str, str] | None = None,
        **_: Any,
    ) -> MsalResponse:
        """HTTP POST, as MSAL calls it (token requests)."""
        if self._counted_method == "POST":
            self.token_requests += 1
        return self._send("POST", url, params, data, headers)

    def get(
        self,
        url: str,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        **_: Any,
    ) -> MsalResponse:
        """HTTP GET, as MSAL calls it (OpenID discovery, managed-identity tokens)."""
        if self._counted_method == "GET":
            self.token_requests += 1
        return self._send("GET", url, params, None, headers)
