"""`curate verify` finds missing, corrupt, truncated, stray and unconserved shards."""

from __future__ import annotations

import json

import pytest

from curate.ingest import INGEST, IngestConfig, plan_ingest
from curate.runner import run_stage
from schemas.verify import verify_stage

from .conftest import run_cli


@pytest.fixture
def stage(tmp_path, raw_dir):
    out = tmp_path / "out"
    (raw_dir / "bad.jsonl").write_text('{"text": "ok"}\nnot json\n')
    report = run_stage(INGEST, plan_ingest(raw_dir), out, IngestConfig(), progress=False)
    assert report.ok
    return out


def findings(out) -> list[str]:
    return [str(f) for f in verify_stage(out).findings]


def test_clean_stage_verifies(stage):
    assert findings(stage) == []
    proc = run_cli("curate", "verify", str(stage))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "OK" in proc.stdout


def test_flipped_byte_fails_naming_the_shard(stage):
    shard = stage / "part-a.jsonl.arrow"
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    proc = run_cli("curate", "verify", str(stage))
    assert proc.returncode == 1
    assert "part-a.jsonl.arrow: corrupt: sha256" in proc.stdout
    assert "part-c.csv.arrow" not in proc.stdout  # only the damaged shard is named


def test_truncated_missing_and_rejected_files(stage):
    (stage / "part-c.csv.arrow").write_bytes((stage / "part-c.csv.arrow").read_bytes()[:100])
    (stage / "part-sub__b.jsonl.arrow").unlink()
    (stage / "rejected" / "part-bad.jsonl.arrow").write_bytes(b"")
    got = findings(stage)
    assert any(f.startswith("part-c.csv.arrow: truncated: 100 bytes on disk") for f in got)
    assert "part-sub__b.jsonl.arrow: missing (listed in the manifest, not on disk)" in got
    assert any(f.startswith("rejected/part-bad.jsonl.arrow: truncated: 0 bytes") for f in got)
    assert len(got) == 3


def test_stray_and_temp_files_are_reported(stage):
    (stage / "part-zzz.arrow").write_bytes((stage / "part-a.jsonl.arrow").read_bytes())
    (stage / ".part-a.jsonl.arrow.tmp-999999-beef").write_bytes(b"half")
    got = findings(stage)
    assert "part-zzz.arrow: not in the manifest (written by an interrupted run?)" in got
    assert any(f.startswith(".part-a.jsonl.arrow.tmp-999999-beef: leftover temp file")
               for f in got)


def test_manifest_tampering_is_caught(stage):
    path = stage / "_manifest.json"
    manifest = json.loads(path.read_text())
    manifest["shards"]["part-a.jsonl.arrow"]["rows_in"] += 1
    path.write_text(json.dumps(manifest))
    assert findings(stage) == ["part-a.jsonl.arrow: rows not conserved: in 51 != kept 50 "
                               "+ rejected 0"]
    path.write_text("{not json")
    assert findings(stage)[0].startswith("_manifest.json: unreadable manifest")


def test_verify_without_manifest_fails(tmp_path):
    (tmp_path / "empty").mkdir()
    proc = run_cli("curate", "verify", str(tmp_path / "empty"))
    assert proc.returncode == 1 and "no _manifest.json" in proc.stdout
    assert run_cli("curate", "verify", str(tmp_path / "nope")).returncode == 1
