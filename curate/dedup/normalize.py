"""Text normalisation before shingling: Unicode-aware, compiled, one pass over the bytes.

Near-duplicates differ in case, punctuation, numbers and spacing far more often than in
words, so the text is reduced before it is shingled (the FineWeb recipe does the same):
lower case (pyarrow's Unicode ``utf8_lower``), punctuation and symbols (Unicode categories
P* and S*) to spaces, every run of digits to one ``0``, optionally accents removed (NFKD, then
combining marks dropped), and whitespace collapsed to single spaces with none at either end.
In scripts written without spaces (Chinese, Japanese kana, Thai, Lao, Khmer, Myanmar) every
letter becomes a word of its own, so shingles there are character n-grams.
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

KEEP, SPACE, DIGIT, MARK, PUNCT, FORMAT, SOLO, ATTACH = 0, 1, 2, 3, 4, 5, 6, 7
SOLO_RANGES = (
    (0x0E00, 0x0EFF),    # Thai, Lao
    (0x1000, 0x109F),    # Myanmar
    (0x1780, 0x17FF),    # Khmer
    (0x2E80, 0x2FDF),    # CJK radicals
    (0x3005, 0x3007), (0x3021, 0x3029), (0x3038, 0x303B),
    (0x3040, 0x30FF),    # Hiragana, Katakana
    (0x31F0, 0x31FF),
    (0x3400, 0x4DBF),    # CJK extension A
    (0x4E00, 0x9FFF),    # CJK unified ideographs
    (0xF900, 0xFAFF),    # CJK compatibility ideographs
    (0xFF66, 0xFF9F),    # halfwidth Katakana
    (0x20000, 0x2FA1F),  # CJK extensions B-F, compatibility supplement
)
"""Scripts written without spaces between words: each letter is its own word, so word
n-gram shingles become character n-grams there (a 5-gram of Chinese is 5 characters)."""


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
        elif cat in ("Mc", "Me"):
            table[cp] = ATTACH
    for lo, hi in SOLO_RANGES:
        block = table[lo:min(hi, TABLE_END - 1) + 1]
        letters = np.array([unicodedata.category(chr(c))[0] == "L"
                            for c in range(lo, lo + len(block))])
        block[letters] = SOLO
    return table


@numba.njit(inline="always")
def _class_of(table, cp):
    if cp < table.shape[0]:
        return table[cp]
    if 0xE0000 <= cp < 0xE0080:
        return 5  # tag characters: format
    if 0xE0100 <= cp < 0xE01F0:
        return 3  # variation selectors supplement: nonspacing marks
    if 0x30000 <= cp < 0x323B0:
        return 6  # CJK extensions G and H: each ideograph a word
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
            elif cls == 3 or cls == 7:
                # a kept combining mark stays on the character before it
                for k in range(n):
                    out[w + k] = data[i + k]
                w += n
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
                if pending_space or (cls == 6 and w > out_offsets[d]):
                    out[w] = 32
                    w += 1
                pending_space = cls == 6
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
    # a letter of a SOLO script (3+ UTF-8 bytes) may gain a space on each side: < 5/3 the input
    out = np.empty(int(offsets[-1] - offsets[0]) * 5 // 3 + 4, dtype=np.uint8)
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
        elif cls in (MARK, ATTACH):
            out.append(ch)
        elif cls == DIGIT and how.normalize_digits:
            if not in_digits:
                out.append(" 0" if pending else "0")
                pending, in_digits = False, True
        else:
            out.append(" " + ch if pending or (cls == SOLO and out) else ch)
            pending, in_digits = cls == SOLO, False
    return "".join(out)
