"""Direct preference optimisation over ``preference_tokens`` ids (no re-tokenization).

TRL's DPOTrainer tokenizes from text, so the loss is ours, on the shard's ids: the policy
starts from the SFT model, the frozen reference is the same model, and the reference
log-probabilities of every pair are computed once up front. Losses: ``sigmoid`` (DPO),
``ipo`` (squared distance to ``1/(2 beta)`` on length-averaged log-ratios) and ``simpo``
(length-averaged policy log-probs with a target margin ``gamma``; no reference).
"""

from __future__ import annotations

import copy
import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from train.device import adamw, autocast, model_device, training_device
from train.reward import pad_batch, split_pairs

Loss = Literal["sigmoid", "ipo", "simpo"]


def reply_logps(model: Any, prompts: list[list[int]], replies: list[list[int]],
                pad_id: int) -> tuple[Any, Any]:
    """(sum of log-probs of each reply's tokens given its prompt, reply lengths)."""
    import torch

    seqs = [p + r for p, r in zip(prompts, replies, strict=True)]
    ids, mask = pad_batch(seqs, pad_id, "right")
    device = model_device(model)
    ids, mask = ids.to(device), mask.to(device)
    with autocast(device):
        logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
    targets = ids[:, 1:]
    logp = torch.log_softmax(logits, -1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    pos = torch.arange(1, ids.shape[1], device=device).expand(len(seqs), -1)
    starts = torch.tensor([len(p) for p in prompts], device=device).unsqueeze(1)
    ends = torch.tensor([len(s) for s in seqs], device=device).unsqueeze(1)
    reply = ((pos >= starts) & (pos < ends)).float()
    return (logp * reply).sum(-1), reply.sum(-1).clamp(min=1)


def pair_logps(model: Any, batch: list[dict], pad_id: int) -> dict[str, Any]:
    """Chosen and rejected reply log-probs (and lengths) in one forward pass."""
    n = len(batch)
    lp, ln = reply_logps(model, [r["prompt_ids"] for r in batch] * 2,
                         [r["chosen_ids"] for r in batch] + [r["rejected_ids"] for r in batch],
                         pad_id)
    return {"chosen": lp[:n], "rejected": lp[n:], "chosen_len": ln[:n], "rejected_len": ln[n:]}


def preference_loss(pol: dict[str, Any], ref: dict[str, Any] | None, loss: Loss, beta: float,
                    gamma: float = 0.5) -> tuple[Any, dict[str, Any]]:
    """(mean loss, per-pair implicit rewards) of one batch."""
    import torch.nn.functional as F

    if loss == "simpo":
        rc = beta * pol["chosen"] / pol["chosen_len"]
        rr = beta * pol["rejected"] / pol["rejected_len"]
        return -F.logsigmoid(rc - rr - gamma).mean(), {"chosen": rc, "rejected": rr}
    assert ref is not None, f"{loss} needs reference log-probs"
    dc, dr = pol["chosen"] - ref["chosen"], pol["rejected"] - ref["rejected"]
    if loss == "ipo":
        h = dc / pol["chosen_len"] - dr / pol["rejected_len"]
        value = ((h - 1 / (2 * beta)) ** 2).mean()
    elif loss == "sigmoid":
        value = -F.logsigmoid(beta * (dc - dr)).mean()
    else:
        raise ValueError(f"unknown DPO loss {loss!r}: sigmoid, ipo or simpo")
    return value, {"chosen": beta * dc, "rejected": beta * dr}


def _batches(rows: list[dict], size: int) -> list[list[dict]]:
    return [rows[i:i + size] for i in range(0, len(rows), size)]


def reference_logps(ref: Any, rows: list[dict], pad_id: int, batch_size: int) -> list[dict]:
    """Each row with its frozen reference log-probs attached (``ref_chosen``/``ref_rejected``)."""
    import torch

    out = []
    with torch.no_grad():
        for batch in _batches(rows, batch_size):
            lp = pair_logps(ref, batch, pad_id)
            for i, r in enumerate(batch):
                out.append({**r, "ref_chosen": float(lp["chosen"][i]),
                            "ref_rejected": float(lp["rejected"][i])})
    return out


def _ref_of(batch: list[dict], device: Any) -> dict[str, Any]:
    import torch

    return {"chosen": torch.tensor([r["ref_chosen"] for r in batch], device=device),
            "rejected": torch.tensor([r["ref_rejected"] for r in batch], device=device)}


def evaluate_dpo(model: Any, rows: list[dict], pad_id: int, beta: float,
                 batch_size: int = 16) -> dict[str, float]:
    """Held-out reward margin ``beta * (log-ratio chosen - log-ratio rejected)``, the
    accuracy (margin > 0), the policy's raw log-prob margin (chosen - rejected) and the share
    of pairs whose chosen reply it finds more likely (``logp_accuracy``: comparable across
    models, unlike the margin against the reference)."""
    import torch

    model.eval()
    margins, logp_margins = [], []
    with torch.no_grad():
        for batch in _batches(rows, batch_size):
            pol, ref = pair_logps(model, batch, pad_id), _ref_of(batch, model_device(model))
            margins += (beta * ((pol["chosen"] - ref["chosen"])
                                - (pol["rejected"] - ref["rejected"]))).tolist()
            logp_margins += (pol["chosen"] - pol["rejected"]).tolist()
    model.train()
    n = max(len(margins), 1)
    return {"reward_margin": sum(margins) / n,
            "accuracy": sum(m > 0 for m in margins) / n,
            "logp_margin": sum(logp_margins) / n,
            "logp_accuracy": sum(m > 0 for m in logp_margins) / n, "pairs": len(margins)}


@dataclass
class DpoResult:
    steps: int
    losses: list[float]
    before: dict[str, float]
    after: dict[str, float]
    output: Path | None
    history: list[dict[str, float]] = field(default_factory=list)


def train_dpo(rows: list[dict], init: str | Path | Any, output: Path | None, *,
              loss: Loss = "sigmoid", beta: float = 0.1, gamma: float = 0.5, epochs: int = 2,
              batch_size: int = 8, lr: float = 5e-4, pad_id: int = 0,
              eval_fraction: float = 0.1, seed: int = 0) -> DpoResult:
    """Optimise ``loss`` from ``init`` (a checkpoint folder or a model object, the SFT model)
    against a frozen copy of it. Writes OUTPUT/model and OUTPUT/dpo_report.json."""
    import torch

    from train.models import build_model

    policy = init if hasattr(init, "parameters") else build_model(init)
    device = training_device()
    policy.to(device)
    ref = copy.deepcopy(policy).eval().requires_grad_(False)
    torch.manual_seed(seed)
    train_rows, held = split_pairs(rows, eval_fraction, seed)
    train_rows = reference_logps(ref, train_rows, pad_id, batch_size)
    held = reference_logps(ref, held, pad_id, batch_size)
    del ref
    from train.loop import MetricsLog

    if output is not None:
        Path(output).mkdir(parents=True, exist_ok=True)
    # metrics.jsonl as it goes (as the pre-training loop writes it), so a watcher sees progress
    log = MetricsLog(Path(output or "."), output is not None, False)
    before = evaluate_dpo(policy, held, pad_id, beta)
    log.log({"step": 0, **before}, prefix="eval/heldout")
    opt = adamw(policy.parameters(), device, lr=lr, weight_decay=0.0)
    rng = random.Random(seed)
    losses, history, step = [], [], 0
    policy.train()
    for epoch in range(epochs):
        rng.shuffle(train_rows)
        for batch in _batches(train_rows, batch_size):
            pol = pair_logps(policy, batch, pad_id)
            value, rewards = preference_loss(pol, _ref_of(batch, device), loss, beta, gamma)
            opt.zero_grad()
            value.backward()
            torch.nn.utils.clip_grad_norm_(policy.parameters(), 1.0)
            opt.step()
            losses.append(float(value.detach()))
            step += 1
            margin = (rewards["chosen"] - rewards["rejected"]).detach()
            log.log({"step": step, "loss": losses[-1], "reward_margin": float(margin.mean()),
                     "accuracy": float((margin > 0).float().mean())})
        history.append({"epoch": epoch + 1, **evaluate_dpo(policy, held, pad_id, beta)})
        log.log({"step": step, **history[-1]}, prefix="eval/heldout")
    after = history[-1] if history else before
    if output is not None:
        output = Path(output)
        policy.save_pretrained(output / "model")
        (output / "dpo_report.json").write_text(json.dumps(
            {"loss": loss, "beta": beta, "steps": step, "before": before, "after": after,
             "history": history}, indent=2))
    return DpoResult(step, losses, before, after, output, history)
