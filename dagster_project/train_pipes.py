"""Run a ``train`` command under Dagster Pipes and report what it wrote.

``python -m dagster_project.train_pipes pretrain --data ... --output DIR`` is what the training
assets launch through ``PipesSubprocessClient``: it opens the Pipes channel, runs the command
in this process (the same click command a shell would run), then logs every evaluation to the
run's event log and reports the materialization's figures, all read from the run's
``metrics.jsonl`` (and ``cpt_report.json`` for continued pre-training). ``train`` itself never
imports Dagster code.
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path
from typing import Any


def _records(output: Path) -> list[dict[str, Any]]:
    path = output / "metrics.jsonl"
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def run_metadata(output: Path) -> dict[str, Any]:
    """Flat, JSON-safe figures of a finished run, from the files it wrote."""
    records = _records(output)
    train = [r for r in records if r.get("kind") == "train"]
    meta: dict[str, Any] = {"output": str(output)}
    if train:
        meta.update(steps=int(train[-1]["step"]), first_loss=float(train[0]["loss"]),
                    final_loss=float(train[-1]["loss"]),
                    tokens_per_s=float(statistics.median(r["tokens_per_s"] for r in train)))
    for r in records:
        kind = str(r.get("kind", ""))
        if kind.startswith("eval/"):
            name = kind.removeprefix("eval/")
            meta[f"{name}_loss"] = float(r["loss"])
            meta[f"{name}_perplexity"] = float(r["perplexity"])
    report = output / "cpt_report.json"
    if report.exists():
        for name, r in json.loads(report.read_text()).get("evals", {}).items():
            meta[f"{name}_loss_delta"] = float(r["delta"])
    return meta


def main(argv: list[str]) -> None:
    from dagster_pipes import open_dagster_pipes

    from train.cli import main as train_main

    output = Path(argv[argv.index("--output") + 1])
    with open_dagster_pipes() as pipes:
        train_main(args=argv, standalone_mode=False)
        for r in _records(output):
            kind = str(r.get("kind", ""))
            if kind.startswith("eval/"):
                pipes.log.info(f"eval {kind.removeprefix('eval/')} step {r['step']}: loss "
                               f"{r['loss']:.4f}, perplexity {r['perplexity']:.2f}")
        pipes.report_asset_materialization(metadata=run_metadata(output))


if __name__ == "__main__":
    main(sys.argv[1:])
