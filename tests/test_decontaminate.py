"""Decontamination: the n-gram kernel equals its reference, a planted 13-gram is caught and
12 shared words are not, remove vs flag, the report, eval sets from JSONL / Parquet / saved
Hugging Face datasets, resume against a rebuilt index, the check, and the commands."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from curate.decontaminate import (
    CONTAMINATED,
    DECONTAMINATE,
    REPORT_FILE,
    DecontamConfig,
    EvalSource,
    IndexConfig,
    build_index,
    decontaminate_table,
    decontamination_report,
    load_index,
    match_documents,
    ngram_hashes,
    ngram_hashes_reference,
    plan_decontaminate,
    uncaught_contamination,
)
from curate.dedup.normalize import normalize
from curate.ingest import INGEST, IngestConfig, plan_ingest
from curate.pii_decontam_cli import decontam
from curate.runner import run_stage
from schemas import DOCUMENTS, REJECTED, read_shard, validate_table, verify_stage

from .conftest import write_jsonl

EVAL_WORDS = [f"ev{i}" for i in range(4000)]
DOC_WORDS = [f"doc{i}" for i in range(4000)]


def _words(rng: random.Random, vocab: list[str], n: int) -> list[str]:
    return [rng.choice(vocab) for _ in range(n)]


def eval_items(seed: int = 0, count: int = 30) -> list[dict]:
    rng = random.Random(seed)
    return [{"id": f"q{i}", "question": " ".join(_words(rng, EVAL_WORDS, 40)),
             "answer": " ".join(_words(rng, EVAL_WORDS, 3)), "score": i}
            for i in range(count)]


def filler(rng: random.Random, n: int = 60) -> str:
    return " ".join(_words(rng, DOC_WORDS, n))


def planted(rng: random.Random, item: dict, k: int, start: int = 5) -> str:
    """A document holding ``k`` consecutive words of the item's question."""
    words = item["question"].split()[start:start + k]
    return f"{filler(rng)} {' '.join(words)} {filler(rng)}"


def test_kernel_equals_reference():
    rng = random.Random(1)
    texts = [filler(rng, rng.randrange(0, 40)) for _ in range(30)] + ["", "one", "é ü 漢 字"]
    norm = normalize(pa.array(texts))
    for n in (1, 3, 13):
        hashes, starts = ngram_hashes(norm, n)
        for d, text in enumerate(norm.to_pylist()):
            assert hashes[starts[d]:starts[d + 1]].tolist() == ngram_hashes_reference(text, n)


@pytest.fixture
def index_dir(tmp_path) -> Path:
    write_jsonl(tmp_path / "evals" / "qa.jsonl", eval_items())
    build_index([tmp_path / "evals" / "qa.jsonl"], tmp_path / "index")
    return tmp_path / "index"


def _table(texts: list[str]) -> pa.Table:
    n = len(texts)
    return pa.table({"id": [f"d{i}" for i in range(n)], "text": texts,
                     "url": pa.nulls(n, pa.string()), "source": ["t"] * n})


def test_13_words_are_caught_12_are_not(index_dir):
    items, rng = eval_items(), random.Random(2)
    index = load_index(index_dir)
    assert index.n == 13
    texts = [planted(rng, items[3], 13), planted(rng, items[3], 12),
             planted(rng, items[7], 12, start=0) + " " + planted(rng, items[7], 12, start=20),
             planted(rng, items[9], 20), filler(rng)]
    m = match_documents(pa.array(texts), index)
    assert m.ngrams.tolist() == [1, 0, 0, 8, 0]
    assert m.items[m.item_offsets[0]:m.item_offsets[1]].tolist() == [3]
    assert m.items[m.item_offsets[3]:m.item_offsets[4]].tolist() == [9]


def test_case_punctuation_and_spacing_do_not_hide_a_match(index_dir):
    words = eval_items()[4]["question"].split()[:13]
    variants = [" ".join(w.upper() for w in words),
                ", ".join(words) + "!",
                "\n\n".join(f"({w})" for w in words),
                "-".join(words)]
    m = match_documents(pa.array(variants), load_index(index_dir))
    assert (m.ngrams == 1).all()


def test_remove_and_flag(index_dir):
    items, rng = eval_items(), random.Random(3)
    texts = [filler(rng), planted(rng, items[0], 15), planted(rng, items[1], 12),
             planted(rng, items[2], 13) + " " + planted(rng, items[5], 13)]
    table, index = _table(texts), load_index(index_dir)
    removed = decontaminate_table(table, index, DecontamConfig(index=str(index_dir)))
    assert removed.rows_in == removed.kept.num_rows + removed.rejected.num_rows == 4
    assert removed.kept.column("id").to_pylist() == ["d0", "d2"]
    assert removed.kept.column_names == table.column_names, "kept rows are unchanged"
    rej = removed.rejected
    assert rej.column("reject_reason").to_pylist() == [CONTAMINATED] * 2
    assert rej.column("contamination_hits").to_pylist() == [["qa:q0"], ["qa:q2", "qa:q5"]]
    assert rej.column("contamination_ngrams").to_pylist() == [3, 2]
    assert rej.column("reject_detail").to_pylist()[1] == (
        "2 matching 13-grams with 2 eval items: qa:q2, qa:q5")
    validate_table(rej, REJECTED)

    flagged = decontaminate_table(table, index, DecontamConfig(index=str(index_dir),
                                                               mode="flag"))
    kept = flagged.kept
    assert flagged.rejected.num_rows == 0 and kept.num_rows == 4
    assert kept.column(CONTAMINATED).to_pylist() == [False, True, False, True]
    assert kept.column("contamination_hits").to_pylist() == [[], ["qa:q0"], [], ["qa:q2",
                                                                                  "qa:q5"]]
    validate_table(kept, DOCUMENTS)

    strict = decontaminate_table(table, index, DecontamConfig(index=str(index_dir),
                                                              min_ngram_hits=3))
    assert strict.rejected.column("id").to_pylist() == ["d1"]


def test_item_ids_fields_and_nested_items(tmp_path):
    rng = random.Random(4)
    stem = " ".join(_words(rng, EVAL_WORDS, 20))
    choice = " ".join(_words(rng, EVAL_WORDS, 14))
    answer = " ".join(_words(rng, EVAL_WORDS, 14))
    write_jsonl(tmp_path / "arc.jsonl", [
        {"task_id": "t-1", "question": {"stem": stem, "choices": [{"text": choice, "label": "A"}]},
         "answerKey": answer},
        {"question": {"stem": "too short to index", "choices": []}}])
    info = build_index([f"arc={tmp_path / 'arc.jsonl'}"], tmp_path / "i1")
    assert info.meta["counts"]["items"] == 2 and info.meta["counts"]["items_without_ngrams"] == 1
    index = load_index(tmp_path / "i1")
    assert index.items.column("key").to_pylist() == ["arc:t-1", "arc:1"]
    assert index.items.column("fields").to_pylist()[0] == [
        "answerKey", "question.choices.label", "question.choices.text", "question.stem"]
    docs = pa.array([f"x {stem} y", f"x {choice} y", f"x {answer} y"])
    assert match_documents(docs, index).ngrams.tolist() == [8, 2, 2]
    only_stem = IndexConfig(fields=["question.stem"])
    build_index([EvalSource("arc", tmp_path / "arc.jsonl")], tmp_path / "i2", only_stem)
    assert match_documents(docs, load_index(tmp_path / "i2")).ngrams.tolist() == [8, 0, 0]
    with pytest.raises(ValueError, match="no item has the field"):
        build_index([tmp_path / "arc.jsonl"], tmp_path / "i3", IndexConfig(fields=["prompt"]))


def test_parquet_and_saved_hf_datasets_as_eval_sets(tmp_path):
    import datasets

    rng = random.Random(5)
    texts = [" ".join(_words(rng, EVAL_WORDS, 25)) for _ in range(6)]
    pq.write_table(pa.table({"prompt": texts[:2], "idx": [10, 11]}), tmp_path / "set.parquet")
    datasets.Dataset.from_dict({"text": texts[2:4]}).save_to_disk(str(tmp_path / "hf_single"))
    datasets.DatasetDict({
        "validation": datasets.Dataset.from_dict({"id": ["v0"], "question": [texts[4]]}),
        "test": datasets.Dataset.from_dict({"id": ["t0"], "question": [texts[5]]}),
    }).save_to_disk(str(tmp_path / "hf_dict"))
    info = build_index([tmp_path / "set.parquet", tmp_path / "hf_single",
                        f"mmlu={tmp_path / 'hf_dict'}"], tmp_path / "index")
    assert [s["name"] for s in info.meta["eval_sets"]] == [
        "set", "hf_single", "mmlu/validation", "mmlu/test"]
    index = load_index(tmp_path / "index")
    docs = pa.array([f"intro {t} outro" for t in texts] + ["nothing here"])
    m = match_documents(docs, index)
    keys = index.items.column("key").to_pylist()
    hit = [[keys[i] for i in m.items[m.item_offsets[d]:m.item_offsets[d + 1]]]
           for d in range(len(docs))]
    assert hit == [["set:10"], ["set:11"], ["hf_single:0"], ["hf_single:1"],
                   ["mmlu/validation:v0"], ["mmlu/test:t0"], []]
    build_index([f"mmlu={tmp_path / 'hf_dict'}"], tmp_path / "test_only",
                IndexConfig(split="test"))
    assert load_index(tmp_path / "test_only").items.column("key").to_pylist() == ["mmlu:t0"]


def test_an_item_in_two_sets_is_reported_for_both(tmp_path):
    item = eval_items(count=1)
    write_jsonl(tmp_path / "a.jsonl", item)
    write_jsonl(tmp_path / "b.jsonl", [{"prompt": item[0]["question"]}])
    build_index([tmp_path / "a.jsonl", tmp_path / "b.jsonl"], tmp_path / "index")
    index = load_index(tmp_path / "index")
    out = decontaminate_table(_table([planted(random.Random(9), item[0], 13)]), index,
                              DecontamConfig(index=str(tmp_path / "index")))
    assert out.rejected.column("contamination_hits").to_pylist() == [["a:q0", "b:0"]]


def test_bad_sources_are_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        build_index([tmp_path / "missing.jsonl"], tmp_path / "i")
    (tmp_path / "folder").mkdir()
    with pytest.raises(ValueError, match="not a saved Hugging Face dataset"):
        build_index([tmp_path / "folder"], tmp_path / "i")
    write_jsonl(tmp_path / "a" / "qa.jsonl", eval_items(count=1))
    write_jsonl(tmp_path / "b" / "qa.jsonl", eval_items(count=1))
    with pytest.raises(ValueError, match="two evaluation sets are named qa"):
        build_index([tmp_path / "a" / "qa.jsonl", tmp_path / "b" / "qa.jsonl"], tmp_path / "i")


def _ingest(tmp_path: Path, files: list[list[dict]]) -> Path:
    for k, records in enumerate(files):
        write_jsonl(tmp_path / "raw" / f"part{k}.jsonl", records)
    out = tmp_path / "docs"
    assert run_stage(INGEST, plan_ingest(tmp_path / "raw"), out, IngestConfig(),
                     progress=False).ok
    return out


def _corpus(seed: int = 6) -> tuple[list[list[dict]], dict[str, list[str]]]:
    """Two files; expected[doc id] = the items it contains (13+ words of them)."""
    items, rng = eval_items(), random.Random(seed)
    docs, expected = [], {}
    for i in range(40):
        docs.append({"id": f"clean{i}", "text": filler(rng)})
    for i, item in enumerate(items[:6]):
        docs.append({"id": f"hit{i}", "text": planted(rng, item, 13 + i)})
        expected[f"hit{i}"] = [f"qa:{item['id']}"]
    docs.append({"id": "near", "text": planted(rng, items[10], 12)})
    docs.append({"id": "both", "text": planted(rng, items[0], 30) + planted(rng, items[20], 13)})
    expected["both"] = ["qa:q0", "qa:q20"]
    return [docs[0::2], docs[1::2]], expected


@pytest.mark.parametrize("mode", ["remove", "flag"])
def test_stage_report_and_check(tmp_path, index_dir, mode):
    files, expected = _corpus()
    docs = _ingest(tmp_path, files)
    out = tmp_path / "decon"
    cfg = DecontamConfig(index=str(index_dir), mode=mode)
    report = run_stage(DECONTAMINATE, plan_decontaminate(docs, index_dir), out, cfg,
                       progress=False)
    total = sum(len(f) for f in files)
    assert report.ok and report.rows_in == total
    assert report.rows_rejected == (len(expected) if mode == "remove" else 0)
    assert verify_stage(out).ok
    assert uncaught_contamination(out, cfg) == {}
    result = decontamination_report(out, index_dir)
    assert result["documents_checked"] == total
    assert result["documents_contaminated"] == len(expected)
    by_item: dict[str, list[str]] = {}
    for doc, keys in expected.items():
        for key in keys:
            by_item.setdefault(key, []).append(doc)
    assert {k: v["documents"] for k, v in result["items"].items()} == {
        k: sorted(v) for k, v in by_item.items()}
    assert result["eval_sets"] == {"qa": {"items": 30, "items_hit": 7, "documents": 7}}
    if mode == "flag":  # the same run checked as if it had removed: the flagged rows passed
        assert uncaught_contamination(out, DecontamConfig(index=str(index_dir))) != {}


def test_rebuilt_index_reruns_shards_and_unchanged_skips(tmp_path):
    files, _ = _corpus()
    docs = _ingest(tmp_path, files)
    evals = tmp_path / "evals" / "qa.jsonl"
    write_jsonl(evals, eval_items()[:3])
    build_index([evals], tmp_path / "index")
    cfg = DecontamConfig(index=str(tmp_path / "index"))
    out = tmp_path / "decon"

    def run():
        return run_stage(DECONTAMINATE, plan_decontaminate(docs, tmp_path / "index"), out, cfg,
                         progress=False)

    assert run().rows_rejected == 4          # hit0, hit1, hit2 and both (q0)
    build_index([evals], tmp_path / "index")  # identical content: identical index.json
    assert run().skipped == 2
    write_jsonl(evals, eval_items())
    build_index([evals], tmp_path / "index")
    again = run()
    assert again.skipped == 0 and again.rows_rejected == 7
    assert uncaught_contamination(out, cfg) == {}


def test_commands(tmp_path):
    files, expected = _corpus()
    docs = _ingest(tmp_path, files)
    write_jsonl(tmp_path / "evals" / "qa.jsonl", eval_items())
    runner = CliRunner()
    built = runner.invoke(decontam, ["index", str(tmp_path / "evals" / "qa.jsonl"),
                                     "--output", str(tmp_path / "index"), "--set", "n=13"])
    assert built.exit_code == 0, built.output
    assert "30 items" in built.output
    ran = runner.invoke(decontam, ["run", "--input", str(docs), "--output",
                                   str(tmp_path / "decon"), "--index", str(tmp_path / "index"),
                                   "--workers", "1", "--quiet"])
    assert ran.exit_code == 0, ran.output
    assert f"rejected {len(expected)}" in ran.output and "contaminated" in ran.output
    assert "no contaminated document passed" in ran.output
    saved = json.loads((tmp_path / "decon" / REPORT_FILE).read_text())
    assert saved["documents_contaminated"] == len(expected)
    assert saved["items"]["qa:q20"]["documents"] == ["both"]
    rejected = [r for p in sorted((tmp_path / "decon" / "rejected").glob("*.arrow"))
                for r in read_shard(p).column("id").to_pylist()]
    assert sorted(rejected) == sorted(expected)
    again = runner.invoke(decontam, ["report", str(tmp_path / "decon")])
    assert again.exit_code == 0 and "items hit 7" in again.output
    missing = runner.invoke(decontam, ["run", "--input", str(docs), "--output",
                                       str(tmp_path / "x"), "--index", str(tmp_path / "nope")])
    assert missing.exit_code != 0 and "no decontamination index" in missing.output


def test_bitset_never_hides_a_hit(index_dir):
    index = load_index(index_dir)
    keys = np.asarray(index.keys)
    b = index.shift
    top = keys >> b
    assert ((index.bits[(top >> np.uint64(6)).astype(np.int64)] >> (top & np.uint64(63)))
            & np.uint64(1)).all()
