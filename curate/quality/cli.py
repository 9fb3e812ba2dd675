"""Command line: ``curate quality signals|select`` and ``curate stats``.

``quality`` is a click group other modules add subcommands to (``quality.add_command``);
``stats`` is a top-level command. Like the other command modules, this one imports nothing
from :mod:`curate.cli` at import time (``curate.cli`` imports it to register the commands):
:func:`stage_options` repeats ``curate.cli.stage_options`` (a test compares them) and
``run_stage_command`` is imported inside the bodies.
"""

from __future__ import annotations

from pathlib import Path

import click

from curate.cli_common import stage_options_for

stage_options = stage_options_for("A stage folder (documents, or signals for select).")


@click.group("quality")
def quality() -> None:
    """Heuristic quality filtering: signal columns first, then selection by a recipe."""


@quality.command("signals")
@stage_options
def quality_signals(input_path: Path, output: Path, workers: int, recipe: Path | None,
                    overrides: tuple[str, ...], force: bool, quiet: bool) -> None:
    """Add Gopher, C4 and FineWeb signal columns (q_*) to a documents stage; rejects nothing.

    Config keys: top_ngrams, dup_ngrams, stop_words, stop_words_by_lang, c4.*, c4_fineweb.*
    (remove_citations, filter_no_terminal_punct, min_words_per_line, max_word_length,
    filter_lorem_ipsum, filter_javascript, filter_curly_bracket, filter_policy),
    fineweb_short_line_length, fineweb_after_c4.
    """
    from curate.cli import run_stage_command
    from curate.quality.signals import QUALITY_SIGNALS, SignalsConfig
    from curate.runner import plan_shards

    run_stage_command(QUALITY_SIGNALS, SignalsConfig, plan_shards, input_path, output, workers,
                      recipe, overrides, force, quiet)


@quality.command("select")
@stage_options
@click.option("--preset", type=click.Choice(["fineweb", "gopher", "c4", "c4_fineweb", "none"]),
              help="Start from this preset (default: the recipe's, else fineweb).")
@click.option("--funnel-image", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the funnel as a PNG bar chart here.")
def quality_select(input_path: Path, output: Path, workers: int, recipe: Path | None,
                   overrides: tuple[str, ...], force: bool, quiet: bool, preset: str | None,
                   funnel_image: Path | None) -> None:
    """Keep the documents that pass every rule of a recipe (INPUT: a quality signals stage).

    Rejected rows go to rejected/ with reject_reason (first failed rule), reject_detail and
    failed_rules; the funnel is printed at the end. Config keys: preset, rules.NAME.threshold,
    rules.NAME.enabled, rules.NAME.langs, and new rules as rules.NAME.{column, op, threshold}.
    """
    from curate.cli import run_stage_command
    from curate.config import ConfigError
    from curate.quality.rules import Recipe, load_recipe
    from curate.quality.select import QUALITY_SELECT, funnel_png, stage_funnel
    from curate.runner import plan_shards

    overrides = (*overrides, f"preset={preset}") if preset else overrides
    try:
        load_recipe(recipe, overrides)
    except (ConfigError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    try:
        run_stage_command(QUALITY_SELECT, Recipe, plan_shards, input_path, output, workers,
                          recipe, overrides, force, quiet)
    finally:
        if (output / "_manifest.json").exists():
            funnel = stage_funnel(output)
            click.echo("\n" + funnel.markdown())
            if funnel_image is not None:
                funnel_image.write_bytes(funnel_png(funnel))
                click.echo(f"funnel image: {funnel_image}")


@click.command("stats")
@click.argument("stage_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--image", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the funnel as a PNG bar chart here.")
def stats(stage_dir: Path, image: Path | None) -> None:
    """Print the funnel of a stage folder: documents and characters removed per rule.

    Made for quality selection folders (rules in recipe order, plus how many documents fail
    each rule at all); on any other stage it counts the reject reasons.
    """
    from curate.quality.select import funnel_png, stage_funnel

    try:
        funnel = stage_funnel(stage_dir)
    except FileNotFoundError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"funnel of {stage_dir}\n")
    click.echo(funnel.markdown())
    if image is not None:
        image.write_bytes(funnel_png(funnel, title=f"funnel of {stage_dir.name}"))
        click.echo(f"\nimage: {image}")
