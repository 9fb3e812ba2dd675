"""Dedup's global phases on Ray: the bucket scatter as a map/reduce shuffle, the linking of
each partition in a task. Results are identical to the local phases.

- Buckets: one map task per signatures shard computes its keys and splits them by partition
  (:func:`curate.dedup.buckets.scatter_shard`, one return per partition); one reduce task per
  partition writes its stream file to a temp name from the pieces in canonical shard order,
  so each file holds the same batches, in the same order, as the local scatter writes. The
  driver renames the files once every partition is written, then writes ``_done.json``.
- Clusters: one task per partition sorts it and returns its links as edges (and, with the
  Jaccard check, its band candidate pairs); the driver unites the edges. Union-find always
  makes the smaller document the root, so every root is its cluster's smallest document
  whatever order the edges arrive in, and the keepers and shards that follow are the same.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numba
import numpy as np
import pyarrow as pa

from curate.dedup.buckets import (
    BUCKET_SCHEMA,
    DONE_NAME,
    KIND_NAMES,
    DocSpace,
    buckets_record,
    partition_path,
    read_partition,
    scatter_shard,
    write_done,
)
from curate.dedup.clusters import ClusterReport, _union, finish_links, link_runs
from curate.dedup.config import DedupConfig
from curate.ray_backend import MAX_RETRIES, connect
from schemas.shards import TEMP_MARKER, fsync_dir, temp_name


def _scatter(path: str, first_doc: int, cfg: DedupConfig, partitions: int) -> tuple:
    pieces, sizes, by_kind = scatter_shard(Path(path), first_doc, cfg, partitions)
    return (*pieces, (sizes, by_kind))


def _write_partition(final: str, *pieces: pa.RecordBatch | None) -> str:
    """Reduce side: one partition's stream file, at a temp name the driver renames."""
    tmp = temp_name(Path(final))
    try:
        with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_stream(sink, BUCKET_SCHEMA) as w:
            for piece in pieces:
                if piece is not None:
                    w.write_batch(piece)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return str(tmp)


def write_buckets(space: DocSpace, cfg: DedupConfig, out_dir: Path, partitions: int,
                  address: str | None = None) -> dict:
    """:func:`curate.dedup.buckets.write_buckets` as Ray tasks; same files, same record."""
    ray = connect(address)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / DONE_NAME).unlink(missing_ok=True)
    for stale in out_dir.glob("*.arrows"):
        stale.unlink()
    scatter = ray.remote(_scatter).options(num_returns=partitions + 1, max_retries=MAX_RETRIES)
    maps = [scatter.remote(str(s.path), int(first), cfg, partitions)
            for s, first in zip(space.shards, space.offsets[:-1], strict=True)]
    reduce = ray.remote(_write_partition).options(max_retries=MAX_RETRIES)
    writes = [reduce.remote(str(partition_path(out_dir, p)), *(m[p] for m in maps))
              for p in range(partitions)]
    try:
        temps = ray.get(writes)
        stats = ray.get([m[partitions] for m in maps])
        for p, tmp in enumerate(temps):
            os.replace(tmp, partition_path(out_dir, p))
    except BaseException:
        for ref in writes:
            ray.cancel(ref, force=True)
        for tmp in out_dir.glob(f"*{TEMP_MARKER}*"):  # this phase is the folder's only writer
            tmp.unlink(missing_ok=True)
        raise
    fsync_dir(out_dir)
    counts = np.zeros(partitions, dtype=np.int64)
    by_kind = dict.fromkeys(KIND_NAMES.values(), 0)
    for sizes, shard_by_kind in stats:
        counts += sizes
        for name, n in shard_by_kind.items():
            by_kind[name] += n
    record = buckets_record(space, cfg, partitions, counts, by_kind)
    write_done(out_dir, record)
    return record


@numba.njit(cache=True)
def _union_edges(parent, edge_a, edge_b):
    for e in range(edge_a.shape[0]):
        _union(parent, edge_a[e], edge_b[e])


def _partition_links(buckets_dir: str, partition: int, defer_bands: bool,
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One partition's links: (edge_a, edge_b, pair_a, pair_b)."""
    keys, docs, kinds = read_partition(Path(buckets_dir), partition)
    order = np.argsort(keys, kind="stable")
    edge_a = np.empty(len(keys), np.int64)
    edge_b = np.empty_like(edge_a)
    pair_a = np.empty(len(keys) if defer_bands else 0, np.int64)
    pair_b = np.empty_like(pair_a)
    n_edges, n_pairs = link_runs(keys[order], docs[order], kinds[order], np.empty(0, np.int64),
                                 defer_bands, pair_a, pair_b, edge_a, edge_b)
    return (edge_a[:n_edges].copy(), edge_b[:n_edges].copy(), pair_a[:n_pairs].copy(),
            pair_b[:n_pairs].copy())


def make_link(address: str | None = None) -> Any:
    """A ``link`` for :func:`curate.dedup.clusters.write_clusters` that links on Ray."""

    def link(space: DocSpace, cfg: DedupConfig, buckets_dir: Path, partitions: int,
             texts: dict[str, Path], report: ClusterReport) -> np.ndarray:
        ray = connect(address)
        task = ray.remote(_partition_links).options(max_retries=MAX_RETRIES)
        refs = [task.remote(str(buckets_dir), p, cfg.jaccard_check) for p in range(partitions)]
        parent = np.arange(space.n_docs, dtype=np.int64)
        candidates_a: list[np.ndarray] = []
        candidates_b: list[np.ndarray] = []
        for ref in refs:  # in partition order, each as soon as it is ready
            edge_a, edge_b, pair_a, pair_b = ray.get(ref)
            _union_edges(parent, edge_a, edge_b)
            candidates_a.append(pair_a)
            candidates_b.append(pair_b)
        return finish_links(parent, candidates_a, candidates_b, space, cfg, texts, report)

    return link
