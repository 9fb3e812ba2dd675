"""Shared fixtures: small raw inputs and CLI runners."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def run_cli(*args: str, cwd: Path | None = None, check: bool = False,
            timeout: float = 300) -> subprocess.CompletedProcess:
    """Run ``python -m curate ...`` (or another module) as a user would."""
    proc = subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{args} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


@pytest.fixture
def raw_dir(tmp_path: Path) -> Path:
    """Two clean JSONL files and one CSV file."""
    raw = tmp_path / "raw"
    write_jsonl(raw / "a.jsonl", [{"id": f"a{i}", "text": f"document {i} " * 20,
                                   "url": f"https://example.org/a/{i}", "lang_hint": "en"}
                                  for i in range(50)])
    write_jsonl(raw / "sub" / "b.jsonl", [{"text": f"other text {i}"} for i in range(30)])
    (raw / "c.csv").write_text("id,text\n" + "".join(f"c{i},\"row, {i}\"\n" for i in range(20)))
    return raw
