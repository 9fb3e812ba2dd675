"""What every per-shard asset does: run one unit of a stage, then report and check it."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from curate.config import StageConfig
from curate.runner import Stage, WorkUnit, run_unit
from dagster_project.metadata import check_results, shard_metadata

SCHEMA_CHECK = "schema"
CONSERVATION_CHECK = "rows_conserved"


def contract_checks(asset: str) -> list[dg.AssetCheckSpec]:
    """The data-contract checks a shard asset declares; blocking, so bad data stops here."""
    return [
        dg.AssetCheckSpec(SCHEMA_CHECK, asset=asset, blocking=True,
                          description="Shard and rejected rows match their record kinds."),
        dg.AssetCheckSpec(CONSERVATION_CHECK, asset=asset, blocking=True,
                          description="rows in == rows kept + rows rejected."),
    ]


def materialize_unit(context: dg.AssetExecutionContext, stage: Stage, unit: WorkUnit,
                     out_dir: Path, cfg: StageConfig) -> dg.MaterializeResult:
    """Run (or skip, if unchanged) one unit; fail the step with the recorded error."""
    result = run_unit(stage, unit, out_dir, cfg)
    if result.error is not None:
        raise dg.Failure(description=f"{unit.name}: {result.error}",
                         metadata={"traceback": dg.MetadataValue.text(result.traceback or "")})
    if result.skipped:
        context.log.info(f"{unit.name} unchanged since the last run; kept as is")
    entry = result.entry
    assert entry is not None
    return dg.MaterializeResult(
        metadata=shard_metadata(out_dir, entry, skipped=result.skipped),
        check_results=check_results(out_dir, entry, stage.output_kind, SCHEMA_CHECK,
                                    CONSERVATION_CHECK),
    )
