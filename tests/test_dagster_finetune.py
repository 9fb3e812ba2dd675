"""The fine-tuning and alignment assets through Dagster Pipes on a tiny data root: an SFT model
from a base checkpoint, a topic classifier from article URLs, a reward model and a DPO model
with its comparison against the SFT model; plus the metrics tail that streams training logs."""

from __future__ import annotations

import json
import random
import threading
from pathlib import Path

import dagster as dg
import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from curate.demo_text import EN_TOPICS
from curate.ingest import INGEST, IngestConfig, plan_ingest
from curate.labelled import demo
from curate.labelled.tokenize_chat import (
    PreferenceTokenizeConfig,
    SftTokenizeConfig,
    run_preference_tokenize,
    run_sft_tokenize,
)
from curate.runner import run_stage
from dagster_project.assets.alignment import ALIGNED_CHECK, aligned_prefers_chosen
from dagster_project.assets.finetune import TopicLabelConfig, label_topics
from dagster_project.assets.training import TRAINING_ASSETS
from dagster_project.resources import DataRoot
from dagster_project.train_pipes import MetricsTail, format_record
from schemas import read_manifest, read_shard, shard_paths
from tests.conftest import write_jsonl
from tests.test_tokenize_chat import A, U, _train, labelled_stage
from train.models import build_model

NEW = ["sft_model", "classifier_model", "reward_model", "aligned_model"]
TOPICS = EN_TOPICS[:3]


def _articles(raw: Path, out: Path) -> Path:
    """Curated-looking documents: articles of three topics (URL names the topic) and pages
    without a topic in their URL."""
    rng = random.Random(0)
    records = []
    for topic in TOPICS:
        sents = [s.replace("{", "").replace("}", "") for c in topic.clusters for s in c]
        records += [{"id": f"{topic.slug}-{i}", "text": " ".join(rng.sample(sents, 2)),
                     "url": f"https://ex.org/articles/{topic.slug}-{i:02d}.html"}
                    for i in range(40)]
    records += [{"id": f"other-{i}", "text": "Contact us. About this site.",
                 "url": f"https://ex.org/about-{i}.html"} for i in range(3)]
    rng.shuffle(records)
    write_jsonl(raw / "part0.jsonl", records)
    assert run_stage(INGEST, plan_ingest(raw), out, IngestConfig(), progress=False).ok
    return out


@pytest.fixture(scope="module")
def tuned(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("finetune")
    root = tmp / "data"
    tok = _train(tmp, False)
    (root / "tokenizer").parent.mkdir(parents=True)
    (root / "tokenizer").symlink_to(tok)
    rng = random.Random(0)
    pool = demo.articles(0)
    sft = [{"id": e["id"], "messages": e["turns"],
            "split": "validation" if i % 5 == 0 else "train"}
           for i, e in enumerate(demo.sft_examples(pool, rng))]
    assert run_sft_tokenize(labelled_stage(tmp, "sft", sft), root / "labelled" / "sft_tokens",
                            SftTokenizeConfig(tokenizer=str(tok), max_length=512)).ok
    prefs = [{"id": e["id"], "prompt": [U(e["prompt"])], "chosen": [A(e["chosen"])],
              "rejected": [A(e["rejected"])], "split": "validation" if i % 6 == 0 else "train"}
             for i, e in enumerate(demo.preference_examples(pool, rng))]
    assert run_preference_tokenize(labelled_stage(tmp, "preference", prefs),
                                   root / "labelled" / "preference_tokens",
                                   PreferenceTokenizeConfig(tokenizer=str(tok),
                                                            max_length=512)).ok
    vocab = json.loads((root / "labelled" / "sft_tokens" / "_tokenizer.json").read_text())
    build_model("tiny", vocab["vocab_size"], 512).save_pretrained(
        str(root / "models" / "base" / "model"))
    _articles(tmp / "raw_articles", root / "web" / "decontaminate")
    run_config = {"ops": {
        "sft_model": {"config": {"max_steps": 10, "generations": 1, "max_new_tokens": 8}},
        "classifier_model": {"config": {"max_steps": 24, "max_length": 64,
                                        "micro_batch_size": 16}},
        "reward_model": {"config": {"epochs": 2}},
        "aligned_model": {"config": {"epochs": 2, "loss": "ipo"}}}}
    with dg.instance_for_test() as instance:
        result = dg.materialize(
            TRAINING_ASSETS, selection=NEW, instance=instance, run_config=run_config,
            resources={"data": DataRoot(root=str(root))}, raise_on_error=False)
        yield root, result, instance


def _meta(result, node: str) -> dict:
    (mat,) = result.asset_materializations_for_node(node)
    return {k: v.value for k, v in mat.metadata.items()}


def test_finetune_and_alignment_assets_materialize(tuned):
    root, result, instance = tuned
    failures = [str(e.event_specific_data.error.message) for e in result.all_events
                if e.is_step_failure]
    assert result.success, failures

    sft = _meta(result, "sft_model")
    assert sft["steps"] == 10 and sft["lora"] is False
    assert sft["heldout_loss_after"] < sft["heldout_loss_before"]
    assert "| prompt | reply | reference |" in sft["generations"]
    assert (root / "models" / "sft" / "model" / "config.json").is_file()

    cls = _meta(result, "classifier_model")
    assert cls["labels"] == sorted(t.slug for t in TOPICS)
    assert cls["labelled_documents"] == 120 and cls["documents_without_topic"] == 3
    assert cls["accuracy"] > 1 / 3 and 0 <= cls["macro_f1"] <= 1  # above chance
    assert cls["confusion_matrix"].count("\n") == 1 + len(TOPICS)

    rm = _meta(result, "reward_model")
    assert rm["heldout_pairs"] > 0 and rm["heldout_accuracy"] >= 0.5
    assert rm["final_loss"] < rm["first_loss"]

    aligned = _meta(result, "aligned_model")
    assert aligned["loss"] == "ipo"
    assert aligned["heldout_logp_margin_after"] > aligned["heldout_logp_margin_before"]
    (check,) = result.get_asset_check_evaluations()
    assert check.check_name == ALIGNED_CHECK and check.passed, check.metadata
    assert {"sft_logp_margin", "aligned_logp_margin", "sft_accuracy",
            "aligned_accuracy"} <= set(check.metadata)

    # the trainers' metrics reached the run's log through the Pipes wrapper's tail
    logs = [e.user_message for e in instance.all_logs(result.run_id)]
    for line in ("train step 5: loss", "eval validation step 10: loss",
                 "eval heldout step 0: reward_margin", "eval classify step 24: accuracy"):
        assert any(line in m for m in logs), line


def test_topic_labels_conserve_rows(tuned):
    root, _, _ = tuned
    stage = root / "web" / "topic_labels"
    t = read_manifest(stage).totals()
    assert (t["rows_in"], t["rows_kept"], t["rows_rejected"]) == (123, 120, 3)
    (rejected,) = shard_paths(stage, rejected=True)
    assert set(read_shard(rejected)["reject_reason"].to_pylist()) == {"no_topic_in_url"}
    kept = read_shard(shard_paths(stage)[0]).to_pylist()
    assert all(r["id"].startswith(r["label"] + "-")
               and f"/articles/{r['label']}-" in r["url"] for r in kept)
    assert {r["label"] for r in kept} == {t.slug for t in TOPICS}


def test_label_topics_reads_the_url_pattern():
    import pyarrow as pa

    table = pa.table({"id": ["a", "b", "c"], "text": ["x", "y", "z"],
                      "url": ["https://s/articles/bread-baking-03.html", None,
                              "https://s/topics/bread-baking.html"],
                      "source": ["s"] * 3})
    out = label_topics(table, TopicLabelConfig(), "topic_labels")
    assert out.kept["label"].to_pylist() == ["bread-baking"]
    assert out.rejected["id"].to_pylist() == ["b", "c"] and out.rows_in == 3


def test_aligned_check_compares_both_models():
    report = {"before": {"logp_margin": -3.0, "logp_accuracy": 0.4, "pairs": 10},
              "after": {"logp_margin": -2.0, "logp_accuracy": 0.5, "pairs": 10}}
    ok = aligned_prefers_chosen(report, 0.0)
    assert ok.passed and ok.metadata["sft_logp_margin"].value == -3.0
    worse = {"before": report["after"], "after": report["before"]}
    assert not aligned_prefers_chosen(worse, 0.0).passed
    assert aligned_prefers_chosen(worse, 1.0).passed  # within the tolerance
    assert not aligned_prefers_chosen({"before": {}, "after": {}}, 1.0).passed


def test_metrics_tail_streams_lines_while_they_are_written(tmp_path: Path):
    """Each complete line is emitted while the writer is still going (not at the end); a
    half-written line waits; training records are thinned to every N-th step plus the last."""
    path = tmp_path / "metrics.jsonl"
    seen: list[str] = []
    got = threading.Event()

    def emit(line: str) -> None:
        seen.append(line)
        got.set()

    with MetricsTail(path, emit, every=2, poll_s=0.01) as tail, path.open("a") as f:
        f.write(json.dumps({"kind": "eval/heldout", "step": 0, "loss": 5.0}) + "\n")
        f.flush()
        assert got.wait(30), "the eval record was not streamed while the run went on"
        assert seen == ["eval heldout step 0: loss 5"]
        for step in (1, 2, 3):
            f.write(json.dumps({"kind": "train", "step": step, "loss": 4.0 - step}) + "\n")
        f.write('{"kind": "train", "step": 4, "lo')  # still being written
        f.flush()
        tail.poll()
        assert seen[1:] == ["train step 2: loss 2"]
        f.write('ss": 0.5}\n')
        f.write(json.dumps({"kind": "train", "step": 5, "loss": 0.25}) + "\n")
    assert seen[1:] == ["train step 2: loss 2", "train step 4: loss 0.5",
                        "train step 5: loss 0.25"]  # step 5: the last one, logged at the end
    assert tail.emitted == 4


def test_metrics_tail_skips_history_and_follows_a_rewrite(tmp_path: Path):
    path = tmp_path / "metrics.jsonl"
    old = [{"kind": "eval/x", "step": s, "loss": 1.0} for s in range(3)]
    path.write_text("".join(json.dumps(r) + "\n" for r in old))
    seen: list[str] = []
    tail = MetricsTail(path, seen.append)  # not started: polled by hand
    tail.poll()
    assert seen == []  # what was there before the run started is history
    path.write_text(json.dumps({"kind": "eval/x", "step": 7, "loss": 2.0}) + "\n")  # shrank
    tail.poll()
    assert seen == ["eval x step 7: loss 2"]


def test_format_record_keeps_numbers_only():
    line = format_record({"kind": "train", "step": 3, "loss": 1.23456, "grad_norm": None,
                          "lr": 0.001, "flag": True, "name": "x"})
    assert line == "train step 3: loss 1.235, lr 0.001"
