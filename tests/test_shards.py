"""Shard files: atomic writes, memory-mapped reads, and the readers users point at them."""

from __future__ import annotations

import polars as pl
import pyarrow as pa
import pyarrow.dataset as ds
import pytest

from curate.ingest import INGEST, IngestConfig, plan_ingest
from curate.runner import run_stage
from schemas import DOCUMENTS, PRETRAIN_TOKENS, SchemaMismatch, read_shard, sha256_file, write_shard
from schemas.dataset import open_dataset, shard_paths
from schemas.shards import is_temp_file, remove_stale_temp_files, temp_name


def doc_table(n: int) -> pa.Table:
    return pa.table({"id": [f"d{i}" for i in range(n)], "text": [f"text {i}" for i in range(n)],
                     "url": [None] * n, "source": ["t"] * n})


def test_write_reports_rows_bytes_and_hash(tmp_path):
    info = write_shard(doc_table(100), tmp_path / "part-a.arrow", DOCUMENTS)
    assert info.rows == 100
    assert info.bytes == (tmp_path / "part-a.arrow").stat().st_size
    assert info.sha256 == sha256_file(tmp_path / "part-a.arrow")
    assert [p.name for p in tmp_path.iterdir()] == ["part-a.arrow"]  # no temp file left


def test_writes_are_deterministic(tmp_path):
    a = write_shard(doc_table(5000), tmp_path / "a.arrow", DOCUMENTS)
    b = write_shard(doc_table(5000), tmp_path / "b.arrow", DOCUMENTS)
    assert a.sha256 == b.sha256


def test_invalid_table_is_never_written(tmp_path):
    with pytest.raises(SchemaMismatch, match=r"part-x\.arrow"):
        write_shard(doc_table(3).drop_columns(["text"]), tmp_path / "part-x.arrow", DOCUMENTS)
    assert list(tmp_path.iterdir()) == []


def test_replacing_a_shard_is_atomic_for_open_readers(tmp_path):
    path = tmp_path / "part-a.arrow"
    write_shard(doc_table(10), path, DOCUMENTS)
    old = read_shard(path)  # memory-mapped view of the old file
    write_shard(doc_table(20), path, DOCUMENTS)
    assert old.num_rows == 10 and old.column("id")[9].as_py() == "d9"
    assert read_shard(path).num_rows == 20


def test_token_shards_are_uncompressed_and_zero_copy(tmp_path):
    ids = pa.array([list(range(i, i + 8)) for i in range(4)], pa.list_(pa.uint16()))
    table = pa.table({"input_ids": ids,
                      "segment_starts": pa.array([[0]] * 4, pa.list_(pa.int32())),
                      "segment_doc_ids": [["d"]] * 4})
    path = tmp_path / "tokens.arrow"
    write_shard(table, path, PRETRAIN_TOKENS)
    before = pa.total_allocated_bytes()
    mapped = read_shard(path, memory_map=True)
    values = mapped.column("input_ids").chunk(0).values.to_numpy(zero_copy_only=True)
    assert pa.total_allocated_bytes() == before  # nothing copied into Arrow's heap
    assert values[:8].tolist() == list(range(8))


def test_stale_temp_files_are_removed_only_when_their_writer_is_dead(tmp_path):
    final = tmp_path / "part-a.arrow"
    mine = temp_name(final)
    mine.write_bytes(b"partial")
    dead = tmp_path / f".part-b.arrow.tmp-{2**22 + 12345}-abcd"
    dead.write_bytes(b"partial")
    assert is_temp_file(mine) and is_temp_file(dead)
    assert remove_stale_temp_files(tmp_path) == [dead]
    assert mine.exists() and not dead.exists()


def test_stage_output_opens_with_pyarrow_polars_and_datasets(tmp_path, raw_dir):
    out = tmp_path / "out"
    report = run_stage(INGEST, plan_ingest(raw_dir), out, IngestConfig(), progress=False)
    assert report.ok and report.rows_kept == 100
    assert open_dataset(out).count_rows() == 100
    assert ds.dataset(str(out / "part-a.jsonl.arrow"), format="arrow").count_rows() == 50
    frame = pl.scan_ipc([str(p) for p in shard_paths(out)]).select(pl.len()).collect()
    assert frame.item() == 100
    datasets = pytest.importorskip("datasets")
    loaded = datasets.load_dataset(
        "arrow", data_files=[str(p) for p in shard_paths(out)], split="train",
        cache_dir=str(tmp_path / "hf-cache"))
    assert loaded.num_rows == 100 and "text" in loaded.column_names
