"""The Ray backend on a real local cluster (a head and a second node, each its own raylet and
worker processes on loopback): every stage writes the same bytes and the same manifests (but
for timings) as the local backend, and a worker killed mid-shard costs a retry, not output."""

from __future__ import annotations

import json
import os
import random
import signal
import threading
import time
from pathlib import Path

import dagster as dg
import pytest

from curate.dedup.config import DedupConfig
from curate.dedup.pipeline import run_dedup
from curate.extract import ExtractConfig
from curate.ingest import INGEST, IngestConfig, plan_ingest
from curate.ingest import _process as ingest_process
from curate.quality.rules import Recipe
from curate.quality.select import QUALITY_SELECT
from curate.quality.signals import QUALITY_SIGNALS, SignalsConfig
from curate.runner import (
    Backend,
    Stage,
    StageOutput,
    WorkUnit,
    plan_shards,
    run_stage,
    set_default_backend,
)
from curate.tokenize import TokenizeConfig, run_tokenize
from curate.tokenizer import TokenizerConfig, train_tokenizer
from curate.web_extract import EXTRACT, plan_extract
from dagster_project.ray_resource import RayBackend
from schemas import DOCUMENTS, without_timings
from schemas.shards import TEMP_MARKER, temp_name
from tests.conftest import run_cli, write_jsonl
from tests.test_dedup import corpus

ray = pytest.importorskip("ray")
from ray.cluster_utils import Cluster  # noqa: E402

CONTROL_ENV = "CURATE_TEST_RAY_CONTROL"
NODE = {"num_cpus": 1, "object_store_memory": 100 * 2**20}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory):
    """One cluster for the module: a head node and one worker node, one CPU each."""
    control = tmp_path_factory.mktemp("ray-control")
    env = {CONTROL_ENV: str(control), "RAY_memory_monitor_refresh_ms": "0",
           "RAY_USAGE_STATS_ENABLED": "0"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # the raylets (and so their workers) inherit these
    c = Cluster(initialize_head=True, head_node_args={**NODE, "include_dashboard": False})
    c.add_node(**NODE)
    ray.init(address=c.address, log_to_driver=False)
    assert sum(node["Alive"] for node in ray.nodes()) == 2
    try:
        yield c.address, control  # the head's GCS address, as `ray start --address` takes
    finally:
        ray.shutdown()
        c.shutdown()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _untimed(data: object) -> object:
    """JSON without timings, input mtimes included (files made in each run differ there)."""
    if isinstance(data, dict):
        return {k: _untimed(v) for k, v in data.items() if k != "mtime_ns"}
    if isinstance(data, list):
        return [_untimed(v) for v in data]
    return data


def tree(folder: Path) -> dict[str, object]:
    """Every file under ``folder``: bytes, or JSON minus timing keys for manifests/records."""
    out: dict[str, object] = {}
    for path in sorted(folder.rglob("*")):
        if not path.is_file() or path.name == ".manifest.lock":
            continue
        rel = path.relative_to(folder).as_posix()
        is_json = path.suffix == ".json"
        out[rel] = (_untimed(without_timings(json.loads(path.read_text()))) if is_json
                    else path.read_bytes())
    return out


def assert_same(local: Path, remote: Path) -> None:
    a, b = tree(local), tree(remote)
    assert sorted(a) == sorted(b)
    assert not [n for n in [*a, *b] if TEMP_MARKER in n]
    for name in a:
        assert a[name] == b[name], name


def _pages(tmp: Path) -> Path:
    rng = random.Random(3)
    words = ["le", "pain", "du", "village", "four", "bois", "matin", "chaud", "farine",
             "levain", "boulanger"]
    raw = tmp / "html"
    for f in range(3):
        rows = []
        for i in range(8):
            body = "".join(f"<p>{' '.join(rng.choices(words, k=30))}.</p>" for _ in range(4))
            html = (f"<html lang='fr'><head><title>Page {f}-{i}</title></head><body><article>"
                    f"<h1>Page {f}-{i}</h1>{body}</article></body></html>")
            rows.append({"id": f"p{f}-{i}", "url": f"https://ex.org/{f}/{i}",
                         "html": html if i != 5 else ""})  # one empty page: a rejection
        write_jsonl(raw / f"pages{f}.jsonl", rows)
    return raw


def _documents(tmp: Path) -> Path:
    files, _ = corpus()
    raw = tmp / "raw"
    for k, records in enumerate(files):
        write_jsonl(raw / f"part{k}.jsonl", records)
    docs = tmp / "docs"
    assert run_stage(INGEST, plan_ingest(raw), docs, IngestConfig(), progress=False).ok
    return docs


def test_every_stage_writes_the_same_output_on_ray(cluster, tmp_path: Path) -> None:
    html = _pages(tmp_path)
    docs = _documents(tmp_path)
    tok = tmp_path / "tokenizer"
    train_tokenizer([docs], tok, TokenizerConfig(vocab_size=400))
    for backend in ("local", "ray"):
        out = tmp_path / backend
        extracted = run_stage(EXTRACT, plan_extract(html), out / "extract", ExtractConfig(),
                              workers=1, progress=False, backend=backend)
        assert extracted.ok and extracted.rows_rejected == 3 and extracted.rows_kept == 21
        signals = run_stage(QUALITY_SIGNALS, plan_shards(docs), out / "signals",
                            SignalsConfig(), progress=False, backend=backend)
        selected = run_stage(QUALITY_SELECT, plan_shards(out / "signals"), out / "select",
                             Recipe(), progress=False, backend=backend)
        assert signals.ok and selected.ok
        dedup = run_dedup(docs, out / "dedup", DedupConfig(partitions=3), backend=backend)
        assert dedup.ok and dedup.clusters.removed == {
            "exact_duplicate": 10, "near_duplicate": 10, "url_duplicate": 5}
        set_default_backend(Backend(backend))  # run_tokenize takes the process default
        try:
            tokens = run_tokenize(docs, out / "tokens",
                                  TokenizeConfig(tokenizer=str(tok), seq_len=64))
        finally:
            set_default_backend(Backend())
        assert tokens.ok and tokens.rows_in == 90
    assert_same(tmp_path / "local", tmp_path / "ray")


def test_jaccard_checked_dedup_is_the_same_on_ray(cluster, tmp_path: Path) -> None:
    docs = _documents(tmp_path)
    cfg = DedupConfig(partitions=2, jaccard_check=True, jaccard_threshold=0.85, keep="longest")
    local = run_dedup(docs, tmp_path / "local", cfg)
    remote = run_dedup(docs, tmp_path / "ray", cfg, backend="ray")
    assert remote.clusters.candidate_pairs == local.clusters.candidate_pairs > 0
    assert_same(tmp_path / "local", tmp_path / "ray")


def test_cli_backend_option_runs_every_dedup_phase_on_the_cluster(cluster, tmp_path: Path):
    # the CLI is a driver of its own that joins the cluster by the head's address (a Ray Client
    # `ray://` address goes through the same ray.init; its proxy server is slow to start on a
    # loaded 2-core machine, so the test uses the GCS address)
    address, _ = cluster
    docs = _documents(tmp_path)
    assert run_dedup(docs, tmp_path / "local", DedupConfig()).ok
    proc = run_cli("curate", "dedup", "--input", str(docs), "--output", str(tmp_path / "ray"),
                   "--backend", "ray", "--ray-address", address, "--quiet")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "removed 25" in proc.stdout
    assert_same(tmp_path / "local", tmp_path / "ray")


def _slow_ingest(unit: WorkUnit, cfg: IngestConfig) -> StageOutput:
    """Ingest, but the first attempt at the victim shard records its pid and hangs there."""
    control = Path(os.environ[CONTROL_ENV])
    if unit.name == "part-part1.jsonl.arrow":
        with open(control / "attempts", "a") as f:
            f.write(f"{os.getpid()}\n")
        if len((control / "attempts").read_text().split()) == 1:
            # half a shard on disk, as a worker killed while writing leaves it
            out = Path((control / "out").read_text())
            temp_name(out / unit.name).write_bytes(b"ARROW1\0\0 half a shard")
            time.sleep(300)
    return ingest_process(unit, cfg)


SLOW_INGEST = Stage(INGEST.name, INGEST.version, DOCUMENTS, _slow_ingest)


def test_a_worker_killed_mid_shard_is_retried_and_leaves_no_partial_output(cluster, tmp_path):
    _, control = cluster
    files, _ = corpus()
    raw = tmp_path / "raw"
    for k, records in enumerate(files):
        write_jsonl(raw / f"part{k}.jsonl", records)
    (control / "out").write_text(str(tmp_path / "ray"))
    reports = []
    run = threading.Thread(target=lambda: reports.append(run_stage(
        SLOW_INGEST, plan_ingest(raw), tmp_path / "ray", IngestConfig(), progress=False,
        backend="ray")))
    run.start()
    attempts = control / "attempts"
    deadline = time.monotonic() + 120
    while not attempts.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    victim = int(attempts.read_text().split()[0])
    while not list((tmp_path / "ray").glob(f"*{TEMP_MARKER}*")) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert list((tmp_path / "ray").glob(f"*{TEMP_MARKER}{victim}-*"))  # the half shard
    os.kill(victim, signal.SIGKILL)
    run.join(timeout=180)
    assert not run.is_alive()
    (report,) = reports
    assert report.ok and report.done == 3
    pids = [int(p) for p in attempts.read_text().split()]
    assert len(pids) == 2 and pids[0] == victim != pids[1]
    assert run_stage(INGEST, plan_ingest(raw), tmp_path / "local", IngestConfig(),
                     progress=False).ok
    assert_same(tmp_path / "local", tmp_path / "ray")
    again = run_stage(INGEST, plan_ingest(raw), tmp_path / "ray", IngestConfig(),
                      progress=False, backend="ray")
    assert (again.done, again.skipped) == (0, 3)  # resume works the same on Ray


def test_dagster_resource_runs_an_asset_on_the_cluster(cluster, tmp_path: Path) -> None:
    docs = _documents(tmp_path)

    @dg.asset
    def signals(ray_backend: RayBackend) -> None:
        report = run_stage(QUALITY_SIGNALS, plan_shards(docs), tmp_path / "ray", SignalsConfig(),
                           progress=False, backend=ray_backend.backend())
        assert report.ok and report.done == 3

    result = dg.materialize([signals], resources={"ray_backend": RayBackend(kind="ray")})
    assert result.success
    assert ray.is_initialized()  # the fixture's connection is reused, not shut down
    assert run_stage(QUALITY_SIGNALS, plan_shards(docs), tmp_path / "local", SignalsConfig(),
                     progress=False).ok
    assert_same(tmp_path / "local", tmp_path / "ray")


def test_a_failing_shard_is_recorded_as_on_the_local_backend(cluster, tmp_path, raw_dir):
    from tests.test_runner import LOSSY

    report = run_stage(LOSSY, plan_ingest(raw_dir)[:1], tmp_path / "out", IngestConfig(),
                       progress=False, backend="ray")
    assert report.failures == {
        "part-a.jsonl.arrow": "StageFailed: rows not conserved: in 2 != kept 1 + rejected 0"}
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [".manifest.lock",
                                                                     "_manifest.json"]


def test_cli_backend_option_lasts_only_for_its_command() -> None:
    from click.testing import CliRunner

    from curate.cli import main
    from curate.runner import resolve_backend

    result = CliRunner().invoke(main, ["ingest", "--input", "/nonexistent", "--output", "/tmp/x",
                                       "--backend", "ray", "--ray-address", "host:6379"])
    assert result.exit_code != 0 and "not found" in result.output.lower()
    assert resolve_backend(None) == Backend("local")
