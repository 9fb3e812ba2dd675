"""Sensors, schedules and retries on a real instance: a crawl's WARC file (and one dropped
in from elsewhere) becomes a partition and a run through the per-file stages; the recrawl
schedule fetches the site again into a new WARC file, which the sensor picks up next."""

from __future__ import annotations

import fcntl
import shutil
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import pytest

from dagster_project.assets.demo import demo_site
from dagster_project.assets.training import POOL, TRAINING_ASSETS
from dagster_project.assets.web import archive_frontier, crawled_warcs, warc_dir, warc_files
from dagster_project.automation import WARC_CHAIN, recrawl_schedule, warc_sensor
from dagster_project.definitions import defs
from dagster_project.home import ensure_dagster_home
from dagster_project.resources import DataRoot

from .system_deps import free_port

pytestmark = pytest.mark.slow
ASSETS = [demo_site, crawled_warcs, *WARC_CHAIN]


def test_definitions_register_the_automation():
    assert warc_sensor in defs.sensors
    assert recrawl_schedule in defs.schedules
    assert recrawl_schedule.cron_schedule == "0 3 * * 0"
    policy = crawled_warcs.op.retry_policy  # the crawl is the network-bound asset
    assert policy is not None and policy.max_retries >= 2
    assert policy.backoff == dg.Backoff.EXPONENTIAL


def test_a_new_home_runs_one_training_at_a_time(tmp_path, monkeypatch):
    """Every training asset is in the gpu pool, and a new DAGSTER_HOME limits pools to one."""
    assert {a.op.pool for a in TRAINING_ASSETS} == {POOL}
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))  # restored after the test
    with dg.DagsterInstance.from_config(str(ensure_dagster_home())) as instance:
        assert instance.get_concurrency_config().pool_config.default_pool_limit == 1


def _materialize(instance, resources, selection, partition_key=None, run_config=None):
    result = dg.materialize(ASSETS, selection=selection, partition_key=partition_key,
                            instance=instance, resources=resources, run_config=run_config,
                            raise_on_error=False)
    failures = [str(e.event_specific_data.error.message) for e in result.all_events
                if e.is_step_failure]
    assert result.success, failures
    return result


def _tick(instance, resources) -> dg.SensorResult:
    return warc_sensor(dg.build_sensor_context(instance=instance, resources=resources))


def test_sensor_and_recrawl_schedule_on_a_real_instance(tmp_path: Path):
    data = DataRoot(root=str(tmp_path / "data"))
    resources = {"data": data}
    with dg.instance_for_test() as instance:
        site = {"n_articles": 4, "base_url": f"http://127.0.0.1:{free_port()}"}
        _materialize(instance, resources, [demo_site],
                     run_config={"ops": {"demo_site": {"config": site}}})
        _materialize(instance, resources, [crawled_warcs])
        first = "crawl-00000.warc.gz"
        assert instance.get_dynamic_partitions(warc_files.name) == [first]

        # the crawl's WARC file: already a partition, so only a run is requested
        tick = _tick(instance, resources)
        assert [(r.partition_key, r.run_key) for r in tick.run_requests] == [(first, first)]
        assert tick.dynamic_partitions_requests == []
        result = _materialize(instance, resources, WARC_CHAIN, first)
        assert {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()
                } == {a.key.to_user_string() for a in WARC_CHAIN}
        assert all(c.passed for c in result.get_asset_check_evaluations())
        assert _tick(instance, resources).run_requests == []  # nothing new: nothing asked

        # the schedule's run: a fresh frontier, every page fetched again into a new file
        context = dg.build_schedule_context(
            instance=instance, scheduled_execution_time=datetime(2026, 1, 4, 3, tzinfo=UTC))
        request = recrawl_schedule(context)
        assert request.run_key == "recrawl-2026-01-04T03:00"
        crawl = _materialize(instance, resources, [crawled_warcs],
                             run_config=request.run_config)
        pages = crawl.asset_materializations_for_node("crawled_warcs")[0].metadata["pages"]
        assert pages.value > 4  # the site again, not an empty continuation
        assert len(list((tmp_path / "data" / "web" / "crawl" / "frontiers").iterdir())) == 1
        second = "crawl-00001.warc.gz"
        tick = _tick(instance, resources)
        assert [r.partition_key for r in tick.run_requests] == [second]

        # a WARC file from another crawler, dropped into the folder: partition and run
        dropped = "other-00000.warc.gz"
        shutil.copyfile(warc_dir(data) / first, warc_dir(data) / dropped)
        tick = _tick(instance, resources)
        assert [r.partition_key for r in tick.run_requests] == [second, dropped]
        (add,) = tick.dynamic_partitions_requests
        assert list(add.partition_keys) == [dropped]
        instance.add_dynamic_partitions(warc_files.name, list(add.partition_keys))
        _materialize(instance, resources, WARC_CHAIN, dropped)
        assert [r.partition_key for r in _tick(instance, resources).run_requests] == [second]


def test_recrawl_keeps_the_old_frontier_and_waits_for_a_running_crawl(tmp_path: Path):
    out = tmp_path / "crawl"
    out.mkdir()
    assert archive_frontier(out) is None  # nothing crawled yet: nothing to keep
    (out / "frontier.sqlite").write_bytes(b"db")
    (out / "frontier.sqlite-wal").write_bytes(b"wal")
    with open(out / ".lock", "wb") as held:  # what a running crawl holds
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(dg.Failure, match="a crawl is running"):
            archive_frontier(out)
    assert (out / "frontier.sqlite").read_bytes() == b"db"
    archived = archive_frontier(out)
    assert archived is not None and archived.read_bytes() == b"db"
    assert Path(f"{archived}-wal").read_bytes() == b"wal"
    assert not list(out.glob("frontier.sqlite*"))
