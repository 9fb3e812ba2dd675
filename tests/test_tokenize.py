"""Pre-training tokenization: packed rows are exactly the document stream, boundaries and the
document index agree, output is deterministic, and trainers map shards without copying."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from curate.demo_text import EN_TOPICS
from curate.ingest import INGEST, IngestConfig, plan_ingest
from curate.runner import run_stage
from curate.tokenize import INDEX_DIR, TokenizeConfig, run_tokenize, token_stats
from curate.tokenizer import TokenizerConfig, load_tokenizer, train_tokenizer
from schemas import read_manifest, read_shard, shard_paths, verify_stage
from tests.conftest import run_cli, write_jsonl
from train.token_data import TokenDataset, TokenShard

EXTRA = ["naïve café — über straße", "北京欢迎你 数据", "emoji 😀 ok", "  spaced\n\n  out\t"]


SENTENCES = [s for topic in EN_TOPICS for cluster in topic.clusters for s in cluster]


def paragraph(rng: random.Random) -> str:
    """A few real sentences of the demo corpus, slots filled with a name."""
    return " ".join(rng.sample(SENTENCES, 4)).replace("{", "").replace("}", "")


def _documents(tmp: Path, n_files: int = 2, per_file: int = 60) -> Path:
    rng = random.Random(0)
    raw = tmp / "raw"
    for f in range(n_files):
        records = [{"id": f"f{f}-{i}", "text": paragraph(rng) + " " + rng.choice(EXTRA),
                    "url": f"https://ex.org/{f}/{i}"}
                   for i in range(per_file)]
        write_jsonl(raw / f"part{f}.jsonl", records)
    docs = tmp / "docs"
    assert run_stage(INGEST, plan_ingest(raw), docs, IngestConfig(), progress=False).ok
    return docs


@pytest.fixture(scope="module")
def tokenized(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    tmp = tmp_path_factory.mktemp("tok")
    docs = _documents(tmp)
    tok_dir = tmp / "tokenizer"
    train_tokenizer([docs], tok_dir, TokenizerConfig(vocab_size=600))
    out = tmp / "tokens"
    report = run_tokenize(docs, out, TokenizeConfig(tokenizer=str(tok_dir), seq_len=64))
    assert report.ok and report.rows_in == 120 and report.rows_kept == 120
    return docs, tok_dir, out


def _stream(path: Path) -> np.ndarray:
    return np.concatenate(read_shard(path).column("input_ids").to_numpy(zero_copy_only=False))


def test_rows_concatenate_to_the_document_stream_and_round_trip(tokenized) -> None:
    docs, tok_dir, out = tokenized
    tok = load_tokenizer(tok_dir)
    for path in shard_paths(out):
        stream = _stream(path)
        assert stream.dtype == np.uint16
        texts = read_shard(docs / path.name).column("text").to_pylist()
        expected = []
        for text in texts:
            ids = tok.tokenizer.encode(text, add_special_tokens=False).ids
            assert tok.tokenizer.decode(ids, skip_special_tokens=False) == text
            expected += [*ids, tok.eos_id]
        assert stream.tolist() == expected
        lengths = [len(r) for r in read_shard(path).column("input_ids").to_pylist()]
        assert all(n == 64 for n in lengths[:-1]) and 0 < lengths[-1] <= 64


def test_boundaries_and_index_agree(tokenized) -> None:
    docs, tok_dir, out = tokenized
    tok = load_tokenizer(tok_dir)
    for path in shard_paths(out):
        stream = _stream(path)
        index = read_shard(out / INDEX_DIR / path.name).to_pylist()
        source = read_shard(docs / path.name).select(["id", "url", "source"]).to_pylist()
        assert [r["doc_id"] for r in index] == [s["id"] for s in source]
        assert [r["url"] for r in index] == [s["url"] for s in source]
        segments = {}
        for r, row in enumerate(read_shard(path).to_pylist()):
            for start, doc in zip(row["segment_starts"], row["segment_doc_ids"], strict=True):
                segments[(r, start)] = doc
        pos = 0
        for entry in index:
            assert (entry["row"], entry["offset"]) == divmod(pos, 64)
            assert segments[(entry["row"], entry["offset"])] == entry["doc_id"]
            assert stream[pos + entry["length"] - 1] == tok.eos_id
            pos += entry["length"]
        assert pos == len(stream)
        # every other segment is a continuation at the start of a row
        starts = {(e["row"], e["offset"]) for e in index}
        for (row, start), doc in segments.items():
            if (row, start) not in starts:
                assert start == 0
                owner = max((e for e in index if e["row"] * 64 + e["offset"] <= row * 64),
                            key=lambda e: e["row"] * 64 + e["offset"])
                assert owner["doc_id"] == doc


def test_deterministic_resumable_and_verified(tokenized, tmp_path: Path) -> None:
    docs, tok_dir, out = tokenized
    again = tmp_path / "again"
    run_tokenize(docs, again, TokenizeConfig(tokenizer=str(tok_dir), seq_len=64))
    first, second = read_manifest(out), read_manifest(again)
    for name, entry in first.shards.items():
        assert second.shards[name]["sha256"] == entry["sha256"]
        assert second.shards[name]["extras"][INDEX_DIR]["sha256"] == \
            entry["extras"][INDEX_DIR]["sha256"]
    assert verify_stage(out).ok
    rerun = run_tokenize(docs, again, TokenizeConfig(tokenizer=str(tok_dir), seq_len=64))
    assert rerun.skipped == 2 and rerun.done == 0
    (again / INDEX_DIR / "part-part0.jsonl.arrow").unlink()
    assert not verify_stage(again).ok
    assert run_tokenize(docs, again, TokenizeConfig(tokenizer=str(tok_dir), seq_len=64)).done == 1
    stats = token_stats(out)
    assert stats["documents"] == 120 and stats["truncated"] == 0
    assert stats["tokens"] == sum(stats["tokens_per_shard"].values()) \
        == sum(stats["tokens_per_source"].values())
    assert set(stats["tokens_per_source"]) == {"part0", "part1"}  # ingest: source = file


def test_truncation_and_bos(tokenized, tmp_path: Path) -> None:
    docs, tok_dir, _ = tokenized
    tok = load_tokenizer(tok_dir)
    out = tmp_path / "cut"
    cfg = TokenizeConfig(tokenizer=str(tok_dir), seq_len=32, max_doc_tokens=10, add_bos=True)
    assert run_tokenize(docs, out, cfg).ok
    for path in shard_paths(out):
        index = read_shard(out / INDEX_DIR / path.name)
        assert set(index.column("length").to_pylist()) == {12}  # BOS + 10 + EOS
        assert all(index.column("truncated").to_pylist())
        stream = _stream(path)
        assert stream[0] == tok.bos_id and stream[11] == tok.eos_id


def test_reader_maps_without_copying_and_serves_random_rows(tokenized) -> None:
    _, _, out = tokenized
    before = pa.total_allocated_bytes()
    data = TokenDataset(out)
    rows = [data.row_ids(i) for i in range(len(data))]
    assert pa.total_allocated_bytes() - before < 4096  # the ids were never copied
    assert not rows[0].flags.writeable
    flat = np.concatenate([_stream(p) for p in shard_paths(out)])
    assert np.array_equal(np.concatenate(rows), flat)
    rng = random.Random(1)
    for i in rng.sample(range(len(data)), 10):
        row = data[i]
        assert np.array_equal(row.input_ids, rows[i])
        positions = row.position_ids()
        assert all(positions[s] == 0 for s in row.segment_starts)
    shard = TokenShard(shard_paths(out)[0])
    with pytest.raises(IndexError):
        shard[len(shard)]
    assert data.meta["seq_len"] == 64 and data.meta["token_dtype"] == "uint16"


def test_cli_tokenize(tokenized, tmp_path: Path) -> None:
    docs, tok_dir, _ = tokenized
    proc = run_cli("curate", "tokenize", "--input", str(docs), "--output", str(tmp_path / "t"),
                   "--set", f"tokenizer={tok_dir}", "--set", "seq_len=128", "--quiet",
                   "--workers", "2")
    assert proc.returncode == 0, proc.stderr
    assert "tokens" in proc.stdout
    missing = run_cli("curate", "tokenize", "--input", str(docs), "--output",
                      str(tmp_path / "u"), "--set", f"tokenizer={tmp_path / 'nope'}")
    assert missing.returncode != 0 and "tokenizer.json" in missing.stderr


def _weird_texts(n: int = 400) -> list[str]:
    rng = random.Random(7)
    pool = [*range(0x20, 0x7F), 0x85, 0xA0, 0x1680, 0x2028, 0x3000, 0x200B, 0x0B, 0x0C, 0x0A,
            0x0D, 0x09, 0xE9, 0x301, 0x4E2D, 0x1F600, 0x0660, 0x0966]
    texts = ["".join(chr(rng.choice(pool)) for _ in range(rng.randint(0, 60))) for _ in range(n)]
    return [*texts, "a  b   c\n\n\t d", "it's 12345!!\r\n", "", "Don'T I'LL", *EXTRA]


def test_fast_path_gives_the_tokenizers_ids(tokenized) -> None:
    from curate.tokenize import _plain_encode
    from curate.tokenize_fast import encode_fast, fast_path_for

    docs, tok_dir, _ = tokenized
    tok = load_tokenizer(tok_dir)
    fast = fast_path_for(tok_dir / "tokenizer.json")
    assert fast is not None, "curate tokenizer train must build a fast-path tokenizer"
    corpus = [t for p in shard_paths(docs) for t in read_shard(p).column("text").to_pylist()]
    specials = [f"before {t} after" for t in fast.added_tokens[:3]]
    for texts in (corpus, _weird_texts(), specials + corpus[:5]):
        for parse in (False, True):
            flat, lengths = encode_fast(tok.tokenizer, pa.array(texts), fast, parse_special=parse)
            ref_flat, ref_len = _plain_encode(tok.tokenizer, texts, 64, parse_special=parse)
            assert flat.tolist() == ref_flat.tolist() and lengths.tolist() == ref_len.tolist()
    # by default a special token's text in a document is plain text, never the control token
    flat, _ = encode_fast(tok.tokenizer, pa.array(specials), fast)
    assert not set(flat.tolist()) & set(tok.special_ids.values())
    flat, _ = encode_fast(tok.tokenizer, pa.array(specials), fast, parse_special=True)
    assert set(flat.tolist()) & set(tok.special_ids.values())


def test_wrap_documents() -> None:
    from curate.tokenize import wrap_documents

    flat = np.array([5, 6, 7, 8, 9, 10], np.int64)
    ids, lengths, truncated = wrap_documents(flat, np.array([3, 0, 3]), eos=0, bos=1,
                                             max_tokens=2)
    assert ids.tolist() == [1, 5, 6, 0, 1, 0, 1, 8, 9, 0]
    assert lengths.tolist() == [4, 2, 4] and truncated.tolist() == [True, False, True]
    ids, lengths, truncated = wrap_documents(flat, np.array([3, 0, 3]), eos=0, bos=None,
                                             max_tokens=None)
    assert ids.tolist() == [5, 6, 7, 0, 0, 8, 9, 10, 0] and not truncated.any()
