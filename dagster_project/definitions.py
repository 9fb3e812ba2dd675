"""The one ``Definitions`` that the UI, the demo and the tests all load."""

from __future__ import annotations

import dagster as dg

from dagster_project.assets.dedup import dedup_clusters, dedup_signatures, deduplicated_documents
from dagster_project.assets.demo import demo_site
from dagster_project.assets.ingest import landing_sensor, raw_documents
from dagster_project.assets.labelled import LABELLED_ASSETS
from dagster_project.assets.quality import QUALITY_ASSETS
from dagster_project.assets.tokens import tokenized_documents, tokenizer
from dagster_project.assets.training import TRAINING_ASSETS
from dagster_project.assets.web import crawled_warcs, extracted_documents, language_tagged_documents
from dagster_project.automation import recrawl_schedule, warc_sensor
from dagster_project.ray_resource import RayBackend
from dagster_project.resources import DataRoot

defs = dg.Definitions(
    assets=[demo_site, raw_documents, crawled_warcs, extracted_documents,
            language_tagged_documents, dedup_signatures, dedup_clusters, deduplicated_documents,
            *QUALITY_ASSETS,
            tokenizer, tokenized_documents, *LABELLED_ASSETS, *TRAINING_ASSETS],
    sensors=[landing_sensor, warc_sensor],
    schedules=[recrawl_schedule],
    resources={"data": DataRoot(), "ray_backend": RayBackend()},
)
