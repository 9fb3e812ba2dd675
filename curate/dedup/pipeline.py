"""The four dedup phases end to end, each resumable on its own.

1. signatures (map, per shard; the runner skips unchanged shards);
2. buckets (global scatter to on-disk partitions; skipped when its record matches);
3. clusters (global; skipped when its record matches);
4. removal (map, per shard; skipped per shard when its inputs are unchanged).

An interrupted run therefore redoes only the phase it was in (and only the unfinished shards
of a map phase). With ``index_dir``, the signatures of earlier runs' kept documents take part
as documents that always win their clusters, and this run's kept signatures are added to the
index afterwards under ``index_label``.

With an output folder on an object store (``s3://...``), the map phases run through the
runner as any stage does (workers fetch, upload to temp keys, the driver publishes), and the
global phases run in a local workspace on the driver's machine: the signatures are fetched,
buckets and clusters computed there and uploaded, their completion records last.
"""

from __future__ import annotations

import functools
import json
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa

from curate.config import StageConfig
from curate.dedup.buckets import (
    DONE_NAME,
    DocSpace,
    SignatureShard,
    bucket_key,
    partition_path,
    plan_partitions,
    read_done,
    write_buckets,
    write_done,
)
from curate.dedup.clusters import ClusterReport, cluster_key, write_clusters
from curate.dedup.config import DedupConfig
from curate.dedup.remove import REMOVE
from curate.dedup.signatures import SIGNATURES
from curate.runner import Backend, RunReport, WorkUnit, plan_shards, resolve_backend, run_stage
from schemas import MINHASH_SIGNATURES, read_manifest, read_shard, write_shard
from schemas.manifest import MANIFEST_NAME, Manifest, locked_manifest
from schemas.shards import is_temp_file
from schemas.storage import StorePath, location
from schemas.version import __version__

INDEX_STAGE = "dedup_index"
REMOVAL_CONFIG = StageConfig()
"""Removal depends only on its two input shards (their hashes are in its resume key), so a
setting that leaves the clusters unchanged never redoes it."""
LABEL_SEPARATOR = "__"


@dataclass(frozen=True)
class DedupLayout:
    """Where each phase writes: one output folder for the CLI, data-root stage folders for
    Dagster."""

    signatures: Path | StorePath
    buckets: Path | StorePath
    clusters: Path | StorePath
    documents: Path | StorePath
    ingested: Path | StorePath | None = None

    @classmethod
    def under(cls, root: Path | StorePath | str) -> DedupLayout:
        root = location(root)
        return cls(root / "signatures", root / "buckets", root / "clusters", root / "documents",
                   root / "ingested")


@dataclass
class DedupReport:
    """Every phase's outcome, for the CLI summary and Dagster metadata."""

    ingest: RunReport | None = None
    signatures: RunReport | None = None
    buckets: dict = field(default_factory=dict)
    buckets_skipped: bool = False
    clusters: ClusterReport | None = None
    clusters_skipped: bool = False
    removal: RunReport | None = None
    phase_seconds: dict[str, float] = field(default_factory=dict)
    index_added: int = 0

    @property
    def ok(self) -> bool:
        return all(r is not None and r.ok for r in (self.signatures, self.removal))

    def summary(self) -> str:
        lines = ["dedup phases:"]
        if self.ingest is not None:
            i = self.ingest
            lines.append(f"  ingested:   {i.rows_in:,} raw rows, {i.rows_kept:,} documents, "
                         f"{i.rows_rejected:,} rejected (see {i.output_dir}/rejected)")
        for phase, secs in self.phase_seconds.items():
            lines.append(f"  {phase:<11} {secs:8.2f} s")
        if self.signatures is not None:
            s = self.signatures
            lines.append(f"  signatures: {s.units} shards ({s.done} computed, {s.skipped} "
                         f"unchanged), {s.rows_in:,} documents")
        if self.buckets:
            b = self.buckets
            lines.append(f"  buckets:    {b['keys']:,} keys in {b['partitions']} partition(s)"
                         f"{' (unchanged, reused)' if self.buckets_skipped else ''}")
        if self.clusters is not None:
            c = self.clusters
            reused = " (unchanged, reused)" if self.clusters_skipped else ""
            lines.append(f"  clusters:   {c.clusters:,} clusters among {c.documents:,} documents "
                         f"({c.new_documents:,} new){reused}")
            for reason, n in sorted(c.removed.items()):
                lines.append(f"              {n:>10,}  {reason}")
            if c.candidate_pairs:
                lines.append(f"  jaccard check: {c.candidate_pairs:,} candidate pairs, "
                             f"{c.pairs_rejected_by_jaccard:,} below the threshold")
        if self.removal is not None:
            r = self.removal
            rate = r.rows_rejected / r.rows_in if r.rows_in else 0.0
            lines.append(f"  documents:  in {r.rows_in:,}  kept {r.rows_kept:,}  removed "
                         f"{r.rows_rejected:,} ({rate:.1%})")
            lines.append(f"  output:     {r.output_dir}")
            for unit, error in sorted(r.failures.items()):
                lines.append(f"  FAILED   {unit}: {error}")
        if self.signatures is not None and self.signatures.failures:
            for unit, error in sorted(self.signatures.failures.items()):
                lines.append(f"  FAILED (signatures) {unit}: {error}")
        if self.index_added:
            lines.append(f"  index:      {self.index_added:,} kept signatures added")
        return "\n".join(lines)


def plan_documents(input_path: Path, layout: DedupLayout, workers: int = 1,
                   progress: bool = False, report: DedupReport | None = None,
                   backend: Backend | str | None = None) -> list[WorkUnit]:
    """Units over a documents stage folder; raw files (JSONL with id/text, ...) are ingested
    into ``<output>/ingested`` first, so broken rows are recorded there, not lost."""
    input_path = location(input_path)
    if isinstance(input_path, StorePath):  # raw files on an object store are not read
        return plan_shards(input_path)
    if not input_path.exists():
        raise FileNotFoundError(f"input not found: {input_path}")
    if input_path.is_dir() and (input_path / MANIFEST_NAME).exists():
        return plan_shards(input_path)
    from curate.ingest import INGEST, IngestConfig, plan_ingest

    if layout.ingested is None:
        raise ValueError(f"{input_path} is not a documents stage folder")
    ingested = run_stage(INGEST, plan_ingest(input_path), layout.ingested, IngestConfig(),
                         workers=workers, progress=progress, backend=backend)
    if not ingested.ok:
        raise ValueError(f"ingesting {input_path} failed: {ingested.failures}")
    if report is not None:
        report.ingest = ingested
    return plan_shards(layout.ingested)


def _signature_shard(stage_dir: Path | StorePath, name: str, prior: bool,
                     manifest: Manifest | None = None) -> SignatureShard:
    manifest = manifest or read_manifest(stage_dir)
    entry = manifest.shards.get(name) if manifest else None
    if entry is None:
        raise FileNotFoundError(f"{stage_dir} has no shard {name} in its manifest")
    return SignatureShard(name, stage_dir / name, entry["rows"], entry["sha256"], prior)


def signature_settings(cfg: DedupConfig) -> str:
    """What makes two runs' signatures comparable: the signature stage's version (it changes
    with the hash definition) and the settings. An index made otherwise is refused."""
    return f"{SIGNATURES.version}-{cfg.signature_config().config_hash()}"


def doc_space(units: list[WorkUnit], signatures_dir: Path, index_dir: Path | None,
              label: str, signature_hash: str = "") -> DocSpace:
    """Index shards (other labels) first, then this run's shards, each by name."""
    prior: list[SignatureShard] = []
    manifest = read_manifest(index_dir) if index_dir is not None else None
    if manifest is not None:
        names = [n for n in sorted(manifest.shards) if not n.startswith(label + LABEL_SEPARATOR)]
        for name in names:
            made_with = manifest.shards[name].get("config_hash")
            if signature_hash and made_with != signature_hash:
                raise ValueError(
                    f"index shard {name} was made with other signature settings "
                    f"({made_with} != {signature_hash}: ngram, bands, rows, seed, scheme, "
                    "hash, normalisation or the signature version differ); use the same "
                    "settings or a new index")
        prior = [_signature_shard(index_dir, name, True) for name in names]
    signatures = read_manifest(signatures_dir)  # once, not per shard (a GET on a store)
    new = [_signature_shard(signatures_dir, u.name, False, signatures)
           for u in sorted(units, key=lambda u: u.name)]
    return DocSpace(tuple(prior + new))


def _clear(folder: Path) -> None:
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)


def run_signatures(units: list[WorkUnit], layout: DedupLayout, cfg: DedupConfig,
                   workers: int = 1, progress: bool = False, force: bool = False,
                   backend: Backend | str | None = None) -> RunReport:
    """Phase 1 over all units (unchanged shards are skipped)."""
    return run_stage(SIGNATURES, units, layout.signatures, cfg.signature_config(),
                     workers=workers, progress=progress, force=force, backend=backend)


def run_global(units: list[WorkUnit], layout: DedupLayout, cfg: DedupConfig,
               report: DedupReport, index_dir: Path | None = None, label: str = "",
               force: bool = False, backend: Backend | str | None = None) -> DedupReport:
    """Phases 2 and 3 over the signatures of ``units``; each skipped when its record matches.

    On the Ray backend both run as tasks (:mod:`curate.dedup.ray_dedup`), same results.
    """
    chosen = resolve_backend(backend)
    scatter, link = write_buckets, None
    if chosen.kind == "ray":
        from curate.dedup import ray_dedup

        scatter = functools.partial(ray_dedup.write_buckets, address=chosen.address)
        link = ray_dedup.make_link(chosen.address)
    space = doc_space(units, layout.signatures, index_dir, label,
                      signature_settings(cfg))
    t = time.perf_counter()
    partitions = plan_partitions(space.n_docs, cfg)
    bkey = bucket_key(space, cfg, partitions)
    done = read_done(layout.buckets)
    present = all(partition_path(layout.buckets, p).is_file() for p in range(partitions))
    if not force and done is not None and done["key"] == bkey and present:
        report.buckets, report.buckets_skipped = done, True
    else:
        report.buckets = scatter(space, cfg, layout.buckets, partitions)
    report.phase_seconds["buckets"] = time.perf_counter() - t

    t = time.perf_counter()
    ckey = cluster_key(bkey, cfg)
    done = read_done(layout.clusters)
    present = all((layout.clusters / s.name).is_file() for s in space.shards if not s.prior)
    if not force and done is not None and done["key"] == ckey and present:
        report.clusters, report.clusters_skipped = ClusterReport.from_json(done["report"]), True
    else:
        _clear(layout.clusters)
        texts = {u.name: u.inputs[0] for u in units}
        report.clusters = write_clusters(space, cfg, layout.buckets, partitions,
                                         layout.clusters, texts, ckey, link)
        write_done(layout.clusters, {"key": ckey, "report": report.clusters.to_json()})
    report.phase_seconds["clusters"] = time.perf_counter() - t
    return report


def _download(source: StorePath, dest: Path, names: list[str] | None = None) -> None:
    """The objects directly in ``source`` (or only ``names``) copied into ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    for key in source.files() if names is None else [source / n for n in names]:
        key.download(dest / key.name)


def _upload_folder(local: Path, dest: StorePath) -> None:
    """Replace ``dest`` by ``local``'s files: its completion record is deleted first and
    uploaded last (after the manifest), so the store never holds a record of a phase whose
    files are not all there; objects the new run did not write are deleted."""
    (dest / DONE_NAME).delete()
    files = sorted((p for p in local.rglob("*") if p.is_file() and not is_temp_file(p)
                    and p.name not in (".manifest.lock", DONE_NAME)),
                   key=lambda p: (p.name == MANIFEST_NAME, p.as_posix()))
    for path in files:
        (dest / path.relative_to(local).as_posix()).upload(path)
    written = {path.relative_to(local).as_posix() for path in files}
    for key in dest.files():
        if key.name not in written and key.name != DONE_NAME:
            key.delete()
    if (local / DONE_NAME).exists():
        (dest / DONE_NAME).upload(local / DONE_NAME)


def run_global_on_store(units: list[WorkUnit], layout: DedupLayout, cfg: DedupConfig,
                        report: DedupReport, force: bool = False) -> DedupReport:
    """Phases 2 and 3 for a layout on an object store. Skipped without a download when the
    stored clusters record matches; otherwise both phases run in a local workspace on this
    machine (the signatures fetched, buckets recomputed) and the folders are uploaded."""
    assert isinstance(layout.clusters, StorePath) and isinstance(layout.buckets, StorePath)
    space = doc_space(units, layout.signatures, None, "", signature_settings(cfg))
    bkey = bucket_key(space, cfg, plan_partitions(space.n_docs, cfg))
    record = layout.clusters / DONE_NAME
    done = json.loads(record.read_bytes()) if record.is_file() else None
    present = all((layout.clusters / s.name).is_file() for s in space.shards)
    if not force and done is not None and done["key"] == cluster_key(bkey, cfg) and present:
        buckets = layout.buckets / DONE_NAME
        report.buckets = json.loads(buckets.read_bytes()) if buckets.is_file() else {}
        report.buckets_skipped = report.clusters_skipped = True
        report.clusters = ClusterReport.from_json(done["report"])
        report.phase_seconds.update(buckets=0.0, clusters=0.0)
        return report
    with tempfile.TemporaryDirectory(prefix="curate-dedup-") as tmp:
        work = DedupLayout.under(Path(tmp))  # same relative layout: same manifest references
        assert isinstance(layout.signatures, StorePath)
        _download(layout.signatures, work.signatures, [MANIFEST_NAME, *(u.name for u in units)])
        run_global(units, work, cfg, report, force=True, backend="local")
        _upload_folder(work.buckets, layout.buckets)
        _upload_folder(work.clusters, layout.clusters)
    return report


def removal_unit(unit: WorkUnit, layout: DedupLayout) -> WorkUnit:
    """Phase 4's unit: the documents shard and its clusters shard."""
    return WorkUnit(unit.name, (unit.inputs[0], layout.clusters / unit.name), unit.base)


def run_dedup(input_path: Path, output_dir: Path, cfg: DedupConfig, workers: int = 1,
              index_dir: Path | None = None, index_label: str | None = None,
              progress: bool = False, force: bool = False,
              backend: Backend | str | None = None) -> DedupReport:
    """Deduplicate a documents dataset (or raw files) into ``output_dir``/documents; every
    phase runs on ``backend`` (default: the process default, see ``set_default_backend``)."""
    backend = resolve_backend(backend)
    layout = DedupLayout.under(output_dir)
    on_store = isinstance(layout.documents, StorePath)
    if on_store and index_dir is not None:
        raise ValueError("a dedup index needs a local output folder (not an object store)")
    report = DedupReport()
    label = index_label or (layout.documents.parent.name if on_store
                            else Path(output_dir).resolve().name)
    t = time.perf_counter()
    units = plan_documents(input_path, layout, workers, progress, report, backend)
    if not units:
        raise ValueError(f"no documents shards found under {input_path}")
    report.signatures = run_signatures(units, layout, cfg, workers, progress, force, backend)
    report.phase_seconds["signatures"] = time.perf_counter() - t
    if not report.signatures.ok:
        return report
    if on_store:
        run_global_on_store(units, layout, cfg, report, force)
    else:
        run_global(units, layout, cfg, report, index_dir, label, force, backend)
    t = time.perf_counter()
    report.removal = run_stage(REMOVE, [removal_unit(u, layout) for u in units],
                               layout.documents, REMOVAL_CONFIG, workers=workers,
                               progress=progress, force=force, backend=backend)
    report.phase_seconds["removal"] = time.perf_counter() - t
    if index_dir is not None and report.ok:
        report.index_added = update_index(index_dir, label, units, layout,
                                          signature_settings(cfg))
    return report


def update_index(index_dir: Path, label: str, units: list[WorkUnit], layout: DedupLayout,
                 signature_hash: str) -> int:
    """Add this run's kept documents' signatures to the index as ``<label>__<shard>``."""
    added = 0
    names = set()
    new = Manifest(stage=INDEX_STAGE, kind=MINHASH_SIGNATURES.name,
                   kind_version=MINHASH_SIGNATURES.version, library_version=__version__)
    for unit in units:
        sig = read_shard(layout.signatures / unit.name)
        clusters = read_shard(layout.clusters / unit.name)
        removed = clusters.filter(clusters.column("duplicate_of").is_valid())
        keep = np.ones(sig.num_rows, dtype=bool)
        keep[removed.column("row").to_numpy()] = False
        name = f"{label}{LABEL_SEPARATOR}{unit.name}"
        names.add(name)
        info = write_shard(sig.filter(pa.array(keep)), index_dir / name, MINHASH_SIGNATURES)
        added += info.rows
        with locked_manifest(index_dir, new) as manifest:
            manifest.shards[name] = {**info.to_json(), "rows_in": info.rows, "rows_rejected": 0,
                                     "reject_reasons": {}, "rejected": None, "inputs": [],
                                     "config_hash": signature_hash,
                                     "resume_key": f"{INDEX_STAGE}/{label}",
                                     "started_at": time.time(), "seconds": 0.0}
    with locked_manifest(index_dir, new) as manifest:
        for stale in [n for n in manifest.shards
                      if n.startswith(label + LABEL_SEPARATOR) and n not in names]:
            manifest.shards.pop(stale)
            (index_dir / stale).unlink(missing_ok=True)
    return added
