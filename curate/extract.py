"""Main-text extraction from HTML with trafilatura, with a time limit and reasons for failure.

Extraction is per document by nature (an HTML parse), so it runs in the runner's worker
processes; a per-document alarm stops a pathological page from stalling a worker.
"""

from __future__ import annotations

import codecs
import contextlib
import re
import signal
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

from curate.config import StageConfig
from curate.decode import DecodeError, decode_html

Preset = Literal["fast", "standard", "precision", "recall"]
PRESETS: dict[str, dict[str, bool]] = {
    "fast": {"fast": True},
    "standard": {},
    "precision": {"favor_precision": True},
    "recall": {"favor_recall": True},
}
HTML_TYPES = ("text/html", "application/xhtml+xml")
METADATA_FIELDS = ("author", "date", "sitename", "hostname", "description", "categories",
                   "tags", "license", "image", "pagetype")
# "fast" metadata: what pages declare in their head, read with XPath on the tree trafilatura
# parses anyway. trafilatura's own metadata search (htmldate heuristics) costs ~40% more time
# per page, so it is opt-in as "full".
_FAST_METADATA = {
    "title": ("//meta[@property='og:title']/@content", "//title/text()", "//h1//text()"),
    "author": ("//meta[@name='author']/@content", "//meta[@property='article:author']/@content",
               "//*[@rel='author']//text()"),
    "date": ("//meta[@property='article:published_time']/@content",
             "//meta[@name='date' or @name='pubdate' or @name='DC.date' or "
             "@itemprop='datePublished']/@content", "//time/@datetime"),
    "sitename": ("//meta[@property='og:site_name']/@content",
                 "//meta[@name='application-name']/@content"),
    "description": ("//meta[@name='description']/@content",
                    "//meta[@property='og:description']/@content"),
    "lang_hint": ("/html/@lang", "//meta[@http-equiv='content-language']/@content"),
}
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


class ExtractConfig(StageConfig):
    """Extraction settings shared by every web input (WARC, HTML files, HTML columns)."""

    preset: Preset = "standard"
    include_tables: bool = True
    include_comments: bool = True
    max_html_bytes: int = 5_000_000
    min_text_chars: int = 1
    timeout_seconds: float = 10.0
    """Per-document limit in seconds; 0 disables it (needs the main thread, as in the runner)."""
    metadata: Literal["fast", "full", "none"] = "fast"
    """fast: title/author/date/site/language declared in the page head; full: trafilatura's
    metadata search (finds more dates, ~40% slower); none: title only from the extractor."""
    html_column: str = "html"
    """For JSONL/Parquet inputs: the column holding the HTML."""
    url_column: str | None = "url"
    id_column: str | None = "id"
    source: str | None = None


class Rejection(Exception):
    """A document that cannot become text, with a machine-readable reason."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class Extracted:
    text: str
    title: str | None
    lang_hint: str | None
    encoding: str
    metadata: dict[str, Any]


class ExtractionTimeout(BaseException):
    """Raised by the alarm. A BaseException, because trafilatura catches ``Exception`` in its
    fallbacks and would swallow a plain TimeoutError (and the one-shot alarm with it)."""


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Raise ExtractionTimeout after ``seconds`` of wall time (main thread only; else no
    limit)."""
    if seconds <= 0 or threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_alarm(signum, frame):
        raise ExtractionTimeout(f"extraction took longer than {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _looks_like_html(text: str) -> bool:
    head = text[:2048].lower()
    return "<html" in head or "<body" in head or "<!doctype html" in head or "<p" in head \
        or "<div" in head or "<head" in head


def check_content_type(content_type: str | None) -> None:
    if content_type:
        mime = content_type.split(";", 1)[0].strip().lower()
        if mime and mime not in HTML_TYPES:
            raise Rejection("not_html", f"content type {mime}")


def extract_html(data: bytes, url: str | None, cfg: ExtractConfig,
                 content_type: str | None = None) -> Extracted:
    """HTML bytes -> main text and metadata, or ``Rejection`` saying why not."""
    import trafilatura

    check_content_type(content_type)
    if not data.strip():
        raise Rejection("empty_input", "no bytes")
    if len(data) > cfg.max_html_bytes:
        raise Rejection("too_large", f"{len(data)} bytes > max_html_bytes {cfg.max_html_bytes}")
    if b"\x00" in data[:4096] and not data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise Rejection("not_html", "binary content (NUL bytes)")
    try:
        decoded = decode_html(data, content_type)
    except DecodeError as exc:
        raise Rejection("undecodable", str(exc)) from None
    if not _looks_like_html(decoded.text):
        raise Rejection("not_html", "no HTML markup in the first 2 KB")
    meta: dict[str, Any] = {}
    try:
        with time_limit(cfg.timeout_seconds):
            tree = trafilatura.utils.load_html(decoded.text)
            if tree is None:
                raise Rejection("unparsable", "lxml could not build a tree")
            if cfg.metadata == "fast":
                meta = head_metadata(tree)
            doc = trafilatura.bare_extraction(
                tree, url=url, with_metadata=cfg.metadata == "full",
                include_tables=cfg.include_tables, include_comments=cfg.include_comments,
                **PRESETS[cfg.preset])
    except ExtractionTimeout as exc:
        raise Rejection("timeout", str(exc)) from None
    except Rejection:
        raise
    except Exception as exc:  # lxml/trafilatura raise many kinds
        raise Rejection("unparsable", f"{type(exc).__name__}: {exc}") from None
    text = (doc.text if doc is not None else None) or ""
    if len(text.strip()) < cfg.min_text_chars:
        raise Rejection("empty_extraction", "no main text found")
    if cfg.metadata == "full":
        meta = {k: getattr(doc, k, None) for k in METADATA_FIELDS}
        meta["title"], meta["lang_hint"] = doc.title, doc.language
    meta = {k: v for k, v in meta.items() if v not in (None, "", [])}
    title, lang_hint = meta.pop("title", None) or doc.title or None, meta.pop("lang_hint", None)
    meta["encoding"] = decoded.encoding
    meta["encoding_source"] = decoded.source
    return Extracted(text=text, title=title, lang_hint=lang_hint, encoding=decoded.encoding,
                     metadata=meta)


def head_metadata(tree: Any) -> dict[str, str]:
    """Title, author, date, site name, description and language the page declares."""
    found = {}
    for field, paths in _FAST_METADATA.items():
        for path in paths:
            values = [v.strip() for v in tree.xpath(path) if isinstance(v, str) and v.strip()]
            if values:
                found[field] = " ".join(values[0].split())
                break
    if "date" in found:
        match = _ISO_DATE.search(found["date"])
        found["date"] = match.group(0) if match else found["date"]
    return found


def extract_text(html: bytes, url: str | None, cfg: ExtractConfig | None = None) -> str:
    """Main text or "" (for evaluation, where a rejection simply scores zero)."""
    try:
        return extract_html(html, url, cfg or ExtractConfig()).text
    except Rejection:
        return ""
