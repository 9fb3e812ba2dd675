"""Classification fine-tuning: a sequence-classification head on a (pre-trained) base model.

Labels come from a labelled document set (a stage folder of documents with a label column,
e.g. a domain or quality class); texts are encoded with the tokenizer folder the base model
was trained with. Reports accuracy, macro-F1 and the confusion matrix on the held-out rows
(``split`` = ``eval_split``, else every ``1/eval_fraction``-th row) to classify_report.json.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import click
import numpy as np
import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from train.config import TrainConfigError, parse_override
from train.device import adamw, autocast, model_device, training_device
from train.loop import (
    CHECKPOINTS,
    FINAL,
    STATE_FILE,
    MetricsLog,
    _param_groups,
    _rng_state,
    _save,
    _set_rng_state,
    latest_checkpoint,
    lr_factor,
)

REPORT = "classify_report.json"


class ClassifyConfig(BaseModel):
    """Everything that decides a classification fine-tuning run."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str = "tiny"
    """A local causal-LM checkpoint folder (a preset starts from random weights: tests)."""
    label_column: str = "label"
    text_column: str = "text"
    max_length: int = Field(256, ge=2)
    micro_batch_size: int = Field(16, gt=0)
    max_steps: int = Field(100, gt=0)
    lr: float = Field(5e-5, gt=0)
    min_lr_ratio: float = Field(0.1, ge=0, le=1)
    warmup_steps: int = Field(0, ge=0)
    schedule: Literal["cosine", "wsd", "constant"] = "cosine"
    decay_fraction: float = Field(0.2, gt=0, le=1)
    weight_decay: float = Field(0.0, ge=0)
    grad_clip: float = Field(1.0, ge=0)
    seed: int = 0
    eval_split: str = "validation"
    eval_fraction: float = Field(0.2, gt=0, lt=1)
    """Without a ``split`` column: hold out this share of rows (every k-th row)."""
    save_every: int = Field(0, ge=0)
    keep_checkpoints: int = Field(2, gt=0)
    log_every: int = Field(1, gt=0)
    tensorboard: bool = True
    attn_implementation: Literal["sdpa", "eager"] = "sdpa"


def load_classify_config(recipe: Path | None = None, overrides: tuple[str, ...] = (),
                         section: str = "classify") -> ClassifyConfig:
    import yaml

    data: dict[str, Any] = {}
    if recipe is not None:
        loaded = yaml.safe_load(Path(recipe).read_text()) or {}
        if not isinstance(loaded, dict):
            raise TrainConfigError(f"{recipe}: a recipe must be a mapping of settings")
        data.update(loaded.get(section) if isinstance(loaded.get(section), dict) else loaded)
    data.update(parse_override(o) for o in overrides)
    try:
        return ClassifyConfig.model_validate(data)
    except ValidationError as exc:
        raise TrainConfigError(f"invalid classification config:\n{exc}") from None


@dataclass
class Labelled:
    ids: list[list[int]]
    labels: np.ndarray


def read_labelled(stage_dir: Path, tokenizer: Path, cfg: ClassifyConfig
                  ) -> tuple[Labelled, Labelled, list[str], Any]:
    """(train, held-out, label names, tokenizer) from a labelled document stage folder."""
    from transformers import AutoTokenizer

    from schemas import read_shard, shard_paths

    paths = shard_paths(Path(stage_dir))
    if not paths:
        raise FileNotFoundError(f"no shards in {stage_dir}")
    table = pa.concat_tables([read_shard(p) for p in paths], promote_options="default")
    if cfg.text_column not in table.column_names:
        raise ValueError(f"{stage_dir}: no {cfg.text_column!r} column")
    if cfg.label_column in table.column_names:
        labels_raw = [str(x) for x in table[cfg.label_column].to_pylist()]
    elif "metadata" in table.column_names:  # an ingested record's other fields
        labels_raw = [str(json.loads(m or "{}").get(cfg.label_column))
                      for m in table["metadata"].to_pylist()]
    else:
        raise ValueError(f"{stage_dir}: no {cfg.label_column!r} column or metadata field")
    names = sorted(set(labels_raw))
    y = np.array([names.index(x) for x in labels_raw], np.int64)
    tok = AutoTokenizer.from_pretrained(str(tokenizer), local_files_only=True)
    ids = tok(table[cfg.text_column].to_pylist(), truncation=True,
              max_length=cfg.max_length)["input_ids"]
    if "split" in table.column_names:
        held = np.array([s == cfg.eval_split for s in table["split"].to_pylist()])
    else:
        held = np.arange(len(y)) % round(1 / cfg.eval_fraction) == 0
    pick = lambda m: Labelled([ids[i] for i in np.flatnonzero(m)], y[m])  # noqa: E731
    return pick(~held), pick(held), names, tok


def _batch(data: Labelled, idx: np.ndarray, pad_id: int) -> dict[str, Any]:
    import torch

    width = max(len(data.ids[i]) for i in idx)
    ids = np.full((len(idx), width), pad_id, np.int64)
    att = np.zeros((len(idx), width), np.int64)
    for r, i in enumerate(idx):
        ids[r, :len(data.ids[i])], att[r, :len(data.ids[i])] = data.ids[i], 1
    return {"input_ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy(att),
            "labels": torch.from_numpy(data.labels[idx])}


def classification_metrics(y: np.ndarray, pred: np.ndarray, k: int) -> dict[str, Any]:
    """Accuracy, macro-F1 (classes absent from both count as F1 0) and the confusion matrix."""
    cm = np.zeros((k, k), np.int64)
    np.add.at(cm, (y, pred), 1)
    tp = np.diag(cm).astype(float)
    prec = np.divide(tp, cm.sum(0), out=np.zeros(k), where=cm.sum(0) > 0)
    rec = np.divide(tp, cm.sum(1), out=np.zeros(k), where=cm.sum(1) > 0)
    f1 = np.divide(2 * prec * rec, prec + rec, out=np.zeros(k), where=prec + rec > 0)
    return {"accuracy": float(tp.sum() / max(len(y), 1)), "macro_f1": float(f1.mean()),
            "per_class_f1": f1.tolist(), "confusion_matrix": cm.tolist(), "rows": len(y)}


def predict(model: Any, data: Labelled, micro: int, pad_id: int) -> np.ndarray:
    import torch

    was = model.training
    model.eval()
    out = []
    with torch.no_grad():
        for s in range(0, len(data.labels), micro):
            b = _batch(data, np.arange(s, min(s + micro, len(data.labels))), pad_id)
            device = model_device(model)
            with autocast(device):
                logits = model(input_ids=b["input_ids"].to(device),
                               attention_mask=b["attention_mask"].to(device)).logits
            out.append(logits.argmax(-1).cpu().numpy())
    model.train(was)
    return np.concatenate(out) if out else np.zeros(0, np.int64)


def _build(cfg: ClassifyConfig, source: str | Path, names: list[str], vocab: int, pad_id: int,
           ) -> Any:
    import torch
    from transformers import AutoModelForSequenceClassification, LlamaForSequenceClassification

    from train.models import is_checkpoint, model_config

    id2label = dict(enumerate(names))
    label2id = {n: i for i, n in id2label.items()}
    torch.manual_seed(cfg.seed)  # a checkpoint has no head yet: its init is part of the run
    if is_checkpoint(source):
        model = AutoModelForSequenceClassification.from_pretrained(
            str(source), local_files_only=True, num_labels=len(names), id2label=id2label,
            label2id=label2id, torch_dtype=torch.float32,
            attn_implementation=cfg.attn_implementation)
    else:
        mc = model_config(str(source), vocab, max(cfg.max_length, 2048), cfg.attn_implementation,
                          num_labels=len(names), id2label=id2label, label2id=label2id)
        model = LlamaForSequenceClassification(mc)
    model.config.pad_token_id = pad_id
    return model


@dataclass
class ClassifyResult:
    output: Path
    steps: int
    losses: list[float] = field(default_factory=list)
    report: dict[str, Any] = field(default_factory=dict)
    resumed_from: int | None = None


def train_classifier(cfg: ClassifyConfig, data: Path, tokenizer: Path, output: Path, *,
                     init: str | Path | None = None, resume: bool = True,
                     stop_after: int | None = None) -> ClassifyResult:
    """Fine-tune a classification head (and the body) on a labelled document stage."""
    import torch

    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    train_set, held, names, tok = read_labelled(data, tokenizer, cfg)
    if len(names) < 2:
        raise ValueError(f"{data}: column {cfg.label_column!r} has fewer than two classes")
    pad_id = tok.pad_token_id if tok.pad_token_id is not None else 0
    ckpt = latest_checkpoint(output) if resume else None
    model = _build(cfg, ckpt or init or cfg.model, names, len(tok), pad_id)
    device = training_device()
    model.to(device).train()
    optimizer = adamw(_param_groups(model, cfg.weight_decay), device, lr=cfg.lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, cfg))
    step = 0
    if ckpt is not None:
        state = torch.load(ckpt / STATE_FILE, map_location="cpu", weights_only=False)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        _set_rng_state(state["rng"])
        step = int(state["step"])
    log = MetricsLog(output, True, cfg.tensorboard, step)
    result = ClassifyResult(output, step, resumed_from=step if ckpt is not None else None)

    def checkpoint(at: int) -> None:
        import shutil

        state = {"step": at, "optimizer": optimizer.state_dict(),
                 "scheduler": scheduler.state_dict(), "rng": _rng_state(),
                 "config": cfg.model_dump(mode="json")}
        _save(model, output / CHECKPOINTS / f"step-{at:08d}", state)
        old = sorted(p for p in (output / CHECKPOINTS).glob("step-*")
                     if (p / STATE_FILE).exists())
        for p in old[:-cfg.keep_checkpoints]:
            shutil.rmtree(p, ignore_errors=True)

    n = len(train_set.labels)
    last = cfg.max_steps if stop_after is None else min(stop_after, cfg.max_steps)
    while step < last:
        t0 = time.perf_counter()
        # batch k of an epoch is fixed by (seed, epoch): resume needs only the step
        per_epoch = max(n // cfg.micro_batch_size, 1)
        epoch, k = divmod(step, per_epoch)
        perm = np.random.default_rng([cfg.seed, epoch]).permutation(n)
        idx = perm[k * cfg.micro_batch_size:(k + 1) * cfg.micro_batch_size]
        with autocast(device):
            loss = model(**{k: v.to(device) for k, v in _batch(train_set, idx, pad_id).items()}
                         ).loss
        loss.backward()
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        lr = scheduler.get_last_lr()[0]
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        result.losses.append(float(loss.detach()))
        if step % cfg.log_every == 0 or step == last:
            log.log({"step": step, "loss": result.losses[-1], "lr": lr,
                     "rows_per_s": len(idx) / max(time.perf_counter() - t0, 1e-9)})
        if cfg.save_every and step % cfg.save_every == 0 and step < last:
            checkpoint(step)
    result.steps = step
    checkpoint(step)
    if step >= cfg.max_steps:
        report = classification_metrics(held.labels, predict(model, held, cfg.micro_batch_size,
                                                             pad_id), len(names))
        report["labels"] = names
        result.report = report
        log.log({"step": step, "accuracy": report["accuracy"], "macro_f1": report["macro_f1"]},
                prefix="eval/classify")
        (output / REPORT).write_text(json.dumps(report, indent=2) + "\n")
        _save(model, output / FINAL, None)
    log.close()
    return result


# --- command line (registered in train/cli.py) ------------------------------------------------

@click.command("classify")
@click.option("--data", required=True, type=click.Path(exists=True, path_type=Path),
              help="A labelled document stage folder (label column or metadata field).")
@click.option("--tokenizer", required=True, type=click.Path(exists=True, path_type=Path),
              help="The tokenizer folder the base model was trained with.")
@click.option("--output", required=True, type=click.Path(path_type=Path),
              help="Run folder: checkpoints/, model/, metrics.jsonl, classify_report.json.")
@click.option("--init", type=click.Path(exists=True, path_type=Path),
              help="Causal-LM checkpoint folder to start from (else the config's `model`).")
@click.option("--config", "recipe", type=click.Path(exists=True, path_type=Path),
              help="YAML recipe (its `classify:` section, or the whole file).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a config value (repeatable), e.g. --set label_column=domain.")
@click.option("--no-resume", is_flag=True, help="Start over even if OUTPUT holds a checkpoint.")
def classify_command(data: Path, tokenizer: Path, output: Path, init: Path | None,
                     recipe: Path | None, overrides: tuple[str, ...], no_resume: bool) -> None:
    """Classification fine-tuning: accuracy, macro-F1 and confusion matrix on held-out rows."""
    try:
        cfg = load_classify_config(recipe, overrides)
    except TrainConfigError as exc:
        raise click.UsageError(str(exc)) from None
    r = train_classifier(cfg, data, tokenizer, output, init=init, resume=not no_resume)
    click.echo(f"steps {r.steps}" + (f" (resumed from {r.resumed_from})" if r.resumed_from
                                     else ""))
    if r.report:
        click.echo(f"held-out: accuracy {r.report['accuracy']:.4f}, macro-F1 "
                   f"{r.report['macro_f1']:.4f} over {r.report['rows']} rows "
                   f"(labels {', '.join(r.report['labels'])})")
        click.echo(f"report: {output / REPORT}")
