"""One polite HTTP GET: per-host gate, retries with backoff, size and content-type limits.

Redirects are not followed here (the crawler follows them hop by hop, so every hop is checked
against scope, robots.txt and the address guard); this module only reports the Location.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import email.utils
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

import aiohttp
from aiohttp.client_reqrep import ClientRequest
from aiohttp.connector import Connection
from aiohttp.tracing import Trace
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from curate.crawl.addresses import GuardedResolver, PrivateAddressError, check_literal
from curate.crawl.urls import host_of
from curate.crawl.warc import Exchange

__all__ = ["MAX_RETRY_AFTER", "FetchResult", "Fetcher", "HostGate", "parse_retry_after"]

MAX_RETRY_AFTER = 120.0
"""A Retry-After longer than this gives up on the URL instead of parking a worker for it."""
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504, 507, 508, 509, 520, 521, 522, 523, 524})
RETRY_ERRORS = frozenset({"timeout", "connection_error", "bad_response"})
_CHUNK = 64 * 1024


class _Peer:
    """Where the current request's connection went (one per request, via a ContextVar)."""

    __slots__ = ("address",)

    def __init__(self) -> None:
        self.address: str | None = None


_PEER: contextvars.ContextVar[_Peer] = contextvars.ContextVar("crawl_peer")


class _PeerConnector(aiohttp.TCPConnector):
    """Notes the connected peer's IP for WARC-IP-Address: a small response is complete,
    and its connection back in the pool, before the caller can look at it."""

    async def connect(self, req: ClientRequest, traces: list[Trace],
                      timeout: aiohttp.ClientTimeout) -> Connection:
        conn = await super().connect(req, traces, timeout)
        peer = _PEER.get(None)
        if peer is not None and conn.transport is not None:
            name = conn.transport.get_extra_info("peername")
            peer.address = str(name[0]) if name else None
        return conn


class HostGate:
    """Politeness for one host: at most ``concurrency`` requests at once and at least
    ``delay`` seconds between request starts."""

    def __init__(self, concurrency: int, delay: float) -> None:
        self._sem = asyncio.Semaphore(concurrency)
        self.delay = delay
        self.next_start = 0.0
        self._last_start: float | None = None
        self.tasks = 0
        """Crawl tasks working on this host (the dispatcher's count, not requests)."""

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold a connection slot, starting no sooner than the delay allows."""
        loop = asyncio.get_running_loop()
        async with self._sem:
            now = loop.time()
            start = max(now, self.next_start)
            self.next_start = start + self.delay
            self._last_start = start
            if start > now:
                await asyncio.sleep(start - now)
            yield

    def slow_down(self, delay: float) -> None:
        """Raise the delay (robots.txt Crawl-delay), also for the request after the last."""
        if delay <= self.delay:
            return
        self.delay = delay
        if self._last_start is not None:
            self.next_start = max(self.next_start, self._last_start + delay)

    def hold(self, seconds: float) -> None:
        """Send nothing to this host for ``seconds`` (429/503 with Retry-After, backoff)."""
        self.next_start = max(self.next_start, asyncio.get_running_loop().time() + seconds)

    def ready(self, now: float) -> bool:
        return self.next_start <= now


@dataclass
class FetchResult:
    """What one GET (after retries) produced. ``exchange`` is set when a body was read
    (an accepted 2xx, or a 3xx); ``error`` names the failure kind, e.g. ``http_404``."""

    url: str
    status: int | None = None
    error: str | None = None
    detail: str | None = None
    exchange: Exchange | None = None
    location: str | None = None
    content_type: str = ""
    headers: CIMultiDictProxy[str] | CIMultiDict[str] = field(default_factory=CIMultiDict)
    retries: int = 0
    retry_after: float | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.status is not None and 200 <= self.status < 300

    @property
    def redirect(self) -> bool:
        return self.error is None and self.status is not None and 300 <= self.status < 400


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP-date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def mime_of(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


class Fetcher:
    """Owns the aiohttp session and the per-host gates; counts requests and retries."""

    def __init__(self, *, user_agent: str, timeout: float, retries: int, backoff: float,
                 concurrency: int, per_host_concurrency: int, per_host_delay: float,
                 allow_private: bool) -> None:
        self.user_agent = user_agent
        self.timeout = aiohttp.ClientTimeout(total=timeout, sock_connect=min(timeout, 10.0))
        self.retries = retries
        self.backoff = backoff
        self.per_host_concurrency = per_host_concurrency
        self.per_host_delay = per_host_delay
        self.allow_private = allow_private
        self.gates: dict[str, HostGate] = {}
        self.requests = 0
        self.retried = 0
        connector = _PeerConnector(
            limit=max(concurrency * 2, 10), limit_per_host=0,
            resolver=None if allow_private else GuardedResolver())
        self.session = aiohttp.ClientSession(
            connector=connector, cookie_jar=aiohttp.DummyCookieJar(),
            headers={"User-Agent": user_agent, "Accept-Encoding": "gzip, deflate"},
            auto_decompress=True)

    async def close(self) -> None:
        await self.session.close()

    def gate(self, host: str) -> HostGate:
        gate = self.gates.get(host)
        if gate is None:
            gate = self.gates[host] = HostGate(self.per_host_concurrency, self.per_host_delay)
        return gate

    async def get(self, url: str, *, accept: frozenset[str] | None, max_bytes: int,
                  truncate: bool = False) -> FetchResult:
        """GET with retries on 429/5xx/connection errors; waits back off exponentially
        unless the server says how long (Retry-After); the whole host waits, not just
        this URL."""
        gate = self.gate(host_of(url))
        attempt = 0
        while True:
            result = await self._once(url, gate, accept, max_bytes, truncate)
            result.retries = attempt
            retriable = result.error in RETRY_ERRORS or (
                result.status in RETRY_STATUSES and result.error is not None)
            if not retriable or attempt >= self.retries:
                return result
            wait = result.retry_after
            if wait is None:
                wait = self.backoff * 2 ** attempt
            elif wait > MAX_RETRY_AFTER:
                gate.hold(MAX_RETRY_AFTER)
                result.detail = f"Retry-After {wait:.0f} s is longer than {MAX_RETRY_AFTER:.0f} s"
                return result
            gate.hold(wait)
            attempt += 1
            self.retried += 1

    async def _once(self, url: str, gate: HostGate, accept: frozenset[str] | None,
                    max_bytes: int, truncate: bool) -> FetchResult:
        result = FetchResult(url)
        try:
            if not self.allow_private:
                check_literal(host_of(url))
            async with gate.slot():
                self.requests += 1
                started = datetime.now(UTC)
                peer = _Peer()
                _PEER.set(peer)
                async with self.session.get(URL(url, encoded=True), allow_redirects=False,
                                            timeout=self.timeout) as resp:
                    await self._read(resp, result, started, accept, max_bytes, truncate, peer)
        except PrivateAddressError as exc:
            result.error, result.detail = "private_address", str(exc)
        except TimeoutError:
            result.error, result.detail = "timeout", "no complete response in time"
        except aiohttp.ClientConnectorDNSError as exc:
            result.error, result.detail = "dns_error", str(exc)
        except aiohttp.InvalidURL as exc:
            result.error, result.detail = "invalid_url", str(exc)
        except (aiohttp.ClientPayloadError, aiohttp.ClientResponseError) as exc:
            result.error, result.detail = "bad_response", str(exc)
        except (aiohttp.ClientError, OSError) as exc:
            result.error, result.detail = "connection_error", f"{type(exc).__name__}: {exc}"
        return result

    async def _read(self, resp: aiohttp.ClientResponse, result: FetchResult, started: datetime,
                    accept: frozenset[str] | None, max_bytes: int, truncate: bool,
                    peer: _Peer) -> None:
        """Fill ``result`` from a response: headers first, the body only when wanted.
        With ``truncate`` an oversized body is cut at ``max_bytes`` instead of refused."""
        result.status = resp.status
        result.headers = resp.headers
        result.content_type = resp.headers.get("Content-Type", "")
        status = resp.status
        if 300 <= status < 400:
            result.location = resp.headers.get("Location")
        elif status < 200 or status >= 300:
            result.error = f"http_{status}"
            result.retry_after = parse_retry_after(resp.headers.get("Retry-After"))
            resp.close()
            return
        elif accept is not None and mime_of(result.content_type) not in accept:
            result.error = "not_html"
            result.detail = f"Content-Type {result.content_type or '(none)'}"
            resp.close()
            return
        declared = resp.content_length
        if declared is not None and declared > max_bytes and not truncate:
            result.error, result.detail = "too_large", f"Content-Length {declared:,} bytes"
            resp.close()
            return
        body = bytearray()
        async for chunk in resp.content.iter_chunked(_CHUNK):
            body += chunk
            if len(body) > max_bytes and truncate:
                del body[max_bytes:]
                resp.close()
                break
            if len(body) > max_bytes:
                result.error = "too_large"
                result.detail = f"body over max_body_bytes={max_bytes:,}"
                resp.close()
                return
        info = resp.request_info
        result.exchange = Exchange(
            url=result.url, date=started, ip=peer.address, request_target=info.url.raw_path_qs,
            request_headers=[("Host", info.url.raw_authority), *(
                (k, v) for k, v in info.headers.items() if k.lower() != "host")],
            version=f"HTTP/{resp.version.major}.{resp.version.minor}" if resp.version
            else "HTTP/1.1",
            status=status, reason=resp.reason or "",
            response_headers=[(k.decode("latin-1"), v.decode("latin-1"))
                              for k, v in resp.raw_headers],
            body=bytes(body))

