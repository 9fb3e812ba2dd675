"""A project-local ``DAGSTER_HOME``: SQLite storage, telemetry off, created on first use."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from dagster_project.resources import PROJECT_ROOT

DAGSTER_YAML = """\
# Embedded default: run, event and schedule storage in SQLite under this folder.
# For production, see the README (PostgreSQL via dagster-postgres).
telemetry:
  enabled: false
"""


def ensure_dagster_home(path: Path | None = None) -> Path:
    """Use ``$DAGSTER_HOME`` (made absolute) or ``<project>/.dagster_home``; create it."""
    home = Path(path or os.environ.get("DAGSTER_HOME") or PROJECT_ROOT / ".dagster_home")
    home = home.resolve()
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():
        config.write_text(DAGSTER_YAML)
    os.environ["DAGSTER_HOME"] = str(home)
    return home


if __name__ == "__main__":
    print(ensure_dagster_home(Path(sys.argv[1]) if len(sys.argv) > 1 else None))
