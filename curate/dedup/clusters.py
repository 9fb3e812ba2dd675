"""Phase 3 (global): link documents that share a key, form clusters, choose who stays.

Each partition is sorted by key; every document in a run of equal keys is united with the
run's first document (union-find with path halving, the smaller document number always the
root, so roots are deterministic). With ``jaccard_check`` on, band links are collected as
candidate pairs instead and united only when the true Jaccard similarity of the two texts'
shingle sets reaches the threshold (exact and URL links need no check).

The keeper of a cluster: a document from the earlier index if there is one, then by the keep
rule (first seen, longest text, highest score), ties to the first seen. Everything else in
the cluster is removed as a duplicate of the keeper. One ``dup_clusters`` shard per new
documents shard lists its cluster members (singletons are not listed).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numba
import numpy as np
import pyarrow as pa

from curate.dedup import minhash
from curate.dedup.buckets import DocSpace, SignatureShard, read_partition
from curate.dedup.config import DedupConfig
from curate.dedup.normalize import normalize
from schemas import DUP_CLUSTERS, read_shard, write_shard
from schemas.manifest import Manifest, locked_manifest
from schemas.version import __version__

STAGE_NAME = "dedup_clusters"
EXACT_DUPLICATE, URL_DUPLICATE, NEAR_DUPLICATE = "exact_duplicate", "url_duplicate", \
    "near_duplicate"


@numba.njit(cache=True)
def _find(parent, x):
    while parent[x] != x:
        parent[x] = parent[parent[x]]
        x = parent[x]
    return x


@numba.njit(cache=True)
def _union(parent, a, b):
    ra = _find(parent, a)
    rb = _find(parent, b)
    if ra < rb:
        parent[rb] = ra
    elif rb < ra:
        parent[ra] = rb


@numba.njit(cache=True)
def link_runs(keys, docs, kinds, parent, defer_bands, pair_a, pair_b, edge_a, edge_b):
    """Link each run of equal keys to its first document: united in ``parent`` when it is
    given (non-empty), else written to ``edge_a``/``edge_b`` for a caller that merges the
    links of many workers; with ``defer_bands``, band runs become candidate pairs instead.
    Returns (edges written, pairs written)."""
    apply = parent.shape[0] > 0
    n = keys.shape[0]
    edges = 0
    pairs = 0
    i = 0
    while i < n:
        j = i + 1
        while j < n and keys[j] == keys[i]:
            j += 1
        for k in range(i + 1, j):
            if docs[k] == docs[i]:
                continue
            if defer_bands and kinds[k] == 2:
                pair_a[pairs] = docs[i]
                pair_b[pairs] = docs[k]
                pairs += 1
            elif apply:
                _union(parent, docs[i], docs[k])
            else:
                edge_a[edges] = docs[i]
                edge_b[edges] = docs[k]
                edges += 1
        i = j
    return edges, pairs


@numba.njit(cache=True)
def _roots(parent):
    out = np.empty_like(parent)
    for x in range(parent.shape[0]):
        out[x] = _find(parent, x)
    return out


@numba.njit(cache=True)
def _shingle_sets(data, offsets, ngram, out_hashes, out_offsets):
    """Sorted unique xxh32 shingle hashes of each text, flattened."""
    longest = 0
    for d in range(offsets.shape[0] - 1):
        longest = max(longest, offsets[d + 1] - offsets[d])
    cap = longest // 2 + 2
    starts = np.empty(cap, np.int64)
    ends = np.empty(cap, np.int64)
    scratch = np.empty(cap, np.uint32)
    w = 0
    for d in range(offsets.shape[0] - 1):
        out_offsets[d] = w
        count = minhash._shingle_hashes(data, offsets, d, ngram, starts, ends, scratch)
        uniq = np.unique(scratch[:count])
        out_hashes[w:w + uniq.shape[0]] = uniq
        w += uniq.shape[0]
    out_offsets[offsets.shape[0] - 1] = w


@dataclass
class ClusterReport:
    """What clustering found, for the CLI summary and Dagster metadata."""

    documents: int = 0
    new_documents: int = 0
    clusters: int = 0
    removed: Counter = field(default_factory=Counter)
    size_histogram: dict[int, int] = field(default_factory=dict)
    per_shard: dict[str, dict[str, int]] = field(default_factory=dict)
    candidate_pairs: int = 0
    pairs_rejected_by_jaccard: int = 0
    seconds: float = 0.0

    def to_json(self) -> dict:
        return {"documents": self.documents, "new_documents": self.new_documents,
                "clusters": self.clusters, "removed": dict(self.removed),
                "size_histogram": {str(k): v for k, v in sorted(self.size_histogram.items())},
                "per_shard": self.per_shard, "candidate_pairs": self.candidate_pairs,
                "pairs_rejected_by_jaccard": self.pairs_rejected_by_jaccard,
                "seconds": round(self.seconds, 3)}

    @classmethod
    def from_json(cls, data: dict) -> ClusterReport:
        return cls(data["documents"], data["new_documents"], data["clusters"],
                   Counter(data["removed"]),
                   {int(k): v for k, v in data["size_histogram"].items()},
                   data["per_shard"], data["candidate_pairs"],
                   data["pairs_rejected_by_jaccard"], data.get("seconds", 0.0))


def cluster_key(bucket_key: str, cfg: DedupConfig) -> str:
    settings = {k: getattr(cfg, k) for k in ("jaccard_check", "jaccard_threshold", "keep",
                                            "score_column", "ngram")}
    blob = json.dumps([bucket_key, settings], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _link(space: DocSpace, cfg: DedupConfig, buckets_dir: Path, partitions: int,
          texts: dict[str, Path], report: ClusterReport) -> np.ndarray:
    """Union-find over all partitions; returns each document's root."""
    parent = np.arange(space.n_docs, dtype=np.int64)
    candidates_a: list[np.ndarray] = []
    candidates_b: list[np.ndarray] = []
    for p in range(partitions):
        keys, docs, kinds = read_partition(buckets_dir, p)
        order = np.argsort(keys, kind="stable")
        pair_a = np.empty(len(keys) if cfg.jaccard_check else 0, np.int64)
        pair_b = np.empty_like(pair_a)
        none = np.empty(0, np.int64)
        _, n = link_runs(keys[order], docs[order], kinds[order], parent, cfg.jaccard_check,
                         pair_a, pair_b, none, none)
        candidates_a.append(pair_a[:n])
        candidates_b.append(pair_b[:n])
    return finish_links(parent, candidates_a, candidates_b, space, cfg, texts, report)


def finish_links(parent: np.ndarray, candidates_a: list[np.ndarray],
                 candidates_b: list[np.ndarray], space: DocSpace, cfg: DedupConfig,
                 texts: dict[str, Path], report: ClusterReport) -> np.ndarray:
    """Unite the candidate pairs that pass the Jaccard check; returns each document's root
    (the smallest document of its cluster, whatever order the unions came in)."""
    if cfg.jaccard_check:
        a = np.concatenate(candidates_a)
        b = np.concatenate(candidates_b)
        pairs = np.unique(np.stack([np.minimum(a, b), np.maximum(a, b)], axis=1), axis=0)
        report.candidate_pairs = len(pairs)
        keep = _verify_pairs(space, cfg, pairs, texts) if len(pairs) else np.zeros(0, bool)
        report.pairs_rejected_by_jaccard = int((~keep).sum())
        for x, y in pairs[keep]:
            _union(parent, x, y)
    return _roots(parent)


def _verify_pairs(space: DocSpace, cfg: DedupConfig, pairs: np.ndarray,
                  texts: dict[str, Path]) -> np.ndarray:
    """True Jaccard >= threshold per candidate pair, from the shingle sets of the texts.

    Memory: the unique shingle hashes (4 bytes each) of the candidate documents only.
    """
    needed = np.unique(pairs)
    sets: dict[int, np.ndarray] = {}
    offsets = space.offsets
    for i, shard in enumerate(space.shards):
        lo, hi = np.searchsorted(needed, [offsets[i], offsets[i + 1]])
        if lo == hi:
            continue
        if shard.name not in texts:
            raise FileNotFoundError(
                f"jaccard_check needs the texts of {shard.name}, an index shard whose documents "
                "are not available; run without jaccard_check or keep the old documents")
        rows = needed[lo:hi] - offsets[i]
        table = read_shard(texts[shard.name], columns=["text"]).take(pa.array(rows))
        data, offs = minhash.string_buffers(normalize(table.column("text"),
                                                      cfg.normalization))
        flat = np.empty(len(data) // 2 + len(rows) + 1, np.uint32)
        flat_offsets = np.empty(len(rows) + 1, np.int64)
        _shingle_sets(data, offs, cfg.ngram, flat, flat_offsets)
        for r, doc in enumerate(needed[lo:hi]):
            sets[int(doc)] = flat[flat_offsets[r]:flat_offsets[r + 1]]
    keep = np.zeros(len(pairs), dtype=bool)
    for k, (x, y) in enumerate(pairs):
        sa, sb = sets[int(x)], sets[int(y)]
        inter = len(np.intersect1d(sa, sb, assume_unique=True))
        union = len(sa) + len(sb) - inter
        keep[k] = union > 0 and inter / union >= cfg.jaccard_threshold
    return keep


def _column(space: DocSpace, name: str, dtype) -> tuple[np.ndarray, np.ndarray]:
    """(values, valid) of one signatures column across all shards, in document order."""
    values, valid = [], []
    for shard in space.shards:
        col = read_shard(shard.path, columns=[name]).column(name).combine_chunks()
        valid.append(np.asarray(col.is_valid(), dtype=bool))
        values.append(col.fill_null(0).to_numpy().astype(dtype, copy=False))
    if not values:
        return np.zeros(0, dtype), np.zeros(0, bool)
    return np.concatenate(values), np.concatenate(valid)


def choose_keepers(roots: np.ndarray, space: DocSpace, cfg: DedupConfig) -> np.ndarray:
    """keeper[d] for every document (itself when alone): prior first, then the keep rule."""
    n = len(roots)
    sizes = np.bincount(roots, minlength=n)
    members = np.flatnonzero(sizes[roots] > 1)
    keeper = np.arange(n, dtype=np.int64)
    if len(members) == 0:
        return keeper
    prior = np.concatenate([np.full(s.rows, s.prior, bool) for s in space.shards])
    if cfg.keep == "longest":
        rule = -_column(space, "n_chars", np.int64)[0][members]
    elif cfg.keep == "score":
        score, valid = _column(space, "score", np.float64)
        rule = np.where(valid & ~np.isnan(score), -score, np.inf)[members]
    else:
        rule = np.zeros(len(members))
    order = members[np.lexsort((members, rule, ~prior[members], roots[members]))]
    group_roots = roots[order]
    first = np.concatenate([[True], group_roots[1:] != group_roots[:-1]])
    keeper_of_root = np.empty(n, dtype=np.int64)
    keeper_of_root[group_roots[first]] = order[first]
    keeper[members] = keeper_of_root[roots[members]]
    return keeper


def _ids(space: DocSpace, docs: np.ndarray) -> dict[int, str]:
    """Document ids of (sorted, unique) document numbers."""
    out: dict[int, str] = {}
    offsets = space.offsets
    for i, shard in enumerate(space.shards):
        lo, hi = np.searchsorted(docs, [offsets[i], offsets[i + 1]])
        if lo < hi:
            ids = read_shard(shard.path, columns=["id"]).column("id")
            picked = ids.take(pa.array(docs[lo:hi] - offsets[i])).to_pylist()
            out.update(zip(docs[lo:hi].tolist(), picked, strict=True))
    return out


def _reasons(members: np.ndarray, keepers: np.ndarray, space: DocSpace,
             cfg: DedupConfig) -> np.ndarray:
    """Why each removed member goes: the strongest relation it has to its keeper."""
    reason = np.full(len(members), NEAR_DUPLICATE, dtype=object)
    for enabled, column, label in ((cfg.url, "url_hash", URL_DUPLICATE),
                                   (cfg.exact, "text_hash", EXACT_DUPLICATE)):
        if enabled:
            values, valid = _column(space, column, np.uint64)
            same = valid[members] & valid[keepers] & (values[members] == values[keepers])
            reason[same] = label
    return reason


def write_clusters(space: DocSpace, cfg: DedupConfig, buckets_dir: Path, partitions: int,
                   out_dir: Path, texts: dict[str, Path], key: str,
                   link: Callable[..., np.ndarray] | None = None) -> ClusterReport:
    """Cluster every document and write one ``dup_clusters`` shard per new shard.

    ``link`` finds the roots (default: partition by partition here; the Ray backend passes
    one that links partitions in tasks).
    """
    t0 = time.perf_counter()
    report = ClusterReport(documents=space.n_docs,
                           new_documents=sum(s.rows for s in space.shards if not s.prior))
    roots = (link or _link)(space, cfg, buckets_dir, partitions, texts, report)
    keeper = choose_keepers(roots, space, cfg)
    sizes = np.bincount(roots, minlength=len(roots))
    in_cluster = sizes[roots] > 1
    offsets = space.offsets
    new_mask = np.concatenate([np.full(s.rows, not s.prior, bool) for s in space.shards]) \
        if space.shards else np.zeros(0, bool)
    members = np.flatnonzero(in_cluster & new_mask)
    removed = members[keeper[members] != members]
    reasons = _reasons(removed, keeper[removed], space, cfg)
    reason_of = dict(zip(removed.tolist(), reasons.tolist(), strict=True))
    ids = _ids(space, np.unique(np.concatenate([members, keeper[members]])))
    cluster_roots = np.unique(roots[members])
    report.clusters = len(cluster_roots)
    report.size_histogram = dict(Counter(sizes[cluster_roots].tolist()))
    report.removed = Counter(reasons.tolist())
    out_dir.mkdir(parents=True, exist_ok=True)
    for i, shard in enumerate(space.shards):
        if shard.prior:
            continue
        lo, hi = np.searchsorted(members, [offsets[i], offsets[i + 1]])
        docs = members[lo:hi]
        kept_by = keeper[docs]
        is_keeper = kept_by == docs
        table = pa.table({
            "row": pa.array(docs - offsets[i], pa.int64()),
            "id": pa.array([ids[d] for d in docs.tolist()], pa.string()),
            "dup_cluster": pa.array([ids[k] for k in kept_by.tolist()], pa.string()),
            "dup_cluster_size": pa.array(sizes[roots[docs]], pa.int64()),
            "duplicate_of": pa.array([None if own else ids[k] for k, own
                                      in zip(kept_by.tolist(), is_keeper.tolist(),
                                             strict=True)], pa.string()),
            "reason": pa.array([None if own else reason_of[d] for d, own
                                in zip(docs.tolist(), is_keeper.tolist(), strict=True)],
                               pa.string()),
        })
        info = write_shard(table, out_dir / shard.name, DUP_CLUSTERS)
        n_removed = int((~is_keeper).sum())
        report.per_shard[shard.name] = {"documents": shard.rows, "in_clusters": len(docs),
                                        "removed": n_removed}
        _record(out_dir, info.to_json(), shard, key)
    report.seconds = time.perf_counter() - t0
    return report


def _record(out_dir: Path, written: dict, shard: SignatureShard, key: str) -> None:
    """A manifest entry per clusters shard, in the shape the runner writes."""
    from curate.runner import input_ref

    new = Manifest(stage=STAGE_NAME, kind=DUP_CLUSTERS.name, kind_version=DUP_CLUSTERS.version,
                   library_version=__version__)
    with locked_manifest(out_dir, new) as manifest:
        manifest.shards[shard.name] = {
            **written, "rows_in": written["rows"], "rows_rejected": 0, "reject_reasons": {},
            "rejected": None,
            "inputs": [{"path": input_ref(shard.path, out_dir), "sha256": shard.sha256,
                        "bytes": shard.path.stat().st_size}],
            "config_hash": key, "resume_key": f"{STAGE_NAME}/{key}",
            "started_at": time.time(), "seconds": 0.0}
