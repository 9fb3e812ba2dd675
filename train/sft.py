"""Supervised fine-tuning on ``sft_tokens`` shards: loss on assistant tokens only.

The shards are read as written by ``curate sft-tokenize`` (``input_ids``, ``loss_mask`` or
``assistant_masks``, ``split``, optional ``seq_lengths``), never tokenized again. Full-parameter
or LoRA (peft; only adapter weights train, the base stays bit-for-bit; the adapter can be
merged and saved as a plain model). ``packing`` concatenates a micro-batch's conversations
into one row with restarting ``position_ids`` (padding-free; transformers isolates them).
Checkpoints, resume and ``metrics.jsonl`` follow the pre-training loop.
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
import pyarrow.compute as pc
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
    require_packed_attention,
)
from train.models import build_model

ADAPTER = "adapter"
GENERATIONS = "generations.jsonl"


class SftConfig(BaseModel):
    """Everything that decides a fine-tuning run (data and output come from the CLI)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str = "tiny"
    """A local checkpoint folder to fine-tune (a preset starts from random weights: tests)."""
    micro_batch_size: int = Field(8, gt=0)
    grad_accum: int = Field(1, gt=0)
    max_steps: int = Field(100, gt=0)
    lr: float = Field(2e-5, gt=0)
    min_lr_ratio: float = Field(0.1, ge=0, le=1)
    warmup_steps: int = Field(0, ge=0)
    schedule: Literal["cosine", "wsd", "constant"] = "cosine"
    decay_fraction: float = Field(0.2, gt=0, le=1)
    weight_decay: float = Field(0.0, ge=0)
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    grad_clip: float = Field(1.0, ge=0)
    seed: int = 0
    packing: bool = False
    """Concatenate each micro-batch into one padding-free row (restarting position_ids)."""
    train_split: str = "train"
    """Rows whose ``split`` is this (or null) are trained on."""
    eval_split: str = "validation"
    """Rows whose ``split`` is this are the held-out set (loss on assistant tokens)."""
    eval_every: int = Field(0, ge=0)
    eval_at_start: bool = True
    save_every: int = Field(0, ge=0)
    keep_checkpoints: int = Field(2, gt=0)
    log_every: int = Field(1, gt=0)
    tensorboard: bool = True
    generations: int = Field(4, ge=0)
    """Held-out prompts answered greedily at the end, saved to generations.jsonl."""
    max_new_tokens: int = Field(64, gt=0)
    lora: bool = False
    lora_r: int = Field(8, gt=0)
    lora_alpha: int = Field(16, gt=0)
    lora_dropout: float = Field(0.0, ge=0, lt=1)
    lora_target_modules: list[str] = ["q_proj", "k_proj", "v_proj", "o_proj"]
    merge: bool = True
    """LoRA: also write the merged model to OUTPUT/model (the adapter goes to OUTPUT/adapter)."""
    attn_implementation: Literal["sdpa", "eager", "flash_attention_2"] = "sdpa"


def load_sft_config(recipe: Path | None = None, overrides: tuple[str, ...] = (),
                    section: str = "sft") -> SftConfig:
    """A recipe (optionally its ``sft:`` section) plus ``key=value`` overrides, validated."""
    import yaml

    data: dict[str, Any] = {}
    if recipe is not None:
        loaded = yaml.safe_load(Path(recipe).read_text()) or {}
        if not isinstance(loaded, dict):
            raise TrainConfigError(f"{recipe}: a recipe must be a mapping of settings")
        data.update(loaded.get(section) if isinstance(loaded.get(section), dict) else loaded)
    data.update(parse_override(o) for o in overrides)
    try:
        return SftConfig.model_validate(data)
    except ValidationError as exc:
        raise TrainConfigError(f"invalid fine-tuning config:\n{exc}") from None


# --- data --------------------------------------------------------------------------------------

@dataclass
class SftRows:
    """Rows of an sft_tokens stage: token ids, loss masks and per-row conversation lengths."""

    ids: list[np.ndarray]
    mask: list[np.ndarray]
    lengths: list[np.ndarray]
    meta: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.ids)


def _split_lists(col: pa.ChunkedArray) -> list[np.ndarray]:
    arr = col.combine_chunks()
    flat = arr.flatten().to_numpy(zero_copy_only=False)
    offsets = arr.offsets.to_numpy() - arr.offsets[0].as_py()
    return np.split(flat, offsets[1:-1])


def read_sft_rows(stage_dir: Path) -> dict[str, SftRows]:
    """Every row of an sft_tokens stage folder, grouped by ``split`` (null -> "train")."""
    from schemas import read_shard, shard_paths

    paths = shard_paths(Path(stage_dir))
    if not paths:
        raise FileNotFoundError(f"no shards in {stage_dir}")
    meta_path = Path(stage_dir) / "_tokenizer.json"
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    table = pa.concat_tables([read_shard(p) for p in paths], promote_options="default")
    mask_col = "loss_mask" if "loss_mask" in table.column_names else "assistant_masks"
    ids = _split_lists(table["input_ids"])
    mask = _split_lists(table[mask_col])
    lengths = (_split_lists(table["seq_lengths"]) if "seq_lengths" in table.column_names
               else [np.array([len(x)]) for x in ids])
    split = (pc.fill_null(table["split"], "train").to_pylist()
             if "split" in table.column_names else ["train"] * table.num_rows)
    out: dict[str, SftRows] = {}
    for i, s in enumerate(split):
        rows = out.setdefault(s, SftRows([], [], [], meta))
        rows.ids.append(ids[i].astype(np.int64))
        rows.mask.append(mask[i].astype(bool))
        rows.lengths.append(lengths[i].astype(np.int64))
    return out


def _positions(lengths: np.ndarray) -> np.ndarray:
    """0..n-1 restarting at each conversation of a (packed) row."""
    total = int(lengths.sum())
    starts = np.repeat(np.cumsum(lengths) - lengths, lengths)
    return np.arange(total) - starts


def _labels(ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Label at t is the token at t (shifted at loss time), kept only where it is trained."""
    return np.where(mask, ids, -100)


def make_sft_batch(rows: SftRows, idx: list[int], pad_id: int, packing: bool) -> dict[str, Any]:
    """Right-padded (or, packing, one concatenated) micro-batch as torch tensors."""
    import torch

    ids = [rows.ids[i] for i in idx]
    labels = [_labels(rows.ids[i], rows.mask[i]) for i in idx]
    pos = [_positions(rows.lengths[i]) for i in idx]
    if packing:
        ids, labels, pos = [np.concatenate(ids)], [np.concatenate(labels)], [np.concatenate(pos)]
    width = max(len(x) for x in ids)
    n = len(ids)
    out_ids = np.full((n, width), pad_id, np.int64)
    out_lab = np.full((n, width), -100, np.int64)
    out_pos = np.tile(np.arange(width), (n, 1))
    for r in range(n):
        k = len(ids[r])
        out_ids[r, :k], out_lab[r, :k], out_pos[r, :k] = ids[r], labels[r], pos[r]
    return {"input_ids": torch.from_numpy(out_ids), "labels": torch.from_numpy(out_lab),
            "position_ids": torch.from_numpy(out_pos)}


def n_targets(batch: dict[str, Any]) -> int:
    return int((batch["labels"][:, 1:] != -100).sum())


def assistant_loss_sum(model: Any, batch: dict[str, Any]) -> Any:
    """Sum of cross-entropies over the assistant tokens (each predicted from what precedes)."""
    import torch.nn.functional as F

    device = model_device(model)
    batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
    with autocast(device):
        logits = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"],
                       use_cache=False).logits
    return F.cross_entropy(logits[:, :-1].float().flatten(0, 1),
                           batch["labels"][:, 1:].flatten(), ignore_index=-100, reduction="sum")


def evaluate_sft(model: Any, rows: SftRows, micro: int, pad_id: int) -> dict[str, float]:
    """Mean assistant-token loss over all held-out rows."""
    import math

    import torch

    was = model.training
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for s in range(0, len(rows), micro):
            b = make_sft_batch(rows, list(range(s, min(s + micro, len(rows)))), pad_id, False)
            total += float(assistant_loss_sum(model, b))
            count += n_targets(b)
    model.train(was)
    loss = total / max(count, 1)
    return {"loss": loss, "perplexity": math.exp(min(loss, 50.0)), "tokens": count}


class EpochOrder:
    """Seeded per-epoch permutation of the training rows; its position is checkpointed."""

    def __init__(self, n: int, seed: int):
        self.n, self.seed, self.epoch, self.cursor = n, seed, 0, 0

    def take(self, k: int) -> list[int]:
        out: list[int] = []
        while len(out) < k:
            perm = np.random.default_rng([self.seed, self.epoch]).permutation(self.n)
            need = k - len(out)
            out += perm[self.cursor:self.cursor + need].tolist()
            self.cursor += need
            if self.cursor >= self.n:
                self.epoch, self.cursor = self.epoch + 1, 0
        return out

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "cursor": self.cursor}

    def load_state_dict(self, s: dict[str, int]) -> None:
        self.epoch, self.cursor = int(s["epoch"]), int(s["cursor"])


# --- model -------------------------------------------------------------------------------------

def _wrap_lora(model: Any, cfg: SftConfig, resume_from: Path | None) -> Any:
    import torch
    from peft import LoraConfig, PeftModel, get_peft_model

    if resume_from is not None:
        return PeftModel.from_pretrained(model, str(resume_from), is_trainable=True)
    lc = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                    target_modules=list(cfg.lora_target_modules), task_type="CAUSAL_LM")
    torch.manual_seed(cfg.seed)  # the adapters' random init is part of the run's identity
    return get_peft_model(model, lc)


def _sft_model(cfg: SftConfig, init: str | Path | None, ckpt: Path | None, vocab: int | None,
               max_pos: int) -> Any:
    base = init or cfg.model
    if cfg.lora:
        model = build_model(base, vocab, max_pos, cfg.attn_implementation, seed=cfg.seed)
        return _wrap_lora(model, cfg, ckpt)
    return build_model(ckpt or base, vocab, max_pos, cfg.attn_implementation, seed=cfg.seed)


def save_generations(model: Any, rows: SftRows, cfg: SftConfig, path: Path) -> list[dict]:
    """Greedy replies to the first held-out prompts, with the reference, for human review."""
    import torch

    tok = None
    folder = rows.meta.get("tokenizer")
    if folder and Path(folder, "tokenizer.json").exists():
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    eos = [x for x in (rows.meta.get("end_of_turn_id"), rows.meta.get("eos_id")) if x is not None]
    out = []
    was = model.training
    model.eval()
    for i in range(min(cfg.generations, len(rows))):
        ids, mask = rows.ids[i][: int(rows.lengths[i][0])], rows.mask[i]
        first = int(np.argmax(mask[: len(ids)])) if mask[: len(ids)].any() else len(ids)
        prompt = torch.from_numpy(ids[:first])[None].to(model_device(model))
        with torch.no_grad():
            gen = model.generate(input_ids=prompt, attention_mask=torch.ones_like(prompt),
                                 max_new_tokens=cfg.max_new_tokens, do_sample=False,
                                 eos_token_id=eos or None,
                                 pad_token_id=rows.meta.get("pad_id") or 0)
        reply = gen[0, first:].tolist()
        ref = ids[first:][mask[first:len(ids)]].tolist()
        rec: dict[str, Any] = {"row": i, "prompt_ids": ids[:first].tolist(),
                               "reply_ids": reply, "reference_ids": ref}
        if tok is not None:
            rec.update(prompt=tok.decode(ids[:first].tolist()), reply=tok.decode(reply),
                       reference=tok.decode(ref))
        out.append(rec)
    model.train(was)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in out))
    return out


@dataclass
class SftResult:
    output: Path
    steps: int
    losses: list[float] = field(default_factory=list)
    evals: list[dict[str, float]] = field(default_factory=list)
    resumed_from: int | None = None
    trainable_parameters: int = 0
    tokens_per_s: float = 0.0


def train_sft(cfg: SftConfig, data: Path, output: Path, *, init: str | Path | None = None,
              resume: bool = True, stop_after: int | None = None) -> SftResult:
    """Fine-tune ``init`` (or ``cfg.model``) on an sft_tokens stage; resumes OUTPUT.

    Writes OUTPUT/model (full, or LoRA merged when ``cfg.merge``), OUTPUT/adapter (LoRA),
    metrics.jsonl, generations.jsonl and checkpoints/step-*.
    """
    import torch

    require_packed_attention()
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    splits = read_sft_rows(data)
    train_rows = splits.get(cfg.train_split)
    if train_rows is None or not len(train_rows):
        raise ValueError(f"{data}: no rows in split {cfg.train_split!r} "
                         f"(splits: {sorted(splits)})")
    eval_rows = splits.get(cfg.eval_split)
    meta = train_rows.meta
    pad_id = meta.get("pad_id") or 0
    max_len = max(meta.get("max_length") or 0, max(len(x) for x in train_rows.ids))
    if cfg.packing:
        max_len *= cfg.micro_batch_size
    ckpt = latest_checkpoint(output) if resume else None
    model = _sft_model(cfg, init, ckpt, meta.get("vocab_size"), max(max_len, 2048))
    device = training_device()
    model.to(device).train()
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    optimizer = adamw(_param_groups(model, cfg.weight_decay), device, lr=cfg.lr,
                      betas=(cfg.beta1, cfg.beta2), eps=cfg.eps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, cfg))
    order = EpochOrder(len(train_rows), cfg.seed)
    step = 0
    if ckpt is not None:
        state = torch.load(ckpt / STATE_FILE, map_location="cpu", weights_only=False)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        order.load_state_dict(state["data"])
        _set_rng_state(state["rng"])
        step = int(state["step"])
    log = MetricsLog(output, True, cfg.tensorboard, step)
    result = SftResult(output, step, resumed_from=step if ckpt is not None else None,
                       trainable_parameters=trainable)

    def run_eval(at: int) -> None:
        if eval_rows is None or not len(eval_rows):
            return
        rec = {"step": at, **evaluate_sft(model, eval_rows, cfg.micro_batch_size, pad_id)}
        result.evals.append(rec)
        log.log(rec, prefix=f"eval/{cfg.eval_split}")

    def checkpoint(at: int) -> None:
        state = {"step": at, "optimizer": optimizer.state_dict(),
                 "scheduler": scheduler.state_dict(), "data": order.state_dict(),
                 "rng": _rng_state(), "config": cfg.model_dump(mode="json")}
        _save(model, output / CHECKPOINTS / f"step-{at:08d}", state)
        old = sorted(p for p in (output / CHECKPOINTS).glob("step-*")
                     if (p / STATE_FILE).exists())
        for p in old[:-cfg.keep_checkpoints]:
            import shutil

            shutil.rmtree(p, ignore_errors=True)

    if cfg.eval_at_start and step == 0:
        run_eval(0)
    last = cfg.max_steps if stop_after is None else min(stop_after, cfg.max_steps)
    started, tokens = time.perf_counter(), 0
    while step < last:
        t0 = time.perf_counter()
        micro = [make_sft_batch(train_rows, order.take(cfg.micro_batch_size), pad_id,
                                cfg.packing) for _ in range(cfg.grad_accum)]
        total = sum(n_targets(b) for b in micro)
        loss_sum = 0.0
        for b in micro:
            s = assistant_loss_sum(model, b)
            (s / max(total, 1)).backward()
            loss_sum += float(s.detach())
        grad_norm = (torch.nn.utils.clip_grad_norm_(
            [p for p in model.parameters() if p.requires_grad], cfg.grad_clip)
            if cfg.grad_clip > 0 else None)
        lr = scheduler.get_last_lr()[0]
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        loss = loss_sum / max(total, 1)
        result.losses.append(loss)
        step_tokens = sum(int(b["input_ids"].numel()) for b in micro)
        tokens += step_tokens
        dt = time.perf_counter() - t0
        if step % cfg.log_every == 0 or step == last:
            log.log({"step": step, "loss": loss, "lr": lr, "trained_tokens": total,
                     "tokens": step_tokens, "tokens_per_s": step_tokens / dt if dt > 0 else 0.0,
                     "epoch": order.epoch + order.cursor / len(train_rows),
                     "grad_norm": float(grad_norm) if grad_norm is not None else None})
        if cfg.eval_every and step % cfg.eval_every == 0 and step < cfg.max_steps:
            run_eval(step)
        if cfg.save_every and step % cfg.save_every == 0 and step < last:
            checkpoint(step)
    elapsed = time.perf_counter() - started
    result.tokens_per_s = tokens / elapsed if elapsed > 0 else 0.0
    result.steps = step
    checkpoint(step)
    if step >= cfg.max_steps:
        run_eval(step)
        if eval_rows is not None and cfg.generations:
            save_generations(model, eval_rows, cfg, output / GENERATIONS)
        if cfg.lora:
            _save(model, output / ADAPTER, None)
            if cfg.merge:
                merged = model.merge_and_unload()
                _save(merged, output / FINAL, None)
        else:
            _save(model, output / FINAL, None)
    log.close()
    return result


# --- command line (registered in train/cli.py) ------------------------------------------------

@click.command("sft")
@click.option("--data", required=True, type=click.Path(exists=True, path_type=Path),
              help="An sft_tokens stage folder (`curate sft-tokenize`).")
@click.option("--output", required=True, type=click.Path(path_type=Path),
              help="Run folder: checkpoints/, model/, adapter/, metrics.jsonl, "
                   "generations.jsonl.")
@click.option("--init", type=click.Path(exists=True, path_type=Path),
              help="Checkpoint folder to fine-tune (else the config's `model`).")
@click.option("--config", "recipe", type=click.Path(exists=True, path_type=Path),
              help="YAML recipe (its `sft:` section, or the whole file).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a config value (repeatable), e.g. --set lora=true.")
@click.option("--no-resume", is_flag=True, help="Start over even if OUTPUT holds a checkpoint.")
def sft_command(data: Path, output: Path, init: Path | None, recipe: Path | None,
                overrides: tuple[str, ...], no_resume: bool) -> None:
    """Supervised fine-tuning on assistant tokens: full-parameter or LoRA (--set lora=true)."""
    try:
        cfg = load_sft_config(recipe, overrides)
    except TrainConfigError as exc:
        raise click.UsageError(str(exc)) from None
    r = train_sft(cfg, data, output, init=init, resume=not no_resume)
    click.echo(f"steps {r.steps}" + (f" (resumed from {r.resumed_from})" if r.resumed_from
                                     else "") + f", {r.trainable_parameters:,} trainable "
               f"parameters, {r.tokens_per_s:,.0f} tokens/s")
    if r.losses:
        click.echo(f"train loss {r.losses[0]:.4f} -> {r.losses[-1]:.4f}")
    if r.evals:
        click.echo(f"eval {cfg.eval_split}: assistant-token loss {r.evals[0]['loss']:.4f} "
                   f"(step {r.evals[0]['step']}) -> {r.evals[-1]['loss']:.4f} "
                   f"(step {r.evals[-1]['step']})")
    click.echo(f"model: {output / FINAL}" + (f", adapter: {output / ADAPTER}" if cfg.lora
                                             else ""))
