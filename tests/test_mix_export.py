"""Mixing token stages into a training stream, and exporting token stages."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from click.testing import CliRunner

from curate.cli import main
from curate.config import ConfigError, load_config
from curate.export_tokens import export_tokens, read_megatron, verify_export
from curate.mix import MixConfig, MixedStream, build_mix
from schemas import PRETRAIN_TOKENS, read_shard, write_shard
from schemas.manifest import Manifest, locked_manifest
from schemas.version import __version__

EOS = 0
SEQ = 16


def make_docs(rng: np.random.Generator, n: int, prefix: str, vocab: int = 1000,
              max_len: int = 40) -> list[tuple[str, np.ndarray]]:
    """Random documents, each ending with EOS (ids 1..vocab-1 inside)."""
    docs = []
    for i in range(n):
        body = rng.integers(1, vocab, size=int(rng.integers(1, max_len)))
        docs.append((f"{prefix}-{i}", np.append(body, EOS)))
    return docs


def pack(docs: list[tuple[str, np.ndarray]], seq_len: int,
         dtype: pa.DataType) -> tuple[pa.Table, pa.Table]:
    """Pack documents back to back into rows of seq_len (last row shorter) + the index."""
    stream = np.concatenate([t for _, t in docs])
    lengths = np.array([len(t) for _, t in docs])
    starts = np.cumsum(lengths) - lengths
    n_rows = -(-len(stream) // seq_len)
    ids, seg_starts, seg_ids = [], [], []
    for r in range(n_rows):
        lo, hi = r * seq_len, min((r + 1) * seq_len, len(stream))
        ids.append(stream[lo:hi])
        inside = np.flatnonzero((starts >= lo) & (starts < hi))
        first = int(np.searchsorted(starts, lo, side="right")) - 1
        segs = ([first] if starts[first] < lo else []) + inside.tolist()
        seg_starts.append([max(int(starts[d]) - lo, 0) for d in segs])
        seg_ids.append([docs[d][0] for d in segs])
    table = pa.table({"input_ids": pa.array(ids, pa.list_(dtype)),
                      "segment_starts": pa.array(seg_starts, pa.list_(pa.int32())),
                      "segment_doc_ids": pa.array(seg_ids, pa.list_(pa.string()))})
    index = pa.table({"doc_id": [d for d, _ in docs], "url": [None] * len(docs),
                      "source": ["test"] * len(docs),
                      "row": pa.array(starts // seq_len, pa.int64()),
                      "offset": pa.array(starts % seq_len, pa.int32()),
                      "length": pa.array(lengths, pa.int64())})
    return table, index


def token_stage(folder: Path, shards: list[list[tuple[str, np.ndarray]]], seq_len: int = SEQ,
                vocab: int = 1000, dtype: str = "uint16") -> Path:
    """A pretrain_tokens stage as `curate tokenize` writes it: shards, index, manifest."""
    new = Manifest(stage="tokenize", kind=PRETRAIN_TOKENS.name,
                   kind_version=PRETRAIN_TOKENS.version, library_version=__version__)
    for i, docs in enumerate(shards):
        name = f"part-{i:05d}.arrow"
        table, index = pack(docs, seq_len, pa.uint16() if dtype == "uint16" else pa.uint32())
        info = write_shard(table, folder / name, PRETRAIN_TOKENS)
        (folder / "token_index").mkdir(parents=True, exist_ok=True)
        with pa.OSFile(str(folder / "token_index" / name), "wb") as sink, \
                pa.ipc.new_file(sink, index.schema) as writer:
            writer.write_table(index)
        with locked_manifest(folder, new) as manifest:
            manifest.shards[name] = {
                **info.to_json(), "rows_in": len(docs), "rows_kept": len(docs),
                "rows_rejected": 0, "reject_reasons": {}, "rejected": None, "inputs": [],
                "config_hash": "test", "resume_key": "test", "started_at": 0.0, "seconds": 0.0}
    meta = {"vocab_size": vocab, "eos_id": EOS, "bos_id": None, "pad_id": None,
            "token_dtype": dtype, "seq_len": seq_len, "tokenizer": "test"}
    (folder / "_tokenizer.json").write_text(json.dumps(meta))
    return folder


def rows_stage(folder: Path, rng: np.random.Generator, n_rows: int, prefix: str,
               n_shards: int = 2) -> Path:
    """A stage with about n_rows full rows (docs sized to fill them)."""
    per_shard = []
    for s in range(n_shards):
        docs = make_docs(rng, 1, f"{prefix}{s}")
        target = n_rows // n_shards * SEQ
        total = sum(len(t) for _, t in docs)
        while total < target:
            d = make_docs(rng, 1, f"{prefix}{s}-{len(docs)}")[0]
            docs.append(d)
            total += len(d[1])
        per_shard.append(docs)
    return token_stage(folder, per_shard)


@pytest.fixture(scope="module")
def stages(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("stages")
    rng = np.random.default_rng(0)
    return {"a": rows_stage(root / "a", rng, 8000, "a"),
            "b": rows_stage(root / "b", rng, 4000, "b"),
            "c": rows_stage(root / "c", rng, 3000, "c", n_shards=1)}


def recipe(stages: dict[str, Path], weights: dict[str, float], **kw) -> MixConfig:
    sources = [{"name": n, "path": str(stages[n]), "weight": w, **kw.pop(f"{n}_kw", {})}
               for n, w in weights.items()]
    return MixConfig.model_validate({"sources": sources, **kw})


def test_ratios_hold_overall_and_in_every_window(stages) -> None:
    cfg = recipe(stages, {"a": 0.5, "b": 0.3, "c": 0.2}, total_rows=10_000, window=256)
    plan = build_mix(cfg)
    assert len(plan) == 10_000
    shares = np.array([0.5, 0.3, 0.2])
    counts = np.bincount(plan.source_code, minlength=3)
    assert np.abs(counts / 10_000 - shares).max() < 0.02
    assert counts.tolist() == [5000, 3000, 2000]  # exact, up to rounding
    n_blocks = 10_000 // 256
    blocks = plan.source_code[:n_blocks * 256].reshape(n_blocks, 256)
    per_block = np.stack([(blocks == i).sum(axis=1) for i in range(3)], axis=1)
    assert np.abs(per_block - 256 * shares).max() <= 2
    # sliding windows not aligned with the blocks stay close too
    for start in range(100, 9_000, 997):
        window = plan.source_code[start:start + 1000]
        got = np.bincount(window, minlength=3) / 1000
        assert np.abs(got - shares).max() < 0.03, start
    # each source's rows: no row used twice within one pass (max_repeats 1)
    for i in range(3):
        keys = plan.shard_code[plan.source_code == i] * 100_000 + plan.row[plan.source_code == i]
        assert len(np.unique(keys)) == counts[i]
    real = plan.to_json()["realised_ratios"]
    assert real == pytest.approx({"a": 0.5, "b": 0.3, "c": 0.2}, abs=1e-4)


def test_same_seed_same_stream_other_seed_other_stream(stages, tmp_path: Path) -> None:
    cfg = recipe(stages, {"a": 0.7, "b": 0.3}, total_rows=3000, window=64)
    one, two = build_mix(cfg).write(tmp_path / "one"), build_mix(cfg).write(tmp_path / "two")
    assert (one / "mix.arrow").read_bytes() == (two / "mix.arrow").read_bytes()
    other = build_mix(cfg.model_copy(update={"seed": 1}))
    first = build_mix(cfg)
    assert not np.array_equal(first.row, other.row)
    assert not np.array_equal(first.source_code, other.source_code)
    assert np.bincount(other.source_code).tolist() == np.bincount(first.source_code).tolist()


def test_caps_bind_and_shrink_the_stream(stages, tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    small = rows_stage(tmp_path / "small", rng, 100, "s", n_shards=1)
    rows_small = read_shard(next(small.glob("part-*.arrow"))).num_rows - 1  # short last row
    both = {**stages, "small": small}
    cfg = recipe(both, {"small": 0.8, "a": 0.2}, small_kw={"max_repeats": 2}, window=16)
    plan = build_mix(cfg)
    used = np.bincount(plan.source_code, minlength=2)
    assert used[0] == 2 * rows_small  # exactly the cap
    assert used.tolist() == [2 * rows_small, round(2 * rows_small / 0.8 * 0.2)]
    # every row of the small source is used exactly twice, each pass a fresh permutation
    picks = plan.row[plan.source_code == 0]
    assert np.bincount(picks).tolist() == [2] * rows_small
    assert sorted(picks[:rows_small]) == list(range(rows_small))
    assert not np.array_equal(picks[:rows_small], picks[rows_small:])
    # asking for more than the caps allow shrinks the total and says so
    asked = build_mix(cfg.model_copy(update={"total_rows": 10_000}))
    assert len(asked) == len(plan)
    assert any("shrunk" in note and "'small'" in note for note in asked.notes)
    meta = asked.to_json()["sources"][0]
    assert meta["rows_used"] == meta["rows_cap"] == 2 * rows_small
    assert meta["repeats"] == pytest.approx(2.0)
    # a fractional cap takes a random subset, each row at most once
    half = build_mix(recipe(both, {"small": 0.5, "a": 0.5}, small_kw={"max_repeats": 0.5}))
    picks = half.row[half.source_code == 0]
    assert len(picks) == rows_small // 2 and len(set(picks.tolist())) == len(picks)


def test_full_rows_only(stages) -> None:
    cfg = recipe(stages, {"c": 1.0})
    n_rows = read_shard(next(stages["c"].glob("part-*.arrow"))).num_rows
    assert len(build_mix(cfg)) == n_rows - 1  # the short last row is left out
    assert len(build_mix(cfg.model_copy(update={"full_rows_only": False}))) == n_rows


def mapped_file(arr: np.ndarray) -> str | None:
    """The file mapped at the array's address (Linux /proc/self/maps), None elsewhere."""
    maps = Path("/proc/self/maps")
    if not maps.exists():
        return None
    addr = arr.__array_interface__["data"][0]
    for line in maps.read_text().splitlines():
        parts = line.split(maxsplit=5)
        lo, hi = (int(x, 16) for x in parts[0].split("-"))
        if lo <= addr < hi:
            return parts[5] if len(parts) > 5 else ""
    return ""


def test_mixed_stream_zero_copy_and_resume(stages, tmp_path: Path) -> None:
    cfg = recipe(stages, {"a": 0.6, "c": 0.4}, total_rows=2000, window=32)
    folder = build_mix(cfg).write(tmp_path / "mix")
    before = pa.total_allocated_bytes()
    stream = MixedStream(folder)
    assert len(stream) == 2000
    rows = [stream[i] for i in range(len(stream))]
    assert pa.total_allocated_bytes() - before < 1 << 16  # nothing copied into the pool
    mix = pa.ipc.open_file(folder / "mix.arrow").read_all().to_pydict()
    sources = {"a": stages["a"], "c": stages["c"]}
    cache = {}
    for i in range(0, 2000, 37):
        key = (mix["source"][i], mix["shard"][i])
        if key not in cache:
            cache[key] = read_shard(sources[key[0]] / key[1], memory_map=False)
        want = cache[key].column("input_ids")[mix["row"][i]].as_py()
        assert rows[i].tolist() == want and len(want) == SEQ
        assert stream.source_of(i) == mix["source"][i]
    for i in (0, 5, 1999):
        row, shard = stream[i], stream._shards[stream._shard_id[i]]
        assert not row.flags.owndata and not row.flags.writeable
        assert any(np.shares_memory(row, v) for v in shard.values)
        assert mapped_file(row) in (None, str(shard.path.resolve()))
    assert np.array_equal(stream[-1], stream[1999])
    with pytest.raises(IndexError):
        stream[2000]
    copy = pickle.loads(pickle.dumps(stream))  # what a DataLoader worker gets
    assert len(copy) == 2000 and np.array_equal(copy[77], stream[77])
    # resume: consume some rows, save, reopen, load, continue
    it = iter(stream)
    first = [next(it).copy() for _ in range(700)]
    state = stream.state_dict()
    assert state["position"] == 700
    again = MixedStream(folder)
    again.load_state_dict(state)
    rest = list(again)
    assert len(first) + len(rest) == 2000
    assert all(np.array_equal(a, stream[700 + k]) for k, a in enumerate(rest))
    other = build_mix(cfg.model_copy(update={"seed": 9})).write(tmp_path / "other")
    with pytest.raises(ValueError, match="state is for mix"):
        MixedStream(other).load_state_dict(state)


def test_mix_refuses_changed_sources_and_other_tokenizers(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    a = rows_stage(tmp_path / "a", rng, 40, "a", n_shards=1)
    b = rows_stage(tmp_path / "b", rng, 40, "b", n_shards=1)
    folder = build_mix(recipe({"a": a, "b": b}, {"a": 1, "b": 1})).write(tmp_path / "mix")
    meta = json.loads((b / "_tokenizer.json").read_text())
    (b / "_tokenizer.json").write_text(json.dumps({**meta, "vocab_size": 5000}))
    with pytest.raises(ValueError, match=r"tokenized differently.*vocab_size"):
        build_mix(recipe({"a": a, "b": b}, {"a": 1, "b": 1}))
    rows_stage(a, np.random.default_rng(3), 40, "a", n_shards=1)  # re-tokenized in place
    with pytest.raises(ValueError, match="changed since the mix was built"):
        MixedStream(folder)


def test_bad_inputs_give_clear_errors(stages, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no such folder"):
        build_mix(recipe({"x": tmp_path / "missing"}, {"x": 1.0}))
    docs = tmp_path / "docs"
    with locked_manifest(docs, Manifest("ingest", "documents", "1.0", __version__)):
        pass
    with pytest.raises(ValueError, match=r"'documents' shards.*not 'pretrain_tokens'"):
        build_mix(recipe({"d": docs}, {"d": 1.0}))
    with pytest.raises(ValueError, match="not 'pretrain_tokens'"):
        export_tokens(docs, "bin", tmp_path / "out")
    with pytest.raises(FileNotFoundError):
        export_tokens(tmp_path / "missing", "hf", tmp_path / "out")
    path = tmp_path / "recipe.yaml"
    path.write_text(f"sources:\n  - {{name: a, path: {stages['a']}, weight: 0}}\n")
    with pytest.raises(ConfigError, match="weight must be a positive number"):
        load_config(MixConfig, path)
    result = CliRunner().invoke(main, ["mix", "--config", str(path), "--output",
                                       str(tmp_path / "m")])
    assert result.exit_code != 0 and "weight must be a positive number" in result.output
    with pytest.raises(ConfigError, match="unique"):
        load_config(MixConfig, None, (f"sources=[{{name: a, path: {stages['a']}, weight: 1}}, "
                                      f"{{name: a, path: {stages['b']}, weight: 1}}]",))


def export_stage(tmp_path: Path, dtype: str = "uint16", vocab: int = 1000) -> tuple[Path, list]:
    rng = np.random.default_rng(7)
    shards = [make_docs(rng, 60, "x", vocab=vocab), make_docs(rng, 1, "y", vocab=vocab),
              make_docs(rng, 45, "z", vocab=vocab, max_len=90)]
    return token_stage(tmp_path / "tokens", shards, vocab=vocab, dtype=dtype), shards


def test_hf_export_loads_with_datasets(tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    stage, _ = export_stage(tmp_path)
    result = export_tokens(stage, "hf", tmp_path / "hf")
    assert verify_export(stage, "hf", tmp_path / "hf").ok
    ds = datasets.load_from_disk(str(tmp_path / "hf"))
    source = pa.concat_tables([read_shard(p) for p in sorted(stage.glob("part-*.arrow"))])
    assert len(ds) == source.num_rows == result.rows
    assert ds["input_ids"] == source.column("input_ids").to_pylist()
    assert ds[3]["segment_doc_ids"] == source.column("segment_doc_ids")[3].as_py()
    files = sorted(str(p) for p in (tmp_path / "hf").glob("data-*.arrow"))
    loaded = datasets.load_dataset("arrow", data_files=files, split="train",
                                   cache_dir=str(tmp_path / "cache"))
    assert loaded["input_ids"] == source.column("input_ids").to_pylist()
    # re-export replaces the folder; a folder that is not a dataset is refused
    export_tokens(stage, "hf", tmp_path / "hf")
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError):
        export_tokens(stage, "hf", tmp_path / "busy")


@pytest.mark.parametrize("dtype,vocab", [("uint16", 1000), ("uint32", 70_000)])
def test_megatron_export_round_trips_every_document(tmp_path: Path, dtype: str,
                                                    vocab: int) -> None:
    stage, shards = export_stage(tmp_path, dtype, vocab)
    result = export_tokens(stage, "megatron", tmp_path / "out" / "corpus.bin")
    assert [p.name for p in result.paths] == ["corpus.bin", "corpus.idx"]
    check = verify_export(stage, "megatron", tmp_path / "out" / "corpus")
    assert check.ok, check.summary()
    docs = [t for shard in shards for _, t in shard]
    assert check.checked == len(docs) == result.documents
    got = read_megatron(tmp_path / "out" / "corpus")
    assert got.dtype == np.dtype(np.uint16 if vocab < 65500 else np.int32)
    assert len(got) == len(docs) and got.doc_idx.tolist() == list(range(len(docs) + 1))
    assert all(np.array_equal(got[i], d) for i, d in enumerate(docs))
    raw = (tmp_path / "out" / "corpus.idx").read_bytes()
    assert raw[:9] == b"MMIDIDX\x00\x00" and raw[17] == (8 if vocab < 65500 else 4)
    # a flipped token is caught and named
    data = bytearray((tmp_path / "out" / "corpus.bin").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (tmp_path / "out" / "corpus.bin").write_bytes(bytes(data))
    bad = verify_export(stage, "megatron", tmp_path / "out" / "corpus")
    assert not bad.ok and "differs from the source" in bad.problems[0]


@pytest.mark.parametrize("dtype,vocab,want", [("uint16", 1000, np.uint16),
                                              ("uint32", 1000, np.uint16),
                                              ("uint32", 70_000, np.uint32)])
def test_flat_bin_round_trips_the_stream(tmp_path: Path, dtype: str, vocab: int,
                                         want: type) -> None:
    stage, shards = export_stage(tmp_path, dtype, vocab)
    export_tokens(stage, "bin", tmp_path / "train")
    meta = json.loads((tmp_path / "train.json").read_text())
    assert meta["dtype"] == np.dtype(want).name
    tokens = np.memmap(tmp_path / "train.bin", dtype=meta["dtype"], mode="r")
    stream = np.concatenate([t for shard in shards for _, t in shard])
    assert np.array_equal(tokens, stream) and meta["tokens"] == len(stream)
    assert meta["documents"] == sum(len(s) for s in shards)
    assert verify_export(stage, "bin", tmp_path / "train.bin").ok
    with open(tmp_path / "train.bin", "r+b") as f:
        f.truncate(f.seek(0, 2) - 2)
    assert not verify_export(stage, "bin", tmp_path / "train").ok


def test_cli_mix_and_export(stages, tmp_path: Path) -> None:
    path = tmp_path / "recipe.yaml"
    path.write_text(f"mix:\n  sources:\n    - {{name: a, path: {stages['a']}, weight: 0.8}}\n"
                    f"    - {{name: b, path: {stages['b']}, weight: 0.2}}\n  seed: 3\n")
    runner = CliRunner()
    out = runner.invoke(main, ["mix", "--config", str(path), "--output", str(tmp_path / "m")])
    assert out.exit_code == 0, out.output
    assert "realised" in out.output and (tmp_path / "m" / "_mix.json").exists()
    meta = json.loads((tmp_path / "m" / "_mix.json").read_text())
    assert meta["seed"] == 3 and meta["total_rows"] == len(MixedStream(tmp_path / "m"))
    assert meta["realised_ratios"]["a"] == pytest.approx(0.8, abs=1e-3)
    for fmt, target in (("bin", "flat"), ("megatron", "mega"), ("hf", "hf")):
        out = runner.invoke(main, ["export", "--input", str(stages["c"]), "--format", fmt,
                                   "--output", str(tmp_path / target)])
        assert out.exit_code == 0, out.output
        assert "identical to the source" in out.output
    out = runner.invoke(main, ["export", "--input", str(tmp_path / "nope"), "--format", "bin",
                               "--output", str(tmp_path / "x")])
    assert out.exit_code != 0 and "no such folder" in out.output


def test_end_to_end_with_curate_tokenize(tmp_path: Path) -> None:
    """The real tokenize stage's output mixes and exports (documents -> tokens -> both)."""
    from curate.ingest import INGEST, IngestConfig, plan_ingest
    from curate.runner import run_stage
    from curate.tokenize import TokenizeConfig, run_tokenize
    from curate.tokenizer import TokenizerConfig, train_tokenizer
    from tests.conftest import write_jsonl

    rng = np.random.default_rng(4)
    words = np.array(["the", "court", "held", "that", "an", "appeal", "on", "statute", "of",
                      "market", "web"])
    for name in ("domain", "general"):
        records = [{"id": f"{name}-{i}",
                    "text": " ".join(rng.choice(words, rng.integers(3, 90)))}
                   for i in range(150)]
        write_jsonl(tmp_path / name / "raw.jsonl", records)
        assert run_stage(INGEST, plan_ingest(tmp_path / name / "raw.jsonl"),
                         tmp_path / name / "docs", IngestConfig(), progress=False).ok
    train_tokenizer([tmp_path / "domain" / "docs"], tmp_path / "tok",
                    TokenizerConfig(vocab_size=300))
    tokens = {}
    for name in ("domain", "general"):
        tokens[name] = tmp_path / name / "tokens"
        assert run_tokenize(tmp_path / name / "docs", tokens[name],
                            TokenizeConfig(tokenizer=str(tmp_path / "tok"), seq_len=32)).ok
    plan = build_mix(recipe(tokens, {"domain": 0.8, "general": 0.2},
                            domain_kw={"max_repeats": 2}, window=10))
    assert np.bincount(plan.source_code).tolist() == [round(len(plan) * 0.8),
                                                      round(len(plan) * 0.2)]
    stream = MixedStream(plan.write(tmp_path / "mix"))
    assert all(len(stream[i]) == 32 for i in range(len(stream)))
    for fmt in ("hf", "megatron", "bin"):
        export_tokens(tokens["domain"], fmt, tmp_path / f"out-{fmt}")
        check = verify_export(tokens["domain"], fmt, tmp_path / f"out-{fmt}")
        assert check.ok, check.summary()
    assert len(read_megatron(tmp_path / "out-megatron")) == 150
