"""Ingest labelled files into ``sft`` and ``preference`` shards (stages ``sft_ingest`` and
``preference_ingest``).

Inputs are what :mod:`curate.ingest` reads (JSONL / JSON arrays / CSV / Parquet, optionally
compressed, and ``datasets.save_to_disk`` folders; one shard per file or dataset), read with
its readers. A file's layout is detected from its columns (:mod:`curate.labelled.layouts`).
A clean JSONL, Parquet or Hugging Face file is converted column-wise; when a column has the
wrong type somewhere (a number where text belongs, a turn without a role), the file is
converted record by record so only the broken records are rejected. Every row is then
validated (:mod:`curate.labelled.validate`) unless ``validation: false``.

Rejected rows keep the id, the source, the row and whatever of the conversation could be
parsed, plus ``raw`` (an excerpt of the record) when it could not be parsed, and
``reject_stage`` / ``reject_reason`` / ``reject_detail``.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import orjson
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj
import pyarrow.parquet as pq

from curate.ingest import (
    HF_MARKERS,
    Record,
    detect_format,
    plan_ingest,
    read_csv,
    read_jsonl,
    source_name,
)
from curate.ingest_frame import metadata_column, metadata_json
from curate.labelled.layouts import (
    Conversations,
    Field,
    FieldError,
    Kind,
    Layout,
    Turns,
    UnknownLayout,
    build,
    column_values,
    detect_layout,
    field_value,
    get_layout,
    guess_kind,
    normalise_roles,
    values_from_records,
)
from curate.labelled.validate import (
    PARTS,
    ValidationConfig,
    preference_problems,
    sft_problems,
)
from curate.runner import Stage, StageOutput, WorkUnit
from schemas import PREFERENCE, SFT

JSON_BLOCK_BYTES = 16 << 20
"""Block size of the whole-file JSON reader; a record longer than this takes the per-record
path (same result, slower)."""
ID_TYPES = (pa.types.is_string, pa.types.is_large_string, pa.types.is_string_view,
            pa.types.is_integer, pa.types.is_null)

LayoutName = Literal["auto", "messages", "sharegpt", "alpaca", "prompt_completion",
                     "preference", "preference_transcripts"]


class LabelledIngestConfig(ValidationConfig):
    """How to read labelled files; the validation limits are inherited."""

    layout: LayoutName = "auto"
    """Force a layout instead of detecting it from the columns."""
    rename: dict[str, str] = {}
    """File column -> layout column, applied first (e.g. ``question: prompt``)."""
    roles: dict[str, str] = {}
    """Extra role aliases (e.g. ``customer: user``), on top of the built-in ones."""
    id_column: str | None = "id"
    """Column with the example id; missing ids become ``<file>:<row>``."""
    split_column: str | None = "split"
    """Column with an existing train/validation/test split, kept in ``split``."""
    source: str | None = None
    """Source name for every example; default: the file name without its extensions."""
    format: Literal["auto", "jsonl", "csv", "parquet"] = "auto"
    encoding: str = "utf-8"
    keep_metadata: bool = True
    """Keep the record's other fields as a JSON object in ``metadata``."""
    validation: bool = True
    """Apply the validation rules here (else only parse; run the validate stage later)."""
    raw_excerpt_chars: int = 2000
    split: str | None = None
    """For a saved Hugging Face DatasetDict: which split to read (default: train)."""


# --- reading ---------------------------------------------------------------------------------

CHUNK_ROWS = 8192
"""Rows converted column-wise at a time: a broken record sends only its chunk down the
per-record path."""


@dataclass
class Chunk:
    """A run of a file's rows: a typed table when they parsed whole, and how to read them
    record by record instead. ``offset``: rows (lines, for JSONL) before the chunk."""

    table: pa.Table | None
    records: Callable[[], list[Record]]
    offset: int = 0
    lines: Callable[[], list[bytes]] | None = None
    """The chunk's raw lines (JSONL), for the ``raw`` of rejected rows."""


@dataclass
class FileRows:
    chunks: list[Chunk]
    from_text: bool = False
    split: str | None = None


def _table_records(table: pa.Table) -> list[Record]:
    return [Record(n, fields, None) for n, fields in enumerate(table.to_pylist(), start=1)]


def _table_chunks(table: pa.Table) -> list[Chunk]:
    return [Chunk(part, lambda part=part: _table_records(part), start)
            for start in range(0, max(table.num_rows, 1), CHUNK_ROWS)
            for part in (table.slice(start, CHUNK_ROWS),)]


def _json_table(data: bytes) -> pa.Table | None:
    """A JSONL buffer as a table, or None when a line needs the per-record path. pyarrow's
    reader is strict about types (a number where a string was is an error), so a wrong type
    is never converted silently."""
    lines = data.count(b"\n") + (1 if data and not data.endswith(b"\n") else 0)
    try:
        table = pj.read_json(io.BytesIO(data),
                             read_options=pj.ReadOptions(block_size=JSON_BLOCK_BYTES))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        return None
    return table if table.num_rows == lines else None  # blank lines are not silently dropped


_NON_SPACE = re.compile(rb"\S")


def _jsonl_chunks(data: bytes, cfg: LabelledIngestConfig) -> list[Chunk]:
    """``CHUNK_ROWS`` lines at a time. A chunk never starts at a line opening with ``[``,
    which ``read_jsonl`` would take for a whole JSON array."""
    newlines = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == 10)
    bounds = [(0, 0)]  # (byte, line) where each chunk starts
    line = CHUNK_ROWS
    while line <= len(newlines) - 1 or (line == len(newlines) and not data.endswith(b"\n")):
        start = int(newlines[line - 1]) + 1
        first = _NON_SPACE.search(data, start)
        if first is not None and data[first.start():first.start() + 1] == b"[":
            line += 1
            continue
        bounds.append((start, line))
        line += CHUNK_ROWS
    chunks = []
    for (start, first_line), (end, _) in zip(bounds, [*bounds[1:], (len(data), 0)],
                                             strict=True):
        part = data[start:end]
        chunks.append(Chunk(_json_table(part) if part else None,
                            lambda part=part: list(read_jsonl(io.BytesIO(part), cfg)),
                            first_line, lambda part=part: part.split(b"\n")))
    return chunks


def read_file(path: Path, cfg: LabelledIngestConfig) -> FileRows:
    fmt, compression = detect_format(path)
    if cfg.format != "auto":
        fmt = cfg.format
    if fmt == "parquet":
        return FileRows(_table_chunks(pq.read_table(path)))
    with pa.input_stream(str(path), compression=compression) as f:
        data = f.read()
    if fmt == "csv":
        return FileRows([Chunk(None, lambda: list(read_csv(io.BytesIO(data), cfg)))],
                        from_text=True)
    utf8 = cfg.encoding.lower().replace("-", "") == "utf8"
    if not utf8 or data.lstrip()[:1] == b"[":  # another encoding, or one JSON array
        return FileRows([Chunk(None, lambda: list(read_jsonl(io.BytesIO(data), cfg)))])
    return FileRows(_jsonl_chunks(data, cfg))


def read_hf_dataset(folder: Path, cfg: LabelledIngestConfig) -> FileRows:
    """A ``datasets.save_to_disk`` folder (a DatasetDict uses ``cfg.split``, default train)."""
    try:
        import datasets
    except ImportError:
        raise ValueError(f"{folder} is a Hugging Face dataset: pip install datasets") from None
    loaded = datasets.load_from_disk(str(folder))
    split = None
    if isinstance(loaded, datasets.DatasetDict):
        split = cfg.split or ("train" if "train" in loaded else None)
        if split not in loaded:
            raise ValueError(f"{folder}: choose a split with --set split=NAME "
                             f"(splits: {', '.join(loaded)})")
        loaded = loaded[split]
    if loaded._indices is not None:  # a filtered / shuffled view: materialise its rows
        loaded = loaded.flatten_indices()
    return FileRows(_table_chunks(loaded.data.table), split=split)


# --- rows in layout terms --------------------------------------------------------------------


@dataclass
class Parsed:
    """Rows in layout terms, plus why a row could not be parsed (None = parsed)."""

    n: int
    values: dict[str, Any]
    reason: np.ndarray
    detail: np.ndarray
    rows: np.ndarray
    ids: pa.Array
    split: pa.Array
    metadata: pa.Array
    raw: Callable[[np.ndarray], list[str | None]]
    unparsed: np.ndarray
    """Rows with nothing parsed at all (the reader failed), whose parts are null."""


def _excerpt(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + f"... [{len(text)} chars]"


def _renamed(names: list[str], cfg: LabelledIngestConfig) -> list[str]:
    return [cfg.rename.get(n, n) for n in names]


def _is_text(dtype: pa.DataType) -> bool:
    return (pa.types.is_string(dtype) or pa.types.is_large_string(dtype)
            or pa.types.is_string_view(dtype))


def absent(field: Field, n: int) -> pa.Array | Turns:
    """A field's values for ``n`` rows that do not have it."""
    if field.shape == "text":
        return pa.nulls(n, pa.string())
    if field.shape == "number":
        return pa.nulls(n, pa.float32())
    return Turns.empty(n)


Mapping = dict[str, str | None]


def parse_table(table: pa.Table, layout: Layout, mapping: Mapping, cfg: LabelledIngestConfig,
                split: str | None, chunk: Chunk) -> Parsed | None:
    """Column-wise conversion of a typed (renamed) table, or None to ask for the per-record
    path. ``mapping``: the file's column for each field."""
    n = table.num_rows
    values: dict[str, Any] = {}
    reason = np.full(n, None, dtype=object)
    detail = np.full(n, None, dtype=object)
    for f in layout.fields:
        name = mapping[f.name]
        if name is None:
            values[f.name] = None
            continue
        if name not in table.column_names:  # no row of this chunk has it
            values[f.name] = absent(f, n)
            missing = np.ones(n, dtype=bool) if f.required else np.zeros(n, dtype=bool)
        else:
            col = table.column(name)
            converted = column_values(col, f)
            if converted is None:
                return None
            values[f.name] = converted
            missing = (~np.asarray(col.combine_chunks().is_valid(), dtype=bool) if f.required
                       else np.zeros(n, dtype=bool))
        missing &= reason == None  # noqa: E711
        reason[missing] = "missing_field"
        detail[missing] = f"{name!r} is missing or null"
    consumed = {c for c in mapping.values() if c}
    ids = pa.nulls(n, pa.string())
    if cfg.id_column and cfg.id_column in table.column_names:
        col = table.column(cfg.id_column)
        if not any(check(col.type) for check in ID_TYPES):
            return None
        ids = pc.cast(col, pa.string()).combine_chunks()
        ids = pc.if_else(pc.equal(ids, ""), pa.scalar(None, pa.string()), ids)
        consumed.add(cfg.id_column)
    splits = pa.array([split] * n, pa.string())
    if (cfg.split_column and cfg.split_column in table.column_names
            and _is_text(table.schema.field(cfg.split_column).type)):
        splits = pc.cast(table.column(cfg.split_column), pa.string()).combine_chunks()
        consumed.add(cfg.split_column)
    extras = sorted(c for c in table.column_names if c not in consumed)
    if cfg.keep_metadata and extras:
        metadata = metadata_column(pl.from_arrow(table.select(extras))).to_arrow()
        metadata = metadata.cast(pa.string())
    else:
        metadata = pa.nulls(n, pa.string())
    lines = chunk.lines

    def raw(rows: np.ndarray) -> list[str | None]:
        if lines is not None:
            text = lines()
            picked = [text[r].rstrip(b"\r").decode() for r in rows.tolist()]
        else:
            picked = [orjson.dumps(r, default=str).decode()
                      for r in table.take(pa.array(rows, pa.int64())).to_pylist()]
        return [_excerpt(r, cfg.raw_excerpt_chars) for r in picked]

    rows = np.arange(chunk.offset + 1, chunk.offset + n + 1, dtype=np.int64)
    return Parsed(n, values, reason, detail, rows, ids, splits, metadata, raw,
                  np.zeros(n, dtype=bool))


def record_columns(records: list[Record], cfg: LabelledIngestConfig) -> set[str]:
    """The union of the parsed records' keys (renamed)."""
    keys: set[str] = set()
    for rec in records:
        if rec.fields is not None:
            keys.update(rec.fields)
    return set(_renamed(sorted(keys), cfg))


def parse_records(records: list[Record], layout: Layout | None, mapping: Mapping,
                  cfg: LabelledIngestConfig, from_text: bool, split: str | None,
                  offset: int = 0) -> Parsed:
    """Record-by-record conversion: a broken record costs only itself."""
    n = len(records)
    fields: tuple[Field, ...] = layout.fields if layout else ()
    collected: dict[str, list[Any]] = {f.name: [None] * n for f in fields}
    reason = np.full(n, None, dtype=object)
    detail = np.full(n, None, dtype=object)
    ids: list[str | None] = [None] * n
    splits: list[str | None] = [split] * n
    metadata: list[str | None] = [None] * n
    raws: list[str | None] = [None] * n
    unparsed = np.zeros(n, dtype=bool)
    for i, rec in enumerate(records):
        if rec.fields is None:
            reason[i], detail[i] = rec.reason or "unparsable", rec.detail or ""
            raws[i] = rec.raw
            unparsed[i] = True
            continue
        fields_in = {cfg.rename.get(k, k): v for k, v in rec.fields.items()}
        raws[i] = rec.raw if rec.raw is not None else orjson.dumps(rec.fields,
                                                                   default=str).decode()
        for f in fields:
            name = mapping[f.name]
            if name is None:
                continue
            try:
                value = field_value(fields_in.pop(name, None), f, name, from_text)
            except FieldError as exc:
                if reason[i] is None:
                    reason[i], detail[i] = exc.reason, exc.detail
                continue
            if value is None and f.required and reason[i] is None:
                reason[i], detail[i] = "missing_field", f"{name!r} is missing or null"
            collected[f.name][i] = value
        if cfg.id_column:
            raw_id = fields_in.pop(cfg.id_column, None)
            ids[i] = None if raw_id in (None, "") else str(raw_id)
        if cfg.split_column and isinstance(fields_in.get(cfg.split_column), str):
            splits[i] = fields_in.pop(cfg.split_column)
        if cfg.keep_metadata:
            metadata[i] = metadata_json(fields_in)
    values = {f.name: (values_from_records(collected[f.name], f) if mapping.get(f.name)
                       else None) for f in fields}
    limit = cfg.raw_excerpt_chars

    def raw(rows: np.ndarray) -> list[str | None]:
        return [None if raws[r] is None else _excerpt(raws[r], limit) for r in rows.tolist()]

    return Parsed(n, values, reason, detail,
                  np.array([rec.row + offset for rec in records], dtype=np.int64),
                  pa.array(ids, pa.string()), pa.array(splits, pa.string()),
                  pa.array(metadata, pa.string()), raw, unparsed)


def merge(parts: list[Parsed], layout: Layout | None) -> Parsed:
    """One Parsed from the chunks' (in order)."""
    if len(parts) == 1:
        return parts[0]
    sizes = [p.n for p in parts]
    starts = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    values: dict[str, Any] = {}
    for f in (layout.fields if layout else ()):
        chunk_values = [p.values.get(f.name) for p in parts]
        if all(v is None for v in chunk_values):
            values[f.name] = None
            continue
        filled = [absent(f, p.n) if v is None else v
                  for v, p in zip(chunk_values, parts, strict=True)]
        values[f.name] = (Turns.stack(filled) if isinstance(filled[0], Turns)
                          else pa.concat_arrays(filled))

    def raw(rows: np.ndarray) -> list[str | None]:
        out: list[str | None] = [None] * len(rows)
        which = np.searchsorted(starts, rows, side="right") - 1
        for c in np.unique(which).tolist():
            sel = np.flatnonzero(which == c)
            for j, text in zip(sel.tolist(), parts[c].raw(rows[sel] - starts[c]), strict=True):
                out[j] = text
        return out

    return Parsed(int(starts[-1]), values, np.concatenate([p.reason for p in parts]),
                  np.concatenate([p.detail for p in parts]),
                  np.concatenate([p.rows for p in parts]),
                  pa.concat_arrays([p.ids for p in parts]),
                  pa.concat_arrays([p.split for p in parts]),
                  pa.concat_arrays([p.metadata for p in parts]), raw,
                  np.concatenate([p.unparsed for p in parts]))


# --- from rows to shards ---------------------------------------------------------------------


def _conversations(parsed: Parsed, layout: Layout | None, kind: Kind,
                   cfg: LabelledIngestConfig) -> Conversations:
    n = parsed.n
    if layout is None:
        return Conversations({p: Turns.empty(n) for p in PARTS[kind]},
                             {k: pa.nulls(n, pa.float32())
                              for k in ("score_chosen", "score_rejected")
                              if kind == "preference"})
    conv = build(layout, parsed.values, n)
    conv.parts = {name: normalise_roles(turns, cfg.roles) for name, turns in conv.parts.items()}
    return conv


VALIDATION_REASONS = frozenset({
    "no_turns", "chosen_equals_rejected", "empty_response", "no_prompt", "unknown_role",
    "empty_turn", "misplaced_system", "not_alternating", "last_turn_not_assistant",
    "response_not_assistant", "too_long", "duplicate_id"})
"""Reasons of rows that parsed: their conversation is in the rejected row, no raw needed."""


def _lists(turns: Turns, null: np.ndarray) -> pa.Array:
    lists = turns.to_lists()
    if not null.any():
        return lists
    return pa.ListArray.from_arrays(lists.offsets, lists.values, type=lists.type,
                                    mask=pa.array(null))


def assemble(parsed: Parsed, layout: Layout | None, kind: Kind, cfg: LabelledIngestConfig,
             stage: str, source: str, source_path: str) -> StageOutput:
    """Validate, check ids, and split the rows into kept and rejected tables."""
    n = parsed.n
    conv = _conversations(parsed, layout, kind, cfg)
    reason, detail = parsed.reason.copy(), parsed.detail.copy()
    if cfg.validation and n:
        parts = conv.parts
        problems = (sft_problems(parts["messages"], cfg) if kind == "sft" else
                    preference_problems(parts["prompt"], parts["chosen"], parts["rejected"],
                                        cfg))
        fresh = reason == None  # noqa: E711
        reason[fresh], detail[fresh] = problems.reason[fresh], problems.detail[fresh]
    derived = pc.binary_join_element_wise(source_path,
                                          pc.cast(pa.array(parsed.rows), pa.string()), ":")
    ids = pc.coalesce(parsed.ids, derived)
    ok = reason == None  # noqa: E711
    # duplicates are judged among the rows that passed the other checks, first one wins
    dup = np.zeros(n, dtype=bool)
    if ok.any():
        ok_rows = np.flatnonzero(ok)
        first = pl.from_arrow(ids.take(pa.array(ok_rows))).is_first_distinct().to_numpy()
        dup[ok_rows[~first]] = True
    if dup.any():
        dup_ids = ids.take(pa.array(np.flatnonzero(dup))).to_pylist()
        reason[dup] = "duplicate_id"
        detail[dup] = [f"id {i!r} already used in this file" for i in dup_ids]
    columns: dict[str, pa.Array] = {"id": ids}
    for name, turns in conv.parts.items():
        columns[name] = _lists(turns, parsed.unparsed)
    columns.update(conv.scores)
    columns.update({
        "source": pa.repeat(pa.scalar(source, pa.string()), n),
        "split": parsed.split,
        "metadata": parsed.metadata,
        "source_path": pa.repeat(pa.scalar(source_path, pa.string()), n),
        "source_row": pa.array(parsed.rows, pa.int64()),
    })
    table = pa.table(columns)
    keep = reason == None  # noqa: E711
    kept = table.filter(pa.array(keep))
    bad = np.flatnonzero(~keep)
    rejected = table.take(pa.array(bad, pa.int64()))
    parse_failed = np.asarray([r not in VALIDATION_REASONS for r in reason[bad].tolist()],
                              dtype=bool)
    raw_rows = bad[parse_failed]
    raw = np.full(len(bad), None, dtype=object)
    raw[parse_failed] = np.asarray(parsed.raw(raw_rows), dtype=object) if len(raw_rows) else []
    rejected = (rejected
                .append_column("raw", pa.array(raw.tolist(), pa.string()))
                .append_column("reject_stage", pa.repeat(pa.scalar(stage), len(bad)))
                .append_column("reject_reason", pa.array(reason[bad].tolist(), pa.string()))
                .append_column("reject_detail", pa.array(detail[bad].tolist(), pa.string())))
    return StageOutput(kept=kept, rejected=rejected, rows_in=n)


def ingest_rows(rows: FileRows, kind: Kind, cfg: LabelledIngestConfig, stage: str,
                source: str, source_path: str) -> StageOutput:
    """Detect the layout from every chunk's columns, then convert each chunk column-wise when
    its table allows, else record by record."""
    loaded: list[tuple[Chunk, pa.Table | None, list[Record] | None]] = []
    columns: set[str] = set()
    for chunk in rows.chunks:
        if chunk.table is not None:
            table = chunk.table.rename_columns(_renamed(chunk.table.column_names, cfg))
            columns.update(table.column_names)
            loaded.append((chunk, table, None))
        else:
            records = chunk.records()
            columns.update(record_columns(records, cfg))
            loaded.append((chunk, None, records))
    layout = detect_layout(columns, kind, cfg.layout, where=source_path) if columns else None
    mapping = layout.columns(columns) if layout else {}
    parts = []
    for chunk, table, records in loaded:
        parsed = (parse_table(table, layout, mapping, cfg, rows.split, chunk)
                  if table is not None and layout is not None else None)
        if parsed is None:
            parsed = parse_records(records if records is not None else chunk.records(),
                                   layout, mapping, cfg, rows.from_text, rows.split,
                                   chunk.offset)
        parts.append(parsed)
    return assemble(merge(parts, layout), layout, kind, cfg, stage, source, source_path)


def ingest_labelled_file(path: Path, kind: Kind, cfg: LabelledIngestConfig,
                         source_path: str | None = None) -> StageOutput:
    """One raw file (or saved Hugging Face folder) into ``kind`` examples."""
    stage = f"{kind}_ingest"
    if path.is_dir():
        source = cfg.source or path.name
        return ingest_rows(read_hf_dataset(path, cfg), kind, cfg, stage, source,
                           source_path or path.name)
    return ingest_rows(read_file(path, cfg), kind, cfg, stage, cfg.source or source_name(path),
                       source_path or path.name)


def _ingest_unit(unit: WorkUnit, cfg: LabelledIngestConfig, kind: Kind) -> StageOutput:
    path = unit.inputs[0]
    if path.name in HF_MARKERS:
        path = path.parent
    rel = path.relative_to(unit.base).as_posix() if unit.base else path.name
    return ingest_labelled_file(path, kind, cfg, rel)


def _sft_unit(unit: WorkUnit, cfg: LabelledIngestConfig) -> StageOutput:
    return _ingest_unit(unit, cfg, "sft")


def _preference_unit(unit: WorkUnit, cfg: LabelledIngestConfig) -> StageOutput:
    return _ingest_unit(unit, cfg, "preference")


SFT_INGEST = Stage(name="sft_ingest", version="1", output_kind=SFT, process=_sft_unit)
PREFERENCE_INGEST = Stage(name="preference_ingest", version="1", output_kind=PREFERENCE,
                          process=_preference_unit)
INGEST_STAGES = {"sft": SFT_INGEST, "preference": PREFERENCE_INGEST}

plan_labelled = plan_ingest
"""One unit per file or saved dataset under the input, exactly as ``curate ingest`` plans."""


# --- which kind a folder holds ---------------------------------------------------------------


def peek_columns(unit: WorkUnit, cfg: LabelledIngestConfig, max_records: int = 200) -> set[str]:
    """The columns of a unit's file from its first records (schema, header), renamed."""
    path = unit.inputs[0]
    if path.name in HF_MARKERS:
        names = read_hf_dataset(path.parent, cfg).chunks[0].table.column_names
    else:
        fmt, compression = detect_format(path)
        fmt = fmt if cfg.format == "auto" else cfg.format
        if fmt == "parquet":
            names = pq.read_schema(path).names
        else:
            names = set()
            with pa.input_stream(str(path), compression=compression) as f:
                reader = read_jsonl(f, cfg) if fmt == "jsonl" else read_csv(f, cfg)
                for i, rec in enumerate(reader):
                    if rec.fields is not None:
                        names.update(rec.fields)
                    if i + 1 >= max_records:
                        break
    return set(_renamed(sorted(names), cfg))


def detect_kind(units: list[WorkUnit], cfg: LabelledIngestConfig) -> Kind:
    """sft or preference for all of ``units``; an error names files of another or no kind."""
    if cfg.layout != "auto":
        return get_layout(cfg.layout).kind
    kinds: dict[str, list[str]] = {}
    for unit in units:
        columns = peek_columns(unit, cfg)
        kind = guess_kind(columns)
        if kind is None:
            raise UnknownLayout(f"{unit.inputs[0].name}: no labelled layout fits; columns "
                                f"seen: {', '.join(sorted(columns)) or 'none'} (sft: "
                                "messages, conversations, instruction+output, "
                                "prompt+completion; preference: prompt+chosen+rejected, "
                                "chosen+rejected)")
        kinds.setdefault(kind, []).append(unit.name)
    if len(kinds) > 1:
        listing = "; ".join(f"{k}: {', '.join(v)}" for k, v in sorted(kinds.items()))
        raise UnknownLayout(f"the input holds both sft and preference files ({listing}); "
                            "ingest them into separate outputs (or pass --kind)")
    return next(iter(kinds), "sft")  # type: ignore[return-value]
