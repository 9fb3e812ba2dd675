"""MinHash signatures of word n-gram shingles, compiled with numba, equal to datasketch's.

Documents arrive as one normalised Arrow string array (words separated by single spaces, see
``normalize``). The kernel walks the UTF-8 bytes in place: a shingle is the byte span from the
first to the last of its ``ngram`` words, which is exactly ``" ".join(words[i:i + ngram])``,
so no Python string is ever built. A document with fewer words than ``ngram`` is one shingle
(the whole text); an empty one has no shingles and keeps the all-max signature.

Each shingle is hashed with xxh32 (seed 0), then permuted as datasketch does for its scheme:

- ``affine32`` (datasketch >= 2.0 default): murmur3 ``fmix32`` then ``a * h + b mod 2**32``;
- ``legacy`` (datasketch < 2.0): ``(a * h + b mod 2**64) mod (2**61 - 1) & (2**32 - 1)``.

The permutation parameters are datasketch's for the same seed, so a signature here equals
``MinHash(num_perm, seed, hashfunc=xxhash.xxh32_intdigest, scheme=...)`` updated with the
same shingles (tested). ``hash_function="sha1"`` hashes the shingles with datasketch's
default ``sha1_hash32`` instead (in Python, slower) for users who need datasketch's
defaults bit for bit.
"""

from __future__ import annotations

import functools
from typing import Literal

import numba
import numpy as np
import pyarrow as pa

Scheme = Literal["affine32", "legacy"]
HashFunction = Literal["xxh32", "sha1"]
MAX_HASH = np.uint32(0xFFFFFFFF)

_P1, _P2, _P3, _P4, _P5 = (np.uint32(0x9E3779B1), np.uint32(0x85EBCA77), np.uint32(0xC2B2AE3D),
                           np.uint32(0x27D4EB2F), np.uint32(0x165667B1))


_MERSENNE_PRIME = (1 << 61) - 1


@functools.cache
def permutations(num_perm: int, seed: int, scheme: Scheme) -> tuple[np.ndarray, np.ndarray]:
    """datasketch's (a, b) permutation parameters for this seed and scheme.

    The same draws from ``np.random.RandomState(seed)`` that ``datasketch.MinHash`` makes
    (tested equal to ``MinHash(...).permutations``); computed here so a worker does not
    import datasketch and scipy just for two arrays.
    """
    gen = np.random.RandomState(seed)
    if scheme == "legacy":
        pairs = [(gen.randint(1, _MERSENNE_PRIME, dtype=np.uint64),
                  gen.randint(0, _MERSENNE_PRIME, dtype=np.uint64)) for _ in range(num_perm)]
        a, b = np.array(pairs, dtype=np.uint64).T
        return np.ascontiguousarray(a), np.ascontiguousarray(b)
    if scheme != "affine32":
        raise ValueError(f"unknown scheme {scheme!r}: affine32 or legacy")
    a = gen.randint(0, 1 << 31, num_perm, dtype=np.uint32) * np.uint32(2) + np.uint32(1)
    b = gen.randint(0, 1 << 32, num_perm, dtype=np.uint32)
    return a, b


@numba.njit(inline="always")
def _rotl(x, r):
    return np.uint32((x << np.uint32(r)) | (x >> np.uint32(32 - r)))


@numba.njit(inline="always")
def _read32(data, i):
    return (np.uint32(data[i]) | (np.uint32(data[i + 1]) << np.uint32(8))
            | (np.uint32(data[i + 2]) << np.uint32(16)) | (np.uint32(data[i + 3]) << np.uint32(24)))


@numba.njit(cache=True)
def xxh32(data: np.ndarray, start: int, end: int, seed: int) -> np.uint32:
    """xxHash32 of ``data[start:end]`` (bytes), bit-equal to ``xxhash.xxh32_intdigest``."""
    n = end - start
    i = start
    s = np.uint32(seed)
    if n >= 16:
        v1 = np.uint32(s + _P1 + _P2)
        v2 = np.uint32(s + _P2)
        v3 = s
        v4 = np.uint32(s - _P1)
        limit = end - 16
        while i <= limit:
            v1 = np.uint32(_rotl(np.uint32(v1 + _read32(data, i) * _P2), 13) * _P1)
            v2 = np.uint32(_rotl(np.uint32(v2 + _read32(data, i + 4) * _P2), 13) * _P1)
            v3 = np.uint32(_rotl(np.uint32(v3 + _read32(data, i + 8) * _P2), 13) * _P1)
            v4 = np.uint32(_rotl(np.uint32(v4 + _read32(data, i + 12) * _P2), 13) * _P1)
            i += 16
        h = np.uint32(_rotl(v1, 1) + _rotl(v2, 7) + _rotl(v3, 12) + _rotl(v4, 18))
    else:
        h = np.uint32(s + _P5)
    h = np.uint32(h + np.uint32(n))
    while i + 4 <= end:
        h = np.uint32(_rotl(np.uint32(h + _read32(data, i) * _P3), 17) * _P4)
        i += 4
    while i < end:
        h = np.uint32(_rotl(np.uint32(h + np.uint32(data[i]) * _P5), 11) * _P1)
        i += 1
    h ^= h >> np.uint32(15)
    h = np.uint32(h * _P2)
    h ^= h >> np.uint32(13)
    h = np.uint32(h * _P3)
    h ^= h >> np.uint32(16)
    return h


@numba.njit(inline="always")
def _fmix32(h):
    h ^= h >> np.uint32(16)
    h = np.uint32(h * np.uint32(0x85EBCA6B))
    h ^= h >> np.uint32(13)
    h = np.uint32(h * np.uint32(0xC2B2AE35))
    h ^= h >> np.uint32(16)
    return h


@numba.njit(cache=True)
def _word_spans(data, start, end, starts, ends):
    """Fill word start/end byte offsets (words are runs of non-space bytes); return count."""
    n = 0
    i = start
    while i < end:
        if data[i] == 32:
            i += 1
            continue
        j = i
        while j < end and data[j] != 32:
            j += 1
        starts[n] = i
        ends[n] = j
        n += 1
        i = j
    return n


@numba.njit(cache=True)
def _shingle_hashes(data, offsets, doc, ngram, starts, ends, out):
    """xxh32 of every shingle of document ``doc`` into ``out``; returns how many."""
    nw = _word_spans(data, offsets[doc], offsets[doc + 1], starts, ends)
    if nw == 0:
        return 0
    if nw < ngram:
        out[0] = xxh32(data, starts[0], ends[nw - 1], 0)
        return 1
    count = nw - ngram + 1
    for k in range(count):
        out[k] = xxh32(data, starts[k], ends[k + ngram - 1], 0)
    return count


@numba.njit(cache=True)
def _permute_min_affine32(hashes, count, a, b, sig):
    """Min over shingles of ``a * fmix32(h) + b mod 2**32``, one permutation at a time: the
    inner loop is a branch-free min-reduction over a contiguous array, which LLVM vectorises
    (about 5x faster than looping permutations inside shingles)."""
    mixed = np.empty(count, np.uint32)
    for k in range(count):
        mixed[k] = _fmix32(np.uint32(hashes[k]))
    for p in range(sig.shape[0]):
        ap = a[p]
        bp = b[p]
        m = np.uint32(0xFFFFFFFF)
        for k in range(count):
            m = min(m, np.uint32(mixed[k] * ap + bp))
        sig[p] = m


@numba.njit(cache=True)
def _permute_min_legacy(hashes, count, a, b, sig):
    """datasketch < 2.0: ``(a * h + b mod 2**64) mod (2**61 - 1)``, low 32 bits."""
    mersenne = np.uint64((1 << 61) - 1)
    for p in range(sig.shape[0]):
        ap = a[p]
        bp = b[p]
        m = np.uint32(0xFFFFFFFF)
        for k in range(count):
            x = np.uint64(np.uint64(hashes[k]) * ap + bp)
            # x mod (2**61 - 1) without division: 2**61 == 1 (mod p); exact for 64-bit x
            r = (x & mersenne) + (x >> np.uint64(61))
            r = r - mersenne if r >= mersenne else r
            m = min(m, np.uint32(r & np.uint64(0xFFFFFFFF)))
        sig[p] = m


@numba.njit(cache=True)
def _signatures_xxh32(data, offsets, ngram, a, b, legacy, out, n_shingles):
    n_docs = offsets.shape[0] - 1
    longest = 0
    for d in range(n_docs):
        longest = max(longest, offsets[d + 1] - offsets[d])
    cap = longest // 2 + 2
    starts = np.empty(cap, np.int64)
    ends = np.empty(cap, np.int64)
    hashes = np.empty(cap, np.uint32)
    for d in range(n_docs):
        count = _shingle_hashes(data, offsets, d, ngram, starts, ends, hashes)
        n_shingles[d] = count
        if legacy:
            _permute_min_legacy(hashes, count, a, b, out[d])
        else:
            _permute_min_affine32(hashes, count, a, b, out[d])


@numba.njit(cache=True)
def _signatures_from_hashes(hashes, doc_offsets, a, b, legacy, out):
    for d in range(doc_offsets.shape[0] - 1):
        chunk = hashes[doc_offsets[d]:doc_offsets[d + 1]]
        if legacy:
            _permute_min_legacy(chunk, chunk.shape[0], a, b, out[d])
        else:
            _permute_min_affine32(chunk, chunk.shape[0], a, b, out[d])


def string_buffers(texts: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(utf-8 bytes, int64 offsets) of a string array, zero-copy where Arrow allows."""
    if isinstance(texts, pa.ChunkedArray):
        texts = texts.combine_chunks()
    if texts.null_count:
        raise ValueError("texts must not contain nulls (normalise them to '' first)")
    texts = texts.cast(pa.large_string()) if pa.types.is_string(texts.type) else texts
    _, offsets_buf, data_buf = texts.buffers()
    offsets = np.frombuffer(offsets_buf, dtype=np.int64)[texts.offset:texts.offset + len(texts) + 1]
    data = (np.frombuffer(data_buf, dtype=np.uint8) if data_buf is not None
            else np.zeros(0, np.uint8))
    return data, offsets


def shingles(text: str, ngram: int) -> list[bytes]:
    """The shingles of one normalised text, in order: the reference the kernel must match."""
    words = text.encode("utf-8").split(b" ")
    words = [w for w in words if w]
    if not words:
        return []
    if len(words) < ngram:
        return [b" ".join(words)]
    return [b" ".join(words[i:i + ngram]) for i in range(len(words) - ngram + 1)]


def signatures(texts: pa.Array, num_perm: int = 112, ngram: int = 5, seed: int = 1,
               scheme: Scheme = "affine32", hash_function: HashFunction = "xxh32",
               ) -> tuple[np.ndarray, np.ndarray]:
    """(uint32 signatures of shape (n, num_perm), int32 shingle counts) of normalised texts."""
    a, b = permutations(num_perm, seed, scheme)
    n = len(texts)
    out = np.empty((n, num_perm), dtype=np.uint32)
    counts = np.zeros(n, dtype=np.int32)
    legacy = scheme == "legacy"
    if hash_function == "xxh32":
        data, offsets = string_buffers(texts)
        _signatures_xxh32(data, offsets, ngram, a, b, legacy, out, counts)
        return out, counts
    if hash_function != "sha1":
        raise ValueError(f"unknown hash_function {hash_function!r}: xxh32 or sha1")
    from datasketch.hashfunc import sha1_hash32

    per_doc = [[sha1_hash32(s) for s in shingles(t, ngram)] for t in texts.to_pylist()]
    counts[:] = [len(h) for h in per_doc]
    doc_offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(counts, out=doc_offsets[1:])
    flat = np.fromiter((h for hs in per_doc for h in hs), dtype=np.uint32,
                       count=int(doc_offsets[-1]))
    _signatures_from_hashes(flat, doc_offsets, a, b, legacy, out)
    return out, counts


@numba.njit(cache=True)
def _hash64_strings(data, offsets, out):
    for d in range(offsets.shape[0] - 1):
        lo = xxh32(data, offsets[d], offsets[d + 1], 0)
        hi = xxh32(data, offsets[d], offsets[d + 1], 0x9E3779B1)
        out[d] = (np.uint64(hi) << np.uint64(32)) | np.uint64(lo)


def hash_strings(texts: pa.Array) -> np.ndarray:
    """A 64-bit hash per string (two seeded xxh32), for exact and URL keys."""
    data, offsets = string_buffers(texts)
    out = np.empty(len(offsets) - 1, dtype=np.uint64)
    _hash64_strings(data, offsets, out)
    return out


@numba.njit(cache=True)
def _band_keys(sig, bands, rows, out):
    """One 64-bit key per (document, band): FNV-style mix of the band's rows and its index."""
    for d in range(sig.shape[0]):
        for band in range(bands):
            h = np.uint64(0xCBF29CE484222325) ^ np.uint64(band + 1) * np.uint64(0x9E3779B97F4A7C15)
            for r in range(rows):
                h ^= np.uint64(sig[d, band * rows + r])
                h *= np.uint64(0x100000001B3)
                h ^= h >> np.uint64(29)
            h ^= h >> np.uint64(32)
            h *= np.uint64(0xFF51AFD7ED558CCD)
            h ^= h >> np.uint64(33)
            out[d, band] = h


def band_keys(sig: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """(n, bands) uint64 bucket keys; the band index is mixed in, so bands never collide."""
    if bands * rows > sig.shape[1]:
        raise ValueError(f"{bands} bands x {rows} rows needs {bands * rows} hashes, "
                         f"signatures have {sig.shape[1]}")
    out = np.empty((sig.shape[0], bands), dtype=np.uint64)
    _band_keys(np.ascontiguousarray(sig), bands, rows, out)
    return out


def estimated_jaccard(sig_a: np.ndarray, sig_b: np.ndarray) -> float:
    """Fraction of equal hash values: the MinHash estimate of Jaccard similarity."""
    return float(np.mean(sig_a == sig_b))
