"""Open a stage folder as one dataset, through its manifest."""

from __future__ import annotations

from pathlib import Path

import pyarrow.dataset as ds

from schemas.manifest import read_manifest


def shard_paths(stage_dir: Path, rejected: bool = False) -> list[Path]:
    """The shards the manifest lists, in name order (stray and temp files are ignored)."""
    stage_dir = Path(stage_dir)
    manifest = read_manifest(stage_dir)
    if manifest is None:
        raise FileNotFoundError(f"{stage_dir} has no _manifest.json; is it a stage folder?")
    if rejected:
        names = [e["rejected"]["name"] for e in manifest.shards.values() if e.get("rejected")]
    else:
        names = [e["name"] for e in manifest.shards.values()]
    return [stage_dir / n for n in sorted(names)]


def open_dataset(stage_dir: Path, rejected: bool = False) -> ds.Dataset:
    """A ``pyarrow.dataset`` over a stage's shards (or its rejected rows)."""
    return ds.dataset([str(p) for p in shard_paths(stage_dir, rejected)], format="arrow")
