"""Phase 1 (a map): per documents shard, the keys every later phase needs, nothing more.

One ``minhash_signatures`` shard per documents shard, row-aligned with it: the MinHash
signature, the exact-text and URL hashes, the length and the optional score. Later phases
read only these (never the texts, unless the Jaccard check is on), and an incremental run
reads earlier runs' signature shards instead of recomputing them.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from curate.dedup import minhash
from curate.dedup.config import SignatureConfig
from curate.dedup.doc_keys import doc_keys
from curate.dedup.normalize import normalize
from curate.dedup.urls import normalize_urls
from curate.runner import Stage, StageOutput, WorkUnit
from schemas import MINHASH_SIGNATURES, read_shard
from schemas.shards import shard_schema

STAGE_NAME = "dedup_signatures"


def _nullable_hash(values: pa.Array, present: np.ndarray) -> pa.Array:
    """64-bit hashes of the strings where ``present``, null elsewhere."""
    hashes = minhash.hash_strings(pc.fill_null(values, ""))
    return pa.array(hashes, pa.uint64(), mask=~present)


def score_values(table: pa.Table, cfg: SignatureConfig) -> pa.Array:
    """The keep-rule score as float64 (null when not configured or missing)."""
    if not cfg.score_column:
        return pa.nulls(table.num_rows, pa.float64())
    if cfg.score_column not in table.column_names:
        raise ValueError(f"score_column {cfg.score_column!r} is not a column of the shard "
                         f"(columns: {', '.join(table.column_names)})")
    try:
        return pc.cast(table.column(cfg.score_column), pa.float64()).combine_chunks()
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise ValueError(f"score_column {cfg.score_column!r} is not numeric: {exc}") from None


def compute_signatures(table: pa.Table, cfg: SignatureConfig) -> pa.Table:
    """The signatures table of one documents table (same rows, same order)."""
    text = table.column("text")
    if cfg.hash_function == "words":
        sig, counts, hashes, text_present = doc_keys(text, cfg.normalization, cfg.num_perm,
                                                     cfg.ngram, cfg.seed, cfg.scheme)
        text_hash = pa.array(hashes, pa.uint64(), mask=~text_present)
    else:
        normalized = normalize(text, cfg.normalization)
        sig, counts = minhash.signatures(normalized, cfg.num_perm, cfg.ngram, cfg.seed,
                                         cfg.scheme, cfg.hash_function)
        text_present = pc.greater(pc.binary_length(normalized), 0).to_numpy(
            zero_copy_only=False)
        text_hash = _nullable_hash(normalized, text_present)
    lengths = pc.fill_null(pc.utf8_length(text), 0).to_numpy(zero_copy_only=False)
    if "url" in table.column_names:
        urls = normalize_urls(table.column("url"))
        url_present = pc.is_valid(urls).to_numpy(zero_copy_only=False)
    else:
        urls = pa.nulls(table.num_rows, pa.string())
        url_present = np.zeros(table.num_rows, dtype=bool)
    offsets = pa.array(np.arange(0, sig.size + 1, cfg.num_perm, dtype=np.int32))
    return pa.table({
        "id": table.column("id").combine_chunks(),
        "n_chars": pa.array(lengths.astype(np.int64)),
        "score": score_values(table, cfg),
        "n_shingles": pa.array(counts),
        "text_hash": text_hash,
        "url_hash": _nullable_hash(urls, url_present),
        "minhash": pa.ListArray.from_arrays(offsets, pa.array(sig.reshape(-1))),
    })


def signature_matrix(table: pa.Table, num_perm: int) -> np.ndarray:
    """The ``minhash`` column as an (n, num_perm) uint32 view."""
    col = table.column("minhash").combine_chunks()
    values = col.values.to_numpy()[col.offsets[0].as_py():]
    return values[:len(col) * num_perm].reshape(len(col), num_perm)


def signatures_unit(unit: WorkUnit, cfg: SignatureConfig) -> StageOutput:
    """One documents shard in, its signatures shard out (nothing is rejected here)."""
    (path,) = unit.inputs
    names = shard_schema(path).names  # read only what the keys need: no other column's
    optional = [c for c in ("url", cfg.score_column) if c and c in names]  # decompression
    table = read_shard(path, columns=list(dict.fromkeys(["id", "text", *optional])))
    return StageOutput(kept=compute_signatures(table, cfg),
                       rejected=pa.table({"id": pa.array([], pa.string())}),
                       rows_in=table.num_rows)


SIGNATURES = Stage(name=STAGE_NAME, version="3", output_kind=MINHASH_SIGNATURES,
                   process=signatures_unit, preload=("curate.dedup.warm",))
