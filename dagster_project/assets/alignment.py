"""Alignment assets: a reward model and a preference-optimised (DPO) model from the SFT model,
both launched through Dagster Pipes like ``base_model``.

* ``reward_model`` (global): ``train reward`` (Bradley-Terry, the SFT model's transformer under
  a new score head) on ``preference_token_shards``; metadata: held-out pairwise accuracy
  (chosen scored above rejected) and margin, loss curve.
* ``aligned_model`` (global): ``train dpo`` from ``models/sft/model`` against a frozen copy of
  it (the reference), loss ``sigmoid`` (DPO), ``ipo`` or ``simpo`` on the launchpad. The
  blocking check ``aligned_prefers_chosen`` compares the aligned model with the SFT model on
  the held-out preference pairs (the preference set's validation split, never trained on): the
  mean log-probability margin of the chosen over the rejected reply, and the share of pairs
  where the chosen reply is the more likely one, both models side by side. It passes when the
  aligned model's mean margin is at least the SFT model's (within ``tolerance``): the mean over
  every pair is what preference optimisation moves, while the share flips with single pairs
  on a small held-out set, so it is shown, not gated. Both come from the trainer's
  ``dpo_report.json``: "before" is the policy at its start, i.e. the SFT model's weights.
"""
# No `from __future__ import annotations`: Dagster reads the config annotations at runtime.

import json
from pathlib import Path
from typing import Any, Literal

import dagster as dg
from pydantic import Field

from curate.labelled.tokenize_chat import META_NAME
from dagster_project.assets.finetune import sft_dir, sft_model
from dagster_project.assets.labelled import preference_token_shards
from dagster_project.assets.labelled import tokens_dir as labelled_tokens_dir
from dagster_project.assets.launch import (
    GROUP,
    POOL,
    launch,
    loss_curve,
    read_json,
    require_dir,
    train_command,
)
from dagster_project.resources import DataRoot

REWARD_DIR = "models/reward"
ALIGNED_DIR = "models/aligned"
ALIGNED_CHECK = "aligned_prefers_chosen"


def reward_dir(data: DataRoot) -> Path:
    return data.path / REWARD_DIR


def aligned_dir(data: DataRoot) -> Path:
    return data.path / ALIGNED_DIR


def _inputs(data: DataRoot) -> tuple[Path, Path, int]:
    """(preference token stage, SFT model folder, the tokenizer's pad id)."""
    prefs = require_dir(labelled_tokens_dir(data, "preference"), "preference_token_shards")
    sft = require_dir(sft_dir(data) / "model", "sft_model")
    meta = json.loads((prefs / META_NAME).read_text()) if (prefs / META_NAME).is_file() else {}
    return prefs, sft, int(meta.get("pad_id") or 0)


class RewardModelConfig(dg.Config):
    """Launchpad settings of the Bradley-Terry reward model."""

    epochs: int = Field(2, gt=0)
    batch_size: int = Field(16, gt=0)
    lr: float = Field(1e-3, gt=0)
    seed: int = 0


@dg.asset(group_name=GROUP, kinds={"pytorch"}, pool=POOL,
          deps=[sft_model, preference_token_shards],
          description="Global: `train reward` (through Dagster Pipes), a Bradley-Terry reward "
                      "model from the SFT model on the preference pairs, into <data_root>/"
                      "models/reward; metadata: held-out pairwise accuracy and margin.")
def reward_model(context: dg.AssetExecutionContext, config: RewardModelConfig,
                 data: DataRoot) -> dg.MaterializeResult:
    prefs, sft, pad_id = _inputs(data)
    out = reward_dir(data)
    command = train_command(
        "reward", "--data", str(prefs), "--init", str(sft), "--output", str(out),
        "--epochs", str(config.epochs), "--batch-size", str(config.batch_size),
        "--lr", str(config.lr), "--pad-id", str(pad_id), "--seed", str(config.seed))
    metadata = launch(context, command)
    final = read_json(out / "reward_report.json")["history"][-1]
    return dg.MaterializeResult(metadata={
        **metadata,
        "heldout_accuracy": float(final["accuracy"]),
        "heldout_margin": float(final["margin"]),
        "heldout_pairs": int(final["pairs"]),
        "loss_curve": loss_curve(out, "reward model loss"),
        "model": dg.MetadataValue.path(str(out / "model"))})


class AlignedModelConfig(dg.Config):
    """Launchpad settings of preference optimisation and its comparison with the SFT model."""

    loss: Literal["sigmoid", "ipo", "simpo"] = Field("sigmoid", description=(
        "sigmoid (DPO), ipo, or simpo (reference-free, length-normalised)."))
    beta: float = Field(0.1, gt=0)
    gamma: float = Field(0.5, ge=0, description="SimPO target margin.")
    epochs: int = Field(1, gt=0)
    batch_size: int = Field(8, gt=0)
    lr: float = Field(5e-4, gt=0)
    seed: int = 0
    tolerance: float = Field(0.0, ge=0, description=(
        f"{ALIGNED_CHECK} passes when the aligned model's mean held-out log-prob margin is at "
        "least the SFT model's minus this (nats)."))


def aligned_prefers_chosen(report: dict[str, Any], tolerance: float) -> dg.AssetCheckResult:
    """Aligned (``after``) vs SFT (``before``) on the held-out pairs of ``dpo_report.json``."""
    sft, aligned = report.get("before") or {}, report.get("after") or {}
    keys = ("logp_margin", "logp_accuracy")
    if not all(k in sft and k in aligned for k in keys):
        return dg.AssetCheckResult(check_name=ALIGNED_CHECK, passed=False, metadata={
            "problem": "dpo_report.json lacks the held-out log-prob margin or accuracy"})
    metadata = {"sft_logp_margin": float(sft["logp_margin"]),
                "aligned_logp_margin": float(aligned["logp_margin"]),
                "sft_accuracy": float(sft["logp_accuracy"]),
                "aligned_accuracy": float(aligned["logp_accuracy"]),
                "heldout_pairs": int(aligned.get("pairs", 0)),
                "tolerance": float(tolerance)}
    passed = aligned["logp_margin"] >= sft["logp_margin"] - tolerance
    return dg.AssetCheckResult(check_name=ALIGNED_CHECK, passed=bool(passed),
                               metadata=metadata)


@dg.asset(group_name=GROUP, kinds={"pytorch"}, pool=POOL,
          deps=[sft_model, preference_token_shards],
          check_specs=[dg.AssetCheckSpec(
              ALIGNED_CHECK, asset="aligned_model", blocking=True,
              description="On the held-out preference pairs, the aligned model's mean "
                          "log-prob margin (chosen - rejected) is at least the SFT model's "
                          "(within tolerance); both models' margins and the share of pairs "
                          "where each prefers the chosen reply are shown.")],
          description="Global: `train dpo` (through Dagster Pipes) from the SFT model against "
                      "its frozen copy (DPO, IPO or SimPO) on the preference pairs, into "
                      "<data_root>/models/aligned; metadata: held-out reward margin and "
                      "accuracy before/after, loss curve.")
def aligned_model(context: dg.AssetExecutionContext, config: AlignedModelConfig,
                  data: DataRoot) -> dg.MaterializeResult:
    prefs, sft, pad_id = _inputs(data)
    out = aligned_dir(data)
    command = train_command(
        "dpo", "--data", str(prefs), "--init", str(sft), "--output", str(out),
        "--loss", config.loss, "--beta", str(config.beta), "--gamma", str(config.gamma),
        "--epochs", str(config.epochs), "--batch-size", str(config.batch_size),
        "--lr", str(config.lr), "--pad-id", str(pad_id), "--seed", str(config.seed))
    metadata = launch(context, command)
    report = read_json(out / "dpo_report.json")
    before, after = report["before"], report["after"]
    return dg.MaterializeResult(
        metadata={**metadata, "loss": config.loss, "beta": config.beta,
                  "heldout_reward_margin": float(after["reward_margin"]),
                  "heldout_reward_accuracy": float(after["accuracy"]),
                  "heldout_logp_margin_before": float(before["logp_margin"]),
                  "heldout_logp_margin_after": float(after["logp_margin"]),
                  "loss_curve": loss_curve(out, f"{config.loss} preference loss"),
                  "model": dg.MetadataValue.path(str(out / "model"))},
        check_results=[aligned_prefers_chosen(report, config.tolerance)])


ALIGNMENT_ASSETS = [reward_model, aligned_model]


def alignment_totals(data: DataRoot) -> list[str]:
    """The reward model and the aligned model in one line each (nothing when not run)."""
    lines = []
    path = reward_dir(data) / "reward_report.json"
    if path.is_file():
        r = json.loads(path.read_text())["history"][-1]
        lines.append(f"  reward model: held-out pairwise accuracy {r['accuracy']:.2f}, margin "
                     f"{r['margin']:.3f} over {r['pairs']} pairs")
    path = aligned_dir(data) / "dpo_report.json"
    if path.is_file():
        r = json.loads(path.read_text())
        b, a = r["before"], r["after"]
        lines.append(f"  aligned model ({r['loss']}): held-out log-prob margin chosen - rejected "
                     f"{b['logp_margin']:.2f} -> {a['logp_margin']:.2f}, chosen preferred "
                     f"{b.get('logp_accuracy', float('nan')):.2f} -> "
                     f"{a.get('logp_accuracy', float('nan')):.2f} (SFT -> aligned, "
                     f"{a['pairs']} pairs)")
    return lines
