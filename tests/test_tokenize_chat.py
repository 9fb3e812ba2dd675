"""Chat tokenization: the loss mask covers exactly the assistant replies and their end-of-turn
token, prompts tokenize to a prefix of prompt + reply, no BOS is doubled, truncation and
packing are explicit and counted, and the shards load in ``datasets`` and train TRL's SFT and
reward trainers on a tiny model without being tokenized again."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from click.testing import CliRunner

from curate import demo_text
from curate.config import StageConfig
from curate.ingest import INGEST, IngestConfig, plan_ingest
from curate.labelled.tokenize_chat import (
    INDEX_DIR,
    META_NAME,
    PreferenceTokenizeConfig,
    SftTokenizeConfig,
    chat_token_stats,
    pack_bfd,
    run_preference_tokenize,
    run_sft_tokenize,
    trl_dataset,
)
from curate.runner import Stage, StageOutput, WorkUnit, run_stage
from curate.tokenizer import TokenizerConfig, train_tokenizer
from schemas import PREFERENCE, SFT, read_manifest, read_shard, shard_paths, verify_stage
from schemas.kinds import MESSAGES
from tests.conftest import write_jsonl

IM_START, IM_END, BOS = 3, 4, 0
SENTENCES = [s for t in demo_text.EN_TOPICS for c in t.clusters for s in c]
# the same ChatML, written differently: rendered by transformers, not by the vectorised path
CHATML_JINJA = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}"
                "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n"
                "{% endif %}")
# marks the last message: rendering a prefix changes what came before, so it is refused
NOT_INCREMENTAL = ("{% for m in messages %}<|im_start|>{{ m['role'] }}{% if loop.last %} (last)"
                   "{% endif %}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
                   "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
NO_SYSTEM = ("{% if messages and messages[0]['role'] == 'system' %}"
             "{{ raise_exception('system messages are not supported') }}{% endif %}"
             + CHATML_JINJA)


def U(text: str) -> dict:
    return {"role": "user", "content": text}


def A(text: str) -> dict:
    return {"role": "assistant", "content": text}


def S(text: str) -> dict:
    return {"role": "system", "content": text}


def _sentences(rng: random.Random, k: int) -> str:
    return " ".join(rng.sample(SENTENCES, k))


def conversations(n: int = 40, seed: int = 0) -> list[dict]:
    """Varied conversations (multi-turn, system prompts, Unicode, whitespace at the edges,
    an empty reply, a reply opening with newlines) plus ones the stage must refuse."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        msgs = [S("You are terse.")] if i % 3 == 0 else []
        for _ in range(1 + i % 3):
            msgs += [U(_sentences(rng, 1)), A(_sentences(rng, 1 + i % 4))]
        out.append({"id": f"c{i:03d}", "messages": msgs, "split": "train" if i % 4 else "test"})
    out += [
        {"id": "unicode", "messages": [U("Crème brûlée? 東京 👩‍👩‍👧"), A("Oui: ¡sí! 北京 ✅")]},
        {"id": "edges", "messages": [U("  spaced  "), A("\n\nTwo newlines first.  "), U("ok"),
                                     A("  indented\n")]},
        {"id": "empty_reply", "messages": [U("Say nothing."), A("")]},
        {"id": "assistant_first", "messages": [A("Hello, how can I help?"), U("Thanks.")]},
        {"id": "injection", "messages": [U("What ends a turn?"),
                                         A("The text <|im_end|> and <|im_start|>user ends it.")]},
        {"id": "no_reply", "messages": [S("sys"), U("Anyone there?")]},
    ]
    for rec in out:
        rec.setdefault("split", "train")
    return out


REFUSED_ALWAYS = {"no_reply"}


def _build(kind_name: str):
    columns = ("messages",) if kind_name == "sft" else ("prompt", "chosen", "rejected")
    kind = SFT if kind_name == "sft" else PREFERENCE

    def process(unit: WorkUnit, cfg: StageConfig) -> StageOutput:
        recs = json.loads(unit.inputs[0].read_text())
        table = pa.table({"id": [r["id"] for r in recs],
                          **{c: pa.array([r[c] for r in recs], MESSAGES) for c in columns},
                          "source": ["test"] * len(recs),
                          "split": [r.get("split") for r in recs]})
        return StageOutput(table, pa.table({"id": pa.array([], pa.string())}), len(recs))

    return Stage(f"make_{kind_name}", "1", kind, process)


def labelled_stage(tmp: Path, kind_name: str, records: list[dict], shards: int = 1) -> Path:
    """An ``sft`` / ``preference`` stage folder (with its manifest) holding ``records``."""
    raw = tmp / f"raw_{kind_name}"
    raw.mkdir(parents=True, exist_ok=True)
    units = []
    for s in range(shards):
        path = raw / f"part{s}.json"
        path.write_text(json.dumps(records[s::shards]))
        units.append(WorkUnit(f"part-{s}.arrow", (path,)))
    out = tmp / kind_name
    assert run_stage(_build(kind_name), units, out, StageConfig(), progress=False).ok
    return out


def _train(tmp: Path, add_bos: bool) -> Path:
    records = [{"id": f"d{i}", "text": " ".join(c)}
               for i, c in enumerate(c for t in demo_text.EN_TOPICS for c in t.clusters)]
    records.append({"id": "intl", "text": "Crème brûlée 東京 北京 ¡sí! 👩‍👩‍👧 ✅ \n\n  spaced"})
    write_jsonl(tmp / "raw" / "docs.jsonl", records)
    docs = tmp / "docs"
    if not docs.exists():
        assert run_stage(INGEST, plan_ingest(tmp / "raw"), docs, IngestConfig(),
                         progress=False).ok
    out = tmp / ("tok_bos" if add_bos else "tok")
    train_tokenizer([docs], out, TokenizerConfig(vocab_size=600, add_bos=add_bos))
    return out


@pytest.fixture(scope="module")
def tok_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("chat_tok")
    return {"plain": _train(tmp, False), "bos": _train(tmp, True)}


@pytest.fixture(scope="module")
def sft_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return labelled_stage(tmp_path_factory.mktemp("sft"), "sft", conversations(), shards=2)


def _hf(folder: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(folder), local_files_only=True)


def _hf_ids(hf, msgs: list[dict], generation: bool = False) -> list[int]:
    """transformers' own render + tokenization (batched form: it accepts an empty prefix)."""
    return list(hf.apply_chat_template([msgs], tokenize=True, add_generation_prompt=generation,
                                       return_dict=True)["input_ids"][0])


def _rows(stage_dir: Path) -> dict[str, dict]:
    return {r["id"]: r for p in shard_paths(stage_dir) for r in read_shard(p).to_pylist()}


def _rejected(stage_dir: Path) -> dict[str, tuple[str, str]]:
    return {r["id"]: (r["reject_reason"], r["reject_detail"])
            for p in shard_paths(stage_dir, rejected=True) for r in read_shard(p).to_pylist()}


def _runs(mask: list[int]) -> list[tuple[int, int]]:
    """(start, end) of every run of 1s."""
    padded = np.concatenate([[0], np.asarray(mask, np.int8), [0]])
    edges = np.flatnonzero(np.diff(padded))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist(), strict=True))


def _expected_mask(hf, msgs: list[dict], n_tokens: int) -> list[int]:
    """From transformers alone: each assistant reply starts where the prompt rendered with the
    generation prompt ends and runs through the next <|im_end|>."""
    full = _hf_ids(hf, msgs)
    mask = [0] * n_tokens
    for k, msg in enumerate(msgs):
        if msg["role"] == "assistant":
            start = len(_hf_ids(hf, msgs[:k], generation=True))
            end = full.index(IM_END, start) + 1
            mask[start:end] = [1] * (end - start)
    return mask


# --- the mask --------------------------------------------------------------------------------

@pytest.mark.parametrize("variant", ["chatml", "chatml_bos", "template"])
def test_mask_is_exactly_the_replies_and_end_of_turn(variant: str, tok_dirs, sft_dir: Path,
                                                     tmp_path: Path) -> None:
    tok = tok_dirs["bos" if variant == "chatml_bos" else "plain"]
    template = CHATML_JINJA if variant == "template" else None
    out = tmp_path / "tokens"
    report = run_sft_tokenize(sft_dir, out, SftTokenizeConfig(tokenizer=str(tok),
                                                              chat_template=template))
    assert report.ok and report.rows_in == report.rows_kept + report.rows_rejected
    meta = json.loads((out / META_NAME).read_text())
    assert meta["vectorised_chatml"] == (variant != "template")
    rows, rejected = _rows(out), _rejected(out)
    hf = _hf(tok)
    records = {r["id"]: r for r in conversations()}
    refused = {"no_reply": "no_assistant_turn"}
    if variant == "template":  # special tokens are parsed from the render: such text refused
        refused["injection"] = "special_token_in_content"
    assert {k: v[0] for k, v in rejected.items()} == refused
    assert set(rows) == set(records) - set(refused)
    for cid, row in rows.items():
        msgs, ids, mask = records[cid]["messages"], row["input_ids"], row["loss_mask"]
        assert len(ids) == len(mask) and any(mask), cid  # never all zeros
        assert row["assistant_masks"] == mask
        assert ids.count(BOS) == (1 if variant == "chatml_bos" else 0), cid  # no double BOS
        replies = [m["content"] for m in msgs if m["role"] == "assistant"]
        runs = _runs(mask)
        assert len(runs) == len(replies), cid
        for (start, end), reply in zip(runs, replies, strict=True):
            assert ids[end - 1] == IM_END and IM_END not in ids[start:end - 1], cid
            assert ids[start - 1] != IM_END  # the header before it is not trained on
            assert hf.decode(ids[start:end]) == reply + "<|im_end|>", cid
        if cid == "injection":  # the markers in the text stay text: one <|im_end|> per turn
            assert ids.count(IM_END) == len(msgs) and ids.count(IM_START) == len(msgs)
            continue
        assert ids == _hf_ids(hf, msgs), cid  # the tokenizer's own chat template, to the id
        assert mask == _expected_mask(hf, msgs, len(ids)), cid


def test_prompt_ids_are_a_prefix_of_prompt_and_reply(tok_dirs, sft_dir: Path,
                                                     tmp_path: Path) -> None:
    for name, tok in tok_dirs.items():
        out = tmp_path / name
        assert run_sft_tokenize(sft_dir, out, SftTokenizeConfig(tokenizer=str(tok))).ok
        hf = _hf(tok)
        header = [IM_START, *hf.encode("assistant\n", add_special_tokens=False)]
        records = {r["id"]: r for r in conversations()}
        for cid, row in _rows(out).items():
            msgs = records[cid]["messages"]
            starts = [s for s, _ in _runs(row["loss_mask"])]
            turns = [k for k, m in enumerate(msgs) if m["role"] == "assistant"]
            for k, start in zip(turns, starts, strict=True):
                if cid != "injection":  # what a server renders and tokenizes to generate
                    prompt = _hf_ids(hf, msgs[:k], generation=True)
                    assert row["input_ids"][:len(prompt)] == prompt, (name, cid, k)
                    assert len(prompt) == start
                assert row["input_ids"][start - len(header):start] == header


def test_stage_folder_verifies_and_resumes(tok_dirs, sft_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "tokens"
    cfg = SftTokenizeConfig(tokenizer=str(tok_dirs["plain"]))
    first = run_sft_tokenize(sft_dir, out, cfg)
    assert first.done == 2 and verify_stage(out).ok
    manifest = read_manifest(out)
    assert manifest.kind == "sft_tokens" and manifest.kind_version == "1.1"
    again = run_sft_tokenize(sft_dir, out, cfg)
    assert again.skipped == 2 and again.done == 0
    other = run_sft_tokenize(sft_dir, out, cfg.model_copy(update={"chat_template": CHATML_JINJA}))
    assert other.done == 2  # another template is another output
    with open(shard_paths(out)[0], "rb") as f:  # uncompressed, narrowest ids
        schema = pa.ipc.open_file(f).schema
    assert schema.field("input_ids").type == pa.list_(pa.uint16())
    with pytest.raises(ValueError, match="holds sft shards, not preference"):
        run_preference_tokenize(sft_dir, tmp_path / "p",
                                PreferenceTokenizeConfig(tokenizer=str(tok_dirs["plain"])))


def test_templates_that_cannot_be_masked_are_refused_per_row(tok_dirs, tmp_path: Path) -> None:
    records = [{"id": "plain", "messages": [U("a"), A("b")]},
               {"id": "two", "messages": [U("a"), A("b"), U("c"), A("d")]},
               {"id": "system", "messages": [S("s"), U("a"), A("b")]}]
    sft = labelled_stage(tmp_path, "sft", records)
    for template, expected in ((NOT_INCREMENTAL, {"plain": "template_not_incremental",
                                                  "two": "template_not_incremental",
                                                  "system": "template_not_incremental"}),
                               (NO_SYSTEM, {"system": "template_error"})):
        out = tmp_path / f"out{len(template)}"
        cfg = SftTokenizeConfig(tokenizer=str(tok_dirs["plain"]), chat_template=template)
        report = run_sft_tokenize(sft, out, cfg)
        assert report.ok and report.rows_in == 3
        rejected = _rejected(out)
        assert {k: v[0] for k, v in rejected.items()} == expected
    assert "system messages are not supported" in rejected["system"][1]


def test_whole_render_path_equals_split_path(tok_dirs, sft_dir: Path) -> None:
    """Tokenizers whose special tokens strip spaces get the render encoded whole, special
    tokens parsed by the tokenizer; ours split it at the special tokens: same ids, same mask."""
    from dataclasses import replace

    from curate.labelled.tokenize_chat import chat_format, tokenize_sft_table, with_fingerprint
    from curate.tokenizer import load_tokenizer

    cfg = with_fingerprint(SftTokenizeConfig(tokenizer=str(tok_dirs["plain"]),
                                             chat_template=CHATML_JINJA))
    tok = load_tokenizer(tok_dirs["plain"])
    fmt = chat_format(tok, CHATML_JINJA)
    assert not fmt.chatml and fmt.special_ids
    table = pa.concat_tables(read_shard(p) for p in shard_paths(sft_dir))
    split = tokenize_sft_table(table, cfg, tok, fmt)
    whole = tokenize_sft_table(table, cfg, tok, replace(fmt, special_ids={}))
    assert split.kept.equals(whole.kept) and split.rejected.equals(whole.rejected)


# --- truncation and packing ------------------------------------------------------------------

def test_truncation_is_explicit_and_counted(tok_dirs, sft_dir: Path, tmp_path: Path) -> None:
    tok = str(tok_dirs["plain"])
    assert run_sft_tokenize(sft_dir, tmp_path / "full", SftTokenizeConfig(tokenizer=tok)).ok
    lengths = {cid: len(r["input_ids"]) for cid, r in _rows(tmp_path / "full").items()}
    limit = int(np.median(list(lengths.values())))
    dropped = run_sft_tokenize(sft_dir, tmp_path / "drop",
                               SftTokenizeConfig(tokenizer=tok, max_length=limit))
    too_long = {cid for cid, n in lengths.items() if n > limit}
    assert dropped.reasons["too_long"] == len(too_long) > 0
    assert set(_rows(tmp_path / "drop")) == set(lengths) - too_long
    assert "> max_length" in _rejected(tmp_path / "drop")[sorted(too_long)[0]][1]

    cut = run_sft_tokenize(sft_dir, tmp_path / "cut",
                           SftTokenizeConfig(tokenizer=tok, max_length=limit,
                                             truncation="truncate"))
    rows = _rows(tmp_path / "cut")
    full_rows = _rows(tmp_path / "full")
    for cid, row in rows.items():
        n = min(lengths[cid], limit)
        assert row["input_ids"] == full_rows[cid]["input_ids"][:n]
        assert row["loss_mask"] == full_rows[cid]["loss_mask"][:n] and any(row["loss_mask"])
    lost = {cid for cid in too_long if not any(full_rows[cid]["loss_mask"][:limit])}
    assert set(rows) == set(lengths) - lost
    assert cut.reasons.get("too_long", 0) == len(lost)
    stats = chat_token_stats(tmp_path / "cut")
    assert stats["truncated"] == len(too_long - lost) > 0
    index = {r["doc_id"]: r for p in shard_paths(tmp_path / "cut")
             for r in read_shard(p.parent / INDEX_DIR / p.name).to_pylist()}
    assert {cid for cid, r in index.items() if r["truncated"]} == too_long - lost


def test_pack_bfd_fits_rows_and_keeps_groups_apart() -> None:
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 100, 500)
    groups = np.array(["a", "b"] * 250, dtype=object)
    row = pack_bfd(lengths, groups, 128)
    per_row = np.bincount(row, weights=lengths)
    assert per_row.max() <= 128
    assert per_row.sum() / (len(per_row) * 128) > 0.9  # best fit packs tightly
    for r in np.unique(row):
        assert len(set(groups[row == r])) == 1
    assert np.array_equal(row, pack_bfd(lengths, groups, 128))


def test_packing_keeps_boundaries(tok_dirs, sft_dir: Path, tmp_path: Path) -> None:
    tok = str(tok_dirs["plain"])
    assert run_sft_tokenize(sft_dir, tmp_path / "one", SftTokenizeConfig(tokenizer=tok)).ok
    alone = _rows(tmp_path / "one")
    report = run_sft_tokenize(sft_dir, tmp_path / "packed",
                              SftTokenizeConfig(tokenizer=tok, packing=True, max_length=1024))
    assert report.ok and report.rows_kept == len(alone)  # conversations, not packed rows
    assert verify_stage(tmp_path / "packed").ok
    records = {r["id"]: r for r in conversations()}
    seen = set()
    for path in shard_paths(tmp_path / "packed"):
        rows = read_shard(path).to_pylist()
        index = read_shard(path.parent / INDEX_DIR / path.name).to_pylist()
        assert len(rows) < len(index)
        for entry in index:
            row = rows[entry["row"]]
            span = slice(entry["offset"], entry["offset"] + entry["length"])
            assert row["input_ids"][span] == alone[entry["doc_id"]]["input_ids"]
            assert row["loss_mask"][span] == alone[entry["doc_id"]]["loss_mask"]
            assert records[entry["doc_id"]]["split"] == row["split"]  # splits never mix
            seen.add(entry["doc_id"])
        for row in rows:
            assert sum(row["seq_lengths"]) == len(row["input_ids"]) <= 1024
            starts = np.cumsum([0, *row["seq_lengths"][:-1]])
            assert [e["offset"] for e in index if rows[e["row"]] is row] == sorted(starts)
    assert seen == set(alone)


# --- preference pairs ------------------------------------------------------------------------

def pairs(n: int = 24, seed: int = 1) -> list[dict]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        prompt = ([S("Be kind.")] if i % 2 else []) + [U(_sentences(rng, 1))]
        if i % 5 == 0:
            prompt += [A(_sentences(rng, 1)), U("And then?")]
        out.append({"id": f"p{i:03d}", "prompt": prompt, "chosen": [A(_sentences(rng, 2))],
                    "rejected": [A(_sentences(rng, 1))]})
    common = _sentences(rng, 8)
    out += [{"id": "user_reply", "prompt": [U("x")], "chosen": [U("y")], "rejected": [A("z")]},
            {"id": "long_prompt", "prompt": [U(_sentences(rng, 12))], "chosen": [A("yes")],
             "rejected": [A("no")]},
            {"id": "same_start", "prompt": [U("Go on.")],
             "chosen": [A(common + " Yes.")], "rejected": [A(common + " No.")]}]
    return out


@pytest.mark.parametrize("template", [None, CHATML_JINJA])
def test_preference_tokens(template: str | None, tok_dirs, tmp_path: Path) -> None:
    tok = tok_dirs["plain"]
    hf = _hf(tok)
    records = {r["id"]: r for r in pairs()}
    pref = labelled_stage(tmp_path, "preference", list(records.values()), shards=2)
    out = tmp_path / "tokens"
    report = run_preference_tokenize(pref, out, PreferenceTokenizeConfig(
        tokenizer=str(tok), chat_template=template, max_length=4096))
    assert report.ok and verify_stage(out).ok
    assert {k: v[0] for k, v in _rejected(out).items()} == {
        "user_reply": "completion_not_assistant"}
    for pid, row in _rows(out).items():
        rec = records[pid]
        assert row["prompt_ids"] == _hf_ids(hf, rec["prompt"], generation=True)
        assert row["prompt_ids"] + row["chosen_ids"] == _hf_ids(hf, rec["prompt"] + rec["chosen"])
        assert row["prompt_ids"] + row["rejected_ids"] == _hf_ids(hf,
                                                                  rec["prompt"] + rec["rejected"])
        assert row["chosen_input_ids"] == row["prompt_ids"] + row["chosen_ids"]
        assert row["rejected_input_ids"] == row["prompt_ids"] + row["rejected_ids"]
        assert hf.decode(row["chosen_ids"]) == rec["chosen"][0]["content"] + "<|im_end|>\n"
        assert not row["truncated"]

    # truncation: replies cut to fit, the prompt kept whole; hopeless rows refused
    rows = _rows(out)
    limit = max(len(r["prompt_ids"]) for pid, r in rows.items() if pid.startswith("p")) + 3
    assert len(rows["long_prompt"]["prompt_ids"]) > limit  # refused: no room for a reply
    assert len(rows["same_start"]["chosen_ids"]) > limit  # its replies differ only at the end
    cut = run_preference_tokenize(pref, tmp_path / "cut", PreferenceTokenizeConfig(
        tokenizer=str(tok), chat_template=template, max_length=limit, truncation="truncate"))
    rejected = _rejected(tmp_path / "cut")
    assert rejected["long_prompt"][0] == "too_long" and "prompt alone" in rejected["long_prompt"][1]
    assert rejected["same_start"][0] == "too_long" and "identical" in rejected["same_start"][1]
    rows = _rows(tmp_path / "cut")
    assert all(len(r["chosen_input_ids"]) <= limit and len(r["rejected_input_ids"]) <= limit
               for r in rows.values())
    assert chat_token_stats(tmp_path / "cut")["truncated"] == sum(r["truncated"]
                                                                 for r in rows.values()) > 0
    drop = run_preference_tokenize(pref, tmp_path / "drop", PreferenceTokenizeConfig(
        tokenizer=str(tok), chat_template=template, max_length=limit))
    assert drop.reasons["too_long"] == cut.reasons["too_long"] + sum(r["truncated"]
                                                                     for r in rows.values())


# --- command line and readers ----------------------------------------------------------------

def test_cli(tok_dirs, sft_dir: Path, tmp_path: Path) -> None:
    from curate.labelled.tokens_cli import preference_tokenize, sft_tokenize

    runner = CliRunner()
    out = tmp_path / "sft_tokens"
    result = runner.invoke(sft_tokenize, ["--input", str(sft_dir), "--output", str(out),
                                          "--workers", "1", "--quiet",
                                          "--set", f"tokenizer={tok_dirs['plain']}",
                                          "--set", "packing=true", "--set", "max_length=1024"])
    assert result.exit_code == 0, result.output
    assert "rejected 1\n" in result.output and "no_assistant_turn" in result.output
    assert "conversations" in result.output and "trained on" in result.output
    pref = labelled_stage(tmp_path, "preference", pairs(6))
    result = runner.invoke(preference_tokenize, ["--input", str(pref), "--output",
                                                 str(tmp_path / "p"), "--quiet", "--set",
                                                 f"tokenizer={tok_dirs['plain']}"])
    assert result.exit_code == 0, result.output
    assert "in 8 pairs" in result.output and "completion_not_assistant" in result.output
    bad = runner.invoke(sft_tokenize, ["--input", str(sft_dir), "--output", str(tmp_path / "x"),
                                       "--set", "truncation=maybe"])
    assert bad.exit_code != 0 and "truncation" in bad.output


def test_cli_options_match_the_shared_ones() -> None:
    import click

    from curate.cli import stage_options
    from curate.labelled.tokens_cli import sft_tokenize

    shared = stage_options(click.command()(lambda **kw: None))
    ours = {(p.name, tuple(p.opts), p.required, p.multiple) for p in sft_tokenize.params}
    assert ours == {(p.name, tuple(p.opts), p.required, p.multiple) for p in shared.params}


def test_shards_load_with_datasets(tok_dirs, sft_dir: Path, tmp_path: Path) -> None:
    import datasets

    out = tmp_path / "tokens"
    assert run_sft_tokenize(sft_dir, out, SftTokenizeConfig(tokenizer=str(tok_dirs["plain"]))).ok
    files = [str(p) for p in shard_paths(out)]
    ds = datasets.load_dataset("arrow", data_files=files, split="train",
                               cache_dir=str(tmp_path / "hf"))
    assert ds.num_rows == sum(read_shard(p).num_rows for p in shard_paths(out))
    assert {"input_ids", "assistant_masks", "loss_mask"} <= set(ds.column_names)
    assert ds[0]["input_ids"] == read_shard(shard_paths(out)[0])["input_ids"][0].as_py()
    view = trl_dataset(out, "sft", cache_dir=tmp_path / "hf")
    assert view.column_names == ["input_ids", "assistant_masks"]


# --- TRL -------------------------------------------------------------------------------------

def _tiny_llama(hf, cls):
    import torch
    from transformers import LlamaConfig

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(hf), hidden_size=32, intermediate_size=64,
                         num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2,
                         max_position_embeddings=1024, pad_token_id=hf.pad_token_id,
                         bos_token_id=hf.bos_token_id, eos_token_id=hf.eos_token_id,
                         num_labels=1)
    return cls(config)


def _args(cls, out: Path, **extra):
    return cls(output_dir=str(out), max_steps=2, per_device_train_batch_size=2,
               learning_rate=1e-3, report_to=[], logging_steps=1, save_strategy="no",
               use_cpu=True, max_length=None, disable_tqdm=True, **extra)


def test_trl_trains_on_the_shards_without_tokenizing(tok_dirs, sft_dir: Path,
                                                     tmp_path: Path) -> None:
    trl = pytest.importorskip("trl")
    import datasets
    import torch
    from transformers import LlamaForCausalLM, LlamaForSequenceClassification

    tok = tok_dirs["plain"]
    hf = _hf(tok)

    def refuse(*args, **kwargs):
        raise AssertionError("TRL tried to apply the chat template: the data was re-tokenized")

    hf.apply_chat_template = refuse

    # SFTTrainer on the raw shards as `datasets` loads them: labels come from assistant_masks
    out = tmp_path / "sft_tokens"
    assert run_sft_tokenize(sft_dir, out, SftTokenizeConfig(tokenizer=str(tok))).ok
    ds = datasets.load_dataset("arrow", data_files=[str(p) for p in shard_paths(out)],
                               split="train", cache_dir=str(tmp_path / "hf"))
    trainer = trl.SFTTrainer(model=_tiny_llama(hf, LlamaForCausalLM),
                             args=_args(trl.SFTConfig, tmp_path / "sft", shuffle_dataset=False),
                             train_dataset=ds, processing_class=hf)
    for example in trainer.train_dataset.select(range(5)):
        ids, mask = np.asarray(example["input_ids"]), np.asarray(example["loss_mask"])
        assert np.array_equal(example["labels"], np.where(mask == 1, ids, -100))
    result = trainer.train()
    assert result.global_step == 2 and np.isfinite(result.training_loss)

    # packed rows, padding-free: each conversation attends only to itself
    packed = tmp_path / "packed"
    assert run_sft_tokenize(sft_dir, packed, SftTokenizeConfig(
        tokenizer=str(tok), packing=True, max_length=512)).ok
    view = trl_dataset(packed, "sft", cache_dir=tmp_path / "hf")
    trainer = trl.SFTTrainer(model=_tiny_llama(hf, LlamaForCausalLM),
                             args=_args(trl.SFTConfig, tmp_path / "sftp", padding_free=True),
                             train_dataset=view, processing_class=hf)
    example = trainer.train_dataset[0]
    batch = trainer.data_collator([example])
    model = trainer.model.eval()
    with torch.no_grad():
        together = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"],
                         use_cache=False).logits[0]
        apart = torch.cat([model(input_ids=x[None], use_cache=False).logits[0]
                           for x in batch["input_ids"][0].split(example["seq_lengths"])])
    assert len(example["seq_lengths"]) > 1
    assert torch.allclose(together, apart, atol=1e-5)
    assert trainer.train().global_step == 2

    # RewardTrainer on prompt + reply ids
    pref = labelled_stage(tmp_path, "preference", pairs(8))
    assert run_preference_tokenize(pref, tmp_path / "pref_tokens",
                                   PreferenceTokenizeConfig(tokenizer=str(tok))).ok
    reward = trl_dataset(tmp_path / "pref_tokens", "reward", cache_dir=tmp_path / "hf")
    trainer = trl.RewardTrainer(model=_tiny_llama(hf, LlamaForSequenceClassification),
                                args=_args(trl.RewardConfig, tmp_path / "rm"),
                                train_dataset=reward, processing_class=hf)
    raw = _rows(tmp_path / "pref_tokens")
    first = trainer.train_dataset[0]
    assert any(first["chosen_ids"] == r["chosen_input_ids"] for r in raw.values())
    assert trainer.train().global_step == 2
