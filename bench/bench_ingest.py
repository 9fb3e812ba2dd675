"""Ingest JSONL into Arrow shards vs what a user would do instead.

Baselines: ``datasets.load_dataset("json")`` (the usual way JSONL becomes Arrow on disk) and
``polars.read_ndjson`` + ``write_ipc`` (the fastest bare path, with no per-record error
handling, no rejected rows and no manifest).
"""

from __future__ import annotations

import json
import random
import shutil
import tempfile
from pathlib import Path

import pyarrow as pa

from bench.harness import Comparison, compare
from curate.ingest import INGEST, IngestConfig, plan_ingest
from curate.runner import run_stage
from schemas import DOCUMENTS, write_shard

WORDS = ("the", "river", "carried", "silt", "past", "stone", "bridges", "while", "bakers",
         "proofed", "dough", "and", "cyclists", "trued", "wheels", "under", "a", "clear",
         "northern", "sky", "full", "of", "slow", "bright", "planets")


def make_corpus(root: Path, files: int, docs_per_file: int, seed: int = 0) -> Path:
    rng = random.Random(seed)
    raw = root / "raw"
    raw.mkdir(parents=True)
    for f in range(files):
        with open(raw / f"part-{f}.jsonl", "w") as out:
            for i in range(docs_per_file):
                text = " ".join(rng.choices(WORDS, k=rng.randint(50, 250)))
                out.write(json.dumps({"id": f"{f}-{i}", "url": f"https://e.org/{f}/{i}",
                                      "text": text, "lang_hint": "en"}) + "\n")
    return raw


def run(scale: float = 1.0, workers: int = 2, repeats: int = 3) -> list[Comparison]:
    files, per_file = 4, int(50_000 * scale)
    work = f"{files * per_file:,} JSONL docs, {files} files"
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        raw = make_corpus(root, files, per_file)
        out = root / "out"
        hf_cache = root / "hf"

        def clean():
            shutil.rmtree(out, ignore_errors=True)
            shutil.rmtree(hf_cache, ignore_errors=True)

        def ours(n: int = workers):
            report = run_stage(INGEST, plan_ingest(raw), out, IngestConfig(), workers=n,
                               progress=False)
            assert report.ok and report.rows_kept == files * per_file

        def hf_datasets(n: int = workers):
            import datasets

            datasets.disable_progress_bars()
            ds = datasets.load_dataset("json", data_files=sorted(str(p) for p in raw.iterdir()),
                                       split="train", cache_dir=str(hf_cache),
                                       num_proc=n if n > 1 else None)
            assert ds.num_rows == files * per_file

        def polars_bare():
            import polars as pl

            out.mkdir(parents=True, exist_ok=True)
            for p in sorted(raw.iterdir()):
                pl.read_ndjson(p).write_ipc(out / f"{p.stem}.arrow", compression="zstd")

        results = [
            compare("ingest", work, ("curate ingest (1 process)", lambda: ours(1)),
                    ("datasets.load_dataset json (1 process)", lambda: hf_datasets(1)),
                    repeats, clean),
            compare("ingest", work, (f"curate ingest ({workers} workers)", ours),
                    (f"datasets.load_dataset json (num_proc={workers})", hf_datasets),
                    repeats, clean),
            compare("ingest", work, (f"curate ingest ({workers} workers)", ours),
                    ("polars read_ndjson + write_ipc (no checks)", polars_bare), repeats, clean),
        ]

        table = pa.table({"id": [f"d{i}" for i in range(200_000)],
                          "text": [" ".join(WORDS[: 20 + i % 60]) for i in range(200_000)],
                          "url": [None] * 200_000, "source": ["bench"] * 200_000})
        shard = root / "shard.arrow"

        def write_ours():
            write_shard(table, shard, DOCUMENTS)

        def write_plain():
            options = pa.ipc.IpcWriteOptions(compression="zstd")
            with pa.OSFile(str(shard), "wb") as sink, pa.ipc.new_file(
                    sink, table.schema, options=options) as writer:
                writer.write_table(table, max_chunksize=8192)

        results.append(compare("shard write", "200,000 docs, zstd",
                               ("write_shard (validate, sha256, fsync, rename)", write_ours),
                               ("pyarrow ipc.new_file", write_plain), repeats))
    return results
