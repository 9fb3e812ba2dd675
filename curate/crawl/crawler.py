"""The crawl loop: take URLs from the frontier, fetch them politely, store pages as WARC.

One dispatcher hands frontier rows to tasks, at most ``concurrency`` in all and
``per_host_concurrency`` per host, and only to hosts whose delay has passed; each task checks
scope, robots.txt and the address guard, fetches, follows redirects hop by hop, stores the
exchange and queues the page's links. Everything the next run needs lives in the frontier and
in closed WARC files, so killing the process at any point loses only unfinished work.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import hashlib
import json
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO
from urllib.parse import urljoin, urlsplit

from tqdm import tqdm

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no lock, one crawl per out_dir is on you
    fcntl = None  # type: ignore[assignment]

from curate.crawl.addresses import PrivateAddressError, check_host, check_literal
from curate.crawl.config import CrawlConfig
from curate.crawl.fetch import Fetcher, FetchResult
from curate.crawl.frontier import (
    BLOCKED,
    DONE,
    FAILED,
    PAGE,
    SITEMAP,
    SKIPPED,
    Frontier,
    Row,
)
from curate.crawl.parse import SITEMAP_MAX_BYTES, extract_links, parse_sitemap, robots_nofollow
from curate.crawl.report import CrawlReport, human_bytes
from curate.crawl.robots import MAX_ROBOTS_BYTES, RobotsRules
from curate.crawl.urls import Scope, host_of, normalize_url, normalize_with_host, origin_of
from curate.crawl.warc import OPEN_SUFFIX, Exchange, WarcRoller

__all__ = ["Crawler", "acrawl", "crawl"]

log = logging.getLogger(__name__)

ROBOTS_MAX_AGE = 24 * 3600.0
"""Reuse a robots.txt fetched by an earlier run for this long (RFC 9309 suggests 24 h)."""
ROBOTS_MAX_HOPS = 5
SKIP_ERRORS = frozenset({"not_html", "too_large", "out_of_scope", "too_deep"})
BLOCK_ERRORS = frozenset({"robots_disallowed", "robots_unreachable", "private_address"})
STARTED = "crawl started"


@dataclass(frozen=True)
class _Robots:
    """robots.txt of one origin, or why none could be had."""

    rules: RobotsRules
    error: str | None = None
    detail: str | None = None


def _status_for(error: str) -> str:
    if error in BLOCK_ERRORS:
        return BLOCKED
    return SKIPPED if error in SKIP_ERRORS else FAILED


def _x_robots_nofollow(values: Iterable[str], product_token: str) -> bool:
    """X-Robots-Tag nofollow, for everyone or addressed to this crawler by name."""
    for value in values:
        target, sep, rest = value.partition(":")
        if sep and target.strip() and " " not in target.strip() and \
                target.strip().lower() not in {"nofollow", "none", "noindex"}:
            if target.strip().lower() != product_token.lower():
                continue
            value = rest
        if robots_nofollow(value):
            return True
    return False


def _lock(out_dir: Path) -> IO[bytes]:
    """Hold ``out_dir/.lock`` for the run: two crawls sharing a frontier would fetch and
    store the same URLs twice."""
    out_dir.mkdir(parents=True, exist_ok=True)
    handle = open(out_dir / ".lock", "wb")  # noqa: SIM115 - closed when the run ends
    if fcntl is not None:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise RuntimeError(f"another crawl is running in {out_dir}; wait for it to "
                               f"finish or use another out_dir") from None
    return handle


class Crawler:
    """One crawl run into ``out_dir``; use :func:`crawl` or :func:`acrawl`."""

    def __init__(self, cfg: CrawlConfig, out_dir: Path, progress: bool = True) -> None:
        self.cfg = cfg
        self.out_dir = Path(out_dir)
        start_hosts = [host_of(u) for u in (*cfg.seeds, *cfg.sitemaps)]
        self.scope = Scope(cfg.allowed_domains or [h for h in start_hosts if h],
                           cfg.include_patterns, cfg.exclude_patterns)
        self.accept = frozenset(cfg.content_types)
        self.progress = progress
        self.report = CrawlReport(self.out_dir)
        self._pending: dict[str, None] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._robots: dict[str, asyncio.Task[_Robots]] = {}
        self._page_tasks = 0
        self._wake = asyncio.Event()
        self._bar: tqdm | None = None

    # --- set-up -------------------------------------------------------------------------------

    async def _preflight(self) -> None:
        """Refuse seeds on private addresses before anything is written or requested."""
        if self.cfg.allow_private_addresses:
            return
        for url in dict.fromkeys((*self.cfg.seeds, *self.cfg.sitemaps)):
            parts = urlsplit(url)
            host = parts.hostname
            if not host:
                continue
            check_literal(host)
            try:
                port = parts.port or (443 if parts.scheme == "https" else 80)
                await check_host(host, port)
            except PrivateAddressError:
                raise
            except (OSError, ValueError):
                continue  # unresolvable now: the crawl records it as dns_error

    def _scope_key(self) -> str:
        key = json.dumps([self.scope.domains, self.cfg.include_patterns,
                          self.cfg.exclude_patterns, self.cfg.max_depth])
        return hashlib.sha256(key.encode()).hexdigest()[:16]

    def _recover(self, frontier: Frontier, warc_dir: Path) -> None:
        """Undo what a killed run left half-done: rows in flight, WARC files never closed."""
        self.report.resumed = frontier.recover()
        for name in frontier.open_warcs():
            final, partial = warc_dir / name, warc_dir / (name + OPEN_SUFFIX)
            if final.exists():  # renamed, but the run died before noting it
                frontier.warc_closed(name)
                partial.unlink(missing_ok=True)
                continue
            partial.unlink(missing_ok=True)
            requeued = frontier.discard_warc(name)
            log.warning("removed %s, left unfinished by a killed run; its %d recorded URLs "
                        "are queued again", name, requeued)
        if warc_dir.is_dir():
            for stray in warc_dir.glob(f"{self.cfg.warc_prefix}-*.warc.gz{OPEN_SUFFIX}"):
                stray.unlink(missing_ok=True)
        scope_key = self._scope_key()
        if frontier.get_meta("scope") not in (None, scope_key):
            frontier.requeue(SKIPPED, ["out_of_scope", "too_deep"])
        frontier.requeue(BLOCKED, ["robots_unreachable"])
        frontier.set_meta("scope", scope_key)
        frontier.set_meta("config", self.cfg.model_dump_json())

    # --- queueing ----------------------------------------------------------------------------

    def _enqueue(self, urls: Iterable[str], depth: int, kind: str = PAGE,
                 base: str | None = None) -> int:
        """Normalise, de-duplicate and scope-check URLs, then add the new ones. Out-of-scope
        and too-deep URLs are kept as skipped rows, so a wider re-run can pick them up."""
        queued: dict[str, tuple[str, str, int]] = {}
        skipped: dict[str, dict[str, tuple[str, str, int]]] = {"out_of_scope": {},
                                                               "too_deep": {}}
        for raw in urls:
            found = normalize_with_host(raw, base)
            if found is None:
                continue
            url, host = found
            if url in queued:
                continue
            item = (url, host, depth)
            if not self.scope.allows(url, host):
                skipped["out_of_scope"][url] = item
            elif kind == PAGE and depth > self.cfg.max_depth:
                skipped["too_deep"][url] = item
            else:
                queued[url] = item
        added = self.frontier.add(queued.values(), kind=kind)
        for _, host, _ in queued.values():
            if host not in self._pending:
                self._pending[host] = None
                self._wake.set()
        for error, items in skipped.items():
            if items:
                self.report.errors[error] += self.frontier.add(items.values(), kind=kind,
                                                               status=SKIPPED, error=error)
        return added

    # --- the loop -------------------------------------------------------------------------------

    async def run(self) -> CrawlReport:
        """Crawl until the frontier is empty or ``max_pages`` pages are stored."""
        started = time.perf_counter()
        await self._preflight()
        warc_dir = self.out_dir / "warc"
        lock = _lock(self.out_dir)
        self.frontier = Frontier(self.out_dir / "frontier.sqlite")
        try:
            self._recover(self.frontier, warc_dir)
            self._enqueue(self.cfg.seeds, 0)
            self._enqueue(self.cfg.sitemaps, 0, kind=SITEMAP)
            self.frontier.commit()
            self.report.pages_total = self.frontier.stored_pages()
            self._pending.update(dict.fromkeys(self.frontier.pending_hosts()))
            self.fetcher = Fetcher(
                user_agent=self.cfg.user_agent, timeout=self.cfg.timeout,
                retries=self.cfg.retries, backoff=self.cfg.backoff,
                concurrency=self.cfg.concurrency,
                per_host_concurrency=self.cfg.per_host_concurrency,
                per_host_delay=self.cfg.per_host_delay,
                allow_private=self.cfg.allow_private_addresses)
            self.warc = WarcRoller(warc_dir, self.cfg.warc_prefix, self.cfg.warc_max_bytes,
                                   self._warcinfo(), on_open=self.frontier.warc_opened,
                                   before_close=lambda name: self.frontier.commit(),
                                   after_close=self.frontier.warc_closed)
            self._bar = tqdm(total=self.cfg.max_pages, initial=self.report.pages_total,
                             desc="crawl", unit="page", disable=not self.progress,
                             dynamic_ncols=True)
            try:
                await self._loop()
            finally:
                await self._shutdown()
        finally:
            self.report.seconds = time.perf_counter() - started
            self.report.frontier = self.frontier.counts()
            self.frontier.close()
            lock.close()
        return self.report

    def _budget(self) -> int:
        return self.cfg.max_pages - self.report.pages_total - self._page_tasks

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            self._dispatch(loop.time())
            if not self._tasks:
                if self._budget() <= 0:
                    self.report.stopped = f"max_pages={self.cfg.max_pages} reached"
                    return
                if not self._pending:
                    return
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._next_ready(loop.time()))

    def _dispatch(self, now: float) -> None:
        """Start tasks for hosts that have queued URLs, a free slot and no delay pending."""
        cap = self.cfg.per_host_concurrency
        for host in list(self._pending):
            if len(self._tasks) >= self.cfg.concurrency or self._budget() <= 0:
                return
            gate = self.fetcher.gate(host)
            while gate.tasks < cap and gate.ready(now) and self._budget() > 0 \
                    and len(self._tasks) < self.cfg.concurrency:
                row = self.frontier.claim_next(host)
                if row is None:
                    del self._pending[host]
                    break
                self._start(row)
            if host in self._pending:  # round robin: the next pass starts where this one ended
                del self._pending[host]
                self._pending[host] = None

    def _start(self, row: Row) -> None:
        gate = self.fetcher.gate(row.host)
        gate.tasks += 1
        if row.kind == PAGE:
            self._page_tasks += 1
        task = asyncio.create_task(self._process(row))
        self._tasks.add(task)

        def done(t: asyncio.Task[None]) -> None:
            self._tasks.discard(t)
            gate.tasks -= 1
            if row.kind == PAGE:
                self._page_tasks -= 1
            self._wake.set()

        task.add_done_callback(done)

    def _next_ready(self, now: float) -> float | None:
        """Seconds until some pending host may be sent a request (None: wait for a task)."""
        if len(self._tasks) >= self.cfg.concurrency or self._budget() <= 0:
            return None
        cap = self.cfg.per_host_concurrency
        waits = [self.fetcher.gate(h).next_start - now for h in self._pending
                 if self.fetcher.gate(h).tasks < cap]
        return max(min(waits), 0.0) if waits else None

    async def _shutdown(self) -> None:
        for task in (*self._tasks, *self._robots.values()):
            task.cancel()
        await asyncio.gather(*self._tasks, *self._robots.values(), return_exceptions=True)
        self.warc.close()
        await self.fetcher.close()
        self.report.requests = self.fetcher.requests
        self.report.retries = self.fetcher.retried
        self.report.warc_files = list(self.warc.written)
        self.report.warc_bytes = self.warc.bytes_written
        if self._bar is not None:
            if not self._pending and not self._tasks:  # ran out of URLs before max_pages
                self._bar.total = self._bar.n
            self._bar.close()

    # --- one URL ----------------------------------------------------------------------------

    async def _process(self, row: Row) -> None:
        current: Row | None = row
        hops = 0
        while current is not None:
            try:
                if current.kind == SITEMAP:
                    await self._sitemap(current)
                    return
                following = await self._visit(current, hops)
            except Exception as exc:  # a bug must not stop the crawl, nor hide
                log.exception("crawling %s failed", current.url)
                self._finish(current, "crawler_error", f"{type(exc).__name__}: {exc}")
                return
            hops += 1
            current = following

    def _finish(self, row: Row, error: str, detail: str | None = None,
                http_status: int | None = None, retries: int = 0) -> None:
        self.report.errors[error] += 1
        self.frontier.finish(row.id, _status_for(error), http_status=http_status, error=error,
                             detail=detail, retries=retries)

    async def _allowed(self, row: Row) -> bool:
        """Scope and robots.txt, checked when the URL is about to be fetched (so a changed
        config, a redirect target or a new robots.txt all apply)."""
        if not self.scope.allows(row.url):
            self._finish(row, "out_of_scope")
            return False
        if row.kind == PAGE and row.depth > self.cfg.max_depth:
            self._finish(row, "too_deep")
            return False
        robots = await self._robots_for(row.url)
        if robots.error is not None:
            self._finish(row, robots.error, robots.detail)
            return False
        if not robots.rules.allowed(row.url):
            self._finish(row, "robots_disallowed")
            return False
        return True

    async def _visit(self, row: Row, hops: int) -> Row | None:
        """Fetch one page URL; returns the claimed redirect target to fetch next, if any."""
        if not await self._allowed(row):
            return None
        res = await self.fetcher.get(row.url, accept=self.accept,
                                     max_bytes=self.cfg.max_body_bytes)
        if res.error is not None:
            self._finish(row, res.error, res.detail, res.status, res.retries)
            return None
        if res.redirect:
            return self._redirect(row, res, hops)
        if not res.ok or res.exchange is None:
            self._finish(row, f"http_{res.status}", None, res.status, res.retries)
            return None
        self._store(row, res, res.exchange, roll=False)
        self.report.pages += 1
        self.report.pages_total += 1
        self.report.bytes += len(res.exchange.body)
        if self._bar is not None:
            self._bar.update(1)
            self._bar.set_postfix(bytes=human_bytes(self.report.bytes),
                                  errors=self.report.error_count, refresh=False)
        if not _x_robots_nofollow(res.headers.getall("X-Robots-Tag", []),
                                  self.cfg.product_token):
            links, base = extract_links(res.exchange.body, row.url, res.content_type)
            self._enqueue(links, row.depth + 1, base=base)
        # roll only after the page's links are queued: closing a WARC commits the frontier,
        # and a page in a closed WARC is never fetched again, so its links must be in it
        self.warc.roll_if_full()
        return None

    def _store(self, row: Row, res: FetchResult, exchange: Exchange, detail: str | None = None,
               roll: bool = True) -> None:
        name = self.warc.write(exchange)
        self.frontier.finish(row.id, DONE, http_status=res.status, warc_file=name,
                             detail=detail, retries=res.retries)
        if roll:
            self.warc.roll_if_full()

    def _redirect(self, row: Row, res: FetchResult, hops: int) -> Row | None:
        """Store the 3xx, then claim its target for this task unless it is known already."""
        target = normalize_url(res.location, row.url) if res.location else None
        assert res.exchange is not None
        self._store(row, res, res.exchange, detail=f"redirect to {target or res.location}")
        self.report.redirects += 1
        if target is None:
            self.report.errors["bad_redirect"] += 1
            return None
        if hops >= self.cfg.max_redirects:
            self.report.errors["too_many_redirects"] += 1
            return None
        return self.frontier.claim_url(target, host_of(target), row.depth)

    async def _sitemap(self, row: Row) -> None:
        """Queue the pages and child sitemaps a sitemap lists (not stored in the WARC)."""
        if not await self._allowed(row):
            return
        url, res = row.url, None
        for _ in range(self.cfg.max_redirects + 1):
            res = await self.fetcher.get(url, accept=None, max_bytes=SITEMAP_MAX_BYTES)
            if not res.redirect or not res.location:
                break
            url = urljoin(url, res.location)
        assert res is not None
        if res.redirect:
            self._finish(row, "too_many_redirects", f"still redirected at {url}", res.status)
            return
        if res.error is not None or res.exchange is None:
            self._finish(row, res.error or f"http_{res.status}", res.detail, res.status)
            return
        content = parse_sitemap(res.exchange.body)
        pages = self._enqueue(content.pages, 0)
        children = self._enqueue(content.sitemaps, 0, kind=SITEMAP)
        note = f"{pages} new pages, {children} new sitemaps"
        if content.error:
            note += f"; {content.error}"
        self.frontier.finish(row.id, DONE, http_status=res.status, detail=note,
                             retries=res.retries)

    # --- robots.txt ---------------------------------------------------------------------------

    async def _robots_for(self, url: str) -> _Robots:
        """robots.txt of the URL's origin: fetched once per run, shared by all tasks."""
        origin = origin_of(url)
        task = self._robots.get(origin)
        if task is None:
            task = self._robots[origin] = asyncio.create_task(self._load_robots(origin))
        return await asyncio.shield(task)

    async def _load_robots(self, origin: str) -> _Robots:
        cached = self.frontier.robots_get(origin, ROBOTS_MAX_AGE)
        if cached is not None:
            robots = self._interpret_robots(*cached, None)
        else:
            url, res = origin + "/robots.txt", None
            for _ in range(ROBOTS_MAX_HOPS + 1):
                res = await self.fetcher.get(url, accept=None, max_bytes=MAX_ROBOTS_BYTES,
                                             truncate=True)
                if not res.redirect or not res.location:
                    break
                url = urljoin(url, res.location)
            assert res is not None
            body = res.exchange.body if res.exchange is not None else b""
            robots = self._interpret_robots(res.status, body, res)
            if robots.error is None:
                self.frontier.robots_put(origin, res.status or 0, body)
        if robots.rules.crawl_delay:
            self.fetcher.gate(host_of(origin + "/")).slow_down(robots.rules.crawl_delay)
        if robots.rules.sitemaps:
            self._enqueue(robots.rules.sitemaps, 0, kind=SITEMAP)
        return robots

    def _interpret_robots(self, status: int | None, body: bytes,
                          res: FetchResult | None) -> _Robots:
        """RFC 9309: 2xx parse; other 4xx (and too many redirects) allow all; 5xx and 429
        disallow all. When the host cannot be reached at all, its URLs fail with that error
        (dns_error, timeout, private_address, ...) rather than a robots one."""
        if res is not None and res.error is not None and res.status is None:
            return _Robots(RobotsRules.unreachable(), res.error,
                           f"robots.txt: {res.detail or res.error}")
        if status is not None and 200 <= status < 300:
            return _Robots(RobotsRules.parse(body, self.cfg.product_token))
        if status is not None and 300 <= status < 500 and status != 429:
            return _Robots(RobotsRules.allow_everything())
        return _Robots(RobotsRules.unreachable(), "robots_unreachable",
                       f"robots.txt answered HTTP {status}; RFC 9309: assume disallow all")

    def _warcinfo(self) -> dict[str, str]:
        from importlib.metadata import PackageNotFoundError, version

        try:
            ours = version("sievelm")
        except PackageNotFoundError:
            ours = "dev"
        return {
            "software": f"sievelm curate.crawl {ours} (warcio, aiohttp)",
            "format": "WARC File Format 1.1",
            "conformsTo": "https://iipc.github.io/warc-specifications/specifications/"
                          "warc-format/warc-1.1/",
            "robots": "obey",
            "http-header-user-agent": self.cfg.user_agent,
            "isPartOf": self.cfg.warc_prefix,
            "description": f"seeds: {', '.join(self.cfg.seeds[:5])}"
                           + (" ..." if len(self.cfg.seeds) > 5 else ""),
        }


async def acrawl(cfg: CrawlConfig, out_dir: Path, progress: bool = True) -> CrawlReport:
    """Async :func:`crawl`, for callers that already run an event loop."""
    return await Crawler(cfg, out_dir, progress).run()


def crawl(cfg: CrawlConfig, out_dir: Path, progress: bool = True) -> CrawlReport:
    """Crawl from ``cfg.seeds`` into ``out_dir`` (WARC files under ``warc/``, the resumable
    frontier in ``frontier.sqlite``); re-running with the same out_dir continues the crawl.

    Raises PrivateAddressError when a seed is on a private/loopback address and
    ``allow_private_addresses`` is off. Works from inside a running event loop too (a
    notebook): the crawl then gets its own loop in a worker thread.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(acrawl(cfg, out_dir, progress))
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="crawl") as pool:
        return pool.submit(asyncio.run, acrawl(cfg, out_dir, progress)).result()

