"""``curate labelled``: ingest, validate, filter, dedup, split and transform labelled sets, and
write the demo set.

The group builds its commands on first use: they are made with ``curate.cli``'s shared
helpers (``stage_options``, ``run_stage_command``, ``format_summary``), and ``curate.cli``
registers this group, so importing those helpers here at import time would be a cycle.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path

import click

from curate.config import ConfigError, load_config

KINDS = ("sft", "preference")


class _LazyGroup(click.Group):
    """A group whose commands are defined when first listed or looked up."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(_commands())

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        return _commands().get(cmd_name)


labelled = _LazyGroup("labelled", help="Labelled sets: SFT conversations and preference pairs "
                                       "(ingest, validate, filter, dedup, split, demo).")


def _input_kind(input_path: Path) -> str:
    from curate.labelled.curate_sets import stage_kind

    try:
        return stage_kind(input_path)
    except (FileNotFoundError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None


def _recipe_section(recipe: Path | None, names: list[str]) -> str | None:
    """The first of ``names`` that is a section of the recipe (else None: the whole file)."""
    if recipe is None:
        return names[0]
    import yaml

    loaded = yaml.safe_load(Path(recipe).read_text()) or {}
    return next((n for n in names if isinstance(loaded, dict) and n in loaded), names[0])


@functools.cache
def _commands() -> dict[str, click.Command]:
    from curate.cli import format_summary, run_stage_command
    from curate.cli import local_stage_options as stage_options
    from curate.runner import plan_shards, run_stage

    @click.command("ingest")
    @stage_options
    @click.option("--kind", type=click.Choice(["auto", *KINDS]), default="auto",
                  show_default=True, help="Output kind; auto looks at the files' columns.")
    def ingest(input_path: Path, output: Path, workers: int, recipe: Path | None,
               overrides: tuple[str, ...], force: bool, quiet: bool, kind: str) -> None:
        """Ingest chat / instruction / preference files (JSONL, JSON, CSV, Parquet, .gz/.zst,
        datasets.save_to_disk folders) into sft or preference shards, validated.

        Layouts (detected from the columns): messages [{role, content}], ShareGPT
        conversations [{from, value}], Alpaca instruction/input/output, prompt/completion;
        preference prompt/chosen/rejected (strings or message lists) and full chosen/rejected
        transcripts (the shared prefix becomes the prompt).

        Config keys: layout, rename, roles, id_column, split_column, source, format, encoding,
        keep_metadata, validation, max_turns, max_chars, require_user_first, split.
        """
        from curate.labelled.ingest import (
            INGEST_STAGES,
            LabelledIngestConfig,
            detect_kind,
            plan_labelled,
        )

        names = [f"{k}_ingest" for k in (KINDS if kind == "auto" else (kind,))]
        try:
            cfg = load_config(LabelledIngestConfig, recipe, overrides,
                              section=_recipe_section(recipe, names))
            if kind == "auto":
                kind = detect_kind(plan_labelled(input_path), cfg)
        except (ConfigError, FileNotFoundError, ValueError) as exc:
            raise click.ClickException(str(exc)) from None
        run_stage_command(INGEST_STAGES[kind], LabelledIngestConfig, plan_labelled, input_path,
                          output, workers, recipe, overrides, force, quiet)

    @click.command("validate")
    @stage_options
    def validate(input_path: Path, output: Path, workers: int, recipe: Path | None,
                 overrides: tuple[str, ...], force: bool, quiet: bool) -> None:
        """Re-validate an sft or preference stage (e.g. with other limits).

        Config keys: max_turns, max_chars, require_user_first.
        """
        from curate.labelled.validate import VALIDATE_STAGES, ValidationConfig

        stage = VALIDATE_STAGES[_input_kind(input_path)]
        run_stage_command(stage, ValidationConfig, plan_shards, input_path, output, workers,
                          recipe, overrides, force, quiet)

    @click.command("filter")
    @stage_options
    def filter_(input_path: Path, output: Path, workers: int, recipe: Path | None,
                overrides: tuple[str, ...], force: bool, quiet: bool) -> None:
        """Language (lid.176 on user + assistant text: lang, lang_score) and quality filters.

        Config keys: langid, languages, lang_threshold, model_path, max_lang_chars,
        batch_size, min_prompt_words, min_response_words, max_response_words,
        min_unique_word_ratio.
        """
        from curate.labelled.curate_sets import FILTER_STAGES, LabelledFilterConfig

        stage = FILTER_STAGES[_input_kind(input_path)]
        run_stage_command(stage, LabelledFilterConfig, plan_shards, input_path, output,
                          workers, recipe, overrides, force, quiet)

    @click.command("dedup")
    @stage_options
    def dedup(input_path: Path, output: Path, workers: int, recipe: Path | None,
              overrides: tuple[str, ...], force: bool, quiet: bool) -> None:
        """Exact and MinHash near-duplicate removal of examples, compared by their rendered
        conversation (or prompt: --set render=prompt).

        Writes OUTPUT/view (documents), signatures, buckets, clusters and OUTPUT/sft or
        OUTPUT/preference (kept examples with dup_cluster, dup_cluster_size; removed ones in
        rejected/ with duplicate_of). Config keys: those of `curate dedup`, plus render.
        """
        from curate.labelled.curate_sets import LabelledDedupConfig, run_labelled_dedup

        kind = _input_kind(input_path)
        try:
            cfg = load_config(LabelledDedupConfig, recipe, overrides,
                              section=_recipe_section(recipe, [f"{kind}_dedup"]))
            report = run_labelled_dedup(input_path, output, cfg, workers=workers,
                                        progress=not quiet, force=force)
        except (ConfigError, FileNotFoundError, ValueError) as exc:
            raise click.ClickException(str(exc)) from None
        click.echo(report.summary())
        if not report.ok:
            sys.exit(1)

    @click.command("split")
    @stage_options
    def split(input_path: Path, output: Path, workers: int, recipe: Path | None,
              overrides: tuple[str, ...], force: bool, quiet: bool) -> None:
        """Set split = train / validation / test by a salted hash of the id (or prompt).

        Config keys: validation_fraction, test_fraction, salt, key (id|prompt), keep_existing.
        """
        from curate.labelled.curate_sets import SPLIT_STAGES, SplitConfig, split_counts

        stage = SPLIT_STAGES[_input_kind(input_path)]
        try:
            cfg = load_config(SplitConfig, recipe, overrides,
                              section=_recipe_section(recipe, [stage.name]))
        except ConfigError as exc:
            raise click.ClickException(str(exc)) from None
        report = run_stage(stage, plan_shards(input_path), output, cfg, workers=workers,
                           progress=not quiet, force=force)
        click.echo(format_summary(report))
        counts = split_counts(output)
        click.echo("  splits   " + "  ".join(f"{k} {v:,}" for k, v in counts.items()))
        if not report.ok:
            sys.exit(1)

    @click.command("transform")
    @stage_options
    def transform(input_path: Path, output: Path, workers: int, recipe: Path | None,
                  overrides: tuple[str, ...], force: bool, quiet: bool) -> None:
        """Apply a documents transform (PII redaction, decontamination...) to every turn.

        Config keys: function (module:function over a documents table, returning the kept
        documents or a StageOutput), stage_label.
        """
        from curate.labelled.curate_sets import TRANSFORM_STAGES, TransformConfig

        stage = TRANSFORM_STAGES[_input_kind(input_path)]
        run_stage_command(stage, TransformConfig, plan_shards, input_path, output, workers,
                          recipe, overrides, force, quiet)

    @click.command("demo")
    @click.option("--output", required=True, type=click.Path(file_okay=False, path_type=Path),
                  help="Folder to write sft/, preference/ and labelled_demo.json into.")
    @click.option("--seed", type=int, default=0, show_default=True)
    def demo(output: Path, seed: int) -> None:
        """Write the demo's labelled set (every layout, broken rows, planted duplicates)."""
        from curate.labelled.demo import MANIFEST_NAME, write_labelled_demo

        paths = write_labelled_demo(output, seed)
        for path in paths:
            click.echo(f"  {path}")
        click.echo(f"wrote {len(paths)} files and {output / MANIFEST_NAME}")

    return {c.name: c for c in (ingest, validate, filter_, dedup, split, transform, demo)
            if c.name}
