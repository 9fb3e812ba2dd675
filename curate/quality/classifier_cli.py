"""``curate quality train`` and ``curate quality score``: the fastText quality classifier.

Plain click commands, registered on the ``quality`` group by :mod:`curate.cli`. This module
must not import ``curate.cli`` at import time (``curate.cli`` imports it to register the
commands), so :func:`_stage_options` declares the shared stage options with the same names
and defaults as ``curate.cli.stage_options`` (a test compares them), and ``format_summary``
is imported inside the body.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from curate.cli_common import stage_options_for
from curate.config import ConfigError, load_config

_stage_options = stage_options_for("A documents stage folder.")


@click.command("train")
@click.option("--positive", "positives", required=True, multiple=True,
              type=click.Path(exists=True, path_type=Path),
              help="Good documents (__label__hq): a documents stage folder or .arrow shard; "
                   "repeatable.")
@click.option("--negative", "negatives", required=True, multiple=True,
              type=click.Path(exists=True, path_type=Path),
              help="Bad documents (__label__lq), e.g. raw crawl; repeatable.")
@click.option("--output", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Model folder to write (model.bin, model.json); an earlier one is replaced.")
@click.option("--config", "recipe", type=click.Path(exists=True, path_type=Path),
              help="YAML recipe (its quality_train: section when present).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a config value; repeatable.")
def train(positives: tuple[Path, ...], negatives: tuple[Path, ...], output: Path,
          recipe: Path | None, overrides: tuple[str, ...]) -> None:
    """Train a fastText quality classifier on positive vs negative documents, report
    held-out precision/recall and save a versioned model folder.

    Config keys: max_chars, lowercase, heldout_fraction, split_seed, max_docs_per_class,
    epoch, lr, word_ngrams, dim, min_count, bucket, seed, threads (1 = deterministic),
    quantize.
    """
    from curate.quality.classifier import TRAIN_SECTION, ClassifierConfig, train_classifier

    try:
        cfg = load_config(ClassifierConfig, recipe, overrides, section=TRAIN_SECTION)
        report = train_classifier(list(positives), list(negatives), output, cfg)
    except (ConfigError, FileNotFoundError, ValueError, RuntimeError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(report.summary())


@click.command("score")
@_stage_options
def score(input_path: Path, output: Path, workers: int, recipe: Path | None,
          overrides: tuple[str, ...], force: bool, quiet: bool) -> None:
    """Score documents with a fastText quality model (INPUT: a documents stage); with a
    threshold, documents below it are rejected as low_quality_score.

    Config keys: model_path (a `curate quality train` folder or any fastText .bin/.ftz file;
    required), label (default __label__hq), column (default quality_score), threshold
    (default: none, score only), max_chars, lowercase, batch_size.
    """
    from curate.cli import format_summary
    from curate.quality.classifier import QUALITY_SCORE, QualityScoreConfig, with_model_version
    from curate.runner import plan_shards, run_stage

    try:
        cfg = load_config(QualityScoreConfig, recipe, overrides, section=QUALITY_SCORE.name)
        cfg = with_model_version(cfg)
        units = plan_shards(input_path)
    except (ConfigError, FileNotFoundError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    if not units:
        raise click.ClickException(f"no input files found under {input_path}")
    report = run_stage(QUALITY_SCORE, units, output, cfg, workers=workers, progress=not quiet,
                       force=force)
    click.echo(format_summary(report))
    if not report.ok:
        sys.exit(1)
