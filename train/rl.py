"""Online RL with GRPO: sample a group of replies per prompt from the policy, score them
(rule-based reward functions and/or a reward model), and push up the log-probs of replies
that beat their group's mean, with a KL penalty to the frozen reference.

One policy update per sampled batch (fully on-policy, so the PPO ratio is 1 and needs no
clipping); KL uses the non-negative ``k3`` estimator per reply token. Generation is our own
short sampling loop (no KV cache needed for tiny models), stopping a reply at ``eos_id``.
"""

from __future__ import annotations

import copy
import json
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from train.reward import pad_batch, position_ids, score

RewardFn = Callable[[list[int], list[int]], float]


def sample(model: Any, prompts: list[list[int]], max_new: int, eos_id: int | None, pad_id: int,
           temperature: float = 1.0, generator: Any = None) -> list[list[int]]:
    """Replies sampled from ``model`` (left-padded prompts), each cut after its first eos."""
    import torch

    ids, mask = pad_batch(prompts, pad_id, "left")
    done = torch.zeros(len(prompts), dtype=torch.bool)
    out = []
    with torch.no_grad():
        for _ in range(max_new):
            logits = model(input_ids=ids, attention_mask=mask,
                           position_ids=position_ids(mask)).logits[:, -1].float()
            probs = torch.softmax(logits / temperature, -1)
            nxt = torch.multinomial(probs, 1, generator=generator).squeeze(-1)
            nxt = torch.where(done, torch.full_like(nxt, pad_id), nxt)
            out.append(nxt)
            ids = torch.cat([ids, nxt[:, None]], 1)
            mask = torch.cat([mask, (~done).long()[:, None]], 1)
            if eos_id is not None:
                done |= nxt == eos_id
            if bool(done.all()):
                break
    tokens = torch.stack(out, 1).tolist()
    replies = []
    for row, keep in zip(tokens, mask[:, -len(out):].tolist(), strict=True):
        replies.append([t for t, k in zip(row, keep, strict=True) if k])
    return replies


def token_logps(model: Any, prompts: list[list[int]], replies: list[list[int]],
                pad_id: int) -> tuple[Any, Any]:
    """(per-token log-probs of each reply, reply-token mask), both [batch, longest reply]."""
    import torch

    seqs = [p + r for p, r in zip(prompts, replies, strict=True)]
    ids, mask = pad_batch(seqs, pad_id, "right")
    logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
    logp = torch.log_softmax(logits, -1).gather(-1, ids[:, 1:, None]).squeeze(-1)
    width = max(max(len(r) for r in replies), 1)
    out = torch.zeros(len(seqs), width)
    rmask = torch.zeros(len(seqs), width)
    for i, (p, r) in enumerate(zip(prompts, replies, strict=True)):
        out[i, :len(r)] = logp[i, len(p) - 1:len(p) - 1 + len(r)]
        rmask[i, :len(r)] = 1
    return out, rmask


def reward_model_fn(model: Any, pad_id: int) -> Callable[[list[list[int]], list[list[int]]], Any]:
    """A batch scorer from a reward model (``train reward``): score of prompt + reply."""
    import torch

    def fn(prompts: list[list[int]], replies: list[list[int]]) -> list[float]:
        seqs = [p + r for p, r in zip(prompts, replies, strict=True)]
        ids, mask = pad_batch(seqs, pad_id, "right")
        with torch.no_grad():
            return score(model, ids, mask).tolist()
    return fn


def contains_answer(answers: dict[tuple[int, ...], int]) -> RewardFn:
    """Rule-based verifiable reward: 1 when the reply contains the prompt's answer token."""
    def fn(prompt: list[int], reply: list[int]) -> float:
        return float(answers[tuple(prompt)] in reply)
    return fn


def grpo_advantages(rewards: Any, group: int, eps: float = 1e-4) -> Any:
    """Reward minus its group's mean, over the group's std (groups are consecutive rows)."""
    r = rewards.view(-1, group)
    return ((r - r.mean(1, keepdim=True)) / (r.std(1, keepdim=True) + eps)).view(-1)


@dataclass
class RlResult:
    steps: int
    history: list[dict[str, float]]
    reference_reward: float
    final_reward: float
    output: Path | None
    losses: list[float] = field(default_factory=list)


def mean_reward(model: Any, prompts: list[list[int]], score_batch: Callable, *, samples: int,
                max_new: int, eos_id: int | None, pad_id: int, seed: int) -> float:
    """Mean reward of ``samples`` replies per prompt (a seeded estimate)."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    many = [p for p in prompts for _ in range(samples)]
    replies = sample(model, many, max_new, eos_id, pad_id, generator=gen)
    values = score_batch(many, replies)
    return float(sum(values) / len(values))


def train_grpo(policy: Any, prompts: Sequence[list[int]], output: Path | None, *,
               reward_fns: Sequence[RewardFn] = (), reward_model: Any = None,
               steps: int = 30, prompts_per_step: int = 4, group: int = 8, max_new: int = 4,
               beta: float = 0.04, lr: float = 1e-3, eos_id: int | None = None,
               pad_id: int = 0, temperature: float = 1.0, eval_samples: int = 8,
               seed: int = 0) -> RlResult:
    """GRPO from ``policy`` (the SFT model; a frozen copy is the KL reference). Rewards are the
    sum of ``reward_fns`` and the reward model's score. Logs reward, KL and reply length per
    step to OUTPUT/metrics.jsonl and saves OUTPUT/model."""
    import torch

    if not reward_fns and reward_model is None:
        raise ValueError("GRPO needs reward functions and/or a reward model")
    prompts = [list(p) for p in prompts]
    rm = reward_model_fn(reward_model, pad_id) if reward_model is not None else None

    def score_batch(ps: list[list[int]], rs: list[list[int]]) -> list[float]:
        total = [sum(f(p, r) for f in reward_fns) for p, r in zip(ps, rs, strict=True)]
        if rm is not None:
            total = [a + b for a, b in zip(total, rm(ps, rs), strict=True)]
        return total

    ref = copy.deepcopy(policy).eval().requires_grad_(False)
    kw = dict(samples=eval_samples, max_new=max_new, eos_id=eos_id, pad_id=pad_id, seed=seed)
    ref_reward = mean_reward(ref, prompts, score_batch, **kw)
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed + 1)
    rng = random.Random(seed)
    opt = torch.optim.AdamW(policy.parameters(), lr=lr, weight_decay=0.0)
    history, losses = [], []
    for step in range(1, steps + 1):
        batch = [p for p in rng.sample(prompts, min(prompts_per_step, len(prompts)))
                 for _ in range(group)]
        policy.eval()
        replies = sample(policy, batch, max_new, eos_id, pad_id, temperature, gen)
        policy.train()
        rewards = torch.tensor(score_batch(batch, replies), dtype=torch.float32)
        adv = grpo_advantages(rewards, group)
        logp, mask = token_logps(policy, batch, replies, pad_id)
        with torch.no_grad():
            ref_logp, _ = token_logps(ref, batch, replies, pad_id)
        diff = ref_logp - logp
        kl = torch.exp(diff) - diff - 1  # k3: unbiased, non-negative
        per_token = -(adv[:, None] * logp) + beta * kl
        n_tok = mask.sum(1).clamp(min=1)
        loss = ((per_token * mask).sum(1) / n_tok).mean()
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(policy.parameters(), 1.0)
        opt.step()
        losses.append(float(loss.detach()))
        history.append({"step": step, "reward": float(rewards.mean()),
                        "kl": float(((kl.detach() * mask).sum(1) / n_tok).mean()),
                        "response_length": float(mask.sum(1).mean()), "loss": losses[-1]})
    policy.eval()
    final = mean_reward(policy, prompts, score_batch, **kw)
    if output is not None:
        output = Path(output)
        output.mkdir(parents=True, exist_ok=True)
        policy.save_pretrained(output / "model")
        with open(output / "metrics.jsonl", "w") as f:
            for rec in history:
                f.write(json.dumps(rec) + "\n")
        (output / "rl_report.json").write_text(json.dumps(
            {"steps": steps, "reference_reward": ref_reward, "final_reward": final,
             "final_kl": history[-1]["kl"] if history else 0.0}, indent=2))
    return RlResult(steps, history, ref_reward, final, output, losses)
