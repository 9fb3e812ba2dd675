"""Training assets: a base model pre-trained on the web tokens, then a domain model from it;
``TRAINING_ASSETS`` also holds the fine-tuning (``finetune.py``: ``sft_model``,
``classifier_model``) and alignment (``alignment.py``: ``reward_model``, ``aligned_model``)
assets, which start from the base model.

All launch ``python -m dagster_project.train_pipes <train command>`` as a subprocess through
Dagster Pipes (``PipesSubprocessClient``, see ``launch.py``): the trainer stays a plain CLI (a
cluster job runs the same ``train`` command), and the small wrapper streams its metrics to the
run's log while it trains and reports the final figures as the materialization's metadata,
read from the files it wrote.
Each asset draws its loss-curve PNG from the run's ``metrics.jsonl`` (``train`` never imports
Dagster code).

* ``base_model`` (global): ``train pretrain`` on ``web/tokens`` into ``models/base``;
* ``domain_model`` (global): continued pre-training from the base model on a mix of a domain
  token stage and replayed general rows, into ``models/domain``. The demo's "domain" is the
  publisher's articles (the landing files ingested into ``web/ingest``), tokenized with the
  same tokenizer into ``domain/tokens``: a real, differently written corpus that needs no new
  data. The blocking check ``no_forgetting`` fails when the general held-out loss rose by
  more than ``tolerance`` (relative) and shows the domain loss gain beside it.

Every training asset runs in the ``gpu`` pool: set its limit to 1 (README) so trainings queue.
"""
# No `from __future__ import annotations`: Dagster reads the config annotations at runtime.

import json
from pathlib import Path
from typing import Any

import dagster as dg
from pydantic import Field

from dagster_project.assets.alignment import ALIGNMENT_ASSETS, alignment_totals
from dagster_project.assets.finetune import FINETUNE_ASSETS, finetune_totals
from dagster_project.assets.launch import (
    GROUP,
    POOL,
    launch,
    loss_curve,
    read_metrics,
    set_args,
    train_command,
)
from dagster_project.assets.tokens import tokenized_documents, tokenizer_dir, tokens_dir
from dagster_project.resources import DataRoot
from schemas import read_manifest

BASE_DIR = "models/base"
DOMAIN_MODEL_DIR = "models/domain"
DOMAIN_TOKENS = "domain/tokens"
DOMAIN_MIX = "domain/mix"
FORGETTING_CHECK = "no_forgetting"


class BaseModelConfig(dg.Config):
    """Launchpad settings of the base pre-training run (defaults: ~10-20 s on a CPU)."""

    model: str = Field("tiny", description="Preset (tiny, 125m, 350m, 1b) or a checkpoint.")
    max_steps: int = Field(30, gt=0)
    micro_batch_size: int = Field(4, gt=0)
    lr: float = Field(3e-3, gt=0)
    warmup_steps: int = Field(4, ge=0)
    eval_rows: int = Field(4, ge=1, description="Last rows of web/tokens held out for eval.")
    eval_every: int = Field(10, ge=0)
    overrides: list[str] = Field(default_factory=list,
                                 description="More `--set key=value` items for train.")


class DomainModelConfig(dg.Config):
    """Launchpad settings of continued pre-training and its forgetting monitor."""

    domain_documents: str = Field("web/ingest", description=(
        "Documents stage (relative to the data root) that is the domain corpus; the demo "
        "uses the publisher's articles from the landing files."))
    domain_weight: float = Field(0.5, gt=0, lt=1, description=(
        "Share of domain rows in the mix; the rest replays general web rows."))
    domain_repeats: float = Field(4.0, gt=0, description="Epochs allowed over the domain rows.")
    max_steps: int = Field(16, gt=0)
    micro_batch_size: int = Field(4, gt=0)
    lr: float = Field(1e-3, gt=0)
    warmup_steps: int = Field(4, ge=0, description="LR re-warm.")
    tolerance: float = Field(0.05, ge=0, description=(
        "no_forgetting fails when general held-out loss rises more than this (relative)."))
    overrides: list[str] = Field(default_factory=list)


def base_dir(data: DataRoot) -> Path:
    return data.path / BASE_DIR


def domain_model_dir(data: DataRoot) -> Path:
    return data.path / DOMAIN_MODEL_DIR


@dg.asset(group_name=GROUP, kinds={"pytorch"}, pool=POOL, deps=[tokenized_documents],
          description="Global: a tiny Llama pre-trained from scratch on every web token shard "
                      "(`train pretrain` through Dagster Pipes) into <data_root>/models/base; "
                      "metadata: final and held-out loss, perplexity, tokens/s, loss curve.")
def base_model(context: dg.AssetExecutionContext, config: BaseModelConfig,
               data: DataRoot) -> dg.MaterializeResult:
    tokens = tokens_dir(data)
    if read_manifest(tokens) is None:
        raise dg.Failure(f"{tokens} has no shards: materialize tokenized_documents first")
    out = base_dir(data)
    command = train_command("pretrain", "--data", str(tokens), "--output", str(out),
                            "--no-resume",
                            *set_args(config, ("model", "max_steps", "micro_batch_size", "lr",
                                               "warmup_steps", "eval_rows", "eval_every")))
    metadata = launch(context, command)
    return dg.MaterializeResult(metadata={
        **metadata, "loss_curve": loss_curve(out, "base model loss"),
        "model": dg.MetadataValue.path(str(out / "model"))})


def no_forgetting(report: dict[str, Any], tolerance: float) -> dg.AssetCheckResult:
    """Pass when the general held-out loss rose by at most ``tolerance`` (relative)."""
    evals = report.get("evals", {})
    general, domain = evals.get("general"), evals.get("domain")
    metadata: dict[str, Any] = {"tolerance": float(tolerance)}
    if general is None:
        return dg.AssetCheckResult(check_name=FORGETTING_CHECK, passed=False, metadata={
            **metadata, "problem": "no general held-out loss before and after in the report"})
    rise = general["delta"] / general["loss_before"] if general["loss_before"] else 0.0
    metadata.update(general_loss_before=float(general["loss_before"]),
                    general_loss_after=float(general["loss_after"]),
                    general_relative_rise=float(rise))
    if domain is not None:
        metadata.update(domain_loss_before=float(domain["loss_before"]),
                        domain_loss_after=float(domain["loss_after"]),
                        domain_loss_gain=float(-domain["delta"]))
    return dg.AssetCheckResult(check_name=FORGETTING_CHECK, passed=bool(rise <= tolerance),
                               metadata=metadata)


def _domain_tokens(data: DataRoot, config: DomainModelConfig) -> Path:
    """The domain documents tokenized like the web tokens (same tokenizer and seq_len)."""
    from curate.tokenize import TokenizeConfig, run_tokenize
    from train.token_data import TokenDataset

    docs = data.path / config.domain_documents
    if not docs.is_dir():
        raise dg.Failure(f"{docs} is missing: the domain documents stage")
    seq_len = int(TokenDataset(tokens_dir(data)).meta["seq_len"])
    out = data.path / DOMAIN_TOKENS
    report = run_tokenize(docs, out, TokenizeConfig(tokenizer=str(tokenizer_dir(data)),
                                                    seq_len=seq_len))
    if not report.ok:
        raise dg.Failure(f"tokenizing {docs} failed: {report}")
    return out


@dg.asset(group_name=GROUP, kinds={"pytorch"}, pool=POOL, deps=[base_model],
          check_specs=[dg.AssetCheckSpec(
              FORGETTING_CHECK, asset="domain_model", blocking=True,
              description="General held-out loss after continued pre-training is at most "
                          "(1 + tolerance) times the loss before; the domain loss gain is "
                          "shown beside it.")],
          description="Global: continued pre-training of base_model on a mix of the domain "
                      "tokens and replayed web rows (`train cpt` through Dagster Pipes) into "
                      "<data_root>/models/domain, with the forgetting monitor.")
def domain_model(context: dg.AssetExecutionContext, config: DomainModelConfig,
                 data: DataRoot) -> dg.MaterializeResult:
    from curate.mix import MixConfig, build_mix

    base = base_dir(data) / "model"
    if not base.is_dir():
        raise dg.Failure(f"{base} is missing: materialize base_model first")
    general = tokens_dir(data)
    domain = _domain_tokens(data, config)
    mix = data.path / DOMAIN_MIX
    plan = build_mix(MixConfig(sources=[
        {"name": "domain", "path": domain, "weight": config.domain_weight,
         "max_repeats": config.domain_repeats},
        {"name": "general", "path": general, "weight": 1 - config.domain_weight}],
        window=8))
    plan.write(mix)
    out = domain_model_dir(data)
    command = train_command("cpt", "--init", str(base), "--data", str(mix),
                            "--general-eval", str(general), "--eval-data", str(domain),
                            "--output", str(out), "--no-resume",
                            *set_args(config, ("max_steps", "micro_batch_size", "lr",
                                               "warmup_steps")))
    metadata = launch(context, command)
    report = json.loads((out / "cpt_report.json").read_text())
    return dg.MaterializeResult(
        metadata={**metadata, "loss_curve": loss_curve(out, "domain model loss"),
                  "mix": dg.MetadataValue.path(str(mix)),
                  "model": dg.MetadataValue.path(str(out / "model"))},
        check_results=[no_forgetting(report, config.tolerance)])


TRAINING_ASSETS = [base_model, domain_model, *FINETUNE_ASSETS, *ALIGNMENT_ASSETS]


def training_totals(data: DataRoot) -> list[str]:
    """The two models in two lines, read back from their metrics and ``cpt_report.json``."""
    lines = []
    base = [r for r in read_metrics(base_dir(data)) if r.get("kind") == "train"]
    if base:
        lines.append(f"  base model: {len(base)} steps, train loss {base[0]['loss']:.3f} -> "
                     f"{base[-1]['loss']:.3f}")
    path = domain_model_dir(data) / "cpt_report.json"
    if path.is_file():
        evals = json.loads(path.read_text()).get("evals", {})
        lines.append("  domain model: " + ", ".join(
            f"{name} loss {r['loss_before']:.3f} -> {r['loss_after']:.3f}"
            for name, r in evals.items()))
    lines = lines or ["  training: not run"]
    return lines + finetune_totals(data) + alignment_totals(data)
