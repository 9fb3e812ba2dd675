"""Text normalisation before shingling: Unicode-aware, compiled, one pass over the bytes.

Near-duplicates differ in case, punctuation, numbers and spacing far more often than in
words, so the text is reduced before it is shingled (the FineWeb recipe does the same):
lower case (pyarrow's Unicode ``utf8_lower``), punctuation and symbols (Unicode categories
P* and S*) to spaces, every run of digits to one ``0``, optionally accents removed (NFKD, then
combining marks dropped), and whitespace collapsed to single spaces with none at either end.
The result is what ``minhash`` expects: words separated by exactly one space.

The character classes come from ``unicodedata`` (one table over all code points, built once
per process), so the rules hold for every script lid.176 reports, not only ASCII.
"""

from __future__ import annotations

import functools
import unicodedata
from dataclasses import dataclass

import numba
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

KEEP, SPACE, DIGIT, MARK, PUNCT, FORMAT = 0, 1, 2, 3, 4, 5


@dataclass(frozen=True)
class Normalization:
    """Which reductions to apply; the defaults follow FineWeb's MinHash text simplification."""

    lowercase: bool = True
    remove_punctuation: bool = True
    normalize_digits: bool = True
    strip_accents: bool = False


TABLE_END = 0x30000
"""Planes 0-2 hold every assigned character except plane 14's tags and variation selectors
(handled by rule in the kernel); a smaller table builds in a fraction of the time."""


@functools.cache
def char_classes() -> np.ndarray:
    """uint8 class of every code point below ``TABLE_END``: space, digit, mark, punctuation,
    format."""
    table = np.zeros(TABLE_END, dtype=np.uint8)
    for cp in range(TABLE_END):
        ch = chr(cp)
        cat = unicodedata.category(ch)
        if ch.isspace() or cat in ("Zs", "Zl", "Zp", "Cc"):
            table[cp] = SPACE
        elif cat == "Nd":
            table[cp] = DIGIT
        elif cat == "Mn":
            table[cp] = MARK
        elif cat == "Cf":  # zero-width spaces, soft hyphens, direction marks: invisible
            table[cp] = FORMAT
        elif cat[0] in "PS":
            table[cp] = PUNCT
    return table


@numba.njit(inline="always")
def _class_of(table, cp):
    if cp < table.shape[0]:
        return table[cp]
    if 0xE0000 <= cp < 0xE0080:
        return 5  # tag characters: format
    if 0xE0100 <= cp < 0xE01F0:
        return 3  # variation selectors supplement: nonspacing marks
    return 0


@numba.njit(cache=True)
def _normalize(data, offsets, table, punct, digits, marks, out, out_offsets):
    """Rewrite each string into ``out``: separators collapse to one space, none at the ends."""
    w = 0
    for d in range(offsets.shape[0] - 1):
        out_offsets[d] = w
        i = offsets[d]
        end = offsets[d + 1]
        pending_space = False
        in_digits = False
        while i < end:
            lead = data[i]
            if lead < 0x80:
                cp = np.int64(lead)
                n = 1
            elif lead < 0xE0:
                cp = (np.int64(lead & 0x1F) << 6) | np.int64(data[i + 1] & 0x3F)
                n = 2
            elif lead < 0xF0:
                cp = ((np.int64(lead & 0x0F) << 12) | (np.int64(data[i + 1] & 0x3F) << 6)
                      | np.int64(data[i + 2] & 0x3F))
                n = 3
            else:
                cp = ((np.int64(lead & 0x07) << 18) | (np.int64(data[i + 1] & 0x3F) << 12)
                      | (np.int64(data[i + 2] & 0x3F) << 6) | np.int64(data[i + 3] & 0x3F))
                n = 4
            cls = _class_of(table, cp)
            if cls == 1 or (cls == 4 and punct):
                pending_space = w > out_offsets[d]
                in_digits = False
            elif cls == 5 or (cls == 3 and marks):
                pass  # dropped: neither separates nor joins
            elif cls == 2 and digits:
                if not in_digits:
                    if pending_space:
                        out[w] = 32
                        w += 1
                        pending_space = False
                    out[w] = 48  # "0"
                    w += 1
                    in_digits = True
            else:
                if pending_space:
                    out[w] = 32
                    w += 1
                    pending_space = False
                in_digits = False
                for k in range(n):
                    out[w + k] = data[i + k]
                w += n
            i += n
    out_offsets[offsets.shape[0] - 1] = w


def normalize(texts: pa.Array | pa.ChunkedArray, how: Normalization = Normalization(),
              ) -> pa.LargeStringArray:
    """Normalised copy of ``texts`` (nulls become empty strings)."""
    from curate.dedup.minhash import string_buffers

    arr = texts.combine_chunks() if isinstance(texts, pa.ChunkedArray) else texts
    arr = pc.fill_null(arr, "")
    if how.lowercase:
        arr = pc.utf8_lower(arr)
    if how.strip_accents:
        arr = pc.utf8_normalize(arr, "NFKD")
    data, offsets = string_buffers(arr)
    out = np.empty(max(int(offsets[-1] - offsets[0]), 1), dtype=np.uint8)
    out_offsets = np.empty(len(offsets), dtype=np.int64)
    _normalize(data, offsets, char_classes(), how.remove_punctuation, how.normalize_digits,
               how.strip_accents, out, out_offsets)
    return pa.LargeStringArray.from_buffers(
        len(arr), pa.py_buffer(out_offsets), pa.py_buffer(out[:out_offsets[-1]]))


def normalize_one(text: str, how: Normalization = Normalization()) -> str:
    """The same rules on one Python string: the reference the kernel is tested against."""
    if how.lowercase:
        text = text.lower()
    if how.strip_accents:
        text = unicodedata.normalize("NFKD", text)
    table = char_classes()
    out: list[str] = []
    pending = in_digits = False
    for ch in text:
        cp = ord(ch)
        cls = table[cp] if cp < TABLE_END else int(_class_of(table, cp))
        if cls == SPACE or (cls == PUNCT and how.remove_punctuation):
            pending, in_digits = bool(out), False
        elif cls == FORMAT or (cls == MARK and how.strip_accents):
            continue
        elif cls == DIGIT and how.normalize_digits:
            if not in_digits:
                out.append(" 0" if pending else "0")
                pending, in_digits = False, True
        else:
            out.append(" " + ch if pending else ch)
            pending, in_digits = False, False
    return "".join(out)
