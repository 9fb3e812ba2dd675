"""Crawl a generated site on loopback vs what a user would write instead.

Throughput: our crawler (delay 0, private addresses allowed, robots.txt, link extraction,
SQLite frontier, gzipped WARC) against a sequential ``urllib.request`` loop over the same
URLs that only saves the bodies (no politeness, no parsing, no WARC).

Memory: peak RSS growth of a crawl whose frontier holds 100,000 queued URLs (x scale),
against the same URLs held the naive way, in a Python ``set`` + ``deque``. Each runs in its
own subprocess so ``ru_maxrss`` measures only that. The numbers go into the labels of the
throughput row (the harness's table has seconds columns only).
"""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from bench.harness import Comparison, compare
from curate.crawl import CrawlConfig, crawl

PROJECT_ROOT = Path(__file__).resolve().parent.parent
WORDS = ("river", "stone", "bridge", "baker", "dough", "wheel", "planet", "harbour", "lantern",
         "meadow", "orchard", "signal", "copper", "window", "garden", "thunder")
LINKS_PER_PAGE = 10
WIDE_LINKS = 1000  # queued-but-never-fetched links per page in the memory run


def page(n: int, total: int) -> bytes:
    """~2 KB of HTML for page n: a binary tree (so every page is reachable from /p/0) plus a
    few links back into the site that the frontier must de-duplicate."""
    links = [k for k in (2 * n + 1, 2 * n + 2) if k < total]
    links += [(n * 7919 + k * 104729) % total for k in range(LINKS_PER_PAGE - len(links))]
    text = " ".join(WORDS[(n * 31 + i * 7) % len(WORDS)] for i in range(250))
    items = "".join(f'<li><a href="/p/{k}">page {k}</a></li>' for k in links)
    return (f"<!DOCTYPE html><html><head><title>Page {n}</title></head><body><h1>Page {n}</h1>"
            f"<p>{text}</p><ul>{items}</ul></body></html>").encode()


def wide_page(n: int) -> bytes:
    """A page with WIDE_LINKS unique links that the memory run queues but never fetches."""
    items = "".join(f'<a href="/leaf/{n}/{i}?utm_source=bench">leaf {i}</a>'
                    for i in range(WIDE_LINKS))
    return f"<!DOCTYPE html><html><body><h1>Wide {n}</h1>{items}</body></html>".encode()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in two writes; no 40 ms stalls
    total = 0

    def log_message(self, format, *args):
        pass

    def do_GET(self):
        if self.path == "/robots.txt":
            body, ctype = b"User-agent: *\nAllow: /\n", "text/plain"
        elif m := re.fullmatch(r"/p/(\d+)", self.path):
            body, ctype = page(int(m[1]), self.total), "text/html; charset=utf-8"
        elif m := re.fullmatch(r"/wide/(\d+)", self.path):
            body, ctype = wide_page(int(m[1])), "text/html; charset=utf-8"
        else:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def _serve(total: int, ports: multiprocessing.Queue) -> None:
    _Handler.total = total
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    ports.put(httpd.server_address[1])
    httpd.serve_forever()


def start_server(total: int) -> tuple[multiprocessing.Process, str]:
    """Serve the site from another process, so the server does not share our GIL."""
    ctx = multiprocessing.get_context("spawn")
    ports = ctx.Queue()
    proc = ctx.Process(target=_serve, args=(total, ports), daemon=True)
    proc.start()
    return proc, f"http://127.0.0.1:{ports.get(timeout=30)}"


def _rss_kb() -> int:
    with open("/proc/self/status") as fh:
        return int(next(line for line in fh if line.startswith("VmRSS")).split()[1])


def _memory_child(kind: str, base: str, n_urls: int, out: str) -> None:
    """Run in a subprocess: print peak RSS growth (KB) of one frontier, ours or naive."""
    pages = max(1, n_urls // WIDE_LINKS)
    before = _rss_kb()
    t0 = time.perf_counter()
    queued = 0
    if kind == "ours":
        cfg = CrawlConfig(seeds=[f"{base}/wide/{i}" for i in range(pages)], max_pages=pages,
                          per_host_delay=0, allow_private_addresses=True, retries=0)
        report = crawl(cfg, Path(out), progress=False)
        queued = report.frontier["queued"]
    else:
        seen: set[str] = set()
        queue: deque[tuple[str, int]] = deque()
        for p in range(pages):
            for i in range(WIDE_LINKS):
                url = f"{base}/leaf/{p}/{i}"
                if url not in seen:
                    seen.add(url)
                    queue.append((url, 1))
        queued = len(queue)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KB on Linux
    print(json.dumps({"growth_kb": peak - before, "queued": queued,
                      "seconds": time.perf_counter() - t0}))


def frontier_memory(base: str, n_urls: int, out: Path) -> dict[str, dict]:
    """Peak RSS growth (MB) with ``n_urls`` queued URLs: our SQLite frontier vs set+deque."""
    results = {}
    for kind in ("ours", "naive"):
        code = ("import sys; from bench.bench_crawl import _memory_child; "
                "_memory_child(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4])")
        proc = subprocess.run([sys.executable, "-c", code, kind, base, str(n_urls),
                               str(out / kind)], capture_output=True, text=True, cwd=PROJECT_ROOT,
                              env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}, check=True)
        data = json.loads(proc.stdout.strip().splitlines()[-1])
        data["growth_mb"] = data["growth_kb"] / 1024
        results[kind] = data
    return results


def _with_rates(c: Comparison, pages: int) -> Comparison:
    return dataclasses.replace(
        c, ours=f"{c.ours} ({pages / c.ours_seconds:,.0f} pages/s)",
        baseline=f"{c.baseline} ({pages / c.baseline_seconds:,.0f} pages/s)")


def run(scale: float = 1.0, repeats: int = 3) -> list[Comparison]:
    total = max(50, int(2000 * scale))
    n_urls = max(10 * WIDE_LINKS, int(100_000 * scale))
    server, base = start_server(total)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            out = root / "crawl"
            urls = [f"{base}/p/{n}" for n in range(total)]

            def clean() -> None:
                shutil.rmtree(out, ignore_errors=True)

            def ours(per_host: int) -> None:
                cfg = CrawlConfig(seeds=[f"{base}/p/0"], max_depth=100, max_pages=total,
                                  per_host_delay=0, per_host_concurrency=per_host,
                                  concurrency=max(16, per_host), allow_private_addresses=True)
                report = crawl(cfg, out, progress=False)
                assert report.pages == total, report.summary()

            def urllib_loop() -> None:
                out.mkdir(parents=True, exist_ok=True)
                with open(out / "pages.bin", "wb") as sink:
                    for url in urls:
                        with urllib.request.urlopen(url, timeout=20) as resp:
                            sink.write(resp.read())

            big = frontier_memory(base, n_urls, root / "big")
            small = frontier_memory(base, n_urls // 10, root / "small")
            mem_ours = (f"; peak RSS +{big['ours']['growth_mb']:.0f} MB with "
                        f"{big['ours']['queued']:,} queued URLs, +{small['ours']['growth_mb']:.0f}"
                        f" MB with {small['ours']['queued']:,}")
            mem_naive = (f"; the same URLs in a set+deque frontier: +"
                         f"{big['naive']['growth_mb']:.0f} MB, "
                         f"+{small['naive']['growth_mb']:.0f} MB")
            work = f"{total:,} generated ~2 KB pages on loopback"
            results = [
                compare("crawl", work,
                        ("curate.crawl, 2 per host, WARC" + mem_ours, lambda: ours(2)),
                        ("sequential urllib loop" + mem_naive, urllib_loop), repeats, clean),
                compare("crawl", work, ("curate.crawl, 8 per host, WARC", lambda: ours(8)),
                        ("sequential urllib loop", urllib_loop), repeats, clean),
            ]
    finally:
        server.terminate()
        server.join(timeout=10)
    return [_with_rates(c, total) for c in results]


if __name__ == "__main__":
    from bench.harness import TABLE_HEADER

    t0 = time.perf_counter()
    rows = run(scale=float(sys.argv[1]) if len(sys.argv) > 1 else 1.0)
    print(TABLE_HEADER)
    print("\n".join(r.row() for r in rows))
    print(f"total {time.perf_counter() - t0:.1f} s")
