"""Bradley-Terry reward model on ``preference_tokens`` shards, and the shared pair readers.

The model is a ``LlamaForSequenceClassification`` (one output) so it saves and loads like any
HF checkpoint, but the score is read by us at the last *attended* token: transformers finds
that token by searching for ``pad_token_id``, which is wrong when pad == eos (the eos of a
reply is then taken for padding) and under left padding. Loss: ``-log sigmoid(r_c - r_r)``.
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from train.device import adamw, autocast, model_device, training_device

PAIR_COLUMNS = ["prompt_ids", "chosen_ids", "rejected_ids", "split"]


def load_pairs(source: Path) -> list[dict[str, Any]]:
    """Rows of a ``preference_tokens`` stage folder (or one shard file): prompt_ids,
    chosen_ids / rejected_ids (the replies alone) and split."""
    from schemas import read_shard, shard_paths

    source = Path(source)
    paths = shard_paths(source) if source.is_dir() else [source]
    rows: list[dict[str, Any]] = []
    for p in paths:
        rows += read_shard(p, columns=PAIR_COLUMNS).to_pylist()
    if not rows:
        raise ValueError(f"no preference pairs in {source}")
    return rows


def split_pairs(rows: list[dict[str, Any]], eval_fraction: float = 0.1,
                seed: int = 0) -> tuple[list[dict], list[dict]]:
    """(train, held-out): the shard's ``split`` column when it names a held-out split, else a
    seeded ``eval_fraction`` of the rows."""
    held = [r for r in rows if r.get("split") in ("test", "validation", "eval", "heldout")]
    if held:
        return [r for r in rows if r not in held], held
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    n_eval = max(1, round(eval_fraction * len(rows)))
    return [rows[i] for i in order[n_eval:]], [rows[i] for i in order[:n_eval]]


def pad_batch(seqs: list[list[int]], pad_id: int, side: str = "right") -> tuple[Any, Any]:
    """(input_ids, attention_mask) long tensors of ``seqs`` padded on ``side``."""
    import torch

    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        sl = slice(0, len(s)) if side == "right" else slice(width - len(s), width)
        ids[i, sl] = torch.tensor(s, dtype=torch.long)
        mask[i, sl] = 1
    return ids, mask


def position_ids(mask: Any) -> Any:
    """Positions that start at 0 on the first attended token, so left padding shifts nothing."""
    return (mask.cumsum(-1) - 1).clamp(min=0)


def last_index(mask: Any) -> Any:
    """Index of the last attended token per row, whatever side the padding is on."""
    import torch

    pos = torch.arange(mask.shape[-1], device=mask.device).expand_as(mask)
    return (pos * mask).argmax(-1)


def build_reward_model(init: str | Path, vocab_size: int | None = None, seed: int = 0) -> Any:
    """A one-output sequence classifier: a preset from scratch or a local (SFT) checkpoint
    whose transformer is reused (the new score head is initialised)."""
    import torch
    from transformers import LlamaForSequenceClassification

    from train.models import is_checkpoint, model_config

    torch.manual_seed(seed)
    if is_checkpoint(init):
        model = LlamaForSequenceClassification.from_pretrained(
            str(init), num_labels=1, local_files_only=True, torch_dtype=torch.float32)
    else:
        if vocab_size is None:
            raise ValueError("a model preset needs the vocabulary size")
        cfg = model_config(str(init), vocab_size, 2048)
        cfg.num_labels = 1
        model = LlamaForSequenceClassification(cfg)
    model.config.use_cache = False
    return model


def score(model: Any, ids: Any, mask: Any) -> Any:
    """Reward per row: the score head at the last attended token (pad == eos safe)."""
    import torch

    hidden = model.model(input_ids=ids, attention_mask=mask,
                         position_ids=position_ids(mask)).last_hidden_state
    last = hidden[torch.arange(ids.shape[0], device=ids.device), last_index(mask)]
    return model.score(last).squeeze(-1)


def _pair_scores(model: Any, batch: list[dict], pad_id: int, side: str) -> tuple[Any, Any]:
    seqs = ([r["prompt_ids"] + r["chosen_ids"] for r in batch]
            + [r["prompt_ids"] + r["rejected_ids"] for r in batch])
    ids, mask = pad_batch(seqs, pad_id, side)
    device = model_device(model)
    with autocast(device):
        s = score(model, ids.to(device), mask.to(device)).float()
    return s[:len(batch)], s[len(batch):]


@dataclass
class RewardResult:
    steps: int
    losses: list[float]
    eval_accuracy: float
    eval_margin: float
    output: Path | None
    history: list[dict[str, float]] = field(default_factory=list)


def evaluate_reward(model: Any, rows: list[dict], pad_id: int, batch_size: int = 16,
                    side: str = "right") -> dict[str, float]:
    """Held-out pairwise accuracy (chosen scored above rejected) and mean margin."""
    import torch

    model.eval()
    wins, margins = [], []
    with torch.no_grad():
        for i in range(0, len(rows), batch_size):
            c, r = _pair_scores(model, rows[i:i + batch_size], pad_id, side)
            wins += (c > r).tolist()
            margins += (c - r).tolist()
    model.train()
    return {"accuracy": float(np.mean(wins)), "margin": float(np.mean(margins)),
            "pairs": len(rows)}


def train_reward(rows: list[dict], init: str | Path, output: Path | None, *, vocab_size: int,
                 pad_id: int = 0, epochs: int = 3, batch_size: int = 16, lr: float = 1e-3,
                 eval_fraction: float = 0.1, seed: int = 0) -> RewardResult:
    """Fit ``-log sigmoid(r_chosen - r_rejected)`` on the train pairs; report held-out
    accuracy. Writes OUTPUT/model and OUTPUT/reward_report.json when ``output`` is given."""
    import torch

    from train.loop import MetricsLog

    train_rows, held = split_pairs(rows, eval_fraction, seed)
    device = training_device()
    model = build_reward_model(init, vocab_size, seed).to(device)
    opt = adamw(model.parameters(), device, lr=lr, weight_decay=0.0)
    rng = random.Random(seed)
    losses, history, step = [], [], 0
    if output is not None:
        Path(output).mkdir(parents=True, exist_ok=True)
    # metrics.jsonl as it goes (as the pre-training loop writes it), so a watcher sees progress
    log = MetricsLog(Path(output or "."), output is not None, False)
    for epoch in range(epochs):
        rng.shuffle(train_rows)
        for i in range(0, len(train_rows), batch_size):
            c, r = _pair_scores(model, train_rows[i:i + batch_size], pad_id, "right")
            loss = -torch.nn.functional.logsigmoid(c - r).mean()
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            losses.append(float(loss.detach()))
            step += 1
            log.log({"step": step, "loss": losses[-1],
                     "accuracy": float((c > r).float().mean())})
        history.append({"epoch": epoch + 1, **evaluate_reward(model, held, pad_id)})
        log.log({"step": step, **history[-1]}, prefix="eval/heldout")
    final = history[-1] if history else evaluate_reward(model, held, pad_id)
    if output is not None:
        output = Path(output)
        model.save_pretrained(output / "model")
        (output / "reward_report.json").write_text(json.dumps(
            {"steps": step, "train_loss": losses[-1] if losses else math.nan,
             "history": history}, indent=2))
    return RewardResult(step, losses, final["accuracy"], final["margin"], output, history)


def vocab_size_of(rows: list[dict]) -> int:
    """Smallest vocabulary covering every id of the pairs (for a preset built from scratch)."""
    return 1 + max(max(r["prompt_ids"] + r["chosen_ids"] + r["rejected_ids"]) for r in rows)
