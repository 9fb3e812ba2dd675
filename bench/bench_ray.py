"""One map stage on the Ray backend beside the local process pool, 1 and 2 workers each.

The stage is quality signals (Gopher/C4/FineWeb rules) over a generated documents folder
(``bench.dedup_million``'s generator, 1-4 KB documents) cut into many shards so both
backends can spread them. Ray runs on a local cluster started here: a head with no CPUs (it
only schedules) plus one or two worker nodes of one CPU each, every node its own raylet and
worker processes on loopback, as on a real cluster. The local pool is the runner's default
(forkserver pool of ``workers`` processes; 1 worker runs in the calling process).

Each timing is the median of ``repeats`` full stage runs into an empty folder; Ray's workers
are warmed by one untimed run first (a real cluster keeps its workers between stages), and
so is the local pool's import of the stage. Throughput is documents per second.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from bench.dedup_million import write_corpus
from bench.harness import Comparison, compare

ROWS_PER_SHARD = 500


def _cluster(tmp: Path):
    os.environ.setdefault("RAY_memory_monitor_refresh_ms", "0")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    from ray.cluster_utils import Cluster

    return Cluster(initialize_head=True, head_node_args={
        "num_cpus": 0, "include_dashboard": False, "object_store_memory": 100 * 2**20,
        "temp_dir": str(tmp / "ray")})


def run(scale: float = 1.0, repeats: int = 3) -> list[Comparison]:
    import ray

    from curate.quality.signals import QUALITY_SIGNALS, SignalsConfig
    from curate.runner import plan_shards, run_stage

    n_docs = max(2000, int(20_000 * scale))
    cfg = SignalsConfig()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        corpus = write_corpus(root / "input", n_docs, rows_per_shard=ROWS_PER_SHARD,
                              min_chars=1000, max_chars=4000, dup_fraction=0.0)
        units = plan_shards(corpus.path)
        out = root / "out"

        def clean() -> None:
            shutil.rmtree(out, ignore_errors=True)

        def stage(backend: str, workers: int = 1):
            def go() -> None:
                report = run_stage(QUALITY_SIGNALS, units, out, cfg, workers=workers,
                                   progress=False, backend=backend)
                assert report.ok and report.rows_in == n_docs
            return go

        stage("local")()  # imports and kernels once, outside the timings
        clean()
        cluster = _cluster(root)
        try:
            ray.init(address=cluster.address, log_to_driver=False)
            work = (f"quality signals over {n_docs:,} generated docs of 1-4 KB "
                    f"({corpus.text_bytes / 1e6:.0f} MB) in {len(units)} shards")
            for workers in (1, 2):
                cluster.add_node(num_cpus=1, object_store_memory=100 * 2**20)
                cluster.wait_for_nodes()
                stage("ray")()  # warm the new worker
                clean()
                comp = compare(
                    "ray", work,
                    (f"Ray backend, {workers} worker node(s) x 1 CPU", stage("ray")),
                    (f"local process pool, {workers} worker(s)", stage("local", workers)),
                    repeats, clean)
                results.append(comp)
        finally:
            ray.shutdown()
            cluster.shutdown()
    return results


def docs_per_second(comp: Comparison, n_docs: int) -> tuple[float, float]:
    return n_docs / comp.ours_seconds, n_docs / comp.baseline_seconds


if __name__ == "__main__":
    import argparse

    from bench.harness import TABLE_HEADER, machine

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rows = run(args.scale, args.repeats)
    n = max(2000, int(20_000 * args.scale))
    print(machine())
    print(TABLE_HEADER)
    print("\n".join(r.row() for r in rows))
    print("\n| workers | Ray docs/s | local pool docs/s |\n|---:|---:|---:|")
    for workers, r in enumerate(rows, start=1):
        ray_dps, local_dps = docs_per_second(r, n)
        print(f"| {workers} | {ray_dps:,.0f} | {local_dps:,.0f} |")
