"""Pre-training on CPU with a tiny Llama: it learns, packing is exact, accumulation, resume and
DDP reproduce the plain run, and continued pre-training reports forgetting."""

from __future__ import annotations

import itertools
import json
import math
import os
import random
import shutil
import socket
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from click.testing import CliRunner  # noqa: E402

from curate.demo_text import EN_TOPICS  # noqa: E402
from curate.ingest import INGEST, IngestConfig, plan_ingest  # noqa: E402
from curate.mix import MixConfig, build_mix  # noqa: E402
from curate.runner import run_stage  # noqa: E402
from curate.tokenize import TokenizeConfig, run_tokenize  # noqa: E402
from curate.tokenizer import TokenizerConfig, train_tokenizer  # noqa: E402
from tests.conftest import write_jsonl  # noqa: E402
from train.config import TrainConfig, load_train_config  # noqa: E402
from train.data import PretrainBatches, make_batch, open_rows, row_arrays  # noqa: E402
from train.loop import (  # noqa: E402
    FINAL,
    METRICS,
    accumulate_gradients,
    latest_checkpoint,
    lr_factor,
    token_loss_sum,
    train,
)
from train.models import build_model  # noqa: E402

SEQ = 64


def _sentences(topics) -> list[str]:
    return [s.replace("{", "").replace("}", "") for t in topics for c in t.clusters for s in c]


def _docs(tmp: Path, name: str, topics, n: int, seed: int) -> Path:
    """Short documents of one or two six-word sentences: repetitive enough to learn quickly."""
    rng = random.Random(seed)
    pool = [" ".join(s.split()[:6]) + "." for s in _sentences(topics)[:12]]
    records = [{"id": f"{name}-{i}", "text": " ".join(rng.sample(pool, rng.randint(1, 2))),
                "url": f"https://ex.org/{name}/{i}"} for i in range(n)]
    write_jsonl(tmp / f"raw-{name}" / "part0.jsonl", records)
    docs = tmp / f"docs-{name}"
    assert run_stage(INGEST, plan_ingest(tmp / f"raw-{name}"), docs, IngestConfig(),
                     progress=False).ok
    return docs


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("pretrain")
    general = _docs(tmp, "general", EN_TOPICS[:1], 300, 0)
    domain = _docs(tmp, "domain", EN_TOPICS[1:2], 200, 1)
    tok = tmp / "tokenizer"
    train_tokenizer([general, domain], tok, TokenizerConfig(vocab_size=300))
    out = {}
    for name, docs in (("general", general), ("domain", domain)):
        out[name] = tmp / f"tokens-{name}"
        assert run_tokenize(docs, out[name], TokenizeConfig(tokenizer=str(tok),
                                                            seq_len=SEQ)).ok
    mix = tmp / "mix"
    build_mix(MixConfig(sources=[{"name": "domain", "path": out["domain"], "weight": 0.8},
                                 {"name": "general", "path": out["general"], "weight": 0.2}],
                        window=8)).write(mix)
    out["mix"] = mix
    out["tmp"] = tmp
    return out


def _cfg(**kw) -> TrainConfig:
    base = dict(model="tiny", micro_batch_size=8, max_steps=6, lr=3e-3, warmup_steps=2,
                tensorboard=False, eval_tokens=2048)
    return TrainConfig(**{**base, **kw})


def test_loss_falls_on_a_learnable_corpus(corpus, tmp_path: Path) -> None:
    cfg = _cfg(max_steps=60, eval_rows=8, eval_every=30, eval_at_start=True, tensorboard=True)
    res = train(cfg, corpus["general"], tmp_path / "run")
    first, last = res.losses[0], float(np.mean(res.losses[-5:]))
    assert first > 5.0 and last < first - 2.0, (first, last)
    heldout = res.evals["heldout"]
    assert [e["step"] for e in heldout] == [0, 30, 60]
    assert heldout[-1]["loss"] < heldout[0]["loss"] - 2.0
    assert math.isclose(heldout[-1]["perplexity"], math.exp(heldout[-1]["loss"]))
    records = [json.loads(x) for x in (tmp_path / "run" / METRICS).read_text().splitlines()]
    steps = [r for r in records if r["kind"] == "train"]
    assert len(steps) == 60 and {"loss", "lr", "tokens_per_s", "grad_norm"} <= set(steps[0])
    assert (tmp_path / "run" / FINAL / "config.json").exists()
    assert list((tmp_path / "run" / "tensorboard").iterdir())
    reloaded = build_model(tmp_path / "run" / FINAL)
    assert reloaded.config.vocab_size == 300


def test_packed_rows_give_the_same_loss_as_one_document_per_row(corpus) -> None:
    rows = open_rows(corpus["general"])
    model = build_model("tiny", 300, SEQ, seed=3).eval()
    packed = make_batch([rows.row(i) for i in range(4)], SEQ)
    assert (np.diff(np.flatnonzero(packed.position_ids[0] == 0)) > 0).all()
    with torch.no_grad():
        packed_sum = float(token_loss_sum(model, packed.to_torch(), _null))
    # the same documents, one per row, right-padded with a plain 2D attention mask
    docs = []
    for i in range(4):
        ids, starts = rows.row(i)
        bounds = [*starts.tolist(), len(ids)]
        docs += [ids[a:b] for a, b in itertools.pairwise(bounds) if b > a]
    assert len(docs) > 8
    ids = np.zeros((len(docs), SEQ), dtype=np.int64)
    mask = np.zeros_like(ids)
    targets = np.full_like(ids, -100)
    for k, d in enumerate(docs):
        ids[k, :len(d)], mask[k, :len(d)] = d, 1
        targets[k, :len(d) - 1] = d[1:]
    with torch.no_grad():
        logits = model(input_ids=torch.from_numpy(ids),
                       attention_mask=torch.from_numpy(mask)).logits
    plain_sum = float(torch.nn.functional.cross_entropy(
        logits.flatten(0, 1), torch.from_numpy(targets).flatten(), ignore_index=-100,
        reduction="sum"))
    assert packed.n_targets == int((targets != -100).sum())
    assert abs(packed_sum / packed.n_targets - plain_sum / packed.n_targets) < 1e-5


def test_labels_never_cross_a_document_boundary() -> None:
    ids = np.array([5, 6, 2, 7, 8, 9, 2, 4], dtype=np.uint16)
    _out, pos, tgt = row_arrays(ids, np.array([0, 3, 7]), 10)
    assert pos.tolist() == [0, 1, 2, 0, 1, 2, 3, 0, 1, 2]
    assert tgt.tolist() == [6, 2, -100, 8, 9, 2, -100, -100, -100, -100]


def test_mix_rows_cut_documents_where_the_token_stage_recorded_them(corpus) -> None:
    from train.data import MixRows, StageRows

    mix = MixRows(corpus["mix"])
    stages = {name: StageRows(corpus[name]) for name in ("general", "domain")}
    checked = 0
    for i in range(len(mix)):
        ids, starts = mix.row(i)
        stage = stages[mix.stream.source_of(i)]
        match = [j for j in range(len(stage)) if np.array_equal(stage.row(j)[0], ids)]
        if len(match) == 1:
            assert starts.tolist() == stage.row(match[0])[1].tolist()
            checked += 1
        if checked >= 20:
            break
    assert checked >= 20


def test_batches_are_seeded_disjoint_per_rank_and_resumable(corpus) -> None:
    rows = open_rows(corpus["general"])

    def order(b: PretrainBatches, steps: int) -> list[int]:
        out = []
        for _ in range(steps):
            out += [b.index(q) for q in range(b.position, b.position + b.global_rows)]
            b.next_step()
        return out

    a = order(PretrainBatches(rows, SEQ, 4, 2, seed=7), 30)
    assert a == order(PretrainBatches(rows, SEQ, 4, 2, seed=7), 30)
    assert a != order(PretrainBatches(rows, SEQ, 4, 2, seed=8), 30)
    n = len(rows)
    assert sorted(a[:n]) == list(range(n)) and a[:n] != a[n:2 * n]  # epochs: fresh orders
    b = PretrainBatches(rows, SEQ, 4, 2, seed=7)
    b.next_step()
    c = PretrainBatches(rows, SEQ, 4, 2, seed=7)
    c.load_state_dict(b.state_dict())
    assert order(c, 29) == a[8:]
    with pytest.raises(ValueError, match="another data order"):
        PretrainBatches(rows, SEQ, 4, 2, seed=9).load_state_dict(b.state_dict())
    # two ranks: disjoint halves of the same global batch, same global target count
    r0, t0 = PretrainBatches(rows, SEQ, 2, 2, seed=7, world_size=2, rank=0).next_step()
    r1, t1 = PretrainBatches(rows, SEQ, 2, 2, seed=7, world_size=2, rank=1).next_step()
    full, t = PretrainBatches(rows, SEQ, 8, 1, seed=7).next_step()
    assert t0 == t1 == t == full[0].n_targets
    stacked = np.concatenate([m.input_ids for m in (*r0, *r1)])
    assert np.array_equal(stacked, full[0].input_ids)


def _null():
    import contextlib

    return contextlib.nullcontext()


def _grads(corpus, micro: int, accum: int) -> tuple[float, list]:
    model = build_model("tiny", 300, SEQ, seed=1)
    batches = PretrainBatches(open_rows(corpus["general"]), SEQ, micro, accum, seed=5)
    parts, total = batches.next_step()
    loss = accumulate_gradients(model, parts, total, 1, "cpu") / total
    return loss, [p.grad.clone() for p in model.parameters()]


def test_accumulated_gradients_equal_the_full_batch(corpus, tmp_path: Path) -> None:
    full_loss, full = _grads(corpus, 8, 1)
    for micro, accum in ((4, 2), (1, 8)):
        loss, grads = _grads(corpus, micro, accum)
        assert abs(loss - full_loss) < 1e-6
        for a, b in zip(grads, full, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)
    a = train(_cfg(max_steps=3), corpus["general"], tmp_path / "a").losses
    b = train(_cfg(max_steps=3, micro_batch_size=2, grad_accum=4),
              corpus["general"], tmp_path / "b").losses
    np.testing.assert_allclose(a, b, rtol=1e-5)


def test_activation_checkpointing_changes_nothing_but_memory(corpus, tmp_path: Path) -> None:
    plain = train(_cfg(max_steps=2), corpus["general"], tmp_path / "a").losses
    ckpt = train(_cfg(max_steps=2, activation_checkpointing=True), corpus["general"],
                 tmp_path / "b").losses
    np.testing.assert_allclose(ckpt, plain, rtol=1e-6)


def test_resumed_run_reproduces_the_uninterrupted_run(corpus, tmp_path: Path) -> None:
    cfg = _cfg(max_steps=6, save_every=3, schedule="wsd")
    whole = train(cfg, corpus["general"], tmp_path / "whole").losses
    part1 = train(cfg, corpus["general"], tmp_path / "split", stop_after=3)
    assert part1.steps == 3 and latest_checkpoint(tmp_path / "split").name == "step-00000003"
    part2 = train(cfg, corpus["general"], tmp_path / "split")
    assert part2.resumed_from == 3 and part2.steps == 6
    assert part1.losses + part2.losses == whole


def test_schedules() -> None:
    cfg = _cfg(max_steps=100, warmup_steps=10, min_lr_ratio=0.1)
    assert lr_factor(0, cfg) == pytest.approx(0.1) and lr_factor(9, cfg) == 1.0
    assert lr_factor(99, cfg) == pytest.approx(0.1, abs=1e-3)
    wsd = _cfg(max_steps=100, warmup_steps=10, schedule="wsd", decay_fraction=0.2)
    assert lr_factor(50, wsd) == 1.0 and lr_factor(79, wsd) == 1.0
    assert lr_factor(99, wsd) == pytest.approx(0.1)


def test_continued_pretraining_on_a_mix_reports_forgetting(corpus, tmp_path: Path) -> None:
    from train.cli import main

    base = tmp_path / "base"
    r = CliRunner().invoke(main, ["pretrain", "--data", str(corpus["general"]), "--output",
                                  str(base), "--set", "max_steps=20", "--set", "lr=0.003",
                                  "--set", "tensorboard=false", "--set", "eval_rows=8"])
    assert r.exit_code == 0, r.output
    assert "loss" in r.output
    cpt = tmp_path / "cpt"
    r = CliRunner().invoke(main, ["cpt", "--init", str(base / FINAL), "--data",
                                  str(corpus["mix"]), "--general-eval", str(corpus["general"]),
                                  "--output", str(cpt), "--set", "max_steps=10",
                                  "--set", "warmup_steps=3", "--set", "tensorboard=false",
                                  "--set", "eval_tokens=1024"])
    assert r.exit_code == 0, r.output
    report = json.loads((cpt / "cpt_report.json").read_text())
    general = report["evals"]["general"]
    assert set(general) >= {"loss_before", "loss_after", "delta"}
    assert general["loss_before"] < 4.0  # the base model learnt the general corpus
    assert "forgetting" in r.output


def test_interrupted_cpt_keeps_its_before_and_after(corpus, tmp_path: Path) -> None:
    from train.loop import forgetting_report, read_metrics

    base = train(_cfg(max_steps=4), corpus["general"], tmp_path / "base")
    cfg = _cfg(max_steps=6, save_every=2, eval_at_start=True, eval_every=4, warmup_steps=2)
    evals = {"general": corpus["general"]}
    kw = dict(init=base.output / FINAL, eval_data=evals)
    train(cfg, corpus["mix"], tmp_path / "cpt", stop_after=5, **kw)
    # a crash after step 5 but before its checkpoint: the newest checkpoint is step 4
    shutil.rmtree(latest_checkpoint(tmp_path / "cpt"))
    resumed = train(cfg, corpus["mix"], tmp_path / "cpt", **kw)
    assert resumed.resumed_from == 4
    steps = [r["step"] for r in read_metrics(tmp_path / "cpt") if r["kind"] == "train"]
    assert steps == [1, 2, 3, 4, 5, 6]
    general = forgetting_report(tmp_path / "cpt")["evals"]["general"]
    assert general["step_after"] == 6 and general["loss_before"] != general["loss_after"]


def test_config_overrides(tmp_path: Path) -> None:
    recipe = tmp_path / "r.yaml"
    recipe.write_text("train:\n  model: 125m\n  lr: 1.0e-3\n")
    cfg = load_train_config(recipe, ("max_steps=70", "schedule=wsd"))
    assert (cfg.model, cfg.lr, cfg.max_steps, cfg.schedule) == ("125m", 1e-3, 70, "wsd")


def test_clear_errors(corpus, tmp_path: Path) -> None:
    from train.cli import main

    with pytest.raises(ValueError, match="bf16 needs a CUDA device"):
        train(_cfg(precision="bf16"), corpus["general"], tmp_path / "bf16")
    with pytest.raises(FileNotFoundError, match="neither a token stage"):
        open_rows(tmp_path)
    r = CliRunner().invoke(main, ["pretrain", "--data", str(corpus["general"]), "--output",
                                  str(tmp_path / "x"), "--set", "schedule=linear"])
    assert r.exit_code == 2 and "invalid training config" in r.output
    with pytest.raises(ValueError, match="unknown model preset"):
        build_model("7b", 300)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, world: int, port: int, data: str, out: str) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    res = train(_cfg(max_steps=3, micro_batch_size=4), Path(data), Path(out))
    if rank == 0:
        (Path(out) / "losses.json").write_text(json.dumps(res.losses))
    torch.distributed.destroy_process_group()


def test_ddp_two_cpu_processes_match_one(corpus, tmp_path: Path) -> None:
    import torch.multiprocessing as mp

    single = train(_cfg(max_steps=3), corpus["general"], tmp_path / "single").losses
    out = tmp_path / "ddp"
    mp.spawn(_ddp_worker, args=(2, _free_port(), str(corpus["general"]), str(out)), nprocs=2)
    ddp = json.loads((out / "losses.json").read_text())
    np.testing.assert_allclose(ddp, single, rtol=1e-5)
    state = torch.load(latest_checkpoint(out) / "training_state.pt", weights_only=False)
    assert state["world"] == 2 and len(state["rng"]) == 2
