"""Phase 4 (a map): apply the clusters to one documents shard.

Kept rows gain ``dup_cluster`` (the id of the cluster's kept document; their own id when they
have no duplicate) and ``dup_cluster_size``. Removed rows go to ``rejected/`` with the reason
(exact, URL or near duplicate) and ``duplicate_of``, the id of the document that was kept.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from curate.config import StageConfig
from curate.runner import Stage, StageOutput, WorkUnit
from schemas import DOCUMENTS, read_shard

STAGE_NAME = "dedup"


def _set(table: pa.Table, name: str, values: pa.Array) -> pa.Table:
    i = table.schema.get_field_index(name)
    return table.set_column(i, name, values) if i >= 0 else table.append_column(name, values)


def apply_clusters(docs: pa.Table, clusters: pa.Table) -> StageOutput:
    """Split one documents table by its clusters table (rows listed there are in clusters)."""
    n = docs.num_rows
    rows = clusters.column("row").to_numpy()
    if len(rows) and (rows.min() < 0 or rows.max() >= n):
        raise ValueError(f"clusters name row {int(rows.max())} but the shard has {n} rows")
    listed_ids = docs.column("id").take(pa.array(rows, pa.int64()))
    if not listed_ids.equals(clusters.column("id")):
        raise ValueError("the clusters shard does not match this documents shard (ids "
                         "differ): re-run the dedup so signatures are recomputed")
    cluster = docs.column("id").combine_chunks().to_pylist()
    size = np.ones(n, dtype=np.int64)
    for r, c in zip(rows.tolist(), clusters.column("dup_cluster").to_pylist(), strict=True):
        cluster[r] = c
    size[rows] = clusters.column("dup_cluster_size").to_numpy()
    removed = np.zeros(n, dtype=bool)
    dup_of = clusters.column("duplicate_of")
    removed_rows = rows[np.asarray(dup_of.is_valid(), dtype=bool)]
    removed[removed_rows] = True
    tagged = _set(_set(docs, "dup_cluster", pa.array(cluster, pa.string())),
                  "dup_cluster_size", pa.array(size))
    keep_mask = pa.array(~removed)
    kept = tagged.filter(keep_mask)
    gone = clusters.filter(pc.is_valid(dup_of))
    order = np.argsort(gone.column("row").to_numpy(), kind="stable")
    gone = gone.take(pa.array(order))
    rejected = tagged.take(pa.array(gone.column("row").to_numpy()))
    detail = pc.binary_join_element_wise(
        "duplicate of", gone.column("duplicate_of"), "(cluster of",
        pc.binary_join_element_wise(pc.cast(gone.column("dup_cluster_size"), pa.string()),
                                    "documents)", " "), " ")
    rejected = (rejected
                .append_column("reject_stage", pa.repeat(pa.scalar(STAGE_NAME), len(gone)))
                .append_column("reject_reason", gone.column("reason"))
                .append_column("reject_detail", detail)
                .append_column("duplicate_of", gone.column("duplicate_of")))
    return StageOutput(kept=kept, rejected=rejected, rows_in=n)


def remove_unit(unit: WorkUnit, cfg: StageConfig) -> StageOutput:
    """Inputs: the documents shard, then its clusters shard."""
    docs_path, clusters_path = unit.inputs
    return apply_clusters(read_shard(docs_path), read_shard(clusters_path))


REMOVE = Stage(name=STAGE_NAME, version="1", output_kind=DOCUMENTS, process=remove_unit)
