"""Ready-made transforms carry PII redaction and decontamination into labelled sets."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa

from curate.config import StageConfig
from curate.decontaminate import build_index
from curate.labelled.curate_sets import TRANSFORM_STAGES, TransformConfig
from curate.runner import Stage, StageOutput, WorkUnit, plan_shards, run_stage
from schemas import SFT, read_shard

PASSAGE = ("the old mill on the river was rebuilt in the spring after the great flood of "
           "the valley towns")


def _messages(user: str, assistant: str) -> list[dict]:
    return [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]


ROWS = [
    ("clean", _messages("Tell me about bread.", "Bread needs flour, water and time.")),
    ("leaky", _messages(f"Complete this: {PASSAGE.upper()}!", "It was rebuilt.")),
    ("twelve", _messages(" ".join(PASSAGE.split()[:12]) + " and more", "Sure.")),
    ("pii", _messages("Mail me at jane.doe@example.org", "I will write to you.")),
]


def _sft_table(unit: WorkUnit, cfg: StageConfig) -> StageOutput:
    table = pa.table({"id": [r[0] for r in ROWS],
                      "messages": pa.array([r[1] for r in ROWS], SFT.column("messages").type),
                      "source": ["test"] * len(ROWS), "split": [None] * len(ROWS)})
    return StageOutput(table, table.slice(0, 0), table.num_rows)


def _sft_stage(tmp: Path) -> Path:
    seed = tmp / "seed.txt"
    seed.write_text("x")
    out = tmp / "sft"
    stage = Stage("sft_fixture", "1", SFT, _sft_table)
    assert run_stage(stage, [WorkUnit("part-0.arrow", (seed,))], out, StageConfig(),
                     progress=False).ok
    return out


def test_decontaminate_and_redact_labelled_examples(tmp_path: Path) -> None:
    sft = _sft_stage(tmp_path)
    evals = tmp_path / "eval.jsonl"
    evals.write_text(json.dumps({"id": "q1", "question": PASSAGE, "answer": "yes"}) + "\n")
    build_index([evals], tmp_path / "index")
    cfg = TransformConfig(function="curate.labelled.transforms:decontaminate",
                          stage_label="decontam", options={"index": str(tmp_path / "index")})
    out = tmp_path / "decontam"
    report = run_stage(TRANSFORM_STAGES["sft"], plan_shards(sft), out, cfg, progress=False)
    assert report.ok and report.rows_in == 4 and report.rows_rejected == 1
    rejected = read_shard(out / "rejected" / "part-0.arrow")
    assert rejected.column("id").to_pylist() == ["leaky"]
    assert rejected.column("reject_reason").to_pylist() == ["contaminated"]
    pii = tmp_path / "pii"
    cfg = TransformConfig(function="curate.labelled.transforms:redact", stage_label="pii")
    assert run_stage(TRANSFORM_STAGES["sft"], plan_shards(out), pii, cfg, progress=False).ok
    kept = {r["id"]: r["messages"] for r in read_shard(pii / "part-0.arrow").to_pylist()}
    assert kept["pii"][0]["content"] == "Mail me at <EMAIL>"
    assert set(kept) == {"clean", "twelve", "pii"}
