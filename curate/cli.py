"""The ``curate`` command line: one command per stage, same shape everywhere.

``curate <stage> --input PATH --output DIR [--workers N] [--config recipe.yaml] [--set k=v]``
ends with a one-screen summary and exits non-zero when any shard failed.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from curate.cli_common import (  # noqa: F401  (re-exported for commands and tests)
    format_summary,
    local_stage_options,
    run_stage_command,
    stage_options,
    stage_options_for,
)
from curate.config import ConfigError, load_config
from curate.humanize import human_bytes
from curate.runner import default_workers
from schemas.version import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="curate")
def main() -> None:
    """Curate web and labelled data into Arrow shards."""


@main.command()
@stage_options
def ingest(input_path: Path, output: Path, workers: int, recipe: Path | None,
           overrides: tuple[str, ...], force: bool, quiet: bool) -> None:
    """Ingest JSONL / JSON / CSV / Parquet files (optionally .gz/.zst) into documents.

    Config keys: text_column, id_column, url_column, title_column, source, format,
    encoding, keep_metadata, min_text_chars, max_text_chars.
    """
    from curate.ingest import INGEST, IngestConfig, plan_ingest

    run_stage_command(INGEST, IngestConfig, plan_ingest, input_path, output, workers,
                      recipe, overrides, force, quiet)


@main.command()
@click.option("--seed", "seeds", multiple=True, metavar="URL", help="Start URL; repeatable.")
@click.option("--sitemap", "sitemaps", multiple=True, metavar="URL", help="Sitemap; repeatable.")
@click.option("--output", required=True, type=click.Path(path_type=Path),
              help="Crawl folder: warc/ and the resumable frontier.sqlite.")
@click.option("--config", "recipe", type=click.Path(exists=True, path_type=Path),
              help="YAML recipe (its crawl: section when present).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a config value; repeatable.")
@click.option("--allow-private", is_flag=True,
              help="Allow private/loopback/link-local addresses (local test servers).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def crawl(seeds: tuple[str, ...], sitemaps: tuple[str, ...], output: Path, recipe: Path | None,
          overrides: tuple[str, ...], allow_private: bool, quiet: bool) -> None:
    """Crawl politely (robots.txt, per-host delays, scope rules) into WARC files; re-running
    with the same --output resumes from the persisted frontier.

    Config keys: seeds, sitemaps, allowed_domains, include_patterns, exclude_patterns,
    max_depth, max_pages, per_host_concurrency, per_host_delay, user_agent, timeout, retries,
    backoff, max_body_bytes, content_types, max_redirects, allow_private_addresses,
    warc_max_bytes, warc_prefix.
    """
    from curate.crawl import CrawlConfig, PrivateAddressError
    from curate.crawl import crawl as run_crawl

    extra = list(overrides)
    if seeds:
        extra.append(f"seeds={json.dumps(list(seeds))}")
    if sitemaps:
        extra.append(f"sitemaps={json.dumps(list(sitemaps))}")
    if allow_private:
        extra.append("allow_private_addresses=true")
    try:
        cfg = load_config(CrawlConfig, recipe, tuple(extra), section="crawl")
        report = run_crawl(cfg, output, progress=not quiet)
    except (ConfigError, PrivateAddressError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(report.summary())


@main.command()
@stage_options
def extract(input_path: Path, output: Path, workers: int, recipe: Path | None,
            overrides: tuple[str, ...], force: bool, quiet: bool) -> None:
    """Extract main text from WARC/WET files, HTML files (.html/.html.gz) or JSONL/Parquet
    with an HTML column, with trafilatura.

    Config keys: preset (fast|standard|precision|recall), include_tables, include_comments,
    max_html_bytes, min_text_chars, timeout_seconds, html_column, url_column, id_column, source.
    """
    from curate.extract import ExtractConfig
    from curate.web_extract import EXTRACT, plan_extract

    run_stage_command(EXTRACT, ExtractConfig, plan_extract, input_path, output, workers,
                      recipe, overrides, force, quiet)


@main.command()
@stage_options
def langid(input_path: Path, output: Path, workers: int, recipe: Path | None,
           overrides: tuple[str, ...], force: bool, quiet: bool) -> None:
    """Tag documents with fastText lid.176 language and score (INPUT: a documents stage).

    Config keys: threshold, languages (allow-list), max_chars, batch_size, model_path.
    """
    from curate.langid import LANGID, LangIdConfig
    from curate.runner import plan_shards

    run_stage_command(LANGID, LangIdConfig, plan_shards, input_path, output, workers,
                      recipe, overrides, force, quiet)


@main.command()
@stage_options
@click.option("--index", "index_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Dedup index of earlier runs: their kept documents win, and this run's kept "
                   "signatures are added to it.")
@click.option("--index-label", help="Name of this run in the index (default: the --output "
                                    "folder's name); re-running with a label replaces it.")
def dedup(input_path: Path, output: Path, workers: int, recipe: Path | None,
          overrides: tuple[str, ...], force: bool, quiet: bool, index_dir: Path | None,
          index_label: str | None) -> None:
    """Remove exact, URL and MinHash-LSH near duplicates (INPUT: a documents stage, or raw
    JSONL/CSV/Parquet files with id and text, which are ingested first).

    Writes OUTPUT/signatures, buckets, clusters and documents (kept, with dup_cluster and
    dup_cluster_size; removed rows in documents/rejected with duplicate_of). A re-run skips
    every phase whose inputs and settings are unchanged.

    Config keys: exact, url, minhash, ngram, bands, rows, seed, scheme, hash_function,
    lowercase, remove_punctuation, normalize_digits, strip_accents, jaccard_check,
    jaccard_threshold, keep (first|longest|score), score_column, memory_budget_mb, partitions.
    """
    from curate.dedup.config import DedupConfig
    from curate.dedup.pipeline import run_dedup

    try:
        cfg = load_config(DedupConfig, recipe, overrides, section="dedup")
        report = run_dedup(input_path, output, cfg, workers=workers, index_dir=index_dir,
                           index_label=index_label, progress=not quiet, force=force)
    except (ConfigError, FileNotFoundError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(report.summary())
    if not report.ok:
        sys.exit(1)


@main.group("tokenizer")
def tokenizer_group() -> None:
    """Train tokenizers on documents shards."""


@tokenizer_group.command("train")
@click.option("--input", "inputs", required=True, multiple=True,
              type=click.Path(exists=True, path_type=Path),
              help="A documents stage folder or .arrow shard; repeatable.")
@click.option("--output", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Tokenizer folder to write (AutoTokenizer.from_pretrained loads it).")
@click.option("--config", "recipe", type=click.Path(exists=True, path_type=Path),
              help="YAML recipe (its tokenizer: section when present).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a config value; repeatable.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def tokenizer_train(inputs: tuple[Path, ...], output: Path, recipe: Path | None,
                    overrides: tuple[str, ...], quiet: bool) -> None:
    """Train a byte-level BPE tokenizer (special tokens first, ChatML chat template).

    Config keys: vocab_size, min_frequency, bos_token, eos_token, pad_token, im_start_token,
    im_end_token, extra_special_tokens, max_docs, max_chars, chat_template, add_bos.
    """
    from curate.tokenizer import TokenizerConfig, train_tokenizer

    try:
        cfg = load_config(TokenizerConfig, recipe, overrides, section="tokenizer")
        info = train_tokenizer(list(inputs), output, cfg, progress=not quiet)
    except (ConfigError, FileNotFoundError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(info.summary())


@main.command()
@local_stage_options
def tokenize(input_path: Path, output: Path, workers: int, recipe: Path | None,
             overrides: tuple[str, ...], force: bool, quiet: bool) -> None:
    """Tokenize a documents stage into packed pretrain_tokens rows (with document boundaries)
    plus token_index/ (document -> row, offset, length) and _tokenizer.json.

    Config keys: tokenizer (folder, required), seq_len, add_bos, max_doc_tokens, batch_size.
    """
    from curate.tokenize import TokenizeConfig, run_tokenize, token_stats

    try:
        cfg = load_config(TokenizeConfig, recipe, overrides, section="tokenize")
        report = run_tokenize(input_path, output, cfg, workers=workers, progress=not quiet,
                              force=force)
    except (ConfigError, FileNotFoundError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(format_summary(report))
    if not report.ok:
        sys.exit(1)
    stats = token_stats(output)
    click.echo(f"  tokens   {stats['tokens']:,} in {stats['rows']:,} rows of {cfg.seq_len} "
               f"({stats['truncated']:,} documents truncated)")
    for source, n in sorted(stats["tokens_per_source"].items(), key=lambda kv: -kv[1]):
        click.echo(f"             {n:>12,}  {source or '(no source)'}")


@main.command()
@click.option("--config", "recipe", required=True, type=click.Path(exists=True, path_type=Path),
              help="YAML mixture recipe: sources (name, path, weight, max_repeats), seed, "
                   "total_rows, window, full_rows_only (its mix: section when present).")
@click.option("--output", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder to write mix.arrow and _mix.json into.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a config value; repeatable.")
def mix(recipe: Path, output: Path, overrides: tuple[str, ...]) -> None:
    """Mix token stages by weight into one reproducible, resumable training stream.

    Ratios hold in every window of rows; a source's rows are used at most max_repeats
    times (a binding cap shrinks the stream and the summary says so). Read the result with
    curate.mix.MixedStream.
    """
    from curate.mix import MixConfig, build_mix

    try:
        cfg = load_config(MixConfig, recipe, overrides, section="mix")
        plan = build_mix(cfg)
        plan.write(output)
    except (ConfigError, FileNotFoundError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(plan.summary())
    click.echo(f"  wrote {output / 'mix.arrow'} and {output / '_mix.json'}")


@main.command("export")
@click.option("--input", "input_path", required=True, type=click.Path(path_type=Path),
              help="A pretrain_tokens stage folder (the output of curate tokenize).")
@click.option("--format", "fmt", required=True, type=click.Choice(["hf", "megatron", "bin"]),
              help="hf: datasets.load_from_disk folder; megatron: PREFIX.bin + PREFIX.idx, one "
                   "sequence per document; bin: flat token stream PREFIX.bin + PREFIX.json.")
@click.option("--output", required=True, type=click.Path(path_type=Path),
              help="Folder (hf) or file prefix (megatron, bin; a .bin suffix is dropped).")
@click.option("--verify/--no-verify", default=True, show_default=True,
              help="Read the export back and compare it with the stage.")
def export(input_path: Path, fmt: str, output: Path, verify: bool) -> None:
    """Export a token stage for Hugging Face datasets, Megatron-LM or nanoGPT-style training."""
    from curate.export_tokens import export_tokens, verify_export

    try:
        result = export_tokens(input_path, fmt, output)
        click.echo(result.summary())
        check = verify_export(input_path, fmt, output) if verify else None
    except (FileNotFoundError, FileExistsError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    if check is not None:
        click.echo(check.summary())
        if not check.ok:
            sys.exit(1)


@main.group("eval")
def eval_group() -> None:
    """Evaluate stages against gold data."""


@eval_group.command("extraction")
@click.option("--html", "html_dir", required=True, type=click.Path(exists=True, path_type=Path),
              help="Folder of NNNN.html(.gz) pages.")
@click.option("--gold", "gold_dir", required=True, type=click.Path(exists=True, path_type=Path),
              help="Folder of NNNN.json gold files (WCXB layout).")
@click.option("--preset", type=click.Choice(["fast", "standard", "precision", "recall"]),
              default="standard", show_default=True)
@click.option("--baseline/--no-baseline", default=True, show_default=True,
              help="Also score plain trafilatura.extract defaults on the same pages.")
@click.option("--limit", type=int, help="Only the first N pages.")
@click.option("--workers", type=int, default=default_workers, show_default="CPUs, max 8")
@click.option("--json-out", type=click.Path(path_type=Path), help="Write per-page scores here.")
def eval_extraction(html_dir: Path, gold_dir: Path, preset: str, baseline: bool,
                    limit: int | None, workers: int, json_out: Path | None) -> None:
    """Bag-of-words F1 against the gold main content (macro-averaged), with/without snippet
    rates, per page type: the WCXB metric."""
    import functools

    from curate.eval_extraction import evaluate, load_pages, trafilatura_baseline
    from curate.extract import ExtractConfig, extract_text

    pages = load_pages(html_dir, gold_dir, limit)
    ours = evaluate(pages, functools.partial(extract_text, cfg=ExtractConfig(preset=preset)),
                    workers)
    click.echo(f"curate extract (preset {preset}) on {len(pages)} pages:\n{ours.table()}")
    results = {"ours": ours.to_json()}
    if baseline:
        base = evaluate(pages, trafilatura_baseline, workers)
        click.echo(f"\ntrafilatura.extract defaults on the same pages:\n{base.table()}")
        click.echo(f"\nF1 ours {ours.f1:.3f} vs baseline {base.f1:.3f} "
                   f"({ours.f1 - base.f1:+.3f})")
        results["baseline"] = base.to_json()
    if json_out:
        json_out.write_text(json.dumps(results, indent=2))


@main.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
def verify(paths: tuple[Path, ...]) -> None:
    """Check stage folders against their manifests (missing, truncated, corrupt, stray)."""
    from schemas.verify import find_stage_dirs, verify_stage

    bad = 0
    for root in paths:
        if not root.exists():
            click.echo(f"{root}: does not exist", err=True)
            bad += 1
            continue
        stage_dirs = find_stage_dirs(root)
        if not stage_dirs:
            click.echo(f"{root}: no _manifest.json found (not a dataset or stage folder)")
            bad += 1
        for stage_dir in stage_dirs:
            report = verify_stage(stage_dir)
            status = "OK" if report.ok else f"{len(report.findings)} problem(s)"
            click.echo(f"{stage_dir}: {report.shards_checked} file(s) checked, "
                       f"{report.rows:,} rows - {status}")
            for finding in report.findings:
                click.echo(f"  {finding}")
            bad += not report.ok
    sys.exit(1 if bad else 0)


@main.command()
@click.argument("path", type=click.Path(exists=True, path_type=Path))
def show(path: Path) -> None:
    """Summarise the stage folders under PATH from their manifests."""
    from schemas.manifest import read_manifest
    from schemas.verify import find_stage_dirs

    for stage_dir in find_stage_dirs(path):
        manifest = read_manifest(stage_dir)
        if manifest is None:
            continue
        t = manifest.totals()
        reasons: dict[str, int] = {}
        for entry in manifest.shards.values():
            for reason, n in entry["reject_reasons"].items():
                reasons[reason] = reasons.get(reason, 0) + n
        click.echo(f"{stage_dir}  [{manifest.stage}: {manifest.kind} v{manifest.kind_version}]")
        click.echo(f"  {t['shards']} shards, {human_bytes(t['bytes'])}; rows in "
                   f"{t['rows_in']:,}, kept {t['rows_kept']:,}, rejected {t['rows_rejected']:,}")
        for reason, n in sorted(reasons.items(), key=lambda kv: -kv[1]):
            click.echo(f"    {n:>10,}  {reason}")
        if manifest.failures:
            click.echo(f"  {len(manifest.failures)} failed shard(s): "
                       f"{', '.join(sorted(manifest.failures))}")


@main.group()
def schemas() -> None:
    """Record kinds (Arrow schemas) of the data contract."""


@schemas.command("list")
def schemas_list() -> None:
    """List record kinds with their versions."""
    from schemas.kinds import KINDS

    for kind in KINDS.values():
        click.echo(f"{kind.name:<20} v{kind.version:<5} {kind.doc}")


@schemas.command("show")
@click.argument("kind")
def schemas_show(kind: str) -> None:
    """Print one kind as JSON."""
    from schemas.export import kind_to_json
    from schemas.kinds import get_kind

    try:
        click.echo(json.dumps(kind_to_json(get_kind(kind)), indent=2))
    except KeyError as exc:
        raise click.ClickException(str(exc.args[0])) from None


@schemas.command("export")
@click.argument("out_dir", type=click.Path(path_type=Path))
def schemas_export(out_dir: Path) -> None:
    """Write every kind as <kind>.schema.json into OUT_DIR."""
    from schemas.export import export_json

    for path in export_json(out_dir):
        click.echo(str(path))


@main.command("demo-site")
@click.option("--output", required=True, type=click.Path(path_type=Path))
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--articles", type=int, default=40, show_default=True)
@click.option("--base-url", default="http://127.0.0.1:8642", show_default=True,
              help="Absolute URL the site will be served at (used in sitemap.xml).")
def demo_site(output: Path, seed: int, articles: int, base_url: str) -> None:
    """Generate the deterministic demo website and raw dumps."""
    from curate.demo_site import write_site

    summary = write_site(output, seed=seed, n_articles=articles, base_url=base_url)
    counts = ", ".join(f"{k} {v}" for k, v in sorted(summary.counts.items()))
    click.echo(f"wrote {len(summary.pages)} pages to {output / 'site'} ({counts}); "
               f"raw dumps in {output / 'raw'}")


def _register_commands() -> None:
    """Commands that live beside their stages (their modules import nothing from here)."""
    from curate.labelled.cli import labelled
    from curate.labelled.tokens_cli import preference_tokenize, sft_tokenize
    from curate.pii_decontam_cli import decontam, redact
    from curate.quality.classifier_cli import score, train
    from curate.quality.cli import quality, stats

    quality.add_command(train)
    quality.add_command(score)
    for command in (quality, stats, redact, decontam, labelled, sft_tokenize,
                    preference_tokenize):
        main.add_command(command)


_register_commands()

if __name__ == "__main__":
    main()
