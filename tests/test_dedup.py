"""Deduplication: kernels equal their references, and the pipeline puts every document where
it belongs, the same way across runs, worker counts, shard orders, partitions and resumes."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import xxhash
from datasketch import MinHash

from curate.config import StageConfig
from curate.dedup import doc_keys, minhash
from curate.dedup.buckets import plan_partitions
from curate.dedup.config import DedupConfig
from curate.dedup.normalize import Normalization, normalize, normalize_one
from curate.dedup.pipeline import (
    DedupLayout,
    DedupReport,
    run_dedup,
    run_global,
    run_signatures,
)
from curate.dedup.urls import normalize_url, normalize_urls
from curate.ingest import INGEST, IngestConfig, plan_ingest
from curate.runner import Stage, StageOutput, WorkUnit, plan_shards, run_stage
from schemas import DOCUMENTS, read_manifest, read_shard, verify_stage
from tests.conftest import run_cli, write_jsonl

VOCAB = ["".join(random.Random(i).choices("abcdefghijklmnopqrstuvwxyz", k=6))
         for i in range(5000)]


def _text(rng: random.Random, n: int = 150) -> str:
    return " ".join(rng.choice(VOCAB) for _ in range(n))


def _edit(rng: random.Random, text: str, changes: int) -> str:
    words = text.split()
    for _ in range(changes):
        words[rng.randrange(len(words))] = rng.choice(VOCAB)
    return " ".join(words)


def corpus(seed: int = 0) -> tuple[list[list[dict]], dict[str, str | None]]:
    """Three files of documents with planted structure; expected[id] = what it duplicates
    (None for documents that must be kept)."""
    rng = random.Random(seed)
    originals = [{"id": f"o{i}", "text": _text(rng), "url": f"https://site.org/o/{i}"}
                 for i in range(60)]
    expected: dict[str, str | None] = {d["id"]: None for d in originals}
    dups = []
    for i in range(0, 10):  # exact copies after normalisation: case, punctuation, spacing
        o = originals[i]
        dups.append({"id": f"x{i}", "text": o["text"].upper().replace(" ", "  ,  "),
                     "url": f"https://mirror.org/x/{i}"})
        expected[f"x{i}"] = o["id"]
    for i in range(10, 20):  # near copies: 2 words of 150 changed (Jaccard ~ 0.88)
        o = originals[i]
        dups.append({"id": f"n{i}", "text": _edit(rng, o["text"], 2),
                     "url": f"https://mirror.org/n/{i}"})
        expected[f"n{i}"] = o["id"]
    for i in range(20, 25):  # same page under another spelling of its URL, new text
        o = originals[i]
        dups.append({"id": f"u{i}", "text": _text(rng),
                     "url": o["url"].replace("https://site.org", "HTTPS://SITE.org:443")
                     + "?utm_source=x#top"})
        expected[f"u{i}"] = o["id"]
    for i in range(25, 30):  # distant edits: 60 of 150 words changed, not duplicates
        o = originals[i]
        dups.append({"id": f"d{i}", "text": _edit(rng, o["text"], 60),
                     "url": f"https://other.org/d/{i}"})
        expected[f"d{i}"] = None
    everything = originals + dups
    files = [everything[k::3] for k in range(3)]
    return files, expected


def ingest(tmp: Path, files: list[list[dict]], names: list[str] | None = None) -> Path:
    raw = tmp / "raw"
    for k, records in enumerate(files):
        write_jsonl(raw / (names[k] if names else f"part{k}.jsonl"), records)
    out = tmp / "docs"
    report = run_stage(INGEST, plan_ingest(raw), out, IngestConfig(), progress=False)
    assert report.ok
    return out


def outcome(out: Path) -> tuple[dict[str, tuple], dict[str, tuple]]:
    """(kept id -> (cluster, size), removed id -> (reason, duplicate_of)) of a dedup output."""
    docs = DedupLayout.under(out).documents
    kept, removed = {}, {}
    for path in sorted(docs.glob("*.arrow")):
        t = read_shard(path)
        for r in t.select(["id", "dup_cluster", "dup_cluster_size"]).to_pylist():
            kept[r["id"]] = (r["dup_cluster"], r["dup_cluster_size"])
    for path in sorted((docs / "rejected").glob("*.arrow")):
        for r in read_shard(path).select(["id", "reject_reason", "duplicate_of"]).to_pylist():
            removed[r["id"]] = (r["reject_reason"], r["duplicate_of"])
    return kept, removed


def shard_hashes(stage_dir: Path) -> dict[str, str]:
    manifest = read_manifest(stage_dir)
    out = {}
    for name, e in manifest.shards.items():
        out[name] = e["sha256"]
        if e.get("rejected"):
            out[e["rejected"]["name"]] = e["rejected"]["sha256"]
    return out


# --- kernels ------------------------------------------------------------------------------

def test_xxh32_matches_xxhash() -> None:
    texts = ["", "a", "abc", "abcd", "x" * 15, "y" * 16, "z" * 17, "héllo wörld 北京" * 9]
    data, offsets = minhash.string_buffers(pa.array(texts))
    for i, t in enumerate(texts):
        for seed in (0, 0x9E3779B1):
            assert minhash.xxh32(data, offsets[i], offsets[i + 1], seed) == \
                xxhash.xxh32_intdigest(t.encode(), seed=seed)


@pytest.mark.parametrize("scheme", ["affine32", "legacy"])
@pytest.mark.parametrize("hash_function", ["xxh32", "sha1"])
def test_signatures_equal_datasketch(scheme: str, hash_function: str) -> None:
    rng = random.Random(3)
    texts = [_text(rng, rng.randint(0, 40)) for _ in range(40)] + ["", "one", "a b c d"]
    normalized = normalize(pa.array(texts))
    sig, counts = minhash.signatures(normalized, num_perm=112, ngram=5, seed=42, scheme=scheme,
                                     hash_function=hash_function)
    for i, text in enumerate(normalized.to_pylist()):
        kwargs = {"hashfunc": xxhash.xxh32_intdigest} if hash_function == "xxh32" else {}
        ref = MinHash(num_perm=112, seed=42, scheme=scheme, **kwargs)
        shingles = minhash.shingles(text, 5)
        ref.update_batch(shingles)
        assert counts[i] == len(shingles)
        assert np.array_equal(ref.hashvalues.astype(np.uint64), sig[i].astype(np.uint64))


def test_short_documents_are_one_shingle_and_empty_ones_none() -> None:
    assert minhash.shingles("a b c", 5) == [b"a b c"]
    assert minhash.shingles("", 5) == []
    assert minhash.shingles("a b c d e f", 5) == [b"a b c d e", b"b c d e f"]


TRICKY = ["Hello, World!  It's 2024-11-24; v1.2.3", "  ÉTÉ — «très» bien\u200b!\n\tok",
          "数据123北京", "", "   ", "!!!", "a1b22c333", "café naïve", "x\u0301y", "٣٤ and ३४",
          "tab\tsep\r\nline", "emoji 😀 here", "ภาษาไทย ง่าย", "カタカナとひらがな", "a北" * 9]


@pytest.mark.parametrize("how", [Normalization(), Normalization(strip_accents=True),
                                 Normalization(False, False, False, False)])
def test_normalize_kernel_matches_reference(how: Normalization) -> None:
    rng = random.Random(5)
    alphabet = list("abc ÀéÑ,.!?-–—'\"\t\n0123456789٣北\u0301\u200b$€😀")
    texts = TRICKY + ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 50)))
                      for _ in range(500)]
    got = normalize(pa.array(texts), how).to_pylist()
    assert got == [normalize_one(t, how) for t in texts]


UNICODE_SOUP = list("abcXYZ ÀéÑİẞΣΑ,.!?-–—'\"\t\n0123456789٣北京カ\u0301\u0903\u200b$€😀\u212a"
                    "\U00010400\U00030001\U000e0001\U000e0100\x00")


@pytest.mark.parametrize("how", [Normalization(), Normalization(strip_accents=True),
                                 Normalization(False, False, False, False)])
def test_one_pass_keys_equal_the_two_pass_words(how: Normalization) -> None:
    """The fused pass sees exactly the words of ``normalize``: same shingle counts, the
    datasketch signature with ``hashfunc=shingle_hash`` over the normalised shingles, and the
    text key of the normalised text (which is empty exactly when the text is)."""
    rng = random.Random(11)
    texts = TRICKY + [None] + ["".join(rng.choice(UNICODE_SOUP) for _ in range(rng.randint(0, 60)))
                               for _ in range(300)]
    sig, counts, hashes, present = doc_keys.doc_keys(pa.array(texts, pa.string()), how,
                                                     num_perm=16, ngram=3, seed=7)
    normalized = normalize(pa.array(texts, pa.string()), how).to_pylist()
    for i, text in enumerate(normalized):
        shingles = minhash.shingles(text, 3)
        ref = MinHash(num_perm=16, seed=7, hashfunc=doc_keys.shingle_hash)
        ref.update_batch(shingles)
        assert counts[i] == len(shingles), texts[i]
        assert np.array_equal(ref.hashvalues.astype(np.uint64), sig[i].astype(np.uint64))
        assert present[i] == bool(text)
        if text:
            assert int(hashes[i]) == doc_keys.text_hash(text)


def _ascii_heavy(rng: random.Random) -> str:
    """Mostly ASCII words of 1-30 letters (one 8-byte chunk, several, exact multiples of 8)
    with separators, digits, marks and the odd non-ASCII letter, over several 64-byte
    windows, so words cross window and chunk boundaries in every position."""
    pieces = []
    for _ in range(rng.randint(0, 60)):
        word = "".join(rng.choice("abcdefghijklmnopqrstuvwxyzABCXYZ") for _ in
                       range(rng.choice([1, 2, 7, 8, 9, 15, 16, 17, 24, 30])))
        if rng.random() < 0.15:
            at = rng.randint(0, len(word))
            word = word[:at] + rng.choice(["é", "\u0301", "北", "7", "42", "😀", "İ"]) + word[at:]
        pieces.append(word)
        pieces.append(rng.choice([" ", " ", " ", ", ", ". ", "  ", "\n", "-", "'", " (", ""]))
    return "".join(pieces)


@pytest.mark.parametrize("how", [Normalization(), Normalization(False, False, False, False)])
def test_one_pass_keys_on_long_ascii_texts(how: Normalization) -> None:
    """Word hashes built 8 bytes at a time from 64-byte windows equal the reference hash of
    each word of the normalised text, wherever the word starts and ends."""
    rng = random.Random(17)
    texts = [_ascii_heavy(rng) for _ in range(400)] + ["x" * 200, "ab" * 64 + " " + "c" * 64]
    sig, counts, hashes, present = doc_keys.doc_keys(pa.array(texts), how, num_perm=8,
                                                     ngram=2, seed=3)
    for i, text in enumerate(normalize(pa.array(texts), how).to_pylist()):
        assert counts[i] == len(minhash.shingles(text, 2)), texts[i]
        assert present[i] == bool(text)
        if text:
            assert int(hashes[i]) == doc_keys.text_hash(text), texts[i]
        ref = MinHash(num_perm=8, seed=3, hashfunc=doc_keys.shingle_hash)
        ref.update_batch(minhash.shingles(text, 2))
        assert np.array_equal(ref.hashvalues.astype(np.uint64), sig[i].astype(np.uint64))


@pytest.mark.parametrize("scheme", ["affine32", "legacy"])
def test_word_hash_signatures_equal_datasketch(scheme: str) -> None:
    rng = random.Random(3)
    texts = [_text(rng, rng.randint(0, 40)) for _ in range(40)] + ["", "One", "a b, c d"]
    sig, _, _, _ = doc_keys.doc_keys(pa.array(texts), num_perm=112, ngram=5, seed=42,
                                     scheme=scheme)
    for i, text in enumerate(normalize(pa.array(texts)).to_pylist()):
        ref = MinHash(num_perm=112, seed=42, scheme=scheme, hashfunc=doc_keys.shingle_hash)
        ref.update_batch(minhash.shingles(text, 5))
        assert np.array_equal(ref.hashvalues.astype(np.uint64), sig[i].astype(np.uint64))


def test_text_keys_separate_what_normalisation_separates() -> None:
    texts = ["The cat, sat.", "the CAT sat", "the cat sat on", "cat the sat", "thecat sat",
             "Année 2024", "année 1999", "année 19 99"]
    _, _, hashes, _ = doc_keys.doc_keys(pa.array(texts))
    assert hashes[0] == hashes[1] and hashes[5] == hashes[6]
    assert len({int(h) for h in hashes[1:5]}) == 4 and hashes[6] != hashes[7]


def test_normalize_examples() -> None:
    got = normalize(pa.array([*TRICKY[:3], None])).to_pylist()
    assert got == ["hello world it s 0 0 0 v0 0 0", "été très bien ok", "数 据 0 北 京", ""]


def test_url_normalisation() -> None:
    assert normalize_url("HTTPS://Example.ORG:443/a/B?b=2&a=1&utm_source=x#frag") == \
        "https://example.org/a/B?a=1&b=2"
    assert normalize_url("http://example.org") == "http://example.org/"
    assert normalize_url("http://example.org:8080/x") == "http://example.org:8080/x"
    assert normalize_url("http://example.org/x/") != normalize_url("http://example.org/x")
    assert normalize_url(" not a url ") == "not a url"


URLS = ["http://Example.org", "https://EXAMPLE.org:443/a/B#x", "http://ex.org:8080/x/",
        "http://ex.org:80", "https://a.b.:443/p", "HTTP://X.org/p", " http://x.org/a ",
        "http://x.org/a?b=1&a=2&utm_medium=m", "ftp://x.org/", None, "", "   ", "not a url",
        "http://user:pw@x.org/", "http://x.org/a b", "http://[::1]:80/x", "http://x.org/%7Ea",
        "https://x.org/path;params", "http://x.org/#", "http://ünï.org/x", "http://x.org:99999/"]


def test_vectorised_url_normalisation_agrees_with_the_reference() -> None:
    got = normalize_urls(pa.array(URLS)).to_pylist()
    assert got == [normalize_url(u) if u and u.strip() else None for u in URLS]
    assert got[15] == "http://[::1]/x"


def test_band_keys_separate_bands() -> None:
    sig = np.zeros((1, 16), np.uint32)  # all bands hold identical values
    keys = minhash.band_keys(sig, 2, 8)
    assert keys[0, 0] != keys[0, 1]
    with pytest.raises(ValueError, match="needs 24 hashes"):
        minhash.band_keys(sig, 3, 8)


# --- the pipeline -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, Path]:
    tmp = tmp_path_factory.mktemp("planted")
    files, expected = corpus()
    docs = ingest(tmp, files)
    out = tmp / "out"
    report = run_dedup(docs, out, DedupConfig(), workers=1)
    assert report.ok
    return docs, expected, out


def test_known_duplicates_land_where_they_should(planted) -> None:
    _docs, expected, out = planted
    kept, removed = outcome(out)
    assert set(kept) | set(removed) == set(expected)
    for doc_id, original in expected.items():
        if original is None:
            assert doc_id in kept, f"{doc_id} is not a duplicate but was removed"
        else:
            assert doc_id in removed, f"{doc_id} duplicates {original} but was kept"
            reason, dup_of = removed[doc_id]
            assert dup_of == original
            assert reason == {"x": "exact_duplicate", "n": "near_duplicate",
                              "u": "url_duplicate"}[doc_id[0]]
    for original in {o for o in expected.values() if o}:
        assert kept[original] == (original, 2)
    assert kept["o59"] == ("o59", 1)


def test_rows_conserved_and_twins_named(planted) -> None:
    docs, _, out = planted
    layout = DedupLayout.under(out)
    for stage_dir in (layout.signatures, layout.clusters, layout.documents):
        assert verify_stage(stage_dir).ok
    manifest = read_manifest(layout.documents)
    inputs = {n: e["rows"] for n, e in read_manifest(docs).shards.items()}
    kept, removed = outcome(out)
    for name, entry in manifest.shards.items():
        assert entry["rows_in"] == inputs[name] == entry["rows"] + entry["rows_rejected"]
    assert all(dup_of in kept for _, dup_of in removed.values())


def test_same_result_across_workers_orders_and_partitions(planted, tmp_path: Path) -> None:
    docs, _, out = planted
    reference = shard_hashes(DedupLayout.under(out).documents)
    other = tmp_path / "w2"
    assert run_dedup(docs, other, DedupConfig(partitions=7), workers=2).ok
    assert shard_hashes(DedupLayout.under(other).documents) == reference
    # the same units given in reverse order to the global phases
    layout = DedupLayout.under(tmp_path / "rev")
    units = plan_shards(docs)[::-1]
    cfg = DedupConfig(partitions=3)
    assert run_signatures(units, layout, cfg).ok
    report = run_global(units, layout, cfg, DedupReport())
    assert report.clusters.removed == {"exact_duplicate": 10, "near_duplicate": 10,
                                       "url_duplicate": 5}
    assert shard_hashes(layout.clusters) == shard_hashes(DedupLayout.under(out).clusters)


def test_interrupted_run_resumes_without_redoing_finished_phases(planted, tmp_path: Path):
    docs, _, out = planted
    partial = tmp_path / "partial"
    layout = DedupLayout.under(partial)
    cfg = DedupConfig()
    units = plan_shards(docs)
    assert run_signatures(units, layout, cfg).ok
    run_global(units, layout, cfg, DedupReport())  # "killed" before the removal phase
    clusters_mtime = (layout.clusters / "_done.json").stat().st_mtime_ns
    report = run_dedup(docs, partial, cfg)
    assert report.signatures.skipped == len(units) and report.signatures.done == 0
    assert report.buckets_skipped and report.clusters_skipped
    assert (layout.clusters / "_done.json").stat().st_mtime_ns == clusters_mtime
    assert report.removal.done == len(units)
    assert shard_hashes(layout.documents) == shard_hashes(DedupLayout.under(out).documents)
    # a changed keep rule re-clusters but reuses signatures and buckets
    again = run_dedup(docs, partial, DedupConfig(keep="longest"))
    assert again.signatures.skipped == len(units)
    assert again.buckets_skipped and not again.clusters_skipped


def _add_score(unit: WorkUnit, cfg: StageConfig) -> StageOutput:
    table = read_shard(unit.inputs[0])
    q = [json.loads(m)["q"] for m in table.column("metadata").to_pylist()]
    return StageOutput(table.append_column("q", pa.array(q, pa.float64())),
                       table.slice(0, 0), table.num_rows)


def with_score_column(docs: Path, out: Path) -> Path:
    """A documents stage with a numeric ``q`` column taken from the ingested metadata."""
    stage = Stage("add_score", "1", DOCUMENTS, _add_score)
    assert run_stage(stage, plan_shards(docs), out, StageConfig(), progress=False).ok
    return out


def test_keep_rules(tmp_path: Path) -> None:
    rng = random.Random(9)
    base = _text(rng, 100)
    records = [{"id": "short", "text": base, "q": 0.1},
               {"id": "long", "text": base + " " + _text(rng, 3), "q": 0.5},
               {"id": "best", "text": _edit(rng, base, 1), "q": 0.9}]
    docs = with_score_column(ingest(tmp_path, [records]), tmp_path / "scored")
    for rule, extra, winner in (("first", {}, "short"), ("longest", {}, "long"),
                                ("score", {"score_column": "q"}, "best")):
        out = tmp_path / rule
        run_dedup(docs, out, DedupConfig(keep=rule, **extra))
        kept, removed = outcome(out)
        assert set(kept) == {winner}, rule
        assert all(dup_of == winner for _, dup_of in removed.values())


def test_jaccard_check_drops_links_below_threshold(tmp_path: Path) -> None:
    rng = random.Random(11)
    base = _text(rng, 300)
    near = _edit(rng, base, 6)  # true 5-gram Jaccard ~ 0.82: always an LSH candidate
    docs = ingest(tmp_path, [[{"id": "a", "text": base}, {"id": "b", "text": near}]])
    plain = run_dedup(docs, tmp_path / "plain", DedupConfig())
    assert plain.clusters.removed == {"near_duplicate": 1}
    strict = run_dedup(docs, tmp_path / "strict",
                       DedupConfig(jaccard_check=True, jaccard_threshold=0.95))
    assert strict.clusters.candidate_pairs == 1 and strict.clusters.pairs_rejected_by_jaccard == 1
    assert strict.clusters.removed == {}
    loose = run_dedup(docs, tmp_path / "loose",
                      DedupConfig(jaccard_check=True, jaccard_threshold=0.7))
    assert loose.clusters.removed == {"near_duplicate": 1}


def test_incremental_against_an_index(tmp_path: Path) -> None:
    rng = random.Random(21)
    month1 = [{"id": f"m1-{i}", "text": _text(rng)} for i in range(20)]
    month2 = ([{"id": f"m2-{i}", "text": _text(rng)} for i in range(10)]
              + [{"id": "m2-copy", "text": _edit(rng, month1[3]["text"], 1)},
                 {"id": "m2-exact", "text": month1[7]["text"]}])
    index = tmp_path / "index"
    first = run_dedup(ingest(tmp_path / "a", [month1]), tmp_path / "out1", DedupConfig(),
                      index_dir=index)
    assert first.ok and first.index_added == 20
    index_files = {p.name: p.stat().st_mtime_ns for p in index.glob("*.arrow")}
    second = run_dedup(ingest(tmp_path / "b", [month2]), tmp_path / "out2", DedupConfig(),
                       index_dir=index)
    assert second.signatures.rows_in == 12  # only the new month was signed
    assert second.clusters.documents == 32 and second.clusters.new_documents == 12
    kept, removed = outcome(tmp_path / "out2")
    assert removed == {"m2-copy": ("near_duplicate", "m1-3"),
                       "m2-exact": ("exact_duplicate", "m1-7")}
    assert len(kept) == 10
    assert all(index.joinpath(n).stat().st_mtime_ns == t for n, t in index_files.items())
    assert second.index_added == 10
    # other signature settings cannot be mixed into the same index
    with pytest.raises(ValueError, match="other signature settings"):
        run_dedup(ingest(tmp_path / "c", [month2]), tmp_path / "out3", DedupConfig(ngram=3),
                  index_dir=index)


def test_memory_budget_sets_partitions() -> None:
    assert plan_partitions(1_000_000, DedupConfig(memory_budget_mb=2048)) == 1
    assert plan_partitions(1_000_000, DedupConfig(memory_budget_mb=256)) > 1
    with pytest.raises(ValueError, match="too small"):
        plan_partitions(50_000_000, DedupConfig(memory_budget_mb=512))


def test_cli_on_jsonl_with_a_broken_line(tmp_path: Path) -> None:
    raw = tmp_path / "in.jsonl"
    text = "the cat sat on the mat and then the dog came in and sat on it too"
    raw.write_text(f'{{"id": "a", "text": "{text}"}}\n{{"id": "b", "text": "{text.upper()}!"}}\n'
                   '{"id": "c", "text": "nothing like the others at all, really not"}\n'
                   '{"id": broken\n')
    proc = run_cli("curate", "dedup", "--input", str(raw), "--output", str(tmp_path / "out"),
                   "--quiet", "--workers", "1", "--set", "memory_budget_mb=128")
    assert proc.returncode == 0, proc.stderr
    assert "1 rejected" in proc.stdout and "exact_duplicate" in proc.stdout
    kept, removed = outcome(tmp_path / "out")
    assert set(kept) == {"a", "c"} and removed == {"b": ("exact_duplicate", "a")}
    bad = run_cli("curate", "dedup", "--input", str(raw), "--output", str(tmp_path / "x"),
                  "--set", "keep=score")
    assert bad.returncode != 0 and "score_column" in bad.stderr
