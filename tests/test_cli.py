"""The two command lines are installed and list their commands."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from .conftest import run_cli


def test_curate_help_lists_commands():
    proc = run_cli("curate", "--help", check=True)
    for command in ("ingest", "verify", "show", "schemas", "demo-site"):
        assert command in proc.stdout


def test_train_help_and_env():
    assert "env" in run_cli("train", "--help", check=True).stdout
    env = run_cli("train", "env", check=True).stdout
    assert "torch 2." in env


def test_console_scripts_are_installed():
    for script in ("curate", "train"):
        path = Path(sys.executable).parent / script  # installed beside the interpreter
        assert path.exists(), f"{script} is not installed in {path.parent}"
        proc = subprocess.run([str(path), "--version"], capture_output=True, text=True, check=True)
        assert proc.stdout.startswith(f"{script}, version")


def test_stage_help_shows_the_shared_shape():
    out = run_cli("curate", "ingest", "--help", check=True).stdout
    for option in ("--input", "--output", "--workers", "--config", "--set"):
        assert option in out


def test_show_summarises_a_stage(tmp_path, raw_dir):
    run_cli("curate", "ingest", "--input", str(raw_dir), "--output", str(tmp_path / "out"),
            "--quiet", check=True)
    out = run_cli("curate", "show", str(tmp_path), check=True).stdout
    assert "[ingest: documents v1.0]" in out and "kept 100" in out


def test_missing_input_is_a_clear_error(tmp_path):
    proc = run_cli("curate", "ingest", "--input", str(tmp_path / "nope"), "--output",
                   str(tmp_path / "out"))
    assert proc.returncode == 1 and "input not found" in proc.stderr
