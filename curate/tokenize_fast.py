"""Vectorised encoding for tokenizers whose pre-tokenizer is one regex split.

A BPE tokenizer encodes each pre-token on its own, so a corpus needs BPE only once per
*distinct* pre-token. When the tokenizer's pipeline is exactly ``Split(PATTERN, isolated)``
then byte-level BPE (what ``curate tokenizer train`` builds), the pre-tokens are found for a
whole shard at once with polars' regex engine, deduplicated with Arrow's hash kernel,
encoded once each by the tokenizer itself, and gathered back with numpy. The ids are those
``Tokenizer.encode`` gives (tested on every shard of the test corpus and on random Unicode);
any other tokenizer takes the plain ``encode_batch`` path.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

PRETOKENIZE_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)| ?\p{L}+|\p{N}{1,3}"
                       r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s")
"""Words with their leading space, numbers in groups of up to three digits, punctuation runs,
line breaks with the spaces before them, and single other spaces. It needs no look-ahead,
so polars (Rust regex) and the tokenizer (Oniguruma) split text identically."""


@dataclass(frozen=True)
class FastPath:
    """What the vectorised path needs from a tokenizer."""

    pattern: str
    added_tokens: tuple[str, ...]


def fast_path_for(tokenizer_json: Path) -> FastPath | None:
    """The fast path when the tokenizer's pipeline is exactly what it reproduces, else None."""
    spec = json.loads(Path(tokenizer_json).read_text())
    pre = spec.get("pre_tokenizer") or {}
    steps = pre.get("pretokenizers", []) if pre.get("type") == "Sequence" else [pre]
    if spec.get("normalizer") is not None or len(steps) != 2:
        return None
    split, byte_level = steps
    if (split.get("type") != "Split" or split.get("behavior") != "Isolated"
            or split.get("invert") or "Regex" not in (split.get("pattern") or {})
            or byte_level.get("type") != "ByteLevel" or byte_level.get("use_regex")
            or byte_level.get("add_prefix_space")):
        return None
    if (spec.get("model") or {}).get("type") != "BPE":
        return None
    added = tuple(t["content"] for t in spec.get("added_tokens", []))
    return FastPath(split["pattern"]["Regex"], added)


def _pieces(texts: pa.Array, pattern: str) -> pa.LargeListArray:
    series = pl.from_arrow(texts.cast(pa.large_string()))
    return series.str.extract_all(pattern).to_arrow().cast(pa.large_list(pa.large_string()))


def encode_fast(raw: Any, texts: pa.Array, fast: FastPath, batch_size: int = 4096,
                parse_special: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(flat ids, tokens per document) for ``texts``, as ``raw.encode_batch_fast`` gives them.

    With ``parse_special``, a special token's text inside a document is that token (the
    tokenizer's default), and such documents are encoded by ``raw.encode_batch_fast``;
    without it (``raw.encode_special_tokens = True``) it is plain text like any other.
    """
    raw.encode_special_tokens = not parse_special
    texts = pc.fill_null(texts.combine_chunks() if isinstance(texts, pa.ChunkedArray)
                         else texts, "")
    special = np.zeros(len(texts), dtype=bool)
    for token in fast.added_tokens if parse_special else ():
        special |= np.asarray(pc.match_substring(texts, token), dtype=bool)
    lists = _pieces(texts, fast.pattern)
    values = lists.flatten()
    per_doc = np.diff(lists.offsets.to_numpy()).astype(np.int64)
    encoded = values.dictionary_encode()
    codes = encoded.indices.to_numpy()
    uniq = encoded.dictionary.to_pylist()
    uniq_ids: list[list[int]] = []
    for start in range(0, len(uniq), batch_size):
        uniq_ids.extend(e.ids for e in raw.encode_batch_fast(uniq[start:start + batch_size],
                                                             add_special_tokens=False))
    uniq_len = np.fromiter(map(len, uniq_ids), dtype=np.int64, count=len(uniq_ids))
    uniq_off = np.concatenate([[0], np.cumsum(uniq_len)])
    flat_uniq = np.fromiter((i for ids in uniq_ids for i in ids), dtype=np.int64,
                            count=int(uniq_off[-1]))
    piece_len = uniq_len[codes]
    total = int(piece_len.sum())
    out_start = np.concatenate([[0], np.cumsum(piece_len)[:-1]]) if len(codes) else \
        np.zeros(0, np.int64)
    gather = np.repeat(uniq_off[codes] - out_start, piece_len) + np.arange(total)
    flat = flat_uniq[gather]
    piece_bounds = np.concatenate([[0], np.cumsum(per_doc)])
    token_bounds = np.concatenate([[0], np.cumsum(piece_len)])[piece_bounds]
    doc_len = np.diff(token_bounds)
    if not special.any():
        return flat, doc_len
    # splice in the documents that need the tokenizer's special-token handling
    docs = np.flatnonzero(special)
    redo = raw.encode_batch_fast(texts.take(pa.array(docs)).to_pylist(),
                                 add_special_tokens=False)
    pieces = [flat[token_bounds[d]:token_bounds[d + 1]] for d in range(len(texts))]
    for d, enc in zip(docs.tolist(), redo, strict=True):
        pieces[d] = np.asarray(enc.ids, dtype=np.int64)
    doc_len = np.fromiter(map(len, pieces), dtype=np.int64, count=len(pieces))
    return (np.concatenate(pieces) if pieces else np.zeros(0, np.int64)), doc_len
