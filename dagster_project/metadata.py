"""Materialization metadata and data-contract checks shared by every shard asset."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dagster as dg

from schemas import REJECTED, RecordKind, read_shard
from schemas.manifest import kept_rows
from schemas.validate import table_problems


def shard_metadata(out_dir: Path, entry: dict[str, Any], skipped: bool) -> dict[str, Any]:
    """Counts, bytes, reasons and a small markdown summary for one shard."""
    reasons = entry["reject_reasons"]
    rows = [f"| {r} | {n:,} |" for r, n in sorted(reasons.items(), key=lambda kv: -kv[1])]
    table = "\n".join(["| reason | rows |", "|---|---:|", *rows]) if rows else "nothing rejected"
    packed = "" if kept_rows(entry) == entry["rows"] else f" (as {entry['rows']:,} output rows)"
    summary = (f"**{entry['name']}**: {entry['rows_in']:,} rows in, {kept_rows(entry):,} kept"
               f"{packed}, "
               f"{entry['rows_rejected']:,} rejected"
               f"{' (unchanged, not recomputed)' if skipped else ''}\n\n{table}")
    return {
        "rows_in": dg.MetadataValue.int(entry["rows_in"]),
        "rows_kept": dg.MetadataValue.int(kept_rows(entry)),
        "rows_rejected": dg.MetadataValue.int(entry["rows_rejected"]),
        "bytes": dg.MetadataValue.int(entry["bytes"]),
        "sha256": dg.MetadataValue.text(entry["sha256"]),
        "reject_reasons": dg.MetadataValue.json(reasons),
        "shard": dg.MetadataValue.path(str(out_dir / entry["name"])),
        "recomputed": dg.MetadataValue.bool(not skipped),
        "seconds": dg.MetadataValue.float(float(entry["seconds"])),
        "summary": dg.MetadataValue.md(summary),
    }


def check_results(out_dir: Path, entry: dict[str, Any], kind: RecordKind, schema_check: str,
                  conservation_check: str) -> list[dg.AssetCheckResult]:
    """Schema of the written shards (re-read from disk) and row conservation."""
    problems = [f"{entry['name']}: {p}"
                for p in table_problems(read_shard(out_dir / entry["name"]), kind)]
    rejected = entry.get("rejected")
    if rejected:
        problems += [f"{rejected['name']}: {p}"
                     for p in table_problems(read_shard(out_dir / rejected["name"]), REJECTED)]
    n_rejected = rejected["rows"] if rejected else 0
    conserved = entry["rows_in"] == kept_rows(entry) + n_rejected
    return [
        dg.AssetCheckResult(
            check_name=schema_check, passed=not problems,
            metadata={"kind": f"{kind.name} v{kind.version}",
                      "problems": dg.MetadataValue.json(problems)}),
        dg.AssetCheckResult(
            check_name=conservation_check, passed=conserved,
            metadata={"rows_in": entry["rows_in"], "rows_kept": kept_rows(entry),
                      "rows_rejected": n_rejected}),
    ]
