"""Shard files: atomic Arrow IPC writes and memory-mapped reads.

A shard is an Arrow IPC *file* (random access, memory-mappable). Writes go to a hidden temp
name in the destination folder, are fsynced, then renamed into place, so a reader sees either
the previous shard or the complete new one, never a prefix of one.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import pyarrow as pa

from schemas.kinds import RecordKind
from schemas.validate import conform

TEMP_MARKER = ".tmp-"
BATCH_ROWS = 8192
HASH_BLOCK = 1 << 20


@dataclass(frozen=True)
class FileInfo:
    """What the manifest records about one written file."""

    name: str
    rows: int
    bytes: int
    sha256: str

    def to_json(self) -> dict:
        return {"name": self.name, "rows": self.rows, "bytes": self.bytes, "sha256": self.sha256}


class _HashingFile:
    """A write-only file wrapper that hashes bytes as they go by (no second read)."""

    def __init__(self, raw):
        self._raw = raw
        self.sha = hashlib.sha256()
        self.size = 0

    def write(self, data) -> int:
        view = memoryview(data)
        self.sha.update(view)
        self.size += view.nbytes
        return self._raw.write(view)

    def flush(self) -> None:
        self._raw.flush()

    @property
    def closed(self) -> bool:
        return self._raw.closed

    def close(self) -> None:  # pyarrow closes the sink; we keep the raw file for fsync
        pass


def fsync_dir(path: Path) -> None:
    """Make a rename durable: fsync the directory entry."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def temp_name(final: Path) -> Path:
    return final.with_name(f".{final.name}{TEMP_MARKER}{os.getpid()}-{secrets.token_hex(4)}")


def atomic_write(final: Path, write: Callable[[BinaryIO], object]) -> None:
    """Write a file through ``write(f)`` to a temp name, fsync, rename into place."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_name(final)
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(final.parent)


@contextlib.contextmanager
def replaced_folder(out_dir: Path) -> Iterator[Path]:
    """A temp folder beside ``out_dir`` that replaces it on success, so a reader sees the old
    folder or the new one, never a mix (a model, a tokenizer)."""
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tag = f"{os.getpid()}-{secrets.token_hex(4)}"
    tmp = out_dir.with_name(f".{out_dir.name}{TEMP_MARKER}{tag}")
    tmp.mkdir()
    try:
        yield tmp
        if out_dir.exists():
            old = out_dir.with_name(f".{out_dir.name}.old-{tag}")
            os.replace(out_dir, old)
            os.replace(tmp, out_dir)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def is_temp_file(path: Path) -> bool:
    return path.name.startswith(".") and TEMP_MARKER in path.name


def _writer_alive(path: Path) -> bool:
    """Is the process that owns this temp file still running (on this host)?"""
    try:
        pid = int(path.name.rsplit(TEMP_MARKER, 1)[1].split("-", 1)[0])
        os.kill(pid, 0)
    except (ValueError, IndexError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temp_files(folder: Path) -> list[Path]:
    """Delete temp files left by writers that died; a live writer's temp file is kept."""
    removed = []
    if folder.is_dir():
        for path in folder.iterdir():
            if is_temp_file(path) and not _writer_alive(path):
                path.unlink(missing_ok=True)
                removed.append(path)
    return removed


def write_shard(table: pa.Table, path: Path, kind: RecordKind,
                compression: str | None = "default") -> FileInfo:
    """Validate ``table`` against ``kind`` and write it atomically to ``path``.

    ``compression="default"`` uses zstd for document kinds and none for token kinds, which
    must stay uncompressed for zero-copy memory mapping.
    """
    table = conform(table, kind, shard=path.name)
    if compression == "default":
        compression = "zstd" if kind.compress else None
    options = pa.ipc.IpcWriteOptions(compression=compression, use_threads=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_name(path)
    try:
        with open(tmp, "wb") as raw:
            sink = _HashingFile(raw)
            with pa.ipc.new_file(sink, table.schema, options=options) as writer:
                for batch in table.to_batches(max_chunksize=BATCH_ROWS):
                    writer.write_batch(batch)
            raw.flush()
            os.fsync(raw.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
    return FileInfo(path.name, table.num_rows, sink.size, sink.sha.hexdigest())


def _open(path: Path, memory_map: bool) -> pa.NativeFile:
    if hasattr(path, "fs"):  # a schemas.storage.StorePath: an object on an object store
        return path.fs.open_input_file(path.path)
    return pa.memory_map(str(path), "r") if memory_map else pa.OSFile(str(path), "rb")


def read_shard(path: Path, memory_map: bool = True, columns: list[str] | None = None) -> pa.Table:
    """Read a shard; memory-mapped by default so uncompressed shards cost no copy.

    ``columns`` are the only ones read (and decompressed): the others' buffers are skipped,
    so asking for ``id`` of a documents shard does not decompress its texts. ``path`` may be
    a ``StorePath`` (an object store; read through its filesystem, ranged reads).
    """
    source = _open(path, memory_map)
    with source:
        options = None
        if columns is not None:
            names = pa.ipc.open_file(source).schema.names
            missing = [c for c in columns if c not in names]
            if missing:
                raise KeyError(f"{path.name} has no column {', '.join(missing)} "
                               f"(columns: {', '.join(names)})")
            options = pa.ipc.IpcReadOptions(included_fields=sorted({names.index(c)
                                                                    for c in columns}))
        table = pa.ipc.open_file(source, options=options).read_all()
    return table.select(columns) if columns is not None else table


def shard_schema(path: Path) -> pa.Schema:
    """A shard's schema, from its footer (no data is read)."""
    with _open(path, memory_map=True) as source:
        return pa.ipc.open_file(source).schema


def sha256_file(path: Path) -> str:
    sha = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(HASH_BLOCK):
            sha.update(block)
    return sha.hexdigest()
