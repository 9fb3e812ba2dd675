"""SIGKILL a shard-writing process at random points: readers never see half a shard,
`curate verify` names the damage, and a re-run converges on the uninterrupted output."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from curate.ingest import INGEST, IngestConfig, plan_ingest
from curate.runner import run_stage
from schemas import read_shard, sha256_file, without_timings
from schemas.manifest import MANIFEST_NAME
from schemas.shards import is_temp_file
from schemas.verify import verify_stage

KILLS = 10
FILES = 24
LINES = 6000


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("crash")
    raw = root / "raw"
    raw.mkdir()
    rng = random.Random(7)
    words = ["river", "bread", "stone", "light", "north", "garden", "signal", "copper"]
    for f in range(FILES):
        with open(raw / f"dump-{f:02d}.jsonl", "w") as out:
            for i in range(LINES):
                if i % 997 == 5:
                    out.write("{broken line\n")
                    continue
                text = " ".join(rng.choice(words) for _ in range(60))
                out.write(json.dumps({"id": f"{f}-{i}", "text": text}) + "\n")
    return root


def files_on_disk(out: Path) -> dict[str, Path]:
    found = {}
    for folder in (out, out / "rejected"):
        if folder.is_dir():
            found.update({p.relative_to(out).as_posix(): p for p in folder.iterdir()
                          if p.is_file() and p.name != ".manifest.lock"})
    return found


def snapshot(out: Path) -> tuple[dict[str, str], dict]:
    shards = {rel: sha256_file(p) for rel, p in files_on_disk(out).items()
              if rel != MANIFEST_NAME}
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    return shards, without_timings(manifest)


def writer(raw: Path, out: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "curate", "ingest", "--input", str(raw), "--output", str(out),
         "--workers", "1", "--quiet"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


def expected_findings(out: Path) -> set[str]:
    """What verify must say, derived independently from the files actually on disk."""
    if not (out / MANIFEST_NAME).exists():
        return {f"{MANIFEST_NAME}: missing: not a stage folder, or its first run never finished"}
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    listed = {e["name"] for e in manifest["shards"].values()}
    listed |= {e["rejected"]["name"] for e in manifest["shards"].values() if e["rejected"]}
    expected = set()
    for name in manifest["pending"]:
        if (out / name).exists() and name not in listed:
            expected.add(f"{name}: written but not recorded: the run was interrupted before the "
                         "manifest update (re-run to finish)")
        else:
            expected.add(f"{name}: not written: the run that planned it was interrupted "
                         "(re-run to finish)")
    listed |= set(manifest["pending"])
    for rel, path in files_on_disk(out).items():
        if is_temp_file(path):
            expected.add(f"{rel}: leftover temp file from an interrupted write (safe to delete)")
        elif rel.endswith(".arrow") and rel not in listed:
            expected.add(f"{rel}: not in the manifest (written by an interrupted run?)")
    return expected


@pytest.mark.slow
def test_sigkill_never_leaves_a_partial_shard(corpus, tmp_path):
    raw = corpus / "raw"
    ref_out = corpus / "reference"
    t0 = time.perf_counter()
    proc = writer(raw, ref_out)
    assert proc.wait(timeout=300) == 0
    full_run = time.perf_counter() - t0
    ref_shards, ref_manifest = snapshot(ref_out)
    assert len([s for s in ref_shards if not s.startswith("rejected/")]) == FILES

    rng = random.Random(1234)
    interrupted = 0
    for attempt in range(KILLS):
        out = corpus / f"run-{attempt}"
        # a few kills land on a stage folder that a previous kill already damaged
        for _ in range(1 + attempt % 3):
            proc = writer(raw, out)
            time.sleep(rng.uniform(0.2, full_run * 0.9))
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

        # 1. every visible shard is complete: it reads, and is byte-identical to the reference
        for rel, path in files_on_disk(out).items():
            if rel.endswith(".arrow") and not is_temp_file(path):
                read_shard(path)
                assert sha256_file(path) == ref_shards[rel], f"partial shard visible: {rel}"

        # 2. verify reports exactly the damage on disk, nothing more, nothing less
        report = verify_stage(out)
        got = {str(f) for f in report.findings}
        assert got == expected_findings(out), f"attempt {attempt}"
        interrupted += not report.ok

        # 3. a plain re-run completes and equals the uninterrupted run
        rerun = run_stage(INGEST, plan_ingest(raw), out, IngestConfig(), progress=False)
        assert rerun.ok
        assert snapshot(out) == (ref_shards, ref_manifest), f"attempt {attempt}"
        assert verify_stage(out).ok
    assert interrupted >= KILLS // 2, "kills landed too late to test anything"
