"""Ingest: every malformed record is rejected with a reason, and rows always balance."""

from __future__ import annotations

import gzip
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curate.ingest import IngestConfig, detect_format, ingest_file, plan_ingest

from .conftest import write_jsonl


def reasons(out) -> list[tuple[int, str]]:
    rej = out.rejected
    return list(zip(rej.column("source_row").to_pylist(), rej.column("reject_reason").to_pylist(),
                    strict=True))


def test_malformed_jsonl_lines_are_rejected_with_reasons(tmp_path):
    path = tmp_path / "dump.jsonl"
    lines = [
        b'{"id": "k1", "text": "a good document", "url": "https://e.org/1", "lang": "en"}',
        b'{"id": "k2", "text": "truncated',
        b'["an", "array"]',
        b"",
        b'{"id": "k3", "text": "caf\xe9 in latin-1"}',
        b'{"id": "k4"}',
        b'{"id": "k5", "text": "   "}',
        b'{"id": "k6", "text": 42}',
        b'{"id": "k1", "text": "same id again"}',
        b'{"text": "no id, so one is derived"}',
    ]
    path.write_bytes(b"\n".join(lines) + b"\n")
    out = ingest_file(path, IngestConfig(), "dump.jsonl")
    assert out.rows_in == len(lines) == out.kept.num_rows + out.rejected.num_rows
    assert out.kept.column("id").to_pylist() == ["k1", "dump.jsonl:10"]
    assert json.loads(out.kept.column("metadata")[0].as_py()) == {"lang": "en"}
    assert reasons(out) == [(2, "invalid_json"), (3, "not_an_object"), (4, "blank_line"),
                            (5, "invalid_encoding"), (6, "missing_text"), (7, "empty_text"),
                            (8, "text_not_string"), (9, "duplicate_id")]
    detail = out.rejected.column("reject_detail").to_pylist()
    assert "no 'text' field (fields: id)" in detail[4]
    raw = out.rejected.column("raw").to_pylist()
    assert raw[0] == '{"id": "k2", "text": "truncated'
    assert raw[3] == '{"id": "k3", "text": "caf\\xe9 in latin-1"}'
    assert set(out.rejected.column("reject_stage").to_pylist()) == {"ingest"}


def test_declared_encoding_is_honoured(tmp_path):
    path = tmp_path / "latin.jsonl"
    path.write_bytes('{"text": "café crème"}\n'.encode("latin-1"))
    out = ingest_file(path, IngestConfig(encoding="latin-1"))
    assert out.kept.column("text").to_pylist() == ["café crème"]


def test_malformed_csv_rows_are_rejected(tmp_path):
    path = tmp_path / "table.csv"
    path.write_bytes(b'id,text,url\n'
                     b'1,"multi\nline, with ""quotes""",https://e.org\n'
                     b'2,only two\n'
                     b'3,"caf\xe9",x\n'
                     b'4,,x\n'
                     b'5,fine,x\n')
    out = ingest_file(path, IngestConfig())
    assert out.kept.column("text").to_pylist() == ['multi\nline, with "quotes"', "fine"]
    assert reasons(out) == [(2, "wrong_column_count"), (3, "invalid_encoding"),
                            (4, "empty_text")]
    assert out.rows_in == 5


def test_parquet_with_custom_columns_and_nulls(tmp_path):
    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"doc": ["one", None, "three"], "key": [1, 2, 3],
                             "score": [0.5, 0.1, 0.9]}), path)
    cfg = IngestConfig(text_column="doc", id_column="key", source="books")
    out = ingest_file(path, cfg)
    assert out.kept.column("id").to_pylist() == ["1", "3"]
    assert out.kept.column("source").unique().to_pylist() == ["books"]
    assert reasons(out) == [(2, "text_not_string")]
    assert json.loads(out.kept.column("metadata")[1].as_py()) == {"score": 0.9}


def test_gzip_and_json_array_inputs(tmp_path):
    gz = tmp_path / "x.jsonl.gz"
    with gzip.open(gz, "wt") as f:
        f.write('{"text": "zipped"}\n')
    assert ingest_file(gz, IngestConfig()).kept.column("text").to_pylist() == ["zipped"]
    arr = tmp_path / "y.json"
    arr.write_text('[{"text": "first"}, 3, {"text": "third"}]')
    out = ingest_file(arr, IngestConfig())
    assert out.kept.column("text").to_pylist() == ["first", "third"]
    assert reasons(out) == [(2, "not_an_object")]


def test_huge_documents_are_rejected_not_kept(tmp_path):
    path = write_jsonl(tmp_path / "big.jsonl", [{"text": "x" * 5000}, {"text": "ok"}])
    out = ingest_file(path, IngestConfig(max_text_chars=1000, raw_excerpt_chars=10))
    assert reasons(out) == [(1, "text_too_long")]
    assert len(out.rejected.column("text")[0].as_py()) == 10


def test_empty_file_gives_empty_shard(tmp_path):
    (tmp_path / "empty.jsonl").write_bytes(b"")
    out = ingest_file(tmp_path / "empty.jsonl", IngestConfig())
    assert out.rows_in == 0 and out.kept.num_rows == 0


def test_planning_and_format_errors(tmp_path, raw_dir):
    units = plan_ingest(raw_dir)
    assert [u.name for u in units] == ["part-a.jsonl.arrow", "part-c.csv.arrow",
                                       "part-sub__b.jsonl.arrow"]
    with pytest.raises(FileNotFoundError, match="input not found"):
        plan_ingest(tmp_path / "missing")
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(ValueError, match="unknown input format"):
        plan_ingest(tmp_path / "notes.txt")
    assert detect_format(tmp_path / "a.ndjson.zst") == ("jsonl", "zstd")


def test_vectorised_and_per_record_paths_agree(tmp_path):
    """Clean files take the whole-file path; it must match the careful path exactly."""
    from curate.ingest import _Builder, read_jsonl
    from curate.ingest_frame import documents_from_frame, read_jsonl_frame

    records = [
        {"id": 7, "text": "first document", "url": "https://e.org/7", "tags": {"a": 1}},
        {"text": "no id here", "lang": None, "score": 0.5},
        {"id": 7, "text": "duplicate id"},
        {"id": 8, "text": "  "},
        {"id": 9, "text": "y" * 50, "title": "Long"},
        {"id": 10, "text": "last", "title": "", "extra": [1, 2]},
    ]
    path = write_jsonl(tmp_path / "clean.jsonl", records)
    cfg = IngestConfig(max_text_chars=40, raw_excerpt_chars=5)
    data = path.read_bytes()
    fast = documents_from_frame(read_jsonl_frame(data), cfg, "clean", "clean.jsonl")
    assert fast is not None, "the clean file should take the vectorised path"
    builder = _Builder(cfg, "clean", "clean.jsonl")
    import io
    for rec in read_jsonl(io.BytesIO(data), cfg):
        builder.add(rec)
    slow_kept, slow_rejected = builder.tables()
    assert fast.kept.to_pylist() == slow_kept.to_pylist()
    assert fast.rejected.to_pylist() == slow_rejected.to_pylist()
    assert [r["reject_reason"] for r in fast.rejected.to_pylist()] == [
        "duplicate_id", "empty_text", "text_too_long"]


def test_saved_hugging_face_datasets_are_ingested(tmp_path):
    datasets = pytest.importorskip("datasets")
    raw = tmp_path / "raw"
    write_jsonl(raw / "plain.jsonl", [{"text": "a json line"}])
    datasets.Dataset.from_dict({"id": ["h1", "h2"], "text": ["first", ""]}).save_to_disk(
        str(raw / "hf_single"))
    datasets.DatasetDict({
        "train": datasets.Dataset.from_dict({"text": ["t1", "t2", "t3"]}),
        "test": datasets.Dataset.from_dict({"text": ["x"]}),
    }).save_to_disk(str(raw / "hf_dict"))
    units = plan_ingest(raw)
    assert [u.name for u in units] == ["part-hf_dict.arrow", "part-hf_single.arrow",
                                       "part-plain.jsonl.arrow"]  # no state.json as a file
    from curate.ingest import INGEST
    from curate.runner import run_stage
    report = run_stage(INGEST, units, tmp_path / "out", IngestConfig(), progress=False)
    assert report.ok, report.failures
    assert (report.rows_in, report.rows_kept, dict(report.reasons)) == (6, 5, {"empty_text": 1})
    from schemas import read_shard
    single = read_shard(tmp_path / "out" / "part-hf_single.arrow")
    assert single.column("id").to_pylist() == ["h1"]
    assert single.column("source_path").to_pylist() == ["hf_single"]
    test_split = run_stage(INGEST, plan_ingest(raw / "hf_dict"), tmp_path / "out2",
                           IngestConfig(split="test"), progress=False)
    assert test_split.rows_kept == 1
    bad = run_stage(INGEST, plan_ingest(raw / "hf_dict"), tmp_path / "out3",
                    IngestConfig(split="nope"), progress=False)
    assert "splits: train, test" in bad.failures["part-hf_dict.arrow"]


def test_native_metadata_encoding_matches_orjson():
    import polars as pl

    from curate.ingest_frame import metadata_column, metadata_json

    extras = pl.DataFrame({"a": ["x", None, 'q"uote\\ é\n\u0001'], "b": [1, 2, None],
                           "c": [True, False, None]})
    expected = [metadata_json(r) for r in extras.iter_rows(named=True)]
    assert metadata_column(extras).to_list() == expected
    assert metadata_column(extras.drop_nulls()).to_list() == [expected[0]]


def test_a_number_as_text_is_rejected_not_stringified(tmp_path):
    """polars would read ``"text": 5`` as "5"; the file must take the per-record path."""
    from curate.ingest import IngestConfig, ingest_file

    path = tmp_path / "mixed.jsonl"
    path.write_text('{"id": "a", "text": "fine words"}\n{"id": "b", "text": 5}\n')
    out = ingest_file(path, IngestConfig())
    assert out.kept.column("id").to_pylist() == ["a"]
    assert out.rejected.column("reject_reason").to_pylist() == ["text_not_string"]
