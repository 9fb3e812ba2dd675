"""Ingest local JSONL, CSV and Parquet files into ``documents`` shards.

One input file becomes one shard. Parsing is per record by nature (a broken line must cost
only that line), so readers yield records and a builder turns them into Arrow columns; every
line or row that cannot become a document is kept in ``rejected`` with a reason.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import orjson
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from curate.config import StageConfig
from curate.ingest_frame import documents_from_frame, metadata_json, read_jsonl_frame
from curate.runner import Stage, StageOutput, WorkUnit
from schemas import DOCUMENTS

STAGE_NAME = "ingest"
FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl", ".csv": "csv",
           ".parquet": "parquet", ".pq": "parquet"}
COMPRESSIONS = {".gz": "gzip", ".zst": "zstd", ".bz2": "bz2"}


class IngestConfig(StageConfig):
    """How to map a file's columns onto documents."""

    text_column: str = "text"
    id_column: str | None = "id"
    url_column: str | None = "url"
    title_column: str | None = "title"
    source: str | None = None
    """Source name for every document; default: the file name without its extensions."""
    format: Literal["auto", "jsonl", "csv", "parquet"] = "auto"
    encoding: str = "utf-8"
    keep_metadata: bool = True
    """Keep the record's other fields as a JSON object in ``metadata``."""
    min_text_chars: int = 1
    max_text_chars: int = 5_000_000
    raw_excerpt_chars: int = 2000
    split: str | None = None
    """For a saved Hugging Face DatasetDict: which split (default: train)."""


@dataclass
class Record:
    """One parsed input record, or why it could not be parsed."""

    row: int
    fields: dict[str, Any] | None
    raw: str | None = None
    reason: str | None = None
    detail: str | None = None


def detect_format(path: Path) -> tuple[str, str | None]:
    """(format, compression) from the file name, e.g. ``x.jsonl.gz`` -> ("jsonl", "gzip")."""
    suffixes = [s.lower() for s in path.suffixes]
    compression = COMPRESSIONS.get(suffixes[-1]) if suffixes else None
    if compression:
        suffixes = suffixes[:-1]
    fmt = FORMATS.get(suffixes[-1]) if suffixes else None
    if fmt is None:
        raise ValueError(f"{path.name}: unknown input format (expected one of "
                         f"{', '.join(sorted(FORMATS))}, optionally {', '.join(COMPRESSIONS)})")
    return fmt, compression


def source_name(path: Path) -> str:
    """``dumps/news-2024.jsonl.gz`` -> ``news-2024``: the file name without data extensions."""
    name = path.name
    while Path(name).suffix.lower() in {*FORMATS, *COMPRESSIONS, ".warc", ".wet", ".arc"}:
        name = Path(name).stem
    return name


def _open(path: Path, compression: str | None) -> io.BufferedIOBase:
    return pa.input_stream(str(path), compression=compression)


def _excerpt(raw: bytes | str, limit: int) -> str:
    text = raw.decode("utf-8", errors="backslashreplace") if isinstance(raw, bytes) else raw
    return text if len(text) <= limit else text[:limit] + f"... [{len(text)} chars]"


def read_jsonl(stream: io.BufferedIOBase, cfg: IngestConfig) -> Iterator[Record]:
    """JSON Lines, record by record; a ``.json`` file holding one array is read as its items."""
    buffered = io.BufferedReader(stream)
    if buffered.peek(64).lstrip()[:1] == b"[":
        yield from _read_json_array(buffered.read(), cfg)
        return
    for n, line in enumerate(buffered, start=1):
        line = line.rstrip(b"\r\n")
        if not line.strip():
            yield Record(n, None, "", "blank_line", "empty line in a JSONL file")
            continue
        try:
            text = line.decode(cfg.encoding)
        except UnicodeDecodeError as exc:
            yield Record(n, None, _excerpt(line, cfg.raw_excerpt_chars), "invalid_encoding",
                         f"not valid {cfg.encoding}: {exc.reason} at byte {exc.start}")
            continue
        try:
            value = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            yield Record(n, None, _excerpt(text, cfg.raw_excerpt_chars), "invalid_json",
                         str(exc))
            continue
        if not isinstance(value, dict):
            yield Record(n, None, _excerpt(text, cfg.raw_excerpt_chars), "not_an_object",
                         f"a JSON {type(value).__name__}, expected an object")
            continue
        yield Record(n, value, text)


def _read_json_array(data: bytes, cfg: IngestConfig) -> Iterator[Record]:
    try:
        values = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"not a valid JSON array: {exc}") from None
    for n, value in enumerate(values, start=1):
        if isinstance(value, dict):
            yield Record(n, value, None)
        else:
            yield Record(n, None, _excerpt(orjson.dumps(value), cfg.raw_excerpt_chars),
                         "not_an_object", f"a JSON {type(value).__name__}, expected an object")


_SURROGATE = re.compile("[\udc80-\udcff]")


def read_csv(stream: io.BufferedIOBase, cfg: IngestConfig) -> Iterator[Record]:
    """CSV with a header row; rows with bad bytes or the wrong width are rejected alone."""
    text = io.TextIOWrapper(stream, encoding=cfg.encoding, errors="surrogateescape", newline="")
    reader = csv.reader(text)
    header = next(reader, None)
    if header is None:
        return
    for n, row in enumerate(reader, start=1):
        joined = ",".join(row)
        if any(_SURROGATE.search(cell) for cell in row):
            bad = joined.encode(cfg.encoding, errors="surrogateescape")
            yield Record(n, None, _excerpt(bad, cfg.raw_excerpt_chars), "invalid_encoding",
                         f"row has bytes that are not valid {cfg.encoding}"
                         f" (line {reader.line_num})")
            continue
        if len(row) != len(header):
            yield Record(n, None, _excerpt(joined, cfg.raw_excerpt_chars),
                         "wrong_column_count",
                         f"{len(row)} fields, header has {len(header)} (line {reader.line_num})")
            continue
        yield Record(n, dict(zip(header, row, strict=True)), joined)


def read_parquet(path: Path, cfg: IngestConfig) -> Iterator[Record]:
    n = 0
    for batch in pq.ParquetFile(str(path)).iter_batches(batch_size=4096):
        for fields in batch.to_pylist():
            n += 1
            yield Record(n, fields, None)


class _Builder:
    """Accumulates documents and rejections column-wise."""

    def __init__(self, cfg: IngestConfig, source: str, source_path: str):
        self.cfg = cfg
        self.source = source
        self.source_path = source_path
        self.kept: dict[str, list] = {k: [] for k in (
            "id", "text", "url", "source", "source_path", "source_row", "title", "metadata")}
        self.rejected: dict[str, list] = {k: [] for k in (
            "id", "source", "source_path", "source_row", "text", "raw", "reject_stage",
            "reject_reason", "reject_detail")}
        self.seen_ids: set[str] = set()

    def reject(self, rec: Record, reason: str, detail: str, doc_id: str | None = None,
               text: str | None = None) -> None:
        r = self.rejected
        r["id"].append(doc_id or f"{self.source_path}:{rec.row}")
        r["source"].append(self.source)
        r["source_path"].append(self.source_path)
        r["source_row"].append(rec.row)
        r["text"].append(text)
        r["raw"].append(None if text is not None else _excerpt(rec.raw or "",
                                                                 self.cfg.raw_excerpt_chars))
        r["reject_stage"].append(STAGE_NAME)
        r["reject_reason"].append(reason)
        r["reject_detail"].append(detail)

    def add(self, rec: Record) -> None:
        cfg = self.cfg
        if rec.fields is None:
            self.reject(rec, rec.reason or "unparsable", rec.detail or "")
            return
        fields = dict(rec.fields)
        if cfg.text_column not in fields:
            seen = ", ".join(sorted(fields)) or "none"
            self.reject(rec, "missing_text", f"no {cfg.text_column!r} field (fields: {seen})")
            return
        text = fields.pop(cfg.text_column)
        raw_id = fields.pop(cfg.id_column, None) if cfg.id_column else None
        doc_id = str(raw_id) if raw_id not in (None, "") else f"{self.source_path}:{rec.row}"
        if not isinstance(text, str):
            self.reject(rec, "text_not_string",
                        f"{cfg.text_column!r} is a {type(text).__name__}", doc_id)
            return
        if len(text.strip()) < cfg.min_text_chars:
            self.reject(rec, "empty_text", f"{len(text.strip())} non-blank chars", doc_id, text)
            return
        if len(text) > cfg.max_text_chars:
            self.reject(rec, "text_too_long",
                        f"{len(text)} chars > max_text_chars {cfg.max_text_chars}", doc_id,
                        text[:cfg.raw_excerpt_chars])
            return
        if doc_id in self.seen_ids:
            self.reject(rec, "duplicate_id", f"id {doc_id!r} already used in this file",
                        doc_id, text)
            return
        self.seen_ids.add(doc_id)
        k = self.kept
        k["id"].append(doc_id)
        k["text"].append(text)
        k["url"].append(_str_or_none(fields.pop(cfg.url_column, None) if cfg.url_column
                                     else None))
        k["title"].append(_str_or_none(fields.pop(cfg.title_column, None) if cfg.title_column
                                       else None))
        k["source"].append(self.source)
        k["source_path"].append(self.source_path)
        k["source_row"].append(rec.row)
        k["metadata"].append(metadata_json(fields) if cfg.keep_metadata else None)

    def tables(self) -> tuple[pa.Table, pa.Table]:
        kept_schema = pa.schema([pa.field(c.name, c.type, nullable=c.nullable)
                                 for c in DOCUMENTS.columns if c.name in self.kept])
        kept = pa.table(self.kept, schema=kept_schema)
        rej_types = {"source_row": pa.int64()}
        rejected = pa.table({k: pa.array(v, type=rej_types.get(k, pa.string()))
                             for k, v in self.rejected.items()})
        return kept, rejected


def _str_or_none(value: Any) -> str | None:
    return None if value is None or value == "" else str(value)


def _records(path: Path, fmt: str, compression: str | None, cfg: IngestConfig,
             data: bytes | None) -> Iterator[Record]:
    if fmt == "parquet":
        return read_parquet(path, cfg)
    stream = io.BytesIO(data) if data is not None else _open(path, compression)
    return read_jsonl(stream, cfg) if fmt == "jsonl" else read_csv(stream, cfg)


def _vectorised(path: Path, fmt: str, compression: str | None, cfg: IngestConfig, source: str,
                source_path: str) -> tuple[StageOutput | None, bytes | None]:
    """Try the whole-file path; also hand back the bytes read so they are not read twice."""
    if fmt == "parquet":
        frame = pl.read_parquet(path)
        return documents_from_frame(frame, cfg, source, source_path), None
    if fmt != "jsonl" or cfg.encoding.lower().replace("-", "") != "utf8":
        return None, None
    with _open(path, compression) as f:
        data = f.read()
    if data.lstrip()[:1] == b"[":
        return None, data
    frame = read_jsonl_frame(data, cfg.text_column)
    out = documents_from_frame(frame, cfg, source, source_path) if frame is not None else None
    return out, data


def ingest_file(path: Path, cfg: IngestConfig, source_path: str | None = None) -> StageOutput:
    """Parse one raw file into documents; every record is kept or rejected with a reason."""
    fmt, compression = detect_format(path)
    if cfg.format != "auto":
        fmt = cfg.format
    source, source_path = cfg.source or source_name(path), source_path or path.name
    out, data = _vectorised(path, fmt, compression, cfg, source, source_path)
    if out is not None:
        return out
    builder = _Builder(cfg, source, source_path)
    rows = 0
    for rec in _records(path, fmt, compression, cfg, data):
        rows += 1
        builder.add(rec)
    kept, rejected = builder.tables()
    return StageOutput(kept=kept, rejected=rejected, rows_in=rows)


def ingest_hf_dataset(folder: Path, cfg: IngestConfig, source_path: str) -> StageOutput:
    """A folder written by ``datasets.save_to_disk`` (a DatasetDict uses ``cfg.split``)."""
    try:
        import datasets
    except ImportError:
        raise ValueError(f"{folder} is a Hugging Face dataset: pip install datasets") from None
    loaded = datasets.load_from_disk(str(folder))
    if isinstance(loaded, datasets.DatasetDict):
        split = cfg.split or ("train" if "train" in loaded else None)
        if split not in loaded:
            raise ValueError(f"{folder}: choose a split with --set split=NAME "
                             f"(splits: {', '.join(loaded)})")
        loaded = loaded[split]
    source = cfg.source or folder.name
    frame = pl.from_arrow(loaded.data.table)
    out = documents_from_frame(frame, cfg, source, source_path)
    if out is not None:
        return out
    builder = _Builder(cfg, source, source_path)
    for n, fields in enumerate(loaded, start=1):
        builder.add(Record(n, fields, None))
    kept, rejected = builder.tables()
    return StageOutput(kept=kept, rejected=rejected, rows_in=len(loaded))


def _process(unit: WorkUnit, cfg: IngestConfig) -> StageOutput:
    path = unit.inputs[0]
    if path.name in HF_MARKERS:
        folder = path.parent
        rel = folder.relative_to(unit.base).as_posix() if unit.base else folder.name
        return ingest_hf_dataset(folder, cfg, rel)
    rel = path.relative_to(unit.base).as_posix() if unit.base else path.name
    return ingest_file(path, cfg, rel)


INGEST = Stage(name=STAGE_NAME, version="1", output_kind=DOCUMENTS, process=_process)


def is_ingestable(path: Path) -> bool:
    try:
        detect_format(path)
    except ValueError:
        return False
    return not path.name.startswith(".")


def shard_name_for(rel: str) -> str:
    """A stable shard name from an input's relative path (the Dagster partition key too)."""
    return "part-" + re.sub(r"[^A-Za-z0-9._-]+", "_", rel.replace("/", "__")) + ".arrow"


HF_MARKERS = ("dataset_dict.json", "state.json")


def hf_dataset_marker(folder: Path) -> Path | None:
    """The marker file of a folder written by ``datasets.save_to_disk``, if it is one."""
    return next((folder / m for m in HF_MARKERS if (folder / m).is_file()), None)


def unit_for(path: Path, base: Path) -> WorkUnit:
    """The work unit of one raw file, or of a saved Hugging Face dataset folder."""
    rel = path.relative_to(base).as_posix()
    if path.is_dir():
        marker = hf_dataset_marker(path)
        if marker is None:
            raise ValueError(f"{path}: a folder, but not a saved Hugging Face dataset")
        files = sorted(p for p in path.rglob("*") if p.is_file() and p != marker)
        return WorkUnit(shard_name_for(rel), (marker, *files), base)
    detect_format(path)  # a clear error for a file we cannot read
    return WorkUnit(shard_name_for(rel), (path,), base)


def plan_ingest(input_path: Path) -> list[WorkUnit]:
    """One unit per ingestable file (or saved Hugging Face dataset) under ``input_path``."""
    input_path = input_path.resolve()
    if not input_path.exists():
        raise FileNotFoundError(f"input not found: {input_path}")
    if input_path.is_file() or hf_dataset_marker(input_path):
        return [unit_for(input_path, input_path.parent)]
    base = input_path
    datasets = sorted({m.parent for name in HF_MARKERS for m in base.rglob(name)},
                      key=lambda p: p.as_posix())
    datasets = [d for d in datasets if not any(d != o and o in d.parents for o in datasets)]
    files = sorted(p for p in base.rglob("*") if p.is_file() and is_ingestable(p)
                   and not any(part.startswith(".") for part in p.relative_to(base).parts)
                   and not any(d in p.parents for d in datasets))
    return sorted((unit_for(p, base) for p in [*files, *datasets]), key=lambda u: u.name)
