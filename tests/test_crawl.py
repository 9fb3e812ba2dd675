"""The crawler against a real HTTP server on loopback: no mocks, the server log is the proof.

The server serves the demo site (robots.txt: Disallow /private/, Crawl-delay 0.05) plus
/special/ paths that misbehave on purpose: redirects, a redirect into /private/, 404, a 500
that never recovers, a 429 that recovers, oversized and non-HTML bodies, a gzip-encoded page
and a gzipped sitemap behind a sitemap index.
"""

from __future__ import annotations

import asyncio
import gzip
import itertools
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from warcio.archiveiterator import ArchiveIterator

from curate.config import load_config
from curate.crawl import CrawlConfig, PrivateAddressError, RobotsRules, crawl, normalize_url
from curate.crawl.addresses import refusal_reason
from curate.crawl.fetch import Fetcher
from curate.crawl.frontier import Frontier
from curate.crawl.parse import parse_sitemap
from curate.demo_site import write_site

PROJECT_ROOT = Path(__file__).resolve().parent.parent
ROBOTS_DELAY = 0.05  # the demo site's Crawl-delay
GAP_SLACK = 0.05  # server-side receive times lag the client gate under load
MAX_BODY = 100_000
SPECIAL_HTML = b"<!DOCTYPE html><html><head><title>%s</title></head><body><p>%s</p></body></html>"


def special_page(name: str) -> bytes:
    return SPECIAL_HTML % (name.encode(), (f"special page {name} " * 20).encode())


LINKS_PAGE = b"""<!DOCTYPE html><html><head><title>Specials</title></head><body><ul>
<li><a href="/special/redirect-1">redirect chain</a></li>
<li><a href="/special/to-private">redirect into /private/</a></li>
<li><a href="/special/missing">404</a></li>
<li><a href="/special/broken">500</a></li>
<li><a href="/special/busy">429 then 200</a></li>
<li><a href="/special/huge.html">declared too large</a></li>
<li><a href="/special/huge-stream.html">streamed too large</a></li>
<li><a href="/special/doc.pdf">pdf</a></li>
<li><a href="/special/image.png">image</a></li>
<li><a href="/special/gzipped.html">gzip page</a></li>
<li><a href="/special/target.html?utm_source=news&amp;utm_medium=mail">tracking</a></li>
<li><a href="/special/./x/../target.html#section">dot segments</a></li>
<li><a href="http://example.org/elsewhere">another site</a></li>
<li><a href="mailto:someone@example.org">mail</a></li>
</ul></body></html>"""


def _sitemap_index(base: str) -> bytes:
    return (f'<?xml version="1.0"?><sitemapindex xmlns="http://www.sitemaps.org/schemas/'
            f'sitemap/0.9"><sitemap><loc>{base}/special/extra-sitemap.xml.gz</loc></sitemap>'
            f"</sitemapindex>").encode()


def _extra_sitemap(base: str) -> bytes:
    return gzip.compress(
        (f'<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
         f"<url><loc>{base}/special/only-in-sitemap.html</loc></url></urlset>").encode())


class Server:
    """State shared with the handler: the request log and per-path counters."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.lock = threading.Lock()
        self.log: list[tuple[float, str]] = []
        self.hits: Counter[str] = Counter()
        self.robots_status = 200
        self.base = ""
        self.summary = None
        self.sent: dict[str, bytes] = {}
        """Body bytes the server sent for each special path (before any gzip)."""

    def reset(self) -> None:
        with self.lock:
            self.log.clear()
            self.hits.clear()
            self.robots_status = 200

    def paths(self) -> list[str]:
        with self.lock:
            return [p for _, p in self.log]


def make_handler(state: Server) -> type[SimpleHTTPRequestHandler]:
    class Handler(SimpleHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True

        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(state.root), **kwargs)

        def log_message(self, format, *args):  # keep pytest output clean
            pass

        def send(self, status: int, body: bytes = b"", ctype: str = "text/html",
                 headers: dict[str, str] | None = None, length: bool = True) -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            if length:
                self.send_header("Content-Length", str(len(body)))
            else:
                self.send_header("Connection", "close")
                self.close_connection = True
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            with state.lock:
                state.log.append((time.monotonic(), self.path))
                state.hits[self.path] += 1
                hits = state.hits[self.path]
            path = self.path
            if path == "/robots.txt" and state.robots_status != 200:
                return self.send(state.robots_status, b"nope", "text/plain")
            if not path.startswith("/special/"):
                return super().do_GET()
            name = path.removeprefix("/special/")
            if name == "links.html":
                return self.send(200, LINKS_PAGE)
            if name == "redirect-1":
                return self.send(301, b"moved", headers={"Location": "/special/redirect-2"})
            if name == "redirect-2":
                target = f"{state.base}/special/target.html"
                return self.send(302, b"", headers={"Location": target})
            if name == "to-private":
                return self.send(302, b"", headers={"Location": "/private/staff-notes.html"})
            if name == "missing":
                return self.send(404, b"not here")
            if name == "broken":
                return self.send(500, b"always broken")
            if name == "busy" and hits == 1:
                return self.send(429, b"slow down", headers={"Retry-After": "0"})
            if name == "huge.html":
                return self.send(200, b"x" * (MAX_BODY * 3))
            if name == "huge-stream.html":
                return self.send(200, b"<p>" + b"y" * (MAX_BODY * 3), length=False)
            if name == "doc.pdf":
                return self.send(200, b"%PDF-1.4 fake", "application/pdf")
            if name == "image.png":
                return self.send(200, b"\x89PNG fake", "image/png")
            if name == "sitemap-index.xml":
                return self.send(200, _sitemap_index(state.base), "application/xml")
            if name == "extra-sitemap.xml.gz":
                return self.send(200, _extra_sitemap(state.base), "application/gzip")
            if name == "gzipped.html":
                return self.send(200, gzip.compress(state.sent[path]), "text/html; charset=utf-8",
                                 headers={"Content-Encoding": "gzip"})
            if path in state.sent:
                return self.send(200, state.sent[path], "text/html; charset=utf-8")
            return self.send(404, b"unknown special")

    return Handler


class QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        """The crawler hangs up on oversized bodies on purpose; that is not a server error."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("site")
    state = Server(root / "site")
    httpd = QuietServer(("127.0.0.1", 0), make_handler(state))
    state.base = f"http://127.0.0.1:{httpd.server_address[1]}"
    state.summary = write_site(root, seed=1, n_articles=10, base_url=state.base)
    for name in ("target.html", "busy", "gzipped.html", "only-in-sitemap.html"):
        state.sent[f"/special/{name}"] = special_page(name)
    state.sent["/special/links.html"] = LINKS_PAGE
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield state
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def site(server: Server) -> Server:
    server.reset()
    return server


def config(site: Server, **overrides) -> CrawlConfig:
    settings = dict(seeds=[f"{site.base}/", f"{site.base}/special/links.html"],
                    allow_private_addresses=True, per_host_delay=0.0, per_host_concurrency=2,
                    max_body_bytes=MAX_BODY, retries=2, backoff=0.01, timeout=10)
    settings.update(overrides)
    return CrawlConfig(**settings)


def read_warcs(out: Path) -> list:
    """Every record of every WARC, parsed by warcio (the reader other tools use)."""
    records = []
    for path in sorted((out / "warc").glob("*.warc.gz")):
        with open(path, "rb") as fh:
            for rec in ArchiveIterator(fh):
                records.append((path.name, rec.rec_type, rec.rec_headers,
                                rec.http_headers, rec.content_stream().read()))
    return records


def responses(records: list) -> dict[str, tuple]:
    out = {}
    for _, rtype, rh, http, body in records:
        if rtype == "response":
            url = rh.get_header("WARC-Target-URI")
            assert url not in out, f"{url} stored twice"
            out[url] = (rh, http, body)
    return out


def frontier_rows(out: Path) -> dict[str, tuple]:
    with sqlite3.connect(out / "frontier.sqlite") as db:
        return {r[0]: r[1:] for r in db.execute(
            "SELECT url, status, error, http_status, attempts, kind FROM frontier")}


# --- units -----------------------------------------------------------------------------------


def test_normalize_url() -> None:
    assert normalize_url("HTTP://Example.COM:80/a/./b/../c?b=2&a=1&utm_source=x#frag") == \
        "http://example.com/a/c?a=1&b=2"
    assert normalize_url("https://example.com:443") == "https://example.com/"
    assert normalize_url("https://example.com:8443/%7euser/%2f?q=%e2%82%ac") == \
        "https://example.com:8443/~user/%2F?q=%E2%82%AC"
    assert normalize_url("../x y.html", "http://h.org/a/b/c.html") == "http://h.org/a/x%20y.html"
    assert normalize_url("/p;jsessionid=ABC?gclid=1&fbclid=2", "http://h.org/") == "http://h.org/p"
    assert normalize_url("http://user:pw@bücher.de/") == "http://xn--bcher-kva.de/"
    for bad in ("mailto:a@b.org", "javascript:void(0)", "ftp://h.org/", "http://", "http://h:x/"):
        assert normalize_url(bad) is None


def test_config_validation() -> None:
    cfg = load_config(CrawlConfig, overrides=("seeds=[https://a.org/]", "per_host_delay=0.25"))
    assert cfg.per_host_delay == 0.25 and cfg.product_token == "sievelm-crawler"
    for bad in ({"seeds": []}, {"seeds": ["https://a.org/"], "exclude_patterns": ["("]},
                {"seeds": ["https://a.org/"], "per_host_delay": -1},
                {"seeds": ["https://a.org/"], "warc_prefix": "../x"},
                {"seeds": ["https://a.org/"], "unknown_knob": 1}):
        with pytest.raises(ValueError):
            CrawlConfig(**bad)


def test_robots_rules() -> None:
    text = ("User-agent: BadBot\nDisallow: /\n\n"
            "User-agent: *\nCrawl-delay: 0.05\nDisallow: /private/\nDisallow: /*.pdf$\n"
            "Allow: /private/open/\n\nSitemap: https://h.org/sitemap.xml\n")
    rules = RobotsRules.parse(text, "sievelm-crawler")
    assert rules.crawl_delay == pytest.approx(0.05)  # urllib.robotparser would say None
    assert rules.sitemaps == ("https://h.org/sitemap.xml",)
    assert rules.allowed("https://h.org/a.html")
    assert not rules.allowed("https://h.org/private/x.html")
    assert rules.allowed("https://h.org/private/open/x.html")  # longest match wins
    assert not rules.allowed("https://h.org/docs/a.pdf")
    assert rules.allowed("https://h.org/docs/a.pdf?page=2")  # '$' anchors
    assert not RobotsRules.parse(text, "BadBot").allowed("https://h.org/a.html")
    assert not RobotsRules.unreachable().allowed("https://h.org/a.html")
    assert RobotsRules.unreachable().allowed("https://h.org/robots.txt")


def test_refusal_reason() -> None:
    assert refusal_reason("93.184.216.34") is None
    assert refusal_reason("2606:4700:4700::1111") is None
    for address, reason in (("127.0.0.1", "loopback"), ("10.1.2.3", "private"),
                            ("192.168.0.1", "private"), ("169.254.169.254", "link-local"),
                            ("224.0.0.1", "multicast"), ("240.0.0.1", "reserved"),
                            ("::1", "loopback"), ("::ffff:127.0.0.1", "loopback"),
                            ("fe80::1", "link-local"), ("0.0.0.0", "unspecified")):
        assert refusal_reason(address) == reason, address


def test_parse_sitemap_index_and_gzip() -> None:
    index = parse_sitemap(_sitemap_index("http://h.org"))
    assert index.sitemaps == ["http://h.org/special/extra-sitemap.xml.gz"] and not index.pages
    urlset = parse_sitemap(_extra_sitemap("http://h.org"))
    assert urlset.pages == ["http://h.org/special/only-in-sitemap.html"]
    broken = parse_sitemap(b"<urlset><url><loc>http://h.org/a</loc></url><url><loc>")
    assert broken.pages == ["http://h.org/a"] and broken.error


# --- against the server ----------------------------------------------------------------------


def test_polite_crawl_end_to_end(site: Server, tmp_path: Path) -> None:
    out = tmp_path / "crawl"
    cfg = config(site, sitemaps=[f"{site.base}/special/sitemap-index.xml"],
                 exclude_patterns=[r"/deals/"], warc_max_bytes=30_000)
    report = crawl(cfg, out, progress=False)
    paths = site.paths()
    hits = Counter(paths)

    # robots.txt: fetched once, obeyed, even through a redirect into /private/
    assert hits["/robots.txt"] == 1
    assert not [p for p in paths if p.startswith("/private/")]
    assert paths[0] == "/robots.txt"
    rows = frontier_rows(out)
    assert rows[f"{site.base}/private/staff-notes.html"][:2] == ("blocked", "robots_disallowed")
    assert report.errors["robots_disallowed"] >= 3

    # the Crawl-delay (0.05 s, larger than per_host_delay=0) spaces every request start
    times = [t for t, _ in site.log]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    # server-side receive times jitter on a loaded machine; the client gate spaces starts
    assert min(gaps) >= ROBOTS_DELAY / 2, min(gaps)
    assert times[-1] - times[0] >= (len(times) - 1) * ROBOTS_DELAY - GAP_SLACK

    # errors are recorded by kind and never stored
    assert hits["/special/missing"] == 1 and report.errors["http_404"] == 1
    assert hits["/special/broken"] == 3 and report.errors["http_500"] == 1  # 1 + 2 retries
    assert hits["/special/busy"] == 2 and report.retries >= 3  # 429 once, 500 twice
    assert report.errors["too_large"] == 2
    assert report.errors["not_html"] == 2
    assert report.errors["out_of_scope"] >= 2  # example.org and the excluded /deals/ pages
    assert not [p for p in paths if p.startswith("/deals/")]
    assert rows["http://example.org/elsewhere"][:2] == ("skipped", "out_of_scope")

    # every URL fetched at most once; tracking params and dot segments collapse into one URL
    assert hits["/special/target.html"] == 1
    assert not [p for p, n in hits.items() if n > 1 and p not in ("/special/broken",
                                                                    "/special/busy")]

    records = read_warcs(out)
    stored = responses(records)
    base = site.base
    # redirects: each hop stored with its status, the chain's end stored as a page
    assert stored[f"{base}/special/redirect-1"][1].get_statuscode() == "301"
    assert stored[f"{base}/special/redirect-2"][1].get_statuscode() == "302"
    assert stored[f"{base}/special/to-private"][1].get_statuscode() == "302"
    assert stored[f"{base}/special/target.html"][2] == site.sent["/special/target.html"]
    assert report.redirects == 3
    # the 429 was retried and then stored; the gzip page is stored decoded, headers renamed
    assert stored[f"{base}/special/busy"][2] == site.sent["/special/busy"]
    gz_http = stored[f"{base}/special/gzipped.html"][1]
    assert stored[f"{base}/special/gzipped.html"][2] == site.sent["/special/gzipped.html"]
    assert gz_http.get_header("X-Crawler-Content-Encoding") == "gzip"
    assert gz_http.get_header("Content-Encoding") is None
    # the sitemap index -> gzipped sitemap -> page only listed there
    assert f"{base}/special/only-in-sitemap.html" in stored
    for bad in ("missing", "broken", "huge.html", "huge-stream.html", "doc.pdf", "image.png"):
        assert f"{base}/special/{bad}" not in stored

    # every allowed demo page (except the excluded /deals/) is stored, byte for byte
    expected = [p for p in site.summary.pages if p.allowed and not p.path.startswith("/deals/")]
    for page in expected:
        rh, http, body = stored[base + page.path]
        assert body == (site.root / page.file).read_bytes(), page.path
        assert http.get_statuscode() == "200"
        assert http.get_header("Content-Type")
        assert rh.get_header("WARC-IP-Address") == "127.0.0.1"
    assert report.pages == len(expected) + 5  # + links, target, busy, gzipped, only-in-sitemap
    assert report.pages == report.pages_total == sum(
        1 for _, http, _ in stored.values() if http.get_statuscode() == "200")

    # request and response records pair up through WARC-Concurrent-To
    ids = {rh.get_header("WARC-Record-ID"): (rtype, rh) for _, rtype, rh, _, _ in records}
    requests = [(rh, http) for _, rtype, rh, http, _ in records if rtype == "request"]
    assert len(requests) == len(stored)
    for rh, http in requests:
        other_type, other = ids[rh.get_header("WARC-Concurrent-To")]
        assert other_type == "response"
        assert other.get_header("WARC-Concurrent-To") == rh.get_header("WARC-Record-ID")
        assert other.get_header("WARC-Target-URI") == rh.get_header("WARC-Target-URI")
        assert http.protocol == "GET" and http.get_header("User-Agent") == cfg.user_agent

    # rolled over into several complete files, each starting with warcinfo; no temp files left
    files = sorted((out / "warc").iterdir())
    assert len(files) >= 3 and all(f.name.endswith(".warc.gz") for f in files)
    assert [f.name for f in files] == [f"crawl-{i:05d}.warc.gz" for i in range(len(files))]
    assert report.warc_files == files
    for name in (f.name for f in files):
        first = next(r for r in records if r[0] == name)
        assert first[1] == "warcinfo"
    assert "stage crawl" in report.summary() and "http_404" in report.summary()


def test_private_address_refused_without_flag(site: Server, tmp_path: Path) -> None:
    cfg = config(site, allow_private_addresses=False)
    with pytest.raises(PrivateAddressError, match="allow_private_addresses") as info:
        crawl(cfg, tmp_path / "crawl", progress=False)
    assert "loopback" in str(info.value)
    by_name = config(site, allow_private_addresses=False,
                     seeds=[site.base.replace("127.0.0.1", "localhost") + "/"])
    with pytest.raises(PrivateAddressError, match="allow_private_addresses"):
        crawl(by_name, tmp_path / "crawl", progress=False)
    assert site.paths() == []
    assert not (tmp_path / "crawl").exists()


def test_private_address_refused_mid_crawl(site: Server) -> None:
    """Links and redirects to private hosts are refused at connect time, by name or by IP."""

    async def fetch_both() -> list:
        fetcher = Fetcher(user_agent="t", timeout=5, retries=0, backoff=0, concurrency=2,
                          per_host_concurrency=1, per_host_delay=0, allow_private=False)
        port = site.base.rsplit(":", 1)[1]
        try:
            return [await fetcher.get(f"http://{host}:{port}/", accept=None, max_bytes=1000)
                    for host in ("localhost", "127.0.0.1")]
        finally:
            await fetcher.close()

    for result in asyncio.run(fetch_both()):
        assert result.error == "private_address"
        assert "allow_private_addresses" in (result.detail or "")
    assert site.paths() == []


def test_one_crawl_per_out_dir(site: Server, tmp_path: Path) -> None:
    import fcntl

    out = tmp_path / "crawl"
    out.mkdir()
    with open(out / ".lock", "wb") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        with pytest.raises(RuntimeError, match="another crawl is running"):
            crawl(config(site), out, progress=False)
    assert site.paths() == []


def test_robots_4xx_allows_all_5xx_disallows_all(site: Server, tmp_path: Path) -> None:
    site.robots_status = 503
    report = crawl(config(site, retries=1, max_pages=5), tmp_path / "a", progress=False)
    assert site.paths() == ["/robots.txt", "/robots.txt"]  # retried once, then nothing
    assert report.pages == 0 and report.errors["robots_unreachable"] == 2

    site.reset()
    site.robots_status = 404
    cfg = config(site, seeds=[f"{site.base}/private/staff-notes.html"], max_pages=1)
    report = crawl(cfg, tmp_path / "b", progress=False)
    assert site.paths() == ["/robots.txt", "/private/staff-notes.html"]
    assert report.pages == 1


def test_resume_after_max_pages(site: Server, tmp_path: Path) -> None:
    out = tmp_path / "crawl"
    cfg = config(site, seeds=[f"{site.base}/"])
    first = crawl(cfg.model_copy(update={"max_pages": 5}), out, progress=False)
    assert first.pages == 5 and "max_pages" in first.stopped
    assert first.frontier["queued"] > 0
    first_paths = site.paths()

    site.reset()
    second = crawl(cfg.model_copy(update={"max_pages": 20}), out, progress=False)
    assert second.pages == 15 and second.pages_total == 20
    second_paths = site.paths()
    assert "/robots.txt" not in second_paths  # cached in the frontier for 24 h
    fetched = first_paths + second_paths
    assert len(fetched) == len(set(fetched)), "a URL was fetched twice"
    stored = responses(read_warcs(out))  # also asserts nothing is stored twice
    assert sum(1 for _, http, _ in stored.values() if http.get_statuscode() == "200") == 20
    assert len(list((out / "warc").glob("*.warc.gz"))) == 2


def test_resume_in_flight_rows_and_unfinished_warc(site: Server, tmp_path: Path) -> None:
    """A killed run leaves rows in flight and a .open WARC: both are undone on restart."""
    out = tmp_path / "crawl"
    cfg = config(site, seeds=[f"{site.base}/"])
    crawl(cfg.model_copy(update={"max_pages": 4}), out, progress=False)
    # make it look killed: three rows in flight, the only WARC never closed (and cut short)
    warc = out / "warc" / "crawl-00000.warc.gz"
    partial = warc.with_name(warc.name + ".open")
    partial.write_bytes(warc.read_bytes()[:500])
    warc.unlink()
    frontier = Frontier(out / "frontier.sqlite")
    frontier._db.execute("UPDATE frontier SET status = 'in-flight' WHERE id IN "
                         "(SELECT id FROM frontier WHERE status = 'queued' LIMIT 3)")
    frontier.warc_opened(warc.name)
    lost = [u for (u,) in frontier._db.execute(
        "SELECT url FROM frontier WHERE warc_file = ?", (warc.name,))]
    frontier.close()
    assert len(lost) == 4

    site.reset()
    report = crawl(cfg, out, progress=False)
    assert report.resumed == 3
    allowed = [p for p in site.summary.pages if p.allowed]
    assert report.pages == report.pages_total == len(allowed)  # the 4 lost pages count again
    assert not list((out / "warc").glob("*.open"))
    assert {u.removeprefix(site.base) for u in lost} <= set(site.paths())
    stored = responses(read_warcs(out))  # each page once
    assert set(stored) == {site.base + p.path for p in allowed}


@pytest.mark.slow
def test_killed_process_resumes_without_duplicates(site: Server, tmp_path: Path) -> None:
    """SIGKILL a crawl mid-way, re-run it: every page ends up in the WARCs exactly once,
    and pages in WARC files closed before the kill are not fetched again."""
    out = tmp_path / "crawl"
    cfg = config(site, per_host_delay=0.08, warc_max_bytes=15_000)
    script = ("import json, sys; from pathlib import Path; "
              "from curate.crawl import CrawlConfig, crawl; "
              "crawl(CrawlConfig(**json.loads(sys.argv[1])), Path(sys.argv[2]), progress=False)")
    proc = subprocess.Popen([sys.executable, "-c", script, cfg.model_dump_json(), str(out)],
                            cwd=PROJECT_ROOT, env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)})
    try:
        deadline = time.monotonic() + 30
        while len(site.paths()) < 20 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert proc.poll() is None, "the crawl finished before it could be killed"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=10)
    kept = {u.removeprefix(site.base) for u in responses(read_warcs(out))}
    assert kept, "no WARC file was closed before the kill"

    site.reset()
    report = crawl(cfg, out, progress=False)
    assert report.stopped == "frontier exhausted"
    times = [t for t, _ in site.log]  # per_host_delay=0.08 is larger than the Crawl-delay
    assert min(b - a for a, b in itertools.pairwise(times)) >= 0.08 / 2
    assert times[-1] - times[0] >= (len(times) - 1) * 0.08 - GAP_SLACK
    assert not kept & set(site.paths()), "a page from a closed WARC was fetched again"
    assert not list((out / "warc").glob("*.open"))
    stored = responses(read_warcs(out))  # raises if any URL is stored twice
    rows = frontier_rows(out)
    assert {u for u, r in rows.items() if r[0] == "done" and r[-1] == "page"} == set(stored)
    assert not [u for u, r in rows.items() if r[0] in ("queued", "in-flight")]
    expected = [p for p in site.summary.pages if p.allowed]
    assert {site.base + p.path for p in expected} <= set(stored)
