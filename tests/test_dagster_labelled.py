"""The labelled assets on the demo's labelled set, materialized through the UI's Definitions:
demo files -> ingest -> dedup / filter / PII / split -> token shards. Every check passes, the
broken rows and planted duplicates land where ``labelled_demo.json`` says, the token shards
load for TRL, and a tampered token shard fails its check."""

from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path

import dagster as dg
import pyarrow as pa
import pytest

from curate.labelled.demo import MANIFEST_NAME
from curate.labelled.tokenize_chat import INDEX_DIR, trl_dataset
from curate.pii import PiiConfig
from curate.tokenizer import TokenizerConfig, load_tokenizer, train_tokenizer
from dagster_project.assets.labelled import (
    CurateRunConfig,
    mask_covers_assistant_only,
    mask_problems,
    pair_problems,
    redact_examples,
)
from schemas import PREFERENCE_TOKENS, SFT_TOKENS, read_shard, shard_paths, write_shard
from schemas.verify import find_stage_dirs, verify_stage
from tests.test_dagster_dedup import Chain

PNG = b"\x89PNG\r\n\x1a\n"
CURATE = ["labelled_demo_files", "sft_examples", "preference_examples", "curated_sft",
          "curated_preferences"]
TOKENS = ["sft_token_shards", "preference_token_shards"]


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    root = tmp_path_factory.mktemp("labelled") / "data"
    with dg.instance_for_test() as instance:
        c = Chain(root, instance)
        c.must("curate", CURATE)
        # the tokenizer asset trains on the web crawl; here a small one on the rendered
        # conversations (the chat markers are special tokens either way)
        train_tokenizer([root / "labelled" / "sft_dedup" / "view"], root / "tokenizer",
                        TokenizerConfig(vocab_size=1000))
        c.must("tokens", TOKENS)
        yield c


def _meta(chain, label: str, node: str) -> dict:
    (mat,) = chain.results[label].asset_materializations_for_node(node)
    return {k: v.value for k, v in mat.metadata.items()}


def _planted(root: Path) -> dict:
    return json.loads((root / "raw_labelled" / MANIFEST_NAME).read_text())


def _rows(stage_dir: Path, rejected: bool = False) -> list[dict]:
    return [r for p in shard_paths(stage_dir, rejected=rejected)
            for r in read_shard(p).to_pylist()]


def _ids(stage_dir: Path, rejected: bool = False) -> set[str]:
    return {r["id"] for r in _rows(stage_dir, rejected)}


def test_every_check_passes_and_every_folder_verifies(chain):
    evaluations = [(e.asset_key.to_user_string(), e.check_name, e.passed)
                   for label in ("curate", "tokens")
                   for e in chain.results[label].get_asset_check_evaluations()]
    assert all(passed for _, _, passed in evaluations), evaluations
    contract = {(a, c) for a in ("sft_examples", "preference_examples", "curated_sft",
                                 "curated_preferences", *TOKENS)
                for c in ("schema", "rows_conserved")}
    assert {(a, c) for a, c, _ in evaluations} == contract | {
        ("sft_token_shards", "mask_covers_assistant_only"),
        ("preference_token_shards", "pairs_consistent")}
    folders = find_stage_dirs(chain.root / "labelled")
    assert len(folders) == 18
    assert all(verify_stage(f).ok for f in folders)


def test_broken_rows_are_rejected_as_the_manifest_says(chain):
    files = _planted(chain.root)["files"]
    for kind in ("sft", "preference"):
        stage = chain.root / "labelled" / f"{kind}_ingest"
        for rel, info in files.items():
            if info["kind"] != kind:
                continue
            shard = f"part-{Path(rel).name}.arrow"
            kept = read_shard(stage / shard)
            assert kept.num_rows == info["valid"], rel
            rejected = [r["reject_reason"] for r in _rows(stage, rejected=True)
                        if r["source_path"] == Path(rel).name]
            assert len(rejected) == info["rows"] - info["valid"], rel
            assert {r: rejected.count(r) for r in rejected} == info["rejects"], rel
        meta = _meta(chain, "curate", f"{kind}_examples")
        assert meta["rows_in"] == sum(i["rows"] for i in files.values() if i["kind"] == kind)
        assert meta["rows_in"] == meta["rows_kept"] + meta["rows_rejected"]
        assert sum(meta["reject_reasons"].values()) == meta["rows_rejected"]
        assert sum(meta["turns_histogram"].values()) == meta["rows_kept"]
    assert set(_meta(chain, "curate", "sft_examples")["turns_histogram"]) >= {"2", "4"}


def test_planted_duplicates_and_filtered_examples_are_removed(chain):
    planted = _planted(chain.root)["planted"]
    labelled = chain.root / "labelled"
    for kind, pairs in (("sft", {"exact_duplicate": planted["sft_exact_duplicates"],
                                 "near_duplicate": planted["sft_near_duplicates"]}),
                        ("preference", {"exact_duplicate":
                                        planted["preference_exact_duplicates"]})):
        removed = {r["id"]: r for r in _rows(labelled / f"{kind}_dedup" / kind, rejected=True)}
        assert len(removed) == sum(len(p) for p in pairs.values())
        for reason, members in pairs.items():
            for pair in members:
                (gone,) = set(pair) & set(removed)
                (keeper,) = set(pair) - {gone}
                assert removed[gone]["reject_reason"] == reason, gone
                assert removed[gone]["duplicate_of"] == keeper
    filtered = {r["id"]: r["reject_reason"] for r in _rows(labelled / "sft_filter",
                                                            rejected=True)}
    assert filtered == {**dict.fromkeys(planted["non_english"], "language_not_allowed"),
                        **dict.fromkeys(planted["repetitive"], "repetitive_response")}
    assert not shard_paths(labelled / "preference_filter", rejected=True)


def test_curated_metadata_is_the_funnel_and_the_split(chain):
    planted = _planted(chain.root)["planted"]
    meta = _meta(chain, "curate", "curated_sft")
    ingested = _meta(chain, "curate", "sft_examples")["rows_kept"]
    removed = {"exact_duplicate": 4, "near_duplicate": 4,
               "language_not_allowed": len(planted["non_english"]), "repetitive_response": 1}
    assert meta["removed_by_reason"] == removed
    assert meta["rows_in"] == ingested
    assert meta["rows_kept"] == ingested - sum(removed.values()) == meta["train"] + \
        meta["validation"]
    assert 0.03 < meta["validation"] / meta["rows_kept"] < 0.2  # validation_fraction 0.1
    funnel = meta["funnel"]
    for step in ("sft_dedup", "sft_filter", "sft_pii", "sft_split"):
        assert f"| {step} |" in funnel
    assert "no PII found" in funnel and f"train {meta['train']}" in funnel
    split = _rows(chain.root / "labelled" / "sft_split")
    assert {r["split"] for r in split} == {"train", "validation"}
    assert CurateRunConfig().split.validation_fraction == 0.1


def test_demo_set_has_no_pii_and_the_pii_step_changes_nothing(chain):
    labelled = chain.root / "labelled"
    for kind, parts in (("sft", ("messages",)), ("preference", ("prompt", "chosen",
                                                                 "rejected"))):
        meta = _meta(chain, "curate", f"curated_{'sft' if kind == 'sft' else 'preferences'}")
        assert set(meta["pii_redactions"].values()) == {0}
        before = {r["id"]: [r[p] for p in parts] for r in _rows(labelled / f"{kind}_filter")}
        after = {r["id"]: [r[p] for p in parts] for r in _rows(labelled / f"{kind}_pii")}
        assert after == before
        assert {r["pii_redactions"] for r in _rows(labelled / f"{kind}_pii")} == {0}


def _chat(user: str, answer: str) -> list[dict]:
    return [{"role": "user", "content": user}, {"role": "assistant", "content": answer}]


def test_redact_examples_redacts_every_turn_and_counts_per_example():
    table = pa.table({
        "id": ["a", "b"],
        "messages": pa.array([_chat("Mail me at jane.doe@example.org", "Call +44 20 7946 0958."),
                              _chat("Name a river bird.", "The heron.")]),
        "source": ["s", "s"]})
    out = redact_examples(table, PiiConfig(), "sft_pii")
    rows = {r["id"]: r for r in out.kept.to_pylist()}
    assert rows["a"]["messages"] == _chat("Mail me at <EMAIL>", "Call <PHONE>.")
    assert rows["a"]["pii_counts"] == {"email": 1, "phone": 1, "ip": 0, "credit_card": 0,
                                       "iban": 0}
    assert rows["a"]["pii_redactions"] == 2
    assert rows["b"]["messages"] == table.column("messages")[1].as_py()
    assert rows["b"]["pii_redactions"] == 0

    dropped = redact_examples(table, PiiConfig(drop_documents_with_pii=True), "sft_pii")
    assert dropped.kept.column("id").to_pylist() == ["b"]
    (gone,) = dropped.rejected.to_pylist()
    assert gone["id"] == "a" and gone["reject_reason"] == "contains_pii"
    assert gone["reject_stage"] == "sft_pii" and gone["pii_redactions"] == 2


def test_token_shards_load_for_trl_and_decode_to_the_conversations(chain, tmp_path):
    labelled = chain.root / "labelled"
    sft = trl_dataset(labelled / "sft_tokens", "sft", cache_dir=tmp_path / "cache")
    curated = _rows(labelled / "sft_split")
    assert len(sft) == len(curated)
    assert set(sft.column_names) == {"input_ids", "assistant_masks"}
    reward = trl_dataset(labelled / "preference_tokens", "reward", cache_dir=tmp_path / "cache")
    assert len(reward) == len(_rows(labelled / "preference_split"))
    assert set(reward.column_names) == {"chosen_ids", "rejected_ids"}

    tok = load_tokenizer(chain.root / "tokenizer")
    by_id = {r["id"]: r for r in curated}
    row = read_shard(shard_paths(labelled / "sft_tokens")[0]).to_pylist()[0]
    ids, mask = row["input_ids"], row["loss_mask"]
    trained = [i for i, m in zip(ids, mask, strict=True) if m]
    replies = tok.tokenizer.decode(trained, skip_special_tokens=False)
    answers = [t["content"] for t in by_id[row["id"]]["messages"] if t["role"] == "assistant"]
    assert replies == "".join(f"{a}<|im_end|>" for a in answers)
    assert row["split"] == by_id[row["id"]]["split"]

    meta = _meta(chain, "tokens", "sft_token_shards")
    assert meta["examples"] == len(curated) and meta["dropped"] == 0
    assert meta["truncated"] == 0 and 0 < meta["trained_tokens"] < meta["tokens"]
    assert sum(meta["rows_by_split"].values()) == len(curated)
    for node in TOKENS:
        image = _meta(chain, "tokens", node)["lengths"]
        head = image.index("base64,") + len("base64,")
        assert image.startswith("![") and base64.b64decode(image[head:-1]).startswith(PNG)
    pref = _meta(chain, "tokens", "preference_token_shards")
    assert pref["tokens"] > 0 and pref["examples"] == len(reward)


def test_a_tampered_mask_fails_the_check(chain, tmp_path):
    out = tmp_path / "sft_tokens"
    shutil.copytree(chain.root / "labelled" / "sft_tokens", out)
    name = shard_paths(out)[0].name
    eot = load_tokenizer(chain.root / "tokenizer").end_of_turn_id
    im_start = load_tokenizer(chain.root / "tokenizer").special_ids["<|im_start|>"]
    assert mask_problems(out / name, out / INDEX_DIR / name, eot, (im_start,))[0] == []
    table = read_shard(out / name)
    masks = table.column("loss_mask").to_pylist()
    first = table.column("id")[0].as_py()
    masks[0] = [0] * len(masks[0])  # nothing to learn
    masks[1] = [1, *masks[1][1:]]  # the turn-start marker trained on, a run without EOT
    i = table.schema.get_field_index("loss_mask")
    tampered = table.set_column(i, "loss_mask", pa.array(masks, pa.list_(pa.uint8())))
    write_shard(tampered, out / name, SFT_TOKENS)
    problems, _ = mask_problems(out / name, out / INDEX_DIR / name, eot, (im_start,))
    second = table.column("id")[1].as_py()
    assert f"{first}: nothing to learn (loss mask all zero)" in problems
    assert any(p.startswith(f"{second}: a reply ends with id {im_start}") for p in problems)
    assert any(p.startswith(f"{second}: special id {im_start} is trained on") for p in problems)
    check = mask_covers_assistant_only(out, [name], (im_start,))
    assert not check.passed and check.metadata["problem_count"].value == len(problems)


def test_a_tampered_pair_fails_the_check(chain, tmp_path):
    stage = chain.root / "labelled" / "preference_tokens"
    shard = shard_paths(stage)[0]
    eot = load_tokenizer(chain.root / "tokenizer").end_of_turn_id
    assert pair_problems(shard, eot)[0] == []
    table = read_shard(shard)
    rejected = table.column("rejected_ids").to_pylist()
    rejected[0] = table.column("chosen_ids")[0].as_py()
    i = table.schema.get_field_index("rejected_ids")
    path = tmp_path / shard.name
    write_shard(table.set_column(i, "rejected_ids", pa.array(rejected, table.schema[i].type)),
                path, PREFERENCE_TOKENS)
    problems, _ = pair_problems(path, eot)
    row = table.column("id")[0].as_py()
    assert problems == [f"{row}: chosen_ids == rejected_ids",
                        f"{row}: rejected_input_ids != prompt_ids + rejected_ids"]


def test_a_second_run_reuses_every_shard(chain):
    result = chain.run(["sft_examples"])
    assert result.success
    (mat,) = result.asset_materializations_for_node("sft_examples")
    assert mat.metadata["recomputed_files"].value == 0
