"""URL normalisation for URL deduplication: the same page reached by different spellings.

Scheme and host are case-insensitive, default ports and fragments name nothing new,
tracking parameters (``utm_*``, ``fbclid``, ``gclid``...) change no content, and parameter
order is arbitrary. Path case and trailing slashes are kept except for the root: servers do
treat ``/A`` and ``/a`` (or ``/a`` and ``/a/``) as different resources.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

DEFAULT_PORTS = {"http": 80, "https": 443}
TRACKING_PREFIXES = ("utm_",)
TRACKING_PARAMS = frozenset({"fbclid", "gclid", "dclid", "msclkid", "mc_cid", "mc_eid",
                             "_ga", "yclid", "igshid"})


def normalize_url(url: str) -> str:
    """Canonical spelling of ``url``; anything unparsable is only trimmed and lower-cased."""
    raw = url.strip()
    try:
        parts = urlsplit(raw)
        port = parts.port
    except ValueError:
        return raw.lower()
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower().rstrip(".")
    host = f"[{host}]" if ":" in host else host  # IPv6 literal
    netloc = host if port in (None, DEFAULT_PORTS.get(scheme)) else f"{host}:{port}"
    if parts.username or parts.password:
        netloc = f"{parts.username or ''}{':' + parts.password if parts.password else ''}@{netloc}"
    query = sorted((k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True)
                   if k.lower() not in TRACKING_PARAMS
                   and not k.lower().startswith(TRACKING_PREFIXES))
    return urlunsplit((scheme, netloc, parts.path or "/", urlencode(query), ""))


SIMPLE_URL = r"^(?P<scheme>https?)://(?P<host>[A-Za-z0-9.-]+?)(?P<port>:[0-9]{1,5})?" \
    r"(?P<path>/[^?#\s]*)?(?:#.*)?$"
"""http(s) URLs without a query, user info or unusual characters: most of any crawl, and
normalised here with vectorised string kernels; everything else goes through
``normalize_url`` (tested to agree on the simple ones)."""


def normalize_urls(urls: pa.Array | pa.ChunkedArray) -> pa.Array:
    """Normalised URLs (nulls and blanks stay null)."""
    arr = urls.combine_chunks() if isinstance(urls, pa.ChunkedArray) else urls
    arr = pc.utf8_trim_whitespace(arr.cast(pa.string()))
    parts = pc.extract_regex(arr, SIMPLE_URL)
    simple = pc.fill_null(pc.is_valid(parts), False)
    scheme = pc.ascii_lower(pc.struct_field(parts, "scheme"))
    host = pc.utf8_rtrim(pc.ascii_lower(pc.struct_field(parts, "host")), ".")
    port = pc.struct_field(parts, "port")
    default = pc.or_(pc.and_(pc.equal(scheme, "http"), pc.equal(port, ":80")),
                     pc.and_(pc.equal(scheme, "https"), pc.equal(port, ":443")))
    port = pc.if_else(pc.fill_null(default, False), "", port)
    path = pc.struct_field(parts, "path")
    path = pc.if_else(pc.equal(path, ""), "/", path)
    fast = pc.binary_join_element_wise(scheme, "://", host, port, path, "")
    out = pc.if_else(simple, fast, pa.nulls(len(arr), pa.string()))
    slow = np.flatnonzero(~np.asarray(simple, dtype=bool) & np.asarray(
        pc.fill_null(pc.greater(pc.utf8_length(arr), 0), False), dtype=bool))
    if len(slow):
        values = [normalize_url(u) for u in arr.take(pa.array(slow)).to_pylist()]
        out = pc.replace_with_mask(out, _mask(len(arr), slow), pa.array(values, pa.string()))
    return out


def _mask(n: int, where: np.ndarray) -> pa.Array:
    mask = np.zeros(n, dtype=bool)
    mask[where] = True
    return pa.array(mask)
