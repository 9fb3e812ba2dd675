"""Deduplication of the language-tagged web documents: exact, URL and MinHash-LSH duplicates.

Three assets, one per kind of work in ``curate.dedup``:

* ``dedup_signatures`` (per WARC partition): each langid shard's MinHash signatures and hashes;
* ``dedup_clusters`` (global): buckets and clusters over every shard's signatures, choosing
  the document each cluster keeps;
* ``deduplicated_documents`` (per WARC partition): the langid shard without the duplicates,
  which go to rejected/ with their reason and the id of the document that was kept.
"""
# No `from __future__ import annotations`: Dagster reads the config annotations at runtime.

from pathlib import Path

import dagster as dg
import pyarrow.compute as pc
from pydantic import ValidationError

from curate.dedup.buckets import bucket_key, plan_partitions, read_done
from curate.dedup.clusters import STAGE_NAME as CLUSTERS_STAGE
from curate.dedup.clusters import cluster_key
from curate.dedup.config import DedupConfig
from curate.dedup.pipeline import (
    REMOVAL_CONFIG,
    DedupLayout,
    DedupReport,
    doc_space,
    removal_unit,
    run_global,
)
from curate.dedup.remove import REMOVE
from curate.dedup.signatures import SIGNATURES
from curate.ingest import shard_name_for
from curate.langid import LANGID
from curate.runner import WorkUnit, is_current
from dagster_project.assets.web import DATASET, language_tagged_documents, warc_files
from dagster_project.config import dagster_config
from dagster_project.plots import histogram_png, md_image
from dagster_project.resources import DataRoot
from dagster_project.shard_asset import contract_checks, materialize_unit
from schemas import read_manifest, read_shard

DedupRunConfig = dagster_config(DedupConfig)
BUCKETS_STAGE = "dedup_buckets"
COVER_CHECK = "clusters_cover_all_shards"
SAME_CONFIG = ("Give dedup_signatures, dedup_clusters and deduplicated_documents the same "
               "config: clusters are built from the signatures' settings and removal applies "
               "the clusters, so a knob set on one asset only is refused (or not applied).")


def dedup_layout(data: DataRoot) -> DedupLayout:
    """The dedup phases' folders under the data root's web dataset."""
    return DedupLayout(signatures=data.stage_dir(DATASET, SIGNATURES.name),
                       buckets=data.stage_dir(DATASET, BUCKETS_STAGE),
                       clusters=data.stage_dir(DATASET, CLUSTERS_STAGE),
                       documents=data.stage_dir(DATASET, REMOVE.name))


def dedup_config(config: dg.Config) -> DedupConfig:
    """The library's config (its cross-field rules included), or a clear step failure."""
    try:
        return DedupConfig.model_validate(config.model_dump())
    except ValidationError as exc:
        raise dg.Failure(f"invalid dedup config: {exc}") from None


def langid_unit(data: DataRoot, name: str) -> WorkUnit:
    """The unit over one langid shard (the documents every dedup phase reads)."""
    upstream = data.stage_dir(DATASET, LANGID.name)
    return WorkUnit(name, (upstream / name,), upstream)


def signed_units(data: DataRoot) -> list[WorkUnit]:
    """Units of every langid shard that has a signatures shard, in name order."""
    layout = dedup_layout(data)
    langid = read_manifest(data.stage_dir(DATASET, LANGID.name))
    signatures = read_manifest(layout.signatures)
    if langid is None or signatures is None:
        return []
    return [langid_unit(data, n) for n in sorted(set(langid.shards) & set(signatures.shards))]


def _shard_names(folder: Path) -> set[str]:
    manifest = read_manifest(folder)
    return set(manifest.shards) if manifest else set()


def expected_cluster_key(units: list[WorkUnit], layout: DedupLayout, cfg: DedupConfig) -> str:
    """The key ``run_global`` records for these signatures and settings."""
    space = doc_space(units, layout.signatures, None, "", cfg.signature_config().config_hash())
    return cluster_key(bucket_key(space, cfg, plan_partitions(space.n_docs, cfg)), cfg)


@dg.asset(partitions_def=warc_files, group_name=DATASET, kinds={"arrow"},
          deps=[language_tagged_documents], check_specs=contract_checks("dedup_signatures"),
          description="Per WARC file: MinHash signatures (bands x rows), exact-text and URL "
                      "hashes of the language-tagged documents, row-aligned with them. "
                      + SAME_CONFIG)
def dedup_signatures(context: dg.AssetExecutionContext, config: DedupRunConfig,
                     data: DataRoot) -> dg.MaterializeResult:
    cfg = dedup_config(config)
    unit = langid_unit(data, shard_name_for(context.partition_key))
    if not unit.inputs[0].is_file():
        raise dg.Failure(f"{unit.inputs[0]} is missing: materialize language_tagged_documents "
                         "first")
    return materialize_unit(context, SIGNATURES, unit, dedup_layout(data).signatures,
                            cfg.signature_config())


def _cover_check(units: list[WorkUnit], layout: DedupLayout) -> dg.AssetCheckResult:
    """Every input shard has a clusters shard; every removed row names a kept document."""
    recorded = _shard_names(layout.clusters)
    missing = [u.name for u in units
               if u.name not in recorded or not (layout.clusters / u.name).is_file()]
    kept: set[str] = set()
    references: list[tuple[str, str]] = []
    for unit in units:
        if unit.name in missing:
            continue
        table = read_shard(layout.clusters / unit.name, columns=["id", "duplicate_of"])
        removed = table.column("duplicate_of").is_valid()
        kept.update(table.filter(pc.invert(removed)).column("id").to_pylist())
        gone = table.filter(removed)
        references += [(unit.name, d) for d in gone.column("duplicate_of").to_pylist()]
    dangling = [f"{name}: duplicate_of {ref!r} is not a kept document"
                for name, ref in references if ref not in kept]
    return dg.AssetCheckResult(
        check_name=COVER_CHECK, passed=not missing and not dangling,
        metadata={"input_shards": len(units), "missing_shards": dg.MetadataValue.json(missing),
                  "removed_rows": len(references), "dangling": len(dangling),
                  "examples": dg.MetadataValue.json(dangling[:10])})


def _per_shard_table(per_shard: dict[str, dict[str, int]]) -> str:
    rows = [f"| {name} | {s['documents']:,} | {s['in_clusters']:,} | {s['removed']:,} | "
            f"{s['removed'] / s['documents'] if s['documents'] else 0.0:.1%} |"
            for name, s in sorted(per_shard.items())]
    return "\n".join(["| shard | documents | in clusters | removed | duplicate rate |",
                      "|---|---:|---:|---:|---:|", *rows])


@dg.asset(group_name=DATASET, kinds={"arrow"}, deps=[dedup_signatures],
          check_specs=[dg.AssetCheckSpec(
              COVER_CHECK, asset="dedup_clusters", blocking=True,
              description="Every input shard has a clusters shard, and every removed document "
                          "names a kept document as its duplicate_of.")],
          description="Global: the signatures of every WARC partition bucketed (on disk, "
                      "within memory_budget_mb) and clustered; each cluster keeps one document "
                      "(keep rule) and lists the others as exact, URL or near duplicates of it. "
                      "Unchanged inputs and settings reuse the previous result. " + SAME_CONFIG)
def dedup_clusters(context: dg.AssetExecutionContext, config: DedupRunConfig,
                   data: DataRoot) -> dg.MaterializeResult:
    cfg = dedup_config(config)
    layout = dedup_layout(data)
    units = signed_units(data)
    if not units:
        raise dg.Failure("no signatures shards: materialize dedup_signatures first")
    unsigned = sorted(_shard_names(data.stage_dir(DATASET, LANGID.name))
                      - {u.name for u in units})
    if unsigned:
        context.log.warning(f"langid shards without signatures (left out): {unsigned}")
    sig_cfg = cfg.signature_config()
    manifest = read_manifest(layout.signatures)
    stale = [u.name for u in units
             if not is_current(layout.signatures, manifest.shards.get(u.name), u, SIGNATURES,
                               sig_cfg)]
    if stale:
        raise dg.Failure(
            f"signatures of {', '.join(stale)} are out of date for these settings or their "
            "documents changed: materialize dedup_signatures for those partitions with this "
            "config first. " + SAME_CONFIG)
    try:
        report = run_global(units, layout, cfg, DedupReport())
    except (ValueError, FileNotFoundError) as exc:
        raise dg.Failure(f"dedup_clusters: {exc}") from None
    clusters = report.clusters
    assert clusters is not None
    if report.clusters_skipped:
        context.log.info("signatures and settings unchanged: clusters reused")
    context.log.info(report.summary())
    removed = dict(sorted(clusters.removed.items()))
    sizes = clusters.size_histogram
    counts = list(sizes.values())
    hist = histogram_png(sizes, title="duplicate clusters by size",
                         xlabel="documents in the cluster", ylabel="clusters",
                         log_x=max(sizes, default=0) > 30,
                         log_y=bool(counts) and max(counts) > 50 * min(counts))
    return dg.MaterializeResult(
        metadata={
            "documents": clusters.documents,
            "clusters": clusters.clusters,
            "removed": sum(removed.values()),
            "removed_by_reason": dg.MetadataValue.json(removed),
            "duplicate_rate": float(sum(removed.values()) / clusters.documents
                                    if clusters.documents else 0.0),
            "per_shard": dg.MetadataValue.md(_per_shard_table(clusters.per_shard)),
            "cluster_sizes": md_image(hist, "cluster sizes"),
            "size_histogram": dg.MetadataValue.json(
                {str(k): v for k, v in sorted(clusters.size_histogram.items())}),
            "shards": len(units),
            "bucket_partitions": int(report.buckets.get("partitions", 0)),
            "recomputed": not report.clusters_skipped,
            "clusters_dir": dg.MetadataValue.path(str(layout.clusters)),
            "summary": dg.MetadataValue.md(f"```\n{report.summary()}\n```"),
        },
        check_results=[_cover_check(units, layout)],
    )


@dg.asset(partitions_def=warc_files, group_name=DATASET, kinds={"arrow"},
          deps=[dedup_clusters], check_specs=contract_checks("deduplicated_documents"),
          description="Per WARC file: the language-tagged documents without their duplicates; "
                      "kept rows gain dup_cluster and dup_cluster_size, removed rows go to "
                      "rejected/ with the reason and duplicate_of (the kept document's id). "
                      + SAME_CONFIG)
def deduplicated_documents(context: dg.AssetExecutionContext, config: DedupRunConfig,
                           data: DataRoot) -> dg.MaterializeResult:
    cfg = dedup_config(config)
    layout = dedup_layout(data)
    unit = langid_unit(data, shard_name_for(context.partition_key))
    if not unit.inputs[0].is_file():
        raise dg.Failure(f"{unit.inputs[0]} is missing: materialize language_tagged_documents "
                         "first")
    clustered = sorted(_shard_names(layout.clusters))
    if unit.name not in clustered or not (layout.clusters / unit.name).is_file():
        raise dg.Failure(f"{layout.clusters / unit.name} is missing: materialize dedup_signatures "
                         "for this partition, then dedup_clusters")
    done = read_done(layout.clusters)
    try:
        expected = expected_cluster_key([langid_unit(data, n) for n in clustered], layout, cfg)
    except (ValueError, FileNotFoundError) as exc:
        raise dg.Failure(f"deduplicated_documents: {exc}") from None
    if done is None or done.get("key") != expected:
        raise dg.Failure("dedup_clusters is out of date: it was made with other settings or "
                         "from other signatures; materialize dedup_clusters with this config "
                         "first. " + SAME_CONFIG)
    result = materialize_unit(context, REMOVE, removal_unit(unit, layout), layout.documents,
                              REMOVAL_CONFIG)
    meta = result.metadata or {}
    rows_in = meta["rows_in"].value
    rate = meta["rows_rejected"].value / rows_in if rows_in else 0.0
    return dg.MaterializeResult(metadata={**meta, "duplicate_rate": float(rate)},
                                check_results=result.check_results)
