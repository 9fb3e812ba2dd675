"""The token assets on the demo site: the dedup and curation chains (tests/test_dagster_dedup.py,
tests/test_dagster_quality.py), then the tokenizer trained on the curated (decontaminated)
documents and one token shard per WARC partition, materialized through the UI's Definitions.
Every document's tokens decode back to its text, trainers load the shards, and a shard edited
behind the index's back fails its checks."""

from __future__ import annotations

import base64
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from curate.tokenize import INDEX_DIR, TokenizeConfig
from curate.tokenizer import TokenizerConfig, load_tokenizer
from dagster_project.assets.tokens import (
    TokenizerRunConfig,
    TokenizeRunConfig,
    boundaries_consistent,
    documents_accounted,
    ids_below_vocab,
    token_checks,
)
from schemas import PRETRAIN_TOKENS, TOKEN_INDEX, read_shard, write_shard
from schemas.verify import verify_stage
from tests.test_dagster_dedup import SHARD
from tests.test_dagster_dedup import chain as dedup_chain  # noqa: F401  (a fixture)
from tests.test_dagster_quality import chain as quality_chain  # noqa: F401  (a fixture)
from train.token_data import TokenDataset

KEY = "crawl-00000.warc.gz"
CURATED = "decontaminate"
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def chain(quality_chain):  # noqa: F811  (the curation chain, extended)
    quality_chain.must("tokenizer", ["tokenizer"])
    quality_chain.must("tokens", ["tokenized_documents"], KEY)
    return quality_chain


def _meta(result, node: str) -> dict:
    (mat,) = result.asset_materializations_for_node(node)
    return mat.metadata


def _index(root: Path):
    return read_shard(root / "web" / "tokens" / INDEX_DIR / SHARD)


def test_checks_pass_and_shards_load(chain):
    evaluations = [(e.asset_key.to_user_string(), e.check_name, e.passed)
                   for label in ("tokenizer", "tokens")
                   for e in chain.results[label].get_asset_check_evaluations()]
    assert all(passed for _, _, passed in evaluations), evaluations
    assert {(a, c) for a, c, _ in evaluations} == {
        ("tokenizer", "round_trips"), ("tokenized_documents", "schema"),
        ("tokenized_documents", "rows_conserved"), ("tokenized_documents", "documents_accounted"),
        ("tokenized_documents", "ids_below_vocab"),
        ("tokenized_documents", "boundaries_consistent")}

    tokens = chain.root / "web" / "tokens"
    assert verify_stage(tokens).ok
    dataset = TokenDataset(tokens)
    meta = _meta(chain.results["tokens"], "tokenized_documents")
    assert len(dataset) == meta["rows"].value
    assert dataset.meta["seq_len"] == 256 == meta["seq_len"].value
    assert dataset.meta["vocab_size"] == meta["vocab_size"].value <= 2048
    lengths = [len(dataset.row_ids(i)) for i in range(len(dataset))]
    assert all(n == 256 for n in lengths[:-1]) and 0 < lengths[-1] <= 256
    assert sum(lengths) == meta["tokens"].value


def test_every_document_decodes_to_its_curated_text(chain):
    tok = load_tokenizer(chain.root / "tokenizer")
    dataset = TokenDataset(chain.root / "web" / "tokens")
    stream = np.concatenate([dataset.row_ids(i) for i in range(len(dataset))])
    documents = read_shard(chain.root / "web" / CURATED / SHARD, columns=["id", "text"])
    texts = dict(zip(documents.column("id").to_pylist(), documents.column("text").to_pylist(),
                     strict=True))
    index = _index(chain.root).to_pylist()
    assert sorted(e["doc_id"] for e in index) == sorted(texts)
    for entry in index:
        start = entry["row"] * 256 + entry["offset"]
        ids = stream[start:start + entry["length"]]
        assert ids[-1] == tok.eos_id
        assert tok.tokenizer.decode(ids[:-1].tolist(), skip_special_tokens=False) \
            == texts[entry["doc_id"]], entry["doc_id"]


def test_metadata_reports_the_tokenizer_and_the_tokens(chain):
    tok_meta = _meta(chain.results["tokenizer"], "tokenizer")
    assert tok_meta["special_ids"].value == {"bos": 0, "eos": 1, "pad": 2, "im_start": 3,
                                             "im_end": 4}
    assert 256 + 5 < tok_meta["vocab_size"].value <= 2048
    assert tok_meta["training_docs"].value == read_shard(
        chain.root / "web" / CURATED / SHARD).num_rows
    assert tok_meta["training_chars"].value > 0 and tok_meta["chars_per_token"].value > 1.5
    assert tok_meta["retrained"].value is True
    examples = tok_meta["examples"].value
    assert "chars ->" in examples and "quick brown foxes" in examples and " over|" in examples

    meta = _meta(chain.results["tokens"], "tokenized_documents")
    index = _index(chain.root)
    assert meta["tokens"].value == sum(index.column("length").to_pylist())
    assert meta["documents"].value == index.num_rows == meta["rows_in"].value
    assert meta["truncated"].value == 0
    assert sum(meta["tokens_per_source"].value.values()) == meta["tokens"].value
    assert 0 < meta["fill"].value <= 1
    image = meta["document_lengths"].value
    prefix = "![document lengths in tokens](data:image/png;base64,"
    assert image.startswith(prefix) and image.endswith(")")
    assert base64.b64decode(image[len(prefix):-1]).startswith(PNG)


def _broken_copy(chain, tmp_path: Path) -> Path:
    out = tmp_path / "tokens"
    shutil.copytree(chain.root / "web" / "tokens", out)
    return out


def test_a_dropped_document_fails_documents_accounted(chain, tmp_path):
    out = _broken_copy(chain, tmp_path)
    documents = chain.root / "web" / CURATED / SHARD
    meta = TokenDataset(out).meta
    assert all(c.passed for c in token_checks(documents, out, SHARD, meta))

    index = read_shard(out / INDEX_DIR / SHARD)
    dropped = index.column("doc_id")[1].as_py()
    write_shard(pa.concat_tables([index.slice(0, 1), index.slice(2)]), out / INDEX_DIR / SHARD,
                TOKEN_INDEX)
    accounted = documents_accounted(documents, out / INDEX_DIR / SHARD)
    assert not accounted.passed
    assert accounted.metadata["missing"].value == 1
    assert dropped in accounted.metadata["examples"].value[0]
    # the stream still holds its tokens, so the index no longer tiles it
    boundaries = boundaries_consistent(out / SHARD, out / INDEX_DIR / SHARD, meta["eos_id"])
    assert not boundaries.passed and boundaries.metadata["lengths_tile_stream"].value is False


def test_tampered_rows_fail_boundaries_and_vocab(chain, tmp_path):
    out = _broken_copy(chain, tmp_path)
    meta = TokenDataset(out).meta
    table = read_shard(out / SHARD)
    docs = table.column("segment_doc_ids").to_pylist()
    docs[0] = ["someone-else", *docs[0][1:]]
    write_shard(table.set_column(2, "segment_doc_ids", pa.array(docs, pa.list_(pa.string()))),
                out / SHARD, PRETRAIN_TOKENS)
    boundaries = boundaries_consistent(out / SHARD, out / INDEX_DIR / SHARD, meta["eos_id"])
    assert not boundaries.passed and boundaries.metadata["mismatched_segments"].value == 1
    assert boundaries.metadata["lengths_tile_stream"].value is True

    wrong_eos = boundaries_consistent(out / SHARD, out / INDEX_DIR / SHARD, meta["eos_id"] + 1)
    assert wrong_eos.metadata["documents_end_with_eos"].value is False

    vocab = ids_below_vocab(out / SHARD, meta["vocab_size"])
    assert vocab.passed
    small = ids_below_vocab(out / SHARD, 100)
    assert not small.passed and small.metadata["max_id"].value >= 100


def test_missing_tokenizer_is_a_clear_failure(chain):
    bad = {"ops": {"tokenized_documents": {"config": {"tokenizer": "nowhere"}}}}
    result = chain.run(["tokenized_documents"], KEY, run_config=bad)
    assert not result.success
    messages = " ".join(str(e.event_specific_data.error.message) for e in result.all_events
                        if e.is_step_failure)
    assert "nowhere has no tokenizer.json" in messages


def test_rerun_reuses_the_tokenizer_and_the_shard(chain):
    sha = (chain.root / "tokenizer" / "tokenizer.json").read_bytes()
    tok_meta = _meta(chain.must("tokenizer again", ["tokenizer"]), "tokenizer")
    assert tok_meta["retrained"].value is False
    assert (chain.root / "tokenizer" / "tokenizer.json").read_bytes() == sha
    again = chain.must("tokens again", ["tokenized_documents"], KEY)
    assert _meta(again, "tokenized_documents")["recomputed"].value is False
    assert all(e.passed for e in again.get_asset_check_evaluations())


def test_launchpad_configs_are_the_library_configs():
    assert set(TokenizerRunConfig.model_fields) == set(TokenizerConfig.model_fields)
    assert set(TokenizeRunConfig.model_fields) == set(TokenizeConfig.model_fields)
    tokenizer = TokenizerRunConfig().model_dump()
    assert {**tokenizer, "vocab_size": 8192} == TokenizerConfig().model_dump()
    assert tokenizer["vocab_size"] == 2048
    tokenize = TokenizeRunConfig().model_dump()
    assert tokenize["tokenizer"] is None and tokenize["seq_len"] == 256
    assert {**tokenize, "tokenizer": "t", "seq_len": 2048} == TokenizeConfig(
        tokenizer="t").model_dump()
