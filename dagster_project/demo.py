"""``make demo``: materialize the whole asset graph through the UI's ``Definitions``.

Runs are recorded in the project's ``DAGSTER_HOME``, so ``make ui`` shows them afterwards.
"""

from __future__ import annotations

import json
import time

import dagster as dg

from dagster_project.home import ensure_dagster_home
from dagster_project.resources import DataRoot


def materialize_all(instance: dg.DagsterInstance) -> list[dg.ExecuteInJobResult]:
    """Global assets first, then one run per partition of the partitioned ones."""
    from dagster_project.assets.dedup import (
        dedup_clusters,
        dedup_signatures,
        deduplicated_documents,
    )
    from dagster_project.assets.demo import demo_site
    from dagster_project.assets.ingest import landing_files, raw_documents, raw_files
    from dagster_project.assets.labelled import LABELLED_ASSETS
    from dagster_project.assets.quality import CURATION_CHAIN, eval_ngram_index
    from dagster_project.assets.tokens import tokenized_documents, tokenizer
    from dagster_project.assets.training import TRAINING_ASSETS
    from dagster_project.assets.web import (
        crawled_warcs,
        extracted_documents,
        language_tagged_documents,
        warc_keys,
    )
    from dagster_project.definitions import defs

    assets = list(defs.assets)  # the UI's graph, not a copy of it
    resources = dict(defs.resources)
    tags = {"launched_by": "make demo"}

    def run(selection: list, partition_key: str | None = None) -> dg.ExecuteInJobResult:
        return dg.materialize(assets, selection=selection, partition_key=partition_key,
                              instance=instance, resources=resources, tags=tags,
                              raise_on_error=False)

    results = [run([demo_site]), run([crawled_warcs])]
    keys = landing_files(resources["data"].landing_dir)
    known = set(instance.get_dynamic_partitions(raw_files.name))
    instance.add_dynamic_partitions(raw_files.name, [k for k in keys if k not in known])
    results += [run([raw_documents], key) for key in keys]
    warcs = warc_keys(resources["data"])  # partitions whose WARC file is on disk
    for key in warcs:
        results.append(run([extracted_documents, language_tagged_documents, dedup_signatures],
                           key))
    results.append(run([dedup_clusters]))  # global: every partition's signatures at once
    results += [run([deduplicated_documents], key) for key in warcs]
    results.append(run([eval_ngram_index]))  # global: the evaluation sets' n-grams
    results += [run(CURATION_CHAIN, key) for key in warcs]  # quality, PII, decontamination
    results.append(run([tokenizer]))  # global: trained on every partition's documents
    results += [run([tokenized_documents], key) for key in warcs]
    results.append(run(LABELLED_ASSETS))  # the labelled sets, tokenized with the tokenizer
    results.append(run(TRAINING_ASSETS))  # base model, then continued pre-training
    return results


def summarize() -> str:
    """What the demo produced, read back from the manifests and verified."""
    from dagster_project.assets.labelled import labelled_totals
    from dagster_project.assets.quality import curation_totals
    from dagster_project.assets.training import training_totals
    from dagster_project.definitions import defs
    from schemas import read_manifest
    from schemas.verify import find_stage_dirs, verify_stage

    data = defs.resources["data"]
    lines = ["", "demo outputs:"]
    for stage_dir in find_stage_dirs(data.path):
        manifest = read_manifest(stage_dir)
        report = verify_stage(stage_dir)
        t = manifest.totals()
        lines.append(f"  {stage_dir.relative_to(data.path)}/  {manifest.kind}: {t['shards']} "
                     f"shards, rows in {t['rows_in']}, kept {t['rows_kept']}, rejected "
                     f"{t['rows_rejected']}; verify {'OK' if report.ok else report.findings}")
    lines += dedup_totals(data)
    lines += curation_totals(data)
    lines += token_totals(data)
    lines += labelled_totals(data)
    lines += training_totals(data)
    return "\n".join(lines)


def dedup_totals(data: DataRoot) -> list[str]:
    """The dedup result in two lines: clusters found and what removal took out."""
    from curate.dedup.buckets import read_done
    from dagster_project.assets.dedup import dedup_layout
    from schemas import read_manifest

    layout = dedup_layout(data)
    done = read_done(layout.clusters)
    manifest = read_manifest(layout.documents)
    if done is None or manifest is None:
        return ["  dedup: not run"]
    c = done["report"]
    reasons = ", ".join(f"{n} {r}" for r, n in sorted(c["removed"].items())) or "none"
    t = manifest.totals()
    rate = t["rows_rejected"] / t["rows_in"] if t["rows_in"] else 0.0
    return [f"  dedup: {c['clusters']} clusters among {c['documents']} documents; removed "
            f"{reasons}",
            f"  dedup: documents in {t['rows_in']}, kept {t['rows_kept']}, removed "
            f"{t['rows_rejected']} ({rate:.1%})"]


def token_totals(data: DataRoot) -> list[str]:
    """The tokenizer and the token shards in two lines."""
    from curate.tokenize import token_stats
    from dagster_project.assets.tokens import tokenizer_dir, tokens_dir
    from schemas import read_manifest

    folder = tokens_dir(data)
    meta_path = tokenizer_dir(data) / "sievelm_tokenizer.json"
    if read_manifest(folder) is None or not meta_path.is_file():
        return ["  tokens: not run"]
    meta = json.loads(meta_path.read_text())
    s = token_stats(folder)
    sources = ", ".join(f"{n:,} {src or '?'}" for src, n in sorted(s["tokens_per_source"].items()))
    return [f"  tokenizer: {meta['vocab_size']:,} tokens, trained on "
            f"{meta['training']['docs']:,} documents ({meta['training']['chars']:,} chars)",
            f"  tokens: {s['tokens']:,} in {s['rows']:,} rows from {s['documents']:,} documents "
            f"({s['truncated']} truncated); by source: {sources}"]


def main() -> None:
    home = ensure_dagster_home()
    t0 = time.perf_counter()
    with dg.DagsterInstance.get() as instance:
        from dagster_project.assets.training import POOL

        instance.event_log_storage.set_concurrency_slots(POOL, 1)  # one training at a time
        results = materialize_all(instance)
        failures = [str(e.event_specific_data.error.message).strip()
                    for r in results for e in r.all_events if e.is_step_failure]
        checks = [e.asset_check_evaluation_data.passed for r in results for e in r.all_events
                  if e.event_type_value == "ASSET_CHECK_EVALUATION"]
        print(summarize())
    print(f"  asset checks: {sum(checks)}/{len(checks)} passed")
    print(f"  {len(results)} runs in {time.perf_counter() - t0:.1f} s, recorded in {home}")
    print("  browse them with `make ui` (http://127.0.0.1:3000)")
    for message in failures:
        print(f"  FAILED: {message}")
    if failures or not all(checks):
        raise SystemExit("demo failed: see the failures above and the run logs")


if __name__ == "__main__":
    main()
