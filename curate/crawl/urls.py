"""URL normalisation and scope rules.

Two spellings of one page must become one frontier row, or the crawler fetches it twice and
dedup has to clean up later; so every URL is normalised before it is compared or stored.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from urllib.parse import quote, urljoin, urlsplit

__all__ = ["TRACKING_PARAMS", "Scope", "host_of", "normalize_url", "normalize_with_host",
           "origin_of"]

DEFAULT_PORTS = {"http": 80, "https": 443}
TRACKING_PARAMS = frozenset({
    "gclid", "dclid", "gbraid", "wbraid", "fbclid", "msclkid", "yclid", "twclid", "igshid",
    "mc_cid", "mc_eid", "_ga", "_gl", "_hsenc", "_hsmi", "mkt_tok", "jsessionid", "phpsessid",
})
TRACKING_PREFIXES = ("utm_",)
UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
PATH_SAFE = "/:@!$&'()*+,;="
QUERY_PART_SAFE = "/:@!$'()*+,;?="  # '&' separates parameters, so it stays escaped inside one
_PCT = re.compile(r"%([0-9A-Fa-f]{2})")
_STRAY_PCT = re.compile(r"%(?![0-9A-Fa-f]{2})")
_AUTHORITY_END = re.compile(r"[/?#]")
_SESSION_PARAM = re.compile(r";jsessionid=[^/?#]*", re.I)


def normalize_pct(text: str, safe: str) -> str:
    """One spelling per character: unreserved escapes decoded, other escapes upper-case,
    unsafe characters (spaces, non-ASCII) escaped as UTF-8."""
    text = _STRAY_PCT.sub("%25", text)

    def fix(m: re.Match[str]) -> str:
        char = chr(int(m[1], 16))
        return char if char in UNRESERVED else "%" + m[1].upper()

    return quote(_PCT.sub(fix, text), safe=safe + "%")


def _remove_dot_segments(path: str) -> str:
    """RFC 3986 5.2.4, so /a/./b/../c and /a/c are one URL."""
    out: list[str] = []
    segments = path.split("/")
    for i, seg in enumerate(segments):
        last = i == len(segments) - 1
        if seg == ".":
            if last:
                out.append("")
        elif seg == "..":
            if len(out) > 1:
                out.pop()
            if last:
                out.append("")
        else:
            out.append(seg)
    result = "/".join(out)
    return result if result.startswith("/") else "/" + result


def _normalize_query(query: str) -> str:
    params = []
    for part in query.split("&"):
        if not part:
            continue
        key, sep, value = part.partition("=")
        name = key.lower()
        if name in TRACKING_PARAMS or name.startswith(TRACKING_PREFIXES):
            continue
        params.append((normalize_pct(key, QUERY_PART_SAFE), sep,
                       normalize_pct(value, QUERY_PART_SAFE)))
    params.sort()
    return "&".join(k + s + v for k, s, v in params)


def _normalize_host(host: str) -> str | None:
    host = host.strip().rstrip(".").lower()
    if not host:
        return None
    if ":" in host:  # IPv6 literal (urlsplit strips the brackets)
        return f"[{host}]"
    try:
        host.encode("ascii")
    except UnicodeEncodeError:
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError:
            return None
    if not re.fullmatch(r"[a-z0-9._-]+", host):
        return None
    return host


def normalize_url(url: str, base: str | None = None) -> str | None:
    """Canonical absolute http(s) URL, or None for anything that is not a crawlable URL.

    Lower-cases scheme and host (IDNA for non-ASCII hosts), drops default ports, user info,
    fragments, tracking parameters and ``;jsessionid``, resolves dot segments, normalises
    percent-escapes and sorts query parameters.
    """
    found = normalize_with_host(url, base)
    return None if found is None else found[0]


def _absolute(url: str, base: str | None) -> str | None:
    """Resolve against ``base``; skips urljoin for the common absolute and /path forms."""
    if base is None or url.startswith(("http://", "https://")):
        return url
    if url.startswith("/") and not url.startswith("//"):
        scheme_end = base.find("://")
        if scheme_end > 0:
            match = _AUTHORITY_END.search(base, scheme_end + 3)
            return (base[:match.start()] if match else base) + url
    try:
        return urljoin(base, url)
    except ValueError:
        return None


def normalize_with_host(url: str, base: str | None = None) -> tuple[str, str] | None:
    """:func:`normalize_url` plus the host, parsed once (the crawler needs both)."""
    joined = _absolute(url.strip(), base)
    return None if joined is None else _normalize_absolute(joined)


@functools.lru_cache(maxsize=16384)
def _normalize_absolute(joined: str) -> tuple[str, str] | None:
    """Cached: navigation links repeat on every page of a site."""
    try:
        parts = urlsplit(joined)
        scheme = parts.scheme.lower()
        if scheme not in DEFAULT_PORTS:
            return None
        port = parts.port
        host = _normalize_host(parts.hostname or "")
    except ValueError:
        return None
    if host is None:
        return None
    netloc = host if port is None or port == DEFAULT_PORTS[scheme] else f"{host}:{port}"
    path = _SESSION_PARAM.sub("", parts.path)
    path = _remove_dot_segments(normalize_pct(path, PATH_SAFE)) if path else "/"
    query = _normalize_query(parts.query) if parts.query else ""
    normalized = f"{scheme}://{netloc}{path}" + (f"?{query}" if query else "")
    return normalized, host.strip("[]")


def host_of(url: str) -> str:
    """The host a URL's politeness budget belongs to (no port: one server, one budget)."""
    return urlsplit(url).hostname or ""


def origin_of(url: str) -> str:
    """scheme://host[:port], the unit robots.txt applies to (RFC 9309)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


class Scope:
    """Which normalised URLs the crawl may visit: allowed domains plus include/exclude regexes."""

    def __init__(self, domains: Iterable[str], include: Iterable[str] = (),
                 exclude: Iterable[str] = ()) -> None:
        self.domains = tuple(sorted({d.strip().strip(".").lower() for d in domains if d.strip()}))
        self.include = tuple(re.compile(p) for p in include)
        self.exclude = tuple(re.compile(p) for p in exclude)

    def allows(self, url: str, host: str | None = None) -> bool:
        """True when the (already normalised) URL is on an allowed domain and passes the
        include and exclude patterns."""
        host = host_of(url) if host is None else host
        if self.domains and not any(host == d or host.endswith("." + d) for d in self.domains):
            return False
        if self.include and not any(p.search(url) for p in self.include):
            return False
        return not any(p.search(url) for p in self.exclude)
