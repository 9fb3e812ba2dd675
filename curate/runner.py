"""Apply a stage to many work units (one output shard each) in a process pool.

The runner owns the data contract's bookkeeping so stages stay pure functions: it skips
units whose inputs and config are unchanged (resume), checks row conservation, writes kept
and rejected shards atomically, records failures without stopping the other units, and
updates the manifest after each shard.
"""

from __future__ import annotations

import multiprocessing
import os
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
from tqdm import tqdm

from curate.config import StageConfig
from schemas import REJECTED, RecordKind, write_shard
from schemas.manifest import Manifest, kept_rows, locked_manifest, read_manifest
from schemas.shards import remove_stale_temp_files, sha256_file
from schemas.storage import StorePath, location, remove_temp_keys
from schemas.verify import REJECTED_DIR
from schemas.version import __version__


@dataclass(frozen=True)
class WorkUnit:
    """One output shard and the input files it is made from."""

    name: str
    inputs: tuple[Path | StorePath, ...]
    base: Path | StorePath | None = None
    """Folder the inputs are relative to, so documents can record where they came from."""

    @property
    def remote(self) -> bool:
        """Are inputs on an object store (fetched to local scratch by the worker)?"""
        return any(isinstance(p, StorePath) for p in self.inputs)

    @property
    def key(self) -> str:
        """The shard's stem, used as the Dagster partition key."""
        return self.name.removesuffix(".arrow")


@dataclass
class StageOutput:
    """What a stage returns for one unit: kept rows, rejected rows, and how many came in.

    ``extras`` are companion shards (name -> (table, kind)), written atomically beside the
    output as ``<stage>/<name>/<shard name>`` before the manifest records the unit, so they
    appear and disappear together with it (a token shard's per-document index, say).
    """

    kept: pa.Table
    rejected: pa.Table
    rows_in: int
    extras: dict[str, tuple[pa.Table, RecordKind]] = field(default_factory=dict)
    kept_rows: int | None = None
    """Input rows the kept output represents, when its rows are not input rows (packed token
    rows); conservation is then ``rows_in == kept_rows + rejected``."""


@dataclass(frozen=True)
class Stage:
    """A stage: a pure function from a work unit to kept + rejected rows.

    ``version`` is part of the resume key: bump it when the function's output changes.
    """

    name: str
    version: str
    output_kind: RecordKind
    process: Callable[[WorkUnit, Any], StageOutput]
    preload: tuple[str, ...] = ()
    """Modules the pool's fork server imports before forking workers (beside the stage's own
    module): a module that warms compiled kernels there saves every worker the warm-up."""


@dataclass(frozen=True)
class Backend:
    """Where units run: ``local`` (this machine's process pool) or ``ray`` (a Ray cluster at
    ``address``: ``ray://host:10001``, ``host:6379``, ``auto``; none starts a local Ray)."""

    kind: Literal["local", "ray"] = "local"
    address: str | None = None


_default_backend = Backend()


def set_default_backend(backend: Backend) -> None:
    """The backend ``run_stage`` uses when given none (what the CLI's ``--backend`` sets, so
    commands that run several stages, like dedup, run all of them there)."""
    global _default_backend
    _default_backend = backend


def resolve_backend(backend: Backend | str | None) -> Backend:
    """A backend from an explicit value, a kind name, or the process default."""
    if backend is None:
        return _default_backend
    if isinstance(backend, str):
        if backend not in ("local", "ray"):
            raise ValueError(f"unknown backend {backend!r}: use local or ray")
        return Backend(backend)  # type: ignore[arg-type]
    return backend


class StageFailed(RuntimeError):
    """A unit failed; carries the recorded error text."""


@dataclass
class UnitResult:
    unit: str
    entry: dict[str, Any] | None = None
    error: str | None = None
    traceback: str | None = None
    skipped: bool = False


@dataclass
class RunReport:
    """Totals of a run, for the CLI summary and Dagster metadata."""

    stage: str
    output_dir: Path | StorePath
    units: int = 0
    skipped: int = 0
    done: int = 0
    rows_in: int = 0
    rows_kept: int = 0
    rows_rejected: int = 0
    input_bytes: int = 0
    reasons: Counter = field(default_factory=Counter)
    failures: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failures

    def add(self, result: UnitResult) -> None:
        if result.error is not None:
            self.failures[result.unit] = result.error
            return
        entry = result.entry
        assert entry is not None
        if result.skipped:
            self.skipped += 1
        else:
            self.done += 1
        self.rows_in += entry["rows_in"]
        self.rows_kept += kept_rows(entry)
        self.rows_rejected += entry["rows_rejected"]
        self.input_bytes += sum(i["bytes"] for i in entry["inputs"])
        self.reasons.update(entry["reject_reasons"])


def input_ref(path: Path | StorePath, out_dir: Path | StorePath) -> str:
    """How a manifest names an input: relative to the stage folder, so a data root can move
    (an object-store key relative to a stage folder in the same store; the full location
    where one of them is local and the other is not)."""
    if isinstance(path, StorePath) or isinstance(out_dir, StorePath):
        if isinstance(path, StorePath) and isinstance(out_dir, StorePath):
            return path.relative_to(out_dir)
        return str(path) if isinstance(path, StorePath) else str(path.resolve())
    return os.path.relpath(path.resolve(), out_dir.resolve())


def _fingerprint(path: Path, out_dir: Path, known: dict[str, dict] | None) -> dict[str, Any]:
    """Size, mtime and sha256 of an input; the hash is reused when size and mtime match."""
    st = path.stat()
    ref = input_ref(path, out_dir)
    prev = (known or {}).get(ref)
    if prev and prev["bytes"] == st.st_size and prev.get("mtime_ns") == st.st_mtime_ns:
        digest = prev["sha256"]
    else:
        digest = sha256_file(path)
    return {"path": ref, "bytes": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": digest}


def store_fingerprint(path: StorePath, out_dir: Path | StorePath, known: dict[str, dict] | None,
                      sha256: str | None = None, info: pafs.FileInfo | None = None,
                      ) -> dict[str, Any]:
    """An object's fingerprint, as :func:`_fingerprint`: size and mtime from one metadata
    request (or ``info``, from a listing); the hash is ``sha256`` (the worker hashes while
    fetching), the recorded one when size and mtime match, else the object is streamed and
    hashed."""
    info = info or path.info()
    if info.type != pafs.FileType.File:
        raise FileNotFoundError(f"no such object: {path}")
    ref = input_ref(path, out_dir)
    prev = (known or {}).get(ref)
    if sha256 is None:
        same = prev and prev["bytes"] == info.size and prev.get("mtime_ns") == info.mtime_ns
        sha256 = prev["sha256"] if same else path.sha256()
    return {"path": ref, "bytes": info.size, "mtime_ns": info.mtime_ns, "sha256": sha256}


def _resume_key(stage: Stage, cfg: StageConfig) -> str:
    return f"{stage.name}/{stage.version}/{cfg.config_hash()}"


def is_current(stage_dir: Path | StorePath, entry: dict[str, Any] | None, unit: WorkUnit,
               stage: Stage, cfg: StageConfig,
               listing: dict[str, pafs.FileInfo] | None = None) -> bool:
    """True when the recorded shard was made from the same inputs with the same config.

    ``listing`` (object-store key -> info, from listing the folders once) saves a metadata
    request per object-store file; a key not in it is asked for.
    """
    if entry is None or entry.get("resume_key") != _resume_key(stage, cfg):
        return False
    known = {i["path"]: i for i in entry["inputs"]}
    refs = [input_ref(p, stage_dir) for p in unit.inputs]
    if refs != [i["path"] for i in entry["inputs"]]:
        return False
    for path, ref in zip(unit.inputs, refs, strict=True):
        if isinstance(path, StorePath):
            info = _store_info(path, listing)
            if info.type != pafs.FileType.File or info.size != known[ref]["bytes"]:
                return False
            if (store_fingerprint(path, stage_dir, known, info=info)["sha256"]
                    != known[ref]["sha256"]):
                return False
            continue
        # a size change needs no hash (the worker hashes the new input once, while writing)
        if not path.exists() or path.stat().st_size != known[ref]["bytes"]:
            return False
        if _fingerprint(path, stage_dir, known)["sha256"] != known[ref]["sha256"]:
            return False
    files = ([entry] + ([entry["rejected"]] if entry.get("rejected") else [])
             + list(entry.get("extras", {}).values()))
    if isinstance(stage_dir, StorePath):
        infos = [_store_info(stage_dir / f["name"], listing) for f in files]
        return all(i.type == pafs.FileType.File and i.size == f["bytes"]
                   for i, f in zip(infos, files, strict=True))
    return all((stage_dir / f["name"]).is_file()
               and (stage_dir / f["name"]).stat().st_size == f["bytes"] for f in files)


def _store_info(path: StorePath, listing: dict[str, pafs.FileInfo] | None) -> pafs.FileInfo:
    return listing[path.path] if listing is not None and path.path in listing else path.info()


def _reason_counts(rejected: pa.Table) -> dict[str, int]:
    if rejected.num_rows == 0:
        return {}
    counts = pc.value_counts(rejected.column("reject_reason"))
    return {str(v["values"]): int(v["counts"]) for v in counts.to_pylist()}


def process_unit(stage: Stage, unit: WorkUnit, out_dir: Path, cfg: StageConfig,
                 known_inputs: dict[str, dict] | None = None,
                 place: Callable[[str], Path] | None = None,
                 fingerprints: list[dict[str, Any]] | None = None) -> UnitResult:
    """Run the stage on one unit and write its shards; never raises for a bad unit.

    ``place(name)`` is where the file the manifest calls ``name`` is written (default: its
    final path); a remote worker writes to temp names that the committing process renames.
    ``fingerprints`` are the inputs as the manifest records them, when ``unit`` holds local
    copies of inputs that live elsewhere (an object store).
    """
    target = place or (lambda rel: out_dir / rel)
    started = time.time()
    t0 = time.perf_counter()
    try:
        inputs = (fingerprints if fingerprints is not None
                  else [_fingerprint(p, out_dir, known_inputs) for p in unit.inputs])
        out = stage.process(unit, cfg)
        kept, rejected = out.kept, out.rejected
        n_kept = kept.num_rows if out.kept_rows is None else out.kept_rows
        if out.rows_in != n_kept + rejected.num_rows:
            raise StageFailed(f"rows not conserved: in {out.rows_in} != kept {n_kept} "
                              f"+ rejected {rejected.num_rows}")
        info = write_shard(kept, target(unit.name), stage.output_kind)
        rejected_info = None
        if rejected.num_rows:
            rel = f"{REJECTED_DIR}/{unit.name}"
            written = write_shard(rejected, target(rel), REJECTED)
            rejected_info = {**written.to_json(), "name": rel}
        extras = {}
        for extra, (table, kind) in sorted(out.extras.items()):
            rel = f"{extra}/{unit.name}"
            written = write_shard(table, target(rel), kind)
            extras[extra] = {**written.to_json(), "name": rel, "kind": kind.name}
    except Exception as exc:
        tb = traceback.format_exc(limit=8)
        return UnitResult(unit.name, error=f"{type(exc).__name__}: {exc}", traceback=tb)
    entry = {
        **info.to_json(),
        "name": Path(unit.name).name,
        "rows_in": out.rows_in,
        **({"rows_kept": n_kept} if out.kept_rows is not None else {}),
        "rows_rejected": rejected.num_rows,
        "reject_reasons": _reason_counts(rejected),
        "rejected": rejected_info,
        **({"extras": extras} if extras else {}),
        "inputs": inputs,
        "config_hash": cfg.config_hash(),
        "resume_key": _resume_key(stage, cfg),
        "started_at": started,
        "seconds": round(time.perf_counter() - t0, 4),
    }
    return UnitResult(unit.name, entry=entry)


def _new_manifest(stage: Stage) -> Manifest:
    kind = stage.output_kind
    return Manifest(stage=stage.name, kind=kind.name, kind_version=kind.version,
                    library_version=__version__)


def commit(out_dir: Path | StorePath, stage: Stage, result: UnitResult) -> None:
    """Record a unit's outcome in the manifest, then drop a rejected file it no longer has."""
    with locked_manifest(out_dir, _new_manifest(stage)) as manifest:
        stale = record(manifest, out_dir, result)
    if isinstance(stale, StorePath):
        stale.delete()
    elif stale is not None:
        stale.unlink(missing_ok=True)


def record(manifest: Manifest, out_dir: Path | StorePath,
           result: UnitResult) -> Path | StorePath | None:
    """Put a unit's outcome in ``manifest``; returns a rejected file the unit no longer has."""
    manifest.pending = [n for n in manifest.pending if n != result.unit]
    if result.error is not None:
        manifest.failures[result.unit] = {"error": result.error,
                                          "traceback": result.traceback,
                                          "created_at": time.time()}
        return None
    old = manifest.shards.get(result.unit)
    manifest.shards[result.unit] = result.entry
    manifest.failures.pop(result.unit, None)
    if old and old.get("rejected") and not result.entry.get("rejected"):
        return out_dir / old["rejected"]["name"]
    return None


def run_unit(stage: Stage, unit: WorkUnit, out_dir: Path | StorePath, cfg: StageConfig,
             force: bool = False) -> UnitResult:
    """Resume-aware run of a single unit in this process (what a Dagster partition does)."""
    manifest = read_manifest(out_dir)
    entry = manifest.shards.get(unit.name) if manifest else None
    if not force and is_current(out_dir, entry, unit, stage, cfg):
        return UnitResult(unit.name, entry=entry, skipped=True)
    if isinstance(out_dir, StorePath) or unit.remote:
        from curate.staging import publish_staged, stage_unit

        result = publish_staged(out_dir, *stage_unit(stage, unit, out_dir, cfg,
                                                     recorded_inputs(entry)))
    else:
        result = process_unit(stage, unit, out_dir, cfg, recorded_inputs(entry))
    commit(out_dir, stage, result)
    return result


def recorded_inputs(entry: dict[str, Any] | None) -> dict[str, dict] | None:
    """The input fingerprints of a manifest entry by path (so unchanged inputs aren't
    hashed again)."""
    return {i["path"]: i for i in entry["inputs"]} if entry else None


def _check_names(units: Sequence[WorkUnit]) -> None:
    seen: dict[str, WorkUnit] = {}
    for unit in units:
        if unit.name in seen:
            raise ValueError(f"two inputs map to the same shard {unit.name}: "
                             f"{seen[unit.name].inputs} and {unit.inputs}")
        seen[unit.name] = unit


def run_stage(stage: Stage, units: Iterable[WorkUnit], out_dir: Path | StorePath | str,
              cfg: StageConfig, workers: int = 1, progress: bool = True, force: bool = False,
              backend: Backend | str | None = None) -> RunReport:
    """Run ``stage`` over ``units`` into ``out_dir``; failures are recorded, not raised.

    ``workers`` sizes the local pool; on Ray the cluster's CPUs decide (see ``Backend``).
    ``out_dir`` and the units' inputs may be on an object store (a ``StorePath``, or a URI
    such as ``s3://bucket/prefix``): workers then fetch inputs to local scratch and upload
    each unit's files to temp keys, which this process moves into place before it records
    the unit in the manifest (see :mod:`curate.staging`).
    """
    chosen = resolve_backend(backend)
    out_dir = location(out_dir)
    units = list(units)
    _check_names(units)
    staged = isinstance(out_dir, StorePath) or any(u.remote for u in units)
    listing, store_log = None, None
    if staged:
        from curate import staging

        # one listing per folder instead of a request per file; drops temp keys left by
        # workers of an earlier run that died
        listing = staging.list_folders(out_dir, units)
    if isinstance(out_dir, StorePath):
        store_log = staging.StoreManifest(out_dir, _new_manifest(stage))
    else:
        out_dir.mkdir(parents=True, exist_ok=True)
        for folder in (out_dir, *(d for d in out_dir.iterdir() if d.is_dir())):
            remove_stale_temp_files(folder)
    report = RunReport(stage=stage.name, output_dir=out_dir, units=len(units))
    t0 = time.perf_counter()
    manifest = store_log.manifest if store_log else read_manifest(out_dir)
    recorded = dict(manifest.shards) if manifest else {}
    todo: list[WorkUnit] = []
    for unit in units:
        entry = recorded.get(unit.name)
        if not force and is_current(out_dir, entry, unit, stage, cfg, listing):
            report.add(UnitResult(unit.name, entry=entry, skipped=True))
        else:
            todo.append(unit)
    if todo and store_log:
        store_log.add_pending([u.name for u in todo])
    elif todo:
        with locked_manifest(out_dir, _new_manifest(stage)) as pending:
            pending.pending = sorted(set(pending.pending) | {u.name for u in todo})
    bar = tqdm(total=len(units), initial=report.skipped, desc=stage.name, unit="shard",
               disable=not progress, dynamic_ncols=True)

    def finish(result: UnitResult) -> None:
        if store_log:
            store_log.commit(result)
        else:
            commit(out_dir, stage, result)
        report.add(result)
        bar.update(1)
        bar.set_postfix(kept=report.rows_kept, rejected=report.rows_rejected,
                        failed=len(report.failures))

    work: Callable[..., Any] = process_unit
    if staged:
        from curate.staging import publish_staged, stage_unit

        work, finish_unit = stage_unit, finish

        def finish(result: UnitResult | tuple[UnitResult, dict[str, str]]) -> None:
            finish_unit(publish_staged(out_dir, *result) if isinstance(result, tuple)
                        else result)

    try:
        if chosen.kind == "ray" and todo:
            from curate.ray_backend import run_units

            run_units(stage, todo, out_dir, cfg, recorded, finish, chosen.address)
        elif workers <= 1 or len(todo) <= 1:
            for unit in todo:
                finish(work(stage, unit, out_dir, cfg, recorded_inputs(recorded.get(unit.name))))
        else:
            _run_pool(stage, todo, out_dir, cfg, workers, recorded, finish, work)
    finally:
        bar.close()
        if store_log:
            store_log.flush()
            remove_temp_keys(out_dir)  # of units whose worker died
    report.seconds = time.perf_counter() - t0
    return report


def _run_pool(stage: Stage, todo: list[WorkUnit], out_dir: Path | StorePath, cfg: StageConfig,
              workers: int, recorded: dict[str, dict], finish: Callable[[Any], None],
              work: Callable[..., Any] = process_unit) -> None:
    """Run units in a process pool. A worker that dies (segfault, OOM kill) breaks the pool
    and every unit still in it; those units are retried alone, so only the one that really
    kills its worker is recorded as failed."""
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload([stage.process.__module__, *stage.preload])
    suspects: list[WorkUnit] = []
    groups: list[tuple[list[WorkUnit], int]] = [(todo, workers)]
    while groups:
        group, n = groups.pop(0)
        for unit in _run_group(ctx, stage, group, n, out_dir, cfg, recorded, finish, work):
            if n == 1 and len(group) == 1:
                finish(UnitResult(unit.name, error="worker process died while processing "
                                                   "this shard (crash or out of memory)"))
            else:
                suspects.append(unit)
        if not groups and suspects:
            groups, suspects = [([u], 1) for u in suspects], []


def _run_group(ctx, stage: Stage, group: list[WorkUnit], workers: int,
               out_dir: Path | StorePath, cfg: StageConfig, recorded: dict[str, dict],
               finish: Callable[[Any], None],
               work: Callable[..., Any] = process_unit) -> list[WorkUnit]:
    """Run a group in one pool; returns the units lost to a broken pool."""
    broken = []
    # the fork server is started once per process with the first pool's preload list; a
    # later stage's kernels would then load in every task, so each worker imports them once
    modules = (stage.process.__module__, *stage.preload)
    with ProcessPoolExecutor(max_workers=min(workers, len(group)), mp_context=ctx,
                             initializer=_import_all, initargs=(modules,)) as pool:
        pending = {pool.submit(work, stage, u, out_dir, cfg,
                               recorded_inputs(recorded.get(u.name))): u for u in group}
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in done:
                unit = pending.pop(fut)
                try:
                    finish(fut.result())
                except BrokenProcessPool:
                    broken.append(unit)
    return broken


def _import_all(modules: tuple[str, ...]) -> None:
    """Pool initializer: import (and so warm) the stage's modules; free when preloaded."""
    import importlib

    for name in modules:
        importlib.import_module(name)


def plan_shards(input_dir: Path | StorePath | str) -> list[WorkUnit]:
    """One unit per shard of an upstream stage folder; output shards keep the input's name.

    The folder may be on an object store (a ``StorePath`` or a URI: ``s3://bucket/prefix``).
    """
    from schemas.dataset import shard_paths

    input_dir = location(input_dir)
    if isinstance(input_dir, StorePath):
        return [WorkUnit(p.name, (p,), p.parent) for p in shard_paths(input_dir)]
    return [WorkUnit(p.name, (p,), p.parent) for p in shard_paths(input_dir.resolve())]


def default_workers() -> int:
    return max(1, min(os.cpu_count() or 1, 8))
