"""Training batches from packed token rows: deterministic order, resumable, document-aware.

A source is a token stage folder (``curate tokenize``) or a mix folder (``curate mix``).
Rows are packed: several documents share a row. Each batch carries ``position_ids`` that
restart at 0 at every document start; with no attention mask, transformers' sdpa/eager
attention reads those positions as packed sequences and builds a block-diagonal causal mask,
so no token attends across a document boundary. ``targets`` are the inputs shifted by one,
with -100 where the next token belongs to another document (and at the row's end), so no
loss is taken predicting across a boundary. Token stage rows carry ``segment_starts``; mix
rows (ids only) are cut after each EOS, which is where the tokenizer ends every document.

Order: a token stage's training rows are permuted with the seed, afresh each epoch; a mix is
read in stream order (the mix already shuffled and interleaved it). The position in that
endless sequence is the whole resumable state. A global batch of ``micro * accum * world``
rows is cut into disjoint slices, one per rank, each split into ``accum`` micro-batches.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from train.token_data import TokenDataset


class RowSource(Protocol):
    meta: dict[str, Any]

    def __len__(self) -> int: ...

    def row(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """(input ids, segment starts) of row ``i``."""
        ...


class StageRows:
    """Rows of a token stage folder, with their recorded segment starts."""

    def __init__(self, stage_dir: Path):
        self.dataset = TokenDataset(stage_dir)
        self.meta = self.dataset.meta
        self.name = str(stage_dir)

    def __len__(self) -> int:
        return len(self.dataset)

    def row(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        r = self.dataset[i]
        return r.input_ids, r.segment_starts


class MixRows:
    """Rows of a mix folder in stream order; documents are cut after each EOS token."""

    def __init__(self, folder: Path):
        from curate.mix import MixedStream  # only a mix needs the curation package

        self.stream = MixedStream(folder)
        self.meta = dict(self.stream.meta.get("tokenizer") or {})
        self.name = str(folder)
        if self.meta.get("eos_id") is None:
            raise ValueError(f"{folder}: the mix records no eos_id, so documents can't be "
                             f"told apart inside packed rows")

    def __len__(self) -> int:
        return len(self.stream)

    def row(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        ids = self.stream[i]
        after_eos = np.flatnonzero(ids[:-1] == self.meta["eos_id"]) + 1
        return ids, np.concatenate([[0], after_eos]).astype(np.int32)


class Slice:
    """Rows ``[start, stop)`` of another source (training rows vs held-out rows)."""

    def __init__(self, source: RowSource, start: int, stop: int):
        if not 0 <= start < stop <= len(source):
            raise ValueError(f"empty or out-of-range slice {start}:{stop} of {len(source)} rows")
        self.source, self.start, self.stop = source, start, stop
        self.meta = source.meta

    def __len__(self) -> int:
        return self.stop - self.start

    def row(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        return self.source.row(self.start + i)


def open_rows(path: Path) -> StageRows | MixRows:
    """A token stage folder or a mix folder, told apart by the files in it."""
    path = Path(path)
    if (path / "_mix.json").exists():
        return MixRows(path)
    if not (path / "_manifest.json").exists():
        raise FileNotFoundError(f"{path}: neither a token stage (`curate tokenize`) nor a mix "
                                f"folder (`curate mix`)")
    return StageRows(path)


def split_holdout(source: RowSource, eval_rows: int) -> tuple[RowSource, RowSource | None]:
    """(training rows, held-out rows): the last ``eval_rows`` rows are never trained on."""
    if eval_rows <= 0:
        return source, None
    if eval_rows >= len(source):
        raise ValueError(f"eval_rows={eval_rows} leaves no training rows of {len(source)}")
    n = len(source)
    return Slice(source, 0, n - eval_rows), Slice(source, n - eval_rows, n)


@dataclass
class Batch:
    """One micro-batch, as numpy arrays of shape (rows, seq_len)."""

    input_ids: np.ndarray
    position_ids: np.ndarray
    targets: np.ndarray
    tokens: int = 0
    """Real (unpadded) tokens in the micro-batch."""

    @property
    def n_targets(self) -> int:
        return int((self.targets != -100).sum())

    def to_torch(self, device: Any = "cpu") -> dict[str, Any]:
        import torch

        return {k: torch.from_numpy(getattr(self, k)).to(device)
                for k in ("input_ids", "position_ids", "targets")}


def row_arrays(ids: np.ndarray, starts: np.ndarray, seq_len: int,
               pad_id: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(input ids, position ids, targets) of one row, right-padded to ``seq_len``.

    Padding continues the last document's positions and has no targets, so under causal
    attention it changes nothing for the real tokens.
    """
    n = len(ids)
    if n > seq_len:
        raise ValueError(f"row of {n} tokens is longer than seq_len {seq_len}")
    out_ids = np.full(seq_len, pad_id, dtype=np.int64)
    out_ids[:n] = ids
    starts = np.asarray(starts, dtype=np.int64)
    if len(starts) == 0 or starts[0] != 0:
        starts = np.concatenate([[0], starts])
    pos = np.arange(seq_len, dtype=np.int64)
    seg_of = np.searchsorted(starts, pos, side="right") - 1
    positions = pos - starts[seg_of]
    targets = np.full(seq_len, -100, dtype=np.int64)
    if n > 1:
        targets[:n - 1] = out_ids[1:n]
        boundary = starts[(starts > 0) & (starts < n)]
        targets[boundary - 1] = -100  # the next token opens another document
    return out_ids, positions, targets


def n_targets(ids: np.ndarray, starts: np.ndarray) -> int:
    """Targets of a row without building it: one per token but the last and each boundary."""
    n = len(ids)
    return max(n - 1, 0) - int(((np.asarray(starts) > 0) & (np.asarray(starts) < n)).sum())


def make_batch(rows: list[tuple[np.ndarray, np.ndarray]], seq_len: int, pad_id: int = 0) -> Batch:
    arrays = [row_arrays(ids, starts, seq_len, pad_id) for ids, starts in rows]
    return Batch(*(np.stack(a) for a in zip(*arrays, strict=True)),
                 tokens=sum(len(ids) for ids, _ in rows))


class PretrainBatches:
    """Endless, deterministic, resumable global batches of a row source."""

    def __init__(self, source: RowSource, seq_len: int, micro_batch: int, grad_accum: int = 1,
                 seed: int = 0, shuffle: bool = True, world_size: int = 1, rank: int = 0,
                 pad_id: int = 0):
        if len(source) == 0:
            raise ValueError("no training rows")
        self.source, self.seq_len = source, seq_len
        self.micro_batch, self.grad_accum = micro_batch, grad_accum
        self.seed, self.shuffle = seed, shuffle
        self.world_size, self.rank, self.pad_id = world_size, rank, pad_id
        self.position = 0
        self._perm: tuple[int, np.ndarray] | None = None

    @property
    def global_rows(self) -> int:
        return self.micro_batch * self.grad_accum * self.world_size

    def index(self, q: int) -> int:
        """Source row at position ``q`` of the endless sequence (epoch ``q // len``)."""
        n = len(self.source)
        epoch, k = divmod(q, n)
        if not self.shuffle:
            return k
        if self._perm is None or self._perm[0] != epoch:
            self._perm = (epoch, np.random.default_rng([self.seed, epoch]).permutation(n))
        return int(self._perm[1][k])

    @property
    def epoch(self) -> float:
        return self.position / len(self.source)

    def next_step(self) -> tuple[list[Batch], int]:
        """This rank's micro-batches of the next global batch, and the global batch's
        target-token count (every rank computes it alike: no collective needed)."""
        rows = [self.source.row(self.index(q))
                for q in range(self.position, self.position + self.global_rows)]
        self.position += self.global_rows
        total = sum(n_targets(ids, starts) for ids, starts in rows)
        per_rank = self.micro_batch * self.grad_accum
        mine = rows[self.rank * per_rank:(self.rank + 1) * per_rank]
        micro = [make_batch(mine[i:i + self.micro_batch], self.seq_len, self.pad_id)
                 for i in range(0, per_rank, self.micro_batch)]
        return micro, total

    def state_dict(self) -> dict[str, Any]:
        return {"position": self.position, "seed": self.seed, "shuffle": self.shuffle,
                "rows": len(self.source), "global_rows": self.global_rows}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        mismatch = {k: (state.get(k), v) for k, v in
                    (("seed", self.seed), ("shuffle", self.shuffle), ("rows", len(self.source)))
                    if state.get(k) != v}
        if mismatch:
            raise ValueError(f"the saved data position belongs to another data order: "
                             f"{json.dumps(mismatch)} (saved, now)")
        self.position = int(state["position"])


def eval_batches(source: RowSource, max_tokens: int, seq_len: int, micro_batch: int,
                 pad_id: int = 0) -> list[Batch]:
    """The held-out rows in order, up to ``max_tokens`` tokens: the same set every time."""
    rows, tokens = [], 0
    for i in range(len(source)):
        if tokens >= max_tokens:
            break
        ids, starts = source.row(i)
        rows.append((ids, starts))
        tokens += len(ids)
    return [make_batch(rows[i:i + micro_batch], seq_len, pad_id)
            for i in range(0, len(rows), micro_batch)]
