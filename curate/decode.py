"""Turn HTML bytes into text: the charset from the header, a BOM, or the page's meta tag,
checked against the bytes, with detection as the last resort.

A declared charset is only trusted when the bytes decode under it: pages that say UTF-8 but
are windows-1252 (or say nothing) are common on the web.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass

_META_CHARSET = re.compile(
    rb"""<meta[^>]+charset\s*=\s*["']?\s*([a-zA-Z0-9_:.\-]+)""", re.IGNORECASE)
_HEADER_CHARSET = re.compile(r"charset\s*=\s*[\"']?([a-zA-Z0-9_:.\-]+)", re.IGNORECASE)
_BOMS = ((codecs.BOM_UTF8, "utf-8"), (codecs.BOM_UTF16_LE, "utf-16"),
         (codecs.BOM_UTF16_BE, "utf-16"))
SNIFF_BYTES = 4096
# codecs Python knows that no web page is written in: they would rewrite the text
_NOT_WEB = {"unicode-escape", "raw-unicode-escape", "idna", "punycode", "undefined",
            "cp037", "cp500", "cp1140", "cp273", "cp424", "cp875", "cp1026", "utf-7"}
_SINGLE_BYTE_PREFIXES = ("cp125", "cp8", "iso8859", "koi8", "mac-", "tis-620", "cp874")


def _single_byte(codec: str | None) -> bool:
    return codec is not None and codec.startswith(_SINGLE_BYTE_PREFIXES)


class DecodeError(ValueError):
    """The bytes could not be decoded as text under any plausible charset."""


@dataclass(frozen=True)
class Decoded:
    text: str
    encoding: str
    source: str  # where the charset came from: header, bom, meta, utf-8, detected


def header_charset(content_type: str | None) -> str | None:
    match = _HEADER_CHARSET.search(content_type or "")
    return match.group(1) if match else None


def meta_charset(data: bytes) -> str | None:
    match = _META_CHARSET.search(data[:SNIFF_BYTES])
    return match.group(1).decode("ascii", errors="ignore") if match else None


def _normalise(name: str | None) -> str | None:
    """A text encoding a page may declare, or None (unknown labels and non-text codecs)."""
    if not name:
        return None
    try:
        info = codecs.lookup(name)
    except LookupError:
        return None
    codec = info.name
    if not info._is_text_encoding or codec.replace("_", "-") in _NOT_WEB:
        return None
    # browsers treat latin-1 / ascii labels as windows-1252, and a utf-16 label on a page
    # without a BOM as utf-8 (WHATWG encoding standard)
    if codec in {"latin_1", "iso8859-1", "ascii"}:
        return "cp1252"
    return "utf-8" if codec.startswith("utf-16") or codec.startswith("utf-32") else codec


def _try(data: bytes, encoding: str | None) -> str | None:
    if encoding is None:
        return None
    try:
        return data.decode(encoding)
    except (UnicodeError, LookupError, ValueError):
        return None


def decode_html(data: bytes, content_type: str | None = None) -> Decoded:
    """Decode with the first charset that the bytes actually satisfy."""
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            text = _try(data[len(bom):] if encoding == "utf-8" else data, encoding)
            if text is not None:
                return Decoded(text, encoding, "bom")
    utf8 = _try(data, "utf-8")
    for source, name in (("header", header_charset(content_type)),
                         ("meta", meta_charset(data))):
        encoding = _normalise(name)
        if utf8 is not None and _single_byte(encoding) and not data.isascii():
            # valid multi-byte UTF-8 is almost never legitimate single-byte text: the
            # declaration is wrong (a common server default)
            return Decoded(utf8, "utf-8", f"utf-8 (declared {name} does not fit)")
        text = _try(data, encoding)
        if text is not None:
            return Decoded(text, encoding, source)
    if utf8 is not None:
        return Decoded(utf8, "utf-8", "utf-8")
    from charset_normalizer import from_bytes

    best = from_bytes(data[:200_000]).best()
    guess = _normalise(best.encoding) if best is not None else None
    text = _try(data, guess)
    if text is not None:
        return Decoded(text, guess, "detected")
    raise DecodeError("no charset decodes these bytes (declared: "
                      f"header={header_charset(content_type)}, meta={meta_charset(data)})")
