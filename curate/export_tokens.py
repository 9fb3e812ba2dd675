"""Export a token stage to the formats trainers read, and check each export by reading back.

- ``hf``: a folder ``datasets.load_from_disk`` opens (also ``load_dataset("arrow",
  data_files=...)``): one Arrow stream file per shard, the rows as they are (``input_ids``
  a sequence column, plus the segment columns), ``state.json`` and ``dataset_info.json``.
  Features are left for ``datasets`` to infer from the Arrow schema, so any datasets version
  (2.x to 5.x) reads it.
- ``megatron``: Megatron-LM's indexed dataset, ``PREFIX.bin`` + ``PREFIX.idx`` (MMIDIDX v1),
  one sequence per document, cut out of the packed rows with ``token_index/`` (EOS kept).
  Megatron packs and splits sequences itself, so it wants documents, not our rows.
- ``bin``: the whole token stream flat (nanoGPT's ``train.bin``): uint16 when the vocabulary
  fits, else uint32, readable with ``np.memmap``; ``PREFIX.json`` holds dtype and counts.

``verify_export`` reads an export back with readers of its own (the Megatron one written
from the format description, not from our writer) and compares every row, document or
token with the source stage.
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from curate.mix import MappedShard, TokenStage, open_token_stage
from schemas.shards import atomic_write, read_shard, replaced_folder

Format = Literal["hf", "megatron", "bin"]
FORMATS: tuple[str, ...] = ("hf", "megatron", "bin")

MEGATRON_HEADER = b"MMIDIDX\x00\x00"
MEGATRON_VERSION = 1
MEGATRON_DTYPES: dict[int, np.dtype] = {
    1: np.dtype(np.uint8), 2: np.dtype(np.int8), 3: np.dtype(np.int16), 4: np.dtype(np.int32),
    5: np.dtype(np.int64), 6: np.dtype(np.float64), 7: np.dtype(np.float32),
    8: np.dtype(np.uint16)}
MEGATRON_CODES = {dt: code for code, dt in MEGATRON_DTYPES.items()}
HF_STATE = "state.json"
HF_INFO = "dataset_info.json"


@dataclass
class ExportResult:
    """What an export wrote."""

    format: str
    paths: list[Path]
    rows: int = 0
    documents: int = 0
    tokens: int = 0
    dtype: str = ""

    def summary(self) -> str:
        what = f"{self.rows:,} rows" if self.format == "hf" else f"{self.documents:,} documents"
        return (f"export {self.format}: {what}, {self.tokens:,} tokens ({self.dtype}) -> "
                + ", ".join(str(p) for p in self.paths))


@dataclass
class ExportCheck:
    """The read-back check of an export; ``problems`` empty means it equals the source."""

    format: str
    path: Path
    checked: int = 0
    tokens: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        unit = "rows" if self.format == "hf" else "documents" if self.format == "megatron" \
            else "tokens"
        head = (f"verify {self.format} {self.path}: {self.checked:,} {unit} read back, "
                f"{self.tokens:,} tokens: ")
        return head + ("identical to the source" if self.ok
                       else "PROBLEMS\n" + "\n".join(f"  {p}" for p in self.problems))


# -- shared helpers ------------------------------------------------------------------------

def _prefix(output: Path, suffixes: tuple[str, ...]) -> Path:
    """``out.bin`` / ``out.idx`` / ``out`` all name the prefix ``out``."""
    output = Path(output)
    return output.with_suffix("") if output.suffix in suffixes else output


def _with_suffix(prefix: Path, suffix: str) -> Path:
    return prefix.with_name(prefix.name + suffix)


def flat_dtype(stage: TokenStage, source_dtype: np.dtype) -> np.dtype:
    """uint16 when every id fits (vocab <= 65,536), else uint32."""
    vocab = stage.vocab_size
    if vocab is not None:
        return np.dtype(np.uint16 if vocab <= 1 << 16 else np.uint32)
    return np.dtype(np.uint16 if source_dtype.itemsize <= 2 else np.uint32)


def _shards(stage: TokenStage) -> list[MappedShard]:
    if not stage.shards:
        raise ValueError(f"{stage.path}: the stage has no shards")
    return [MappedShard(p) for p in stage.shards]


@dataclass
class Documents:
    """Every document of a stage, in stream order: global start and length in tokens."""

    doc_ids: pa.Array
    starts: np.ndarray
    lengths: np.ndarray
    shard_tokens: np.ndarray
    """Tokens per shard, in shard order."""

    @property
    def contiguous(self) -> bool:
        """Documents tile the stream exactly (the packed layout): no gaps, no overlaps."""
        ends = self.starts + self.lengths
        return (len(self.starts) > 0 and self.starts[0] == 0
                and bool((self.starts[1:] == ends[:-1]).all())
                and int(ends[-1]) == int(self.shard_tokens.sum()))


def read_documents(stage: TokenStage, shards: list[MappedShard]) -> Documents:
    """Document boundaries from ``token_index/``: (row, offset) -> a position in the stream."""
    ids, starts, lengths, shard_tokens = [], [], [], []
    base = 0
    for shard in shards:
        row_lengths = shard.lengths()
        row_start = np.concatenate([[0], np.cumsum(row_lengths)])
        index_path = stage.index_path(shard.path)
        if not index_path.exists():
            raise FileNotFoundError(f"{index_path} is missing: the document index written by "
                                    f"`curate tokenize` is needed to cut rows into documents")
        index = read_shard(index_path, columns=["doc_id", "row", "offset", "length"])
        row = index.column("row").to_numpy().astype(np.int64)
        if len(row) and (row.min() < 0 or row.max() >= len(row_lengths)):
            raise ValueError(f"{index_path}: rows outside the shard's {len(row_lengths)} rows")
        starts.append(base + row_start[row] + index.column("offset").to_numpy())
        lengths.append(index.column("length").to_numpy().astype(np.int64))
        ids.append(index.column("doc_id").combine_chunks())
        shard_tokens.append(int(row_start[-1]))
        base += int(row_start[-1])
    start = np.concatenate(starts).astype(np.int64)
    length = np.concatenate(lengths)
    order = np.argsort(start, kind="stable")
    doc_ids = pa.concat_arrays(ids).take(pa.array(order)) if ids else pa.array([], pa.string())
    return Documents(doc_ids, start[order], length[order],
                     np.asarray(shard_tokens, dtype=np.int64))


def _gather(flat: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """The documents' tokens back to back: flat[s:s+n] for each (s, n), without a loop."""
    total = int(lengths.sum())
    if len(starts) and (starts[1:] == starts[:-1] + lengths[:-1]).all():
        return flat[starts[0]:starts[0] + total]  # back to back: a view, no index array
    first = np.cumsum(lengths) - lengths
    idx = np.repeat(starts - first, lengths) + np.arange(total, dtype=np.int64)
    return flat[idx]


# -- export ----------------------------------------------------------------------------------

def export_tokens(stage_dir: Path, fmt: str, output: Path) -> ExportResult:
    """Export ``stage_dir`` (a pretrain_tokens stage) as ``fmt`` to ``output``."""
    writers = {"hf": export_hf, "megatron": export_megatron, "bin": export_bin}
    if fmt not in writers:
        raise ValueError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    return writers[fmt](open_token_stage(stage_dir), Path(output))


def export_hf(stage: TokenStage, output: Path) -> ExportResult:
    """A ``datasets.save_to_disk``-shaped folder, written without a row-level copy in Python."""
    if output.exists() and any(output.iterdir()) and not (output / HF_STATE).exists():
        raise FileExistsError(f"{output} exists and is not a datasets folder; choose another "
                              f"--output")
    if not stage.shards:
        raise ValueError(f"{stage.path}: the stage has no shards")
    result = ExportResult("hf", [output])
    with replaced_folder(output) as work:
        n = len(stage.shards)
        files = []
        for i, path in enumerate(stage.shards):
            table = read_shard(path)
            name = f"data-{i:05d}-of-{n:05d}.arrow"
            with pa.OSFile(str(work / name), "wb") as sink, \
                    pa.ipc.new_stream(sink, table.schema) as writer:
                writer.write_table(table, max_chunksize=1000)
            files.append({"filename": name})
            result.rows += table.num_rows
            result.tokens += int(pc.sum(pc.list_value_length(table.column("input_ids")))
                                 .as_py() or 0)
            result.dtype = str(table.schema.field("input_ids").type.value_type)
        fingerprint = hashlib.sha256("".join(stage.sha256).encode()).hexdigest()[:16]
        state = {"_data_files": files, "_fingerprint": fingerprint, "_format_columns": None,
                 "_format_kwargs": {}, "_format_type": None, "_output_all_columns": False,
                 "_split": None}
        info = {"description": f"pretrain_tokens from {stage.path.resolve()}; tokenizer "
                               f"{json.dumps(stage.meta, sort_keys=True)}",
                "citation": "", "homepage": "", "license": ""}
        (work / HF_STATE).write_text(json.dumps(state, indent=2) + "\n")
        (work / HF_INFO).write_text(json.dumps(info, indent=2) + "\n")
    return result


def _write_chunks(f, chunks: Iterator[np.ndarray], dtype: np.dtype) -> int:
    n = 0
    for chunk in chunks:
        f.write(np.ascontiguousarray(chunk, dtype=dtype).data)
        n += len(chunk)
    return n


def _check_range(shards: list[MappedShard], dtype: np.dtype) -> None:
    """Refuse an export whose ids do not fit the chosen dtype, rather than wrap them."""
    limit = np.iinfo(dtype).max
    for shard in shards:
        for chunk in shard.flat():
            if len(chunk) and int(chunk.max()) > limit:
                raise ValueError(f"{shard.path}: token id {int(chunk.max())} does not fit "
                                 f"{dtype.name}; is vocab_size in _tokenizer.json right?")


def export_bin(stage: TokenStage, output: Path) -> ExportResult:
    """The token stream flat (rows back to back) as ``PREFIX.bin`` + ``PREFIX.json``."""
    shards = _shards(stage)
    dtype = flat_dtype(stage, shards[0].dtype)
    _check_range(shards, dtype)
    prefix = _prefix(output, (".bin", ".json"))
    bin_path, meta_path = _with_suffix(prefix, ".bin"), _with_suffix(prefix, ".json")
    counts = []

    def write(f) -> None:
        for shard in shards:
            counts.append(_write_chunks(f, shard.flat(), dtype))

    atomic_write(bin_path, write)
    documents = None
    if all(stage.index_path(s.path).exists() for s in shards):
        documents = sum(read_shard(stage.index_path(s.path), columns=["row"]).num_rows
                        for s in shards)
    meta = {"format": "flat_tokens", "bin": bin_path.name, "dtype": dtype.name,
            "tokens": sum(counts), "rows": sum(len(s) for s in shards), "documents": documents,
            "vocab_size": stage.vocab_size, "eos_id": stage.eos_id, "seq_len": stage.seq_len,
            "source": str(stage.path.resolve()),
            "shards": [{"name": s.path.name, "rows": len(s), "tokens": c, "sha256": h}
                       for s, c, h in zip(shards, counts, stage.sha256, strict=True)]}
    text = json.dumps(meta, indent=2) + "\n"
    atomic_write(meta_path, lambda f: f.write(text.encode()))
    return ExportResult("bin", [bin_path, meta_path], rows=meta["rows"],
                        documents=documents or 0, tokens=meta["tokens"], dtype=dtype.name)


def megatron_dtype(stage: TokenStage, source_dtype: np.dtype) -> np.dtype:
    """Megatron's choice: uint16 below 65,500 ids, else int32 (it has no uint32 code)."""
    vocab = stage.vocab_size
    small = vocab < 65500 if vocab is not None else source_dtype.itemsize <= 2
    return np.dtype(np.uint16 if small else np.int32)


def export_megatron(stage: TokenStage, output: Path) -> ExportResult:
    """``PREFIX.bin`` + ``PREFIX.idx`` with one sequence per document."""
    shards = _shards(stage)
    docs = read_documents(stage, shards)
    if not len(docs.lengths):
        raise ValueError(f"{stage.path}: token_index lists no documents")
    if (docs.lengths <= 0).any() or docs.lengths.max() > np.iinfo(np.int32).max:
        raise ValueError(f"{stage.path}: token_index has document lengths outside 1..2^31-1")
    dtype = megatron_dtype(stage, shards[0].dtype)
    _check_range(shards, dtype)
    prefix = _prefix(output, (".bin", ".idx"))
    bin_path, idx_path = _with_suffix(prefix, ".bin"), _with_suffix(prefix, ".idx")

    def write_bin(f) -> None:
        if docs.contiguous:  # the packed layout: the documents are the stream itself
            for shard in shards:
                _write_chunks(f, shard.flat(), dtype)
            return
        base = 0
        for shard, n_tokens in zip(shards, docs.shard_tokens, strict=True):
            inside = (docs.starts >= base) & (docs.starts < base + n_tokens)
            starts, lengths = docs.starts[inside] - base, docs.lengths[inside]
            if len(starts) and int((starts + lengths).max()) > n_tokens:
                raise ValueError(f"{shard.path.name}: a document runs past the end of its "
                                 f"shard and the documents do not tile the stream")
            flat = np.concatenate(list(shard.flat())) if n_tokens else np.zeros(0, dtype)
            f.write(np.ascontiguousarray(_gather(flat, starts, lengths), dtype=dtype).data)
            base += int(n_tokens)

    atomic_write(bin_path, write_bin)
    atomic_write(idx_path, lambda f: f.write(megatron_index(docs.lengths, dtype)))
    return ExportResult("megatron", [bin_path, idx_path], rows=sum(len(s) for s in shards),
                        documents=len(docs.lengths), tokens=int(docs.lengths.sum()),
                        dtype=dtype.name)


def megatron_index(lengths: np.ndarray, dtype: np.dtype) -> bytes:
    """The ``.idx`` bytes for sequences of ``lengths`` tokens, one document each."""
    n = len(lengths)
    sizes = np.asarray(lengths, dtype=np.int32)
    pointers = (np.cumsum(lengths, dtype=np.int64) - lengths) * dtype.itemsize
    doc_idx = np.arange(n + 1, dtype=np.int64)
    return b"".join([MEGATRON_HEADER, struct.pack("<Q", MEGATRON_VERSION),
                     struct.pack("<B", MEGATRON_CODES[dtype]), struct.pack("<Q", n),
                     struct.pack("<Q", len(doc_idx)), sizes.astype("<i4").tobytes(),
                     pointers.astype("<i8").tobytes(), doc_idx.astype("<i8").tobytes()])


# -- reading back ----------------------------------------------------------------------------

@dataclass
class MegatronDataset:
    """A Megatron ``.bin``/``.idx`` pair read from the format description alone."""

    dtype: np.dtype
    sizes: np.ndarray
    pointers: np.ndarray
    doc_idx: np.ndarray
    tokens: np.ndarray
    """The whole ``.bin`` memory-mapped as ``dtype``."""

    def __len__(self) -> int:
        return len(self.sizes)

    def __getitem__(self, i: int) -> np.ndarray:
        start = int(self.pointers[i]) // self.dtype.itemsize
        return self.tokens[start:start + int(self.sizes[i])]


def read_megatron(prefix: Path) -> MegatronDataset:
    """Parse ``PREFIX.idx`` (header, version, dtype code, counts, arrays) and map ``.bin``."""
    prefix = _prefix(prefix, (".bin", ".idx"))
    raw = _with_suffix(prefix, ".idx").read_bytes()
    if raw[:9] != MEGATRON_HEADER:
        raise ValueError(f"{prefix}.idx: not an MMIDIDX index (header {raw[:9]!r})")
    version, = struct.unpack_from("<Q", raw, 9)
    if version != MEGATRON_VERSION:
        raise ValueError(f"{prefix}.idx: version {version}, expected 1")
    code, = struct.unpack_from("<B", raw, 17)
    if code not in MEGATRON_DTYPES:
        raise ValueError(f"{prefix}.idx: unknown dtype code {code}")
    n_seq, n_doc = struct.unpack_from("<QQ", raw, 18)
    pos = 34
    sizes = np.frombuffer(raw, dtype="<i4", count=n_seq, offset=pos)
    pos += 4 * n_seq
    pointers = np.frombuffer(raw, dtype="<i8", count=n_seq, offset=pos)
    pos += 8 * n_seq
    doc_idx = np.frombuffer(raw, dtype="<i8", count=n_doc, offset=pos)
    pos += 8 * n_doc
    if pos != len(raw):
        raise ValueError(f"{prefix}.idx: {len(raw) - pos} bytes after the document index")
    dtype = MEGATRON_DTYPES[code]
    bin_path = _with_suffix(prefix, ".bin")
    tokens = (np.memmap(bin_path, dtype=dtype, mode="r") if bin_path.stat().st_size
              else np.zeros(0, dtype))
    return MegatronDataset(dtype, sizes, pointers, doc_idx, tokens)


def _shard_flat(path: Path) -> np.ndarray:
    """A shard's token stream via pyarrow's own flatten (not the exporters' code path)."""
    ids = read_shard(path, columns=["input_ids"]).column("input_ids")
    return pc.list_flatten(ids).to_numpy()


def _first_difference(a: np.ndarray, b: np.ndarray) -> int | None:
    if len(a) != len(b):
        return min(len(a), len(b))
    bad = np.flatnonzero(a.astype(np.int64) != b.astype(np.int64))
    return int(bad[0]) if len(bad) else None


def verify_export(stage_dir: Path, fmt: str, output: Path) -> ExportCheck:
    """Read ``output`` back and compare it with the stage: every row, document or token."""
    checkers = {"hf": _verify_hf, "megatron": _verify_megatron, "bin": _verify_bin}
    if fmt not in checkers:
        raise ValueError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    stage = open_token_stage(stage_dir)
    check = ExportCheck(fmt, Path(output))
    try:
        checkers[fmt](stage, Path(output), check)
    except (OSError, ValueError, pa.ArrowException, struct.error) as exc:
        check.problems.append(f"unreadable: {type(exc).__name__}: {exc}")
    return check


def _verify_hf(stage: TokenStage, output: Path, check: ExportCheck) -> None:
    try:
        import datasets
    except ImportError:  # still check the files, with pyarrow
        state = json.loads((output / HF_STATE).read_text())
        tables = [pa.ipc.open_stream(pa.memory_map(str(output / f["filename"]))).read_all()
                  for f in state["_data_files"]]
        loaded = pa.concat_tables(tables) if tables else None
    else:
        ds = datasets.load_from_disk(str(output))
        if len(ds) and not isinstance(ds[0]["input_ids"], list):
            check.problems.append(f"input_ids loads as {type(ds[0]['input_ids']).__name__}, "
                                  f"not a sequence")
        loaded = ds.data.table
    got_ids = loaded.column("input_ids") if loaded is not None else pa.chunked_array([], pa.null())
    pos = 0
    for path in stage.shards:
        want = read_shard(path)
        n = want.num_rows
        got = got_ids.slice(pos, n)
        pos += n
        if len(got) != n:
            check.problems.append(f"{path.name}: {len(got)} rows in the export, {n} in the "
                                  f"source")
            continue
        want_len = pc.list_value_length(want.column("input_ids")).to_numpy()
        got_len = pc.list_value_length(got).to_numpy()
        if (bad := _first_difference(got_len, want_len)) is not None:
            check.problems.append(f"{path.name}: row {bad} has another length in the export")
            continue
        wflat, gflat = _shard_flat(path), pc.list_flatten(got).to_numpy()
        if (bad := _first_difference(gflat, wflat)) is not None:
            row = int(np.searchsorted(np.cumsum(want_len), bad, side="right"))
            check.problems.append(f"{path.name}: row {row} differs from the source")
            continue
        for name in ("segment_starts", "segment_doc_ids"):
            if name in loaded.column_names and not loaded.column(name).slice(
                    pos - n, n).equals(want.column(name)):
                check.problems.append(f"{path.name}: column {name} differs from the source")
        check.checked += n
        check.tokens += len(wflat)
    if pos != len(got_ids):
        check.problems.append(f"the export has {len(got_ids)} rows, the source {pos}")


def _verify_megatron(stage: TokenStage, output: Path, check: ExportCheck) -> None:
    got = read_megatron(output)
    shards = [MappedShard(p) for p in stage.shards]
    docs = read_documents(stage, shards)
    n = len(docs.lengths)
    if len(got) != n:
        check.problems.append(f"{len(got)} sequences in the export, {n} documents in the source")
        return
    if not np.array_equal(got.doc_idx, np.arange(n + 1)):
        check.problems.append("document index is not 0..n (one sequence per document)")
    if not np.array_equal(got.sizes, docs.lengths):
        bad = int(np.flatnonzero(got.sizes != docs.lengths)[0])
        check.problems.append(f"document {docs.doc_ids[bad].as_py()!r}: {got.sizes[bad]} "
                              f"tokens in the export, {docs.lengths[bad]} in the source")
        return
    expected_ptr = (np.cumsum(docs.lengths) - docs.lengths) * got.dtype.itemsize
    if not np.array_equal(got.pointers, expected_ptr):
        check.problems.append("sequence pointers are not the running byte offsets")
        return
    if len(got.tokens) != int(docs.lengths.sum()):
        check.problems.append(f".bin holds {len(got.tokens)} tokens, the index "
                              f"{int(docs.lengths.sum())}")
        return
    base = 0
    for i, path in enumerate(stage.shards):
        flat = _shard_flat(path)
        n_tokens = len(flat)
        inside = np.flatnonzero((docs.starts >= base) & (docs.starts < base + n_tokens))
        if len(inside):
            starts, lengths = docs.starts[inside] - base, docs.lengths[inside]
            overflow = int((starts + lengths).max()) - n_tokens
            if overflow > 0 and i + 1 < len(stage.shards):
                flat = np.concatenate([flat, _shard_flat(stage.shards[i + 1])[:overflow]])
            want = _gather(flat, starts, lengths)
            first = int(got.pointers[inside[0]]) // got.dtype.itemsize
            have = got.tokens[first:first + len(want)]
            if (bad := _first_difference(have, want)) is not None:
                doc = inside[np.searchsorted(np.cumsum(lengths), bad, side="right")]
                check.problems.append(f"document {docs.doc_ids[doc].as_py()!r} differs from the "
                                      f"source")
            check.checked += len(inside)
            check.tokens += len(want)
        base += n_tokens
    if stage.eos_id is not None:
        last = got.tokens[np.cumsum(docs.lengths) - 1]
        if (not_eos := int((last != stage.eos_id).sum())):
            check.problems.append(f"{not_eos} documents do not end with EOS ({stage.eos_id})")


def _verify_bin(stage: TokenStage, output: Path, check: ExportCheck) -> None:
    prefix = _prefix(output, (".bin", ".json"))
    meta = json.loads(_with_suffix(prefix, ".json").read_text())
    dtype = np.dtype(meta["dtype"])
    bin_path = _with_suffix(prefix, ".bin")
    tokens = (np.memmap(bin_path, dtype=dtype, mode="r") if bin_path.stat().st_size
              else np.zeros(0, dtype))
    if len(tokens) != meta["tokens"]:
        check.problems.append(f".bin holds {len(tokens)} tokens, the .json says "
                              f"{meta['tokens']}")
    pos = 0
    for path in stage.shards:
        want = _shard_flat(path)
        have = tokens[pos:pos + len(want)]
        if (bad := _first_difference(have, want)) is not None:
            check.problems.append(f"{path.name}: token {bad} (stream position {pos + bad}) "
                                  f"differs from the source")
        pos += len(want)
        check.tokens += len(want)
    if pos != len(tokens):
        check.problems.append(f".bin holds {len(tokens)} tokens, the source {pos}")
    check.checked = check.tokens
