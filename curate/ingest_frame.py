"""The vectorised ingest path: a whole file parsed at once, checked with polars expressions.

Most dumps are clean, so ingest first parses a file in one call (polars, native code) and maps
it to documents column-wise. When the file does not parse cleanly as a whole (a broken line,
a bad byte, mixed types, a missing text field), this path declines and ingest falls back to
the per-record path, which rejects exactly the bad records. Both paths give the same
documents and rejections for the inputs this path accepts.
"""

from __future__ import annotations

import io
import json
import re
from typing import Any

import orjson
import polars as pl
import pyarrow as pa

from curate.runner import StageOutput

ID_DTYPES = (pl.String, pl.Int8, pl.Int16, pl.Int32, pl.Int64, pl.UInt8, pl.UInt16, pl.UInt32,
             pl.UInt64)


def metadata_json(fields: dict[str, Any]) -> str | None:
    """The record's other fields as a JSON object (sorted keys, null fields left out)."""
    kept = {k: v for k, v in fields.items() if v is not None}
    return orjson.dumps(kept, option=orjson.OPT_SORT_KEYS, default=str).decode() if kept else None


FLAT_DTYPES = (pl.String, pl.Boolean, pl.Int8, pl.Int16, pl.Int32, pl.Int64, pl.UInt8,
               pl.UInt16, pl.UInt32, pl.UInt64)


def metadata_column(extras: pl.DataFrame) -> pl.Series:
    """``metadata_json`` for every row; rows of flat, non-null values are encoded natively."""
    if not all(dtype in FLAT_DTYPES for dtype in extras.dtypes):
        return pl.Series([metadata_json(r) for r in extras.iter_rows(named=True)],
                         dtype=pl.String)
    encoded = extras.select(pl.struct(extras.columns).struct.json_encode()).to_series()
    complete = extras.select(pl.all_horizontal(pl.all().is_not_null())).to_series()
    if complete.all():
        return encoded
    slow = [metadata_json(r) for r in extras.filter(~complete).iter_rows(named=True)]
    return encoded.scatter((~complete).arg_true(), pl.Series(slow, dtype=pl.String))


def read_jsonl_frame(data: bytes, text_column: str = "text") -> pl.DataFrame | None:
    """Parse a whole JSONL buffer, or None when any line would need the per-record path.

    polars turns a number in a string column into its text (``"text": 5`` -> ``"5"``), which
    would keep a record the per-record path rejects as ``text_not_string``; a text value
    that is not a quoted string anywhere in the buffer sends the file to that path.
    """
    key = re.escape(json.dumps(text_column).encode())
    if re.search(key + rb"\s*:\s*[^\s\"n]", data):  # neither a string nor null
        return None
    lines = data.count(b"\n") + (1 if data and not data.endswith(b"\n") else 0)
    try:
        frame = pl.read_ndjson(io.BytesIO(data), infer_schema_length=None)
    except Exception:
        return None
    return frame if frame.height == lines else None  # blank lines are not silently dropped


def _as_string(frame: pl.DataFrame, column: str | None, n: int) -> pl.Series | None:
    if column is None or column not in frame.columns:
        return pl.Series([None] * n, dtype=pl.String)
    series = frame[column]
    if series.dtype not in ID_DTYPES:
        return None
    return series.cast(pl.String).replace("", None)


def _to_arrow(frame: pl.DataFrame, types: dict[str, pa.DataType]) -> pa.Table:
    table = frame.to_arrow()
    return pa.table({name: table.column(name).cast(types.get(name, pa.string()))
                     for name in frame.columns})


def documents_from_frame(frame: pl.DataFrame, cfg: Any, source: str,
                         source_path: str) -> StageOutput | None:
    """Map a parsed file to kept + rejected documents, or None to ask for the per-record path."""
    text_col = cfg.text_column
    n = frame.height
    if text_col not in frame.columns or frame[text_col].dtype != pl.String:
        return None
    if frame[text_col].null_count():
        return None  # missing vs null text is only visible record by record
    ids = _as_string(frame, cfg.id_column, n)
    urls = _as_string(frame, cfg.url_column, n)
    titles = _as_string(frame, cfg.title_column, n)
    if ids is None or urls is None or titles is None:
        return None
    rows = pl.int_range(1, n + 1, dtype=pl.Int64, eager=True)
    derived = pl.Series([source_path] * n, dtype=pl.String) + ":" + rows.cast(pl.String)
    used = {c for c in (text_col, cfg.id_column, cfg.url_column, cfg.title_column) if c}
    extras = [c for c in frame.columns if c not in used]
    if cfg.keep_metadata and extras:
        metadata = metadata_column(frame.select(sorted(extras)))
    else:
        metadata = pl.Series([None] * n, dtype=pl.String)
    docs = pl.DataFrame({
        "id": ids.fill_null(derived), "text": frame[text_col], "url": urls, "title": titles,
        "source_row": rows, "metadata": metadata})
    stripped = pl.col("text").str.strip_chars().str.len_chars()
    length = pl.col("text").str.len_chars()
    docs = docs.with_columns(
        reason=pl.when(stripped < cfg.min_text_chars).then(pl.lit("empty_text"))
        .when(length > cfg.max_text_chars).then(pl.lit("text_too_long")),
        detail=pl.when(stripped < cfg.min_text_chars)
        .then(pl.format("{} non-blank chars", stripped))
        .when(length > cfg.max_text_chars)
        .then(pl.format("{} chars > max_text_chars {}", length, pl.lit(cfg.max_text_chars))),
    )
    # duplicates are judged among the rows that passed the other checks, first one wins
    dup = pl.col("reason").is_null() & ~pl.col("id").is_first_distinct().over(
        pl.col("reason").is_null())
    docs = docs.with_columns(
        reason=pl.when(dup).then(pl.lit("duplicate_id")).otherwise(pl.col("reason")),
        detail=pl.when(dup).then(pl.format("id '{}' already used in this file", pl.col("id")))
        .otherwise(pl.col("detail")))
    src, src_path = pl.lit(source).alias("source"), pl.lit(source_path).alias("source_path")
    kept = docs.filter(pl.col("reason").is_null()).select(
        "id", "text", "url", src, src_path, "source_row", "title", "metadata")
    rejected = docs.filter(pl.col("reason").is_not_null()).select(
        "id", src, src_path, "source_row",
        pl.when(pl.col("reason") == "text_too_long")
        .then(pl.col("text").str.slice(0, cfg.raw_excerpt_chars))
        .otherwise(pl.col("text")).alias("text"),
        pl.lit(None, dtype=pl.String).alias("raw"), pl.lit("ingest").alias("reject_stage"),
        pl.col("reason").alias("reject_reason"), pl.col("detail").alias("reject_detail"))
    types = {"source_row": pa.int64()}
    return StageOutput(kept=_to_arrow(kept, types), rejected=_to_arrow(rejected, types),
                       rows_in=n)
