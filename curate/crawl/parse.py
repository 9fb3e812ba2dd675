"""What the crawler reads out of fetched bodies: links from HTML, URLs from sitemaps."""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass
from urllib.parse import urljoin
from xml.etree import ElementTree

import lxml.html
from lxml import etree

__all__ = ["SitemapContent", "extract_links", "parse_sitemap", "robots_nofollow"]

SITEMAP_MAX_BYTES = 50 * 1024 * 1024
"""The sitemap protocol's size limit for one (uncompressed) file."""
_CHARSET = re.compile(r"charset\s*=\s*[\"']?([\w.:-]+)", re.I)


def robots_nofollow(directives: str) -> bool:
    """True when a robots meta tag / X-Robots-Tag value forbids following links."""
    tokens = {t.strip().lower() for t in re.split(r"[,\s]+", directives)}
    return bool(tokens & {"nofollow", "none"})


def extract_links(body: bytes, base_url: str, content_type: str = "") -> tuple[list[str], str]:
    """href values of <a>/<area> elements and the URL they are relative to (the page, or its
    <base href>); resolving, normalising and scoping them is the caller's job.

    Returns no links when the page says ``<meta name="robots" content="nofollow">``.
    """
    if not body.strip():
        return [], base_url
    match = _CHARSET.search(content_type)
    try:
        parser = lxml.html.HTMLParser(encoding=match[1] if match else None)
    except LookupError:
        parser = lxml.html.HTMLParser()
    try:
        doc = lxml.html.document_fromstring(body, parser=parser)
    except (etree.ParserError, ValueError, LookupError):
        return [], base_url
    if doc is None:
        return [], base_url
    for meta in doc.iter("meta"):
        if (meta.get("name") or "").strip().lower() == "robots" and \
                robots_nofollow(meta.get("content") or ""):
            return [], base_url
    base = base_url
    for tag in doc.iter("base"):
        href = tag.get("href")
        if href:
            base = _join(base_url, href.strip()) or base_url
            break
    links = []
    for element in doc.iter("a", "area"):
        href = element.get("href")
        if href is None:
            continue
        href = href.strip()
        if href and not href.startswith("#"):
            links.append(href)
    return links, base


def _join(base: str, href: str) -> str | None:
    try:
        return urljoin(base, href)
    except ValueError:
        return None


@dataclass(frozen=True)
class SitemapContent:
    """URLs of a sitemap: pages (``<urlset>`` or plain text) or child sitemaps (an index)."""

    pages: list[str]
    sitemaps: list[str]
    error: str | None = None


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1].lower()


def parse_sitemap(body: bytes, max_bytes: int = SITEMAP_MAX_BYTES) -> SitemapContent:
    """Parse an XML sitemap, a sitemap index or a text sitemap, gzipped or not.

    A broken file keeps the URLs read before the break, with ``error`` set."""
    if body[:2] == b"\x1f\x8b":
        try:
            body = _gunzip(body, max_bytes)
        except (OSError, EOFError, zlib.error, ValueError) as exc:
            return SitemapContent([], [], f"bad gzip: {exc}")
    head = body.lstrip()[:1]
    if head != b"<":
        text = body.decode("utf-8", errors="replace")
        lines = [line.strip() for line in text.splitlines()
                 if line.strip().startswith(("http://", "https://"))]
        return SitemapContent(lines, [])
    pages: list[str] = []
    sitemaps: list[str] = []
    error = None
    parser = ElementTree.XMLPullParser(events=("start", "end"))
    stack: list[str] = []
    try:
        parser.feed(body)
        parser.close()
    except ElementTree.ParseError as exc:
        error = f"bad XML: {exc}"
    for event, element in parser.read_events():
        if event == "start":
            stack.append(_local(element.tag))
            continue
        name = stack.pop() if stack else ""
        if name == "loc" and stack and (element.text or "").strip():
            target = sitemaps if stack[-1] == "sitemap" else pages
            target.append(element.text.strip())
        element.clear()
    return SitemapContent(pages, sitemaps, error)


def _gunzip(data: bytes, max_bytes: int) -> bytes:
    """Decompress with a cap, so a gzip bomb cannot exhaust memory."""
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    out = d.decompress(data, max_bytes + 1)
    if len(out) > max_bytes:
        raise ValueError(f"sitemap larger than {max_bytes:,} bytes uncompressed")
    return out

