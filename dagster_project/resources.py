"""Where data lives: one resource so every asset agrees on the layout."""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DATA_ROOT_ENV = "SIEVELM_DATA_ROOT"


def default_data_root() -> str:
    return os.environ.get(DATA_ROOT_ENV) or str(PROJECT_ROOT / "data")


class DataRoot(dg.ConfigurableResource):
    """The data root: ``<root>/<dataset>/<stage>/`` stage folders and a raw landing folder."""

    root: str = default_data_root()
    landing: str = "raw"
    """Folder (relative to root, or absolute) that raw input files are dropped into."""

    @property
    def path(self) -> Path:
        return Path(self.root).resolve()

    @property
    def landing_dir(self) -> Path:
        return self.path / self.landing

    def stage_dir(self, dataset: str, stage: str) -> Path:
        return self.path / dataset / stage
