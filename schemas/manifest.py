"""The per-stage ``_manifest.json``: what was written, from what, with which config.

The manifest is the source of truth for a stage folder. It is rewritten atomically under a
file lock after each shard completes (the shard itself is already durable by then), so a
crash at any point leaves a manifest that describes only complete shards.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from schemas.shards import fsync_dir, temp_name
from schemas.storage import StorePath

MANIFEST_NAME = "_manifest.json"
LOCK_NAME = ".manifest.lock"
FORMAT_VERSION = 1
# Keys whose values change from run to run even when the output is identical.
TIMING_KEYS = frozenset({"started_at", "seconds", "updated_at", "created_at"})


@dataclass
class Manifest:
    """In-memory form of ``_manifest.json``; plain dicts inside so the file stays readable."""

    stage: str
    kind: str
    kind_version: str
    library_version: str
    shards: dict[str, dict[str, Any]] = field(default_factory=dict)
    failures: dict[str, dict[str, Any]] = field(default_factory=dict)
    pending: list[str] = field(default_factory=list)
    """Shards a run planned and has not finished: what an interrupted run left undone."""
    updated_at: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT_VERSION,
            "stage": self.stage,
            "schema": {"kind": self.kind, "version": self.kind_version},
            "library_version": self.library_version,
            "updated_at": self.updated_at,
            "totals": self.totals(),
            "shards": {k: self.shards[k] for k in sorted(self.shards)},
            "failures": {k: self.failures[k] for k in sorted(self.failures)},
            "pending": sorted(self.pending),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Manifest:
        if data.get("format") != FORMAT_VERSION:
            raise ValueError(f"unsupported manifest format {data.get('format')!r}")
        return cls(stage=data["stage"], kind=data["schema"]["kind"],
                   kind_version=data["schema"]["version"],
                   library_version=data["library_version"], shards=dict(data["shards"]),
                   failures=dict(data.get("failures", {})),
                   pending=list(data.get("pending", [])),
                   updated_at=data.get("updated_at", 0.0))

    def totals(self) -> dict[str, int]:
        kept = sum(kept_rows(s) for s in self.shards.values())
        rejected = sum(s["rows_rejected"] for s in self.shards.values())
        return {"shards": len(self.shards), "rows_in": kept + rejected, "rows_kept": kept,
                "rows_rejected": rejected,
                "bytes": sum(s["bytes"] for s in self.shards.values())}


def kept_rows(entry: dict[str, Any]) -> int:
    """Input rows a shard keeps: its row count, unless its rows are not input rows (packed
    token rows hold many documents; ``rows_kept`` then counts the documents)."""
    return entry.get("rows_kept", entry["rows"])


def manifest_path(stage_dir: Path | StorePath) -> Path | StorePath:
    return stage_dir / MANIFEST_NAME


def read_manifest(stage_dir: Path | StorePath) -> Manifest | None:
    """The folder's manifest, or None when there is none yet."""
    path = manifest_path(stage_dir)
    if isinstance(path, StorePath):
        return Manifest.from_json(json.loads(path.read_bytes())) if path.is_file() else None
    if not path.exists():
        return None
    return Manifest.from_json(json.loads(path.read_text()))


def _manifest_bytes(manifest: Manifest) -> bytes:
    return (json.dumps(manifest.to_json(), indent=2, sort_keys=False) + "\n").encode()


def write_manifest(stage_dir: Path | StorePath, manifest: Manifest) -> None:
    """Atomic replace of ``_manifest.json`` (temp file, fsync, rename; on an object store
    one PUT, which replaces the object whole)."""
    manifest.updated_at = time.time()
    if isinstance(stage_dir, StorePath):
        (stage_dir / MANIFEST_NAME).write_bytes(_manifest_bytes(manifest))
        return
    final = manifest_path(stage_dir)
    tmp = temp_name(final)
    with open(tmp, "wb") as f:
        f.write(_manifest_bytes(manifest))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, final)
    fsync_dir(stage_dir)


@contextlib.contextmanager
def locked_manifest(stage_dir: Path | StorePath, new: Manifest) -> Iterator[Manifest]:
    """Read-modify-write the manifest under an exclusive lock.

    Several processes (Dagster partition runs, a CLI run) may finish shards of the same
    stage at once; the lock makes their updates serial. ``new`` is used when no manifest
    exists yet; an existing one for a different stage or kind is an error. An object store
    has no lock: there the runner's driver is the folder's only writer (one run at a time).
    """
    if isinstance(stage_dir, StorePath):
        manifest = checked_manifest(stage_dir, new)
        yield manifest
        write_manifest(stage_dir, manifest)
        return
    stage_dir.mkdir(parents=True, exist_ok=True)
    with open(stage_dir / LOCK_NAME, "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            manifest = checked_manifest(stage_dir, new)
            yield manifest
            write_manifest(stage_dir, manifest)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def checked_manifest(stage_dir: Path | StorePath, new: Manifest) -> Manifest:
    """The folder's manifest (or ``new``) to update, refused when it belongs to another stage."""
    manifest = read_manifest(stage_dir) or new
    if (manifest.stage, manifest.kind) != (new.stage, new.kind):
        raise ValueError(
            f"{stage_dir} holds stage {manifest.stage!r} ({manifest.kind}); "
            f"refusing to write stage {new.stage!r} ({new.kind}) there")
    manifest.library_version = new.library_version
    manifest.kind_version = new.kind_version
    return manifest


def without_timings(data: Any) -> Any:
    """A manifest (or part of one) with run-dependent timing keys removed, for comparisons."""
    if isinstance(data, dict):
        return {k: without_timings(v) for k, v in data.items() if k not in TIMING_KEYS}
    if isinstance(data, list):
        return [without_timings(v) for v in data]
    return data
