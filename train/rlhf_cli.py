"""``train reward`` / ``train dpo`` / ``train rl``: preference tuning from ``preference_tokens``.

Registered on the ``train`` group by ``train/cli.py``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

_DATA = click.Path(exists=True, path_type=Path)


def _recipe_defaults(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """``--config`` (a YAML recipe: its section named after the command, or the whole file)
    and ``--set key=value`` become the command's defaults: flags given on the command line
    still win, and a key the command does not know is an error."""
    import yaml

    from train.config import TrainConfigError, parse_override

    if not value:
        return value
    if param.name == "recipe":
        loaded = yaml.safe_load(Path(value).read_text()) or {}
        if not isinstance(loaded, dict):
            raise click.BadParameter("a recipe must be a mapping of settings", ctx, param)
        section = loaded.get(ctx.command.name)
        ctx.meta["train.recipe"] = dict(section if isinstance(section, dict) else loaded)
    else:
        try:
            ctx.meta["train.set"] = dict(parse_override(item) for item in value)
        except TrainConfigError as exc:
            raise click.BadParameter(str(exc), ctx, param) from None
    # --set beats the recipe whichever comes first on the command line
    defaults = {**ctx.meta.get("train.recipe", {}), **ctx.meta.get("train.set", {})}
    known = {p.name for p in ctx.command.params} - {"recipe", "overrides"}
    unknown = sorted({k.replace("-", "_") for k in defaults} - known)
    if unknown:
        raise click.BadParameter(f"unknown setting(s) {unknown}; known: {sorted(known)}",
                                 ctx, param)
    ctx.default_map = {k.replace("-", "_"): v for k, v in defaults.items()}
    return value


def _recipe_options(f):
    """``--config RECIPE`` then ``--set KEY=VALUE`` (repeatable), read before the other options."""
    f = click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", is_eager=True,
                     expose_value=False, callback=_recipe_defaults,
                     help="Override a setting (repeatable), e.g. --set beta=0.2.")(f)
    return click.option("--config", "recipe", type=click.Path(exists=True, path_type=Path),
                        is_eager=True, expose_value=False, callback=_recipe_defaults,
                        help="YAML recipe: its section named after the command (`reward:`, "
                             "`dpo:`) or the whole file; keys are the option names.")(f)


@click.command("reward")
@click.option("--data", required=True, type=_DATA, help="preference_tokens stage folder.")
@click.option("--output", required=True, type=click.Path(path_type=Path), help="Run folder.")
@click.option("--init", default="tiny", show_default=True,
              help="SFT checkpoint folder (its transformer is reused) or a model preset.")
@click.option("--epochs", default=3, show_default=True)
@click.option("--batch-size", default=16, show_default=True)
@click.option("--lr", default=1e-3, show_default=True)
@click.option("--pad-id", default=0, show_default=True,
              help="Padding id (may equal eos: the score is read at the last attended token).")
@click.option("--seed", default=0, show_default=True)
@_recipe_options
def reward_command(data: Path, output: Path, init: str, epochs: int, batch_size: int, lr: float,
                   pad_id: int, seed: int) -> None:
    """Train a Bradley-Terry reward model; report held-out pairwise accuracy."""
    from train.reward import load_pairs, train_reward, vocab_size_of

    rows = load_pairs(data)
    res = train_reward(rows, init, output, vocab_size=vocab_size_of(rows), pad_id=pad_id,
                       epochs=epochs, batch_size=batch_size, lr=lr, seed=seed)
    click.echo(f"steps {res.steps}, train loss {res.losses[0]:.4f} -> {res.losses[-1]:.4f}")
    click.echo(f"held-out accuracy {res.eval_accuracy:.3f}, margin {res.eval_margin:.3f}")
    click.echo(f"model: {output / 'model'}")


@click.command("dpo")
@click.option("--data", required=True, type=_DATA, help="preference_tokens stage folder.")
@click.option("--init", required=True, type=_DATA,
              help="SFT checkpoint: the starting policy and the frozen reference.")
@click.option("--output", required=True, type=click.Path(path_type=Path), help="Run folder.")
@click.option("--loss", type=click.Choice(["sigmoid", "ipo", "simpo"]), default="sigmoid",
              show_default=True, help="DPO (sigmoid), IPO or SimPO (reference-free).")
@click.option("--beta", default=0.1, show_default=True)
@click.option("--gamma", default=0.5, show_default=True, help="SimPO target margin.")
@click.option("--epochs", default=2, show_default=True)
@click.option("--batch-size", default=8, show_default=True)
@click.option("--lr", default=5e-4, show_default=True)
@click.option("--pad-id", default=0, show_default=True)
@click.option("--seed", default=0, show_default=True)
@_recipe_options
def dpo_command(data: Path, init: Path, output: Path, loss: str, beta: float, gamma: float,
                epochs: int, batch_size: int, lr: float, pad_id: int, seed: int) -> None:
    """Direct preference optimisation against the frozen SFT model; reports margins."""
    from train.dpo import train_dpo
    from train.reward import load_pairs

    res = train_dpo(load_pairs(data), init, output, loss=loss, beta=beta, gamma=gamma,
                    epochs=epochs, batch_size=batch_size, lr=lr, pad_id=pad_id, seed=seed)
    b, a = res.before, res.after
    click.echo(f"steps {res.steps}, loss {res.losses[0]:.4f} -> {res.losses[-1]:.4f}")
    click.echo(f"held-out reward margin {b['reward_margin']:.4f} -> {a['reward_margin']:.4f}, "
               f"accuracy {b['accuracy']:.3f} -> {a['accuracy']:.3f}, "
               f"log-prob margin {b['logp_margin']:.3f} -> {a['logp_margin']:.3f}")
    click.echo(f"model: {output / 'model'}")


@click.command("rl")
@click.option("--data", required=True, type=_DATA,
              help="preference_tokens stage folder: its prompt_ids are the RL prompts.")
@click.option("--init", required=True, type=_DATA, help="SFT checkpoint (policy and reference).")
@click.option("--reward-model", required=True, type=_DATA, help="`train reward` model folder.")
@click.option("--output", required=True, type=click.Path(path_type=Path), help="Run folder.")
@click.option("--steps", default=50, show_default=True)
@click.option("--prompts-per-step", default=4, show_default=True)
@click.option("--group", default=8, show_default=True, help="Replies sampled per prompt.")
@click.option("--max-new", default=32, show_default=True, help="Longest reply in tokens.")
@click.option("--beta", default=0.04, show_default=True, help="KL penalty weight.")
@click.option("--lr", default=1e-5, show_default=True)
@click.option("--eos-id", type=int, default=None, help="Stop a reply at this id.")
@click.option("--pad-id", default=0, show_default=True)
@click.option("--seed", default=0, show_default=True)
def rl_command(data: Path, init: Path, reward_model: Path, output: Path, steps: int,
               prompts_per_step: int, group: int, max_new: int, beta: float, lr: float,
               eos_id: int | None, pad_id: int, seed: int) -> None:
    """Online RL (GRPO) scored by a reward model with a KL penalty to the SFT model."""
    from train.models import build_model
    from train.reward import build_reward_model, load_pairs
    from train.rl import train_grpo

    prompts = list({tuple(r["prompt_ids"]): None for r in load_pairs(data)})
    res = train_grpo(build_model(init), [list(p) for p in prompts], output,
                     reward_model=build_reward_model(reward_model).eval(), steps=steps,
                     prompts_per_step=prompts_per_step, group=group, max_new=max_new,
                     beta=beta, lr=lr, eos_id=eos_id, pad_id=pad_id, seed=seed)
    last = res.history[-1]
    click.echo(f"steps {res.steps}, mean reward {res.reference_reward:.4f} (reference) -> "
               f"{res.final_reward:.4f}; last step KL {last['kl']:.4f}, "
               f"reply length {last['response_length']:.1f}")
    click.echo(f"model: {output / 'model'}")
