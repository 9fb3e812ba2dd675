"""Fine-tuning assets: an instruction-tuned (SFT) model and a topic classifier, both from the
base model, both launched through Dagster Pipes like ``base_model``.

* ``sft_model`` (global): ``train sft`` of ``models/base/model`` on ``sft_token_shards``
  (loss on the assistant's tokens only), full-parameter or LoRA (``lora: true`` on the
  launchpad; the adapter is merged into ``models/sft/model`` so the next stages load a plain
  model). Metadata: held-out assistant-token loss before and after, loss curve, a few greedy
  replies to held-out prompts beside their references.
* ``classifier_model`` (global): ``train classify`` (a sequence-classification head on the
  base model) on the demo's one real labelled document set that needs no annotation: the
  curated web articles (``web/decontaminate``) labelled with their topic, which the publisher
  put in every article's URL (``/articles/<topic>-NN.html``). The labels are derived into the
  stage ``web/topic_labels`` (rows without a topic URL are recorded as rejected), so they are
  deterministic, deduplicated (no copy of a held-out article in training) and the texts are
  the ones the base model was pre-trained on, without their labels. Metadata: held-out
  accuracy, macro-F1, per-class F1 and the confusion matrix as a table.
"""
# No `from __future__ import annotations`: Dagster reads the config annotations at runtime.

import json
import re
import shutil
from pathlib import Path
from typing import Any

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field

from curate.config import StageConfig
from curate.runner import Stage, StageOutput, WorkUnit, plan_shards, run_stage
from dagster_project.assets.labelled import sft_token_shards
from dagster_project.assets.labelled import tokens_dir as labelled_tokens_dir
from dagster_project.assets.launch import (
    GROUP,
    POOL,
    launch,
    loss_curve,
    read_json,
    read_metrics,
    require_dir,
    set_args,
    train_command,
)
from dagster_project.assets.quality import decontaminated_documents
from dagster_project.assets.tokens import tokenizer_dir
from dagster_project.resources import DataRoot
from schemas import DOCUMENTS, read_manifest, read_shard

BASE_MODEL = "models/base/model"
SFT_DIR = "models/sft"
CLASSIFIER_DIR = "models/classifier"
TOPIC_STAGE = ("web", "topic_labels")
TOPIC_URL = r"/articles/([a-z0-9-]+?)-\d+\.html"


def sft_dir(data: DataRoot) -> Path:
    return data.path / SFT_DIR


def classifier_dir(data: DataRoot) -> Path:
    return data.path / CLASSIFIER_DIR


# --- topic labels: a documents stage that adds `label` from the article's URL ------------------

class TopicLabelConfig(StageConfig):
    """Which URLs carry a topic: the first group of ``pattern`` is the label."""

    pattern: str = TOPIC_URL


def label_topics(table: pa.Table, cfg: TopicLabelConfig, stage: str) -> StageOutput:
    """Rows whose URL matches get ``label``; the others are rejected (``no_topic_in_url``)."""
    urls = table["url"].to_pylist() if "url" in table.column_names else [None] * len(table)
    found = [re.search(cfg.pattern, u or "") for u in urls]
    keep = pa.array([m is not None for m in found])
    kept = table.filter(keep).append_column(
        "label", pa.array([m.group(1) for m in found if m is not None], pa.string()))
    rejected = table.filter(pc.invert(keep))
    n = rejected.num_rows
    rejected = (rejected.append_column("reject_stage", pa.array([stage] * n, pa.string()))
                .append_column("reject_reason", pa.array(["no_topic_in_url"] * n, pa.string()))
                .append_column("reject_detail", pa.array(
                    [f"url {u!r}" for u, m in zip(urls, found, strict=True) if m is None],
                    pa.string())))
    return StageOutput(kept=kept, rejected=rejected, rows_in=table.num_rows)


def _topic_unit(unit: WorkUnit, cfg: TopicLabelConfig) -> StageOutput:
    (path,) = unit.inputs
    return label_topics(read_shard(path), cfg, TOPIC_LABELS.name)


TOPIC_LABELS = Stage(name="topic_labels", version="1", output_kind=DOCUMENTS,
                     process=_topic_unit)


def topic_stage(data: DataRoot, source: str, pattern: str = TOPIC_URL) -> Path:
    """Label every shard of ``source`` (relative to the data root) into web/topic_labels."""
    upstream = data.path / source
    if read_manifest(upstream) is None:
        raise dg.Failure(f"{upstream} has no shards: materialize decontaminated_documents first")
    out = data.stage_dir(*TOPIC_STAGE)
    report = run_stage(TOPIC_LABELS, plan_shards(upstream), out,
                       TopicLabelConfig(pattern=pattern), progress=False)
    if not report.ok:
        raise dg.Failure(f"labelling topics failed: {report.failures}")
    return out


# --- SFT ---------------------------------------------------------------------------------------

class SftModelConfig(dg.Config):
    """Launchpad settings of supervised fine-tuning (defaults: a few seconds on a CPU)."""

    init: str = Field(BASE_MODEL, description=(
        "Checkpoint folder to fine-tune, relative to the data root (e.g. models/domain/model "
        "for the domain model)."))
    lora: bool = Field(False, description="LoRA adapters instead of full-parameter training.")
    lora_r: int = Field(8, gt=0)
    lora_alpha: int = Field(16, gt=0)
    lora_target_modules: list[str] = Field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])
    packing: bool = Field(False, description="Pack each micro-batch into one padding-free row.")
    max_steps: int = Field(12, gt=0)
    micro_batch_size: int = Field(8, gt=0)
    lr: float = Field(3e-3, gt=0)
    warmup_steps: int = Field(0, ge=0)
    generations: int = Field(2, ge=0, description="Held-out prompts answered for review.")
    max_new_tokens: int = Field(24, gt=0)
    overrides: list[str] = Field(default_factory=list,
                                 description="More `--set key=value` items for `train sft`.")


def _generations_md(path: Path, limit: int = 3) -> str:
    if not path.is_file():
        return "(none)"
    rows = [json.loads(x) for x in path.read_text().splitlines()][:limit]

    def cell(text: Any) -> str:
        return str(text or "").replace("|", "\\|").replace("\n", " ")[:200]

    lines = ["| prompt | reply | reference |", "| --- | --- | --- |"]
    lines += [f"| {cell(r.get('prompt'))} | {cell(r.get('reply'))} | {cell(r.get('reference'))} |"
              for r in rows]
    return "\n".join(lines)


@dg.asset(group_name=GROUP, kinds={"pytorch"}, pool=POOL,
          deps=[dg.AssetKey("base_model"), sft_token_shards],
          description="Global: `train sft` (through Dagster Pipes) of the base model on the "
                      "labelled conversations (loss on assistant tokens only), full or LoRA "
                      "(merged), into <data_root>/models/sft; metadata: held-out assistant-"
                      "token loss before/after, loss curve, sample replies.")
def sft_model(context: dg.AssetExecutionContext, config: SftModelConfig,
              data: DataRoot) -> dg.MaterializeResult:
    init = require_dir(data.path / config.init, "base_model")
    tokens = require_dir(labelled_tokens_dir(data, "sft"), "sft_token_shards")
    out = sft_dir(data)
    if not config.lora:  # a full run leaves no adapter of an earlier LoRA run beside its model
        shutil.rmtree(out / "adapter", ignore_errors=True)
    targets = ",".join(config.lora_target_modules)
    command = train_command(
        "sft", "--data", str(tokens), "--init", str(init), "--output", str(out), "--no-resume",
        *set_args(config, ("lora", "lora_r", "lora_alpha", "packing", "max_steps",
                           "micro_batch_size", "lr", "warmup_steps", "generations",
                           "max_new_tokens"), f"lora_target_modules=[{targets}]"))
    metadata = launch(context, command)
    evals = [r for r in read_metrics(out) if str(r.get("kind", "")).startswith("eval/")]
    extra: dict[str, Any] = {}
    if evals:
        extra.update(heldout_loss_before=float(evals[0]["loss"]),
                     heldout_loss_after=float(evals[-1]["loss"]))
    return dg.MaterializeResult(metadata={
        **metadata, **extra, "lora": config.lora,
        "loss_curve": loss_curve(out, "SFT assistant-token loss"),
        "generations": dg.MetadataValue.md(_generations_md(out / "generations.jsonl")),
        "model": dg.MetadataValue.path(str(out / "model"))})


# --- classification ----------------------------------------------------------------------------

class ClassifierModelConfig(dg.Config):
    """Launchpad settings of the topic classifier."""

    documents: str = Field("web/decontaminate", description=(
        "Curated documents stage (relative to the data root) whose article URLs give the "
        "topic labels."))
    topic_url_pattern: str = Field(TOPIC_URL, description=(
        "Regular expression over each document's URL; its first group is the label, and "
        "documents it does not match are recorded as rejected."))
    init: str = Field(BASE_MODEL, description="Checkpoint folder, relative to the data root.")
    max_steps: int = Field(60, gt=0)
    micro_batch_size: int = Field(8, gt=0)
    lr: float = Field(3e-3, gt=0)
    max_length: int = Field(128, ge=2, description="Tokens of each document the model reads.")
    eval_fraction: float = Field(0.2, gt=0, lt=1, description="Every k-th document held out.")
    overrides: list[str] = Field(default_factory=list)


def confusion_md(report: dict[str, Any]) -> str:
    """The confusion matrix (rows: true label, columns: predicted) and per-class F1."""
    names = report["labels"]
    lines = ["| true \\ predicted | " + " | ".join(names) + " | F1 |",
             "| --- |" + " --- |" * (len(names) + 1)]
    for name, row, f1 in zip(names, report["confusion_matrix"], report["per_class_f1"],
                             strict=True):
        lines.append(f"| **{name}** | " + " | ".join(str(v) for v in row) + f" | {f1:.2f} |")
    return "\n".join(lines)


@dg.asset(group_name=GROUP, kinds={"pytorch"}, pool=POOL,
          deps=[dg.AssetKey("base_model"), decontaminated_documents],
          description="Global: topic labels from the curated articles' URLs (stage "
                      "web/topic_labels), then `train classify` (through Dagster Pipes) of a "
                      "classification head on the base model into <data_root>/models/"
                      "classifier; metadata: held-out accuracy, macro-F1, confusion matrix.")
def classifier_model(context: dg.AssetExecutionContext, config: ClassifierModelConfig,
                     data: DataRoot) -> dg.MaterializeResult:
    init = require_dir(data.path / config.init, "base_model")
    labelled = topic_stage(data, config.documents, config.topic_url_pattern)
    totals = read_manifest(labelled).totals()
    out = classifier_dir(data)
    command = train_command(
        "classify", "--data", str(labelled), "--tokenizer", str(tokenizer_dir(data)),
        "--init", str(init), "--output", str(out), "--no-resume",
        *set_args(config, ("max_steps", "micro_batch_size", "lr", "max_length",
                           "eval_fraction")))
    metadata = launch(context, command)
    report = read_json(out / "classify_report.json")
    return dg.MaterializeResult(metadata={
        **metadata,
        "labelled_documents": totals["rows_kept"],
        "documents_without_topic": totals["rows_rejected"],
        "labels": dg.MetadataValue.json(report["labels"]),
        "heldout_documents": report["rows"],
        "accuracy": float(report["accuracy"]),
        "macro_f1": float(report["macro_f1"]),
        "confusion_matrix": dg.MetadataValue.md(confusion_md(report)),
        "loss_curve": loss_curve(out, "classifier loss"),
        "labelled_stage": dg.MetadataValue.path(str(labelled)),
        "model": dg.MetadataValue.path(str(out / "model"))})


FINETUNE_ASSETS = [sft_model, classifier_model]


def finetune_totals(data: DataRoot) -> list[str]:
    """The SFT model and the classifier in one line each (nothing when not run)."""
    lines = []
    evals = [r for r in read_metrics(sft_dir(data)) if str(r.get("kind", "")).startswith("eval/")]
    train = [r for r in read_metrics(sft_dir(data)) if r.get("kind") == "train"]
    if evals and train:
        lines.append(f"  sft model: {train[-1]['step']} steps, held-out assistant-token loss "
                     f"{evals[0]['loss']:.3f} -> {evals[-1]['loss']:.3f}")
    path = classifier_dir(data) / "classify_report.json"
    if path.is_file():
        r = json.loads(path.read_text())
        lines.append(f"  classifier: {len(r['labels'])} topics, held-out accuracy "
                     f"{r['accuracy']:.2f}, macro-F1 {r['macro_f1']:.2f} over {r['rows']} "
                     f"documents (chance {1 / len(r['labels']):.2f})")
    return lines
