"""The training assets: a base model pre-trained through Dagster Pipes on a small web token
stage, then continued pre-training on a domain mix with the forgetting monitor."""

from __future__ import annotations

import base64
import json
import random
from pathlib import Path

import dagster as dg
import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from curate.demo_text import EN_TOPICS
from curate.ingest import INGEST, IngestConfig, plan_ingest
from curate.runner import run_stage
from curate.tokenize import TokenizeConfig, run_tokenize
from curate.tokenizer import TokenizerConfig, train_tokenizer
from dagster_project.assets.training import (
    TRAINING_ASSETS,
    no_forgetting,
)
from dagster_project.resources import DataRoot
from tests.conftest import write_jsonl

PNG = b"\x89PNG\r\n\x1a\n"


def _docs(raw: Path, out: Path, topics, n: int, seed: int) -> Path:
    rng = random.Random(seed)
    sentences = [s.replace("{", "").replace("}", "") for t in topics for c in t.clusters
                 for s in c]
    pool = [" ".join(s.split()[:6]) + "." for s in sentences[:12]]
    write_jsonl(raw / "part0.jsonl", [
        {"id": f"{out.name}-{i}", "text": " ".join(rng.sample(pool, rng.randint(1, 2))),
         "url": f"https://ex.org/{seed}/{i}"} for i in range(n)])
    assert run_stage(INGEST, plan_ingest(raw), out, IngestConfig(), progress=False).ok
    return out


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("training")
    root = tmp / "data"
    general = _docs(tmp / "raw-general", tmp / "general", EN_TOPICS[:1], 300, 0)
    domain = _docs(tmp / "raw-domain", root / "web" / "ingest", EN_TOPICS[1:2], 200, 1)
    train_tokenizer([general, domain], root / "tokenizer", TokenizerConfig(vocab_size=300))
    assert run_tokenize(general, root / "web" / "tokens",
                        TokenizeConfig(tokenizer=str(root / "tokenizer"), seq_len=64)).ok
    small = {"overrides": ["eval_tokens=2048"]}
    run_config = {"ops": {"base_model": {"config": {"max_steps": 30, **small}},
                          "domain_model": {"config": {"max_steps": 10, **small}}}}
    with dg.instance_for_test() as instance:
        result = dg.materialize(
            TRAINING_ASSETS, selection=["base_model", "domain_model"], instance=instance,
            run_config=run_config,
            resources={"data": DataRoot(root=str(root))},
            raise_on_error=False)
        yield root, result, instance


def _meta(result, node: str) -> dict:
    (mat,) = result.asset_materializations_for_node(node)
    return mat.metadata


def _png(value) -> bytes:
    text = value.value
    return base64.b64decode(text.split("base64,", 1)[1].rstrip(")"))


def test_base_and_domain_models_materialize(trained):
    root, result, instance = trained
    failures = [str(e.event_specific_data.error.message) for e in result.all_events
                if e.is_step_failure]
    assert result.success, failures
    base = _meta(result, "base_model")
    # reported by the training process through Pipes
    assert base["steps"].value == 30 and base["tokens_per_s"].value > 0
    assert base["final_loss"].value < base["first_loss"].value
    assert base["heldout_perplexity"].value > 1
    assert _png(base["loss_curve"]).startswith(PNG)
    assert (root / "models" / "base" / "model" / "config.json").exists()
    logs = [e.user_message for e in instance.all_logs(result.run_id)]
    assert any("eval heldout step 30: loss" in m for m in logs)  # streamed through Pipes

    domain = _meta(result, "domain_model")
    assert domain["steps"].value == 10
    assert {"general_loss", "domain_loss", "general_loss_delta", "domain_loss_delta"} <= set(
        domain)
    assert _png(domain["loss_curve"]).startswith(PNG)
    report = json.loads((root / "models" / "domain" / "cpt_report.json").read_text())
    assert report["evals"]["domain"]["delta"] < 0  # it learned the domain
    (check,) = result.get_asset_check_evaluations()
    assert check.check_name == "no_forgetting" and check.passed, check.metadata
    assert "domain_loss_gain" in check.metadata


def test_no_forgetting_fails_past_the_tolerance():
    report = {"evals": {"general": {"loss_before": 4.0, "loss_after": 4.4, "delta": 0.4},
                        "domain": {"loss_before": 6.0, "loss_after": 3.0, "delta": -3.0}}}
    failed = no_forgetting(report, tolerance=0.05)
    assert not failed.passed
    assert failed.metadata["general_relative_rise"].value == pytest.approx(0.1)
    assert failed.metadata["domain_loss_gain"].value == pytest.approx(3.0)
    assert no_forgetting(report, tolerance=0.2).passed
    assert not no_forgetting({"evals": {}}, tolerance=1.0).passed
