"""Stage folders on object stores (S3, GCS, MinIO, any fsspec filesystem) via ``pyarrow.fs``.

A :class:`StorePath` is a key (or key prefix) on a ``pyarrow.fs.FileSystem``: the small part
of ``pathlib.Path`` the runner and manifests need, plus whole-object transfers. It pickles
with its filesystem, so a worker on another machine reaches the same bucket. Local paths
never become a ``StorePath``: :func:`location` returns them as ``Path``, so local folders keep
their own (atomic-rename) code path.

Object stores have no rename and no partial objects: an upload is one object that appears
whole or not at all, and a "move" is a server-side copy then a delete.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import secrets
from dataclasses import dataclass
from pathlib import Path

import pyarrow.fs as pafs

from schemas.shards import HASH_BLOCK, TEMP_MARKER

COPY_BLOCK = 8 << 20


def is_uri(value: str | os.PathLike) -> bool:
    """True for ``scheme://...`` strings other than ``file://`` (those are local paths)."""
    return (isinstance(value, str) and "://" in value
            and not value.startswith(("file://", "local://")))


def open_uri(uri: str) -> StorePath:
    """The filesystem and key of a URI: pyarrow's own filesystems first (``s3://bucket/prefix
    ?endpoint_override=host:port&scheme=http``, ``gs://``, ``hdfs://``), else fsspec's (any
    protocol with an installed fsspec implementation), wrapped for pyarrow."""
    try:
        fs, path = pafs.FileSystem.from_uri(uri)
    except Exception as arrow_error:  # pyarrow raises ArrowInvalid for unknown schemes
        import fsspec

        try:
            fsspec_fs, path = fsspec.core.url_to_fs(uri)
        except (ImportError, ValueError) as exc:
            raise ValueError(f"cannot open {uri!r}: {arrow_error}; fsspec: {exc}") from None
        fs = pafs.PyFileSystem(pafs.FSSpecHandler(fsspec_fs))
    return StorePath(fs, path)


def location(value: str | os.PathLike) -> Path | StorePath:
    """A local ``Path`` for a path, a :class:`StorePath` for an object-store URI."""
    if isinstance(value, StorePath | Path):
        return value
    if is_uri(value):
        return open_uri(str(value))
    return Path(value)


@dataclass(frozen=True, eq=False)
class StorePath:
    """A file or folder (key prefix) on a ``pyarrow.fs`` filesystem."""

    fs: pafs.FileSystem
    path: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", self.path.rstrip("/"))

    @property
    def scheme(self) -> str:
        if isinstance(self.fs, pafs.PyFileSystem):
            protocol = self.fs.handler.fs.protocol
            return protocol if isinstance(protocol, str) else protocol[0]
        return {"gcs": "gs"}.get(self.fs.type_name, self.fs.type_name)

    def __str__(self) -> str:
        return f"{self.scheme}://{self.path.lstrip('/')}"

    def __repr__(self) -> str:
        return f"StorePath({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, StorePath) and self.path == other.path
                and self.fs.equals(other.fs))

    def __hash__(self) -> int:
        return hash((self.fs.type_name, self.path))

    def __truediv__(self, rel: str | os.PathLike) -> StorePath:
        return StorePath(self.fs, posixpath.normpath(posixpath.join(self.path, os.fspath(rel))))

    @property
    def name(self) -> str:
        return posixpath.basename(self.path)

    @property
    def parent(self) -> StorePath:
        return StorePath(self.fs, posixpath.dirname(self.path))

    def relative_to(self, other: StorePath) -> str:
        """This key relative to ``other`` (``..`` where it is not below it), for manifests."""
        return posixpath.relpath("/" + self.path, "/" + other.path)

    def info(self) -> pafs.FileInfo:
        return self.fs.get_file_info(self.path)

    def size(self) -> int | None:
        """The object's size, or None when there is no such object."""
        info = self.info()
        return info.size if info.type == pafs.FileType.File else None

    def exists(self) -> bool:
        return self.info().type != pafs.FileType.NotFound

    def is_file(self) -> bool:
        return self.info().type == pafs.FileType.File

    def files(self) -> list[StorePath]:
        """The objects directly in this folder (no sub-folders), by key."""
        selector = pafs.FileSelector(self.path, allow_not_found=True)
        return sorted((StorePath(self.fs, i.path) for i in self.fs.get_file_info(selector)
                       if i.type == pafs.FileType.File), key=lambda p: p.path)

    def folders(self) -> list[StorePath]:
        selector = pafs.FileSelector(self.path, allow_not_found=True)
        return sorted((StorePath(self.fs, i.path) for i in self.fs.get_file_info(selector)
                       if i.type == pafs.FileType.Directory), key=lambda p: p.path)

    def read_bytes(self) -> bytes:
        with self.fs.open_input_stream(self.path) as f:
            return f.read()

    def write_bytes(self, data: bytes) -> None:
        """One PUT: the object appears whole, replacing the old one, or not at all."""
        with self.fs.open_output_stream(self.path) as f:
            f.write(data)

    def sha256(self) -> str:
        sha = hashlib.sha256()
        with self.fs.open_input_stream(self.path) as f:
            while block := f.read(HASH_BLOCK):
                sha.update(block)
        return sha.hexdigest()

    def download(self, local: Path) -> str:
        """Copy the object to ``local``; returns its sha256 (hashed on the way, no re-read)."""
        local.parent.mkdir(parents=True, exist_ok=True)
        sha = hashlib.sha256()
        with self.fs.open_input_stream(self.path) as src, open(local, "wb") as dst:
            while block := src.read(COPY_BLOCK):
                sha.update(block)
                dst.write(block)
        return sha.hexdigest()

    def upload(self, local: Path) -> None:
        with open(local, "rb") as src, self.fs.open_output_stream(self.path) as dst:
            while block := src.read(COPY_BLOCK):
                dst.write(block)

    def move_to(self, dest: StorePath) -> None:
        """Server-side copy then delete (an object store has no rename)."""
        self.fs.move(self.path, dest.path)

    def delete(self, missing_ok: bool = True) -> None:
        try:
            self.fs.delete_file(self.path)
        except FileNotFoundError:
            if not missing_ok:
                raise

    def temp(self) -> StorePath:
        """A temp key beside this one, named as local temp files are (``.name.tmp-pid-hex``)."""
        return self.parent / f".{self.name}{TEMP_MARKER}{os.getpid()}-{secrets.token_hex(4)}"


def is_temp_key(path: StorePath) -> bool:
    return path.name.startswith(".") and TEMP_MARKER in path.name


def remove_temp_keys(folder: StorePath) -> list[StorePath]:
    """Delete the temp keys in ``folder`` and its sub-folders (one level, as a stage has).

    Unlike local temp files there is no owner to ask about (the writer may be on another
    machine), so this is only safe where the caller is the folder's single writer: the
    runner's driver at the start and end of a run.
    """
    removed = []
    for sub in (folder, *folder.folders()):
        for key in sub.files():
            if is_temp_key(key):
                key.delete()
                removed.append(key)
    return removed
