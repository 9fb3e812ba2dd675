"""Pre-training tokenization: documents to packed, fixed-length rows of token ids.

Each document becomes its ids (optionally after a BOS) followed by the end-of-document token;
documents are laid back to back in shard order and cut into rows of ``seq_len`` tokens (the
last row of a shard may be shorter). A row records where each document segment starts and
whose it is (``segment_starts``/``segment_doc_ids``), so a trainer can reset positions and stop
attention at document boundaries; a row that begins inside a document has a segment at 0.
Beside every shard, ``token_index/<shard>`` maps each document to (row, offset, length), so
any token traces back to its document id and URL.

Ids use the narrowest type the vocabulary allows (uint16 up to 65,536 tokens) and shards are
uncompressed Arrow, so trainers memory-map them with zero copies. Output is deterministic:
the same documents, tokenizer and settings give byte-identical shards.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field

from curate.config import StageConfig
from curate.runner import RunReport, Stage, StageOutput, WorkUnit, plan_shards, run_stage
from curate.tokenize_fast import FastPath, encode_fast, fast_path_for
from schemas import PRETRAIN_TOKENS, TOKEN_INDEX, read_shard
from schemas.shards import atomic_write

STAGE_NAME = "tokenize"
INDEX_DIR = "token_index"
META_NAME = "_tokenizer.json"


class TokenizeConfig(StageConfig):
    """Which tokenizer, how long the rows are, and what wraps each document."""

    tokenizer: str
    """A tokenizer folder (``curate tokenizer train`` output or any Hugging Face tokenizer
    folder with a tokenizer.json)."""
    seq_len: int = Field(2048, ge=2)
    """Tokens per packed row."""
    add_bos: bool = False
    """Put the BOS token before each document (Llama-style); EOS always ends a document."""
    max_doc_tokens: int | None = Field(None, ge=1)
    """Cut longer documents to this many tokens (EOS still added); counted as truncated."""
    batch_size: int = Field(1000, ge=1)
    """Documents per ``encode_batch`` call (plain path)."""
    parse_special_tokens: bool = False
    """Off: a special token's text inside a document (``<|end_of_text|>`` in a crawled page)
    is encoded as plain text, so documents can never inject control tokens."""
    fast_path: bool = True
    """Use the vectorised encoder when the tokenizer allows it (identical ids; see
    ``curate.tokenize_fast``); off: always ``encode_batch``."""
    tokenizer_sha256: str = ""
    """Filled in by the runner from tokenizer.json, so a retrained tokenizer at the same path
    re-tokenizes instead of being skipped as unchanged."""


@functools.cache
def _load(folder: str, _sha: str) -> Any:
    from curate.tokenizer import load_tokenizer

    return load_tokenizer(Path(folder))


def tokenizer_fingerprint(folder: Path) -> str:
    path = Path(folder) / "tokenizer.json"
    if not path.is_file():
        raise FileNotFoundError(f"{folder} has no tokenizer.json: not a tokenizer folder")
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _plain_encode(raw: Any, texts: list[str], batch_size: int, parse_special: bool = False,
                  ) -> tuple[np.ndarray, np.ndarray]:
    """(flat ids, tokens per document) through ``encode_batch_fast``: any tokenizer."""
    raw.encode_special_tokens = not parse_special
    id_lists: list[list[int]] = []
    for start in range(0, len(texts), batch_size):
        batch = raw.encode_batch_fast(texts[start:start + batch_size], add_special_tokens=False)
        id_lists.extend(e.ids for e in batch)
    lengths = np.fromiter(map(len, id_lists), dtype=np.int64, count=len(id_lists))
    flat = np.fromiter(itertools.chain.from_iterable(id_lists), dtype=np.int64,
                       count=int(lengths.sum()))
    return flat, lengths


def wrap_documents(flat: np.ndarray, lengths: np.ndarray, eos: int, bos: int | None,
                   max_tokens: int | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cut each document's ids to ``max_tokens``, put BOS before and EOS after it.

    Returns (ids, lengths with the special tokens, truncated flags), all vectorised.
    """
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    kept = lengths if max_tokens is None else np.minimum(lengths, max_tokens)
    truncated = kept < lengths
    within = np.arange(len(flat)) - np.repeat(starts, lengths)
    body = flat[within < np.repeat(kept, lengths)] if truncated.any() else flat
    extra = 1 + (bos is not None)
    new_len = kept + extra
    new_start = np.concatenate([[0], np.cumsum(new_len)[:-1]]).astype(np.int64)
    out = np.empty(int(new_len.sum()), dtype=np.int64)
    body_start = new_start + (bos is not None)
    dest = np.repeat(body_start, kept) + (np.arange(len(body))
                                          - np.repeat(np.cumsum(kept) - kept, kept))
    out[dest] = body
    out[new_start + new_len - 1] = eos
    if bos is not None:
        out[new_start] = bos
    return out, new_len, truncated


@functools.cache
def _fast_path(folder: str, _sha: str) -> FastPath | None:
    return fast_path_for(Path(folder) / "tokenizer.json")


def encode(tokenizer: Any, texts: pa.Array, cfg: TokenizeConfig,
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(flat ids, per-document lengths, truncated flags): each document is
    [BOS] + ids[:max_doc_tokens] + EOS, in the tokenizer's narrowest id type."""
    fast = _fast_path(cfg.tokenizer, cfg.tokenizer_sha256) if cfg.fast_path else None
    if fast is not None:
        flat, lengths = encode_fast(tokenizer.tokenizer, texts, fast,
                                    parse_special=cfg.parse_special_tokens)
    else:
        flat, lengths = _plain_encode(tokenizer.tokenizer, pc.fill_null(texts, "").to_pylist(),
                                      cfg.batch_size, cfg.parse_special_tokens)
    bos = tokenizer.bos_id if cfg.add_bos else None
    if cfg.add_bos and bos is None:
        raise ValueError(f"add_bos is on but the tokenizer {cfg.tokenizer} has no BOS token")
    ids, lengths, truncated = wrap_documents(flat, lengths, tokenizer.eos_id, bos,
                                             cfg.max_doc_tokens)
    return ids.astype(tokenizer.token_dtype), lengths, truncated


def pack(ids: np.ndarray, lengths: np.ndarray, doc_ids: pa.Array, seq_len: int,
         ) -> tuple[pa.Table, np.ndarray, np.ndarray]:
    """Packed rows of the stream, and each document's (row, offset)."""
    total = len(ids)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    n_rows = -(-total // seq_len)
    doc_row, doc_offset = starts // seq_len, starts % seq_len
    present = lengths > 0
    # rows that open inside a document carry a continuation segment at 0
    row_heads = np.arange(n_rows, dtype=np.int64) * seq_len
    owner = np.searchsorted(starts, row_heads, side="right") - 1
    while_open = (owner >= 0) & (starts[np.clip(owner, 0, None)] != row_heads)
    seg_row = np.concatenate([doc_row[present], np.flatnonzero(while_open)])
    seg_off = np.concatenate([doc_offset[present], np.zeros(int(while_open.sum()), np.int64)])
    seg_doc = np.concatenate([np.flatnonzero(present), owner[while_open]])
    order = np.lexsort((seg_off, seg_row))
    seg_row, seg_off, seg_doc = seg_row[order], seg_off[order], seg_doc[order]
    seg_offsets = np.concatenate([[0], np.cumsum(np.bincount(seg_row, minlength=n_rows))])
    row_offsets = np.minimum(np.arange(n_rows + 1, dtype=np.int64) * seq_len, total)
    table = pa.table({
        "input_ids": pa.ListArray.from_arrays(pa.array(row_offsets.astype(np.int32)),
                                              pa.array(ids)),
        "segment_starts": pa.ListArray.from_arrays(pa.array(seg_offsets.astype(np.int32)),
                                                   pa.array(seg_off.astype(np.int32))),
        "segment_doc_ids": pa.ListArray.from_arrays(
            pa.array(seg_offsets.astype(np.int32)),
            doc_ids.take(pa.array(seg_doc, pa.int64()))),
    })
    return table, doc_row, doc_offset


def _column_or_nulls(table: pa.Table, name: str) -> pa.Array:
    if name in table.column_names:
        return table.column(name).combine_chunks().cast(pa.string())
    return pa.nulls(table.num_rows, pa.string())


def tokenize_table(table: pa.Table, cfg: TokenizeConfig, tokenizer: Any) -> StageOutput:
    """One documents table in: packed rows out, every document in the index."""
    ids, lengths, truncated = encode(tokenizer, table.column("text").combine_chunks(), cfg)
    doc_ids = table.column("id").combine_chunks()
    packed, row, offset = pack(ids, lengths, doc_ids, cfg.seq_len)
    index = pa.table({
        "doc_id": doc_ids,
        "url": _column_or_nulls(table, "url"),
        "source": _column_or_nulls(table, "source"),
        "row": pa.array(row, pa.int64()),
        "offset": pa.array(offset.astype(np.int32)),
        "length": pa.array(lengths, pa.int64()),
        "truncated": pa.array(truncated),
    })
    return StageOutput(kept=packed, rejected=pa.table({"id": pa.array([], pa.string())}),
                       rows_in=table.num_rows, kept_rows=table.num_rows,
                       extras={INDEX_DIR: (index, TOKEN_INDEX)})


def tokenize_unit(unit: WorkUnit, cfg: TokenizeConfig) -> StageOutput:
    (path,) = unit.inputs
    return tokenize_table(read_shard(path), cfg, _load(cfg.tokenizer, cfg.tokenizer_sha256))


TOKENIZE = Stage(name=STAGE_NAME, version="1", output_kind=PRETRAIN_TOKENS,
                 process=tokenize_unit)


def with_fingerprint(cfg: TokenizeConfig) -> TokenizeConfig:
    """The config with the tokenizer's path made absolute and its content hash filled in."""
    folder = Path(cfg.tokenizer).expanduser().resolve()
    return cfg.model_copy(update={"tokenizer": str(folder),
                                  "tokenizer_sha256": tokenizer_fingerprint(folder)})


def write_meta(out_dir: Path, cfg: TokenizeConfig) -> dict[str, Any]:
    """``_tokenizer.json``: what a reader needs to interpret the ids without the tokenizer."""
    tok = _load(cfg.tokenizer, cfg.tokenizer_sha256)
    meta = {"vocab_size": tok.vocab_size, "eos_id": tok.eos_id, "bos_id": tok.bos_id,
            "pad_id": tok.pad_id, "token_dtype": np.dtype(tok.token_dtype).name,
            "seq_len": cfg.seq_len, "add_bos": cfg.add_bos, "tokenizer": cfg.tokenizer,
            "tokenizer_sha256": cfg.tokenizer_sha256}
    text = json.dumps(meta, indent=2) + "\n"
    atomic_write(out_dir / META_NAME, lambda f: f.write(text.encode()))
    return meta


def run_tokenize(input_dir: Path, out_dir: Path, cfg: TokenizeConfig, workers: int = 1,
                 progress: bool = False, force: bool = False) -> RunReport:
    """Tokenize every shard of a documents stage folder into ``out_dir``."""
    cfg = with_fingerprint(cfg)
    write_meta(out_dir, cfg)
    return run_stage(TOKENIZE, plan_shards(Path(input_dir)), out_dir, cfg, workers=workers,
                     progress=progress, force=force)


def token_stats(stage_dir: Path) -> dict[str, Any]:
    """Tokens per shard and per source, documents, rows and truncations, from the indexes."""
    from schemas import shard_paths

    per_shard: dict[str, int] = {}
    per_source: Counter = Counter()
    documents = truncated = rows = 0
    for path in shard_paths(stage_dir):
        index = read_shard(path.parent / INDEX_DIR / path.name)
        lengths = index.column("length").to_numpy()
        per_shard[path.name] = int(lengths.sum())
        documents += index.num_rows
        truncated += int(pc.sum(index.column("truncated")).as_py() or 0)
        rows += read_shard(path, columns=["segment_starts"]).num_rows
        by_source = index.group_by("source").aggregate([("length", "sum")])
        for source, n in zip(by_source.column("source").to_pylist(),
                             by_source.column("length_sum").to_pylist(), strict=True):
            per_source[source or ""] += n
    return {"tokens": sum(per_shard.values()), "documents": documents, "rows": rows,
            "truncated": truncated, "tokens_per_shard": per_shard,
            "tokens_per_source": dict(per_source)}
