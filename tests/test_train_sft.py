"""Fine-tuning on tiny models: SFT lowers held-out assistant-token loss on the templated
instruction set, LoRA changes only adapter weights and merges to the same logits, a resumed
run equals an uninterrupted one, and classification separates two topics."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from click.testing import CliRunner  # noqa: E402

from curate.demo_text import EN_TOPICS  # noqa: E402
from curate.ingest import INGEST, IngestConfig, plan_ingest  # noqa: E402
from curate.labelled import demo  # noqa: E402
from curate.labelled.tokenize_chat import SftTokenizeConfig, run_sft_tokenize  # noqa: E402
from curate.runner import run_stage  # noqa: E402
from tests.conftest import write_jsonl  # noqa: E402
from tests.test_tokenize_chat import _train, labelled_stage  # noqa: E402
from train.classify import (  # noqa: E402
    ClassifyConfig,
    classification_metrics,
    classify_command,
    train_classifier,
)
from train.models import build_model  # noqa: E402
from train.sft import (  # noqa: E402
    SftConfig,
    make_sft_batch,
    read_sft_rows,
    train_sft,
)

FAST = dict(micro_batch_size=8, lr=3e-3, tensorboard=False, generations=0, eval_at_start=True)


@pytest.fixture(scope="module")
def sft_set(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The templated instruction set (every 5th conversation held out), tokenized, plus a
    tiny base checkpoint."""
    tmp = tmp_path_factory.mktemp("sft_train")
    tok = _train(tmp, False)
    examples = demo.sft_examples(demo.articles(0), random.Random(0))
    records = [{"id": e["id"], "messages": e["turns"],
                "split": "validation" if i % 5 == 0 else "train"}
               for i, e in enumerate(examples)]
    tokens = tmp / "sft_tokens"
    assert run_sft_tokenize(labelled_stage(tmp, "sft", records), tokens,
                            SftTokenizeConfig(tokenizer=str(tok), max_length=512)).ok
    base = tmp / "base"
    vocab = json.loads((tokens / "_tokenizer.json").read_text())["vocab_size"]
    build_model("tiny", vocab, 512).save_pretrained(str(base))
    return {"tokens": tokens, "base": base, "tokenizer": tok}


def test_batches_train_only_assistant_tokens(sft_set) -> None:
    rows = read_sft_rows(sft_set["tokens"])
    assert set(rows) == {"train", "validation"}
    tr = rows["train"]
    b = make_sft_batch(tr, [0, 1], pad_id=0, packing=False)
    lab = b["labels"][0, : len(tr.ids[0])].numpy()
    assert (lab != -100).sum() == tr.mask[0].sum()
    assert np.array_equal(lab[tr.mask[0]], tr.ids[0][tr.mask[0]])
    packed = make_sft_batch(tr, [0, 1], pad_id=0, packing=True)
    n0 = len(tr.ids[0])
    assert packed["input_ids"].shape == (1, n0 + len(tr.ids[1]))
    assert packed["position_ids"][0, n0] == 0  # the second conversation restarts


def test_sft_lowers_heldout_assistant_loss(sft_set, tmp_path: Path) -> None:
    cfg = SftConfig(model=str(sft_set["base"]), max_steps=10, generations=2, max_new_tokens=8,
                    packing=True, **{k: v for k, v in FAST.items() if k != "generations"})
    r = train_sft(cfg, sft_set["tokens"], tmp_path / "run")
    before, after = r.evals[0]["loss"], r.evals[-1]["loss"]
    assert r.evals[0]["step"] == 0 and r.evals[-1]["step"] == 10
    assert after < before - 0.5, (before, after)
    gens = [json.loads(x) for x in (tmp_path / "run" / "generations.jsonl").read_text()
            .splitlines()]
    assert len(gens) == 2 and "reply" in gens[0] and "reference" in gens[0]
    assert (tmp_path / "run" / "model" / "config.json").exists()
    kinds = {json.loads(x)["kind"] for x in (tmp_path / "run" / "metrics.jsonl").read_text()
             .splitlines()}
    assert kinds == {"train", "eval/validation"}


@pytest.mark.parametrize("lora", [False, True])
def test_resume_equals_uninterrupted(lora: bool, sft_set, tmp_path: Path) -> None:
    cfg = SftConfig(model=str(sft_set["base"]), max_steps=4, lora=lora,
                    **{**FAST, "eval_at_start": False})
    straight = train_sft(cfg, sft_set["tokens"], tmp_path / "a")
    first = train_sft(cfg, sft_set["tokens"], tmp_path / "b", stop_after=2)
    second = train_sft(cfg, sft_set["tokens"], tmp_path / "b")
    assert second.resumed_from == 2
    assert np.allclose(first.losses + second.losses, straight.losses, rtol=1e-5, atol=1e-6)


def test_lora_changes_only_adapters_and_merges_exactly(sft_set, tmp_path: Path) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from train.cli import main

    if "sft" not in main.commands:
        from train.sft import sft_command as sft
    else:
        sft = main.commands["sft"]
    out = tmp_path / "lora"
    res = CliRunner().invoke(sft, [
        "--data", str(sft_set["tokens"]), "--output", str(out), "--init", str(sft_set["base"]),
        "--set", "lora=true", "--set", "max_steps=3", "--set", "lr=1e-2",
        "--set", "lora_target_modules=[q_proj, v_proj, down_proj]",
        "--set", "generations=0", "--set", "tensorboard=false"])
    assert res.exit_code == 0, res.output
    assert "trainable" in res.output

    def load(p):
        return AutoModelForCausalLM.from_pretrained(str(p), local_files_only=True)

    base = load(sft_set["base"])
    adapted = PeftModel.from_pretrained(load(sft_set["base"]), str(out / "adapter"))
    lora_names = [n for n, _ in adapted.named_parameters() if "lora_" in n]
    assert any("down_proj" in n for n in lora_names)
    assert not any("k_proj" in n for n in lora_names)
    lora_b = [p for n, p in adapted.named_parameters() if "lora_B" in n]
    assert lora_b and all(p.abs().sum() > 0 for p in lora_b)  # B starts at zero: it trained
    # the base weights inside the adapter model are the original ones, bit for bit
    inner = adapted.get_base_model().state_dict()
    for name, w in base.state_dict().items():
        key = name if name in inner else name.replace(".weight", ".base_layer.weight")
        assert torch.equal(inner[key], w), name
    merged = load(out / "model")
    ids = torch.from_numpy(read_sft_rows(sft_set["tokens"])["validation"].ids[0])[None]
    adapted.eval()
    merged.eval()
    with torch.no_grad():
        a, m, b = (x(input_ids=ids).logits for x in (adapted, merged, base))
    assert torch.allclose(a, m, atol=1e-5)
    assert not torch.allclose(a, b, atol=1e-3)


def test_classification_separates_topics(tmp_path: Path) -> None:
    rng = random.Random(0)
    records = []
    for label, topic in (("a", EN_TOPICS[0]), ("b", EN_TOPICS[1])):
        sents = [s.replace("{", "").replace("}", "") for c in topic.clusters for s in c]
        records += [{"id": f"{label}{i}", "text": " ".join(rng.sample(sents, 2)),
                     "label": label} for i in range(60)]
    rng.shuffle(records)
    write_jsonl(tmp_path / "raw" / "part0.jsonl", records)
    docs = tmp_path / "docs"
    assert run_stage(INGEST, plan_ingest(tmp_path / "raw"), docs, IngestConfig(),
                     progress=False).ok
    tok = _train(tmp_path, False)
    res = CliRunner().invoke(classify_command, [
        "--data", str(docs), "--tokenizer", str(tok), "--output", str(tmp_path / "cls"),
        *(x for kv in ("max_steps=40", "lr=3e-3", "micro_batch_size=16", "max_length=64",
                       "tensorboard=false") for x in ("--set", kv))])
    assert res.exit_code == 0, res.output
    assert "macro-F1" in res.output
    report = json.loads((tmp_path / "cls" / "classify_report.json").read_text())
    assert report["rows"] == 24 and report["labels"] == ["a", "b"]
    assert report["accuracy"] >= 0.9, report
    assert sum(map(sum, report["confusion_matrix"])) == 24
    # a finished run resumes to the same end: nothing is trained again
    again = train_classifier(ClassifyConfig(max_steps=40, max_length=64, tensorboard=False),
                             docs, tok, tmp_path / "cls")
    assert again.resumed_from == 40 and not again.losses


def test_classification_metrics() -> None:
    m = classification_metrics(np.array([0, 0, 1, 2]), np.array([0, 1, 1, 1]), 3)
    assert m["accuracy"] == 0.5
    assert m["confusion_matrix"] == [[1, 1, 0], [0, 1, 0], [0, 1, 0]]
    assert m["macro_f1"] == pytest.approx((2 / 3 + 0.5 + 0) / 3)


def test_classifier_is_seeded_and_resumes_exactly(sft_set, tmp_path: Path) -> None:
    """From a causal-LM checkpoint the new head is drawn from ``seed``: two runs agree, and an
    interrupted run resumed from its checkpoint equals them."""
    rng = random.Random(1)
    records = [{"id": f"{label}{i}", "text": " ".join(rng.sample(
                    [s.replace("{", "").replace("}", "") for c in topic.clusters for s in c], 2)),
                "label": label}
               for label, topic in (("a", EN_TOPICS[0]), ("b", EN_TOPICS[1])) for i in range(10)]
    write_jsonl(tmp_path / "raw" / "part0.jsonl", records)
    docs = tmp_path / "docs"
    assert run_stage(INGEST, plan_ingest(tmp_path / "raw"), docs, IngestConfig(),
                     progress=False).ok
    cfg = ClassifyConfig(max_steps=2, max_length=32, micro_batch_size=4, tensorboard=False)
    runs = [train_classifier(cfg, docs, sft_set["tokenizer"], tmp_path / f"c{k}",
                             init=sft_set["base"]) for k in range(2)]
    assert runs[0].losses == runs[1].losses
    other = train_classifier(cfg.model_copy(update={"seed": 1}), docs, sft_set["tokenizer"],
                             tmp_path / "c2", init=sft_set["base"])
    assert other.losses != runs[0].losses
    # stopped after 1 step and run again: it resumes and reproduces the uninterrupted run
    first = train_classifier(cfg, docs, sft_set["tokenizer"], tmp_path / "c3",
                             init=sft_set["base"], stop_after=1)
    second = train_classifier(cfg, docs, sft_set["tokenizer"], tmp_path / "c3",
                              init=sft_set["base"])
    assert second.resumed_from == 1
    assert np.allclose(first.losses + second.losses, runs[0].losses, rtol=1e-5, atol=1e-6)
    assert second.report == runs[0].report
