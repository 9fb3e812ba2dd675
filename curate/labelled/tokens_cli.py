"""``curate sft-tokenize`` and ``curate preference-tokenize``: labelled sets to token shards.

Plain click objects that :mod:`curate.cli` registers. This module must not import
``curate.cli`` at import time (``curate.cli`` imports it to register them), so
:func:`_stage_options` declares the shared stage options with the same names and defaults as
``curate.cli.stage_options`` (a test compares them) and ``format_summary`` is imported inside
the bodies.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import click

from curate.cli_common import stage_options_for
from curate.config import ConfigError, load_config
from curate.runner import RunReport


def _stage_options(kind: str) -> Callable[[Callable], Callable]:
    return stage_options_for(f"A {kind} stage folder.", remote=False)


def _finish(report: RunReport, output: Path) -> None:
    from curate.cli import format_summary
    from curate.labelled.tokenize_chat import chat_token_stats

    click.echo(format_summary(report))
    if not report.ok:
        sys.exit(1)
    stats = chat_token_stats(output)
    if "pairs" in stats:
        click.echo(f"  tokens   {stats.get('tokens', 0):,} in {stats['pairs']:,} pairs "
                   f"({stats.get('truncated', 0):,} truncated)")
    else:
        trained = stats.get("trained_tokens", 0) / max(stats.get("tokens", 0), 1)
        click.echo(f"  tokens   {stats.get('tokens', 0):,} in {stats.get('rows', 0):,} rows "
                   f"from {stats.get('conversations', 0):,} conversations "
                   f"({trained:.1%} trained on, {stats.get('truncated', 0):,} truncated)")


@click.command("sft-tokenize")
@_stage_options("sft")
def sft_tokenize(input_path: Path, output: Path, workers: int, recipe: Path | None,
                 overrides: tuple[str, ...], force: bool, quiet: bool) -> None:
    """Tokenize an sft stage with a chat template into sft_tokens rows: input_ids and a
    loss_mask over the assistant turns (end-of-turn included), optionally packed; plus
    token_index/ (conversation -> row, offset, length, truncated) and _tokenizer.json.

    Config keys: tokenizer (folder, required), chat_template, max_length,
    truncation (drop|truncate), packing, trl_columns, batch_size.
    """
    from curate.labelled.tokenize_chat import SFT_STAGE, SftTokenizeConfig, run_sft_tokenize

    try:
        cfg = load_config(SftTokenizeConfig, recipe, overrides, section=SFT_STAGE)
        report = run_sft_tokenize(input_path, output, cfg, workers=workers,
                                  progress=not quiet, force=force)
    except (ConfigError, FileNotFoundError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    _finish(report, output)


@click.command("preference-tokenize")
@_stage_options("preference")
def preference_tokenize(input_path: Path, output: Path, workers: int, recipe: Path | None,
                        overrides: tuple[str, ...], force: bool, quiet: bool) -> None:
    """Tokenize a preference stage with a chat template into preference_tokens rows:
    prompt_ids (through the reply's header), chosen_ids and rejected_ids, plus
    chosen_input_ids / rejected_input_ids (prompt + reply) for reward models.

    Config keys: tokenizer (folder, required), chat_template, max_length,
    truncation (drop|truncate), trl_columns, batch_size.
    """
    from curate.labelled.tokenize_chat import (
        PREFERENCE_STAGE,
        PreferenceTokenizeConfig,
        run_preference_tokenize,
    )

    try:
        cfg = load_config(PreferenceTokenizeConfig, recipe, overrides, section=PREFERENCE_STAGE)
        report = run_preference_tokenize(input_path, output, cfg, workers=workers,
                                         progress=not quiet, force=force)
    except (ConfigError, FileNotFoundError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    _finish(report, output)
