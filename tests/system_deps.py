"""Debian programs some tests need (``make system-deps`` installs them as root).

Missing ones skip the test with the reason on a developer's machine; under CI (``CI`` set)
they fail it instead, so a broken install step cannot pass as a skip.
"""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"


def require(ok: object, reason: str) -> None:
    """Skip (or, under CI, fail) unless ``ok``."""
    if ok:
        return
    reason += " (`make system-deps` installs it as root)"
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


def chromium() -> str:
    path = CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium")
    require(path, "Debian's chromium is not installed")
    return str(path)


def postgres_bindir() -> Path:
    """The folder with ``initdb``/``pg_ctl``: Debian's newest, else whatever is on PATH."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"),
                   key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit()
                   else 0)
    initdb = found[-1] if found else shutil.which("initdb")
    require(initdb, "PostgreSQL (initdb, pg_ctl) is not installed")
    return Path(str(initdb)).resolve().parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def artifacts_dir(name: str) -> Path:
    """A stable, git-ignored folder for files a person may want to look at after a run."""
    root = Path(os.environ.get("SIEVELM_TEST_ARTIFACTS")
                or Path(__file__).resolve().parent.parent / "test-artifacts")
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    return folder
