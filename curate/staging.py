"""Units whose inputs or output live on an object store: fetch, run locally, upload, publish.

Stages read and write local files (memory-mapped shards), so a worker fetches a unit's
inputs to local scratch, runs :func:`curate.runner.process_unit` there, and uploads each
written file to a temp key beside its final key (``.name.tmp-pid-hex``). The driver then
moves the temp keys to their final keys (copy + delete: object stores have no rename) and
only after that records the unit in ``_manifest.json``, which is one PUT. So a reader that
trusts the manifest never sees a partial unit; a worker that dies leaves at most temp keys,
which the driver deletes at the start and end of every run (it is the folder's only writer).

Used by the local pool and the Ray backend alike (both call :func:`stage_unit` in the
worker and :func:`publish_staged` in the driver).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs

from curate.config import StageConfig
from curate.runner import (
    Stage,
    UnitResult,
    WorkUnit,
    _fingerprint,
    process_unit,
    record,
    store_fingerprint,
)
from schemas.manifest import Manifest, checked_manifest, write_manifest
from schemas.storage import StorePath, is_temp_key

FLUSH_S = 10.0
"""Longest time the driver holds finished units before it PUTs the manifest again: a
rewrite per unit would upload the whole manifest once per shard (quadratic in shards)."""


def fetch_inputs(unit: WorkUnit, out_dir: Path | StorePath, known: dict[str, dict] | None,
                 scratch: Path) -> tuple[WorkUnit, list[dict[str, Any]]]:
    """The unit with its object-store inputs copied under ``scratch`` (keeping their paths
    relative to the unit's base, which stages may record), and the inputs' fingerprints as
    the manifest names them (by key, not by scratch path)."""
    local_base = scratch if isinstance(unit.base, StorePath) else unit.base
    inputs: list[Path] = []
    fingerprints = []
    for i, path in enumerate(unit.inputs):
        if not isinstance(path, StorePath):
            inputs.append(path)
            fingerprints.append(_fingerprint(path, out_dir, known))
            continue
        rel = path.relative_to(unit.base) if isinstance(unit.base, StorePath) else ".."
        # an input outside the base (a removal unit's clusters shard, of the same name as its
        # documents shard) gets a folder of its own
        local = scratch / rel if not rel.startswith("..") else scratch / f".{i}" / path.name
        fingerprints.append(store_fingerprint(path, out_dir, known, path.download(local)))
        inputs.append(local)
    return WorkUnit(unit.name, tuple(inputs), local_base), fingerprints


def stage_unit(stage: Stage, unit: WorkUnit, out_dir: Path | StorePath, cfg: StageConfig,
               known: dict[str, dict] | None = None,
               place: Callable[[str], Path] | None = None,
               ) -> tuple[UnitResult, dict[str, str]]:
    """Worker side: run one unit with inputs and/or output on an object store; never raises
    for a bad unit. Returns the result and, for an object-store output, the temp key of each
    file by manifest name (empty when the unit failed: its temp keys are deleted). A local
    output is written by ``process_unit`` itself (through ``place`` when given)."""
    with tempfile.TemporaryDirectory(prefix="curate-unit-") as tmp:
        scratch = Path(tmp)
        try:
            local_unit, fingerprints = fetch_inputs(unit, out_dir, known, scratch / "in")
        except Exception as exc:
            return UnitResult(unit.name, error=f"fetching inputs failed: "
                                               f"{type(exc).__name__}: {exc}"), {}
        if not isinstance(out_dir, StorePath):
            return process_unit(stage, local_unit, out_dir, cfg, known, place=place,
                                fingerprints=fingerprints), {}
        staging = scratch / "out"
        result = process_unit(stage, local_unit, staging, cfg, known,
                              fingerprints=fingerprints)
        if result.error is not None:
            return result, {}
        staged: dict[str, str] = {}
        try:
            for local in sorted(p for p in staging.rglob("*") if p.is_file()):
                rel = local.relative_to(staging).as_posix()
                temp = (out_dir / rel).temp()
                staged[rel] = temp.path
                temp.upload(local)
        except Exception as exc:
            for key in staged.values():
                StorePath(out_dir.fs, key).delete()
            return UnitResult(unit.name, error=f"upload failed: {type(exc).__name__}: {exc}"), {}
        return result, staged


def publish_staged(out_dir: Path | StorePath, result: UnitResult,
                   staged: dict[str, str]) -> UnitResult:
    """Driver side: move a unit's temp keys to their final keys (before the manifest records
    it). A failed move becomes the unit's error, so the manifest never lists a missing key."""
    if result.error is not None or not staged:
        return result
    assert isinstance(out_dir, StorePath)
    try:
        for rel, temp in sorted(staged.items()):
            StorePath(out_dir.fs, temp).move_to(out_dir / rel)
    except Exception as exc:
        for temp in staged.values():
            StorePath(out_dir.fs, temp).delete()
        return UnitResult(result.unit, error=f"publishing failed: {type(exc).__name__}: {exc}")
    return result


def list_folders(out_dir: Path | StorePath, units: list[WorkUnit]) -> dict[str, pafs.FileInfo]:
    """Every object in an object-store output folder (recursively) and in the folders of the
    units' object-store inputs, by key, so resume checks need no request per file. Temp keys
    in the output folder are deleted on the way: the driver is the folder's only writer, so
    they are what workers of an earlier run left when they died."""
    listing: dict[str, pafs.FileInfo] = {}
    folders = {(p.parent.path, False): p.parent for u in units for p in u.inputs
               if isinstance(p, StorePath)}
    if isinstance(out_dir, StorePath):
        folders[(out_dir.path, True)] = out_dir
    for (_, recursive), folder in sorted(folders.items(), key=lambda kv: kv[0]):
        selector = pafs.FileSelector(folder.path, recursive=recursive, allow_not_found=True)
        for info in folder.fs.get_file_info(selector):
            key = StorePath(folder.fs, info.path)
            if recursive and info.type == pafs.FileType.File and is_temp_key(key):
                key.delete()
            else:
                listing[info.path] = info
    return listing


class StoreManifest:
    """The manifest of an object-store stage folder as its driver keeps it: in memory (the
    driver is the folder's only writer; an object store has no lock) and PUT whole at most
    every ``interval`` seconds and at the end of the run. A unit recorded after the last PUT
    of a driver that is killed is only redone by the next run: its files are in place, but
    nothing trusts a file the manifest does not list."""

    def __init__(self, out_dir: StorePath, new: Manifest, interval: float = FLUSH_S):
        self.out_dir = out_dir
        self.manifest = checked_manifest(out_dir, new)
        self.interval = interval
        self._stale: list[StorePath] = []
        self._dirty = False
        self._written = time.monotonic()

    def add_pending(self, names: list[str]) -> None:
        self.manifest.pending = sorted(set(self.manifest.pending) | set(names))
        self._dirty = True
        self.flush()

    def commit(self, result: UnitResult) -> None:
        stale = record(self.manifest, self.out_dir, result)
        if stale is not None:
            self._stale.append(stale)
        self._dirty = True
        if time.monotonic() - self._written >= self.interval:
            self.flush()

    def flush(self) -> None:
        """PUT the manifest, then delete the rejected files it no longer lists."""
        if self._dirty:
            write_manifest(self.out_dir, self.manifest)
            self._dirty, self._written = False, time.monotonic()
        for stale in self._stale:
            stale.delete()
        self._stale = []
