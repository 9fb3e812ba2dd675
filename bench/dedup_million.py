"""Deduplicate a million generated documents and report time per phase and peak memory.

The claim to check is that the dedup stage scales to corpora far larger than the benchmarks'
20,000 documents in bounded memory, so this script generates N short documents (500-1,500
characters) with planted near-duplicate clusters as a documents stage folder (shards of
50,000 rows and a manifest), runs ``run_dedup`` on it and prints wall time per phase, docs/s
and the peak resident memory of the whole process tree (this process plus its workers,
sampled every 0.2 s from /proc, plus ``getrusage``'s maxima).

Generation is vectorised: a document is a run of token ids (word x capitalised / sentence end
/ paragraph end / comma), rendered to UTF-8 by one gather from a padded byte table, so a
50,000-row shard takes about a second. A planted duplicate copies an original (from its own
shard or the first block of the previous one, so clusters cross shards) and then maybe
substitutes up to 3% of its words, adds a boilerplate preamble and drops part of its tail.

    python -m bench.dedup_million --docs 1000000 --workers 2 --budget-mb 2048
"""

from __future__ import annotations

import argparse
import functools
import os
import resource
import shutil
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from bench.dedup_pairs import vocabulary
from schemas import DOCUMENTS, Manifest, write_shard
from schemas.manifest import write_manifest
from schemas.version import __version__

BLOCK = 5_000  # documents generated per random stream; the previous shard's first block is
# regenerated to copy cross-shard duplicates from
VARIANTS = 8  # per word: plain / capitalised x (space, ". ", ".\n\n", ", ")
_END, _PARA, _COMMA = 1, 2, 3


@functools.cache
def token_table() -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """(padded UTF-8 bytes per token, byte lengths, word of each of 2**16 equal slices of
    the cumulative word weights, mean token bytes): token id = word * 8 + 2 * kind + capital.
    The slice table turns sampling a word into one indexing (no binary search)."""
    words, cum = vocabulary()
    encoded = []
    for w in words:
        for tail in (" ", ". ", ".\n\n", ", "):
            encoded += [(w + tail).encode(), (w.capitalize() + tail).encode()]
    width = max(len(e) for e in encoded)
    table = np.zeros((len(encoded), width), dtype=np.uint8)
    for i, e in enumerate(encoded):
        table[i, :len(e)] = np.frombuffer(e, dtype=np.uint8)
    lens = np.array([len(e) for e in encoded], dtype=np.int64)
    weights = np.diff(np.concatenate([[0.0], cum]))
    mean = float((weights * [len(w) for w in words]).sum() / weights.sum()) + 1.2
    slices = np.searchsorted(np.asarray(cum), (np.arange(1 << 16) + 0.5) / (1 << 16) * cum[-1],
                             side="right").astype(np.int64)
    return table, lens, slices, mean


def random_words(rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` word ids drawn with their corpus frequencies."""
    return token_table()[2][rng.integers(0, 1 << 16, n, dtype=np.uint16)]


def random_tokens(rng: np.random.Generator, n_docs: int, min_chars: int, max_chars: int,
                  ) -> tuple[np.ndarray, np.ndarray]:
    """(token ids, per-document token offsets) of ``n_docs`` documents of about
    ``min_chars``..``max_chars`` characters: sentences of ~15 words, paragraphs of ~4."""
    mean = token_table()[3]
    chars = rng.integers(min_chars, max_chars + 1, n_docs)
    offsets = np.zeros(n_docs + 1, dtype=np.int64)
    np.cumsum(np.maximum(chars / mean, 2).astype(np.int64), out=offsets[1:])
    n = int(offsets[-1])
    word = random_words(rng, n)
    u = rng.random(n)
    kind = np.zeros(n, dtype=np.int64)
    kind[u < 0.06] = _COMMA
    kind[u > 1 - 1 / 15] = _END
    kind[u > 1 - 1 / 60] = _PARA
    kind[offsets[1:] - 1] = _END
    cap = np.zeros(n, dtype=np.int64)
    cap[1:] = (kind[:-1] == _END) | (kind[:-1] == _PARA)
    cap[offsets[:-1]] = 1
    return word * VARIANTS + 2 * kind + cap, offsets


def render(tokens: np.ndarray, offsets: np.ndarray) -> pa.StringArray:
    """The documents' text, one gather from the byte table (no Python string per word)."""
    table, lens_of, _, _ = token_table()
    lens = lens_of[tokens]
    lens[offsets[1:] - 1] -= 1  # no trailing space after the last word
    data = table[tokens][np.arange(table.shape[1]) < lens[:, None]]
    byte_offsets = np.zeros(len(tokens) + 1, dtype=np.int64)
    np.cumsum(lens, out=byte_offsets[1:])
    doc_offsets = byte_offsets[offsets]
    if doc_offsets[-1] >= 2**31:
        raise ValueError("shard text over 2 GiB; use fewer rows per shard")
    return pa.StringArray.from_buffers(len(offsets) - 1,
                                       pa.py_buffer(doc_offsets.astype(np.int32)),
                                       pa.py_buffer(data))


def _gather(tokens: np.ndarray, starts: np.ndarray, lengths: np.ndarray,
            ) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate ``tokens[starts[i]:starts[i] + lengths[i]]`` for all i, vectorised."""
    offsets = np.zeros(len(starts) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    idx = np.repeat(starts - offsets[:-1], lengths) + np.arange(offsets[-1])
    return tokens[idx], offsets


def _mutate(rng: np.random.Generator, tokens: np.ndarray, min_chars: int) -> np.ndarray:
    """A near-duplicate: exact (one in five) or up to 3% of words substituted, maybe a
    boilerplate preamble added and maybe up to 10% of the tail dropped."""
    if rng.random() < 0.2:
        return tokens
    out = tokens.copy()
    hit = rng.random(len(out)) < rng.uniform(0.0, 0.03)
    out[hit] = random_words(rng, int(hit.sum())) * VARIANTS + out[hit] % VARIANTS
    if rng.random() < 0.3:
        preamble, _ = random_tokens(rng, 1, 40, max(60, min_chars // 10))
        out = np.concatenate([preamble, out])
    if rng.random() < 0.3:
        out = out[:len(out) - int(len(out) * rng.uniform(0.0, 0.1))]
    return out


def shard_rows(n_docs: int, rows: int) -> list[int]:
    """Rows per shard: ``rows`` each, the remainder in the last."""
    sizes = [rows] * (n_docs // rows)
    if n_docs % rows:
        sizes.append(n_docs % rows)
    return sizes


def _originals(seed: int, shard: int, n: int, min_chars: int, max_chars: int,
               blocks: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    parts = []
    for b, start in enumerate(range(0, n, BLOCK)):
        if blocks is not None and b >= blocks:
            break
        rng = np.random.default_rng([seed, shard, b])
        parts.append(random_tokens(rng, min(BLOCK, n - start), min_chars, max_chars))
    tokens = np.concatenate([t for t, _ in parts])
    offsets = [np.zeros(1, dtype=np.int64)]
    base = 0
    for t, o in parts:
        offsets.append(o[1:] + base)
        base += len(t)
    return tokens, np.concatenate(offsets)


def shard_table(shard: int, sizes: list[int], seed: int, min_chars: int, max_chars: int,
                dup_fraction: float) -> tuple[pa.Table, int]:
    """(documents table, planted duplicates) of shard ``shard``; deterministic for a seed."""
    rows = sizes[shard]
    n_dup = round(rows * dup_fraction)
    n_orig = rows - n_dup
    tokens, offsets = _originals(seed, shard, n_orig, min_chars, max_chars)
    starts, lengths = offsets[:-1], np.diff(offsets)
    pool_starts, pool_lengths, pool = starts, lengths, tokens
    if len(sizes) > 1:  # the previous shard's first block: clusters that cross shards
        prev = (shard - 1) % len(sizes)
        prev_orig = sizes[prev] - round(sizes[prev] * dup_fraction)
        ptok, poff = _originals(seed, prev, prev_orig, min_chars, max_chars, blocks=1)
        pool = np.concatenate([tokens, ptok])
        pool_starts = np.concatenate([starts, poff[:-1] + len(tokens)])
        pool_lengths = np.concatenate([lengths, np.diff(poff)])
    rng = np.random.default_rng([seed, shard, 1 << 30])
    # about two duplicates per source: planted clusters of ~3 documents
    sources = rng.choice(len(pool_starts), size=max(1, n_dup // 2), replace=False)
    picks = sources[rng.integers(0, len(sources), n_dup)]
    dups = [_mutate(rng, pool[pool_starts[p]:pool_starts[p] + pool_lengths[p]], min_chars)
            for p in picks]
    all_tokens = np.concatenate([tokens, *dups]) if dups else tokens
    dup_lengths = np.array([len(d) for d in dups], dtype=np.int64)
    all_starts = np.concatenate([starts, len(tokens) + np.cumsum(dup_lengths) - dup_lengths])
    all_lengths = np.concatenate([lengths, dup_lengths])
    order = rng.permutation(rows)
    flat, doc_offsets = _gather(all_tokens, all_starts[order], all_lengths[order])
    text = render(flat, doc_offsets)
    ids = [f"s{shard:05d}-{i:06d}" for i in range(rows)]
    table = pa.table({"id": pa.array(ids, pa.string()), "text": text,
                      "url": pa.array([f"https://site{shard % 97}.example/{shard}/{i}"
                                       for i in range(rows)], pa.string()),
                      "source": pa.array(["synthetic"] * rows, pa.string())})
    return table, n_dup


@dataclass(frozen=True)
class Corpus:
    """A generated documents stage folder and what was planted in it."""

    path: Path
    docs: int
    shards: int
    planted_duplicates: int
    text_bytes: int
    seconds: float


def _write_one(args: tuple) -> tuple[str, dict, int, int]:
    folder, shard, sizes, seed, min_chars, max_chars, dup_fraction = args
    table, planted = shard_table(shard, sizes, seed, min_chars, max_chars, dup_fraction)
    name = f"part-{shard:05d}.arrow"
    info = write_shard(table, Path(folder) / name, DOCUMENTS)
    text = table.column("text").combine_chunks()
    return name, info.to_json(), planted, int(text.buffers()[2].size)


def write_corpus(folder: Path, n_docs: int, rows_per_shard: int = 50_000, seed: int = 0,
                 min_chars: int = 500, max_chars: int = 1500, dup_fraction: float = 0.1,
                 workers: int = 1) -> Corpus:
    """Generate the documents as shards plus the manifest that makes ``folder`` a documents
    stage folder (``run_dedup`` takes it as is)."""
    t0 = time.perf_counter()
    folder.mkdir(parents=True, exist_ok=True)
    sizes = shard_rows(n_docs, rows_per_shard)
    jobs = [(str(folder), k, sizes, seed, min_chars, max_chars, dup_fraction)
            for k in range(len(sizes))]
    if workers > 1 and len(jobs) > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            results = list(pool.map(_write_one, jobs))
    else:
        results = [_write_one(j) for j in jobs]
    manifest = Manifest(stage="generated", kind=DOCUMENTS.name, kind_version=DOCUMENTS.version,
                        library_version=__version__)
    for name, info, _, _ in results:
        manifest.shards[name] = {**info, "rows_in": info["rows"], "rows_rejected": 0,
                                 "reject_reasons": {}, "rejected": None, "inputs": [],
                                 "config_hash": f"seed={seed}", "resume_key": "generated",
                                 "started_at": time.time(), "seconds": 0.0}
    write_manifest(folder, manifest)
    return Corpus(folder, n_docs, len(sizes), sum(r[2] for r in results),
                  sum(r[3] for r in results), time.perf_counter() - t0)


def _tree(root: int) -> list[int]:
    """``root`` and all its descendants, from the parent ids in /proc/<pid>/stat."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    pids, todo = [], [root]
    while todo:
        pid = todo.pop()
        pids.append(pid)
        todo.extend(children.get(pid, ()))
    return pids


def _field_kb(path: str, key: str) -> int:
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(key):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def tree_memory_kb(root: int) -> tuple[int, int]:
    """(summed VmRSS, summed Pss) of the process tree under ``root``. RSS counts pages shared
    by forked workers once per process; Pss splits them, so it is what the tree really uses."""
    pids = _tree(root)
    return (sum(_field_kb(f"/proc/{p}/status", "VmRSS:") for p in pids),
            sum(_field_kb(f"/proc/{p}/smaps_rollup", "Pss:") for p in pids))


class PeakRss(threading.Thread):
    """Samples the process tree's memory every ``interval`` seconds; keeps the maxima."""

    def __init__(self, interval: float = 0.2):
        super().__init__(daemon=True)
        self.interval = interval
        self.peak_kb = 0
        self.peak_pss_kb = 0
        self.samples = 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        pid = os.getpid()
        while True:
            rss, pss = tree_memory_kb(pid)
            self.peak_kb = max(self.peak_kb, rss)
            self.peak_pss_kb = max(self.peak_pss_kb, pss)
            self.samples += 1
            if self._stop_event.wait(self.interval):
                return

    def __enter__(self) -> PeakRss:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop_event.set()
        self.join()


def _mb(kb: float) -> str:
    return f"{kb / 1024:,.0f} MB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=1_000_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--budget-mb", type=int, default=2048,
                        help="DedupConfig.memory_budget_mb for the global phases.")
    parser.add_argument("--rows-per-shard", type=int, default=50_000)
    parser.add_argument("--min-chars", type=int, default=500)
    parser.add_argument("--max-chars", type=int, default=1500)
    parser.add_argument("--dup-fraction", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", type=Path, default=None,
                        help="Where to put the corpus and output (default: a temp dir, removed).")
    args = parser.parse_args()

    from curate.dedup.config import DedupConfig
    from curate.dedup.pipeline import run_dedup

    root = args.workdir or Path(tempfile.mkdtemp(prefix="dedup-million-"))
    try:
        with PeakRss() as gen_rss:
            corpus = write_corpus(root / "input", args.docs, args.rows_per_shard, args.seed,
                                  args.min_chars, args.max_chars, args.dup_fraction,
                                  args.workers)
        print(f"generated {corpus.docs:,} docs ({corpus.text_bytes / 1e6:,.0f} MB of text) in "
              f"{corpus.shards} shards in {corpus.seconds:.1f} s, peak RSS "
              f"{_mb(gen_rss.peak_kb)}; {corpus.planted_duplicates:,} planted duplicates",
              flush=True)
        out = root / "output"
        shutil.rmtree(out, ignore_errors=True)
        cfg = DedupConfig(memory_budget_mb=args.budget_mb)
        with PeakRss() as rss:
            t0 = time.perf_counter()
            report = run_dedup(root / "input", out, cfg, workers=args.workers)
            total = time.perf_counter() - t0
        self_max = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        child_max = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        print(report.summary())
        removed = report.removal.rows_rejected if report.removal else 0
        lines = ["", f"### dedup of {corpus.docs:,} generated documents", "",
                 "| measure | value |", "|---|---:|"]
        for phase, secs in getattr(report, "phase_seconds", {}).items():
            lines.append(f"| {phase} | {secs:,.1f} s |")
        lines += [
            f"| total wall time | {total:,.1f} s |",
            f"| throughput | {corpus.docs / total:,.0f} docs/s |",
            f"| text | {corpus.text_bytes / 1e6:,.0f} MB in {corpus.shards} shards |",
            f"| removed / planted duplicates | {removed:,} / {corpus.planted_duplicates:,} |",
            f"| peak RSS, process tree (sum of VmRSS, sampled every 0.2 s) | "
            f"{_mb(rss.peak_kb)} |",
            f"| peak PSS, process tree (shared pages split) | {_mb(rss.peak_pss_kb)} |",
            f"| max RSS, this process / largest child (getrusage) | {_mb(self_max)} / "
            f"{_mb(child_max)} |",
            f"| memory budget, workers | {args.budget_mb:,} MB, {args.workers} |",
        ]
        lines.append(f"\n{os.cpu_count()} CPUs; getrusage's maxima include the generation "
                     f"phase (tree peak while generating: {_mb(gen_rss.peak_kb)}).")
        print("\n".join(lines))
        if not report.ok:
            raise SystemExit("dedup failed")
    finally:
        if args.workdir is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
