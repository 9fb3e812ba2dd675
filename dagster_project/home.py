"""A project-local ``DAGSTER_HOME``: telemetry off, created on first use.

Embedded default: SQLite under the folder. Production (``--postgres``): run, event log and
schedule storage in PostgreSQL through ``dagster-postgres``, connection read from the
environment (``DAGSTER_PG_HOST``, ``_PORT``, ``_DB``, ``_USER``, ``_PASSWORD``) so no password
is written to disk.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from dagster_project.resources import PROJECT_ROOT

SQLITE_NOTE = """\
# Embedded default: run, event and schedule storage in SQLite under this folder.
# For production, see the README (PostgreSQL via dagster-postgres).
"""

DAGSTER_YAML = """\
telemetry:
  enabled: false
# Only the training assets use a pool (`gpu`): one training step at a time.
concurrency:
  pools:
    default_limit: 1
"""

POSTGRES_YAML = """\
# Production: runs, event logs and schedules in PostgreSQL (dagster-postgres).
storage:
  postgres:
    postgres_db:
      hostname: {env: DAGSTER_PG_HOST}
      port: {env: DAGSTER_PG_PORT}
      db_name: {env: DAGSTER_PG_DB}
      username: {env: DAGSTER_PG_USER}
      password: {env: DAGSTER_PG_PASSWORD}
      # dagster-postgres talks psycopg2; SQLAlchemy 2.1's plain postgresql:// means psycopg 3
      scheme: postgresql+psycopg2
"""


def ensure_dagster_home(path: Path | None = None, postgres: bool = False) -> Path:
    """Use ``$DAGSTER_HOME`` (made absolute) or ``<project>/.dagster_home``; create it.

    An existing ``dagster.yaml`` is left as it is; ``postgres`` only shapes a new one.
    """
    home = Path(path or os.environ.get("DAGSTER_HOME") or PROJECT_ROOT / ".dagster_home")
    home = home.resolve()
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():
        config.write_text(DAGSTER_YAML + POSTGRES_YAML if postgres else SQLITE_NOTE + DAGSTER_YAML)
    os.environ["DAGSTER_HOME"] = str(home)
    return home


def main() -> None:
    parser = argparse.ArgumentParser(description="Create a DAGSTER_HOME; print its path.")
    parser.add_argument("path", nargs="?", type=Path, help="default: $DAGSTER_HOME or "
                        "<project>/.dagster_home")
    parser.add_argument("--postgres", action="store_true", help="PostgreSQL storage "
                        "(connection from DAGSTER_PG_* variables) instead of SQLite")
    args = parser.parse_args()
    print(ensure_dagster_home(args.path, postgres=args.postgres))


if __name__ == "__main__":
    main()
