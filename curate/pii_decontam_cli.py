"""Command line for PII redaction and decontamination: ``curate redact`` and
``curate decontam index|run|report``.

The commands are plain click objects that ``curate.cli`` registers. This module must not
import ``curate.cli`` at import time (``curate.cli`` imports it to register the commands),
so the shared stage options are declared by ``_stage_options`` with the same names and
defaults, and ``run_stage_command`` / ``format_summary`` are imported inside the bodies.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from curate.cli_common import stage_options_for

_stage_options = stage_options_for("A documents stage folder.")


@click.command("redact")
@_stage_options
@click.option("--check/--no-check", default=True, show_default=True,
              help="Re-scan the kept shards afterwards; any PII left exits 1.")
def redact(input_path: Path, output: Path, workers: int, recipe: Path | None,
           overrides: tuple[str, ...], force: bool, quiet: bool, check: bool) -> None:
    """Redact emails, phone numbers, IP addresses, card numbers (Luhn) and IBANs (mod 97)
    in a documents stage, with typed placeholders (INPUT: a documents stage).

    Adds pii_counts (per kind) and pii_redactions per document; prints the counts per kind.
    Config keys (section pii:): kinds, placeholder ("<{KIND}>"), columns,
    redact_private_ips, drop_documents_with_pii.
    """
    from curate.cli import run_stage_command
    from curate.config import ConfigError, load_config
    from curate.pii import KINDS, PII, PiiConfig, pii_report, residual_pii
    from curate.runner import plan_shards

    run_stage_command(PII, PiiConfig, plan_shards, input_path, output, workers, recipe,
                      overrides, force, quiet)
    try:
        cfg = load_config(PiiConfig, recipe, overrides, section=PII.name)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    totals = pii_report(output)
    click.echo(f"  pii      {totals['documents_with_pii']:,} documents with PII; redacted "
               + ", ".join(f"{k} {totals[k]:,}" for k in KINDS))
    if check:
        left = residual_pii(output, cfg)
        if left:
            for shard, count in sorted(left.items()):
                click.echo(f"  CHECK    {shard}: {count} PII finding(s) left after redaction")
            sys.exit(1)
        click.echo("  check    no PII left in the kept shards")


@click.group("decontam")
def decontam() -> None:
    """Decontaminate against evaluation sets: build an n-gram index, apply it, report."""


@decontam.command("index")
@click.argument("sources", nargs=-1, required=True)
@click.option("--output", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Index folder to write.")
@click.option("--config", "recipe", type=click.Path(exists=True, path_type=Path),
              help="YAML recipe (its decontam_index: section when present).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a config value; repeatable.")
def decontam_index(sources: tuple[str, ...], output: Path, recipe: Path | None,
                   overrides: tuple[str, ...]) -> None:
    """Build the n-gram index of evaluation sets. SOURCES: PATH or NAME=PATH, each a JSONL /
    JSON / Parquet / CSV file or a datasets.save_to_disk folder; NAME (default: the file
    name) prefixes the item keys (NAME:ID).

    Config keys: n (13), lowercase, remove_punctuation, normalize_digits, strip_accents,
    fields (default: every string field), id_field, split.
    """
    from curate.config import ConfigError, load_config
    from curate.decontaminate import IndexConfig, build_index

    try:
        cfg = load_config(IndexConfig, recipe, overrides, section="decontam_index")
        info = build_index(list(sources), output, cfg)
    except (ConfigError, FileNotFoundError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(info.summary())


@decontam.command("run")
@_stage_options
@click.option("--index", "index_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Index folder from `curate decontam index` (or `index:` in the config).")
@click.option("--check/--no-check", default=True, show_default=True,
              help="Re-scan the kept shards afterwards by an independent path; a contaminated "
                   "document that passed exits 1.")
def decontam_run(input_path: Path, output: Path, workers: int, recipe: Path | None,
                 overrides: tuple[str, ...], force: bool, quiet: bool, index_dir: Path | None,
                 check: bool) -> None:
    """Remove (mode=remove) or flag (mode=flag) documents sharing an n-gram with the index,
    then write OUTPUT/_decontamination.json: which eval items were hit, by which documents.

    Config keys (section decontaminate:): index, mode (remove|flag), min_ngram_hits,
    text_column.
    """
    from curate.cli import run_stage_command
    from curate.config import ConfigError, load_config
    from curate.decontaminate import (
        DECONTAMINATE,
        DecontamConfig,
        decontamination_report,
        plan_decontaminate,
        uncaught_contamination,
        write_report,
    )

    extra = (*overrides, f"index={json.dumps(str(index_dir))}") if index_dir else overrides
    try:
        cfg = load_config(DecontamConfig, recipe, extra, section=DECONTAMINATE.name)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    run_stage_command(DECONTAMINATE, DecontamConfig,
                      lambda p: plan_decontaminate(p, cfg.index), input_path, output, workers,
                      recipe, extra, force, quiet)
    report = decontamination_report(output, cfg.index)
    path = write_report(output, report)
    _echo_report(report, path)
    if check:
        missed = uncaught_contamination(output, cfg)
        if missed:
            for shard, count in sorted(missed.items()):
                click.echo(f"  CHECK    {shard}: {count} contaminated document(s) passed")
            sys.exit(1)
        click.echo("  check    no contaminated document passed")


@decontam.command("report")
@click.argument("stage_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--index", "index_dir", type=click.Path(exists=True, file_okay=False,
                                                      path_type=Path),
              help="The index, for each eval set's item count.")
def decontam_report(stage_dir: Path, index_dir: Path | None) -> None:
    """Re-aggregate a decontaminate stage's hits into STAGE_DIR/_decontamination.json."""
    from curate.decontaminate import decontamination_report, write_report

    try:
        report = decontamination_report(stage_dir, index_dir)
    except (FileNotFoundError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    _echo_report(report, write_report(stage_dir, report))


def _echo_report(report: dict, path: Path) -> None:
    click.echo(f"  contaminated {report['documents_contaminated']:,} of "
               f"{report['documents_checked']:,} documents; report {path}")
    for name, s in report["eval_sets"].items():
        total = f" of {s['items']:,}" if s["items"] is not None else ""
        click.echo(f"    {name:<24} items hit {s['items_hit']:,}{total}, "
                   f"by {s['documents']:,} documents")
