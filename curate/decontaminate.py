"""Decontamination: remove or flag documents that share an n-gram with an evaluation set.

**Index** (``build_index``): every text field of every evaluation item (JSONL/JSON, Parquet,
CSV, or a ``datasets.save_to_disk`` folder; nested fields too) is normalised with the
dedup normaliser (``curate.dedup.normalize``: lower case, punctuation and symbols to spaces,
whitespace collapsed; digits kept by default, as numbers matter in maths sets) and cut into
n-grams of ``n`` consecutive words (13 by default, as in GPT-3's decontamination). Fields are
never joined, so an n-gram does not straddle a question and its answer; a text shorter than
``n`` words has no n-gram and cannot be matched (``items_without_ngrams`` in ``index.json``
counts such items). Each n-gram is hashed to 64 bits: each word by two seeded xxh32, then a
polynomial rolling hash over the ``n`` word hashes (one multiply-add per word, whatever
``n``) and a 64-bit finaliser. The index folder holds the sorted unique hashes
(``ngrams.npy``), which items own each hash (``owner_offsets.npy`` + ``owners.npy``, CSR),
the items (``items.arrow``: eval set, item id, key ``<set>:<id>``) and ``index.json``
(settings, sources with their sha256, counts, sha256 of every array). Documents are hashed
with the settings stored in the index, so the two can never disagree.

**Stage** (``DECONTAMINATE``, a map over documents shards): one compiled pass per shard
normalises the texts, rolls the n-gram hashes and looks each one up (a bitset of the hashes'
top bits rejects almost every miss in one memory access, then binary search in the sorted
array). Hits become, per document, the number of matching n-gram positions
(``contamination_ngrams``) and the distinct items hit (``contamination_hits``, a list of
item keys). ``mode: remove`` rejects documents with at least ``min_ngram_hits`` matches
(reason ``contaminated``, the items in ``reject_detail``); ``mode: flag`` keeps every row and
adds ``contaminated``. The work unit's inputs include ``index.json``, so a rebuilt index
re-runs every shard and an unchanged one lets the runner skip them.

**Report** (``decontamination_report``): built from the stage's own output rows (rejected
rows, or flagged kept rows), so there is no global side effect in the map: which items were
hit, by which documents, per eval set.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numba
import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field

from curate.config import StageConfig
from curate.dedup.minhash import string_buffers, xxh32
from curate.dedup.normalize import Normalization, normalize
from curate.runner import Stage, StageOutput, WorkUnit
from schemas import DOCUMENTS, read_shard
from schemas.shards import fsync_dir, sha256_file, temp_name

STAGE_NAME = "decontaminate"
CONTAMINATED = "contaminated"
INDEX_VERSION = "1"
INDEX_FILE = "index.json"
ARRAYS = ("ngrams.npy", "owner_offsets.npy", "owners.npy")
ITEMS_FILE = "items.arrow"
REPORT_FILE = "_decontamination.json"
ID_FIELDS = ("id", "idx", "task_id", "question_id", "qid", "uid", "_id")
"""Item id fields tried in order when ``id_field`` is not set; else the row number."""
HF_MARKERS = ("dataset_dict.json", "state.json")
DETAIL_ITEMS = 5

_SEED_HI = 0x9E3779B1
_MULT = np.uint64(0x9E3779B97F4A7C15)
"""Odd multiplier of the rolling hash: ``H = sum(word_hash[i] * MULT**(n-1-i)) mod 2**64``."""


class IndexConfig(StageConfig):
    """How the evaluation n-gram index is built (stored in ``index.json``)."""

    n: int = Field(13, ge=1, le=1000)
    """Words per n-gram."""
    lowercase: bool = True
    remove_punctuation: bool = True
    normalize_digits: bool = False
    """Map every digit run to ``0``; off by default, as numbers are the content of maths items."""
    strip_accents: bool = False
    fields: list[str] | None = None
    """Item fields to index (a dotted path selects a nested field, a prefix all below it);
    default: every string field except the id field."""
    id_field: str | None = None
    """Field holding the item id; default: the first of id, idx, task_id, question_id, qid,
    uid present in the item, else the row number (0-based)."""
    split: str | None = None
    """For a saved ``DatasetDict``: index only this split (default: every split, each its own
    eval set named ``<name>/<split>``)."""

    def normalization(self) -> Normalization:
        return Normalization(self.lowercase, self.remove_punctuation, self.normalize_digits,
                             self.strip_accents)


class DecontamConfig(StageConfig):
    """Which index to check against and what to do with contaminated documents."""

    index: str
    """Index folder written by ``build_index`` (``curate decontam index``)."""
    mode: Literal["remove", "flag"] = "remove"
    min_ngram_hits: int = Field(1, ge=1)
    """Matching n-gram positions that make a document contaminated."""
    text_column: str = "text"


# --- hashing kernels -----------------------------------------------------------------------

@numba.njit(inline="always")
def _mix64(h):
    """splitmix64's finaliser: spreads the rolling hash over all 64 bits (the bitset uses the
    top bits)."""
    h ^= h >> np.uint64(30)
    h *= np.uint64(0xBF58476D1CE4E5B9)
    h ^= h >> np.uint64(27)
    h *= np.uint64(0x94D049BB133111EB)
    h ^= h >> np.uint64(31)
    return h


@numba.njit(cache=True)
def _doc_ngrams(data, start, end, n, mult, top, words, out):
    """n-gram hashes of one normalised text (words split on single spaces) into ``out``;
    returns how many. ``top`` is ``mult ** (n - 1)``; ``words`` is scratch."""
    nw = 0
    i = start
    while i < end:
        if data[i] == 32:
            i += 1
            continue
        j = i
        while j < end and data[j] != 32:
            j += 1
        lo = xxh32(data, i, j, 0)
        hi = xxh32(data, i, j, _SEED_HI)
        words[nw] = (np.uint64(hi) << np.uint64(32)) | np.uint64(lo)
        nw += 1
        i = j
    if nw < n:
        return 0
    h = np.uint64(0)
    for k in range(n):
        h = h * mult + words[k]
    out[0] = _mix64(h)
    for k in range(1, nw - n + 1):
        h = (h - words[k - 1] * top) * mult + words[k + n - 1]
        out[k] = _mix64(h)
    return nw - n + 1


@numba.njit(cache=True)
def _count_words(data, offsets, out):
    for d in range(offsets.shape[0] - 1):
        count = 0
        prev_space = True
        for i in range(offsets[d], offsets[d + 1]):
            space = data[i] == 32
            if prev_space and not space:
                count += 1
            prev_space = space
        out[d] = count


@numba.njit(cache=True)
def _fill_ngrams(data, offsets, n, mult, top, starts, longest, out):
    words = np.empty(longest + 1, np.uint64)
    for d in range(offsets.shape[0] - 1):
        _doc_ngrams(data, offsets[d], offsets[d + 1], n, mult, top, words,
                    out[starts[d]:starts[d + 1]])


def _top(n: int) -> np.uint64:
    return np.uint64(pow(int(_MULT), n - 1, 1 << 64))


def ngram_hashes(normalised: pa.Array, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(uint64 hashes of every n-gram, int64 offsets: document d owns
    ``hashes[offsets[d]:offsets[d + 1]]``) of normalised texts."""
    data, offsets = string_buffers(normalised)
    counts = np.empty(len(offsets) - 1, dtype=np.int64)
    _count_words(data, offsets, counts)
    starts = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(np.maximum(counts - n + 1, 0), out=starts[1:])
    out = np.empty(int(starts[-1]), dtype=np.uint64)
    longest = int(counts.max()) if len(counts) else 0
    _fill_ngrams(data, offsets, n, _MULT, _top(n), starts, longest, out)
    return out, starts


def ngram_hashes_reference(text: str, n: int) -> list[int]:
    """The same hashes for one normalised text in plain Python: what the kernel must equal."""
    import xxhash

    mask = (1 << 64) - 1

    def mix(h: int) -> int:
        h ^= h >> 30
        h = (h * 0xBF58476D1CE4E5B9) & mask
        h ^= h >> 27
        h = (h * 0x94D049BB133111EB) & mask
        return h ^ (h >> 31)

    words = [w.encode() for w in text.split(" ") if w]
    wh = [(xxhash.xxh32_intdigest(w, _SEED_HI) << 32) | xxhash.xxh32_intdigest(w, 0)
          for w in words]
    out = []
    for k in range(len(wh) - n + 1):
        h = 0
        for w in wh[k:k + n]:
            h = (h * int(_MULT) + w) & mask
        out.append(mix(h))
    return out


@numba.njit(cache=True)
def _build_bits(keys, bits, shift):
    for k in range(keys.shape[0]):
        b = keys[k] >> shift
        bits[b >> np.uint64(6)] |= np.uint64(1) << (b & np.uint64(63))


@numba.njit(cache=True)
def _find(keys, h):
    lo = 0
    hi = keys.shape[0]
    while lo < hi:
        mid = (lo + hi) >> 1
        if keys[mid] < h:
            lo = mid + 1
        else:
            hi = mid
    if lo < keys.shape[0] and keys[lo] == h:
        return lo
    return -1


@numba.njit(cache=True)
def _lookup(data, offsets, n, mult, top, keys, bits, shift, longest):
    """(document, key position) of every n-gram of every document found in ``keys``."""
    words = np.empty(longest + 1, np.uint64)
    hashes = np.empty(longest + 1, np.uint64)
    cap = 1024
    hit_doc = np.empty(cap, np.int64)
    hit_key = np.empty(cap, np.int64)
    count = 0
    for d in range(offsets.shape[0] - 1):
        m = _doc_ngrams(data, offsets[d], offsets[d + 1], n, mult, top, words, hashes)
        for k in range(m):
            h = hashes[k]
            b = h >> shift
            if not (bits[b >> np.uint64(6)] >> (b & np.uint64(63))) & np.uint64(1):
                continue
            pos = _find(keys, h)
            if pos < 0:
                continue
            if count == cap:
                cap *= 2
                grown = np.empty(cap, np.int64)
                grown[:count] = hit_doc[:count]
                hit_doc = grown
                grown = np.empty(cap, np.int64)
                grown[:count] = hit_key[:count]
                hit_key = grown
            hit_doc[count] = d
            hit_key[count] = pos
            count += 1
    return hit_doc[:count], hit_key[:count]


# --- the index -----------------------------------------------------------------------------

@dataclass
class EvalIndex:
    """A loaded index: sorted hashes, their owners (CSR), the items and the settings."""

    path: Path
    meta: dict[str, Any]
    keys: np.ndarray
    owner_offsets: np.ndarray
    owners: np.ndarray
    items: pa.Table
    bits: np.ndarray
    shift: np.uint64

    @property
    def n(self) -> int:
        return int(self.meta["n"])

    @property
    def normalization(self) -> Normalization:
        return Normalization(**self.meta["normalization"])

    def item_keys(self) -> np.ndarray:
        return np.asarray(self.items.column("key").to_pylist(), dtype=object)


@dataclass(frozen=True)
class EvalSource:
    """An evaluation set: a name (its items' key prefix) and where it is."""

    name: str
    path: Path

    @classmethod
    def parse(cls, spec: str | Path | EvalSource) -> EvalSource:
        """``NAME=PATH`` or ``PATH`` (the name is then the file or folder name, extensions
        dropped)."""
        if isinstance(spec, EvalSource):
            return spec
        text = str(spec)
        name, sep, rest = text.partition("=")
        if sep and name and "/" not in name and not Path(text).exists():
            return cls(name, Path(rest))
        path = Path(text)
        stem = path.name
        for suffix in (".gz", ".zst", ".jsonl", ".ndjson", ".json", ".parquet", ".pq", ".csv"):
            stem = stem.removesuffix(suffix)
        return cls(stem or path.name, path)


def _hf_splits(folder: Path, split: str | None) -> list[tuple[str | None, Path]]:
    """(split name or None, dataset folder) of a ``save_to_disk`` folder."""
    if (folder / "state.json").is_file():
        return [(None, folder)]
    splits = json.loads((folder / "dataset_dict.json").read_text())["splits"]
    if split is not None:
        if split not in splits:
            raise ValueError(f"{folder}: no split {split!r} (splits: {', '.join(splits)})")
        splits = [split]
    return [(s, folder / s) for s in splits]


def _read_hf_dataset(folder: Path) -> pa.Table:
    """The Arrow stream files a ``Dataset.save_to_disk`` folder lists, read with pyarrow (no
    ``datasets`` import needed)."""
    state = json.loads((folder / "state.json").read_text())
    tables = []
    for entry in state["_data_files"]:
        with pa.memory_map(str(folder / entry["filename"]), "r") as source:
            tables.append(pa.ipc.open_stream(source).read_all())
    return pa.concat_tables(tables) if tables else pa.table({})


def _read_rows(path: Path) -> list[dict[str, Any]]:
    """Rows of a JSONL / JSON array / Parquet / CSV file (optionally .gz/.zst for text)."""
    name = path.name.lower()
    if name.endswith((".parquet", ".pq")):
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pylist()
    if name.endswith((".csv", ".csv.gz", ".csv.zst")):
        import pyarrow.csv as pacsv

        return pacsv.read_csv(pa.input_stream(str(path), compression="detect")).to_pylist()
    with pa.input_stream(str(path), compression="detect") as stream:
        raw = stream.read()
    if raw.lstrip()[:1] == b"[":
        rows = orjson.loads(raw)
    else:
        rows = [orjson.loads(line) for line in raw.splitlines() if line.strip()]
    bad = next((i for i, r in enumerate(rows) if not isinstance(r, dict)), None)
    if bad is not None:
        raise ValueError(f"{path}: item {bad} is not a JSON object")
    return rows


def load_eval_source(source: EvalSource, split: str | None = None,
                     ) -> list[tuple[str, list[dict[str, Any]]]]:
    """(eval set name, rows) per set in a source: one, or one per split of a DatasetDict."""
    path = source.path
    if not path.exists():
        raise FileNotFoundError(f"evaluation set not found: {path}")
    if path.is_dir():
        if not any((path / m).is_file() for m in HF_MARKERS):
            raise ValueError(f"{path}: a folder, but not a saved Hugging Face dataset")
        out = []
        for name, folder in _hf_splits(path, split):
            set_name = source.name if name is None or split else f"{source.name}/{name}"
            out.append((set_name, _read_hf_dataset(folder).to_pylist()))
        return out
    return [(source.name, _read_rows(path))]


def _strings(value: Any, path: str) -> Iterator[tuple[str, str]]:
    """(field path, text) of every string inside a JSON-like value."""
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for key, sub in value.items():
            yield from _strings(sub, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list | tuple):
        for sub in value:
            yield from _strings(sub, path)


def _selected(field: str, fields: list[str] | None) -> bool:
    return fields is None or any(field == f or field.startswith(f + ".") for f in fields)


def _item_id(row: dict[str, Any], number: int, id_field: str | None) -> tuple[str, str | None]:
    """(item id, the field it came from)."""
    if id_field is not None:
        if row.get(id_field) is None:
            raise ValueError(f"item {number} has no {id_field!r} field")
        return str(row[id_field]), id_field
    for name in ID_FIELDS:
        if row.get(name) is not None and not isinstance(row[name], dict | list):
            return str(row[name]), name
    return str(number), None


def _source_digest(path: Path) -> str:
    if path.is_file():
        return sha256_file(path)
    sha = hashlib.sha256()
    for p in sorted(q for q in path.rglob("*") if q.is_file()):
        sha.update(f"{p.relative_to(path).as_posix()}\0{sha256_file(p)}\n".encode())
    return sha.hexdigest()


@dataclass
class IndexInfo:
    """What ``build_index`` wrote."""

    path: Path
    meta: dict[str, Any]

    def summary(self) -> str:
        c = self.meta["counts"]
        lines = [f"decontamination index -> {self.path}",
                 f"  n-grams  {c['ngrams']:,} distinct {self.meta['n']}-grams from "
                 f"{c['items']:,} items ({c['items_without_ngrams']:,} shorter than "
                 f"{self.meta['n']} words in every field)"]
        for s in self.meta["eval_sets"]:
            lines.append(f"  {s['name']:<24} {s['items']:>8,} items  {s['ngrams']:>10,} n-grams")
        return "\n".join(lines)


def _atomic_write(path: Path, write: Any) -> str:
    """Write via ``write(tmp_path)`` to a temp name, fsync, rename; returns the sha256."""
    tmp = temp_name(path)
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        digest = sha256_file(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return digest


def _save_npy(path: Path, array: np.ndarray) -> str:
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            np.save(f, array)
    return _atomic_write(path, write)


def _save_arrow(path: Path, table: pa.Table) -> str:
    def write(tmp: Path) -> None:
        with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_file(sink, table.schema) as w:
            w.write_table(table)
    return _atomic_write(path, write)


def build_index(sources: Sequence[str | Path | EvalSource], out_dir: Path,
                cfg: IndexConfig | None = None) -> IndexInfo:
    """Index the n-grams of evaluation sets into ``out_dir`` (see the module docstring)."""
    cfg = cfg if cfg is not None else IndexConfig()
    parsed = [EvalSource.parse(s) for s in sources]
    if not parsed:
        raise ValueError("no evaluation sets given")
    names = [s.name for s in parsed]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValueError(f"two evaluation sets are named {', '.join(dup)}: name them "
                         f"NAME=PATH")
    set_names: list[str] = []
    item_set, item_ids, item_keys, item_fields = [], [], [], []
    texts: list[str] = []
    owners: list[int] = []
    source_meta = []
    used_fields: set[str] = set()
    for source in parsed:
        if ":" in source.name:
            raise ValueError(f"evaluation set name {source.name!r} must not contain ':'")
        sets = load_eval_source(source, cfg.split)
        source_meta.append({"name": source.name, "path": str(source.path),
                            "sha256": _source_digest(source.path),
                            "sets": [s for s, _ in sets]})
        for set_name, rows in sets:
            set_names.append(set_name)
            seen: set[str] = set()
            for number, row in enumerate(rows):
                item_id, id_from = _item_id(row, number, cfg.id_field)
                key = f"{set_name}:{item_id}"
                if key in seen:
                    key = f"{key}@{number}"
                seen.add(key)
                index = len(item_keys)
                used = []
                for field, text in _strings(row, ""):
                    if field == id_from or not _selected(field, cfg.fields):
                        continue
                    texts.append(text)
                    owners.append(index)
                    used.append(field)
                item_set.append(set_name)
                item_ids.append(item_id)
                item_keys.append(key)
                item_fields.append(sorted(set(used)))
                used_fields.update(used)
    if not item_keys:
        raise ValueError("the evaluation sets hold no items")
    unused = [f for f in cfg.fields or () if not any(_selected(u, [f]) for u in used_fields)]
    if unused:
        raise ValueError(f"no item has the field(s) {', '.join(unused)} "
                         f"(fields seen: {', '.join(sorted(used_fields)) or 'none'})")
    normalised = normalize(pa.array(texts, pa.large_string()), cfg.normalization())
    hashes, starts = ngram_hashes(normalised, cfg.n)
    owner = np.repeat(np.asarray(owners, dtype=np.int32), np.diff(starts))
    order = np.lexsort((owner, hashes))
    hashes, owner = hashes[order], owner[order]
    fresh = np.ones(len(hashes), dtype=bool)
    fresh[1:] = (hashes[1:] != hashes[:-1]) | (owner[1:] != owner[:-1])
    hashes, owner = hashes[fresh], owner[fresh]
    first = np.ones(len(hashes), dtype=bool)
    first[1:] = hashes[1:] != hashes[:-1]
    keys = hashes[first]
    owner_offsets = np.append(np.flatnonzero(first), len(hashes)).astype(np.int64)
    per_item = np.bincount(owner, minlength=len(item_keys)).astype(np.int32)
    items = pa.table({"eval_set": pa.array(item_set, pa.string()),
                      "item_id": pa.array(item_ids, pa.string()),
                      "key": pa.array(item_keys, pa.string()),
                      "fields": pa.array(item_fields, pa.list_(pa.string())),
                      "ngrams": pa.array(per_item)})
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {ARRAYS[0]: _save_npy(out_dir / ARRAYS[0], keys),
             ARRAYS[1]: _save_npy(out_dir / ARRAYS[1], owner_offsets),
             ARRAYS[2]: _save_npy(out_dir / ARRAYS[2], owner),
             ITEMS_FILE: _save_arrow(out_dir / ITEMS_FILE, items)}
    set_of = np.asarray(item_set, dtype=object)
    eval_sets = []
    for name in set_names:
        mine = set_of == name
        eval_sets.append({"name": name, "items": int(mine.sum()),
                          "items_without_ngrams": int((per_item[mine] == 0).sum()),
                          "ngrams": int(per_item[mine].sum())})
    meta = {
        "version": INDEX_VERSION,
        "n": cfg.n,
        "normalization": {"lowercase": cfg.lowercase,
                          "remove_punctuation": cfg.remove_punctuation,
                          "normalize_digits": cfg.normalize_digits,
                          "strip_accents": cfg.strip_accents},
        "config": cfg.model_dump(mode="json"),
        "sources": source_meta,
        "eval_sets": eval_sets,
        "counts": {"items": len(item_keys), "ngrams": len(keys),
                   "item_ngrams": len(hashes),
                   "items_without_ngrams": int((per_item == 0).sum())},
        "files": files,
    }
    body = json.dumps(meta, indent=2, sort_keys=True).encode()
    _atomic_write(out_dir / INDEX_FILE, lambda tmp: tmp.write_bytes(body))
    fsync_dir(out_dir)
    return IndexInfo(out_dir, meta)


def _bits_for(keys: np.ndarray) -> tuple[np.ndarray, np.uint64]:
    """A bitset over the top ``b`` bits of the hashes, ~16 bits per key (a miss passes it with
    probability ~1/16 at most), 4 KiB to 128 MiB."""
    b = int(np.clip(np.ceil(np.log2(max(len(keys), 1) * 16)), 15, 30))
    bits = np.zeros(1 << (b - 6), dtype=np.uint64)
    shift = np.uint64(64 - b)
    _build_bits(keys, bits, shift)
    return bits, shift


def _load(path: Path) -> EvalIndex:
    meta = json.loads((path / INDEX_FILE).read_text())
    if meta.get("version") != INDEX_VERSION:
        raise ValueError(f"{path}: index version {meta.get('version')!r}, this library reads "
                         f"{INDEX_VERSION!r}; rebuild it")
    arrays = [np.load(path / name, mmap_mode="r") for name in ARRAYS]
    keys, owner_offsets, owners = arrays
    if (len(keys) != meta["counts"]["ngrams"] or len(owners) != meta["counts"]["item_ngrams"]
            or len(owner_offsets) != len(keys) + 1):
        raise ValueError(f"{path}: the arrays do not match index.json (an interrupted build?); "
                         "rebuild the index")
    with pa.memory_map(str(path / ITEMS_FILE), "r") as source:
        items = pa.ipc.open_file(source).read_all()
    bits, shift = _bits_for(np.ascontiguousarray(keys))
    return EvalIndex(path, meta, keys, owner_offsets, owners, items, bits, shift)


@functools.lru_cache(maxsize=4)
def _cached(path: str, mtime_ns: int, size: int) -> EvalIndex:
    return _load(Path(path))


def load_index(path: str | Path) -> EvalIndex:
    """The index in ``path``, loaded once per process while its ``index.json`` is unchanged
    (the arrays are memory-mapped, so workers share them through the page cache)."""
    path = Path(path).expanduser().resolve()
    meta = path / INDEX_FILE
    if not meta.is_file():
        raise FileNotFoundError(f"no decontamination index at {path} (no {INDEX_FILE}); build "
                                "one with `curate decontam index`")
    st = meta.stat()
    return _cached(str(path), st.st_mtime_ns, st.st_size)


# --- matching ------------------------------------------------------------------------------

@dataclass
class Matches:
    """Per document: matching n-gram positions, and the distinct items hit (CSR)."""

    ngrams: np.ndarray
    item_offsets: np.ndarray
    items: np.ndarray


def match_documents(texts: pa.Array | pa.ChunkedArray, index: EvalIndex) -> Matches:
    """Look every n-gram of every text up in the index (one compiled pass)."""
    normalised = normalize(texts, index.normalization)
    data, offsets = string_buffers(normalised)
    n_docs = len(offsets) - 1
    longest = int(np.diff(offsets).max()) // 2 + 1 if n_docs else 0
    hit_doc, hit_key = _lookup(data, offsets, index.n, _MULT, _top(index.n), index.keys,
                               index.bits, index.shift, longest)
    ngrams = np.bincount(hit_doc, minlength=n_docs).astype(np.int32)
    starts = np.asarray(index.owner_offsets[hit_key])
    counts = np.asarray(index.owner_offsets[hit_key + 1]) - starts
    total = int(counts.sum())
    # positions starts[i] .. starts[i] + counts[i] - 1 of every hit, without a Python loop
    run_start = np.repeat(np.cumsum(counts) - counts, counts)
    flat = np.repeat(starts, counts) + (np.arange(total) - run_start)
    item = np.asarray(index.owners[flat], dtype=np.int64)
    doc = np.repeat(hit_doc, counts)
    n_items = max(len(index.items), 1)
    pairs = np.unique(doc * n_items + item)
    pair_doc, pair_item = pairs // n_items, pairs % n_items
    item_offsets = np.zeros(n_docs + 1, dtype=np.int64)
    np.cumsum(np.bincount(pair_doc, minlength=n_docs), out=item_offsets[1:])
    return Matches(ngrams, item_offsets, pair_item)


def _set(table: pa.Table, name: str, values: pa.Array) -> pa.Table:
    i = table.schema.get_field_index(name)
    return table.set_column(i, name, values) if i >= 0 else table.append_column(name, values)


def _details(hits: pa.ListArray, ngrams: np.ndarray, n: int) -> pa.Array:
    out = []
    for keys, count in zip(hits.to_pylist(), ngrams.tolist(), strict=True):
        shown = ", ".join(keys[:DETAIL_ITEMS])
        more = f" and {len(keys) - DETAIL_ITEMS} more" if len(keys) > DETAIL_ITEMS else ""
        out.append(f"{count} matching {n}-grams with {len(keys)} eval items: {shown}{more}")
    return pa.array(out, pa.string())


def decontaminate_table(table: pa.Table, index: EvalIndex, cfg: DecontamConfig) -> StageOutput:
    """Flag or remove the documents of a table that share n-grams with the index."""
    if cfg.text_column not in table.column_names:
        raise ValueError(f"no column {cfg.text_column!r} (columns: "
                         f"{', '.join(table.column_names)})")
    m = match_documents(table.column(cfg.text_column), index)
    keys = index.items.column("key").combine_chunks().take(pa.array(m.items, pa.int64()))
    hits = pa.ListArray.from_arrays(pa.array(m.item_offsets, pa.int32()), keys)
    ngrams = pa.array(m.ngrams, pa.int32())
    contaminated = m.ngrams >= cfg.min_ngram_hits
    if cfg.mode == "flag":
        tagged = _set(_set(_set(table, CONTAMINATED, pa.array(contaminated)),
                           "contamination_ngrams", ngrams), "contamination_hits", hits)
        empty = tagged.slice(0, 0)
        for name in ("reject_stage", "reject_reason", "reject_detail"):
            empty = empty.append_column(name, pa.array([], pa.string()))
        return StageOutput(kept=tagged, rejected=empty, rows_in=table.num_rows)
    mask = pa.array(contaminated)
    rows = np.flatnonzero(contaminated)
    gone_hits = hits.filter(mask)
    rejected = (_set(_set(table.filter(mask), "contamination_ngrams", ngrams.filter(mask)),
                     "contamination_hits", gone_hits)
                .append_column("reject_stage", pa.repeat(pa.scalar(STAGE_NAME), len(rows)))
                .append_column("reject_reason", pa.repeat(pa.scalar(CONTAMINATED), len(rows)))
                .append_column("reject_detail",
                               _details(gone_hits, m.ngrams[rows], index.n)))
    return StageOutput(kept=table.filter(pc.invert(mask)), rejected=rejected,
                       rows_in=table.num_rows)


def decontaminate_unit(unit: WorkUnit, cfg: DecontamConfig) -> StageOutput:
    """Inputs: the documents shard, then the index's ``index.json`` (fingerprinted for
    resume; the index is loaded from ``cfg.index``)."""
    return decontaminate_table(read_shard(unit.inputs[0]), load_index(cfg.index), cfg)


DECONTAMINATE = Stage(name=STAGE_NAME, version="1", output_kind=DOCUMENTS,
                      process=decontaminate_unit)


def plan_decontaminate(input_dir: Path, index_dir: str | Path) -> list[WorkUnit]:
    """One unit per upstream documents shard; each also depends on the index's
    ``index.json``, so a rebuilt index invalidates every output shard."""
    from curate.runner import plan_shards

    meta = Path(index_dir).expanduser().resolve() / INDEX_FILE
    if not meta.is_file():
        raise FileNotFoundError(f"no decontamination index at {meta.parent} (no {INDEX_FILE})")
    return [WorkUnit(u.name, (*u.inputs, meta), u.base) for u in plan_shards(input_dir)]


# --- report and check ----------------------------------------------------------------------

def read_columns(path: Path, names: Sequence[str]) -> pa.Table | None:
    """Only ``names`` of a shard (other columns are not even decompressed), or None when the
    shard lacks one of them."""
    with pa.memory_map(str(path), "r") as source:
        schema = pa.ipc.open_file(source).schema
        if any(schema.get_field_index(n) < 0 for n in names):
            return None
        fields = [schema.get_field_index(n) for n in names]
        reader = pa.ipc.open_file(source, options=pa.ipc.IpcReadOptions(included_fields=fields))
        return reader.read_all().select(list(names))


def _hit_rows(stage_dir: Path) -> Iterable[tuple[str, str, list[str]]]:
    """(shard, document id, item keys) of every contaminated row a stage wrote."""
    from schemas.dataset import shard_paths

    for path in shard_paths(stage_dir):
        table = read_columns(path, ["id", CONTAMINATED, "contamination_hits"])
        if table is None:
            continue
        table = table.filter(table.column(CONTAMINATED))
        for doc, keys in zip(table.column("id").to_pylist(),
                             table.column("contamination_hits").to_pylist(), strict=True):
            yield path.name, doc, keys
    for path in shard_paths(stage_dir, rejected=True):
        table = read_columns(path, ["id", "reject_reason", "contamination_hits"])
        if table is None:
            continue
        table = table.filter(pc.equal(table.column("reject_reason"), CONTAMINATED))
        for doc, keys in zip(table.column("id").to_pylist(),
                             table.column("contamination_hits").to_pylist(), strict=True):
            yield path.name, doc, keys


def decontamination_report(stage_dir: Path, index_dir: str | Path | None = None,
                           ) -> dict[str, Any]:
    """Which eval items were hit, by which documents, aggregated over a stage's shards.

    With ``index_dir`` the per-set totals (items in the set) are filled in too.
    """
    from schemas.manifest import read_manifest

    manifest = read_manifest(stage_dir)
    if manifest is None:
        raise FileNotFoundError(f"{stage_dir} has no _manifest.json")
    by_item: dict[str, list[str]] = defaultdict(list)
    documents = 0
    for _, doc, keys in _hit_rows(stage_dir):
        documents += 1
        for key in keys:
            by_item[key].append(doc)
    sets: dict[str, dict[str, Any]] = {}
    if index_dir is not None:
        index = load_index(index_dir)
        for s in index.meta["eval_sets"]:
            sets[s["name"]] = {"items": s["items"], "items_hit": 0, "documents": 0}
    docs_per_set: dict[str, set[str]] = defaultdict(set)
    for key, docs in by_item.items():
        name = key.split(":", 1)[0]
        entry = sets.setdefault(name, {"items": None, "items_hit": 0, "documents": 0})
        entry["items_hit"] += 1
        docs_per_set[name].update(docs)
    for name, docs in docs_per_set.items():
        sets[name]["documents"] = len(docs)
    return {
        "stage": str(stage_dir),
        "documents_checked": sum(e["rows_in"] for e in manifest.shards.values()),
        "documents_contaminated": documents,
        "eval_sets": dict(sorted(sets.items())),
        "items": {key: {"documents": sorted(docs), "n_documents": len(docs)}
                  for key, docs in sorted(by_item.items())},
    }


def write_report(stage_dir: Path, report: dict[str, Any]) -> Path:
    """``_decontamination.json`` beside the manifest, written atomically."""
    path = Path(stage_dir) / REPORT_FILE
    body = json.dumps(report, indent=2).encode()
    _atomic_write(path, lambda tmp: tmp.write_bytes(body))
    return path


def uncaught_contamination(stage_dir: Path, cfg: DecontamConfig) -> dict[str, int]:
    """Kept documents that should not have passed (shard -> count): in ``remove`` mode any
    with ``min_ngram_hits`` matches, in ``flag`` mode any such row not flagged.

    An independent path (every hash materialised, ``np.isin`` on the sorted keys), so it
    checks the compiled lookup as well as the split.
    """
    from schemas.dataset import shard_paths

    index = load_index(cfg.index)
    problems: dict[str, int] = {}
    for path in shard_paths(stage_dir):
        table = read_shard(path)
        normalised = normalize(table.column(cfg.text_column), index.normalization)
        hashes, starts = ngram_hashes(normalised, index.n)
        found = np.isin(hashes, index.keys)
        doc = np.repeat(np.arange(table.num_rows), np.diff(starts))
        hits = np.bincount(doc[found], minlength=table.num_rows) >= cfg.min_ngram_hits
        if cfg.mode == "flag" and CONTAMINATED in table.column_names:
            flagged = np.asarray(table.column(CONTAMINATED).to_numpy(zero_copy_only=False),
                                 dtype=bool)
            bad = int((hits != flagged).sum())
        else:
            bad = int(hits.sum())
        if bad:
            problems[path.name] = bad
    return problems
