"""The web pipeline: crawl -> WARC files (one partition each) -> extracted -> language-tagged."""
# No `from __future__ import annotations`: Dagster reads the config annotations at runtime.

import contextlib
import fcntl
import json
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import dagster as dg
from pydantic import Field

from curate.crawl import CrawlConfig, crawl
from curate.extract import ExtractConfig
from curate.ingest import shard_name_for
from curate.langid import LANGID, LangIdConfig
from curate.runner import WorkUnit
from curate.serve import serve_directory
from curate.web_extract import EXTRACT
from dagster_project.config import dagster_config, to_stage_config
from dagster_project.resources import DataRoot
from dagster_project.shard_asset import contract_checks, materialize_unit

DATASET = "web"
warc_files = dg.DynamicPartitionsDefinition(name="warc_files")
ExtractRunConfig = dagster_config(ExtractConfig)
LangIdRunConfig = dagster_config(LangIdConfig)
CrawlRunConfig = dagster_config(
    CrawlConfig,
    demo_site=(bool, Field(default=True, description=(
        "Serve <data_root>/demo/site on loopback (at the base URL it was generated for) while "
        "crawling it; loopback is allowed and robots.txt's crawl delay applies."))),
    seeds=(list[str], Field(default=[], description=(
        "Start URLs. Empty with demo_site on: the demo site's home page."))),
    recrawl=(bool, Field(default=False, description=(
        "Fetch every page again: the old frontier is kept under frontiers/ and a new one "
        "starts from the seeds. Off: continue the crawl where it stopped. New WARC files "
        "continue the numbering, so each one becomes a new partition."))))
# The crawl is the one network-bound asset: retry it, backing off, before giving up.
CRAWL_RETRIES = dg.RetryPolicy(max_retries=3, delay=5, backoff=dg.Backoff.EXPONENTIAL,
                               jitter=dg.Jitter.PLUS_MINUS)


def crawl_dir(data: DataRoot) -> Path:
    return data.stage_dir(DATASET, "crawl")


def warc_dir(data: DataRoot) -> Path:
    return crawl_dir(data) / "warc"


def archive_frontier(out: Path) -> Path | None:
    """Move ``frontier.sqlite`` aside (under ``frontiers/``) so the next crawl starts afresh.

    Refuses while a crawl holds the folder's lock: its frontier is in use.
    """
    if not (out / "frontier.sqlite").exists():
        return None
    with open(out / ".lock", "wb") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise dg.Failure(f"a crawl is running in {out}; recrawl after it ends") from None
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        archive = out / "frontiers" / f"frontier-{stamp}.sqlite"
        archive.parent.mkdir(exist_ok=True)
        for part in sorted(out.glob("frontier.sqlite*")):  # the database and its WAL files
            part.rename(archive.parent / part.name.replace("frontier.sqlite", archive.name))
    return archive


def warc_keys(data: DataRoot) -> list[str]:
    """Closed WARC files (open ones carry another suffix until they are renamed)."""
    return sorted(p.name for p in warc_dir(data).glob("*.warc.gz"))


@contextlib.contextmanager
def _demo_server(data: DataRoot, enabled: bool):
    """Serve the demo site where its sitemap says it lives; yields the base URL or None."""
    if not enabled:
        yield None
        return
    manifest = data.path / "demo" / "site_manifest.json"
    if not manifest.exists():
        raise dg.Failure("demo_site is on but the demo site is missing: materialize demo_site "
                         "first, or turn demo_site off and give seeds")
    base = urlsplit(json.loads(manifest.read_text())["base_url"])
    with serve_directory(data.path / "demo" / "site", base.hostname or "127.0.0.1",
                         base.port or 80) as url:
        yield url


@dg.asset(group_name=DATASET, kinds={"warc"}, deps=["demo_site"],
          retry_policy=CRAWL_RETRIES,
          description="A polite crawl (robots.txt, per-host delays, scope rules) written as WARC "
                      "files; each new WARC file becomes a partition of the documents assets.")
def crawled_warcs(context: dg.AssetExecutionContext, config: CrawlRunConfig,
                  data: DataRoot) -> dg.MaterializeResult:
    settings = config.model_dump()
    demo = settings.pop("demo_site")
    if settings.pop("recrawl") and (archived := archive_frontier(crawl_dir(data))):
        context.log.info(f"recrawl: previous frontier kept as {archived}")
    with _demo_server(data, demo) as base_url:
        if demo:
            settings["seeds"] = settings["seeds"] or [f"{base_url}/"]
            settings["allow_private_addresses"] = True
            settings["per_host_delay"] = 0.0
        report = crawl(CrawlConfig.model_validate(settings), crawl_dir(data), progress=False)
    keys = warc_keys(data)
    known = set(context.instance.get_dynamic_partitions(warc_files.name))
    context.instance.add_dynamic_partitions(warc_files.name, [k for k in keys if k not in known])
    context.log.info(report.summary())
    return dg.MaterializeResult(metadata={
        "pages": report.pages, "bytes": report.bytes, "requests": report.requests,
        "errors": dg.MetadataValue.json(dict(report.errors)),
        "pages_per_second": float(report.pages_per_second),
        "warc_files": dg.MetadataValue.json(keys),
        "summary": dg.MetadataValue.md(f"```\n{report.summary()}\n```"),
    })


@dg.asset(partitions_def=warc_files, group_name=DATASET, kinds={"arrow"},
          deps=[crawled_warcs], check_specs=contract_checks("extracted_documents"),
          description="Main text of every HTML response in one WARC file (trafilatura); "
                      "errors, redirects, non-HTML and empty pages go to rejected/.")
def extracted_documents(context: dg.AssetExecutionContext, config: ExtractRunConfig,
                        data: DataRoot) -> dg.MaterializeResult:
    key = context.partition_key
    path = warc_dir(data) / key
    if not path.is_file():
        raise dg.Failure(f"partition {key!r}: {path} does not exist")
    unit = WorkUnit(shard_name_for(key), (path,), warc_dir(data))
    return materialize_unit(context, EXTRACT, unit, data.stage_dir(DATASET, EXTRACT.name),
                            to_stage_config(config, ExtractConfig))


@dg.asset(partitions_def=warc_files, group_name=DATASET, kinds={"arrow"},
          deps=[extracted_documents], check_specs=contract_checks("language_tagged_documents"),
          description="Extracted documents with fastText lid.176 language and score; documents "
                      "under the threshold or outside the allow-list go to rejected/.")
def language_tagged_documents(context: dg.AssetExecutionContext, config: LangIdRunConfig,
                              data: DataRoot) -> dg.MaterializeResult:
    upstream = data.stage_dir(DATASET, EXTRACT.name)
    name = shard_name_for(context.partition_key)
    if not (upstream / name).is_file():
        raise dg.Failure(f"{upstream / name} is missing: materialize extracted_documents first")
    unit = WorkUnit(name, (upstream / name,), upstream)
    return materialize_unit(context, LANGID, unit, data.stage_dir(DATASET, LANGID.name),
                            to_stage_config(config, LangIdConfig))
