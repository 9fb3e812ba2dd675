"""What every training asset shares: launching ``train`` under Pipes and reading its run folder.

An asset builds a ``train`` command line, :func:`launch` runs it as
``python -m dagster_project.train_pipes <command>`` through ``PipesSubprocessClient`` (the
wrapper streams the metrics into the run's log while it trains and reports the final
figures), and the asset adds what it draws from the run folder (:func:`loss_curve`).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import dagster as dg

from dagster_project.plots import line_png, md_image
from dagster_project.resources import PROJECT_ROOT

GROUP = "training"
POOL = "gpu"
TRAIN_UNDER_PIPES = "dagster_project.train_pipes"


def read_metrics(output: Path) -> list[dict[str, Any]]:
    path = Path(output) / "metrics.jsonl"
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def loss_curve(output: Path, title: str, field: str = "loss") -> dg.MetadataValue:
    """``field`` per step of the training records and of every eval set that has it, as a
    markdown PNG."""
    series: dict[str, tuple[list[float], list[float]]] = {}
    for rec in read_metrics(output):
        if not isinstance(rec.get(field), int | float):
            continue
        label = str(rec.get("kind", "train"))
        xs, ys = series.setdefault(label, ([], []))
        xs.append(rec["step"])
        ys.append(rec[field])
    png = line_png(series, title=title, xlabel="step", ylabel=field)
    return md_image(png, title)


def set_args(cfg: dg.Config, keys: tuple[str, ...], *extra: str) -> list[str]:
    """``--set key=value`` for each of ``keys``, then ``extra`` items, ``tensorboard=false``
    (metrics.jsonl feeds the UI) and last the config's free ``overrides`` (so they win)."""
    items = [f"{k}={getattr(cfg, k)}" for k in keys] + [*extra, "tensorboard=false"]
    items += list(getattr(cfg, "overrides", []))
    return [a for item in items for a in ("--set", item)]


def train_command(*args: str) -> list[str]:
    """``python -m dagster_project.train_pipes <args>``: a ``train`` command under Pipes."""
    return [sys.executable, "-m", TRAIN_UNDER_PIPES, *args]


def launch(context: dg.AssetExecutionContext, command: list[str]) -> dict[str, Any]:
    """Run the trainer under Pipes; its reported metadata (empty if it reported none)."""
    context.log.info(" ".join(command))
    # a client per launch: no resource to wire, so any asset selection can include training
    invocation = dg.PipesSubprocessClient().run(command=command, context=context,
                                               cwd=str(PROJECT_ROOT))
    reported = invocation.get_materialize_result()
    return dict(reported.metadata or {})


def require_dir(path: Path, what: str) -> Path:
    """``path`` if it is a folder, else the step fails saying what to materialize."""
    if not path.is_dir():
        raise dg.Failure(f"{path} is missing: materialize {what} first")
    return path


def read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise dg.Failure(f"{path} is missing: the trainer did not finish its report")
    return json.loads(path.read_text())
