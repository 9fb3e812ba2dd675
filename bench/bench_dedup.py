"""MinHash dedup end to end vs the MinHash libraries a user would reach for instead.

Ours is the whole stage (``run_dedup``, 1 worker): read the document shards, normalise,
shingle, sign, bucket, cluster, and write kept and rejected shards. The baselines only compute
one MinHash signature per document (no normalisation, no LSH, no clustering, no output), so
they do strictly less work; the shards are read in the baselines too, as ours reads them.

- rensa ``RMinHash`` (Rust) with word 5-gram shingles built the usual Python way;
- rensa ``RMinHash.update(text.split())``, the unigram usage of its README (cheaper, and a
  different similarity: bags of words, not 5-grams);
- datasketch ``MinHash(num_perm=112).update_batch`` on encoded 5-grams (SHA-1, in Python);
  timed on a subset and scaled linearly when the full corpus would take over a minute.

The documents (1-4 KB, 10% planted near-duplicates) come from ``bench.dedup_million``'s
generator and are written once as a documents stage folder.
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
import time
from pathlib import Path

from bench.dedup_million import write_corpus
from bench.harness import Comparison, compare
from schemas import read_shard, shard_paths

NUM_PERM = 112
NGRAM = 5
DATASKETCH_BUDGET_S = 60.0


def _texts(folder: Path) -> list[list[str]]:
    return [read_shard(p, columns=["text"]).column("text").to_pylist()
            for p in shard_paths(folder)]


def _word_ngrams(text: str, n: int = NGRAM) -> list[str]:
    words = text.split()
    return [" ".join(words[i:i + n]) for i in range(max(len(words) - n + 1, 1))]


def rensa_5grams(folder: Path) -> int:
    from rensa import RMinHash

    done = 0
    for shard in _texts(folder):
        for text in shard:
            m = RMinHash(num_perm=NUM_PERM, seed=1)
            m.update(_word_ngrams(text))
            m.digest()
            done += 1
    return done


def rensa_unigrams(folder: Path) -> int:
    from rensa import RMinHash

    done = 0
    for shard in _texts(folder):
        for text in shard:
            m = RMinHash(num_perm=NUM_PERM, seed=1)
            m.update(text.split())
            m.digest()
            done += 1
    return done


def datasketch_5grams(folder: Path, limit: int | None = None) -> int:
    from datasketch import MinHash

    done = 0
    for shard in _texts(folder):
        for text in shard:
            if limit is not None and done >= limit:
                return done
            m = MinHash(num_perm=NUM_PERM)
            m.update_batch([s.encode("utf-8") for s in _word_ngrams(text)])
            m.digest()
            done += 1
    return done


def run(scale: float = 1.0, repeats: int = 3) -> list[Comparison]:
    from curate.dedup.config import DedupConfig
    from curate.dedup.pipeline import run_dedup

    n_docs = max(1000, int(20_000 * scale))
    cfg = DedupConfig()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        corpus = write_corpus(root / "input", n_docs, rows_per_shard=5000, min_chars=1000,
                              max_chars=4000, dup_fraction=0.1)
        out = root / "out"
        # compile / load the numba kernels once, outside the timings
        warm = write_corpus(root / "warm", 200, rows_per_shard=100, min_chars=1000,
                            max_chars=4000)
        run_dedup(warm.path, root / "warm-out", cfg, workers=1)
        # start the process pool's fork server (once per process) outside the timings too
        run_dedup(warm.path, root / "warm-out-2", cfg, workers=2)

        def clean() -> None:
            shutil.rmtree(out, ignore_errors=True)

        def ours() -> None:
            report = run_dedup(corpus.path, out, cfg, workers=1)
            assert report.ok and report.removal.rows_in == n_docs

        work = (f"{n_docs:,} generated docs of 1-4 KB ({corpus.text_bytes / 1e6:.0f} MB), "
                f"{corpus.planted_duplicates:,} planted near-duplicates; {NUM_PERM} hashes, "
                f"word {NGRAM}-grams")
        label = "curate dedup end to end, 1 worker (shards -> clusters -> kept/rejected shards)"
        results = [
            compare("dedup", work, (label, ours),
                    ("rensa RMinHash, 5-grams from text.split(); signatures only",
                     lambda: rensa_5grams(corpus.path)), repeats, clean),
            compare("dedup", work, (label, ours),
                    ("rensa RMinHash.update(text.split()) (README usage: unigrams); "
                     "signatures only", lambda: rensa_unigrams(corpus.path)), repeats, clean),
        ]

        # datasketch: estimate from a small sample, then run the whole corpus or a subset
        sample = min(n_docs, 500)
        t0 = time.perf_counter()
        datasketch_5grams(corpus.path, sample)
        estimate = (time.perf_counter() - t0) * n_docs / sample
        subset = n_docs if estimate <= DATASKETCH_BUDGET_S else max(
            sample, int(n_docs * DATASKETCH_BUDGET_S / estimate))
        base = "datasketch MinHash(num_perm=112).update_batch, 5-grams, sha1; signatures only"
        if subset < n_docs:
            base += f"; timed on {subset:,} docs, scaled x{n_docs / subset:.2f}"
        comp = compare("dedup", work, (label, ours),
                       (base, lambda: datasketch_5grams(corpus.path, subset)), repeats, clean)
        if subset < n_docs:
            comp = dataclasses.replace(comp, baseline_seconds=comp.baseline_seconds
                                       * n_docs / subset)
        results.append(comp)

        def ours_two() -> None:
            report = run_dedup(corpus.path, out, cfg, workers=2)
            assert report.ok and report.removal.rows_in == n_docs

        label2 = "curate dedup end to end, 2 workers (all cores of this machine)"
        comp2 = compare("dedup", work, (label2, ours_two),
                        (base, lambda: datasketch_5grams(corpus.path, subset)), repeats, clean)
        if subset < n_docs:
            comp2 = dataclasses.replace(comp2, baseline_seconds=comp2.baseline_seconds
                                        * n_docs / subset)
        results.append(comp2)
    return results


if __name__ == "__main__":
    from bench.harness import TABLE_HEADER

    rows = run(scale=1.0, repeats=1)
    print(TABLE_HEADER)
    print("\n".join(r.row() for r in rows))
