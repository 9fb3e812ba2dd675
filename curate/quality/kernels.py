"""Compiled kernels for the signals that walk a document's words in order.

Words arrive as integer ids (one id per distinct word string), concatenated over documents
with offsets. An n-gram is identified by a 64-bit mix of its ids, so n-grams are compared
without building strings (two different n-grams share a key with probability ~2^-64).
"""

from __future__ import annotations

import numba
import numpy as np

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_GOLD = np.uint64(0x9E3779B97F4A7C15)


def extend_keys(keys: np.ndarray, ids: np.ndarray, j: int) -> np.ndarray:
    """Keys of (j+1)-grams from the keys of j-grams: mix in the word j places ahead.

    Start from ``np.zeros`` and call with j = 0, 1, ... Positions whose n-gram runs past a
    document's end get keys that mix in the next document; the kernels never read them.
    Keys are odd, as 0 marks an empty slot in the kernels' tables."""
    ahead = np.zeros(len(ids), dtype=np.uint64)
    if j < len(ids):
        ahead[:len(ids) - j] = ids[j:].astype(np.uint64)
    with np.errstate(over="ignore"):
        h = keys ^ (ahead + _GOLD)
        h = (h ^ (h >> np.uint64(30))) * _M1
        h = (h ^ (h >> np.uint64(27))) * _M2
        h = h ^ (h >> np.uint64(31))
    return h | np.uint64(1)


@numba.njit(cache=True)
def _table_size(m: int) -> int:
    size = 16
    while size < 2 * m:
        size *= 2
    return size


@numba.njit(cache=True)
def top_ngram_chars(keys: np.ndarray, lengths: np.ndarray, offsets: np.ndarray,
                    n: int) -> np.ndarray:
    """Per document: characters of the most frequent n-gram (words joined by single spaces)
    times its count; ties go to the n-gram seen first (``Counter.most_common(1)``). -1 when
    the document has fewer than n words."""
    docs = len(offsets) - 1
    out = np.full(docs, -1, dtype=np.int64)
    for d in range(docs):
        lo, hi = offsets[d], offsets[d + 1]
        m = hi - lo - n + 1
        if m <= 0:
            continue
        size = _table_size(m)
        mask = size - 1
        slot_key = np.zeros(size, dtype=np.uint64)
        slot_count = np.zeros(size, dtype=np.int64)
        slot_first = np.zeros(size, dtype=np.int64)
        best_count, best_first = 0, 0
        for i in range(lo, lo + m):
            k = keys[i]
            s = np.int64(k & np.uint64(mask))
            while slot_key[s] != 0 and slot_key[s] != k:
                s = (s + 1) & mask
            if slot_key[s] == 0:
                slot_key[s] = k
                slot_first[s] = i
            slot_count[s] += 1
            c = slot_count[s]
            if c > best_count or (c == best_count and slot_first[s] < best_first):
                best_count, best_first = c, slot_first[s]
        chars = n - 1
        for j in range(n):
            chars += lengths[best_first + j]
        out[d] = chars * best_count
    return out


@numba.njit(cache=True)
def duplicate_ngram_chars(keys: np.ndarray, lengths: np.ndarray, offsets: np.ndarray,
                          n: int) -> np.ndarray:
    """Per document: characters (words concatenated) of n-grams that repeat an earlier one,
    jumping past each repeat so overlapping repeats are not counted twice (Gopher's rule, as
    datatrove's ``find_all_duplicate``)."""
    docs = len(offsets) - 1
    out = np.zeros(docs, dtype=np.int64)
    for d in range(docs):
        lo, hi = offsets[d], offsets[d + 1]
        m = hi - lo - n + 1
        if m <= 0:
            continue
        size = _table_size(m)
        mask = size - 1
        slot_key = np.zeros(size, dtype=np.uint64)
        repeated = 0
        i = lo
        while i < lo + m:
            k = keys[i]
            s = np.int64(k & np.uint64(mask))
            while slot_key[s] != 0 and slot_key[s] != k:
                s = (s + 1) & mask
            if slot_key[s] == k:
                for j in range(n):
                    repeated += lengths[i + j]
                i += n
            else:
                slot_key[s] = k
                i += 1
        out[d] = repeated
    return out


@numba.njit(cache=True)
def sentences_per_line(is_punct: np.ndarray, ends_sentence: np.ndarray,
                       offsets: np.ndarray) -> np.ndarray:
    """spaCy's rule-based sentencizer, counting: a sentence starts at the first word that is
    neither punctuation nor a sentence end after a sentence end (``.``, ``!``, ``?``, ...)."""
    lines = len(offsets) - 1
    out = np.zeros(lines, dtype=np.int64)
    for k in range(lines):
        lo, hi = offsets[k], offsets[k + 1]
        if hi == lo:
            continue
        count = 1
        seen_end = False
        for i in range(lo, hi):
            if seen_end and not is_punct[i] and not ends_sentence[i]:
                count += 1
                seen_end = False
            elif ends_sentence[i]:
                seen_end = True
        out[k] = count
    return out
