"""The extract stage: raw web inputs -> ``documents`` with the main text of each page."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import orjson
import pyarrow as pa

from curate.extract import ExtractConfig, Rejection, extract_html
from curate.ingest import shard_name_for, source_name
from curate.runner import Stage, StageOutput, WorkUnit
from curate.web_sources import WebRecord, kind_of, read_html_files, read_html_table, read_warc
from schemas import DOCUMENTS
from schemas.kinds import TIMESTAMP

STAGE_NAME = "extract"
HTML_FILES_PER_SHARD = 2000

_KEPT = {"id": pa.string(), "text": pa.string(), "url": pa.string(), "source": pa.string(),
         "source_path": pa.string(), "source_row": pa.int64(), "title": pa.string(),
         "fetched_at": TIMESTAMP, "metadata": pa.string()}
_REJECTED = {"id": pa.string(), "url": pa.string(), "source": pa.string(),
             "source_path": pa.string(), "source_row": pa.int64(), "fetched_at": TIMESTAMP,
             "reject_stage": pa.string(), "reject_reason": pa.string(),
             "reject_detail": pa.string()}


def _records(unit: WorkUnit, cfg: ExtractConfig) -> Iterator[tuple[str, str, WebRecord]]:
    """(source_path, source, record) for every candidate document of a unit."""
    base = unit.base or unit.inputs[0].parent
    if kind_of(unit.inputs[0]) == "html":
        for rec in read_html_files(unit.inputs, base):
            yield rec.doc_id, cfg.source or base.name, rec
        return
    (path,) = unit.inputs
    rel = path.relative_to(base).as_posix()
    reader = (read_warc(path) if kind_of(path) == "warc" else
              read_html_table(path, cfg.html_column, cfg.url_column, cfg.id_column))
    for rec in reader:
        yield rel, cfg.source or source_name(path), rec


def _judge(rec: WebRecord, cfg: ExtractConfig) -> tuple[str, str | None, dict]:
    """(text, title, metadata) for a record, or ``Rejection``."""
    if rec.error is not None:
        raise Rejection(*rec.error)
    if rec.status is not None and not 200 <= rec.status < 300:
        where = f" -> {rec.location}" if rec.location else ""
        raise Rejection("redirect" if 300 <= rec.status < 400 else "http_error",
                        f"HTTP {rec.status}{where}")
    if rec.text is not None:  # WET: the text is already extracted
        if len(rec.text.strip()) < cfg.min_text_chars:
            raise Rejection("empty_extraction", "empty WET conversion record")
        return rec.text, None, {}
    out = extract_html(rec.html or b"", rec.url, cfg, rec.content_type)
    meta = dict(out.metadata)
    if out.lang_hint:
        meta["lang_hint"] = out.lang_hint
    return out.text, out.title, meta


def extract_unit(unit: WorkUnit, cfg: ExtractConfig) -> StageOutput:
    """Extract every record of a unit; each is kept or rejected with a reason."""
    kept: dict[str, list] = {k: [] for k in _KEPT}
    rejected: dict[str, list] = {k: [] for k in _REJECTED}
    rows = 0
    for source_path, source, rec in _records(unit, cfg):
        rows += 1
        common = {"id": rec.doc_id, "url": rec.url, "source": source,
                  "source_path": source_path, "source_row": rec.row,
                  "fetched_at": rec.fetched_at}
        try:
            text, title, meta = _judge(rec, cfg)
        except Rejection as rej:
            for key, value in {**common, "reject_stage": STAGE_NAME,
                               "reject_reason": rej.reason, "reject_detail": rej.detail}.items():
                rejected[key].append(value)
            continue
        meta_json = orjson.dumps(meta, option=orjson.OPT_SORT_KEYS, default=str).decode()
        for key, value in {**common, "text": text, "title": title,
                           "metadata": meta_json if meta else None}.items():
            kept[key].append(value)
    return StageOutput(
        kept=pa.table({k: pa.array(v, type=_KEPT[k]) for k, v in kept.items()}),
        rejected=pa.table({k: pa.array(v, type=_REJECTED[k]) for k, v in rejected.items()}),
        rows_in=rows)


EXTRACT = Stage(name=STAGE_NAME, version="1", output_kind=DOCUMENTS, process=extract_unit)


def plan_extract(input_path: Path) -> list[WorkUnit]:
    """One unit per WARC/JSONL/Parquet file; HTML files in groups, in path order."""
    input_path = input_path.resolve()
    if not input_path.exists():
        raise FileNotFoundError(f"input not found: {input_path}")
    if input_path.is_file():
        if kind_of(input_path) is None:
            raise ValueError(f"{input_path.name}: not a WARC, HTML, JSONL or Parquet file")
        base, files = input_path.parent, [input_path]
    else:
        base = input_path
        files = sorted(p for p in input_path.rglob("*") if p.is_file() and kind_of(p)
                       and not any(part.startswith(".") for part in p.relative_to(base).parts))
    units = [WorkUnit(shard_name_for(p.relative_to(base).as_posix()), (p,), base)
             for p in files if kind_of(p) != "html"]
    html = [p for p in files if kind_of(p) == "html"]
    for i in range(0, len(html), HTML_FILES_PER_SHARD):
        group = tuple(html[i:i + HTML_FILES_PER_SHARD])
        units.append(WorkUnit(f"part-html-{i // HTML_FILES_PER_SHARD:05d}.arrow", group, base))
    return units
