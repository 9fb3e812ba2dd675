"""The runner's Ray backend: the same ``Stage.process`` per work unit, as Ray tasks.

A task runs :func:`curate.runner.process_unit` on a worker, which writes every file of the
unit (kept, rejected, extras) to a temp name beside its final path and returns the manifest
entry with those temp names. Only the driver renames them into place and commits the
manifest, so the commit path stays single-writer: a worker lost mid-shard leaves at most a
temp file (removed at the end of the run, or by the next run), never a partial shard, and
Ray retries the task (``max_retries``) on another worker.

Workers read inputs and write outputs by path, so a local dataset must be on storage every
node mounts at the same path (one machine, NFS). A stage folder or inputs on an object store
(``s3://...``) need no shared mount: the task fetches, runs and uploads to temp keys
(:func:`curate.staging.stage_unit`) and the driver moves them into place.

Ray is imported here only, and this module only when a run asks for it, so Ray stays an
optional dependency (``pip install sievelm[ray]``).
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from curate.config import StageConfig
from curate.runner import Stage, UnitResult, WorkUnit, process_unit, recorded_inputs
from schemas.shards import fsync_dir, remove_stale_temp_files, temp_name
from schemas.storage import StorePath

MAX_RETRIES = 3
"""Times Ray reruns a task whose worker died (crash, OOM kill, lost node)."""
IN_FLIGHT_PER_CPU = 2
"""Tasks submitted per cluster CPU at a time: enough to keep workers busy, few enough that
results waiting for the driver stay small."""


def connect(address: str | None = None) -> Any:
    """Connect to the cluster at ``address`` (or ``RAY_ADDRESS``), or start a local one.

    An already initialised Ray (a test fixture, a Dagster resource) is reused as it is.
    """
    try:
        import ray
    except ImportError as exc:
        raise ImportError("the Ray backend needs Ray: pip install 'sievelm[ray]'") from exc
    if ray.is_initialized():
        return ray
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, log_to_driver=False)
    else:
        ray.init(include_dashboard=False, log_to_driver=False)
    return ray


def _process_remote(stage: Stage, unit: WorkUnit, out_dir: str | StorePath, cfg: StageConfig,
                    known: dict[str, dict] | None) -> tuple[UnitResult, dict[str, str]]:
    """Worker side: run the unit, writing each file to a temp name (a temp key for an
    object-store output); returns the temp names by manifest name for the driver to
    publish. Inputs on an object store are fetched to local scratch first."""
    for module in stage.preload:  # warm kernels as the local pool's workers do (once each)
        importlib.import_module(module)
    if isinstance(out_dir, StorePath):
        from curate.staging import stage_unit

        return stage_unit(stage, unit, out_dir, cfg, known)
    root = Path(out_dir)
    staged: dict[str, str] = {}

    def place(rel: str) -> Path:
        tmp = temp_name(root / rel)
        staged[rel] = str(tmp)
        return tmp

    if unit.remote:
        from curate.staging import stage_unit

        result, _ = stage_unit(stage, unit, root, cfg, known, place=place)
    else:
        result = process_unit(stage, unit, root, cfg, known, place=place)
    if result.error is not None:
        for tmp in staged.values():
            Path(tmp).unlink(missing_ok=True)
        staged = {}
    return result, staged


def publish(out_dir: Path, staged: dict[str, str]) -> None:
    """Rename a unit's temp files to their final names (atomic on one filesystem)."""
    folders = set()
    for rel, tmp in sorted(staged.items()):
        final = out_dir / rel
        os.replace(tmp, final)
        folders.add(final.parent)
    for folder in sorted(folders):
        fsync_dir(folder)


def cluster_cpus(ray: Any) -> int:
    return max(1, int(ray.cluster_resources().get("CPU", 1)))


def run_units(stage: Stage, todo: list[WorkUnit], out_dir: Path | StorePath, cfg: StageConfig,
              recorded: dict[str, dict], finish: Callable[[UnitResult], None],
              address: str | None = None) -> None:
    """Run ``todo`` as Ray tasks; ``finish`` commits each result on the driver, in order of
    completion, after its files are in place."""
    ray = connect(address)
    task = ray.remote(_process_remote).options(num_cpus=1, max_retries=MAX_RETRIES,
                                               retry_exceptions=False)
    limit = IN_FLIGHT_PER_CPU * cluster_cpus(ray)
    queue = list(reversed(todo))
    pending: dict[Any, WorkUnit] = {}
    try:
        while queue or pending:
            while queue and len(pending) < limit:
                unit = queue.pop()
                target = out_dir if isinstance(out_dir, StorePath) else str(out_dir)
                pending[task.remote(stage, unit, target, cfg,
                                    recorded_inputs(recorded.get(unit.name)))] = unit
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                unit = pending.pop(ref)
                try:
                    result, staged = ray.get(ref)
                except ray.exceptions.RayError as exc:
                    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                    result, staged = UnitResult(unit.name, error=(
                        f"Ray task failed after {MAX_RETRIES} retries "
                        f"({type(exc).__name__}: {reason})")), {}
                if isinstance(out_dir, StorePath):
                    finish((result, staged))  # the runner's finish moves the temp keys
                    continue
                if result.error is None:
                    publish(out_dir, staged)
                finish(result)
    finally:
        for ref in pending:
            ray.cancel(ref, force=True)
        if not isinstance(out_dir, StorePath):  # the runner cleans an object-store folder
            for folder in (out_dir, *(d for d in out_dir.iterdir() if d.is_dir())):
                remove_stale_temp_files(folder)
