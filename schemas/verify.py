"""Check a stage folder against its manifest: missing, truncated, corrupt or stray files."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

from schemas.kinds import get_kind
from schemas.manifest import MANIFEST_NAME, kept_rows, read_manifest
from schemas.shards import is_temp_file, read_shard, sha256_file
from schemas.validate import table_problems

REJECTED_DIR = "rejected"


@dataclass(frozen=True)
class Finding:
    path: str
    problem: str

    def __str__(self) -> str:
        return f"{self.path}: {self.problem}"


@dataclass
class VerifyReport:
    stage_dir: Path
    shards_checked: int = 0
    rows: int = 0
    findings: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.findings

    def add(self, path: str, problem: str) -> None:
        self.findings.append(Finding(path, problem))


def _check_file(report: VerifyReport, stage_dir: Path, entry: dict, kind_name: str) -> None:
    rel = entry["name"]
    path = stage_dir / rel
    if not path.exists():
        report.add(rel, "missing (listed in the manifest, not on disk)")
        return
    size = path.stat().st_size
    if size != entry["bytes"]:
        what = "truncated" if size < entry["bytes"] else "size mismatch"
        report.add(rel, f"{what}: {size} bytes on disk, manifest says {entry['bytes']}")
        return
    digest = sha256_file(path)
    if digest != entry["sha256"]:
        report.add(rel, f"corrupt: sha256 {digest[:12]}... differs from manifest "
                        f"{entry['sha256'][:12]}...")
        return
    try:
        table = read_shard(path, memory_map=False)
    except (pa.ArrowException, OSError) as exc:
        report.add(rel, f"unreadable as Arrow IPC: {exc}")
        return
    if table.num_rows != entry["rows"]:
        report.add(rel, f"row count {table.num_rows} differs from manifest {entry['rows']}")
    for problem in table_problems(table, get_kind(kind_name)):
        report.add(rel, f"schema {kind_name}: {problem}")
    report.shards_checked += 1


def _listed_files(manifest) -> set[str]:
    names = set()
    for entry in manifest.shards.values():
        names.add(entry["name"])
        if entry.get("rejected"):
            names.add(entry["rejected"]["name"])
        names.update(e["name"] for e in entry.get("extras", {}).values())
    return names


def verify_stage(stage_dir: Path) -> VerifyReport:
    """Verify one stage folder (the one holding ``_manifest.json``)."""
    report = VerifyReport(stage_dir)
    try:
        manifest = read_manifest(stage_dir)
    except (ValueError, KeyError, TypeError, AttributeError, json.JSONDecodeError) as exc:
        report.add(MANIFEST_NAME, f"unreadable manifest: {exc}")
        return report
    if manifest is None:
        report.add(MANIFEST_NAME, "missing: not a stage folder, or its first run never finished")
        return report
    for name, entry in sorted(manifest.shards.items()):
        missing = {"name", "rows", "bytes", "sha256", "rows_in", "rows_rejected"} - set(entry)
        if missing:
            report.add(name, f"manifest entry lacks {', '.join(sorted(missing))}")
            continue
        _check_file(report, stage_dir, entry, manifest.kind)
        report.rows += entry["rows"]
        rejected = entry.get("rejected")
        if rejected:
            _check_file(report, stage_dir, rejected, "rejected")
        for extra in entry.get("extras", {}).values():
            _check_file(report, stage_dir, extra, extra["kind"])
        n_rejected = rejected["rows"] if rejected else 0
        if (entry["rows_in"] != kept_rows(entry) + n_rejected
                or entry["rows_rejected"] != n_rejected):
            report.add(name, f"rows not conserved: in {entry['rows_in']} != kept {entry['rows']}"
                             f" + rejected {n_rejected}")
    for name in sorted(manifest.pending):
        if (stage_dir / name).exists() and name not in manifest.shards:
            report.add(name, "written but not recorded: the run was interrupted before the "
                             "manifest update (re-run to finish)")
        else:
            report.add(name, "not written: the run that planned it was interrupted "
                             "(re-run to finish)")
    for name, failure in sorted(manifest.failures.items()):
        report.add(name, f"failed in the last run: {failure.get('error', 'unknown error')}")
    listed = _listed_files(manifest)
    extra_dirs = {Path(e["name"]).parent.as_posix() for entry in manifest.shards.values()
                  for e in entry.get("extras", {}).values()}
    for sub in (stage_dir, stage_dir / REJECTED_DIR, *(stage_dir / d for d in sorted(extra_dirs))):
        if not sub.is_dir():
            continue
        for path in sorted(sub.iterdir()):
            rel = path.relative_to(stage_dir).as_posix()
            if is_temp_file(path):
                report.add(rel, "leftover temp file from an interrupted write (safe to delete)")
            elif path.suffix == ".arrow" and rel not in listed and rel not in manifest.pending:
                report.add(rel, "not in the manifest (written by an interrupted run?)")
    return report


def find_stage_dirs(root: Path) -> list[Path]:
    """Every folder under ``root`` (itself included) that holds a manifest."""
    if (root / MANIFEST_NAME).exists():
        return [root]
    return sorted(p.parent for p in root.rglob(MANIFEST_NAME))
