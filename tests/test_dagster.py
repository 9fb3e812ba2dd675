"""The Dagster skeleton: definitions load, the ingest asset materializes per partition with
checks and metadata, the sensor finds new files, and the launchpad config is the stage's."""

from __future__ import annotations

import os
import subprocess
import sys

import dagster as dg
import pytest

from curate.ingest import IngestConfig
from dagster_project.assets.ingest import IngestRunConfig, landing_sensor, raw_documents, raw_files
from dagster_project.definitions import defs
from dagster_project.home import ensure_dagster_home
from dagster_project.resources import DataRoot
from schemas import read_shard

from .conftest import PROJECT_ROOT, write_jsonl


def test_definitions_load():
    dg.Definitions.validate_loadable(defs)
    keys = {k.to_user_string() for k in defs.resolve_all_asset_keys()}
    assert {"demo_site", "raw_documents", "crawled_warcs", "extracted_documents",
            "language_tagged_documents"} <= keys


def test_dagster_cli_validates_the_code_location(tmp_path):
    env = {**os.environ, "DAGSTER_HOME": str(ensure_dagster_home(tmp_path / "home"))}
    proc = subprocess.run([sys.executable, "-m", "dagster", "definitions", "validate", "-m",
                           "dagster_project.definitions"], capture_output=True, text=True,
                          cwd=PROJECT_ROOT, env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_launchpad_config_is_the_stage_config():
    assert set(IngestRunConfig.model_fields) == set(IngestConfig.model_fields)
    assert IngestRunConfig().model_dump() == IngestConfig().model_dump()


def test_dagster_home_disables_telemetry(tmp_path):
    home = ensure_dagster_home(tmp_path / "h")
    assert home.is_absolute()
    assert "enabled: false" in (home / "dagster.yaml").read_text()


@pytest.fixture
def landing(tmp_path):
    root = tmp_path / "data"
    write_jsonl(root / "raw" / "one.jsonl", [{"id": str(i), "text": f"doc {i}"} for i in range(5)])
    with open(root / "raw" / "one.jsonl", "a") as f:
        f.write("{oops\n")
    return root


def test_partition_materializes_with_checks_and_metadata(landing):
    resources = {"data": DataRoot(root=str(landing))}
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(raw_files.name, ["one.jsonl"])
        result = dg.materialize([raw_documents], partition_key="one.jsonl", instance=instance,
                                resources=resources)
        assert result.success
        checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
        assert checks == {"schema": True, "rows_conserved": True}
        (mat,) = result.asset_materializations_for_node("raw_documents")
        meta = mat.metadata
        assert (meta["rows_in"].value, meta["rows_kept"].value,
                meta["rows_rejected"].value) == (6, 5, 1)
        assert meta["reject_reasons"].value == {"invalid_json": 1}
        assert "5 kept" in meta["summary"].value
        shard = landing / "web" / "ingest" / "part-one.jsonl.arrow"
        assert read_shard(shard).num_rows == 5

        again = dg.materialize([raw_documents], partition_key="one.jsonl", instance=instance,
                               resources=resources)
        (mat2,) = again.asset_materializations_for_node("raw_documents")
        assert mat2.metadata["recomputed"].value is False
        assert mat2.metadata["sha256"].value == meta["sha256"].value


def test_missing_partition_file_fails_clearly(landing):
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(raw_files.name, ["gone.jsonl"])
        result = dg.materialize([raw_documents], partition_key="gone.jsonl", instance=instance,
                                resources={"data": DataRoot(root=str(landing))},
                                raise_on_error=False)
        assert not result.success
        failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
        assert "no longer exists in the landing folder" in str(failure.event_specific_data)


def test_sensor_adds_partitions_for_new_files(landing):
    with dg.instance_for_test() as instance:
        ctx = dg.build_sensor_context(instance=instance,
                                      resources={"data": DataRoot(root=str(landing))})
        result = landing_sensor(ctx)
        assert [r.partition_key for r in result.run_requests] == ["one.jsonl"]
        instance.add_dynamic_partitions(raw_files.name, ["one.jsonl"])
        assert landing_sensor(ctx).run_requests == []
