"""Optional Dagster Pipes reporting for a training run launched by a Dagster asset.

When the asset starts ``python -m train ...`` through ``PipesSubprocessClient`` it sets
``DAGSTER_PIPES_CONTEXT``; this module then opens the Pipes channel, logs every evaluation to
the run's event log and reports the materialization's metadata (final loss, held-out loss and
perplexity, tokens/s). Anywhere else (a shell, a cluster job) it does nothing, and
``dagster_pipes`` (a small dependency-free package) need not be installed.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

PIPES_ENV = "DAGSTER_PIPES_CONTEXT"


@contextlib.contextmanager
def pipes_session() -> Iterator[Any | None]:
    """The open Pipes context under Dagster (rank 0 only), else ``None``."""
    if PIPES_ENV not in os.environ or os.environ.get("RANK", "0") != "0":
        yield None
        return
    try:
        from dagster_pipes import open_dagster_pipes
    except ImportError:
        yield None
        return
    with open_dagster_pipes() as pipes:
        yield pipes


def run_metadata(result: Any, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Flat, JSON-safe figures of a :class:`train.loop.TrainResult` for the asset's metadata."""
    meta: dict[str, Any] = {"steps": int(result.steps), "parameters": int(result.parameters),
                            "tokens_per_s": float(result.tokens_per_s),
                            "output": str(result.output)}
    if result.losses:
        meta["final_loss"] = float(result.losses[-1])
        meta["first_loss"] = float(result.losses[0])
    for name, recs in result.evals.items():
        meta[f"{name}_loss"] = float(recs[-1]["loss"])
        meta[f"{name}_perplexity"] = float(recs[-1]["perplexity"])
    meta.update(extra or {})
    return meta


def report(pipes: Any | None, result: Any, extra: dict[str, Any] | None = None) -> None:
    """Log each evaluation, then report the materialization (no-op without Pipes)."""
    if pipes is None:
        return
    for name, recs in result.evals.items():
        for r in recs:
            pipes.log.info(f"eval {name} step {r['step']}: loss {r['loss']:.4f}, "
                           f"perplexity {r['perplexity']:.2f}")
    pipes.report_asset_materialization(metadata=run_metadata(result, extra))
