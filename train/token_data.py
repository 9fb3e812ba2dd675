"""Trainer-side access to packed token shards: memory-mapped, zero-copy, random access.

A token shard is an uncompressed Arrow IPC file, so the ``input_ids`` values buffer of a
memory-mapped shard *is* the file's pages: a row is a numpy view into it, nothing is read
until touched and nothing is copied. Needs only numpy and pyarrow (no torch, no curate).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from schemas import shard_paths


@dataclass(frozen=True)
class Row:
    """One packed row: its ids (a view into the shard) and its document segments."""

    input_ids: np.ndarray
    segment_starts: np.ndarray
    segment_doc_ids: list[str]

    def position_ids(self) -> np.ndarray:
        """Positions restarting at 0 at every segment start (for varlen attention)."""
        n = len(self.input_ids)
        starts = np.asarray(self.segment_starts, dtype=np.int64)
        seg_of = np.searchsorted(starts, np.arange(n), side="right") - 1
        return np.arange(n) - starts[seg_of]


class TokenShard:
    """One memory-mapped ``pretrain_tokens`` shard."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._source = pa.memory_map(str(self.path), "r")
        table = pa.ipc.open_file(self._source).read_all()
        # one view per record batch: combining chunks would copy the ids out of the map
        self._chunks: list[tuple[np.ndarray, np.ndarray]] = []
        for chunk in table.column("input_ids").chunks:
            if chunk.null_count:
                raise ValueError(f"{self.path}: input_ids has nulls")
            buffers = chunk.buffers()
            offsets = np.frombuffer(buffers[1], dtype=np.int32)[
                chunk.offset:chunk.offset + len(chunk) + 1]
            values = np.frombuffer(buffers[3], dtype=chunk.type.value_type.to_pandas_dtype())
            self._chunks.append((offsets, values))
        sizes = [len(offsets) - 1 for offsets, _ in self._chunks]
        self._bounds = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        self._starts = table.column("segment_starts")
        self._doc_ids = table.column("segment_doc_ids")

    def __len__(self) -> int:
        return int(self._bounds[-1])

    def row_ids(self, i: int) -> np.ndarray:
        """The ids of row ``i``: a zero-copy view into the mapped file."""
        chunk = int(np.searchsorted(self._bounds, i, side="right") - 1)
        offsets, values = self._chunks[chunk]
        j = i - int(self._bounds[chunk])
        return values[offsets[j]:offsets[j + 1]]

    def __getitem__(self, i: int) -> Row:
        if not -len(self) <= i < len(self):
            raise IndexError(f"row {i} out of range for {len(self)} rows of {self.path.name}")
        i %= len(self)
        return Row(self.row_ids(i), np.asarray(self._starts[i].as_py(), dtype=np.int32),
                   self._doc_ids[i].as_py())

    def close(self) -> None:
        self._source.close()


class TokenDataset:
    """All shards of a token stage folder as one random-access sequence of rows."""

    def __init__(self, stage_dir: Path):
        self.stage_dir = Path(stage_dir)
        self.shards = [TokenShard(p) for p in shard_paths(self.stage_dir)]
        if not self.shards:
            raise ValueError(f"{self.stage_dir} has no token shards")
        sizes = np.array([len(s) for s in self.shards], dtype=np.int64)
        self._bounds = np.concatenate([[0], np.cumsum(sizes)])
        meta = self.stage_dir / "_tokenizer.json"
        self.meta = json.loads(meta.read_text()) if meta.exists() else {}

    def __len__(self) -> int:
        return int(self._bounds[-1])

    def locate(self, i: int) -> tuple[int, int]:
        """(shard number, row in shard) of global row ``i``."""
        if not 0 <= i < len(self):
            raise IndexError(f"row {i} out of range for {len(self)} rows")
        shard = int(np.searchsorted(self._bounds, i, side="right") - 1)
        return shard, i - int(self._bounds[shard])

    def __getitem__(self, i: int) -> Row:
        shard, row = self.locate(i)
        return self.shards[shard][row]

    def row_ids(self, i: int) -> np.ndarray:
        shard, row = self.locate(i)
        return self.shards[shard].row_ids(row)
