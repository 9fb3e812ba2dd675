"""Tokenizer and tokenization of the curated web documents (``decontaminated_documents``:
deduplicated, quality-selected, PII-redacted, decontaminated).

Two assets:

* ``tokenizer`` (global): a byte-level BPE trained on every curated web shard, saved as a
  Hugging Face folder at ``<data_root>/tokenizer``; unchanged shards and settings reuse it
  (training is deterministic, so retraining would give the same file anyway);
* ``tokenized_documents`` (per WARC partition): the curated shard packed into fixed-length
  rows of token ids at ``web/tokens``, with its per-document ``token_index``.

Beside the contract checks, three blocking checks re-read the written shard: every document is
in the index exactly once, every id is inside the vocabulary, and the index, the rows'
segments and the EOS tokens describe the same document boundaries. They are plain functions of
paths, so they also check folders made outside Dagster.
"""
# No `from __future__ import annotations`: Dagster reads the config annotations at runtime.

import functools
import json
import time
from pathlib import Path
from typing import Any

import dagster as dg
import numpy as np
import pyarrow.compute as pc
from pydantic import Field, ValidationError

from curate.ingest import shard_name_for
from curate.runner import WorkUnit
from curate.tokenize import INDEX_DIR, TOKENIZE, TokenizeConfig, with_fingerprint, write_meta
from curate.tokenizer import (
    BYTE_ALPHABET,
    METADATA_FILE,
    SPECIAL_ROLES,
    TextStream,
    TokenizerConfig,
    load_tokenizer,
    train_tokenizer,
    training_shards,
)
from dagster_project.assets.quality import CURATED_STAGE, decontaminated_documents
from dagster_project.assets.web import DATASET, warc_files
from dagster_project.config import dagster_config
from dagster_project.plots import histogram_png, md_image
from dagster_project.resources import DataRoot
from dagster_project.shard_asset import contract_checks, materialize_unit
from schemas import read_manifest, read_shard, sha256_file

GROUP = "tokens"
TOKENIZER_DIR = "tokenizer"
TOKENS_STAGE = "tokens"
ROUND_TRIP_CHECK = "round_trips"
ACCOUNTED_CHECK = "documents_accounted"
VOCAB_CHECK = "ids_below_vocab"
BOUNDARY_CHECK = "boundaries_consistent"
SAMPLE_DOCS = 500
"""Documents the tokenizer's round-trip check and chars-per-token figure read."""
EXAMPLES = ("The 3 quick brown foxes jumped over 12,345 lazy dogs.",
            "naïve café — über straße, 北京欢迎你, emoji 😀")
EXAMPLE_CHARS = 120
TOO_MANY = 10
"""Problems listed in a check's metadata (the counts are always complete)."""

TokenizerRunConfig = dagster_config(
    TokenizerConfig,
    vocab_size=(int, Field(default=2048, ge=BYTE_ALPHABET + len(SPECIAL_ROLES) + 1, description=(
        "Target size including the 256 byte symbols and the special tokens. 2048 suits the "
        "demo crawl (a few hundred pages); a real corpus wants 32k-128k. A small corpus may "
        "end with fewer (no pair left that occurs min_frequency times)."))))
TokenizeRunConfig = dagster_config(
    TokenizeConfig,
    tokenizer=(str | None, Field(default=None, description=(
        "A tokenizer folder (relative paths are under the data root); empty: the "
        "`tokenizer` asset's folder, <data_root>/tokenizer."))),
    seq_len=(int, Field(default=256, ge=2, description=(
        "Tokens per packed row. 256 suits the demo crawl's short pages; pre-training usually "
        "packs 2048-8192."))))


def tokenizer_dir(data: DataRoot) -> Path:
    """Where the ``tokenizer`` asset writes (and ``tokenized_documents`` reads by default)."""
    return data.path / TOKENIZER_DIR


def tokens_dir(data: DataRoot) -> Path:
    return data.stage_dir(DATASET, TOKENS_STAGE)


def _failure(what: str, exc: Exception) -> dg.Failure:
    return dg.Failure(f"{what}: {exc}")


# --- tokenizer ---------------------------------------------------------------------------------

def _reusable(folder: Path, shards: list[Path], cfg: TokenizerConfig) -> bool:
    """True when ``folder`` holds a tokenizer trained with ``cfg`` on exactly the text these
    shards would give now (same files, same bytes, same tokenizers library)."""
    import tokenizers

    try:
        meta = json.loads((folder / METADATA_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if (not isinstance(meta, dict) or meta.get("config_hash") != cfg.config_hash()
            or meta.get("tokenizers_version") != tokenizers.__version__
            or not (folder / "tokenizer.json").is_file()):
        return False
    training = meta.get("training", {})
    recorded = training.get("shards", [])
    paths = [str(p.resolve()) for p in shards]
    if not recorded or [e["path"] for e in recorded] != paths[:len(recorded)]:
        return False
    capped = ((cfg.max_docs is not None and training.get("docs", 0) >= cfg.max_docs)
              or (cfg.max_chars is not None and training.get("chars", 0) >= cfg.max_chars))
    if len(recorded) < len(paths) and not capped:
        return False  # a shard was added since
    return all(Path(e["path"]).is_file() and sha256_file(Path(e["path"])) == e["sha256"]
               for e in recorded)


def _sample_texts(shards: list[Path], n: int) -> list[str]:
    """The first ``n`` non-empty texts of the shards (what training read first)."""
    texts: list[str] = []
    for batch in TextStream(shards, max_docs=n):
        texts += batch
    return texts


def _round_trip(tok: Any, texts: list[str], special_ids: dict[str, int]) -> dg.AssetCheckResult:
    """Byte-level BPE is lossless: decode(encode(text)) == text, and the special ids are 0..4."""
    encoded = tok.encode_batch_fast(texts, add_special_tokens=False)
    decoded = tok.decode_batch([e.ids for e in encoded], skip_special_tokens=False)
    bad = [i for i, (a, b) in enumerate(zip(texts, decoded, strict=True)) if a != b]
    expected = {role: i for i, role in enumerate(SPECIAL_ROLES)}
    wrong_ids = {k: v for k, v in special_ids.items() if k in expected and expected[k] != v}
    return dg.AssetCheckResult(
        check_name=ROUND_TRIP_CHECK, passed=not bad and not wrong_ids and bool(texts),
        metadata={"documents": len(texts), "not_round_tripped": len(bad),
                  "examples": dg.MetadataValue.json([texts[i][:200] for i in bad[:TOO_MANY]]),
                  "special_ids": dg.MetadataValue.json(special_ids),
                  "wrong_special_ids": dg.MetadataValue.json(wrong_ids)})


@functools.cache
def _byte_of_symbol() -> dict[str, int]:
    """ByteLevel's symbol -> byte map (GPT-2's: printable bytes stand for themselves, the
    others are shifted to code points from 256 on)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
                 *range(ord("®"), ord("ÿ") + 1)]
    rest = [b for b in range(256) if b not in printable]
    return {**{chr(b): b for b in printable}, **{chr(256 + i): b for i, b in enumerate(rest)}}


def _piece(tok: Any, token_id: int) -> str:
    """A token's text, or its bytes in hex when they are part of a character (``<e5 8c>``)."""
    symbol = tok.id_to_token(token_id) or ""
    byte_of = _byte_of_symbol()
    if not symbol or any(c not in byte_of for c in symbol):  # a special token
        return symbol
    raw = bytes(byte_of[c] for c in symbol)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return "<" + raw.hex(" ") + ">"


def _examples_md(tok: Any, texts: list[str]) -> str:
    """Each example cut at a word boundary, then its tokens separated by ``|``."""
    blocks = []
    for text in texts:
        cut = text if len(text) <= EXAMPLE_CHARS else text[:EXAMPLE_CHARS].rsplit(" ", 1)[0]
        cut = " ".join(cut.split())
        ids = tok.encode(cut, add_special_tokens=False).ids
        pieces = "|".join(_piece(tok, i) for i in ids)
        blocks.append(f"{cut!r}\n  {len(cut)} chars -> {len(ids)} tokens\n  {pieces}")
    return "```\n" + "\n\n".join(blocks) + "\n```"


@dg.asset(group_name=GROUP, kinds={"huggingface"}, deps=[decontaminated_documents],
          check_specs=[dg.AssetCheckSpec(
              ROUND_TRIP_CHECK, asset="tokenizer", blocking=True,
              description="decode(encode(text)) == text on the first documents, and the special "
                          "tokens have their fixed ids (0 = BOS, 1 = EOS, 2 = PAD, 3/4 = ChatML "
                          "turn markers).")],
          description="Global: a byte-level BPE tokenizer trained on every curated web "
                      "shard, saved as a Hugging Face folder (AutoTokenizer loads it offline) at "
                      "<data_root>/tokenizer. Unchanged shards and settings reuse it.")
def tokenizer(context: dg.AssetExecutionContext, config: TokenizerRunConfig,
              data: DataRoot) -> dg.MaterializeResult:
    try:
        cfg = TokenizerConfig.model_validate(config.model_dump())
    except ValidationError as exc:
        raise _failure("invalid tokenizer config", exc) from None
    source = data.stage_dir(DATASET, CURATED_STAGE)
    if read_manifest(source) is None:
        raise dg.Failure(f"{source} has no shards: materialize decontaminated_documents first")
    out = tokenizer_dir(data)
    t0 = time.perf_counter()
    try:
        shards = training_shards([source])
        reused = _reusable(out, shards, cfg)
        if reused:
            context.log.info("curated shards and settings unchanged: tokenizer reused")
        else:
            info = train_tokenizer([source], out, cfg)
            context.log.info(info.summary())
        tok = load_tokenizer(out)
    except (ValueError, FileNotFoundError) as exc:
        raise _failure("tokenizer", exc) from None
    meta = tok.metadata or {}
    training = meta.get("training", {})
    special_ids = {role: entry["id"] for role, entry in meta.get("special_tokens", {}).items()}
    sample = _sample_texts(shards, SAMPLE_DOCS)
    ids = tok.tokenizer.encode_batch_fast(sample, add_special_tokens=False)
    n_tokens = sum(len(e.ids) for e in ids)
    chars = sum(map(len, sample))
    return dg.MaterializeResult(
        metadata={
            "vocab_size": tok.vocab_size,
            "target_vocab_size": cfg.vocab_size,
            "special_ids": dg.MetadataValue.json(special_ids),
            "token_dtype": np.dtype(tok.token_dtype).name,
            "training_docs": int(training.get("docs", 0)),
            "training_chars": int(training.get("chars", 0)),
            "training_shards": len(training.get("shards", [])),
            "chars_per_token": float(chars / n_tokens if n_tokens else 0.0),
            "seconds": float(time.perf_counter() - t0),
            "retrained": not reused,
            "examples": dg.MetadataValue.md(_examples_md(tok.tokenizer,
                                                         [*sample[:3], *EXAMPLES])),
            "tokenizer_sha256": sha256_file(out / "tokenizer.json"),
            "path": dg.MetadataValue.path(str(out)),
        },
        check_results=[_round_trip(tok.tokenizer, sample, special_ids)],
    )


# --- checks on a token shard -------------------------------------------------------------------

def _result(name: str, problems: list[str], **metadata: Any) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        check_name=name, passed=not problems,
        metadata={**metadata, "examples": dg.MetadataValue.json(problems[:TOO_MANY])})


def documents_accounted(documents: Path, index: Path) -> dg.AssetCheckResult:
    """Every document id of the input shard is in the token index exactly once (and the index
    names no other document)."""
    inputs = read_shard(documents, columns=["id"]).column("id").combine_chunks()
    indexed = read_shard(index, columns=["doc_id"]).column("doc_id").combine_chunks()
    missing = pc.filter(inputs, pc.invert(pc.is_in(inputs, value_set=indexed)))
    extra = pc.filter(indexed, pc.invert(pc.is_in(indexed, value_set=inputs)))
    counts = pc.value_counts(indexed)
    repeated = pc.filter(counts.field("values"), pc.greater(counts.field("counts"), 1))
    problems = ([f"missing from the index: {d}" for d in missing.to_pylist()]
                + [f"not an input document: {d}" for d in extra.to_pylist()]
                + [f"indexed more than once: {d}" for d in repeated.to_pylist()])
    if not problems and len(indexed) != len(inputs):  # an input id that is itself repeated
        problems.append(f"{len(inputs)} input documents, {len(indexed)} index entries")
    return _result(ACCOUNTED_CHECK, problems, input_documents=len(inputs),
                   index_entries=len(indexed), missing=len(missing), extra=len(extra),
                   repeated=len(repeated))


def _flat_ids(shard: Path) -> tuple[np.ndarray, np.ndarray]:
    """(every token id of the shard in row order, each row's first position in that stream)."""
    column = read_shard(shard, columns=["input_ids"]).column("input_ids").combine_chunks()
    lengths = pc.list_value_length(column).to_numpy(zero_copy_only=False).astype(np.int64)
    starts = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    return column.flatten().to_numpy(zero_copy_only=False), starts


def ids_below_vocab(shard: Path, vocab_size: int) -> dg.AssetCheckResult:
    """No id at or above the vocabulary size (an embedding lookup would be out of range)."""
    ids, _ = _flat_ids(shard)
    over = np.flatnonzero(ids >= vocab_size)
    top = int(ids.max()) if ids.size else -1
    problems = [f"id {int(ids[i])} at stream position {int(i)}" for i in over[:TOO_MANY]]
    return _result(VOCAB_CHECK, problems, max_id=top, vocab_size=vocab_size,
                   ids_out_of_range=int(over.size), dtype=str(ids.dtype))


def _segments(shard: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(row, offset, doc id) of every segment the rows record, in row order."""
    table = read_shard(shard, columns=["segment_starts", "segment_doc_ids"])
    starts = table.column("segment_starts").combine_chunks()
    rows = pc.list_parent_indices(starts).to_numpy(zero_copy_only=False).astype(np.int64)
    offsets = starts.flatten().to_numpy(zero_copy_only=False).astype(np.int64)
    docs = table.column("segment_doc_ids").combine_chunks().flatten()
    return rows, offsets, np.asarray(docs.to_pylist(), dtype=object)


def boundaries_consistent(shard: Path, index: Path, eos_id: int,
                          bos_id: int | None = None) -> dg.AssetCheckResult:
    """The index and the rows describe the same documents.

    The index's (row, offset) entries, laid on the stream, tile it in index order (each
    document starts where the previous one ended, the last ends with the stream); every
    document ends with EOS (and starts with BOS when ``bos_id`` is given); and the rows'
    segments are exactly the index's starts plus a continuation segment at offset 0 of every
    row that opens inside a document.
    """
    ids, row_start = _flat_ids(shard)
    n_rows, total = len(row_start) - 1, len(ids)
    idx = read_shard(index, columns=["doc_id", "row", "offset", "length"])
    row = idx.column("row").to_numpy().astype(np.int64)
    offset = idx.column("offset").to_numpy().astype(np.int64)
    length = idx.column("length").to_numpy().astype(np.int64)
    doc_ids = np.asarray(idx.column("doc_id").to_pylist(), dtype=object)
    problems: list[str] = []

    in_rows = (row >= 0) & (row < n_rows)
    safe_row = np.where(in_rows, row, 0)
    row_len = np.diff(row_start)
    placed = in_rows & (offset >= 0) & (offset < row_len[safe_row] if n_rows else False)
    problems += [f"{doc_ids[i]}: (row {row[i]}, offset {offset[i]}) is outside the rows"
                 for i in np.flatnonzero(~placed)[:TOO_MANY]]
    start = row_start[safe_row] + offset
    expected_start = np.concatenate([[0], np.cumsum(length)[:-1]]).astype(np.int64)
    gaps = np.flatnonzero(placed & (start != expected_start))
    problems += [f"{doc_ids[i]}: starts at stream position {start[i]}, the previous document "
                 f"ends at {expected_start[i]}" for i in gaps[:TOO_MANY]]
    if int(length.sum()) != total or (length < 1).any():
        problems.append(f"document lengths sum to {int(length.sum())} (shortest "
                        f"{int(length.min()) if length.size else 0}), the stream has {total} "
                        "tokens")
    tiled = placed.all() and not gaps.size and int(length.sum()) == total and (length >= 1).all()

    ends_ok = bos_ok = True
    if tiled and length.size:
        last = ids[start + length - 1]
        bad_end = np.flatnonzero(last != eos_id)
        ends_ok = not bad_end.size
        problems += [f"{doc_ids[i]}: ends with id {int(last[i])}, not EOS {eos_id}"
                     for i in bad_end[:TOO_MANY]]
        if bos_id is not None:
            bad_start = np.flatnonzero(ids[start] != bos_id)
            bos_ok = not bad_start.size
            problems += [f"{doc_ids[i]}: starts with id {int(ids[start[i]])}, not BOS {bos_id}"
                         for i in bad_start[:TOO_MANY]]

    seg_row, seg_off, seg_doc = _segments(shard)
    mismatched = 0
    if tiled:
        heads = row_start[1:n_rows]  # a row from the second on may open inside a document
        owner = np.searchsorted(start, heads, side="right") - 1
        inside = (owner >= 0) & (start[np.clip(owner, 0, None)] != heads)
        exp_row = np.concatenate([row, np.flatnonzero(inside) + 1])
        exp_off = np.concatenate([offset, np.zeros(int(inside.sum()), np.int64)])
        exp_doc = np.concatenate([doc_ids, doc_ids[owner[inside]]])
        order = np.lexsort((exp_off, exp_row))
        exp_row, exp_off, exp_doc = exp_row[order], exp_off[order], exp_doc[order]
        if len(exp_row) != len(seg_row):
            problems.append(f"the rows record {len(seg_row)} segments, the index implies "
                            f"{len(exp_row)} ({int(inside.sum())} of them continuations)")
            mismatched = abs(len(exp_row) - len(seg_row))
        else:
            differ = np.flatnonzero((exp_row != seg_row) | (exp_off != seg_off)
                                    | (exp_doc != seg_doc))
            mismatched = int(differ.size)
            problems += [f"segment {i}: rows say (row {seg_row[i]}, offset {seg_off[i]}, "
                         f"{seg_doc[i]}), the index implies (row {exp_row[i]}, offset "
                         f"{exp_off[i]}, {exp_doc[i]})" for i in differ[:TOO_MANY]]
    return _result(BOUNDARY_CHECK, problems, documents=len(length), rows=n_rows, tokens=total,
                   segments=len(seg_row), lengths_tile_stream=bool(tiled),
                   documents_end_with_eos=bool(tiled and ends_ok and bos_ok),
                   mismatched_segments=mismatched)


def token_checks(documents: Path, out_dir: Path, name: str,
                 meta: dict[str, Any]) -> list[dg.AssetCheckResult]:
    """The three checks on shard ``name`` of a token folder, ``meta`` being its
    ``_tokenizer.json`` (vocab_size, eos_id, bos_id, add_bos)."""
    shard, index = out_dir / name, out_dir / INDEX_DIR / name
    bos = meta["bos_id"] if meta.get("add_bos") else None
    return [documents_accounted(documents, index),
            ids_below_vocab(shard, int(meta["vocab_size"])),
            boundaries_consistent(shard, index, int(meta["eos_id"]), bos)]


# --- tokenized documents -----------------------------------------------------------------------

def tokenize_config(config: dg.Config, data: DataRoot) -> TokenizeConfig:
    """The library's config with the tokenizer folder resolved and fingerprinted."""
    settings = config.model_dump()
    folder = Path(settings["tokenizer"]).expanduser() if settings["tokenizer"] else None
    settings["tokenizer"] = str(data.path / folder if folder else tokenizer_dir(data))
    try:
        cfg = TokenizeConfig.model_validate(settings)
    except ValidationError as exc:
        raise _failure("invalid tokenize config", exc) from None
    if not (Path(cfg.tokenizer) / "tokenizer.json").is_file():
        raise dg.Failure(f"{cfg.tokenizer} has no tokenizer.json: materialize tokenizer first "
                         "(or give a tokenizer folder)")
    return with_fingerprint(cfg)


def _stale_neighbours(out_dir: Path, name: str, cfg: TokenizeConfig) -> list[str]:
    """Other shards of the folder made with another tokenizer or settings (the folder's
    ``_tokenizer.json`` describes this run's, so those need re-materializing)."""
    manifest = read_manifest(out_dir)
    if manifest is None:
        return []
    return sorted(n for n, e in manifest.shards.items()
                  if n != name and e.get("config_hash") != cfg.config_hash())


def _length_stats(index: Path) -> tuple[dict[str, Any], np.ndarray]:
    table = read_shard(index, columns=["source", "length", "truncated"])
    lengths = table.column("length").to_numpy()
    by_source = table.group_by("source").aggregate([("length", "sum")])
    per_source = {s or "": int(n) for s, n in zip(by_source.column("source").to_pylist(),
                                                  by_source.column("length_sum").to_pylist(),
                                                  strict=True)}
    truncated = int(pc.sum(table.column("truncated")).as_py() or 0)
    return {"tokens": int(lengths.sum()), "documents": len(lengths), "truncated": truncated,
            "tokens_per_source": per_source}, lengths


@dg.asset(partitions_def=warc_files, group_name=GROUP, kinds={"arrow"},
          deps=[tokenizer, decontaminated_documents],
          check_specs=[
              *contract_checks("tokenized_documents"),
              dg.AssetCheckSpec(ACCOUNTED_CHECK, asset="tokenized_documents", blocking=True,
                                description="Every input document id is in the token index "
                                            "exactly once, and the index names no other."),
              dg.AssetCheckSpec(VOCAB_CHECK, asset="tokenized_documents", blocking=True,
                                description="Every token id is below the vocabulary size."),
              dg.AssetCheckSpec(BOUNDARY_CHECK, asset="tokenized_documents", blocking=True,
                                description="The index's (row, offset) entries are the rows' "
                                            "document segment starts (plus a continuation at "
                                            "offset 0 of rows opening inside a document), "
                                            "lengths tile the stream, every document ends "
                                            "with EOS."),
          ],
          description="Per WARC file: the curated documents as packed rows of seq_len "
                      "token ids (each document + EOS, back to back) with segment starts and "
                      "document ids per row, and token_index/<shard> mapping every document to "
                      "(row, offset, length). Uncompressed Arrow, memory-mapped by trainers.")
def tokenized_documents(context: dg.AssetExecutionContext, config: TokenizeRunConfig,
                        data: DataRoot) -> dg.MaterializeResult:
    upstream = data.stage_dir(DATASET, CURATED_STAGE)
    name = shard_name_for(context.partition_key)
    if not (upstream / name).is_file():
        raise dg.Failure(f"{upstream / name} is missing: materialize decontaminated_documents "
                         "first")
    cfg = tokenize_config(config, data)
    out_dir = tokens_dir(data)
    try:
        meta = write_meta(out_dir, cfg)
    except (ValueError, FileNotFoundError) as exc:
        raise _failure("tokenizer", exc) from None
    stale = _stale_neighbours(out_dir, name, cfg)
    if stale:
        context.log.warning(f"shards made with another tokenizer or settings: {stale}; "
                            "materialize their partitions again")
    unit = WorkUnit(name, (upstream / name,), upstream)
    result = materialize_unit(context, TOKENIZE, unit, out_dir, cfg)
    stats, lengths = _length_stats(out_dir / INDEX_DIR / name)
    n_rows = read_shard(out_dir / name, columns=["segment_starts"]).num_rows
    spread = lengths.max() / max(lengths.min(), 1) if lengths.size else 1
    hist = histogram_png(lengths, title="documents by length", xlabel="tokens (EOS included)",
                         ylabel="documents", log_x=bool(spread > 100))
    return dg.MaterializeResult(
        metadata={
            **(result.metadata or {}),
            **{k: v for k, v in stats.items() if k != "tokens_per_source"},
            "tokens_per_source": dg.MetadataValue.json(stats["tokens_per_source"]),
            "rows": n_rows,
            "fill": float(stats["tokens"] / (n_rows * cfg.seq_len) if n_rows else 0.0),
            "mean_document_tokens": float(lengths.mean() if lengths.size else 0.0),
            "document_lengths": md_image(hist, "document lengths in tokens"),
            "seq_len": cfg.seq_len,
            "vocab_size": int(meta["vocab_size"]),
            "token_dtype": meta["token_dtype"],
            "tokenizer": dg.MetadataValue.path(cfg.tokenizer),
            "tokenizer_sha256": cfg.tokenizer_sha256,
            "stale_shards": dg.MetadataValue.json(stale),
        },
        check_results=[*(result.check_results or []),
                       *token_checks(upstream / name, out_dir, name, meta)],
    )
