"""Raw web inputs as a stream of records: WARC/WET files, HTML files, HTML columns.

Each reader yields ``WebRecord``s, one per candidate document: WARC ``response`` and
``resource`` records, WET ``conversion`` records, one HTML file, one JSONL/Parquet row.
Bookkeeping records (warcinfo, request, metadata, revisit) are not documents and are not
counted. Damage is a record too: a truncated or malformed WARC yields every intact record
and then one record carrying the error and the byte offset where reading stopped.
"""

from __future__ import annotations

import datetime as dt
import gzip
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson

WARC_SUFFIXES = (".warc", ".warc.gz", ".arc", ".arc.gz", ".wet", ".wet.gz")
HTML_SUFFIXES = (".html", ".htm", ".html.gz", ".htm.gz", ".xhtml")
TABLE_SUFFIXES = (".jsonl", ".jsonl.gz", ".jsonl.zst", ".ndjson", ".parquet")
DOCUMENT_RECORDS = {"response", "resource", "conversion"}


@dataclass
class WebRecord:
    """One candidate document, or the reason reading it failed."""

    row: int
    doc_id: str
    url: str | None = None
    html: bytes | None = None
    text: str | None = None            # already text (WET conversion records)
    content_type: str | None = None
    fetched_at: dt.datetime | None = None
    status: int | None = None
    location: str | None = None
    error: tuple[str, str] | None = None  # (reason, detail)


def kind_of(path: Path) -> str | None:
    name = path.name.lower()
    if name.endswith(WARC_SUFFIXES):
        return "warc"
    if name.endswith(HTML_SUFFIXES):
        return "html"
    if name.endswith(TABLE_SUFFIXES):
        return "table"
    return None


def _warc_date(value: str | None) -> dt.datetime | None:
    if not value:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    # WARC dates are UTC; a date written without a zone must not take the machine's
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)).astimezone(dt.UTC)


def read_warc(path: Path) -> Iterator[WebRecord]:
    """Records of a WARC (or WET) file; stops at damage with an error naming the offset."""
    from warcio.archiveiterator import ArchiveIterator

    row = 0
    expect_arc = path.name.lower().endswith((".arc", ".arc.gz"))
    with open(path, "rb") as stream:
        records = ArchiveIterator(stream, check_digests=False)
        next_offset = 0  # where the record being read starts
        try:
            for record in records:
                if (record.format == "arc") != expect_arc:
                    raise ValueError(f"not a {'ARC' if expect_arc else 'WARC'} record")
                # read the payload before asking for offsets: warcio skips the content
                # of a record whose offset is asked for first
                payload = record.content_stream().read()
                offset = records.get_record_offset()
                next_offset = offset + records.get_record_length()
                if record.rec_type not in DOCUMENT_RECORDS:
                    continue
                row += 1
                yield _web_record(record, payload, row, f"{path.name}@{offset}")
        except Exception as exc:  # any damage ends the readable part
            row += 1
            yield WebRecord(row=row, doc_id=f"{path.name}@{next_offset}", error=(
                "malformed_warc",
                f"{path.name}: unreadable after byte offset {next_offset} "
                f"({type(exc).__name__}: {exc}); the records before it were read"))


def _web_record(record, payload: bytes, row: int, fallback_id: str) -> WebRecord:
    headers = record.rec_headers
    rec = WebRecord(row=row, doc_id=headers.get_header("WARC-Record-ID") or fallback_id,
                    url=headers.get_header("WARC-Target-URI"),
                    fetched_at=_warc_date(headers.get_header("WARC-Date")))
    if record.rec_type == "conversion":
        rec.text = payload.decode("utf-8", errors="replace")
    elif record.http_headers is not None:
        code = record.http_headers.get_statuscode() or ""
        if not code.isdigit():
            rec.error = ("bad_http_status", f"HTTP status line {record.http_headers.statusline!r}")
            return rec
        rec.status = int(code)
        rec.content_type = record.http_headers.get_header("Content-Type")
        rec.location = record.http_headers.get_header("Location")
        rec.html = payload
    else:
        rec.content_type = headers.get_header("Content-Type")
        rec.html = payload
    return rec


def read_html_files(paths: tuple[Path, ...], base: Path) -> Iterator[WebRecord]:
    """Each file is one page; its path relative to the folder is its id and source_path."""
    for row, path in enumerate(paths, start=1):
        rel = path.relative_to(base).as_posix()
        try:
            data = path.read_bytes()
            if path.name.lower().endswith(".gz"):
                data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as exc:  # BadGzipFile is an OSError
            yield WebRecord(row=row, doc_id=rel, error=("unreadable_file", f"{rel}: {exc}"))
            continue
        yield WebRecord(row=row, doc_id=rel, html=data)


def read_html_table(path: Path, html_column: str, url_column: str | None,
                    id_column: str | None) -> Iterator[WebRecord]:
    """Rows of a JSONL/Parquet file with an HTML column (and optionally url and id)."""
    if path.name.endswith(".parquet"):
        import pyarrow.parquet as pq

        rows: Iterator[dict | None] = (r for b in pq.ParquetFile(str(path)).iter_batches()
                                       for r in b.to_pylist())
    else:
        rows = _jsonl_rows(path)
    for row, fields in enumerate(rows, start=1):
        doc_id = f"{path.name}:{row}"
        if fields is None:
            yield WebRecord(row=row, doc_id=doc_id, error=("invalid_json", f"line {row}"))
            continue
        if id_column and fields.get(id_column) not in (None, ""):
            doc_id = str(fields[id_column])
        url = fields.get(url_column) if url_column else None
        url = None if url in (None, "") else str(url)
        html = fields.get(html_column)
        if not isinstance(html, str | bytes):
            yield WebRecord(row=row, doc_id=doc_id, url=url, error=(
                "missing_html", f"no string {html_column!r} field"))
            continue
        yield WebRecord(row=row, doc_id=doc_id, url=url,
                        html=html.encode("utf-8") if isinstance(html, str) else html)


def _jsonl_rows(path: Path) -> Iterator[dict | None]:
    import pyarrow as pa

    with pa.input_stream(str(path), compression="detect") as f:
        for line in f.read().splitlines():
            if not line.strip():
                continue  # a blank line is not a record
            try:
                value = orjson.loads(line)
            except orjson.JSONDecodeError:
                yield None
                continue
            yield value if isinstance(value, dict) else None
