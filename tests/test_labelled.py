"""Labelled sets: every layout in and out, broken rows rejected with reasons, the array
operations against plain Python, the split's determinism, dedup of examples, the filters,
the transform hook, the demo set and the commands."""

from __future__ import annotations

import gzip
import json
import random
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from curate.labelled.curate_sets import (
    FILTER_STAGES,
    SPLIT_STAGES,
    LabelledDedupConfig,
    LabelledFilterConfig,
    SplitConfig,
    apply_documents_transform,
    assign_splits,
    documents_view,
    filter_examples,
    render,
    run_labelled_dedup,
    split_counts,
    turns_view,
)
from curate.labelled.demo import MANIFEST_NAME, write_labelled_demo
from curate.labelled.ingest import (
    INGEST_STAGES,
    LabelledIngestConfig,
    detect_kind,
    ingest_labelled_file,
    plan_labelled,
)
from curate.labelled.layouts import (
    Turns,
    UnknownLayout,
    concat,
    equal,
    parse_transcript,
    shared_prefix,
)
from curate.labelled.validate import (
    VALIDATE_STAGES,
    ValidationConfig,
    preference_problems,
    sft_problems,
    validate_examples,
)
from curate.runner import StageOutput, plan_shards, run_stage
from schemas import PREFERENCE, REJECTED, SFT, read_shard, shard_paths, validate_table, verify_stage

from .conftest import write_jsonl


def msgs(*pairs: tuple[str, str]) -> list[dict[str, str]]:
    return [{"role": r, "content": c} for r, c in pairs]


CHAT = msgs(("user", "What lives under a river stone?"),
            ("assistant", "Mayfly nymphs, caddisfly larvae and freshwater shrimp."))


def ingest(path: Path, kind: str = "sft", **cfg) -> StageOutput:
    out = ingest_labelled_file(path, kind, LabelledIngestConfig(**cfg))
    assert out.rows_in == out.kept.num_rows + out.rejected.num_rows
    validate_table(out.kept, SFT if kind == "sft" else PREFERENCE)
    if out.rejected.num_rows:
        validate_table(out.rejected, REJECTED)
    return out


def kept(out: StageOutput, column: str = "messages") -> dict[str, list]:
    return dict(zip(out.kept.column("id").to_pylist(), out.kept.column(column).to_pylist(),
                    strict=True))


def reasons(out: StageOutput) -> dict[str, str]:
    return dict(zip(out.rejected.column("id").to_pylist(),
                    out.rejected.column("reject_reason").to_pylist(), strict=True))


def rejected_row(out: StageOutput, rid: str) -> dict:
    return next(r for r in out.rejected.to_pylist() if r["id"] == rid)


# --- layouts ---------------------------------------------------------------------------------


def test_chat_messages_layout_maps_roles_and_keeps_metadata(tmp_path):
    path = write_jsonl(tmp_path / "chat.jsonl", [
        {"id": "a", "messages": CHAT, "model": "demo"},
        {"id": "b", "messages": msgs(("System", "Be brief."), ("Human", "Hi"), ("GPT", "Hello")),
         "split": "test"},
    ])
    out = ingest(path)
    assert kept(out) == {"a": CHAT, "b": msgs(("system", "Be brief."), ("user", "Hi"),
                                              ("assistant", "Hello"))}
    rows = {r["id"]: r for r in out.kept.to_pylist()}
    assert rows["a"]["metadata"] == '{"model":"demo"}' and rows["b"]["metadata"] is None
    assert rows["b"]["split"] == "test" and rows["a"]["split"] is None
    assert rows["a"]["source"] == "chat" and rows["a"]["source_row"] == 1


def test_sharegpt_layout(tmp_path):
    path = write_jsonl(tmp_path / "sg.jsonl", [{"conversations": [
        {"from": "system", "value": "Be nice."}, {"from": "human", "value": "Hi"},
        {"from": "gpt", "value": "Hello"}, {"from": "human", "value": "Bye"},
        {"from": "gpt", "value": "Goodbye"}]}])
    assert kept(ingest(path)) == {"sg.jsonl:1": msgs(
        ("system", "Be nice."), ("user", "Hi"), ("assistant", "Hello"), ("user", "Bye"),
        ("assistant", "Goodbye"))}


def test_alpaca_layout_joins_input_and_drops_blank_system(tmp_path):
    path = write_jsonl(tmp_path / "alpaca.jsonl", [
        {"instruction": "Summarise.", "input": "A long text.", "output": "Short."},
        {"instruction": "Name a bird.", "input": "", "output": "Heron.", "system": " "},
        {"instruction": "Name a fish.", "output": "Trout.", "system": "Be brief."},
    ])
    assert list(kept(ingest(path)).values()) == [
        msgs(("user", "Summarise.\n\nA long text."), ("assistant", "Short.")),
        msgs(("user", "Name a bird."), ("assistant", "Heron.")),
        msgs(("system", "Be brief."), ("user", "Name a fish."), ("assistant", "Trout."))]


def test_dolly_style_context_and_response(tmp_path):
    path = write_jsonl(tmp_path / "dolly.jsonl", [
        {"instruction": "When?", "context": "In 1856.", "response": "1856."}])
    assert list(kept(ingest(path)).values()) == [
        msgs(("user", "When?\n\nIn 1856."), ("assistant", "1856."))]


def test_prompt_completion_strings_and_message_lists(tmp_path):
    a = write_jsonl(tmp_path / "pc.jsonl", [{"prompt": "Q", "completion": "A"}])
    b = write_jsonl(tmp_path / "pc2.jsonl", [
        {"prompt": msgs(("user", "Q")), "completion": msgs(("assistant", "A"))}])
    c = write_jsonl(tmp_path / "qa.jsonl", [{"question": "Q", "answer": "A"}])
    expected = [msgs(("user", "Q"), ("assistant", "A"))]
    assert list(kept(ingest(a)).values()) == expected
    assert list(kept(ingest(b)).values()) == expected
    renamed = ingest(c, rename={"question": "prompt", "answer": "completion"})
    assert list(kept(renamed).values()) == expected


def test_preference_pairs_as_strings_and_messages(tmp_path):
    path = write_jsonl(tmp_path / "pairs.jsonl", [
        {"id": "s", "prompt": "Name a bird.", "chosen": "The heron.", "rejected": "No.",
         "score_chosen": 9, "score_rejected": 1.5},
        {"id": "m", "prompt": msgs(("system", "Be kind."), ("user", "Name a bird.")),
         "chosen": msgs(("assistant", "The heron.")), "rejected": msgs(("assistant", "No."))},
    ])
    out = ingest(path, "preference")
    rows = {r["id"]: r for r in out.kept.to_pylist()}
    assert rows["s"]["prompt"] == msgs(("user", "Name a bird."))
    assert rows["s"]["chosen"] == msgs(("assistant", "The heron."))
    assert rows["s"]["rejected"] == msgs(("assistant", "No."))
    assert (rows["s"]["score_chosen"], rows["s"]["score_rejected"]) == (9.0, 1.5)
    assert rows["m"]["prompt"] == msgs(("system", "Be kind."), ("user", "Name a bird."))
    assert rows["m"]["score_chosen"] is None


def test_preference_responses_repeating_the_prompt_are_stripped(tmp_path):
    """UltraFeedback-style: a string prompt, chosen/rejected as full conversations."""
    path = write_jsonl(tmp_path / "uf.jsonl", [{
        "prompt": "Name a bird.",
        "chosen": msgs(("user", "Name a bird."), ("assistant", "The heron.")),
        "rejected": msgs(("user", "Name a bird."), ("assistant", "No."))}])
    row = ingest(path, "preference").kept.to_pylist()[0]
    assert row["prompt"] == msgs(("user", "Name a bird."))
    assert (row["chosen"], row["rejected"]) == (msgs(("assistant", "The heron.")),
                                                 msgs(("assistant", "No.")))


def test_transcripts_split_on_their_shared_prefix(tmp_path):
    shared = msgs(("user", "Hi"), ("assistant", "Hello!"), ("user", "Name a bird."))
    path = write_jsonl(tmp_path / "tr.jsonl", [
        {"id": "lists", "chosen": [*shared, *msgs(("assistant", "The heron."))],
         "rejected": [*shared, *msgs(("assistant", "No."))]},
    ])
    hh = write_jsonl(tmp_path / "hh.jsonl", [
        {"id": "hh", "chosen": "\n\nHuman: Hi\n\nAssistant: Hello!\n\nHuman: Name a bird."
                               "\n\nAssistant: The heron.",
         "rejected": "\n\nHuman: Hi\n\nAssistant: Hello!\n\nHuman: Name a bird."
                     "\n\nAssistant: No."}])
    for out in (ingest(path, "preference"), ingest(hh, "preference")):
        row = out.kept.to_pylist()[0]
        assert row["prompt"] == shared
        assert row["chosen"] == msgs(("assistant", "The heron."))
        assert row["rejected"] == msgs(("assistant", "No."))


def test_parse_transcript():
    assert parse_transcript("Human: a\n\nAssistant: b\nc") == msgs(("user", "a"),
                                                                   ("assistant", "b\nc"))
    with pytest.raises(ValueError, match="Human:"):
        parse_transcript("no markers here")


def test_csv_parquet_json_array_gzip_and_hf_dataset(tmp_path):
    datasets = pytest.importorskip("datasets")
    (tmp_path / "a.csv").write_text(
        'instruction,input,output\nQ,,A\nQ2,ctx,"multi, line\nanswer"\n')
    (tmp_path / "m.csv").write_text(
        'id,messages\nj,"[{""role"": ""user"", ""content"": ""Q""}, '
        '{""role"": ""assistant"", ""content"": ""A""}]"\n')
    pq.write_table(pa.table({"id": ["p"], "messages": [CHAT]}), tmp_path / "m.parquet")
    (tmp_path / "arr.json").write_text(json.dumps([{"id": "x", "messages": CHAT}]))
    (tmp_path / "z.jsonl.gz").write_bytes(gzip.compress(
        (json.dumps({"id": "z", "messages": CHAT}) + "\n").encode()))
    datasets.DatasetDict({
        "train": datasets.Dataset.from_dict({"prompt": ["Q"], "completion": ["A"]}),
        "test": datasets.Dataset.from_dict({"prompt": ["Qt"], "completion": ["At"]}),
    }).save_to_disk(str(tmp_path / "hf"))
    assert list(kept(ingest(tmp_path / "a.csv")).values())[1] == msgs(
        ("user", "Q2\n\nctx"), ("assistant", "multi, line\nanswer"))
    assert kept(ingest(tmp_path / "m.csv")) == {"j": msgs(("user", "Q"), ("assistant", "A"))}
    assert kept(ingest(tmp_path / "m.parquet")) == {"p": CHAT}
    assert kept(ingest(tmp_path / "arr.json")) == {"x": CHAT}
    assert kept(ingest(tmp_path / "z.jsonl.gz")) == {"z": CHAT}
    train = ingest(tmp_path / "hf")
    assert train.kept.column("split").to_pylist() == ["train"]
    test = ingest(tmp_path / "hf", split="test")
    assert list(kept(test).values()) == [msgs(("user", "Qt"), ("assistant", "At"))]


def test_column_and_record_paths_agree(tmp_path):
    """A clean file goes column-wise; one bad line sends it record by record: the good rows
    must come out the same either way."""
    rng = random.Random(3)
    records = []
    for i in range(60):
        turns = [("system", "Be brief.")] if rng.random() < 0.3 else []
        for t in range(rng.randint(1, 3)):
            turns += [(rng.choice(["user", "human", "User"]), f"question {i}.{t}"),
                      (rng.choice(["assistant", "gpt"]), f"answer {i}.{t}")]
        records.append({"id": f"r{i}", "messages": msgs(*turns), "n": i})
    clean = ingest(write_jsonl(tmp_path / "clean.jsonl", records))
    broken_path = write_jsonl(tmp_path / "broken.jsonl", records)
    with broken_path.open("a") as f:
        f.write('{"id": "bad", "messages": [{"role": "user", "content": 5}]}\n')
    broken = ingest(broken_path)
    assert reasons(broken) == {"bad": "wrong_type"}
    a, b = clean.kept, broken.kept
    for column in ("id", "messages", "metadata", "split", "source_row"):
        assert a.column(column).to_pylist() == b.column(column).to_pylist(), column


def test_chunks_give_the_same_rows_as_one_pass(tmp_path, monkeypatch):
    """Chunked conversion (a broken line costs only its chunk) equals converting the file
    in one piece: ids duplicated across chunks, a column only some chunks have, broken lines
    at chunk boundaries (one a JSON array line, which must not be read as a whole array)."""
    import curate.labelled.ingest as ingest_module

    rng = random.Random(1)
    lines = []
    for i in range(200):
        record = {"id": f"r{i % 170}", "messages": CHAT}
        if i > 120:
            record["system"] = "Be brief." if i % 3 else ""
        lines.append(json.dumps(record))
    for at, bad in ((16, "[1, 2]"), (32, ""), (50, '{"id": "x", "messages": [{"role": 1}]}'),
                    (77, "{not json"), (150, '{"id": "y", "messages": null}')):
        lines.insert(at, bad)
    rng.shuffle(lines[100:110])
    path = tmp_path / "chunks.jsonl"
    path.write_text("\n".join(lines) + "\n")
    monkeypatch.setattr(ingest_module, "CHUNK_ROWS", 16)
    chunked = ingest(path)
    assert len(ingest_module.read_file(path, LabelledIngestConfig()).chunks) > 10
    monkeypatch.setattr(ingest_module, "CHUNK_ROWS", 10**9)
    whole = ingest(path)
    assert chunked.kept.to_pylist() == whole.kept.to_pylist()
    assert chunked.rejected.to_pylist() == whole.rejected.to_pylist()
    assert set(reasons(whole).values()) == {"duplicate_id", "not_an_object", "blank_line",
                                            "wrong_type", "invalid_json", "missing_field"}


# --- broken rows -----------------------------------------------------------------------------


def test_broken_sft_rows_are_rejected_with_reasons(tmp_path):
    path = write_jsonl(tmp_path / "bad.jsonl", [
        {"id": "ok", "messages": CHAT},
        {"id": "missing"},
        {"id": "string", "messages": "user: hi"},
        {"id": "number", "messages": [*msgs(("user", "hi")), {"role": "assistant", "content": 7}]},
        {"id": "no-role", "messages": [{"content": "hi"}]},
        {"id": "empty", "messages": msgs(("user", "hi"), ("assistant", "  "))},
        {"id": "role", "messages": msgs(("user", "hi"), ("tool", "x"), ("assistant", "y"))},
        {"id": "alternate", "messages": msgs(("user", "a"), ("user", "b"), ("assistant", "c"))},
        {"id": "first", "messages": msgs(("assistant", "a"), ("user", "b"), ("assistant", "c"))},
        {"id": "system", "messages": msgs(("user", "a"), ("system", "b"), ("assistant", "c"))},
        {"id": "last", "messages": msgs(("user", "a"), ("assistant", "b"), ("user", "c"))},
        {"id": "none", "messages": []},
        {"id": "ok", "messages": CHAT},
    ])
    with path.open("a") as f:
        f.write('{"id": "truncated", "messages": [\n\n[1, 2]\n')
    out = ingest(path)
    assert list(kept(out)) == ["ok"]
    assert reasons(out) == {
        "missing": "missing_field", "string": "wrong_type", "number": "wrong_type",
        "no-role": "wrong_type", "empty": "empty_turn", "role": "unknown_role",
        "alternate": "not_alternating", "first": "not_alternating",
        "system": "misplaced_system", "last": "last_turn_not_assistant", "none": "no_turns",
        "ok": "duplicate_id", "bad.jsonl:14": "invalid_json", "bad.jsonl:15": "blank_line",
        "bad.jsonl:16": "not_an_object"}
    details = dict(zip(out.rejected.column("id").to_pylist(),
                       out.rejected.column("reject_detail").to_pylist(), strict=True))
    assert details["role"] == "turn 2 has role 'tool' (known: system, user, assistant)"
    assert details["alternate"] == "turn 2 is user, expected assistant"
    assert details["empty"] == "turn 2 (assistant) is empty"
    assert "'messages' turn 2 content is a number" in details["number"]
    # rows that parsed keep their conversation; rows that did not keep the raw record
    assert rejected_row(out, "role")["messages"][1] == {"role": "tool", "content": "x"}
    assert rejected_row(out, "role")["raw"] is None
    assert rejected_row(out, "string")["raw"] == '{"id": "string", "messages": "user: hi"}'
    assert rejected_row(out, "bad.jsonl:14")["messages"] is None
    assert rejected_row(out, "bad.jsonl:14")["raw"].startswith('{"id": "truncated"')
    assert set(out.rejected.column("reject_stage").to_pylist()) == {"sft_ingest"}


def test_empty_and_all_broken_files_still_make_shards(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "empty.jsonl").write_text("")
    (raw / "broken.jsonl").write_text("{oops\n[1, 2]\n")
    (raw / "bad.csv").write_text("instruction,output\nQ,A\nonly one field\n")
    report = run_stage(INGEST_STAGES["sft"], plan_labelled(raw), tmp_path / "out",
                       LabelledIngestConfig(), progress=False)
    assert report.ok, report.failures
    assert (report.rows_in, report.rows_kept) == (4, 1)
    assert dict(report.reasons) == {"invalid_json": 1, "not_an_object": 1,
                                    "wrong_column_count": 1}
    assert verify_stage(tmp_path / "out").ok


def test_a_row_with_a_missing_field_keeps_what_parsed(tmp_path):
    out = ingest(write_jsonl(tmp_path / "a.jsonl", [
        {"instruction": "Q", "output": "A"}, {"instruction": "Only a question"}]))
    row = rejected_row(out, "a.jsonl:2")
    assert row["reject_reason"] == "missing_field"
    assert row["reject_detail"] == "'output' is missing or null"
    assert row["messages"] == msgs(("user", "Only a question"))
    assert row["raw"] == '{"instruction": "Only a question"}'


def test_broken_preference_rows(tmp_path):
    path = write_jsonl(tmp_path / "p.jsonl", [
        {"id": "ok", "prompt": "Q", "chosen": "good", "rejected": "bad"},
        {"id": "same", "prompt": "Q", "chosen": "same", "rejected": "same"},
        {"id": "empty", "prompt": "Q", "chosen": "good", "rejected": ""},
        {"id": "missing", "prompt": "Q", "rejected": "bad"},
        {"id": "prompt-ends-assistant", "prompt": msgs(("user", "a"), ("assistant", "b")),
         "chosen": msgs(("assistant", "c")), "rejected": msgs(("assistant", "d"))},
        {"id": "response-user", "prompt": msgs(("user", "a"), ("assistant", "b")),
         "chosen": msgs(("user", "c"), ("assistant", "d")),
         "rejected": msgs(("user", "e"), ("assistant", "f"))},
        {"id": "no-prompt", "prompt": [], "chosen": "good", "rejected": "bad"},
        {"id": "number", "prompt": "Q", "chosen": 1, "rejected": "bad"},
    ])
    out = ingest(path, "preference")
    assert list(kept(out, "prompt")) == ["ok"]
    assert reasons(out) == {
        "same": "chosen_equals_rejected", "empty": "empty_turn", "missing": "missing_field",
        "prompt-ends-assistant": "not_alternating", "response-user": "response_not_assistant",
        "no-prompt": "no_prompt", "number": "wrong_type"}
    details = dict(zip(out.rejected.column("id").to_pylist(),
                       out.rejected.column("reject_detail").to_pylist(), strict=True))
    assert details["empty"] == "rejected turn 1 (assistant) is empty"
    assert details["prompt-ends-assistant"] == "chosen turn 1 is assistant, expected user"
    assert details["response-user"].startswith("chosen turn 1 is user")


def test_identical_and_disjoint_transcripts(tmp_path):
    path = write_jsonl(tmp_path / "t.jsonl", [
        {"id": "same", "chosen": CHAT, "rejected": CHAT},
        {"id": "disjoint", "chosen": CHAT, "rejected": msgs(("user", "Other"), ("assistant", "x"))},
        {"id": "prefix", "chosen": CHAT, "rejected": CHAT[:1]},
    ])
    assert reasons(ingest(path, "preference")) == {
        "same": "chosen_equals_rejected", "disjoint": "no_prompt", "prefix": "empty_response"}


def test_length_limits(tmp_path):
    long_chat = msgs(("user", "x" * 50), ("assistant", "y" * 60))
    many = msgs(*[("user", "q"), ("assistant", "a")] * 3)
    path = write_jsonl(tmp_path / "l.jsonl", [
        {"id": "long", "messages": long_chat}, {"id": "many", "messages": many},
        {"id": "fine", "messages": CHAT[:1] + msgs(("assistant", "ok"))}])
    out = ingest(path, max_chars=100, max_turns=4)
    assert reasons(out) == {"long": "too_long", "many": "too_long"}
    details = out.rejected.column("reject_detail").to_pylist()
    assert "110 chars > max_chars 100" in details and "6 turns > max_turns 4" in details
    pairs = write_jsonl(tmp_path / "p.jsonl", [
        {"id": "p", "prompt": "q", "chosen": "short", "rejected": "r" * 200}])
    rejected = ingest(pairs, "preference", max_chars=100).rejected.to_pylist()[0]
    assert rejected["reject_detail"] == "prompt + rejected: 201 chars > max_chars 100"


def test_validation_can_be_deferred_to_the_validate_stage(tmp_path):
    path = write_jsonl(tmp_path / "v.jsonl", [
        {"id": "a", "messages": CHAT}, {"id": "b", "messages": CHAT[:1]}])
    parsed = ingest(path, validation=False)
    assert parsed.kept.num_rows == 2
    out = validate_examples(parsed.kept, ValidationConfig(), "sft_validate")
    assert reasons(out) == {"b": "last_turn_not_assistant"}
    assert out.rejected.column("reject_stage").to_pylist() == ["sft_validate"]


def test_require_user_first_can_be_relaxed():
    turns = Turns.from_lists(pa.array([msgs(("assistant", "Hi!"), ("user", "Q"),
                                            ("assistant", "A"))]))
    assert sft_problems(turns, ValidationConfig()).reason.tolist() == ["not_alternating"]
    relaxed = ValidationConfig(require_user_first=False)
    assert sft_problems(turns, relaxed).reason.tolist() == [None]


def test_unknown_layout_names_the_columns(tmp_path):
    path = write_jsonl(tmp_path / "odd.jsonl", [{"title": "x", "body": "y"}])
    with pytest.raises(UnknownLayout, match="columns seen: body, title"):
        ingest_labelled_file(path, "sft", LabelledIngestConfig())
    prefs = write_jsonl(tmp_path / "prefs.jsonl", [{"prompt": "q", "chosen": "a",
                                                    "rejected": "b"}])
    with pytest.raises(UnknownLayout, match="look like preference data"):
        ingest_labelled_file(prefs, "sft", LabelledIngestConfig())
    report = run_stage(INGEST_STAGES["sft"], plan_labelled(tmp_path), tmp_path / "out",
                       LabelledIngestConfig(), progress=False)
    assert "columns seen: body, title" in report.failures["part-odd.jsonl.arrow"]


def test_kind_detection(tmp_path):
    write_jsonl(tmp_path / "sft" / "a.jsonl", [{"messages": CHAT}])
    write_jsonl(tmp_path / "pref" / "b.jsonl", [{"chosen": CHAT, "rejected": CHAT}])
    cfg = LabelledIngestConfig()
    assert detect_kind(plan_labelled(tmp_path / "sft"), cfg) == "sft"
    assert detect_kind(plan_labelled(tmp_path / "pref"), cfg) == "preference"
    with pytest.raises(UnknownLayout, match="both sft and preference"):
        detect_kind(plan_labelled(tmp_path), cfg)
    from typing import get_args

    from curate.labelled.ingest import LayoutName
    from curate.labelled.layouts import LAYOUT_NAMES

    assert set(get_args(LayoutName)) == {"auto", *LAYOUT_NAMES}  # config offers every layout
    forced = ingest(write_jsonl(tmp_path / "f.jsonl", [{"prompt": "Q", "response": "A"}]),
                    layout="prompt_completion")
    assert list(kept(forced).values()) == [msgs(("user", "Q"), ("assistant", "A"))]


# --- conversations as arrays -----------------------------------------------------------------


def _random_lists(rng: random.Random, n: int) -> list[list[dict]]:
    return [[{"role": rng.choice(["user", "assistant"]), "content": rng.choice("abc")}
             for _ in range(rng.randint(0, 4))] for _ in range(n)]


def test_turn_operations_match_plain_python():
    rng = random.Random(0)
    a, b = _random_lists(rng, 300), _random_lists(rng, 300)
    ta, tb = Turns.from_lists(pa.array(a)), Turns.from_lists(pa.array(b))
    assert concat(ta, tb).to_lists().to_pylist() == [x + y for x, y in zip(a, b, strict=True)]

    def prefix(x, y):
        k = 0
        while k < min(len(x), len(y)) and x[k] == y[k]:
            k += 1
        return k

    assert shared_prefix(ta, tb).tolist() == [prefix(x, y) for x, y in zip(a, b, strict=True)]
    assert equal(ta, ta).all()
    assert equal(ta, tb).tolist() == [x == y for x, y in zip(a, b, strict=True)]
    start = np.array([rng.randint(0, 3) for _ in a])
    assert ta.slice(start).to_lists().to_pylist() == [x[s:] for x, s in zip(a, start,
                                                                            strict=True)]
    rows = np.array([5, 0, 299, 5])
    assert ta.take_rows(rows).to_lists().to_pylist() == [a[r] for r in rows]
    sliced = pa.array(a).slice(10, 50)  # an offset list array with a null
    with_null = pa.array([None, *a[:3]], pa.array(a).type)
    assert Turns.from_lists(sliced).to_lists().to_pylist() == a[10:60]
    assert Turns.from_lists(with_null).to_lists().to_pylist() == [[], *a[:3]]
    assert ta.keep_roles(("user",)).to_lists().to_pylist() == [
        [t for t in x if t["role"] == "user"] for x in a]


def test_preference_problems_report_where():
    prompt = Turns.from_lists(pa.array([msgs(("user", "q"))] * 2))
    chosen = Turns.from_lists(pa.array([msgs(("assistant", "a")), msgs(("assistant", "a"))]))
    rejected = Turns.from_lists(pa.array([msgs(("assistant", "")), msgs(("assistant", "b"))]))
    problems = preference_problems(prompt, chosen, rejected, ValidationConfig())
    assert problems.reason.tolist() == ["empty_turn", None]
    assert problems.detail.tolist()[0] == "rejected turn 1 (assistant) is empty"


# --- stages over a folder, conservation ------------------------------------------------------


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("labelled")
    write_labelled_demo(root / "raw", seed=0)
    for kind in ("sft", "preference"):
        report = run_stage(INGEST_STAGES[kind], plan_labelled(root / "raw" / kind),
                           root / f"{kind}_ingest", LabelledIngestConfig(), progress=False)
        assert report.ok, report.failures
    return root


def _ids(stage_dir: Path, rejected: bool = False) -> list[str]:
    return [i for p in shard_paths(stage_dir, rejected=rejected)
            for i in read_shard(p).column("id").to_pylist()]


def test_demo_ingest_matches_its_manifest(demo):
    manifest = json.loads((demo / "raw" / MANIFEST_NAME).read_text())
    for kind in ("sft", "preference"):
        stage = demo / f"{kind}_ingest"
        assert verify_stage(stage).ok
        from schemas import read_manifest

        shards = read_manifest(stage).shards
        for rel, info in manifest["files"].items():
            if info["kind"] != kind:
                continue
            entry = shards[f"part-{Path(rel).name}.arrow"]
            assert entry["rows_in"] == info["rows"], rel
            assert entry["rows_in"] == entry["rows"] + entry["rows_rejected"]
            assert entry["rows"] == info["valid"], rel
            assert entry["reject_reasons"] == info["rejects"], rel


def test_demo_is_deterministic(tmp_path):
    a = write_labelled_demo(tmp_path / "a", seed=5)
    b = write_labelled_demo(tmp_path / "b", seed=5)
    c = write_labelled_demo(tmp_path / "c", seed=6)
    for pa_, pb in zip(a, b, strict=True):
        assert pa_.read_bytes() == pb.read_bytes()
    assert any(x.read_bytes() != y.read_bytes() for x, y in zip(a, c, strict=True))


def test_demo_pairs_differ_learnably(demo):
    table = pa.concat_tables(read_shard(p) for p in shard_paths(demo / "preference_ingest"))
    for row in table.to_pylist():
        chosen = row["chosen"][0]["content"]
        rejected = row["rejected"][0]["content"]
        assert chosen != rejected
        kind = json.loads(row["metadata"])["rejected_kind"]
        if kind == "truncated":
            assert len(rejected) < len(chosen) and not rejected.endswith(".")
        if kind == "impolite":
            assert len(rejected.split()) < 15


def test_labelled_dedup_removes_planted_duplicates(demo, tmp_path):
    manifest = json.loads((demo / "raw" / MANIFEST_NAME).read_text())["planted"]
    for kind, planted in (("sft", manifest["sft_exact_duplicates"]
                           + manifest["sft_near_duplicates"]),
                          ("preference", manifest["preference_exact_duplicates"])):
        out = tmp_path / f"{kind}_dedup"
        report = run_labelled_dedup(demo / f"{kind}_ingest", out, LabelledDedupConfig())
        assert report.ok
        removed = set(_ids(out / kind, rejected=True))
        assert len(removed) == len(planted)
        assert all(len(set(pair) & removed) == 1 for pair in planted)
        assert set(_ids(out / kind)) | removed == set(_ids(demo / f"{kind}_ingest"))
        assert verify_stage(out / kind).ok
        rows = pa.concat_tables(read_shard(p) for p in shard_paths(out / kind, rejected=True))
        reasons_seen = set(rows.column("reject_reason").to_pylist())
        assert reasons_seen <= {"exact_duplicate", "near_duplicate"}
        assert set(rows.column("reject_stage").to_pylist()) == {f"{kind}_dedup"}
        assert all(rows.column("duplicate_of").to_pylist())
        again = run_labelled_dedup(demo / f"{kind}_ingest", out, LabelledDedupConfig())
        assert again.dedup.removal.skipped == again.dedup.removal.units  # resumable


def test_dedup_of_small_labelled_set(tmp_path):
    answer = ("Mayfly nymphs cling to the underside of the stone, shaped so that the current "
              "presses them against it rather than tearing them away. Caddisfly larvae build "
              "portable cases from sand grains or tiny twigs, glued together with silk they "
              "produce themselves. Freshwater shrimp scuttle sideways in search of shelter the "
              "moment they are exposed to light, and each of these animals tolerates a "
              "different level of pollution, so together they record the water's quality.")
    records = [
        {"id": "a", "messages": msgs(("user", "What lives under a stone?"), ("assistant", answer))},
        {"id": "b", "messages": msgs(("user", "What lives under a stone?"), ("assistant", answer))},
        {"id": "c", "messages": msgs(("user", "What lives under a stone?"),
                                     ("assistant", answer.replace("quality", "health")))},
        {"id": "d", "messages": msgs(("user", "Name a bird."), ("assistant", "The heron."))},
    ]
    write_jsonl(tmp_path / "raw" / "chat.jsonl", records)
    run_stage(INGEST_STAGES["sft"], plan_labelled(tmp_path / "raw"), tmp_path / "in",
              LabelledIngestConfig(), progress=False)
    run_labelled_dedup(tmp_path / "in", tmp_path / "out", LabelledDedupConfig())
    removed = {r["id"]: (r["reject_reason"], r["duplicate_of"])
               for p in shard_paths(tmp_path / "out" / "sft", rejected=True)
               for r in read_shard(p).to_pylist()}
    assert removed == {"b": ("exact_duplicate", "a"), "c": ("near_duplicate", "a")}
    by_prompt = run_labelled_dedup(tmp_path / "in", tmp_path / "by_prompt",
                                   LabelledDedupConfig(render="prompt"))
    assert by_prompt.ok
    assert _ids(tmp_path / "by_prompt" / "sft") == ["a", "d"]


def test_filters_language_and_repetition(demo, tmp_path):
    planted = json.loads((demo / "raw" / MANIFEST_NAME).read_text())["planted"]
    cfg = LabelledFilterConfig(languages=["en"], min_unique_word_ratio=0.3)
    report = run_stage(FILTER_STAGES["sft"], plan_shards(demo / "sft_ingest"),
                       tmp_path / "filtered", cfg, progress=False)
    assert report.ok and report.rows_in == report.rows_kept + report.rows_rejected
    assert dict(report.reasons) == {"language_not_allowed": len(planted["non_english"]),
                                    "repetitive_response": 1}
    removed = set(_ids(tmp_path / "filtered", rejected=True))
    assert removed == {*planted["non_english"], *planted["repetitive"]}
    table = read_shard(shard_paths(tmp_path / "filtered")[0])
    assert set(table.column("lang").to_pylist()) == {"en"}
    assert verify_stage(tmp_path / "filtered").ok
    prefs = pa.concat_tables(read_shard(p) for p in shard_paths(demo / "preference_ingest"))
    out = filter_examples(prefs, LabelledFilterConfig(min_response_words=30), "x")
    assert out.rejected.num_rows > 0
    assert set(out.rejected.column("reject_reason").to_pylist()) == {"response_too_short"}


def test_quality_rules_without_langid():
    table = pa.table({
        "id": ["a", "b", "c"],
        "messages": pa.array([msgs(("user", "Q?"), ("assistant", "word " * 40)),
                              msgs(("user", "Q?"), ("assistant", "ok")),
                              msgs(("user", "Q?"), ("assistant", " ".join(
                                  f"w{i}" for i in range(40))))]),
        "source": ["s"] * 3})
    cfg = LabelledFilterConfig(langid=False, min_response_words=2,
                               min_unique_word_ratio=0.5)
    out = filter_examples(table, cfg, "sft_filter")
    assert reasons(out) == {"a": "repetitive_response", "b": "response_too_short"}
    assert "lang" not in out.kept.column_names


# --- split -----------------------------------------------------------------------------------


def _id_table(n: int) -> pa.Table:
    ids = [f"example-{i}" for i in range(n)]
    return pa.table({"id": ids, "messages": pa.array([CHAT] * n), "source": ["s"] * n})


def test_split_is_deterministic_and_follows_the_fraction():
    table = _id_table(20_000)
    cfg = SplitConfig(validation_fraction=0.1, test_fraction=0.05)
    a = assign_splits(table, cfg).column("split").to_pylist()
    assert a == assign_splits(table, cfg).column("split").to_pylist()
    counts = {k: a.count(k) for k in ("train", "validation", "test")}
    assert abs(counts["validation"] - 2000) < 4 * (20_000 * 0.1 * 0.9) ** 0.5
    assert abs(counts["test"] - 1000) < 4 * (20_000 * 0.05 * 0.95) ** 0.5
    # a row's split depends on its id only: shuffling or subsetting the table changes nothing
    shuffled = table.take(pa.array(np.random.default_rng(0).permutation(20_000)))
    by_id = dict(zip(table.column("id").to_pylist(), a, strict=True))
    again = assign_splits(shuffled, cfg)
    assert all(by_id[i] == s for i, s in zip(again.column("id").to_pylist(),
                                             again.column("split").to_pylist(), strict=True))
    # a larger validation fraction only moves rows from train to validation
    bigger = assign_splits(table, SplitConfig(validation_fraction=0.2)).column("split")
    assert all(s == "validation" for s, old in zip(bigger.to_pylist(), a, strict=True)
               if old == "validation")
    salted = assign_splits(table, SplitConfig(validation_fraction=0.1, test_fraction=0.05,
                                              salt="other")).column("split").to_pylist()
    assert salted != a


def test_split_by_prompt_keeps_a_prompt_in_one_split():
    prompts = [f"question {i % 50}" for i in range(1000)]
    table = pa.table({"id": [f"r{i}" for i in range(1000)],
                      "messages": pa.array([msgs(("user", p), ("assistant", f"answer {i}"))
                                            for i, p in enumerate(prompts)]),
                      "source": ["s"] * 1000})
    split = assign_splits(table, SplitConfig(validation_fraction=0.3, key="prompt"))
    seen: dict[str, set] = {}
    for p, s in zip(prompts, split.column("split").to_pylist(), strict=True):
        seen.setdefault(p, set()).add(s)
    assert all(len(v) == 1 for v in seen.values())
    assert {s for v in seen.values() for s in v} == {"train", "validation"}


def test_split_keep_existing_and_config_checks():
    table = _id_table(100).append_column("split", pa.array(["test"] * 10 + [None] * 90))
    kept_split = assign_splits(table, SplitConfig(keep_existing=True)).column("split")
    assert kept_split.to_pylist()[:10] == ["test"] * 10
    assert "test" not in kept_split.to_pylist()[10:]
    with pytest.raises(ValueError):
        SplitConfig(validation_fraction=0.7, test_fraction=0.5)


def test_split_stage(demo, tmp_path):
    report = run_stage(SPLIT_STAGES["preference"], plan_shards(demo / "preference_ingest"),
                       tmp_path / "split", SplitConfig(validation_fraction=0.2), progress=False)
    assert report.ok and report.rows_kept == report.rows_in
    counts = split_counts(tmp_path / "split")
    assert set(counts) == {"train", "validation"} and sum(counts.values()) == report.rows_in
    assert verify_stage(tmp_path / "split").ok


# --- views and the transform hook ------------------------------------------------------------


def test_views_render_conversations():
    table = pa.table({"id": ["p"], "prompt": pa.array([msgs(("user", "Q"))]),
                      "chosen": pa.array([msgs(("assistant", "good"))]),
                      "rejected": pa.array([msgs(("assistant", "bad"))]), "source": ["s"]})
    assert render(table).to_pylist() == [
        "user: Q\n\n[chosen]\nassistant: good\n\n[rejected]\nassistant: bad"]
    assert render(table, "prompt").to_pylist() == ["user: Q"]
    docs = documents_view(table)
    assert docs.column_names == ["id", "text", "url", "source"]
    turns = turns_view(table)
    assert turns.column("id").to_pylist() == ["p#prompt:1", "p#chosen:1", "p#rejected:1"]
    assert turns.column("text").to_pylist() == ["Q", "good", "bad"]


def test_documents_transform_rewrites_and_drops():
    table = pa.table({
        "id": ["a", "b", "c"],
        "messages": pa.array([msgs(("user", "mail me at x@y.org"), ("assistant", "ok")),
                              msgs(("user", "benchmark question 17"), ("assistant", "42")),
                              CHAT]),
        "source": ["s"] * 3, "split": pa.nulls(3, pa.string())})

    def redact(docs: pa.Table) -> StageOutput:
        import pyarrow.compute as pc

        text = pc.replace_substring_regex(docs.column("text"), r"\S+@\S+", "[EMAIL]")
        docs = docs.set_column(docs.schema.get_field_index("text"), "text", text)
        contaminated = pc.match_substring(docs.column("text"), "benchmark")
        rejected = docs.filter(contaminated)
        rejected = (rejected.append_column("reject_reason",
                                           pa.array(["contaminated"] * rejected.num_rows))
                    .append_column("reject_detail", pa.array(["13-gram match"]
                                                             * rejected.num_rows)))
        return StageOutput(docs.filter(pc.invert(contaminated)), rejected, docs.num_rows)

    out = apply_documents_transform(table, redact, "sft_pii")
    assert kept(out) == {"a": msgs(("user", "mail me at [EMAIL]"), ("assistant", "ok")),
                         "c": CHAT}
    row = out.rejected.to_pylist()[0]
    assert (row["id"], row["reject_reason"], row["reject_stage"]) == ("b", "contaminated",
                                                                      "sft_pii")
    assert row["reject_detail"] == "messages:1: 13-gram match"
    dropped = apply_documents_transform(table, lambda d: d.slice(0, 0), "x")
    assert set(reasons(dropped).values()) == {"dropped_by_transform"}


# --- commands --------------------------------------------------------------------------------


def test_cli_end_to_end(tmp_path):
    from curate.labelled.cli import labelled

    runner = CliRunner()
    result = runner.invoke(labelled, ["demo", "--output", str(tmp_path / "raw")])
    assert result.exit_code == 0, result.output
    common = ["--workers", "1", "--quiet"]
    result = runner.invoke(labelled, ["ingest", "--input", str(tmp_path / "raw" / "sft"),
                                      "--output", str(tmp_path / "sft"), *common])
    assert result.exit_code == 0, result.output
    assert "stage sft_ingest" in result.output and "duplicate_id" in result.output
    result = runner.invoke(labelled, ["validate", "--input", str(tmp_path / "sft"),
                                      "--output", str(tmp_path / "valid"), *common,
                                      "--set", "max_turns=2"])
    assert result.exit_code == 0 and "too_long" in result.output, result.output
    result = runner.invoke(labelled, ["split", "--input", str(tmp_path / "valid"),
                                      "--output", str(tmp_path / "split"), *common,
                                      "--set", "validation_fraction=0.25"])
    assert result.exit_code == 0 and "validation" in result.output, result.output
    result = runner.invoke(labelled, ["ingest", "--input", str(tmp_path / "raw"),
                                      "--output", str(tmp_path / "mixed"), *common])
    assert result.exit_code != 0 and "no labelled layout fits" in result.output
    result = runner.invoke(labelled, ["filter", "--input", str(tmp_path / "raw"),
                                      "--output", str(tmp_path / "x"), *common])
    assert result.exit_code != 0 and "_manifest.json" in result.output
    result = runner.invoke(labelled, ["ingest", "--input", str(tmp_path / "raw" / "preference"),
                                      "--output", str(tmp_path / "bad"), *common,
                                      "--kind", "sft"])
    assert result.exit_code == 1 and "look like preference data" in result.output


def test_validate_stage_over_a_folder(demo, tmp_path):
    report = run_stage(VALIDATE_STAGES["preference"], plan_shards(demo / "preference_ingest"),
                       tmp_path / "v", ValidationConfig(max_chars=300), progress=False)
    assert report.ok and report.rows_rejected > 0
    assert set(report.reasons) == {"too_long"}
    assert report.rows_in == report.rows_kept + report.rows_rejected
    assert verify_stage(tmp_path / "v").ok
