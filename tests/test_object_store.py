"""Stages on an S3-compatible object store (moto's S3 server on loopback, reached through
pyarrow's S3 filesystem): the same shards and manifests as on local disk with the local pool
and with Ray, resume against the store, and a dying worker leaves no key behind."""

from __future__ import annotations

import json
import logging
import os
import random
import uuid
from pathlib import Path

import pyarrow.fs as pafs
import pytest

from curate.ingest import INGEST, IngestConfig, plan_ingest
from curate.quality.rules import Recipe
from curate.quality.select import QUALITY_SELECT
from curate.quality.signals import QUALITY_SIGNALS, SignalsConfig, signals_unit
from curate.runner import (
    Backend,
    Stage,
    StageOutput,
    WorkUnit,
    plan_shards,
    run_stage,
    run_unit,
)
from schemas import DOCUMENTS, read_manifest, without_timings
from schemas.shards import TEMP_MARKER
from schemas.storage import StorePath, open_uri
from tests.conftest import run_cli, write_jsonl

moto_server = pytest.importorskip("moto.server")

CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
               "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}
WORDS = ["the", "bread", "of", "village", "oven", "wood", "morning", "warm", "flour", "baker",
         "leaven", "crust", "market", "river", "stone"]


@pytest.fixture(scope="module")
def endpoint():
    """A real S3 HTTP server (moto) on loopback for the module; ``host:port``."""
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = moto_server.ThreadedMotoServer("127.0.0.1", 0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def store(endpoint: str, monkeypatch: pytest.MonkeyPatch) -> StorePath:
    """A fresh bucket's ``root`` prefix. The filesystem carries its (dummy) credentials, so
    pool and Ray workers need none in their environment; the CLI reads them from the env."""
    for key, value in CREDENTIALS.items():
        monkeypatch.setenv(key, value)
    bucket = f"t-{uuid.uuid4().hex[:12]}"
    fs = pafs.S3FileSystem(access_key="testing", secret_key="testing", region="us-east-1",
                           endpoint_override=endpoint, scheme="http")
    pafs.S3FileSystem(endpoint_override=endpoint, scheme="http", region="us-east-1",
                      allow_bucket_creation=True).create_dir(bucket)
    return StorePath(fs, f"{bucket}/root")


def uri(store: StorePath, rel: str, endpoint: str) -> str:
    """The URI a user would type for ``store / rel`` (endpoint and scheme in the query)."""
    return f"s3://{(store / rel).path}?endpoint_override={endpoint}&scheme=http"


def _documents(root: Path) -> Path:
    """A documents stage of 3 shards (some documents too short to pass quality selection)."""
    rng = random.Random(7)
    for f in range(3):
        rows = []
        for i in range(12):
            n = 3 if i % 5 == 0 else 60
            text = "\n".join(" ".join(rng.choices(WORDS, k=n)).capitalize() + "."
                             for _ in range(4))
            rows.append({"id": f"d{f}-{i}", "text": text, "url": f"https://ex.org/{f}/{i}"})
        write_jsonl(root / "raw" / f"part{f}.jsonl", rows)
    docs = root / "docs"
    assert run_stage(INGEST, plan_ingest(root / "raw"), docs, IngestConfig(), progress=False).ok
    return docs


def _upload(folder: Path, dest: StorePath) -> None:
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.name != ".manifest.lock":
            (dest / path.relative_to(folder).as_posix()).upload(path)


def _untimed(data: object) -> object:
    if isinstance(data, dict):
        return {k: _untimed(v) for k, v in without_timings(data).items() if k != "mtime_ns"}
    if isinstance(data, list):
        return [_untimed(v) for v in data]
    return data


def _content(name: str, data: bytes) -> object:
    return _untimed(json.loads(data)) if name.endswith(".json") else data


def local_tree(folder: Path) -> dict[str, object]:
    return {p.relative_to(folder).as_posix(): _content(p.name, p.read_bytes())
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != ".manifest.lock"}


def keys(folder: StorePath) -> list[str]:
    selector = pafs.FileSelector(folder.path, recursive=True, allow_not_found=True)
    return sorted(i.path[len(folder.path) + 1:] for i in folder.fs.get_file_info(selector)
                  if i.type == pafs.FileType.File)


def store_tree(folder: StorePath) -> dict[str, object]:
    return {k: _content(k, (folder / k).read_bytes()) for k in keys(folder)}


def assert_same(local: Path, remote: StorePath) -> None:
    a, b = local_tree(local), store_tree(remote)
    assert sorted(a) == sorted(b)
    assert not [k for k in b if TEMP_MARKER in k]
    for name in a:
        assert a[name] == b[name], name


def _signals_and_select(docs: Path | StorePath, out: Path | StorePath, **kw) -> int:
    signals = run_stage(QUALITY_SIGNALS, plan_shards(docs), out / "signals", SignalsConfig(),
                        progress=False, **kw)
    select = run_stage(QUALITY_SELECT, plan_shards(out / "signals"), out / "select", Recipe(),
                       progress=False, **kw)
    assert signals.ok and select.ok and signals.done == select.done == 3
    return select.rows_rejected


def test_a_stage_on_s3_writes_what_it_writes_on_disk_and_resumes(store, tmp_path) -> None:
    docs = _documents(tmp_path)
    _upload(docs, store / "docs")
    rejected = _signals_and_select(docs, tmp_path)
    assert _signals_and_select(store / "docs", store, workers=2) == rejected > 0
    for stage in ("signals", "select"):  # shards, rejected/ shards, manifests
        assert_same(tmp_path / stage, store / stage)
    entry = read_manifest(store / "select").shards["part-part0.jsonl.arrow"]
    assert entry["inputs"][0]["path"] == "../signals/part-part0.jsonl.arrow"  # keys, not scratch

    again = run_stage(QUALITY_SIGNALS, plan_shards(store / "docs"), store / "signals",
                      SignalsConfig(), workers=2, progress=False)
    assert (again.done, again.skipped) == (0, 3)  # resume against the store: nothing refetched
    (store / "select" / "rejected" / "part-part1.jsonl.arrow").delete()
    (store / "docs" / "part-part2.jsonl.arrow").upload(docs / "part-part0.jsonl.arrow")
    redo = run_stage(QUALITY_SIGNALS, plan_shards(store / "docs"), store / "signals",
                     SignalsConfig(), workers=2, progress=False)
    assert (redo.done, redo.skipped) == (1, 2)  # the changed input only
    redo = run_stage(QUALITY_SELECT, plan_shards(store / "signals"), store / "select", Recipe(),
                     progress=False)
    assert (redo.done, redo.skipped) == (2, 1)  # the lost key's unit and the changed one

    unit = plan_shards(store / "docs")[0]  # one unit in this process, as a Dagster partition
    assert run_unit(QUALITY_SIGNALS, unit, store / "one", SignalsConfig()).error is None
    assert keys(store / "one") == ["_manifest.json", unit.name]
    assert run_unit(QUALITY_SIGNALS, unit, store / "one", SignalsConfig()).skipped


def test_cli_reads_and_writes_s3_uris(store, endpoint, tmp_path) -> None:
    docs = _documents(tmp_path)
    _upload(docs, store / "docs")
    assert run_stage(QUALITY_SIGNALS, plan_shards(docs), tmp_path / "signals", SignalsConfig(),
                     progress=False).ok
    args = ("curate", "quality", "signals", "--input", uri(store, "docs", endpoint),
            "--output", uri(store, "signals", endpoint), "--quiet")
    proc = run_cli(*args, check=True)
    assert "3 written" in proc.stdout and "s3://" in proc.stdout
    assert_same(tmp_path / "signals", store / "signals")
    assert "0 written, 3 unchanged" in run_cli(*args, check=True).stdout
    proc = run_cli("curate", "ingest", "--input", uri(store, "docs", endpoint), "--output",
                   str(tmp_path / "x"))
    assert proc.returncode != 0 and "only a stage folder" in proc.stderr
    proc = run_cli("curate", "tokenize", "--input", uri(store, "docs", endpoint), "--output",
                   str(tmp_path / "t"), "--set", "tokenizer=unused")
    assert proc.returncode != 0 and "local folders only" in proc.stderr
    assert not (tmp_path / "t").exists()


def _dying_signals(unit: WorkUnit, cfg: SignalsConfig) -> StageOutput:
    """Quality signals, but one shard's worker dies and another's output loses a row."""
    if unit.name == "part-part0.jsonl.arrow":
        os._exit(1)
    out = signals_unit(unit, cfg)
    if unit.name == "part-part1.jsonl.arrow":
        out.kept = out.kept.slice(1)
    return out


DYING = Stage(QUALITY_SIGNALS.name, QUALITY_SIGNALS.version, DOCUMENTS, _dying_signals)


def test_failed_units_leave_no_final_and_no_temp_key(store, tmp_path) -> None:
    docs = _documents(tmp_path)
    _upload(docs, store / "docs")
    out = store / "signals"
    (out / f".part-part0.jsonl.arrow{TEMP_MARKER}1-0000").write_bytes(b"ARROW1 half")
    (out / "rejected" / f".part-part0.jsonl.arrow{TEMP_MARKER}1-0001").write_bytes(b"half")
    report = run_stage(DYING, plan_shards(store / "docs"), out, SignalsConfig(), workers=2,
                       progress=False)
    assert sorted(report.failures) == ["part-part0.jsonl.arrow", "part-part1.jsonl.arrow"]
    assert "worker process died" in report.failures["part-part0.jsonl.arrow"]
    assert "rows not conserved" in report.failures["part-part1.jsonl.arrow"]
    assert keys(out) == ["_manifest.json", "part-part2.jsonl.arrow"]  # no temp key is left
    manifest = read_manifest(out)
    assert list(manifest.shards) == ["part-part2.jsonl.arrow"] and not manifest.pending


def test_ray_backend_on_s3_writes_what_the_local_backend_writes(store, tmp_path) -> None:
    ray = pytest.importorskip("ray")
    from ray.cluster_utils import Cluster

    docs = _documents(tmp_path)
    _upload(docs, store / "docs")
    node = {"num_cpus": 1, "object_store_memory": 100 * 2**20}
    cluster = Cluster(initialize_head=True, head_node_args={**node, "include_dashboard": False})
    cluster.add_node(**node)  # a second node: tasks run in two raylets' workers
    ray.init(address=cluster.address, log_to_driver=False)
    try:
        backend = Backend("ray", cluster.address)
        assert _signals_and_select(store / "docs", store, backend=backend) > 0
        again = run_stage(QUALITY_SIGNALS, plan_shards(store / "docs"), store / "signals",
                          SignalsConfig(), progress=False, backend=backend)
        assert (again.done, again.skipped) == (0, 3)
        local = run_stage(QUALITY_SIGNALS, plan_shards(store / "docs"), tmp_path / "local",
                          SignalsConfig(), progress=False, backend=backend)
        assert local.ok  # object-store inputs, local output, on Ray
    finally:
        ray.shutdown()
        cluster.shutdown()
    _signals_and_select(docs, tmp_path)
    for stage in ("signals", "select"):
        assert_same(tmp_path / stage, store / stage)
    assert local_tree(tmp_path / "local") == {
        k: v if not k.endswith(".json") else _refs_local(v, store, tmp_path / "local")
        for k, v in local_tree(tmp_path / "signals").items()}


def _refs_local(manifest: object, store: StorePath, out: Path) -> object:
    """A manifest whose inputs are named by their object-store location (the output is local)."""
    shards = {name: {**e, "inputs": [{**i, "path": str(store / "docs" / Path(i["path"]).name)}
                                     for i in e["inputs"]]}
              for name, e in manifest["shards"].items()}
    return {**manifest, "shards": shards}


def test_uris_open_pyarrow_and_fsspec_filesystems(store, endpoint) -> None:
    s3 = open_uri(uri(store, "a/b", endpoint))
    assert str(s3) == f"s3://{store.path}/a/b" and s3.fs.type_name == "s3"
    memory = open_uri("memory://bucket/stage")
    (memory / "x.bin").write_bytes(b"abc")
    assert isinstance(memory.fs, pafs.PyFileSystem) and (memory / "x.bin").size() == 3
    assert str(memory / "x.bin") == "memory://bucket/stage/x.bin"


def _duplicated_documents(root: Path) -> Path:
    """A documents stage with exact and near duplicates across its 3 shards."""
    rng = random.Random(11)
    words = ["".join(rng.choices("abcdefghijklmnop", k=6)) for _ in range(3000)]
    originals = [" ".join(rng.choices(words, k=80)) + "." for _ in range(12)]
    for f in range(3):
        rows = []
        for i, text in enumerate(originals[f * 4:(f + 1) * 4]):
            rows.append({"id": f"o{f}-{i}", "text": text, "url": f"https://ex.org/o/{f}/{i}"})
            other = originals[(f * 4 + i + 4) % 12]
            rows.append({"id": f"x{f}-{i}", "text": other, "url": f"https://ex.org/x/{f}/{i}"})
            near = other.split()
            near[3] = "changed"
            rows.append({"id": f"n{f}-{i}", "text": " ".join(near), "url": f"https://n.org/{f}/{i}"})
        write_jsonl(root / "raw" / f"part{f}.jsonl", rows)
    docs = root / "docs"
    assert run_stage(INGEST, plan_ingest(root / "raw"), docs, IngestConfig(), progress=False).ok
    return docs


def test_dedup_on_s3_writes_what_it_writes_on_disk_and_resumes(store, endpoint, tmp_path):
    from curate.dedup.config import DedupConfig
    from curate.dedup.pipeline import run_dedup

    docs = _duplicated_documents(tmp_path)
    _upload(docs, store / "docs")
    cfg = DedupConfig(partitions=2)
    local = run_dedup(docs, tmp_path / "dedup", cfg)
    remote = run_dedup(store / "docs", store / "dedup", cfg, workers=2)
    assert local.ok and remote.ok and remote.removal.rows_rejected == local.removal.rows_rejected
    assert remote.clusters.removed == {"exact_duplicate": 12, "near_duplicate": 12}
    assert_same(tmp_path / "dedup", store / "dedup")  # signatures, buckets, clusters, documents
    again = run_cli("curate", "dedup", "--input", uri(store, "docs", endpoint), "--output",
                    uri(store, "dedup", endpoint), "--set", "partitions=2", "--quiet", check=True)
    assert "(0 computed, 3 unchanged)" in again.stdout  # signatures
    assert again.stdout.count("(unchanged, reused)") == 2  # buckets and clusters
    assert "removed 24" in again.stdout
