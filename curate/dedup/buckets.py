"""Phase 2 (out of core): scatter every dedup key into on-disk partitions by key hash.

A key is a 64-bit value two documents share when they must be linked: an LSH band (bands x
rows slice of the signature), the exact-text hash, or the URL hash, each salted by its kind.
Equal keys always land in the same partition, so phase 3 can find every group of equal keys
by sorting one partition at a time, never holding all keys in memory.

Documents are numbered globally in a canonical order (earlier-index shards first, then the
new shards, each by name, rows in order), which makes every later choice (links, cluster
roots, the first-seen keeper) independent of worker count and of the order shards were given.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from curate.dedup import minhash
from curate.dedup.config import DedupConfig
from curate.dedup.signatures import signature_matrix
from schemas import read_shard
from schemas.shards import atomic_write, fsync_dir, temp_name

EXACT, URL, BAND = 0, 1, 2
KIND_NAMES = {EXACT: "exact", URL: "url", BAND: "band"}
_SALTS = {EXACT: np.uint64(0x243F6A8885A308D3), URL: np.uint64(0x13198A2E03707344)}
BUCKET_SCHEMA = pa.schema([("key", pa.uint64()), ("doc", pa.int64()), ("kind", pa.uint8())])
DONE_NAME = "_done.json"
CLUSTER_BYTES_PER_DOC = 48
"""Phase 3 keeps, per document: union-find parent, text and URL hashes, length or score, and
the keeper's bookkeeping (8 bytes each, with headroom)."""
BYTES_PER_KEY = 48
"""Phase 3 sorts one partition: key, doc, kind, the sort order and the sorted copies."""


@dataclass(frozen=True)
class SignatureShard:
    """One shard of signatures in the global document numbering."""

    name: str
    path: Path
    rows: int
    sha256: str
    prior: bool
    """From the index of an earlier run: never removed, and wins any cluster it is in."""


@dataclass(frozen=True)
class DocSpace:
    """The shards in canonical order and where each one's documents start."""

    shards: tuple[SignatureShard, ...]

    @property
    def offsets(self) -> np.ndarray:
        return np.concatenate([[0], np.cumsum([s.rows for s in self.shards])]).astype(np.int64)

    @property
    def n_docs(self) -> int:
        return int(sum(s.rows for s in self.shards))

    def fingerprint(self) -> str:
        """Changes whenever any shard's content, name, role or position does."""
        parts = [f"{s.name}:{s.sha256}:{int(s.prior)}" for s in self.shards]
        return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def keys_per_doc(cfg: DedupConfig) -> int:
    return cfg.bands * cfg.minhash + cfg.exact + cfg.url


def plan_partitions(n_docs: int, cfg: DedupConfig) -> int:
    """Partitions so one partition's sort plus the per-document arrays fit the budget.

    memory ~= CLUSTER_BYTES_PER_DOC * N + BYTES_PER_KEY * N * keys_per_doc / partitions
    (for 14 bands + exact + URL: 48 B/doc + 768 B/doc/partitions).
    """
    if cfg.partitions:
        return cfg.partitions
    budget = cfg.memory_budget_mb * 2**20
    fixed = CLUSTER_BYTES_PER_DOC * n_docs
    room = budget - fixed - 32 * 2**20  # interpreter, Arrow buffers, one shard of keys
    need = BYTES_PER_KEY * n_docs * keys_per_doc(cfg)
    if room <= need / 1024:
        minimum = (fixed + 32 * 2**20 + need / 1024) / 2**20
        raise ValueError(f"memory_budget_mb={cfg.memory_budget_mb} is too small for "
                         f"{n_docs:,} documents; give at least {math.ceil(minimum)}")
    return max(1, math.ceil(need / room))


def _mix(values: np.ndarray, salt: np.uint64) -> np.ndarray:
    """splitmix64 finaliser of value ^ salt: a well-spread key per kind."""
    with np.errstate(over="ignore"):
        z = values ^ salt
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def shard_keys(table: pa.Table, first_doc: int, cfg: DedupConfig,
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(keys, docs, kinds) of one signatures shard."""
    n = table.num_rows
    docs = np.arange(first_doc, first_doc + n, dtype=np.int64)
    keys, owners, kinds = [], [], []
    for enabled, column, kind in ((cfg.exact, "text_hash", EXACT), (cfg.url, "url_hash", URL)):
        if not enabled:
            continue
        col = table.column(column).combine_chunks()
        present = np.asarray(col.is_valid(), dtype=bool)
        keys.append(_mix(col.fill_null(0).to_numpy()[present], _SALTS[kind]))
        owners.append(docs[present])
        kinds.append(np.full(int(present.sum()), kind, np.uint8))
    if cfg.minhash:
        has_shingles = table.column("n_shingles").to_numpy() > 0
        sig = signature_matrix(table, cfg.num_perm)[has_shingles]
        band = minhash.band_keys(sig, cfg.bands, cfg.rows)
        keys.append(band.reshape(-1))
        owners.append(np.repeat(docs[has_shingles], cfg.bands))
        kinds.append(np.full(band.size, BAND, np.uint8))
    return (np.concatenate(keys) if keys else np.zeros(0, np.uint64),
            np.concatenate(owners) if owners else np.zeros(0, np.int64),
            np.concatenate(kinds) if kinds else np.zeros(0, np.uint8))


def partition_path(out_dir: Path, partition: int) -> Path:
    return out_dir / f"part-{partition:05d}.arrows"


def bucket_key(space: DocSpace, cfg: DedupConfig, partitions: int) -> str:
    """What the partitions depend on: the documents, the key settings, the partition count."""
    settings = {k: getattr(cfg, k) for k in ("exact", "url", "minhash", "bands", "rows")}
    blob = json.dumps([space.fingerprint(), settings, partitions], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def read_done(folder: Path) -> dict | None:
    path = folder / DONE_NAME
    return json.loads(path.read_text()) if path.exists() else None


def write_done(folder: Path, record: dict) -> None:
    """The phase's completion record, written last and atomically: its presence means done."""
    text = json.dumps(record, indent=2, sort_keys=True) + "\n"
    atomic_write(folder / DONE_NAME, lambda f: f.write(text.encode()))


def scatter_shard(path: Path, first_doc: int, cfg: DedupConfig, partitions: int,
                  ) -> tuple[list[pa.RecordBatch | None], np.ndarray, dict[str, int]]:
    """One signatures shard's keys split by partition (``None`` where it has none), the
    per-partition counts and the per-kind counts: the map side of the scatter."""
    keys, docs, kinds = shard_keys(read_shard(path), first_doc, cfg)
    by_kind = {name: int(np.count_nonzero(kinds == kind)) for kind, name in KIND_NAMES.items()}
    part = (keys % np.uint64(partitions)).astype(np.int64)
    order = np.argsort(part, kind="stable")
    sizes = np.bincount(part, minlength=partitions)
    bounds = np.concatenate([[0], np.cumsum(sizes)])
    pieces: list[pa.RecordBatch | None] = [None] * partitions
    for p in np.flatnonzero(sizes):
        take = order[bounds[p]:bounds[p + 1]]
        pieces[p] = pa.record_batch(
            [pa.array(keys[take]), pa.array(docs[take]), pa.array(kinds[take])],
            schema=BUCKET_SCHEMA)
    return pieces, sizes, by_kind


def buckets_record(space: DocSpace, cfg: DedupConfig, partitions: int, counts: np.ndarray,
                   by_kind: dict[str, int]) -> dict:
    """The completion record of the bucket phase."""
    return {"key": bucket_key(space, cfg, partitions), "partitions": partitions,
            "documents": space.n_docs, "keys": int(counts.sum()), "keys_by_kind": by_kind,
            "largest_partition": int(counts.max(initial=0))}


def write_buckets(space: DocSpace, cfg: DedupConfig, out_dir: Path, partitions: int) -> dict:
    """Scatter all keys into ``partitions`` files; returns the completion record."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / DONE_NAME).unlink(missing_ok=True)
    for stale in out_dir.glob("*.arrows"):
        stale.unlink()
    temps = [temp_name(partition_path(out_dir, p)) for p in range(partitions)]
    sinks = [pa.OSFile(str(t), "wb") for t in temps]
    writers = [pa.ipc.new_stream(s, BUCKET_SCHEMA) for s in sinks]
    counts = np.zeros(partitions, dtype=np.int64)
    by_kind = dict.fromkeys(KIND_NAMES.values(), 0)
    try:
        for shard, first in zip(space.shards, space.offsets[:-1], strict=True):
            pieces, sizes, shard_by_kind = scatter_shard(shard.path, int(first), cfg,
                                                         partitions)
            for p, piece in enumerate(pieces):
                if piece is not None:
                    writers[p].write_batch(piece)
            for name, n in shard_by_kind.items():
                by_kind[name] += n
            counts += sizes
        for writer, sink in zip(writers, sinks, strict=True):
            writer.close()
            sink.close()
        for p, tmp in enumerate(temps):
            os.replace(tmp, partition_path(out_dir, p))
    except BaseException:
        for tmp in temps:
            tmp.unlink(missing_ok=True)
        raise
    fsync_dir(out_dir)
    record = buckets_record(space, cfg, partitions, counts, by_kind)
    write_done(out_dir, record)
    return record


def read_partition(out_dir: Path, partition: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    with pa.memory_map(str(partition_path(out_dir, partition))) as source:
        table = pa.ipc.open_stream(source).read_all()
    if table.num_rows == 0:
        return np.zeros(0, np.uint64), np.zeros(0, np.int64), np.zeros(0, np.uint8)
    return tuple(table.column(c).to_numpy() for c in ("key", "doc", "kind"))  # type: ignore[return-value]
