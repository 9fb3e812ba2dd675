"""Normalise, shingle and sign a document in one pass over its bytes (``hash_function="words"``).

The two-pass path (``normalize`` writes a normalised copy of every text, then ``minhash``
hashes every shingle's bytes with xxh32) touches each byte of a shingle ``ngram`` times and
each byte of the text three times. Here the text is read once: each code point is decoded,
lower-cased through a table, classified exactly as ``normalize`` does, and appended to the
current word's hash (FNV-1a over code points, finished with ``fmix64``); a shingle's hash
combines its words' hashes (``chain``), so a 5-gram costs five multiplies instead of hashing
~30 bytes again. No normalised copy is written. The words are exactly the words of
``normalize``'s output (tested), so:

- ``shingle_hash`` applied to the shingles of the normalised text gives the same values,
  which makes a signature equal to datasketch's ``MinHash(hashfunc=shingle_hash)`` updated
  with those shingles (tested);
- the exact-duplicate key is the chain of all words (64 bits, ``text_hash``), i.e. a hash
  of the normalised text, with no second pass.

Measured on the dedup benchmark's documents (2.5 KB of English each): about half the time
of the two-pass path (normalise, xxh32 shingles, xxh32 text key).

``strip_accents`` needs NFKD first (not a per-character rule); it is applied with pyarrow
before the pass, then the pass drops the combining marks.
"""

from __future__ import annotations

import functools

import numba
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from curate.dedup import minhash
from curate.dedup.normalize import TABLE_END, Normalization, _class_of, char_classes

_CHAIN = np.uint64(0x9E3779B97F4A7C15)
_FNV_OFFSET = np.uint64(0xCBF29CE484222325)
_FNV_PRIME = np.uint64(0x100000001B3)


@numba.njit(inline="always")
def _rotl64(x, r):
    return (x << np.uint64(r)) | (x >> np.uint64(64 - r))


@numba.njit(inline="always")
def _chain(h, word_hash):
    """One step of the word-hash combination (order-sensitive, a bijection of ``h``)."""
    return (_rotl64(h, 23) ^ word_hash) * _CHAIN


@numba.njit(inline="always")
def _fmix64(h):
    h ^= h >> np.uint64(33)
    h *= np.uint64(0xFF51AFD7ED558CCD)
    h ^= h >> np.uint64(33)
    h *= np.uint64(0xC4CEB9FE1A85EC53)
    h ^= h >> np.uint64(33)
    return h


def word_hash(word: str) -> int:
    """64-bit hash of one normalised word, as the kernel computes it: FNV-1a over its code
    points, then ``fmix64``."""
    mask = (1 << 64) - 1
    h = int(_FNV_OFFSET)
    for ch in word:
        h = ((h ^ ord(ch)) * int(_FNV_PRIME)) & mask
    return _fmix64_py(h)


def _fmix64_py(h: int) -> int:
    mask = (1 << 64) - 1
    for mult in (0xFF51AFD7ED558CCD, 0xC4CEB9FE1A85EC53):
        h = ((h ^ (h >> 33)) * mult) & mask
    return h ^ (h >> 33)


def chain(word_hashes: list[int]) -> int:
    """The 64-bit combination of a sequence of word hashes (order matters)."""
    mask = (1 << 64) - 1
    h = 0
    for wh in word_hashes:
        h = (((((h << 23) | (h >> 41)) & mask) ^ wh) * int(_CHAIN)) & mask
    return h


def shingle_hash(shingle: bytes) -> int:
    """The 32-bit hash of one shingle (UTF-8 words joined by single spaces), as the kernel
    computes it: the chain of its words' hashes, top 32 bits. Pass it as datasketch's
    ``hashfunc`` to get the signatures this module computes."""
    return chain([word_hash(w) for w in shingle.decode("utf-8").split(" ") if w]) >> 32


def text_hash(normalised: str) -> int:
    """The exact-duplicate key of one normalised text, as the kernel computes it."""
    return _fmix64_py(chain([word_hash(w) for w in normalised.split(" ") if w]))


@functools.cache
def lower_table() -> np.ndarray:
    """int32 lower-case code point of every code point below ``TABLE_END``: pyarrow's own
    ``utf8_lower`` applied to each one, so the pass lower-cases exactly as the two-pass path
    (one code point to one code point; surrogates map to themselves)."""
    cps = np.arange(TABLE_END, dtype=np.int64)
    valid = (cps < 0xD800) | (cps > 0xDFFF)
    chars = pa.array(["".join(map(chr, cps[valid]))]).cast(pa.large_string())
    lowered = pc.utf8_lower(chars)[0].as_py()
    table = cps.astype(np.int32)
    table[valid] = np.frombuffer(lowered.encode("utf-32-le"), dtype=np.int32)
    return table


@numba.njit(inline="always")
def _decode(data, i):
    lead = data[i]
    if lead < 0x80:
        return np.int64(lead), 1
    if lead < 0xE0:
        return (np.int64(lead & 0x1F) << 6) | np.int64(data[i + 1] & 0x3F), 2
    if lead < 0xF0:
        return ((np.int64(lead & 0x0F) << 12) | (np.int64(data[i + 1] & 0x3F) << 6)
                | np.int64(data[i + 2] & 0x3F)), 3
    return ((np.int64(lead & 0x07) << 18) | (np.int64(data[i + 1] & 0x3F) << 12)
            | (np.int64(data[i + 2] & 0x3F) << 6) | np.int64(data[i + 3] & 0x3F)), 4


LETTER, SEPARATOR, DROP, JOIN, DIGIT, ALONE = 0, 1, 2, 3, 4, 5
"""What the pass does with a character, from its class and the normalisation flags."""


@functools.cache
def action_table(punct: bool, digits: bool, marks: bool) -> np.ndarray:
    """uint8 action of every code point below ``TABLE_END`` for these flags (one lookup per
    character instead of a chain of class tests)."""
    from curate.dedup import normalize as nz

    by_class = np.full(8, LETTER, dtype=np.uint8)
    by_class[nz.SPACE] = SEPARATOR
    by_class[nz.PUNCT] = SEPARATOR if punct else LETTER
    by_class[nz.FORMAT] = DROP
    by_class[nz.MARK] = DROP if marks else JOIN
    by_class[nz.ATTACH] = JOIN
    by_class[nz.DIGIT] = DIGIT if digits else LETTER
    by_class[nz.SOLO] = ALONE
    return by_class[char_classes()]


@numba.njit(inline="always")
def _action_beyond_table(cp, marks):
    cls = _class_of(np.zeros(0, np.uint8), cp)  # the rules for code points past the table
    if cls == 5:
        return 2
    if cls == 3:
        return 2 if marks else 3
    if cls == 6:
        return 5
    return 0


@numba.njit(cache=True)
def _word_hashes(data, start, end, ascii_table, actions, lower, lowercase, marks, out):
    """Hash every word of the normalised text of ``data[start:end]`` into ``out``; returns
    how many. The rules are ``normalize._normalize``'s, with "emit a space" replaced by "close
    the current word" (a kept mark after a separator still joins the word before it). A word
    is hashed as it is read (FNV-1a over its code points, then ``fmix64``): no copy. An ASCII
    byte costs one lookup (``ascii_table``: its lower-cased byte and its action)."""
    nw = 0
    wl = 0  # code points in the open word (0: nothing written yet in this document)
    h = _FNV_OFFSET
    pending = False  # a separator was seen since the open word's last letter
    in_digits = False
    i = start
    while i < end:
        lead = data[i]
        if lead < 0x80:
            packed = ascii_table[lead]
            cp = packed & 0xFF
            act = packed >> 8
            i += 1
        else:
            cp, n = _decode(data, i)
            i += n
            if lowercase and cp < lower.shape[0]:
                cp = np.int64(lower[cp])
            act = actions[cp] if cp < actions.shape[0] else _action_beyond_table(cp, marks)
        if act == LETTER:
            if pending:
                out[nw] = _fmix64(h)
                nw += 1
                h = _FNV_OFFSET
                pending = False
            in_digits = False
            h = (h ^ np.uint64(cp)) * _FNV_PRIME
            wl += 1
        elif act == SEPARATOR:
            pending = wl > 0
            in_digits = False
        elif act == ALONE:  # scripts without spaces: the letter is a word of its own
            if wl > 0:
                out[nw] = _fmix64(h)
                nw += 1
                h = _FNV_OFFSET
            pending = True
            in_digits = False
            h = (h ^ np.uint64(cp)) * _FNV_PRIME
            wl += 1
        elif act == DIGIT:
            if not in_digits:
                if pending:
                    out[nw] = _fmix64(h)
                    nw += 1
                    h = _FNV_OFFSET
                    pending = False
                h = (h ^ np.uint64(48)) * _FNV_PRIME  # a digit run is one "0"
                wl += 1
                in_digits = True
        elif act == JOIN:
            h = (h ^ np.uint64(cp)) * _FNV_PRIME
            wl += 1
    if wl > 0:
        out[nw] = _fmix64(h)
        nw += 1
    return nw


@numba.njit(cache=True)
def _doc_keys(data, offsets, ascii_table, actions, lower, lowercase, marks, ngram, a, b,
              legacy, sig, counts, text_hash, present):
    n_docs = offsets.shape[0] - 1
    longest = 0
    for d in range(n_docs):
        longest = max(longest, offsets[d + 1] - offsets[d])
    words = np.empty(longest // 2 + 2, np.uint64)
    shingles = np.empty(longest // 2 + 2, np.uint32)
    for d in range(n_docs):
        nw = _word_hashes(data, offsets[d], offsets[d + 1], ascii_table, actions, lower,
                          lowercase, marks, words)
        h = np.uint64(0)
        for k in range(nw):
            h = _chain(h, words[k])
        present[d] = nw > 0
        text_hash[d] = _fmix64(h)
        if nw == 0:
            count = 0
        elif nw < ngram:
            shingles[0] = np.uint32(h >> np.uint64(32))
            count = 1
        else:
            count = nw - ngram + 1
            for k in range(count):
                s = np.uint64(0)
                for j in range(ngram):
                    s = _chain(s, words[k + j])
                shingles[k] = np.uint32(s >> np.uint64(32))
        counts[d] = count
        if legacy:
            minhash._permute_min_legacy(shingles, count, a, b, sig[d])
        else:
            minhash._permute_min_affine32(shingles, count, a, b, sig[d])


def doc_keys(texts: pa.Array | pa.ChunkedArray, how: Normalization | None = None,
             num_perm: int = 112, ngram: int = 5, seed: int = 1,
             scheme: minhash.Scheme = "affine32",
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(signatures (n, num_perm) uint32, shingle counts int32, text hashes uint64, non-empty
    mask) of raw texts; nulls count as empty texts."""
    how = how or Normalization()
    arr = texts.combine_chunks() if isinstance(texts, pa.ChunkedArray) else texts
    arr = pc.fill_null(arr, "")
    lowercase = how.lowercase
    if how.strip_accents:  # lower first, as the two-pass path does, then decompose
        arr = pc.utf8_normalize(pc.utf8_lower(arr) if lowercase else arr, "NFKD")
        lowercase = False
    data, offsets = minhash.string_buffers(arr)
    a, b = minhash.permutations(num_perm, seed, scheme)
    n = len(arr)
    sig = np.empty((n, num_perm), dtype=np.uint32)
    counts = np.zeros(n, dtype=np.int32)
    text_hash = np.empty(n, dtype=np.uint64)
    present = np.empty(n, dtype=bool)
    actions = action_table(how.remove_punctuation, how.normalize_digits, how.strip_accents)
    lower = lower_table()
    ascii_cp = lower[:128] if lowercase else np.arange(128, dtype=np.int32)
    ascii_table = ascii_cp.astype(np.int64) | (actions[ascii_cp].astype(np.int64) << 8)
    _doc_keys(data, offsets, ascii_table, actions, lower, lowercase, how.strip_accents, ngram,
              a, b, scheme == "legacy", sig, counts, text_hash, present)
    return sig, counts, text_hash, present
