"""Raw files in the landing folder -> ``documents`` shards, one partition per file."""
# No `from __future__ import annotations`: Dagster reads the config annotation at runtime.


from pathlib import Path

import dagster as dg

from curate.ingest import HF_MARKERS, INGEST, IngestConfig, plan_ingest, unit_for
from curate.runner import WorkUnit
from dagster_project.config import dagster_config, to_stage_config
from dagster_project.resources import DataRoot
from dagster_project.shard_asset import contract_checks, materialize_unit

DATASET = "web"
raw_files = dg.DynamicPartitionsDefinition(name="raw_files")
IngestRunConfig = dagster_config(IngestConfig)


def landing_files(landing: Path) -> list[str]:
    """Partition keys: ingestable files (and saved HF datasets) in the landing folder."""
    if not landing.is_dir():
        return []
    keys = []
    for unit in plan_ingest(landing):
        first = unit.inputs[0]
        item = first.parent if first.name in HF_MARKERS else first
        keys.append(item.relative_to(landing).as_posix())
    return sorted(keys)


def ingest_unit(landing: Path, key: str) -> WorkUnit:
    path = landing / key
    if not path.exists():
        raise dg.Failure(f"partition {key!r}: {path} no longer exists in the landing folder")
    return unit_for(path, landing)


@dg.asset(
    partitions_def=raw_files,
    group_name=DATASET,
    kinds={"arrow"},
    check_specs=contract_checks("raw_documents"),
    description="Documents parsed from raw JSONL / CSV / Parquet dumps; one partition per file, "
                "broken records kept in rejected/ with a reason.",
)
def raw_documents(context: dg.AssetExecutionContext, config: IngestRunConfig,
                  data: DataRoot) -> dg.MaterializeResult:
    unit = ingest_unit(data.landing_dir, context.partition_key)
    return materialize_unit(context, INGEST, unit, data.stage_dir(DATASET, INGEST.name),
                            to_stage_config(config, IngestConfig))


@dg.sensor(target=[raw_documents], minimum_interval_seconds=30,
           default_status=dg.DefaultSensorStatus.STOPPED,
           description="Adds a partition and requests a run for each new file in the landing "
                       "folder.")
def landing_sensor(context: dg.SensorEvaluationContext, data: DataRoot) -> dg.SensorResult:
    known = set(context.instance.get_dynamic_partitions(raw_files.name))
    new = [k for k in landing_files(data.landing_dir) if k not in known]
    return dg.SensorResult(
        run_requests=[dg.RunRequest(partition_key=k, run_key=k) for k in new],
        dynamic_partitions_requests=[raw_files.build_add_request(new)] if new else [],
    )
