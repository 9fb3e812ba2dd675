"""Run a ``train`` command under Dagster Pipes, streaming its metrics, and report what it wrote.

``python -m dagster_project.train_pipes pretrain --data ... --output DIR`` is what the training
assets launch through ``PipesSubprocessClient``: it opens the Pipes channel, runs the command
in this process (the same click command a shell would run) while a thread tails the run's
``metrics.jsonl`` and logs every ``STREAM_EVERY``-th training step and every evaluation to the
run's event log as it is written (so the UI shows the loss during training), then reports the
materialization's figures, read from ``metrics.jsonl`` (and ``cpt_report.json`` for continued
pre-training). ``train`` itself never imports Dagster code.

``--stream-every N`` (before the train command) changes how many training steps a log line
covers; ``0`` logs evaluations only.
"""

from __future__ import annotations

import json
import logging
import statistics
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

STREAM_EVERY = 5
POLL_S = 0.25
METRICS = "metrics.jsonl"
FRESH_ONLY = ("reward", "dpo", "rl")
"""Commands that always start over (no checkpoints to resume)."""


def _records(output: Path) -> list[dict[str, Any]]:
    path = output / METRICS
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def _number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def run_metadata(output: Path) -> dict[str, Any]:
    """Flat, JSON-safe figures of a finished run, from the files it wrote: the train steps and
    losses, and every evaluation set's last numbers as ``<set>_<name>``."""
    records = _records(output)
    train = [r for r in records if r.get("kind") == "train"]
    meta: dict[str, Any] = {"output": str(output)}
    if train:
        meta.update(steps=int(train[-1]["step"]), first_loss=float(train[0]["loss"]),
                    final_loss=float(train[-1]["loss"]))
        speeds = [r["tokens_per_s"] for r in train if _number(r.get("tokens_per_s"))]
        if speeds:
            meta["tokens_per_s"] = float(statistics.median(speeds))
    for r in records:
        kind = str(r.get("kind", ""))
        if kind.startswith("eval/"):
            name = kind.removeprefix("eval/")
            meta.update({f"{name}_{k}": float(v) for k, v in r.items()
                         if k not in ("step", "epoch") and _number(v)})
    report = output / "cpt_report.json"
    if report.exists():
        for name, r in json.loads(report.read_text()).get("evals", {}).items():
            meta[f"{name}_loss_delta"] = float(r["delta"])
    return meta


def format_record(rec: dict[str, Any]) -> str:
    """One log line: ``train step 10: loss 6.1234, lr 0.003, ...`` (numbers only)."""
    kind = str(rec.get("kind", "train")).replace("eval/", "eval ")
    figures = ", ".join(f"{k} {v:.4g}" for k, v in rec.items()
                        if k not in ("kind", "step") and _number(v))
    return f"{kind} step {rec.get('step', '?')}: {figures}"


class MetricsTail:
    """Follow ``metrics.jsonl`` from a thread; hand each new record worth logging to ``emit``:
    every evaluation, every ``every``-th training step and, at the end, the last step.

    Starts at the file's current end (a resumed run's earlier records are history, not news);
    a file that shrank was rewritten, so reading starts over at its beginning. (``main``
    removes the log of a run that starts over, so a rewrite never races the first records.)
    """

    def __init__(self, path: Path, emit: Callable[[str], None], every: int = STREAM_EVERY,
                 poll_s: float = POLL_S):
        self.path, self.emit, self.every, self.poll_s = path, emit, every, poll_s
        self.offset = path.stat().st_size if path.exists() else 0
        self.emitted = 0
        self._skipped: dict[str, Any] | None = None  # the latest train record not logged
        self._stop = threading.Event()
        self._lock = threading.Lock()  # the thread and the final poll never read at once
        self._thread = threading.Thread(target=self._run, name="metrics-tail", daemon=True)

    def __enter__(self) -> MetricsTail:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.poll()  # whatever the last moments wrote
        if self._skipped is not None:  # the final step, whatever N is
            self._emit(self._skipped)

    def _run(self) -> None:
        while not self._stop.wait(self.poll_s):
            self.poll()

    def _worth(self, rec: dict[str, Any]) -> bool:
        if str(rec.get("kind", "train")) != "train":
            return True  # evaluations are rare and always wanted
        step = rec.get("step")
        return bool(self.every) and isinstance(step, int) and step % self.every == 0

    def poll(self) -> None:
        """Read the complete lines appended since the last poll."""
        with self._lock:
            for line in self._new_lines():
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if not isinstance(rec, dict):
                    continue
                if self._worth(rec):
                    self._emit(rec)
                elif rec.get("kind", "train") == "train":
                    self._skipped = rec

    def _emit(self, rec: dict[str, Any]) -> None:
        self.emit(format_record(rec))
        self.emitted += 1
        self._skipped = None

    def _new_lines(self) -> list[bytes]:
        if not self.path.exists():
            return []
        if self.path.stat().st_size < self.offset:
            self.offset = 0
        with self.path.open("rb") as f:
            f.seek(self.offset)
            chunk = f.read()
        end = chunk.rfind(b"\n") + 1  # a line still being written waits for the next poll
        self.offset += end
        return chunk[:end].splitlines()



def _stream_every(argv: list[str]) -> tuple[int, list[str]]:
    if argv[:1] == ["--stream-every"]:
        return int(argv[1]), argv[2:]
    return STREAM_EVERY, argv


def main(argv: list[str]) -> None:
    from dagster_pipes import open_dagster_pipes

    from train.cli import main as train_main

    every, argv = _stream_every(argv)
    output = Path(argv[argv.index("--output") + 1])
    if "--no-resume" in argv or argv[0] in FRESH_ONLY:  # the old log is not this run's
        (output / METRICS).unlink(missing_ok=True)
    with open_dagster_pipes() as pipes:
        log: logging.Logger = pipes.log
        with MetricsTail(output / METRICS, log.info, every):
            train_main(args=argv, standalone_mode=False)
        pipes.report_asset_materialization(metadata=run_metadata(output))


if __name__ == "__main__":
    main(sys.argv[1:])
