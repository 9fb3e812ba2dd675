"""Record kinds: versions, JSON export, and validation errors that say where and what."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest

from schemas import DOCUMENTS, KINDS, PRETRAIN_TOKENS, SFT, SchemaMismatch, conform, get_kind
from schemas.export import export_json, kind_to_json
from schemas.validate import empty_table, validate_table

from .conftest import PROJECT_ROOT

EXPECTED_KINDS = {"minhash_signatures", "dup_clusters", "token_index",
                  "documents", "rejected", "sft", "preference", "pretrain_tokens",
                  "sft_tokens", "preference_tokens"}


def docs(**overrides) -> pa.Table:
    data = {"id": ["a", "b"], "text": ["x", "y"], "url": [None, "http://e.org"],
            "source": ["s", "s"]}
    data.update(overrides)
    return pa.table(data)


def test_every_design_kind_exists_with_a_version():
    assert set(KINDS) == EXPECTED_KINDS
    for kind in KINDS.values():
        major, minor = kind.version.split(".")
        assert major.isdigit() and minor.isdigit()
        assert kind.arrow_schema().metadata[b"kind_version"] == kind.version.encode()


def test_committed_json_matches_code():
    """schemas/json is what other languages read; it must not drift from the code."""
    committed = PROJECT_ROOT / "schemas" / "json"
    for kind in KINDS.values():
        on_disk = json.loads((committed / f"{kind.name}.schema.json").read_text())
        assert on_disk == kind_to_json(kind), "run `curate schemas export schemas/json`"


def test_export_round_trips(tmp_path):
    paths = export_json(tmp_path)
    assert {p.name for p in paths} == {f"{k}.schema.json" for k in EXPECTED_KINDS}
    sft = json.loads((tmp_path / "sft.schema.json").read_text())
    messages = next(c for c in sft["columns"] if c["name"] == "messages")
    assert messages["types"][0]["list"]["struct"][0]["name"] == "role"


def test_valid_documents_pass_and_extras_are_allowed():
    table = docs(quality_score=pa.array([0.1, 0.9], pa.float32()))
    out = conform(table, DOCUMENTS, "part-1.arrow")
    assert out.column_names[-1] == "quality_score"
    assert out.schema.metadata[b"record_kind"] == b"documents"
    assert not out.schema.field("id").nullable


def test_mismatch_names_shard_column_and_problem():
    bad = docs(text=[1, 2]).drop_columns(["source"])
    with pytest.raises(SchemaMismatch) as err:
        validate_table(bad, DOCUMENTS, shard="part-00007.arrow")
    msg = str(err.value)
    assert "part-00007.arrow" in msg
    assert "column 'text': expected string, found int64" in msg
    assert "column 'source': missing" in msg
    assert {p.column for p in err.value.problems} == {"text", "source"}


def test_nulls_in_non_null_column_are_reported():
    with pytest.raises(SchemaMismatch, match=r"column 'id': 1 null value"):
        validate_table(docs(id=["a", None]), DOCUMENTS, "s.arrow")


def test_closed_kinds_reject_unknown_columns():
    table = pa.table({"input_ids": pa.array([[1, 2]], pa.list_(pa.uint16())),
                      "segment_starts": pa.array([[0]], pa.list_(pa.int32())),
                      "segment_doc_ids": [["d"]], "oops": [1]})
    with pytest.raises(SchemaMismatch, match="'oops': not a column of pretrain_tokens"):
        validate_table(table, PRETRAIN_TOKENS, "t.arrow")
    validate_table(table.drop_columns(["oops"]), PRETRAIN_TOKENS, "t.arrow")


def test_token_ids_accept_narrow_and_wide_types_only():
    base = {"segment_starts": pa.array([[0]], pa.list_(pa.int32())), "segment_doc_ids": [["d"]]}
    for dtype in (pa.uint16(), pa.uint32()):
        validate_table(pa.table({"input_ids": pa.array([[1]], pa.list_(dtype)), **base}),
                       PRETRAIN_TOKENS)
    with pytest.raises(SchemaMismatch, match="found list<item: double>"):
        validate_table(pa.table({"input_ids": pa.array([[1.0]]), **base}), PRETRAIN_TOKENS)


def test_sft_messages_struct_is_checked():
    msgs = pa.array([[{"role": "user", "content": "hi"}]], get_kind("sft").column("messages").type)
    validate_table(pa.table({"id": ["1"], "messages": msgs, "source": ["s"], "split": ["train"]}),
                   SFT)
    with pytest.raises(SchemaMismatch, match="'messages': expected"):
        validate_table(pa.table({"id": ["1"], "messages": [["hi"]], "source": ["s"],
                                 "split": ["train"]}), SFT)


def test_empty_tables_validate():
    for kind in KINDS.values():
        validate_table(empty_table(kind), kind)


def test_unknown_kind_lists_known_ones():
    with pytest.raises(KeyError, match="known: documents"):
        get_kind("nope")
