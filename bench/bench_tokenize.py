"""Tokenization into packed shards vs bare ``tokenizers`` and ``datasets.map``.

Same documents, same tokenizer (a byte-level BPE trained by ``curate tokenizer train`` on
them). Ours goes from documents shards to packed, uncompressed token shards with the
document index and manifest written. Baselines: ``tokenizers.Tokenizer.encode_batch`` on
the texts already in a Python list (no packing, nothing written: the floor our overhead is
measured against) and ``datasets.Dataset.map(batched=True)`` with the same tokenizer through
``AutoTokenizer`` (what a user of the HF stack would write), in memory.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from bench.dedup_million import write_corpus
from bench.harness import Comparison, compare
from schemas import read_shard, shard_paths

VOCAB = 8192
SEQ_LEN = 2048


def run(scale: float = 1.0, repeats: int = 3) -> list[Comparison]:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import datasets
    from transformers import AutoTokenizer

    from curate.tokenize import TokenizeConfig, run_tokenize, token_stats
    from curate.tokenizer import TokenizerConfig, load_tokenizer, train_tokenizer

    n_docs = max(1000, int(20_000 * scale))
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        corpus = write_corpus(root / "docs", n_docs, rows_per_shard=5000, min_chars=1000,
                              max_chars=4000, dup_fraction=0.0)
        tok_dir = root / "tokenizer"
        train_tokenizer([corpus.path], tok_dir, TokenizerConfig(vocab_size=VOCAB,
                                                               max_docs=5000))
        texts = [t for p in shard_paths(corpus.path)
                 for t in read_shard(p).column("text").to_pylist()]
        raw = load_tokenizer(tok_dir).tokenizer
        hf = AutoTokenizer.from_pretrained(str(tok_dir))
        out = root / "tokens"
        cfg = TokenizeConfig(tokenizer=str(tok_dir), seq_len=SEQ_LEN)
        run_tokenize(corpus.path, root / "warm", cfg)  # load the tokenizer once, untimed

        def clean() -> None:
            shutil.rmtree(out, ignore_errors=True)

        def ours() -> None:
            assert run_tokenize(corpus.path, out, cfg).ok

        ours()
        tokens = token_stats(out)["tokens"]
        work = (f"{n_docs:,} docs of 1-4 KB ({corpus.text_bytes / 1e6:.0f} MB), {tokens:,} "
                f"tokens, BPE vocab {VOCAB}")
        label = f"curate tokenize: packed {SEQ_LEN}-token rows + index, written (1 process)"
        dataset = datasets.Dataset.from_dict({"text": texts})
        return [
            compare("tokenize", work, (label, ours),
                    ("tokenizers encode_batch on a list of str (no packing, nothing written)",
                     lambda: raw.encode_batch(texts)), repeats, clean),
            compare("tokenize", work, (label, ours),
                    ("datasets.Dataset.map(batched=True) with AutoTokenizer, in memory",
                     lambda: dataset.map(lambda b: hf(b["text"]), batched=True,
                                         remove_columns=["text"])), repeats, clean),
        ]


if __name__ == "__main__":
    from bench.harness import TABLE_HEADER

    rows = run(scale=1.0, repeats=1)
    print(TABLE_HEADER)
    print("\n".join(r.row() for r in rows))
