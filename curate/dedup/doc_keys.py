"""Normalise, shingle and sign a document in one pass over its bytes (``hash_function="words"``).

The two-pass path (``normalize`` writes a normalised copy of every text, then ``minhash``
hashes every shingle's bytes with xxh32) touches each byte of a shingle ``ngram`` times and
each byte of the text three times. Here the text is read once: 64 bytes at a time are
lower-cased and classified through a byte table into a mask of ASCII letters, each run of
letters is absorbed into its word's hash 8 bytes at a time (a multiply-rotate mix per 8-byte
chunk, finished with the length and ``fmix64``), and anything else (digits, marks,
multi-byte characters) takes the per-character rules of ``normalize``. A shingle's hash
combines its words' hashes (``chain``), so a 5-gram costs five multiplies instead of hashing
~30 bytes again. No normalised copy is written. The words are exactly the words of
``normalize``'s output (tested), so:

- ``shingle_hash`` applied to the shingles of the normalised text gives the same values,
  which makes a signature equal to datasketch's ``MinHash(hashfunc=shingle_hash)`` updated
  with those shingles (tested);
- the exact-duplicate key is the chain of all words (64 bits, ``text_hash``), i.e. a hash
  of the normalised text, with no second pass.

Measured on the dedup benchmark's documents (2.5 KB of English each): about half the time
of the two-pass path (normalise, xxh32 shingles, xxh32 text key); the 8-byte word hash
replaced a per-code-point one, which cut the word pass by about a fifth.

``strip_accents`` needs NFKD first (not a per-character rule); it is applied with pyarrow
before the pass, then the pass drops the combining marks.
"""

from __future__ import annotations

import functools

import numba
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from numba.cpython.unsafe.numbers import trailing_zeros

from curate.dedup import minhash
from curate.dedup.normalize import TABLE_END, Normalization, _class_of, char_classes

_CHAIN = np.uint64(0x9E3779B97F4A7C15)
_SEED = np.uint64(0x9AE16A3B2F90404F)
_K1 = np.uint64(0x87C37B91114253D5)
_K2 = np.uint64(0x4CF5AD432745937F)
_MASK64 = (1 << 64) - 1


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


@numba.njit(inline="always")
def _mix(h, chunk):
    """Absorb one 8-byte chunk of a word (a bijection of ``h`` for a given chunk)."""
    return _rotl64(h ^ (chunk * _K1), 31) * _K2


def _mix_py(h: int, chunk: int) -> int:
    x = (h ^ (chunk * int(_K1))) & _MASK64
    return ((((x << 31) | (x >> 33)) & _MASK64) * int(_K2)) & _MASK64


def word_hash(word: str) -> int:
    """64-bit hash of one normalised word, as the kernel computes it: its UTF-8 bytes in
    8-byte little-endian chunks (the last one zero-padded, possibly empty) absorbed by
    ``_mix``, then the byte length, then ``fmix64``."""
    data = word.encode("utf-8")
    h = int(_SEED)
    full = len(data) - len(data) % 8
    for at in range(0, full, 8):
        h = _mix_py(h, int.from_bytes(data[at:at + 8], "little"))
    h = _mix_py(h, int.from_bytes(data[full:], "little"))
    return _fmix64_py(h ^ len(data))


def _fmix64_py(h: int) -> int:
    for mult in (0xFF51AFD7ED558CCD, 0xC4CEB9FE1A85EC53):
        h = ((h ^ (h >> 33)) * mult) & _MASK64
    return h ^ (h >> 33)


def chain(word_hashes: list[int]) -> int:
    """The 64-bit combination of a sequence of word hashes (order matters)."""
    h = 0
    for wh in word_hashes:
        h = (((((h << 23) | (h >> 41)) & _MASK64) ^ wh) * int(_CHAIN)) & _MASK64
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


@numba.njit(inline="always")
def _utf8(cp):
    """(UTF-8 bytes of ``cp`` as a little-endian integer, byte count)."""
    if cp < 0x80:
        return np.uint64(cp), 1
    if cp < 0x800:
        lead, size = 0xC0 | (cp >> 6), 2
    elif cp < 0x10000:
        lead, size = 0xE0 | (cp >> 12), 3
    else:
        lead, size = 0xF0 | (cp >> 18), 4
    out = np.uint64(lead)
    for k in range(1, size):
        out |= np.uint64(0x80 | ((cp >> (6 * (size - 1 - k))) & 0x3F)) << np.uint64(8 * k)
    return out, size


LETTER, SEPARATOR, DROP, JOIN, DIGIT, ALONE, NON_ASCII = 0, 1, 2, 3, 4, 5, 6
"""What the pass does with a character, from its class and the normalisation flags
(``NON_ASCII``: a byte that starts or continues a multi-byte character)."""


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


def byte_table(actions: np.ndarray, lowercase: bool) -> np.ndarray:
    """int64 per byte value: the ASCII character's lower-cased byte | its action << 8
    (``NON_ASCII`` for bytes >= 0x80), so an ASCII byte costs one lookup."""
    cps = lower_table()[:128] if lowercase else np.arange(128, dtype=np.int32)
    table = np.full(256, NON_ASCII << 8, dtype=np.int64)
    table[:128] = cps.astype(np.int64) | (actions[cps].astype(np.int64) << 8)
    return table


_BYTE_MASK = np.array([(1 << (8 * n)) - 1 for n in range(9)], np.uint64)
"""Low ``n`` bytes of a 64-bit word."""


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


@numba.njit(inline="always")
def _append(h, acc, nacc, piece, size):
    """Append ``size`` (1-8) bytes to the open word: ``acc`` holds its last ``nacc`` (< 8)
    bytes, each full 8 bytes are absorbed into ``h``."""
    acc |= piece << np.uint64(8 * nacc)
    nacc += size
    if nacc >= 8:
        h = _mix(h, acc)
        nacc -= 8
        acc = piece >> np.uint64(8 * (size - nacc)) if nacc > 0 else np.uint64(0)
    return h, acc, nacc


WINDOW = 64
"""Bytes classified at once: their letters and others are two 64-bit masks."""


@numba.njit(inline="always")
def _low_bits(n):
    """The low ``n`` (0-64) bits set."""
    return (np.uint64(1) << np.uint64(n)) - np.uint64(1) if n < 64 else ~np.uint64(0)


@numba.njit(inline="always")
def _append_select(h, acc, nacc, piece, size):
    """``_append`` with selects instead of a branch (whether 8 bytes fill up depends on
    word lengths, which a branch predictor cannot guess)."""
    joined = acc | (piece << np.uint64(8 * nacc))
    total = nacc + size
    full = total >= 8
    rest = total - 8 if full else total
    # two shifts: one by 64 bits would be undefined
    carry = ((piece >> np.uint64(8 * (size - rest) - 1)) >> np.uint64(1)) & _BYTE_MASK[rest]
    h = _mix(h, joined) if full else h
    acc = carry if full else joined
    return h, acc, rest


@numba.njit(inline="always")
def _finish(h, acc, length):
    return _fmix64(_mix(h, acc) ^ np.uint64(length))


@numba.njit
def _one_character(data, i, table, actions, lower, lowercase, marks, out, nw, started,
                   pending, in_digits, h, acc, nacc, length):
    """The general rules for the character at ``i``: returns the pass's state after it."""
    lead = data[i]
    if lead < 0x80:
        packed = table[lead]
        cp = packed & 0xFF
        act = packed >> 8
        i += 1
    else:
        cp, width = _decode(data, i)
        i += width
        if lowercase and cp < lower.shape[0]:
            cp = np.int64(lower[cp])
        act = actions[cp] if cp < actions.shape[0] else _action_beyond_table(cp, marks)
    if act == SEPARATOR:
        return i, nw, started, started, False, h, acc, nacc, length
    if act == DROP or (act == DIGIT and in_digits):
        return i, nw, started, pending, in_digits, h, acc, nacc, length
    if act == ALONE:  # scripts without spaces: the letter is a word of its own
        close = started
    elif act == JOIN:
        close = False
    else:  # a letter, or the first digit of a run (one "0")
        close = pending
    if close:
        out[nw] = _finish(h, acc, length)
        nw += 1
        h, acc, nacc, length = _SEED, np.uint64(0), 0, 0
    if act == DIGIT:
        cp = 48
        in_digits = True
    elif act != JOIN:
        in_digits = False
    pending = act == ALONE or (pending and act == JOIN)
    piece, size = _utf8(cp)
    h, acc, nacc = _append(h, acc, nacc, piece, size)
    return i, nw, True, pending, in_digits, h, acc, nacc, length + size


@numba.njit(cache=True)
def _word_hashes(data, start, end, table, actions, lower, lowercase, marks, out):
    """Hash every word of the normalised text of ``data[start:end]`` into ``out``; returns
    how many. The rules are ``normalize._normalize``'s, with "emit a space" replaced by "close
    the current word" (closed lazily, when the next word starts, so a kept mark after a
    separator still joins the word before it). A word is hashed as it is read, 8 bytes at a
    time, with no copy.

    Eight ASCII letters and separators are taken at once: their lookups give the lower-cased
    bytes and a bit mask of letters, and each run of letters is appended to its word in one
    step. Anything else (a digit, a mark, a multi-byte character) goes one character at a
    time through the general rules."""
    nw = 0
    started = False  # a character was written in this document (there is an open word)
    pending = False  # a separator was seen since the open word's last character
    in_digits = False
    h = _SEED
    acc = np.uint64(0)
    nacc = 0
    length = 0
    i = start
    window = np.empty(WINDOW // 8 + 1, np.uint64)  # lower-cased bytes, 8 per value
    while i < end:
        size = min(WINDOW, end - i)  # past the end: zero bytes, neither letters nor others
        window[:] = 0
        letters = np.uint64(0)
        other = np.uint64(0)
        for j in range(size):
            packed = table[data[i + j]]
            window[j >> 3] |= np.uint64(packed & 0xFF) << np.uint64(8 * (j & 7))
            act = packed >> 8
            letters |= np.uint64(act == LETTER) << np.uint64(j)
            other |= np.uint64(act > SEPARATOR) << np.uint64(j)
        n = min(np.int64(trailing_zeros(other)), size)  # the bytes before the first other one
        m = letters & _low_bits(n)
        pos = 0
        while m != 0:  # one run of letters (mostly a whole word)
            s = np.int64(trailing_zeros(m))
            run = np.int64(trailing_zeros(~(m >> np.uint64(s))))
            pending |= started and s > pos  # separators before the run
            out[nw] = _finish(h, acc, length)  # kept only when the run starts a word
            nw += pending
            h = _SEED if pending else h
            acc = np.uint64(0) if pending else acc
            nacc = 0 if pending else nacc
            length = 0 if pending else length
            pending = False
            at = s
            stop = s + run
            while at < stop:  # 8 bytes at a time (a word of up to 8 bytes: once)
                take = min(stop - at, 8)
                q = at >> 3
                r = at & 7
                low = window[q] >> np.uint64(8 * r)
                high = (window[q + 1] << np.uint64(63 - 8 * r)) << np.uint64(1)
                h, acc, nacc = _append_select(h, acc, nacc, (low | high) & _BYTE_MASK[take],
                                              take)
                at += take
            length += run
            started = True
            pos = stop
            m &= ~_low_bits(pos)
        if n > 0:
            pending = pending or (started and n > pos)
            in_digits = False
            i += n
        if n < size:
            i, nw, started, pending, in_digits, h, acc, nacc, length = _one_character(
                data, i, table, actions, lower, lowercase, marks, out, nw, started, pending,
                in_digits, h, acc, nacc, length)
    if started:
        out[nw] = _finish(h, acc, length)
        nw += 1
    return nw


@numba.njit(cache=True)
def _doc_keys(data, offsets, table, actions, lower, lowercase, marks, ngram, a, b,
              legacy, sig, counts, text_hash, present):
    n_docs = offsets.shape[0] - 1
    longest = 0
    for d in range(n_docs):
        longest = max(longest, offsets[d + 1] - offsets[d])
    words = np.empty(longest // 2 + 2, np.uint64)
    shingles = np.empty(longest // 2 + 2, np.uint32)
    for d in range(n_docs):
        nw = _word_hashes(data, offsets[d], offsets[d + 1], table, actions, lower,
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
    _doc_keys(data, offsets, byte_table(actions, lowercase), actions, lower_table(), lowercase,
              how.strip_accents, ngram, a, b, scheme == "legacy", sig, counts, text_hash, present)
    return sig, counts, text_hash, present
