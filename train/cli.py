"""The ``train`` command line. Recipes land here as the training backends are built."""

from __future__ import annotations

import json
from pathlib import Path

import click

from schemas.version import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="train")
def main() -> None:
    """Train models from token shards."""


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def env(as_json: bool) -> None:
    """Show the torch build, accelerators and distributed settings training would use."""
    from train.environment import probe_environment

    info = probe_environment()
    if as_json:
        click.echo(json.dumps(info.to_json(), indent=2))
        return
    click.echo(f"python {info.python}, torch {info.torch} (CUDA build: {info.cuda_build})")
    click.echo(f"CPU threads: {info.cpu_threads}")
    if not info.devices:
        click.echo("accelerators: none (training runs on the CPU; fine for tiny models)")
    for d in info.devices:
        click.echo(f"cuda:{d.index} {d.name}, {d.memory_gib} GiB, sm {d.capability}, "
                   f"bf16 {'yes' if d.bf16 else 'no'}")
    if info.distributed:
        click.echo("distributed: " + ", ".join(f"{k}={v}" for k, v in info.distributed.items()))


def _train_options(f):
    f = click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
                     help="Override a config value (repeatable), e.g. --set lr=1e-3.")(f)
    f = click.option("--config", "recipe", type=click.Path(exists=True, path_type=Path),
                     help="YAML recipe (its `train:` section, or the whole file).")(f)
    f = click.option("--eval-data", type=click.Path(exists=True, path_type=Path),
                     help="Held-out token stage or mix (else config eval_rows are held out).")(f)
    f = click.option("--no-resume", is_flag=True,
                     help="Start over even if OUTPUT holds a checkpoint.")(f)
    f = click.option("--output", required=True, type=click.Path(path_type=Path),
                     help="Run folder: checkpoints/, model/, metrics.jsonl, tensorboard/.")(f)
    f = click.option("--data", required=True, type=click.Path(exists=True, path_type=Path),
                     help="Token stage folder (`curate tokenize`) or mix folder (`curate mix`).")(f)
    return f


def _load(recipe: Path | None, overrides: tuple[str, ...]):
    from train.config import TrainConfigError, load_train_config

    try:
        return load_train_config(recipe, overrides)
    except TrainConfigError as exc:
        raise click.UsageError(str(exc)) from None


def _is_main() -> bool:
    """Rank 0 of a torchrun job (or a plain run) reports; the other ranks stay quiet."""
    import os

    return os.environ.get("RANK", "0") == "0"


def _summary(result) -> str:
    lines = [f"steps {result.steps}"
             + (f" (resumed from {result.resumed_from})" if result.resumed_from else "")
             + f", {result.parameters:,} non-embedding parameters, "
             f"{result.tokens_per_s:,.0f} tokens/s"]
    if result.losses:
        lines.append(f"train loss {result.losses[0]:.4f} -> {result.losses[-1]:.4f}")
    for name, recs in result.evals.items():
        lines.append(f"eval {name}: loss {recs[-1]['loss']:.4f}, "
                     f"perplexity {recs[-1]['perplexity']:.2f} (step {recs[-1]['step']})")
    lines.append(f"model: {result.output / 'model'}")
    return "\n".join(lines)


@main.command()
@_train_options
def pretrain(data: Path, output: Path, eval_data: Path | None, recipe: Path | None,
             overrides: tuple[str, ...], no_resume: bool) -> None:
    """Pre-train a Llama-style model from scratch on a token stage or mix (resumes OUTPUT).

    Run on several processes or GPUs with ``torchrun --nproc-per-node N -m train pretrain``.
    """
    from train.loop import train

    cfg = _load(recipe, overrides)
    result = train(cfg, data, output, resume=not no_resume,
                   eval_data={"heldout": eval_data} if eval_data else None)
    if _is_main():
        click.echo(_summary(result))


@main.command()
@click.option("--init", "init", required=True, type=click.Path(exists=True, path_type=Path),
              help="Checkpoint folder to start from (a `model/` or `checkpoints/step-*`).")
@click.option("--general-eval", type=click.Path(exists=True, path_type=Path),
              help="General held-out data: its loss before vs after is the forgetting monitor.")
@_train_options
def cpt(init: Path, general_eval: Path | None, data: Path, output: Path,
        eval_data: Path | None, recipe: Path | None, overrides: tuple[str, ...],
        no_resume: bool) -> None:
    """Continued pre-training: start from a checkpoint on domain data (a mix with replay).

    The LR re-warms over ``warmup_steps``; held-out losses are measured before and after and
    written to OUTPUT/cpt_report.json.
    """
    from train.loop import forgetting_report, train

    cfg = _load(recipe, ("eval_at_start=true", *overrides))
    evals = {}
    if general_eval:
        evals["general"] = general_eval
    if eval_data:
        evals["domain"] = eval_data
    result = train(cfg, data, output, init=init, eval_data=evals, resume=not no_resume)
    if not _is_main():
        return
    report = forgetting_report(output)
    click.echo(_summary(result))
    for name, r in report["evals"].items():
        click.echo(f"forgetting monitor {name}: loss {r['loss_before']:.4f} -> "
                   f"{r['loss_after']:.4f} ({r['delta']:+.4f})")


def _add_rlhf_commands() -> None:
    """``train reward`` / ``train dpo`` / ``train rl`` (preference tuning, train/rlhf_cli.py)."""
    from train.rlhf_cli import dpo_command, reward_command, rl_command

    for cmd in (reward_command, dpo_command, rl_command):
        main.add_command(cmd)


_add_rlhf_commands()


def _add_finetune_commands() -> None:
    """``train sft`` (full or LoRA) / ``train classify`` (train/sft.py, train/classify.py)."""
    from train.classify import classify_command
    from train.sft import sft_command

    main.add_command(sft_command)
    main.add_command(classify_command)


_add_finetune_commands()


if __name__ == "__main__":
    main()
