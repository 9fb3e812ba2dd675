"""WARC -> language-tagged document shards vs a single-process ``trafilatura.extract`` loop.

The pages are the real WCXB pages in ``../shared/data`` when present (else the demo site's
pages, repeated), packed into 4 WARC files the way a crawl would leave them.
"""

from __future__ import annotations

import gzip
import shutil
import tempfile
from io import BytesIO
from pathlib import Path

from bench.harness import Comparison, compare
from curate.extract import ExtractConfig
from curate.runner import plan_shards, run_stage
from curate.web_extract import EXTRACT, plan_extract

SHARED_HTML = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / \
    "extraction-wcxb-dev" / "html"
WARC_FILES = 4


def _pages(limit: int) -> list[tuple[str, bytes]]:
    if SHARED_HTML.is_dir():
        files = sorted(SHARED_HTML.glob("*.html.gz"))[:limit]
        return [(f"https://wcxb.example/{p.name[:4]}", gzip.decompress(p.read_bytes()))
                for p in files]
    from curate.demo_site import build_site, render_page

    site = build_site()
    pages = [(f"https://demo.example{p.path}", render_page(p, site).encode()) for p in site]
    return (pages * (limit // len(pages) + 1))[:limit]


def write_warcs(out: Path, pages: list[tuple[str, bytes]]) -> list[Path]:
    from warcio.statusandheaders import StatusAndHeaders
    from warcio.warcwriter import WARCWriter

    out.mkdir(parents=True)
    paths = []
    for i in range(WARC_FILES):
        path = out / f"bench-{i:05d}.warc.gz"
        with open(path, "wb") as f:
            writer = WARCWriter(f, gzip=True)
            for url, body in pages[i::WARC_FILES]:
                headers = StatusAndHeaders("200 OK", [("Content-Type", "text/html")],
                                           protocol="HTTP/1.1")
                writer.write_record(writer.create_warc_record(
                    url, "response", payload=BytesIO(body), http_headers=headers))
        paths.append(path)
    return paths


def trafilatura_loop(warcs: list[Path]) -> int:
    """What a user would write: read the WARCs, call trafilatura.extract on each page."""
    import trafilatura
    from warcio.archiveiterator import ArchiveIterator

    n = 0
    for path in warcs:
        with open(path, "rb") as f:
            for record in ArchiveIterator(f):
                if record.rec_type == "response":
                    html = record.content_stream().read().decode("utf-8", errors="replace")
                    url = record.rec_headers.get_header("WARC-Target-URI")
                    n += trafilatura.extract(html, url=url) is not None
    return n


def run(scale: float = 1.0, repeats: int = 3, workers: int = 2) -> list[Comparison]:
    from curate.langid import LANGID, LangIdConfig

    pages = _pages(int(380 * scale))
    source = "WCXB pages" if SHARED_HTML.is_dir() else "demo pages"
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        warcs = write_warcs(root / "warc", pages)

        def clean():
            for name in ("extract", "langid"):
                shutil.rmtree(root / name, ignore_errors=True)

        def ours():
            extracted = run_stage(EXTRACT, plan_extract(root / "warc"), root / "extract",
                                  ExtractConfig(), workers=workers, progress=False)
            tagged = run_stage(LANGID, plan_shards(root / "extract"), root / "langid",
                               LangIdConfig(), workers=workers, progress=False)
            assert extracted.ok and tagged.ok

        return [compare(
            "WARC -> language-tagged shards", f"{len(pages)} {source} in {WARC_FILES} WARCs",
            (f"curate extract + langid ({workers} workers)", ours),
            ("trafilatura.extract loop (1 process, no language ID)",
             lambda: trafilatura_loop(warcs)), repeats, clean)]
