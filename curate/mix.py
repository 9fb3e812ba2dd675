"""Mix token stages by a recipe into one reproducible training stream.

A recipe names token stages (the output of ``curate tokenize``) with a weight each. The mix
picks rows so that every source's share of the stream's rows (and so of its tokens: rows
have ``seq_len`` tokens) equals its normalised weight, never uses a source's rows more than
``max_repeats`` times (a cap that binds shrinks the whole stream so the ratios still hold,
and the plan says which source bound it), shuffles each source's rows with the seed (a fresh
permutation per repeat epoch) and interleaves the sources smoothly: every block of
``window`` consecutive rows holds each source at its ratio, within a row or two, in random
order. Set ``window`` to the global batch size in rows and every batch is mixed to the
recipe. The same recipe and seed give the same stream, byte for byte.

The result is a small folder: ``mix.arrow`` (``source``, ``shard``, ``row`` per stream
position; the tokens stay in the source shards) and ``_mix.json`` (recipe, per-source rows
available / used / repeats, realised ratios, tokens). ``MixedStream`` memory-maps the
referenced shards once and serves rows as zero-copy numpy views, resumable through
``state_dict()`` / ``load_state_dict()``.

Domain continued pre-training: tokenize the domain corpus and a general corpus (the kind of
data the model was pre-trained on) with the model's tokenizer, then mix them with replay of
the general data, e.g. 0.8 domain / 0.2 general, so the model learns the domain without
forgetting general skills::

    sources:
      - {name: domain, path: data/law/tokens, weight: 0.8, max_repeats: 2}
      - {name: general, path: data/web/tokens, weight: 0.2}
    seed: 0
    window: 512        # global batch size in rows

``total_rows`` left out gives the longest stream the caps allow at these ratios (here: two
passes over the domain rows plus a quarter as many general rows).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from curate.config import StageConfig
from schemas import PRETRAIN_TOKENS
from schemas.manifest import read_manifest
from schemas.shards import atomic_write

TOKENIZER_META = "_tokenizer.json"
INDEX_DIR = "token_index"
MIX_FILE = "mix.arrow"
MIX_META = "_mix.json"
MIX_FORMAT = 1


# -- token stages --------------------------------------------------------------------------

@dataclass(frozen=True)
class TokenStage:
    """A ``pretrain_tokens`` stage folder: its shards (manifest order) and tokenizer facts."""

    path: Path
    shards: tuple[Path, ...]
    rows: tuple[int, ...]
    sha256: tuple[str, ...]
    meta: dict[str, Any]
    index_names: tuple[str, ...] = ()
    """The manifest's ``extras`` name of each shard's document index, when recorded."""

    @property
    def eos_id(self) -> int | None:
        return self.meta.get("eos_id")

    @property
    def seq_len(self) -> int | None:
        return self.meta.get("seq_len")

    @property
    def vocab_size(self) -> int | None:
        return self.meta.get("vocab_size")

    def index_path(self, shard: Path) -> Path:
        """The per-document index shard that belongs to ``shard``."""
        named = dict(zip((p.name for p in self.shards), self.index_names, strict=False))
        return self.path / (named.get(shard.name) or f"{INDEX_DIR}/{shard.name}")


def open_token_stage(path: Path) -> TokenStage:
    """Check that ``path`` is a token stage and list its shards; errors say what is wrong."""
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: no such folder (expected a token stage written by "
                                f"`curate tokenize`)")
    try:
        manifest = read_manifest(path)
    except (ValueError, KeyError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: unreadable _manifest.json: {exc}") from None
    if manifest is None:
        raise FileNotFoundError(f"{path} has no _manifest.json; is it a stage folder?")
    if manifest.kind != PRETRAIN_TOKENS.name:
        raise ValueError(f"{path} holds {manifest.kind!r} shards (stage {manifest.stage!r}), "
                         f"not {PRETRAIN_TOKENS.name!r}: mix and export read the output of "
                         f"`curate tokenize`")
    entries = sorted(manifest.shards.values(), key=lambda e: e["name"])
    meta_path = path / TOKENIZER_META
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    index = tuple(e.get("extras", {}).get(INDEX_DIR, {}).get("name", "") for e in entries)
    return TokenStage(path, tuple(path / e["name"] for e in entries),
                      tuple(int(e["rows"]) for e in entries),
                      tuple(e.get("sha256", "") for e in entries), meta, index)


class MappedShard:
    """One token shard, memory-mapped: rows are zero-copy numpy views into the file.

    An IPC file holds record batches; each batch's ``input_ids`` values and offsets are
    numpy views of the mapped bytes, so serving a row costs a lookup and a slice.
    """

    def __init__(self, path: Path, column: str = "input_ids"):
        self.path = Path(path)
        self._file = pa.memory_map(str(self.path), "r")
        reader = pa.ipc.open_file(self._file)
        values, offsets, starts = [], [], [0]
        for i in range(reader.num_record_batches):
            ids = reader.get_batch(i).column(column)
            if not pa.types.is_list(ids.type):
                raise ValueError(f"{self.path}: column {column!r} is {ids.type}, not a list")
            values.append(ids.values.to_numpy(zero_copy_only=True))
            offsets.append(ids.offsets.to_numpy(zero_copy_only=True))
            starts.append(starts[-1] + len(ids))
        self.values: list[np.ndarray] = values
        self.offsets: list[np.ndarray] = offsets
        self.batch_starts = np.asarray(starts, dtype=np.int64)
        self.dtype = values[0].dtype if values else np.dtype(np.uint16)

    def __len__(self) -> int:
        return int(self.batch_starts[-1])

    def row(self, r: int) -> np.ndarray:
        """Row ``r`` as a read-only view of the mapped file (no copy)."""
        b = int(np.searchsorted(self.batch_starts, r, side="right")) - 1
        off = self.offsets[b]
        j = r - int(self.batch_starts[b])
        return self.values[b][off[j]:off[j + 1]]

    def lengths(self) -> np.ndarray:
        """Tokens per row, for every row."""
        if not self.offsets:
            return np.zeros(0, dtype=np.int64)
        return np.concatenate([np.diff(o).astype(np.int64) for o in self.offsets])

    def flat(self) -> Iterator[np.ndarray]:
        """The shard's token stream (rows back to back), one view per record batch."""
        for v, o in zip(self.values, self.offsets, strict=True):
            if len(o) > 1:
                yield v[o[0]:o[-1]]


# -- the recipe ------------------------------------------------------------------------------

class MixSource(BaseModel):
    """One ingredient: a token stage, its weight and how often its rows may be reused."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    path: Path
    weight: float
    """Relative share of the stream's rows (normalised over the sources)."""
    max_repeats: float = Field(1.0, gt=0)
    """Times each row may be used at most: 1 = one pass, 0.5 = half the rows, 3 = 3 epochs."""

    @field_validator("weight")
    @classmethod
    def _positive(cls, v: float) -> float:
        if not (v > 0 and math.isfinite(v)):
            raise ValueError(f"weight must be a positive number, got {v} (leave a source out "
                             f"instead of giving it weight 0)")
        return v


class MixConfig(StageConfig):
    """A mixture recipe."""

    sources: list[MixSource] = Field(min_length=1)
    seed: int = 0
    total_rows: int | None = Field(None, gt=0)
    """Rows in the stream; None: as many as the caps allow while keeping the ratios."""
    window: int = Field(1024, gt=0)
    """Each block of this many consecutive rows holds every source at its ratio (set it to
    the global batch size in rows); order inside a block is random."""
    full_rows_only: bool = True
    """Leave out each shard's shorter last row, so every row served has seq_len tokens."""

    @model_validator(mode="after")
    def _unique_names(self) -> MixConfig:
        names = [s.name for s in self.sources]
        dups = sorted({n for n in names if names.count(n) > 1})
        if dups:
            raise ValueError(f"source names must be unique; repeated: {', '.join(dups)}")
        return self


# -- the plan --------------------------------------------------------------------------------

@dataclass
class SourcePlan:
    """What the mix takes from one source."""

    name: str
    path: Path
    weight: float
    share: float
    max_repeats: float
    rows_total: int
    rows_available: int
    rows_cap: int
    rows_used: int = 0
    tokens_used: int = 0
    shards: list[dict[str, Any]] = field(default_factory=list)

    @property
    def repeats(self) -> float:
        return self.rows_used / self.rows_available if self.rows_available else 0.0

    def to_json(self, total_rows: int, total_tokens: int) -> dict[str, Any]:
        return {"name": self.name, "path": str(self.path), "weight": self.weight,
                "target_share": self.share, "max_repeats": self.max_repeats,
                "rows_total": self.rows_total, "rows_available": self.rows_available,
                "rows_cap": self.rows_cap, "rows_used": self.rows_used,
                "repeats": round(self.repeats, 6), "tokens_used": self.tokens_used,
                "row_share": self.rows_used / total_rows if total_rows else 0.0,
                "token_share": self.tokens_used / total_tokens if total_tokens else 0.0,
                "shards": self.shards}


@dataclass
class MixPlan:
    """The stream: per position a source, a shard and a row; plus the bookkeeping."""

    config: MixConfig
    sources: list[SourcePlan]
    shard_names: list[str]
    source_code: np.ndarray
    shard_code: np.ndarray
    row: np.ndarray
    tokenizer: dict[str, Any]
    requested_rows: int | None
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.row)

    @property
    def total_tokens(self) -> int:
        return sum(s.tokens_used for s in self.sources)

    def fingerprint(self) -> str:
        """Identifies the stream, so a training state from another mix is refused."""
        sha = hashlib.sha256(self.config.config_hash().encode())
        for arr in (self.source_code, self.shard_code, self.row):
            sha.update(np.ascontiguousarray(arr).tobytes())
        return sha.hexdigest()[:16]

    def to_json(self) -> dict[str, Any]:
        n, tokens = len(self), self.total_tokens
        return {"format": MIX_FORMAT, "fingerprint": self.fingerprint(),
                "recipe": self.config.model_dump(mode="json"), "seed": self.config.seed,
                "window": self.config.window, "requested_rows": self.requested_rows,
                "total_rows": n, "total_tokens": tokens, "tokenizer": self.tokenizer,
                "sources": [s.to_json(n, tokens) for s in self.sources],
                "realised_ratios": {s.name: s.rows_used / n if n else 0.0 for s in self.sources},
                "notes": self.notes}

    def table(self) -> pa.Table:
        """``mix.arrow``'s rows: dictionary-encoded source and shard names, row numbers."""
        source = pa.DictionaryArray.from_arrays(
            pa.array(self.source_code, pa.int16()), pa.array([s.name for s in self.sources]))
        shard = pa.DictionaryArray.from_arrays(
            pa.array(self.shard_code, pa.int32()), pa.array(self.shard_names, pa.string()))
        return pa.table({"source": source, "shard": shard, "row": pa.array(self.row, pa.int64())})

    def write(self, folder: Path) -> Path:
        """Write ``mix.arrow`` and ``_mix.json`` atomically into ``folder``."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        table = self.table()
        atomic_write(folder / MIX_FILE, lambda f: _write_ipc(f, table))
        meta = self.to_json()
        for entry in meta["sources"]:  # lets a data root move with its mixes
            entry["path_from_mix"] = os.path.relpath(entry["path"], folder.resolve())
        text = json.dumps(meta, indent=2) + "\n"
        atomic_write(folder / MIX_META, lambda f: f.write(text.encode()))
        return folder

    def summary(self) -> str:
        """One screen: per source the target and realised share, rows, repeats."""
        n = len(self)
        lines = [f"mix of {len(self.sources)} sources: {n:,} rows, {self.total_tokens:,} tokens"
                 f" (seed {self.config.seed}, window {self.config.window})"]
        for s in self.sources:
            real = s.rows_used / n if n else 0.0
            lines.append(f"  {s.name:<16} target {s.share:6.1%}  realised {real:6.1%}  "
                         f"rows {s.rows_used:>12,} of {s.rows_available:,} "
                         f"({s.repeats:.2f} passes, cap {s.max_repeats:g})")
        lines += [f"  note: {note}" for note in self.notes]
        return "\n".join(lines)


def _write_ipc(f, table: pa.Table) -> None:
    with pa.ipc.new_file(f, table.schema) as writer:
        writer.write_table(table, max_chunksize=1 << 20)


def apportion(total: int, shares: np.ndarray) -> np.ndarray:
    """Integer counts summing to ``total`` in proportion to ``shares`` (largest remainder)."""
    exact = total * shares
    counts = np.floor(exact).astype(np.int64)
    rest = total - int(counts.sum())
    if rest > 0:
        order = np.lexsort((np.arange(len(shares)), -(exact - counts)))
        counts[order[:rest]] += 1
    return counts


def _rng(seed: int, *labels: str) -> np.random.Generator:
    """A generator per (seed, label): a source's shuffle does not depend on the others."""
    words = [int.from_bytes(hashlib.sha256(lab.encode()).digest()[:8], "little")
             for lab in labels]
    return np.random.default_rng([seed & 0xFFFFFFFFFFFFFFFF, *words])


def _source_rows(src: MixSource, full_only: bool) -> tuple[TokenStage, np.ndarray,
                                                            np.ndarray, np.ndarray]:
    """A source's usable rows as (shard index, row, tokens) arrays, in shard order."""
    stage = open_token_stage(src.path)
    shard_idx, rows, lengths = [], [], []
    for i, path in enumerate(stage.shards):
        n = MappedShard(path).lengths()
        keep = np.ones(len(n), dtype=bool)
        if full_only and len(n) and stage.seq_len is not None:
            keep = n == stage.seq_len
        elif full_only and len(n):
            keep[-1] = n[-1] == n.max()
        idx = np.flatnonzero(keep)
        shard_idx.append(np.full(len(idx), i, dtype=np.int32))
        rows.append(idx.astype(np.int64))
        lengths.append(n[idx])
    return (stage, _cat(shard_idx, np.int32), _cat(rows, np.int64), _cat(lengths, np.int64))


def _cat(parts: list[np.ndarray], dtype: type) -> np.ndarray:
    return np.concatenate(parts) if parts else np.zeros(0, dtype)


_SAME_TOKENIZER = ("vocab_size", "eos_id", "bos_id", "pad_id", "seq_len")
_SAME_WHEN_KNOWN = ("tokenizer_sha256", "add_bos")


def _check_tokenizers(stages: Sequence[tuple[str, TokenStage]]) -> dict[str, Any]:
    """Mixing ids from two tokenizers is silent garbage: the sources must agree."""
    first_name, first = stages[0]
    for name, stage in stages[1:]:
        diff = [k for k in _SAME_TOKENIZER if stage.meta.get(k) != first.meta.get(k)]
        diff += [k for k in _SAME_WHEN_KNOWN if stage.meta.get(k) is not None
                 and first.meta.get(k) is not None and stage.meta[k] != first.meta[k]]
        if diff:
            detail = ", ".join(f"{k} {first.meta.get(k)} vs {stage.meta.get(k)}" for k in diff)
            raise ValueError(f"sources {first_name!r} and {name!r} were tokenized differently "
                             f"({detail}); tokenize every source with the same tokenizer")
    return dict(first.meta)


def _plan_counts(cfg: MixConfig, shares: np.ndarray, caps: np.ndarray,
                 names: list[str]) -> tuple[np.ndarray, list[str]]:
    """Rows per source: the ratios exactly (up to rounding), no cap exceeded."""
    notes = []
    limits = caps / shares
    binding = int(np.argmin(limits))
    most = math.floor(limits[binding] + 1e-9)
    if most == 0:
        raise ValueError(f"source {names[binding]!r} allows no rows: {caps[binding]} rows "
                         f"after max_repeats {cfg.sources[binding].max_repeats:g}")
    total = cfg.total_rows if cfg.total_rows is not None else most
    if cfg.total_rows is not None and cfg.total_rows > most:
        total = most
        notes.append(f"asked for {cfg.total_rows:,} rows but source {names[binding]!r} "
                     f"allows {caps[binding]:,} rows (max_repeats "
                     f"{cfg.sources[binding].max_repeats:g}) at share {shares[binding]:.4f}: "
                     f"the stream is shrunk to {most:,} rows to keep the ratios")
    elif cfg.total_rows is None:
        notes.append(f"length set by source {names[binding]!r} "
                     f"({caps[binding]:,} rows allowed at share {shares[binding]:.4f})")
    counts = apportion(total, shares)
    while total > 0 and (counts > caps).any():
        total -= 1
        counts = apportion(total, shares)
    if total == 0:
        raise ValueError("the mix is empty: total_rows too small for the caps")
    return counts, notes


def _interleave(counts: np.ndarray, window: int, rng: np.random.Generator) -> np.ndarray:
    """Source code per stream position: evenly spread, then shuffled inside each window.

    Source i's k-th row gets the key (k + 0.5) / n_i; sorted by key, every prefix of the
    stream holds each source within one row of its ratio, so every block does within two.
    """
    src = np.repeat(np.arange(len(counts), dtype=np.int16), counts)
    starts = np.cumsum(counts) - counts
    k = np.arange(len(src), dtype=np.int64) - np.repeat(starts, counts)
    keys = (k + 0.5) / np.repeat(counts, counts)
    # each source's keys are already sorted: a stable sort merges the runs, ties by source
    stream = src[np.argsort(keys, kind="stable")]
    if window > 1:
        full = len(stream) // window * window
        head = rng.permuted(stream[:full].reshape(-1, window), axis=1).reshape(-1)
        stream = np.concatenate([head, rng.permutation(stream[full:])])
    return stream


def _epochs(n_used: int, n_available: int, rng: np.random.Generator) -> np.ndarray:
    """Which available rows to use, in order: a fresh permutation per pass, cut at n_used."""
    passes = -(-n_used // n_available)
    return np.concatenate([rng.permutation(n_available) for _ in range(passes)])[:n_used]


def build_mix(cfg: MixConfig) -> MixPlan:
    """Plan the stream for a recipe; deterministic for the recipe and seed."""
    names = [s.name for s in cfg.sources]
    loaded = []
    for src in cfg.sources:
        try:
            loaded.append(_source_rows(src, cfg.full_rows_only))
        except (FileNotFoundError, ValueError) as exc:
            raise type(exc)(f"source {src.name!r}: {exc}") from None
    tokenizer = _check_tokenizers([(n, s[0]) for n, s in zip(names, loaded, strict=True)])
    for name, (stage, _, rows, _) in zip(names, loaded, strict=True):
        if len(rows) == 0:
            hint = " (all rows are short; set full_rows_only: false)" if sum(stage.rows) else ""
            raise ValueError(f"source {name!r} ({stage.path}) has no usable rows{hint}")
    weights = np.array([s.weight for s in cfg.sources], dtype=np.float64)
    shares = weights / weights.sum()
    available = np.array([len(x[2]) for x in loaded], dtype=np.int64)
    caps = np.floor(available * np.array([s.max_repeats for s in cfg.sources]) + 1e-9)
    caps = caps.astype(np.int64)
    counts, notes = _plan_counts(cfg, shares, caps, names)

    shard_names = sorted({p.name for stage, *_ in loaded for p in stage.shards})
    shard_pos = {n: i for i, n in enumerate(shard_names)}
    src_stream = _interleave(counts, cfg.window, _rng(cfg.seed, "interleave"))
    shard_code = np.empty(len(src_stream), dtype=np.int32)
    row = np.empty(len(src_stream), dtype=np.int64)
    plans = []
    for i, (src, (stage, shard_idx, rows, lengths)) in enumerate(
            zip(cfg.sources, loaded, strict=True)):
        pick = _epochs(int(counts[i]), len(rows), _rng(cfg.seed, "source", src.name))
        where = np.flatnonzero(src_stream == i)
        to_code = np.array([shard_pos[p.name] for p in stage.shards], dtype=np.int32)
        shard_code[where] = to_code[shard_idx[pick]]
        row[where] = rows[pick]
        used_per_shard = np.bincount(shard_idx[pick], minlength=len(stage.shards))
        plans.append(SourcePlan(
            src.name, stage.path.resolve(), src.weight, float(shares[i]), src.max_repeats,
            rows_total=sum(stage.rows), rows_available=len(rows), rows_cap=int(caps[i]),
            rows_used=int(counts[i]), tokens_used=int(lengths[pick].sum()),
            shards=[{"name": p.name, "rows": r, "sha256": h, "rows_used": int(u)}
                    for p, r, h, u in zip(stage.shards, stage.rows, stage.sha256,
                                          used_per_shard, strict=True)]))
    return MixPlan(cfg, plans, shard_names, src_stream, shard_code, row, tokenizer,
                   cfg.total_rows, notes)


# -- reading the stream ---------------------------------------------------------------------

class MixedStream:
    """The training stream of a mix folder: rows in stream order, zero-copy, resumable.

    ``stream[i]`` is row i; iterating yields rows from the current position and advances
    it, so ``state_dict()`` taken after a row was consumed resumes at the next one.
    """

    def __init__(self, folder: Path, check_sources: bool = True):
        self.folder = Path(folder)
        meta_path = self.folder / MIX_META
        if not meta_path.exists():
            raise FileNotFoundError(f"{self.folder} has no {MIX_META}; build it with "
                                    f"`curate mix`")
        self.meta: dict[str, Any] = json.loads(meta_path.read_text())
        table = pa.ipc.open_file(pa.memory_map(str(self.folder / MIX_FILE), "r")).read_all()
        names = [s["name"] for s in self.meta["sources"]]
        source = table.column("source").combine_chunks()
        shard = table.column("shard").combine_chunks()
        src_code = np.asarray(_remap(source, names), dtype=np.int64)
        shard_names = shard.dictionary.to_pylist()
        shard_code = shard.indices.to_numpy().astype(np.int64)
        pair = src_code * max(len(shard_names), 1) + shard_code
        used = np.zeros(len(names) * max(len(shard_names), 1), dtype=bool)
        used[pair] = True  # (source, shard) pairs are few: a table, not a sort
        uniq = np.flatnonzero(used)
        lookup = np.cumsum(used, dtype=np.int32) - 1
        self._shard_id = lookup[pair]
        self._src = src_code.astype(np.int16)
        self._row = table.column("row").to_numpy()
        by_name = {s["name"]: {**s, "path": _source_path(self.folder, s)}
                   for s in self.meta["sources"]}
        if check_sources:
            _check_unchanged(by_name)
        self.source_names = names
        self._shards = []
        for u in uniq.tolist():
            s, sh = divmod(u, max(len(shard_names), 1))
            self._shards.append(MappedShard(Path(by_name[names[s]]["path"]) / shard_names[sh]))
        self.shard_paths = [m.path for m in self._shards]
        self._pos = 0

    def __getstate__(self) -> dict[str, Any]:
        """Pickle as (folder, position): a DataLoader worker maps the shards itself."""
        return {"folder": str(self.folder), "position": self._pos}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(Path(state["folder"]), check_sources=False)
        self._pos = state["position"]

    def __len__(self) -> int:
        return len(self._row)

    def __getitem__(self, i: int) -> np.ndarray:
        n = len(self._row)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"stream position {i} out of range (0..{n - 1})")
        return self._shards[self._shard_id[i]].row(int(self._row[i]))

    def source_of(self, i: int) -> str:
        return self.source_names[int(self._src[i])]

    def sources(self) -> np.ndarray:
        """Source code (index into ``source_names``) per stream position."""
        return self._src

    def __iter__(self) -> Iterator[np.ndarray]:
        while self._pos < len(self._row):
            i = self._pos
            self._pos += 1
            yield self[i]

    @property
    def position(self) -> int:
        return self._pos

    def state_dict(self) -> dict[str, Any]:
        return {"position": self._pos, "fingerprint": self.meta["fingerprint"]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("fingerprint") != self.meta["fingerprint"]:
            raise ValueError(f"state is for mix {state.get('fingerprint')!r}, this is "
                             f"{self.meta['fingerprint']!r} ({self.folder})")
        pos = int(state["position"])
        if not 0 <= pos <= len(self):
            raise ValueError(f"position {pos} outside the stream (0..{len(self)})")
        self._pos = pos


def _source_path(folder: Path, entry: dict[str, Any]) -> Path:
    """The recorded absolute path, else the same place relative to the mix folder."""
    path = Path(entry["path"])
    moved = folder / entry.get("path_from_mix", "")
    return moved if not path.is_dir() and "path_from_mix" in entry and moved.is_dir() else path


def _remap(source: pa.DictionaryArray, names: list[str]) -> np.ndarray:
    """Dictionary codes -> positions in ``names`` (a reader may see another dictionary order)."""
    lookup = np.array([names.index(n) for n in source.dictionary.to_pylist()], dtype=np.int64)
    return lookup[source.indices.to_numpy()]


def _check_unchanged(sources: dict[str, dict[str, Any]]) -> None:
    """Rows are addressed by number: a re-tokenized source would silently shift them."""
    for name, entry in sources.items():
        manifest = read_manifest(Path(entry["path"]))
        if manifest is None:
            raise FileNotFoundError(f"mix source {name!r}: {entry['path']} is gone")
        now = {e["name"]: e.get("sha256") for e in manifest.shards.values()}
        for shard in entry["shards"]:
            if shard["rows_used"] and now.get(shard["name"]) != shard["sha256"]:
                raise ValueError(f"mix source {name!r}: shard {shard['name']} changed since "
                                 f"the mix was built; rebuild it with `curate mix`")
