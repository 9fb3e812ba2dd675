"""``train reward`` / ``train dpo`` / ``train rl``: preference tuning from ``preference_tokens``.

Registered on the ``train`` group by ``train/cli.py``.
"""

from __future__ import annotations

from pathlib import Path

import click

_DATA = click.Path(exists=True, path_type=Path)


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
