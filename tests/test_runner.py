"""The runner: resume, failure isolation, conservation, parallel == serial."""

from __future__ import annotations

import json
import os

import pyarrow as pa

from curate.ingest import INGEST, IngestConfig, plan_ingest
from curate.runner import Stage, StageOutput, WorkUnit, run_stage
from schemas import DOCUMENTS, read_manifest, sha256_file, without_timings

from .conftest import run_cli


def test_rerun_skips_unchanged_and_redoes_changed(tmp_path, raw_dir):
    out = tmp_path / "out"
    first = run_stage(INGEST, plan_ingest(raw_dir), out, IngestConfig(), progress=False)
    assert (first.done, first.skipped) == (3, 0)
    again = run_stage(INGEST, plan_ingest(raw_dir), out, IngestConfig(), progress=False)
    assert (again.done, again.skipped) == (0, 3)
    assert again.rows_kept == first.rows_kept  # skipped shards still count in the totals

    with open(raw_dir / "a.jsonl", "a") as f:
        f.write('{"text": "one more"}\n')
    changed = run_stage(INGEST, plan_ingest(raw_dir), out, IngestConfig(), progress=False)
    assert (changed.done, changed.skipped) == (1, 2)
    assert read_manifest(out).shards["part-a.jsonl.arrow"]["rows"] == 51

    new_cfg = run_stage(INGEST, plan_ingest(raw_dir), out, IngestConfig(keep_metadata=False),
                        progress=False)
    assert new_cfg.done == 3


def test_touching_an_input_without_changing_it_still_skips(tmp_path, raw_dir):
    out = tmp_path / "out"
    run_stage(INGEST, plan_ingest(raw_dir), out, IngestConfig(), progress=False)
    os.utime(raw_dir / "c.csv", ns=(1, 1))  # new mtime: the hash is recomputed, and equal
    assert run_stage(INGEST, plan_ingest(raw_dir), out, IngestConfig(),
                     progress=False).skipped == 3


def test_a_failing_shard_is_recorded_and_the_others_finish(tmp_path, raw_dir):
    (raw_dir / "broken.json").write_text("[{not an array")
    out = tmp_path / "out"
    proc = run_cli("curate", "ingest", "--input", str(raw_dir), "--output", str(out),
                   "--workers", "2", "--quiet")
    assert proc.returncode == 1
    assert "FAILED   part-broken.json.arrow: ValueError: not a valid JSON array" in proc.stdout
    assert "4 total: 3 written, 0 unchanged (skipped), 1 failed" in proc.stdout
    manifest = read_manifest(out)
    assert set(manifest.shards) == {"part-a.jsonl.arrow", "part-c.csv.arrow",
                                    "part-sub__b.jsonl.arrow"}
    assert "Traceback" in manifest.failures["part-broken.json.arrow"]["traceback"]
    verify = run_cli("curate", "verify", str(out))
    assert verify.returncode == 1 and "failed in the last run" in verify.stdout

    (raw_dir / "broken.json").write_text('[{"text": "fixed"}]')
    proc = run_cli("curate", "ingest", "--input", str(raw_dir), "--output", str(out), "--quiet")
    assert proc.returncode == 0, proc.stdout
    assert "1 written, 3 unchanged" in proc.stdout
    assert read_manifest(out).failures == {}


def _lossy(unit: WorkUnit, cfg: IngestConfig) -> StageOutput:
    table = pa.table({"id": ["a"], "text": ["t"], "url": [None], "source": ["s"]})
    return StageOutput(kept=table, rejected=pa.table({}), rows_in=2)


LOSSY = Stage("lossy", "1", DOCUMENTS, _lossy)


def test_rows_that_vanish_fail_the_shard(tmp_path, raw_dir):
    report = run_stage(LOSSY, plan_ingest(raw_dir)[:1], tmp_path / "out", IngestConfig(),
                       progress=False)
    assert report.failures == {
        "part-a.jsonl.arrow": "StageFailed: rows not conserved: in 2 != kept 1 + rejected 0"}
    assert not (tmp_path / "out" / "part-a.jsonl.arrow").exists()


def test_parallel_output_equals_serial_output(tmp_path, raw_dir):
    serial, parallel = tmp_path / "serial", tmp_path / "parallel"
    run_stage(INGEST, plan_ingest(raw_dir), serial, IngestConfig(), workers=1, progress=False)
    run_stage(INGEST, plan_ingest(raw_dir), parallel, IngestConfig(), workers=2, progress=False)
    for shard in read_manifest(serial).shards:
        assert sha256_file(serial / shard) == sha256_file(parallel / shard)

    def strip(m):
        return json.dumps(without_timings(m.to_json()), sort_keys=True)

    assert strip(read_manifest(serial)) == strip(read_manifest(parallel))


def test_config_from_recipe_and_overrides(tmp_path, raw_dir):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("ingest:\n  source: from-recipe\n  keep_metadata: false\n")
    out = tmp_path / "out"
    proc = run_cli("curate", "ingest", "--input", str(raw_dir / "a.jsonl"), "--output",
                   str(out), "--config", str(recipe), "--set", "min_text_chars=5", "--quiet")
    assert proc.returncode == 0, proc.stderr
    from schemas import read_shard
    table = read_shard(out / "part-a.jsonl.arrow")
    assert table.column("source").unique().to_pylist() == ["from-recipe"]
    assert table.column("metadata").null_count == table.num_rows
    bad = run_cli("curate", "ingest", "--input", str(raw_dir), "--output", str(out),
                  "--set", "no_such_key=1")
    assert bad.returncode != 0 and "no_such_key" in bad.stderr


def _crashes_on_b(unit: WorkUnit, cfg: IngestConfig) -> StageOutput:
    if "b.jsonl" in unit.name:
        os._exit(9)  # a segfault or an OOM kill, as far as the pool can tell
    return INGEST.process(unit, cfg)


CRASHY = Stage("crashy", "1", DOCUMENTS, _crashes_on_b)


def test_a_dying_worker_fails_only_its_own_shard(tmp_path, raw_dir):
    report = run_stage(CRASHY, plan_ingest(raw_dir), tmp_path / "out", IngestConfig(),
                       workers=2, progress=False)
    assert set(report.failures) == {"part-sub__b.jsonl.arrow"}
    assert "worker process died" in report.failures["part-sub__b.jsonl.arrow"]
    assert report.done == 2 and report.rows_kept == 70
