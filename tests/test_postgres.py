"""The production setup: Dagster's run, event log and schedule storage in a real PostgreSQL
server (started here on loopback), with the ``dagster.yaml`` that ``dagster_project.home
--postgres`` writes; a materialization goes in and is read back from the database."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from dagster_project.assets.ingest import raw_documents, raw_files
from dagster_project.home import ensure_dagster_home
from dagster_project.resources import DataRoot

from .conftest import write_jsonl
from .system_deps import free_port, postgres_bindir, require

try:  # dagster-postgres brings psycopg2
    import dagster_postgres
    import psycopg2
except ImportError:
    dagster_postgres = psycopg2 = None

pytestmark = pytest.mark.slow

USER = "dagster"
DB = "dagster"


def _run_as(account: pwd.struct_passwd | None, *cmd: str | Path) -> None:
    """Run a PostgreSQL program; as ``account`` when we are root (initdb refuses root)."""
    ids = {"user": account.pw_uid, "group": account.pw_gid} if account else {}
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=120,
                          **ids)
    assert proc.returncode == 0, f"{cmd[0]} failed:\n{proc.stdout}\n{proc.stderr}"


def _unprivileged() -> pwd.struct_passwd | None:
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    require(False, "running as root and there is no postgres or nobody account for initdb")
    return None


@pytest.fixture(scope="module")
def postgres() -> Iterator[dict[str, str]]:
    """A throwaway PostgreSQL cluster on 127.0.0.1 (trust auth), stopped afterwards."""
    require(dagster_postgres and psycopg2, "the dagster-postgres package is not installed")
    bindir = postgres_bindir()
    account = _unprivileged()
    root = Path(tempfile.mkdtemp(prefix="sievelm-pg-"))  # not under root's 0700 pytest dirs
    if account:
        os.chown(root, account.pw_uid, account.pw_gid)
    data, port = root / "data", free_port()
    _run_as(account, bindir / "initdb", "-D", data, "-U", USER, "-A", "trust", "--no-sync",
            "-E", "UTF8")
    _run_as(account, bindir / "pg_ctl", "-D", data, "-l", root / "server.log", "-w", "-t", "60",
            "-o", f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off", "start")
    try:
        _run_as(account, bindir / "createdb", "-h", "127.0.0.1", "-p", str(port), "-U", USER, DB)
        yield {"DAGSTER_PG_HOST": "127.0.0.1", "DAGSTER_PG_PORT": str(port),
               "DAGSTER_PG_DB": DB, "DAGSTER_PG_USER": USER,
               "DAGSTER_PG_PASSWORD": "unused-trust-auth"}
    finally:
        _run_as(account, bindir / "pg_ctl", "-D", data, "-m", "fast", "-w", "stop")
        shutil.rmtree(root, ignore_errors=True)


def _query(env: dict[str, str], sql: str) -> list[tuple]:
    conn = psycopg2.connect(host=env["DAGSTER_PG_HOST"], port=int(env["DAGSTER_PG_PORT"]),
                            dbname=env["DAGSTER_PG_DB"], user=env["DAGSTER_PG_USER"])
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
            return cur.fetchall()
    finally:
        conn.close()


def test_materialization_is_stored_in_postgres_and_read_back(postgres, tmp_path, monkeypatch):
    for key, value in postgres.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))  # restored after the test
    home = ensure_dagster_home(postgres=True)
    assert "postgres_db" in (home / "dagster.yaml").read_text()
    assert postgres["DAGSTER_PG_PASSWORD"] not in (home / "dagster.yaml").read_text()
    root = tmp_path / "data"
    write_jsonl(root / "raw" / "one.jsonl", [{"id": str(i), "text": f"doc {i}"} for i in range(7)])
    with open(root / "raw" / "one.jsonl", "a") as f:
        f.write("{oops\n")

    with dg.DagsterInstance.get() as instance:
        storages = {type(instance.run_storage).__name__,
                    type(instance.event_log_storage).__name__,
                    type(instance.schedule_storage).__name__}
        assert storages == {"PostgresRunStorage", "PostgresEventLogStorage",
                            "PostgresScheduleStorage"}
        instance.add_dynamic_partitions(raw_files.name, ["one.jsonl"])
        result = dg.materialize([raw_documents], partition_key="one.jsonl", instance=instance,
                                resources={"data": DataRoot(root=str(root))},
                                tags={"launched_by": "test_postgres"})
        assert result.success
        run_id = result.run_id

    # a fresh instance (new connections) reads everything back from the server
    with dg.DagsterInstance.get() as instance:
        run = instance.get_run_by_id(run_id)
        assert run is not None
        assert run.status == dg.DagsterRunStatus.SUCCESS
        assert run.tags["launched_by"] == "test_postgres"
        assert instance.get_dynamic_partitions(raw_files.name) == ["one.jsonl"]
        event = instance.get_latest_materialization_event(raw_documents.key)
        assert event is not None and event.run_id == run_id
        meta = event.asset_materialization.metadata
        assert (meta["rows_in"].value, meta["rows_kept"].value,
                meta["rows_rejected"].value) == (8, 7, 1)
        evaluations = [e.dagster_event.asset_check_evaluation_data
                       for e in instance.all_logs(
                           run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)]
        checks = {c.check_name: c.passed for c in evaluations}
        assert checks == {"schema": True, "rows_conserved": True}

    # and it is really the server's tables that hold it, not SQLite files in the home
    assert _query(postgres, f"SELECT status FROM runs WHERE run_id = '{run_id}'") == [("SUCCESS",)]
    (n_events,) = _query(postgres, f"SELECT count(*) FROM event_logs WHERE run_id = '{run_id}'")[0]
    assert n_events > 5
    tables = {t for (t,) in _query(postgres, "SELECT tablename FROM pg_tables")}
    assert {"runs", "event_logs", "jobs", "asset_keys", "dynamic_partitions"} <= tables
    assert not list(home.rglob("*.db"))
