"""The pre-training loop: token-weighted accumulation, schedules, exact resume, evaluation.

Loss is the sum of per-token cross-entropies over the global batch divided by the global
batch's target count, so a step's gradient is the same however the batch is split into
micro-batches and ranks (DDP averages over ranks, hence the factor ``world``). A checkpoint
is an HF model folder (``save_pretrained``) plus ``training_state.pt`` (optimiser,
scheduler, data position, RNG states, step); resuming from it continues the run exactly.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from train.config import TrainConfig
from train.data import PretrainBatches, RowSource, eval_batches, open_rows, split_holdout
from train.models import build_model, count_parameters

STATE_FILE = "training_state.pt"
CHECKPOINTS = "checkpoints"
FINAL = "model"
METRICS = "metrics.jsonl"

PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L40S": 362.0, "A10": 125.0,
               "4090": 165.0}
"""Dense bf16 peak TFLOP/s per GPU model (for the MFU estimate)."""


def lr_factor(step: int, cfg: TrainConfig) -> float:
    """Multiplier of ``cfg.lr`` at ``step``: linear warmup, then cosine / WSD / constant."""
    if cfg.warmup_steps and step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    floor = cfg.min_lr_ratio
    if cfg.schedule == "constant":
        return 1.0
    if cfg.schedule == "cosine":
        span = max(cfg.max_steps - cfg.warmup_steps, 1)
        t = min((step - cfg.warmup_steps) / span, 1.0)
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * t))
    decay = max(round(cfg.max_steps * cfg.decay_fraction), 1)  # WSD
    start = cfg.max_steps - decay
    if step < start:
        return 1.0
    return 1.0 - (1 - floor) * min((step - start + 1) / decay, 1.0)


@dataclass
class Dist:
    """This process's place in a torchrun job (world 1 without one)."""

    world: int = 1
    rank: int = 0
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed() -> Dist:
    """Join the torchrun job if there is one: NCCL on CUDA, gloo on the CPU."""
    import torch
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return Dist(world, dist.get_rank(), local_rank)


def _all_sum(value: float, d: Dist) -> float:
    if d.world == 1:
        return value
    import torch
    import torch.distributed as dist

    # NCCL reduces GPU tensors only
    t = torch.tensor([value], dtype=torch.float64,
                     device="cuda" if torch.cuda.is_available() else "cpu")
    dist.all_reduce(t)
    return float(t.item())


def token_loss_sum(model: Any, batch: dict[str, Any], autocast: Any) -> Any:
    """Sum of the cross-entropies of every target token of a micro-batch (float32)."""
    import torch.nn.functional as F

    with autocast():
        logits = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"],
                       use_cache=False).logits
    return F.cross_entropy(logits.float().flatten(0, 1), batch["targets"].flatten(),
                           ignore_index=-100, reduction="sum")


def accumulate_gradients(model: Any, micro: list, total: int, world: int, device: Any,
                         autocast: Any = contextlib.nullcontext) -> float:
    """Backward over this rank's micro-batches; returns this rank's summed token loss.

    Each micro-batch's loss is its token-loss sum over the *global* target count, so the
    accumulated gradient is the full batch's mean-token gradient; the factor ``world``
    undoes DDP's averaging over ranks. Only the last micro-batch syncs gradients.
    """
    loss_sum = 0.0
    for k, b in enumerate(micro):
        sync = world == 1 or k == len(micro) - 1
        with contextlib.nullcontext() if sync else model.no_sync():
            s = token_loss_sum(model, b.to_torch(device), autocast)
            (s * (world / max(total, 1))).backward()
        loss_sum += float(s.detach())
    return loss_sum


def evaluate(model: Any, batches: list, device: Any, autocast: Any, d: Dist) -> dict[str, float]:
    """Loss and perplexity over the fixed held-out rows (rank 0's view; all ranks agree)."""
    import torch

    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for b in batches:
            tb = b.to_torch(device)
            total += float(token_loss_sum(model, tb, autocast))
            count += b.n_targets
    model.train(was_training)
    loss = total / max(count, 1)
    return {"loss": loss, "perplexity": math.exp(min(loss, 50.0)), "tokens": count}


class MetricsLog:
    """``metrics.jsonl`` (one JSON object per record) plus TensorBoard scalars when present."""

    def __init__(self, output: Path, enabled: bool, tensorboard: bool, resume_step: int = 0):
        self.enabled = enabled
        self.path = output / METRICS
        self.writer = None
        if enabled and self.path.exists():
            # a fresh run starts a fresh log; a resumed one drops what the checkpoint undid
            kept = [line for line in self.path.read_text().splitlines()
                    if resume_step and json.loads(line).get("step", 0) <= resume_step]
            self.path.write_text("".join(line + "\n" for line in kept))
        if enabled and tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # tensorboard not installed: the JSONL log still has it all
                SummaryWriter = None
            if SummaryWriter is not None:
                self.writer = SummaryWriter(str(output / "tensorboard"))

    def log(self, record: dict[str, Any], prefix: str = "train") -> None:
        if not self.enabled:
            return
        with self.path.open("a") as f:
            f.write(json.dumps({"kind": prefix, **record}) + "\n")
        if self.writer is not None:
            for k, v in record.items():
                if k != "step" and isinstance(v, int | float) and v is not None:
                    self.writer.add_scalar(f"{prefix}/{k}", v, record["step"])

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


@dataclass
class TrainResult:
    output: Path
    steps: int
    losses: list[float] = field(default_factory=list)
    """Training loss of each step run in this call (global, token-weighted)."""
    evals: dict[str, list[dict[str, float]]] = field(default_factory=dict)
    resumed_from: int | None = None
    tokens_per_s: float = 0.0
    parameters: int = 0


def _rng_state() -> dict[str, Any]:
    import torch

    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(),
             "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    import torch

    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def latest_checkpoint(output: Path) -> Path | None:
    """The newest complete checkpoint folder under ``output/checkpoints``."""
    root = Path(output) / CHECKPOINTS
    done = sorted(p for p in root.glob("step-*") if (p / STATE_FILE).exists())
    return done[-1] if done else None


def _save(model: Any, folder: Path, state: dict[str, Any] | None) -> None:
    """Write a checkpoint into a temporary folder, then rename: never a half checkpoint."""
    import torch

    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(str(tmp), safe_serialization=True)
    if state is not None:
        torch.save(state, tmp / STATE_FILE)
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)


def _param_groups(model: Any, weight_decay: float) -> list[dict[str, Any]]:
    """Weight decay on matrices only (not norms, biases)."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.ndim >= 2 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0}]


def _peak_flops(cfg: TrainConfig, device: Any) -> float | None:
    if cfg.peak_tflops:
        return cfg.peak_tflops * 1e12
    if device.type != "cuda":
        return None
    import torch

    name = torch.cuda.get_device_name(device)
    return next((v * 1e12 for k, v in PEAK_TFLOPS.items() if k in name), None)


def require_packed_attention() -> None:
    """Packing relies on transformers turning restarting ``position_ids`` into a block-diagonal
    mask (``masking_utils.find_packed_sequence_indices``); older releases would silently let
    documents attend to each other."""
    try:
        from transformers.masking_utils import find_packed_sequence_indices  # noqa: F401
    except ImportError:
        import transformers

        raise RuntimeError(f"transformers {transformers.__version__} does not isolate packed "
                           f"documents by position_ids; install transformers>=5") from None


def train(cfg: TrainConfig, data: Path, output: Path, *, init: str | Path | None = None,
          eval_data: dict[str, Path] | None = None, resume: bool = True,
          stop_after: int | None = None) -> TrainResult:
    """Run (or resume) a pre-training job; ``init`` starts from a checkpoint (CPT).

    ``eval_data`` names held-out token stages or mixes (e.g. ``{"general": path}``);
    without it, ``cfg.eval_rows`` rows of the training data are held out as ``heldout``.
    ``stop_after`` ends the call after that global step (simulates an interruption).
    """
    import torch

    require_packed_attention()
    d = init_distributed()
    device = torch.device(f"cuda:{d.local_rank}" if torch.cuda.is_available() else "cpu")
    use_bf16 = device.type == "cuda" and cfg.precision in ("auto", "bf16")
    if cfg.precision == "bf16" and device.type != "cuda":
        raise ValueError("precision bf16 needs a CUDA device; use fp32 or auto on the CPU")
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)

    source = open_rows(data)
    seq_len = cfg.seq_len or source.meta.get("seq_len")
    if not seq_len:
        raise ValueError(f"{data}: no seq_len recorded; set seq_len in the config")
    vocab = source.meta.get("vocab_size")
    pad_id = source.meta.get("pad_id") or 0
    train_rows, heldout = split_holdout(source, cfg.eval_rows)
    eval_sources: dict[str, RowSource] = {}
    if heldout is not None:
        eval_sources["heldout"] = heldout
    for name, path in (eval_data or {}).items():
        eval_sources[name] = open_rows(path)
    evals = {name: eval_batches(src, cfg.eval_tokens, seq_len, cfg.micro_batch_size, pad_id)
             for name, src in eval_sources.items()}

    ckpt = latest_checkpoint(output) if resume else None
    model = build_model(ckpt or init or cfg.model, vocab, seq_len, cfg.attn_implementation,
                        seed=cfg.seed)
    if cfg.activation_checkpointing:
        enable = getattr(model, "activation_checkpointing_enable", None)
        (enable or model.gradient_checkpointing_enable)()  # renamed in transformers 5.x
    model.to(device).train()
    n_params = count_parameters(model)

    optimizer = torch.optim.AdamW(_param_groups(model, cfg.weight_decay), lr=cfg.lr,
                                  betas=(cfg.beta1, cfg.beta2), eps=cfg.eps,
                                  fused=device.type == "cuda")
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, cfg))
    batches = PretrainBatches(train_rows, seq_len, cfg.micro_batch_size, cfg.grad_accum,
                              cfg.seed, cfg.shuffle and not hasattr(source, "stream"),
                              d.world, d.rank, pad_id)
    step = 0
    if ckpt is not None:
        state = torch.load(ckpt / STATE_FILE, map_location="cpu", weights_only=False)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        batches.load_state_dict(state["data"])
        _set_rng_state(state["rng"][d.rank] if d.rank < len(state["rng"]) else state["rng"][0])
        step = int(state["step"])


    def autocast() -> Any:
        if use_bf16:
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    raw_model = model
    fwd_model = torch.compile(model) if cfg.compile else model
    if d.world > 1:
        from torch.nn.parallel import DistributedDataParallel

        fwd_model = DistributedDataParallel(
            fwd_model, device_ids=[d.local_rank] if device.type == "cuda" else None)

    log = MetricsLog(output, d.main, cfg.tensorboard, step)
    result = TrainResult(output, step, resumed_from=step if ckpt is not None else None,
                         parameters=n_params)
    peak = _peak_flops(cfg, device)

    def run_evals(at: int) -> None:
        for name, eb in evals.items():
            rec = evaluate(raw_model, eb, device, autocast, d)
            result.evals.setdefault(name, []).append({"step": at, **rec})
            log.log({"step": at, **rec}, prefix=f"eval/{name}")

    def checkpoint(at: int) -> None:
        rng = _gather_rng(d)
        if not d.main:
            return
        state = {"step": at, "optimizer": optimizer.state_dict(),
                 "scheduler": scheduler.state_dict(), "data": batches.state_dict(),
                 "rng": rng, "config": cfg.model_dump(mode="json"), "world": d.world}
        _save(raw_model, output / CHECKPOINTS / f"step-{at:08d}", state)
        old = sorted(p for p in (output / CHECKPOINTS).glob("step-*")
                     if (p / STATE_FILE).exists())
        for p in old[:-cfg.keep_checkpoints]:
            shutil.rmtree(p, ignore_errors=True)

    if cfg.eval_at_start and step == 0:
        run_evals(0)
    last = cfg.max_steps if stop_after is None else min(stop_after, cfg.max_steps)
    started, tokens_done = time.perf_counter(), 0
    while step < last:
        t0 = time.perf_counter()
        micro, total = batches.next_step()
        data_s = time.perf_counter() - t0
        loss_sum = accumulate_gradients(fwd_model, micro, total, d.world, device, autocast)
        n = sum(b.tokens for b in micro)
        grad_norm = (torch.nn.utils.clip_grad_norm_(raw_model.parameters(), cfg.grad_clip)
                     if cfg.grad_clip > 0 else None)
        lr = scheduler.get_last_lr()[0]
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        loss = _all_sum(loss_sum, d) / max(total, 1)
        result.losses.append(loss)
        dt = time.perf_counter() - t0
        step_tokens = int(_all_sum(n, d))
        tokens_done += step_tokens
        if step % cfg.log_every == 0 or step == last:
            rec = {"step": step, "loss": loss, "lr": lr, "tokens": step_tokens,
                   "tokens_per_s": step_tokens / dt if dt > 0 else 0.0,
                   "data_wait": data_s / dt if dt > 0 else 0.0,
                   "epoch": batches.epoch, "grad_norm": float(grad_norm)
                   if grad_norm is not None else None}
            if peak:
                rec["mfu"] = 6 * n_params * step_tokens / dt / (peak * d.world)
            log.log(rec)
        if cfg.eval_every and step % cfg.eval_every == 0 and step < cfg.max_steps:
            run_evals(step)
        if cfg.save_every and step % cfg.save_every == 0 and step < last:
            checkpoint(step)
    elapsed = time.perf_counter() - started
    result.tokens_per_s = tokens_done / elapsed if elapsed > 0 else 0.0
    result.steps = step
    if step >= cfg.max_steps:
        run_evals(step)
    checkpoint(step)
    if step >= cfg.max_steps and d.main:
        _save(raw_model, output / FINAL, None)
    log.close()
    if d.world > 1:
        import torch.distributed as dist

        dist.barrier()
    return result


def _gather_rng(d: Dist) -> list[dict[str, Any]]:
    """Every rank's RNG states (dropout streams differ per rank), collected on all ranks."""
    mine = _rng_state()
    if d.world == 1:
        return [mine]
    import torch.distributed as dist

    out: list[Any] = [None] * d.world
    dist.all_gather_object(out, mine)
    return out


def read_metrics(output: Path) -> list[dict[str, Any]]:
    path = Path(output) / METRICS
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def forgetting_report(output: Path) -> dict[str, Any]:
    """Held-out losses before and after continued pre-training, per eval set.

    Read from ``metrics.jsonl``, so a run resumed part-way still compares with step 0.
    """
    evals: dict[str, list[dict[str, Any]]] = {}
    for rec in read_metrics(output):
        if rec["kind"].startswith("eval/"):
            evals.setdefault(rec["kind"].removeprefix("eval/"), []).append(rec)
    report: dict[str, Any] = {"evals": {}}
    for name, recs in evals.items():
        before, after = recs[0], recs[-1]
        if len(recs) >= 2 and before["step"] == 0:
            report["evals"][name] = {
                "loss_before": before["loss"], "loss_after": after["loss"],
                "delta": after["loss"] - before["loss"], "step_after": after["step"],
                "perplexity_before": before["perplexity"],
                "perplexity_after": after["perplexity"]}
    (Path(output) / "cpt_report.json").write_text(json.dumps(report, indent=2) + "\n")
    return report
