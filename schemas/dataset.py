"""Open a stage folder as one dataset, through its manifest."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from schemas.manifest import read_manifest
from schemas.storage import StorePath

if TYPE_CHECKING:
    import pyarrow.dataset as ds


def shard_paths(stage_dir: Path | StorePath, rejected: bool = False) -> list[Path | StorePath]:
    """The shards the manifest lists, in name order (stray and temp files are ignored).

    A stage folder on an object store (a :class:`StorePath`) gives its shards' keys.
    """
    if not isinstance(stage_dir, StorePath):
        stage_dir = Path(stage_dir)
    manifest = read_manifest(stage_dir)
    if manifest is None:
        raise FileNotFoundError(f"{stage_dir} has no _manifest.json; is it a stage folder?")
    if rejected:
        names = [e["rejected"]["name"] for e in manifest.shards.values() if e.get("rejected")]
    else:
        names = [e["name"] for e in manifest.shards.values()]
    return [stage_dir / n for n in sorted(names)]


def open_dataset(stage_dir: Path | StorePath, rejected: bool = False) -> ds.Dataset:
    """A ``pyarrow.dataset`` over a stage's shards (or its rejected rows). Imported here:
    ``pyarrow.dataset`` pulls in pandas, half a second at every process start otherwise."""
    import pyarrow.dataset as ds

    paths = shard_paths(stage_dir, rejected)
    if isinstance(stage_dir, StorePath):
        return ds.dataset([p.path for p in paths], format="arrow", filesystem=stage_dir.fs)
    return ds.dataset([str(p) for p in paths], format="arrow")
