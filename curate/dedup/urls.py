"""URL normalisation for URL deduplication: the same page reached by different spellings.

Scheme and host are case-insensitive, default ports and fragments name nothing new,
tracking parameters (``utm_*``, ``fbclid``, ``gclid``...) change no content, and parameter
order is arbitrary. Path case and trailing slashes are kept except for the root: servers do
treat ``/A`` and ``/a`` (or ``/a`` and ``/a/``) as different resources.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pyarrow as pa

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
    netloc = host if port in (None, DEFAULT_PORTS.get(scheme)) else f"{host}:{port}"
    if parts.username or parts.password:
        netloc = f"{parts.username or ''}{':' + parts.password if parts.password else ''}@{netloc}"
    query = sorted((k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True)
                   if k.lower() not in TRACKING_PARAMS
                   and not k.lower().startswith(TRACKING_PREFIXES))
    return urlunsplit((scheme, netloc, parts.path or "/", urlencode(query), ""))


def normalize_urls(urls: pa.Array | pa.ChunkedArray) -> pa.Array:
    """Normalised URLs (nulls and blanks stay null), each distinct URL parsed once."""
    arr = urls.combine_chunks() if isinstance(urls, pa.ChunkedArray) else urls
    encoded = arr.dictionary_encode()
    canon = pa.array([normalize_url(u) if u and u.strip() else None
                      for u in encoded.dictionary.to_pylist()], pa.string())
    return canon.take(encoded.indices)
