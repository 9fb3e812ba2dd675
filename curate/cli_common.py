"""What every stage command shares: its options, its run-and-report body, its summary.

A module of its own (importing nothing from ``curate.cli``) so commands that live beside
their stages (quality, PII, labelled sets) use the same options without an import cycle.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from curate.config import ConfigError, StageConfig, load_config
from curate.humanize import human_bytes
from curate.runner import (
    Backend,
    RunReport,
    Stage,
    WorkUnit,
    default_workers,
    plan_shards,
    resolve_backend,
    run_stage,
    set_default_backend,
)
from schemas.storage import StorePath, is_uri, open_uri


class Location(click.ParamType):
    """A local path (``Path``) or, where the command can write one, an object-store URI
    (``s3://bucket/prefix?endpoint_override=host:port&scheme=http``, ``gs://...``, any fsspec
    protocol) as a ``StorePath``."""

    name = "path|uri"

    def __init__(self, remote: bool = True) -> None:
        self.remote = remote

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> Path | StorePath:
        if isinstance(value, Path | StorePath):
            return value
        if not is_uri(value):
            return Path(value)
        if not self.remote:
            self.fail(f"this command works on local folders only (its own phases write files "
                      f"beside the shards); copy {value} to a local folder first", param, ctx)
        try:
            return open_uri(value)
        except (ValueError, OSError) as exc:
            self.fail(f"cannot open {value}: {exc}", param, ctx)


def format_summary(report: RunReport) -> str:
    """The one-screen summary every stage command ends with."""
    secs = max(report.seconds, 1e-9)
    lines = [
        f"stage {report.stage} -> {report.output_dir}",
        f"  shards   {report.units} total: {report.done} written, {report.skipped} unchanged "
        f"(skipped), {len(report.failures)} failed",
        f"  rows     in {report.rows_in:,}  kept {report.rows_kept:,}  "
        f"rejected {report.rows_rejected:,}",
    ]
    for reason, count in report.reasons.most_common():
        lines.append(f"             {count:>10,}  {reason}")
    lines.append(f"  time     {report.seconds:.2f} s  ({report.rows_in / secs:,.0f} rows/s, "
                 f"{human_bytes(report.input_bytes / secs)}/s of input)")
    for unit, error in sorted(report.failures.items()):
        lines.append(f"  FAILED   {unit}: {error}")
    if report.failures:
        lines.append(f"  details in {report.output_dir / '_manifest.json'} (failures); "
                     f"fix the input and re-run: finished shards are skipped")
    return "\n".join(lines)


def run_stage_command(stage: Stage, config_cls: type[StageConfig],
                      plan: Callable[[Path], list[WorkUnit]], input_path: Path | StorePath,
                      output: Path | StorePath, workers: int, recipe: Path | None,
                      overrides: tuple[str, ...], force: bool, quiet: bool) -> None:
    """Shared body of the stage commands: config, plan, run, summary, exit code."""
    if isinstance(input_path, StorePath) and plan is not plan_shards:
        raise click.ClickException(
            f"{stage.name} reads its input as local files; only a stage folder (read through "
            f"its manifest) can be on an object store: {input_path}")
    try:
        cfg = load_config(config_cls, recipe, overrides, section=stage.name)
        units = plan(input_path)
    except (ConfigError, FileNotFoundError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    if not units:
        raise click.ClickException(f"no input files found under {input_path}")
    report = run_stage(stage, units, output, cfg, workers=workers, progress=not quiet,
                       force=force)
    click.echo(format_summary(report))
    if not report.ok:
        sys.exit(1)


def _backend_option(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    """Record ``--backend`` / ``--ray-address`` as the process's default backend, so every
    stage a command runs (all four dedup phases, say) goes there without a new parameter."""
    if "curate.backend_before" not in ctx.meta:  # restored when the command ends
        ctx.meta["curate.backend_before"] = resolve_backend(None)
        ctx.call_on_close(lambda: set_default_backend(ctx.meta["curate.backend_before"]))
    ctx.meta[f"curate.{param.name}"] = value
    kind = ctx.meta.get("curate.backend") or "local"
    set_default_backend(Backend(kind, ctx.meta.get("curate.ray_address")))


def stage_options_for(input_help: str, remote: bool = True) -> Callable[[Callable], Callable]:
    """The options every stage command shares, with the command's own ``--input`` help;
    ``remote=False`` for commands whose own phases need local folders (they reject URIs)."""
    where = (" Stage folders may be object-store URIs (s3://bucket/prefix)." if remote
             else " A local folder.")
    options = [
        click.option("--input", "input_path", required=True, type=Location(remote),
                     help=input_help + where),
        click.option("--output", required=True, type=Location(remote),
                     help="Stage folder to write shards and _manifest.json into." + where),
        click.option("--workers", type=int, default=default_workers, show_default="CPUs, max 8",
                     help="Worker processes (local backend; Ray uses the cluster's CPUs)."),
        click.option("--backend", type=click.Choice(["local", "ray"]), default="local",
                     show_default=True, expose_value=False, callback=_backend_option,
                     help="Run shards in a local process pool or as tasks on a Ray cluster."),
        click.option("--ray-address", metavar="ADDR", expose_value=False,
                     callback=_backend_option,
                     help="Ray cluster to use with --backend ray (ray://host:10001, host:6379 "
                          "or auto; default RAY_ADDRESS, else a local Ray)."),
        click.option("--config", "recipe", type=click.Path(exists=True, path_type=Path),
                     help="YAML recipe (the stage's own section is used when present)."),
        click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
                     help="Override a config value; repeatable."),
        click.option("--force", is_flag=True, help="Redo shards even when unchanged."),
        click.option("--quiet", is_flag=True, help="No progress bar."),
    ]

    def apply(fn: Callable) -> Callable:
        for option in reversed(options):
            fn = option(fn)
        return fn

    return apply


stage_options = stage_options_for("A dataset folder, a file, or a folder of raw files.")
local_stage_options = stage_options_for("A dataset folder, a file, or a folder of raw files.",
                                        remote=False)
