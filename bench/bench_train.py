"""Pre-training throughput: ``train pretrain``'s loop vs the Hugging Face ``Trainer`` on the
same model, the same packed rows, the same batch and optimiser.

The baseline is what a user would write instead: ``transformers.Trainer`` over a dataset of
the token rows (``input_ids`` = ``labels``, the default collator, AdamW with a cosine
schedule). Both run the same ``LlamaForCausalLM`` built from our preset; ours also resets
positions per packed document, which the baseline does not (it lets documents attend to each
other, so it does a little less masking work).

Reported per run: the median step time after two warm-up steps (as tokens/s), and for ours
the share of the step spent waiting for the data loader and, on a GPU, the MFU. On the CPU
(``make bench``) a tiny preset keeps it to seconds and shows regressions; on a GPU run
``python -m bench.bench_train --preset 350m --seq-len 2048 --micro-batch 8 --steps 40``
(and ``--task sft`` for fine-tuning tokens/s, full and LoRA).
The rows are synthetic (random ids, four documents per row): throughput does not depend on
what the tokens say.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from bench.harness import Comparison, machine
from curate.config import StageConfig
from curate.runner import Stage, StageOutput, WorkUnit, run_stage
from curate.tokenize import META_NAME
from schemas import PRETRAIN_TOKENS, SFT_TOKENS

WARMUP_STEPS = 2


class SyntheticRows(StageConfig):
    """Random packed rows: ``rows`` of ``seq_len`` ids below ``vocab``."""

    rows: int
    seq_len: int
    vocab: int
    docs_per_row: int = 4
    seed: int = 0


def _rows_unit(unit: WorkUnit, cfg: SyntheticRows) -> StageOutput:
    rng = np.random.default_rng(cfg.seed)
    ids = rng.integers(1, cfg.vocab, size=(cfg.rows, cfg.seq_len), dtype=np.int32)
    step = cfg.seq_len // cfg.docs_per_row
    starts = [list(range(0, cfg.seq_len, step))[:cfg.docs_per_row]] * cfg.rows
    table = pa.table({
        "input_ids": pa.array(list(ids), pa.list_(pa.int32())),
        "segment_starts": pa.array(starts, pa.list_(pa.int32())),
        "segment_doc_ids": pa.array([[f"r{r}d{d}" for d in range(len(starts[0]))]
                                     for r in range(cfg.rows)], pa.list_(pa.string())),
    })
    return StageOutput(kept=table, rejected=pa.table({"id": pa.array([], pa.string())}),
                       rows_in=cfg.rows)


SYNTHETIC = Stage(name="bench_rows", version="1", output_kind=PRETRAIN_TOKENS,
                  process=_rows_unit)


def _sft_unit(unit: WorkUnit, cfg: SyntheticRows) -> StageOutput:
    """Conversations of ``seq_len`` tokens: the first half prompt, the second the reply."""
    rng = np.random.default_rng(cfg.seed)
    ids = rng.integers(1, cfg.vocab, size=(cfg.rows, cfg.seq_len), dtype=np.int32)
    mask = np.zeros((cfg.rows, cfg.seq_len), np.uint8)
    mask[:, cfg.seq_len // 2:] = 1
    table = pa.table({"id": [f"c{r}" for r in range(cfg.rows)],
                      "input_ids": pa.array(list(ids), pa.list_(pa.int32())),
                      "loss_mask": pa.array(list(mask), pa.list_(pa.uint8())),
                      "split": ["train"] * cfg.rows})
    return StageOutput(kept=table, rejected=pa.table({"id": pa.array([], pa.string())}),
                       rows_in=cfg.rows)


SYNTHETIC_SFT = Stage(name="bench_sft_rows", version="1", output_kind=SFT_TOKENS,
                      process=_sft_unit)


def synthetic_tokens(out: Path, rows: int, seq_len: int, vocab: int,
                     stage: Stage = SYNTHETIC) -> Path:
    """A token stage folder of random rows that ``train pretrain`` reads as it reads ours."""
    out.mkdir(parents=True, exist_ok=True)
    meta = {"vocab_size": vocab, "eos_id": 0, "bos_id": None, "pad_id": 0,
            "token_dtype": "int32", "seq_len": seq_len, "add_bos": False}
    (out / META_NAME).write_text(json.dumps(meta))
    report = run_stage(stage, [WorkUnit("part-00000.arrow", ())], out,
                       SyntheticRows(rows=rows, seq_len=seq_len, vocab=vocab))
    if not report.ok:
        raise RuntimeError(f"writing synthetic rows failed: {report.failures}")
    return out


def ours(data: Path, output: Path, preset: str, micro_batch: int, steps: int,
         compile_model: bool) -> dict[str, float]:
    """Median step seconds, data-wait share and MFU of ``train pretrain``'s loop."""
    from train.config import TrainConfig
    from train.loop import read_metrics, train

    cfg = TrainConfig(model=preset, micro_batch_size=micro_batch, max_steps=steps,
                      warmup_steps=1, tensorboard=False, compile=compile_model)
    train(cfg, data, output, resume=False)
    recs = [r for r in read_metrics(output) if r.get("kind") == "train"][WARMUP_STEPS:]
    step_s = statistics.median(r["tokens"] / r["tokens_per_s"] for r in recs)
    out = {"step_s": step_s, "data_wait": statistics.median(r["data_wait"] for r in recs)}
    if all("mfu" in r for r in recs):
        out["mfu"] = statistics.median(r["mfu"] for r in recs)
    return out


def sft_throughput(preset: str, seq_len: int, micro_batch: int, steps: int, vocab: int,
                   lora: bool) -> dict[str, float]:
    """``train sft`` tokens/s (median step after warm-up), full-parameter or LoRA."""
    from train.loop import read_metrics
    from train.sft import SftConfig, train_sft

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        data = synthetic_tokens(root / "sft", max(micro_batch * steps, 64), seq_len, vocab,
                                SYNTHETIC_SFT)
        cfg = SftConfig(model=preset, micro_batch_size=micro_batch, max_steps=steps,
                        eval_at_start=False, generations=0, tensorboard=False, lora=lora,
                        merge=False)
        result = train_sft(cfg, data, root / "out", resume=False)
        recs = [r for r in read_metrics(root / "out") if "tokens_per_s" in r][WARMUP_STEPS:]
        return {"tokens_per_s": statistics.median(r["tokens_per_s"] for r in recs),
                "trainable_parameters": float(result.trainable_parameters)}


def hf_trainer(data: Path, output: Path, preset: str, micro_batch: int, steps: int,
               compile_model: bool) -> dict[str, float]:
    """Median step seconds of ``transformers.Trainer`` on the same rows and model."""
    import torch
    from transformers import Trainer, TrainerCallback, TrainingArguments

    from train.data import open_rows
    from train.models import build_model

    rows = open_rows(data)
    seq_len, vocab = rows.meta["seq_len"], rows.meta["vocab_size"]

    class Rows(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return len(rows)

        def __getitem__(self, i: int) -> dict[str, Any]:
            ids = torch.from_numpy(rows.row(i)[0].astype(np.int64))
            return {"input_ids": ids, "labels": ids}

    stamps: list[float] = []

    class Clock(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            stamps.append(time.perf_counter())

    cuda = torch.cuda.is_available()
    args = TrainingArguments(
        output_dir=str(output), per_device_train_batch_size=micro_batch, max_steps=steps,
        learning_rate=3e-4, warmup_steps=1, lr_scheduler_type="cosine", weight_decay=0.1,
        adam_beta2=0.95, max_grad_norm=1.0, bf16=cuda, use_cpu=not cuda,
        logging_steps=10 ** 6, save_strategy="no", report_to=[], dataloader_num_workers=0,
        torch_compile=compile_model, optim="adamw_torch_fused" if cuda else "adamw_torch",
        disable_tqdm=True)
    model = build_model(preset, vocab, seq_len, "sdpa", seed=0)
    Trainer(model=model, args=args, train_dataset=Rows(), callbacks=[Clock()]).train()
    return {"step_s": statistics.median(np.diff(stamps)[WARMUP_STEPS - 1:])}


def measure(preset: str, seq_len: int, micro_batch: int, steps: int, vocab: int,
            repeats: int = 1, compile_model: bool = False) -> tuple[Comparison, dict[str, float]]:
    """One comparison row plus our data-wait share and MFU (medians over ``repeats``)."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        data = synthetic_tokens(root / "tokens", max(micro_batch * steps, 64), seq_len, vocab)
        runs_ours, runs_base = [], []
        for r in range(repeats):
            runs_ours.append(ours(data, root / f"ours-{r}", preset, micro_batch, steps,
                                  compile_model))
            runs_base.append(hf_trainer(data, root / f"hf-{r}", preset, micro_batch, steps,
                                        compile_model))
    extra = {k: statistics.median(r[k] for r in runs_ours) for k in runs_ours[0]}
    base_s = statistics.median(r["step_s"] for r in runs_base)
    tokens = micro_batch * seq_len
    device = "bf16 on the GPU" if _cuda() else "fp32 on the CPU"
    work = (f"`{preset}` Llama, {micro_batch} x {seq_len} tokens per step, {steps} steps, "
            f"{device}; ours: {tokens / extra['step_s']:,.0f} tokens/s, data wait "
            f"{extra['data_wait']:.1%}" + (f", MFU {extra['mfu']:.1%}" if "mfu" in extra else ""))
    comp = Comparison("train", work, "train pretrain loop (packed, per-document positions)",
                      "transformers Trainer, same model and rows", extra["step_s"], base_s,
                      repeats)
    return comp, extra


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def run(scale: float = 1.0, repeats: int = 3) -> list[Comparison]:
    """``make bench``: the tiny preset on the CPU (regressions show as a change of ratio)."""
    steps = max(8, int(20 * scale))
    comp, _ = measure("tiny", 256, 8, steps, 2048, repeats)
    return [comp]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--micro-batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--vocab", type=int, default=32000)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--task", choices=["pretrain", "sft"], default="pretrain",
                        help="sft: `train sft` tokens/s, full and LoRA (no baseline).")
    args = parser.parse_args()
    if args.task == "sft":
        for lora in (False, True):
            figures = sft_throughput(args.preset, args.seq_len, args.micro_batch, args.steps,
                                     args.vocab, lora)
            print(json.dumps({"machine": machine(), "task": "sft", "preset": args.preset,
                              "lora": lora, "seq_len": args.seq_len,
                              "micro_batch": args.micro_batch, **figures}))
        return
    comp, extra = measure(args.preset, args.seq_len, args.micro_batch, args.steps, args.vocab,
                          args.repeats, args.compile)
    from bench.harness import TABLE_HEADER

    print(TABLE_HEADER)
    print(comp.row())
    print(json.dumps({"machine": machine(), **extra,
                      "tokens_per_s": args.micro_batch * args.seq_len / extra["step_s"]}))


if __name__ == "__main__":
    main()
