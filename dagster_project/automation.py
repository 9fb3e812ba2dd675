"""What runs without a person: new WARC files become partitions and runs; recrawls on a clock.

* ``warc_sensor`` watches the crawl's WARC folder (where ``crawled_warcs`` writes, and where
  WARC files from another crawler can be dropped). Each closed WARC file whose documents were
  never extracted becomes a ``warc_files`` partition (if it is not one yet) and a run of the
  per-file stages up to the MinHash signatures. The global dedup step and what follows it
  wait for a person (or a backfill): they need every partition at once.
* ``recrawl_schedule`` re-fetches the whole site weekly (``crawled_warcs`` with
  ``recrawl: true``); the new WARC files it writes are what the sensor then picks up.

Both start stopped: turn them on in the UI (Automation) or with ``dagster sensor start``.
"""

from __future__ import annotations

import dagster as dg

from dagster_project.assets.dedup import dedup_signatures
from dagster_project.assets.web import (
    crawled_warcs,
    extracted_documents,
    language_tagged_documents,
    warc_files,
    warc_keys,
)
from dagster_project.resources import DataRoot

WARC_CHAIN = [extracted_documents, language_tagged_documents, dedup_signatures]
"""The per-WARC-file stages a new file runs through without waiting for the others."""

RECRAWL_CRON = "0 3 * * 0"  # Sundays 03:00 UTC


def new_warc_keys(instance: dg.DagsterInstance, data: DataRoot) -> list[str]:
    """WARC files on disk whose documents have never been extracted."""
    done = instance.get_materialized_partitions(extracted_documents.key)
    return [k for k in warc_keys(data) if k not in done]


@dg.sensor(target=WARC_CHAIN, minimum_interval_seconds=60,
           default_status=dg.DefaultSensorStatus.STOPPED,
           description="Adds a warc_files partition and requests a run of the per-file stages "
                       "(extract, language ID, dedup signatures) for each new WARC file.")
def warc_sensor(context: dg.SensorEvaluationContext, data: DataRoot) -> dg.SensorResult:
    todo = new_warc_keys(context.instance, data)
    known = set(context.instance.get_dynamic_partitions(warc_files.name))
    unknown = [k for k in todo if k not in known]
    return dg.SensorResult(
        # run_key: a file whose run is still queued or failed is not requested twice
        run_requests=[dg.RunRequest(partition_key=k, run_key=k) for k in todo],
        dynamic_partitions_requests=[warc_files.build_add_request(unknown)] if unknown else [],
    )


@dg.schedule(target=[crawled_warcs], cron_schedule=RECRAWL_CRON, execution_timezone="UTC",
             default_status=dg.DefaultScheduleStatus.STOPPED,
             description="Weekly recrawl: crawled_warcs with a fresh frontier, so every page is "
                         "fetched again into new WARC files (turn warc_sensor on to process "
                         "them).")
def recrawl_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    when = context.scheduled_execution_time
    return dg.RunRequest(
        run_key=f"recrawl-{when:%Y-%m-%dT%H:%M}" if when else None,
        run_config={"ops": {crawled_warcs.op.name: {"config": {"recrawl": True}}}},
        tags={"recrawl": "true"},
    )
