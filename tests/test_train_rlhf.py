"""RLHF on CPU with tiny models: reward model, DPO (sigmoid / IPO / SimPO) and GRPO."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pyarrow as pa
import pytest
import torch
from click.testing import CliRunner

from schemas import write_shard
from schemas.kinds import PREFERENCE_TOKENS
from train.dpo import train_dpo
from train.models import build_model
from train.reward import load_pairs, pad_batch, score, train_reward, vocab_size_of
from train.rl import contains_answer, grpo_advantages, sample, train_grpo
from train.rlhf_cli import dpo_command, reward_command, rl_command

V, BOS, EOS = 32, 1, 2
PAD = EOS  # pad == eos: the hard case for "last non-padding token"
GOOD, BAD = range(16, 24), range(24, 32)


@pytest.fixture(autouse=True)
def _threads():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def pairs(n: int = 160, seed: int = 0) -> list[dict]:
    """Prompts of random ids; chosen replies use GOOD ids, rejected BAD ids, random lengths."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        prompt = [BOS] + [rng.randrange(4, 16) for _ in range(rng.randint(2, 5))]
        out.append({"id": f"p{i}", "prompt_ids": prompt,
                    "chosen_ids": [rng.choice(GOOD) for _ in range(rng.randint(2, 5))] + [EOS],
                    "rejected_ids": [rng.choice(BAD) for _ in range(rng.randint(2, 5))] + [EOS],
                    "split": "test" if i % 8 == 0 else "train"})
    return out


def shard(tmp: Path, rows: list[dict]) -> Path:
    path = tmp / "pairs.arrow"
    ids = pa.list_(pa.uint16())
    write_shard(pa.table({"id": [r["id"] for r in rows],
                          **{c: pa.array([r[c] for r in rows], ids)
                             for c in ("prompt_ids", "chosen_ids", "rejected_ids")},
                          "split": [r["split"] for r in rows]}), path, PREFERENCE_TOKENS)
    return path


@pytest.fixture(scope="module")
def sft(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The 'SFT model': a seeded tiny Llama saved as a checkpoint."""
    out = tmp_path_factory.mktemp("sft") / "model"
    build_model("tiny", vocab_size=V, max_positions=64).save_pretrained(out)
    return out


def test_reward_model_reaches_high_heldout_accuracy(tmp_path: Path) -> None:
    rows = load_pairs(shard(tmp_path, pairs()))
    res = train_reward(rows, "tiny", tmp_path / "rm", vocab_size=V, pad_id=PAD, epochs=3)
    assert res.losses[-1] < res.losses[0]
    assert res.eval_accuracy >= 0.9 and res.eval_margin > 0
    report = json.loads((tmp_path / "rm" / "reward_report.json").read_text())
    assert report["history"][-1]["pairs"] == 20  # the shard's own test split is held out


def test_score_is_read_at_the_last_attended_token() -> None:
    from train.reward import build_reward_model

    model = build_reward_model("tiny", V).eval()
    seqs = [[BOS, 5, 6, 17, EOS], [BOS, 7, EOS], [BOS, 4, 4, 4, 25, 26, EOS]]  # end in pad id
    with torch.no_grad():
        alone = torch.cat([score(model, *pad_batch([s], PAD)) for s in seqs])
        right = score(model, *pad_batch(seqs, PAD, "right"))
        left = score(model, *pad_batch(seqs, PAD, "left"))
    assert torch.allclose(alone, right, atol=1e-5) and torch.allclose(alone, left, atol=1e-5)


@pytest.mark.parametrize("loss", ["sigmoid", "ipo", "simpo"])
def test_dpo_raises_the_heldout_margin(loss: str, sft: Path, tmp_path: Path) -> None:
    res = train_dpo(pairs(), sft, tmp_path, loss=loss, beta=0.1, epochs=2, pad_id=PAD)
    b, a = res.before, res.after
    assert b["reward_margin"] == pytest.approx(0.0, abs=1e-4)  # policy == reference at start
    assert a["logp_margin"] > b["logp_margin"] + 1.0
    assert a["reward_margin"] > 0.1 and a["accuracy"] >= 0.9
    assert (tmp_path / "model" / "config.json").is_file()


def test_grpo_advantages_and_sampling() -> None:
    adv = grpo_advantages(torch.tensor([1.0, 0.0, 0.0, 2.0, 2.0, 2.0]), group=3)
    assert adv[0] > 0 > adv[1] and adv[3:].abs().max() < 1e-3  # equal rewards: no signal
    model = build_model("tiny", vocab_size=V, max_positions=64).eval()
    replies = sample(model, [[BOS, 4], [BOS, 5, 6, 7]], 6, EOS, PAD,
                     generator=torch.Generator().manual_seed(0))
    assert all(0 < len(r) <= 6 and EOS not in r[:-1] for r in replies)


def test_grpo_raises_reward_on_a_verifiable_task_with_bounded_kl(tmp_path: Path) -> None:
    """Prompt [BOS, q]: the reply earns 1 when it contains the answer token q + 8."""
    prompts = [[BOS, q] for q in range(4, 12)]
    reward = contains_answer({(BOS, q): q + 8 for q in range(4, 12)})
    policy = build_model("tiny", vocab_size=V, max_positions=64)
    res = train_grpo(policy, prompts, tmp_path, reward_fns=[reward], steps=80, group=8,
                     max_new=3, lr=3e-3, beta=0.04, eos_id=3, pad_id=0)
    assert res.final_reward > res.reference_reward + 0.25
    assert max(h["kl"] for h in res.history) < 3.0
    logged = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert len(logged) == 80 and {"reward", "kl", "response_length"} <= set(logged[0])


def test_cli(sft: Path, tmp_path: Path) -> None:
    data = shard(tmp_path, pairs(48))
    run = CliRunner()
    r = run.invoke(reward_command, ["--data", str(data), "--output", str(tmp_path / "rm"),
                                    "--init", str(sft), "--epochs", "1", "--pad-id", str(PAD)])
    assert r.exit_code == 0, r.output
    assert "held-out accuracy" in r.output
    r = run.invoke(dpo_command, ["--data", str(data), "--init", str(sft), "--output",
                                 str(tmp_path / "dpo"), "--loss", "ipo", "--epochs", "1",
                                 "--pad-id", str(PAD)])
    assert r.exit_code == 0, r.output
    assert "reward margin" in r.output
    r = run.invoke(rl_command, ["--data", str(data), "--init", str(sft), "--reward-model",
                                str(tmp_path / "rm" / "model"), "--output", str(tmp_path / "rl"),
                                "--steps", "2", "--max-new", "4", "--eos-id", str(EOS),
                                "--pad-id", str(PAD)])
    assert r.exit_code == 0, r.output
    assert "mean reward" in r.output and (tmp_path / "rl" / "model").is_dir()


# --- end to end on real preference_tokens shards ---------------------------------------------

@pytest.fixture(scope="module")
def chat_tokenizer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.test_tokenize_chat import _train

    return _train(tmp_path_factory.mktemp("chat_tok"), add_bos=False)


def test_reward_and_dpo_on_a_tokenized_preference_stage(chat_tokenizer: Path,
                                                        tmp_path: Path) -> None:
    """``preference`` stage -> ``preference_tokens`` (chat template, tokenizer) -> reward / DPO:
    helpful chosen replies vs terse rejected ones (a learnable difference)."""
    from curate.labelled.tokenize_chat import PreferenceTokenizeConfig, run_preference_tokenize
    from tests.test_tokenize_chat import A, U, labelled_stage

    rng = random.Random(0)
    topics = ["rivers", "bread", "stars", "trains", "bees", "tides", "glass", "maps"]
    records = [{"id": f"q{i}", "prompt": [U(f"Tell me about {t}, please.")],
                "chosen": [A(f"Happy to help: {t} are fascinating, here is a short overview.")],
                "rejected": [A(rng.choice(["No.", "Whatever.", "Ask someone else."]))],
                "split": "test" if i % 6 == 0 else "train"}
               for i, t in enumerate(rng.choice(topics) for _ in range(72))]
    pref = labelled_stage(tmp_path, "preference", records)
    tokens = tmp_path / "tokens"
    assert run_preference_tokenize(pref, tokens, PreferenceTokenizeConfig(
        tokenizer=str(chat_tokenizer), max_length=256)).ok
    rows = load_pairs(tokens)
    assert len(rows) == 72
    rm = train_reward(rows, "tiny", None, vocab_size=vocab_size_of(rows), epochs=2)
    assert rm.eval_accuracy >= 0.9
    sft = build_model("tiny", vocab_size=vocab_size_of(rows), max_positions=256)
    res = train_dpo(rows, sft, None, epochs=2)
    assert res.after["reward_margin"] > res.before["reward_margin"] + 0.1


def test_recipe_and_set_override_defaults_and_flags_win(sft: Path, tmp_path: Path) -> None:
    """``--config`` (the command's section) and ``--set`` change the defaults; ``--set`` beats
    the recipe in any order, an explicit flag beats both, an unknown key is an error."""
    data = shard(tmp_path, pairs(48))
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(f"dpo:\n  loss: simpo\n  epochs: 1\n  beta: 0.5\n  pad_id: {PAD}\n"
                      "reward:\n  epochs: 7\n")
    run = CliRunner()
    out = tmp_path / "dpo"
    r = run.invoke(dpo_command, ["--set", "beta=0.25", "--data", str(data), "--init", str(sft),
                                 "--output", str(out), "--config", str(recipe),
                                 "--gamma", "0.0"])
    assert r.exit_code == 0, r.output
    report = json.loads((out / "dpo_report.json").read_text())
    assert report["loss"] == "simpo" and report["beta"] == 0.25
    assert report["steps"] == 6  # one epoch of 42 train pairs in batches of 8
    r = run.invoke(dpo_command, ["--data", str(data), "--init", str(sft), "--output",
                                 str(out), "--set", "betta=1"])
    assert r.exit_code != 0 and "unknown setting" in r.output
    rm = tmp_path / "rm"
    r = run.invoke(reward_command, ["--config", str(recipe), "--data", str(data), "--output",
                                    str(rm), "--init", str(sft), "--set", "epochs=1"])
    assert r.exit_code == 0, r.output
    assert json.loads((rm / "reward_report.json").read_text())["history"][-1]["epoch"] == 1
    records = [json.loads(x) for x in (rm / "metrics.jsonl").read_text().splitlines()]
    assert [r["kind"] for r in records].count("eval/heldout") == 1  # one epoch, logged as it went
