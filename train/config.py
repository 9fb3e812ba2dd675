"""Pre-training recipes: one pydantic model, read from YAML with ``--set key=value`` overrides.

Kept free of the curation package so a training box installs ``schemas`` + ``train`` only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator


class TrainConfigError(ValueError):
    """A recipe or override that doesn't make a valid training config."""


class TrainConfig(BaseModel):
    """Everything that decides a pre-training run (data paths and output come from the CLI)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str = "tiny"
    """A preset (tiny, 125m, 350m, 1b) or a local checkpoint folder."""
    seq_len: int | None = Field(None, ge=2)
    """Row length; None: the token stage's ``seq_len``."""
    micro_batch_size: int = Field(8, gt=0)
    grad_accum: int = Field(1, gt=0)
    """Micro-batches per optimiser step on each rank (global batch = micro * accum * world)."""
    max_steps: int = Field(100, gt=0)
    lr: float = Field(3e-4, gt=0)
    min_lr_ratio: float = Field(0.1, ge=0, le=1)
    warmup_steps: int = Field(10, ge=0)
    """Linear warmup; for continued pre-training this is the LR re-warm."""
    schedule: Literal["cosine", "wsd", "constant"] = "cosine"
    decay_fraction: float = Field(0.2, gt=0, le=1)
    """WSD: the share of steps spent in the final (linear) decay."""
    weight_decay: float = Field(0.1, ge=0)
    beta1: float = 0.9
    beta2: float = 0.95
    eps: float = 1e-8
    grad_clip: float = Field(1.0, ge=0)
    """Max global gradient norm; 0 turns clipping off."""
    seed: int = 0
    shuffle: bool = True
    """Permute a token stage's rows per epoch (a mix is always read in stream order)."""
    eval_rows: int = Field(0, ge=0)
    """Without --eval-data: hold out this many last rows of the training data."""
    eval_tokens: int = Field(65536, gt=0)
    """Fixed budget of held-out tokens per evaluation, the same rows every time."""
    eval_every: int = Field(0, ge=0)
    eval_at_start: bool = False
    save_every: int = Field(0, ge=0)
    """Checkpoint every N steps (0: only at the end)."""
    keep_checkpoints: int = Field(2, gt=0)
    log_every: int = Field(1, gt=0)
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    """auto: bf16 autocast on CUDA, fp32 on CPU."""
    compile: bool = False
    activation_checkpointing: bool = False
    attn_implementation: Literal["sdpa", "eager", "flash_attention_2"] = "sdpa"
    """All three read packed documents from ``position_ids`` (flash_attention_2 needs the
    flash-attn package and a GPU)."""
    peak_tflops: float | None = Field(None, gt=0)
    """Peak dense TFLOP/s of one device for the MFU estimate (None: guessed for known GPUs)."""
    tensorboard: bool = True

    @model_validator(mode="after")
    def _warmup_fits(self) -> TrainConfig:
        if self.warmup_steps > self.max_steps:
            raise ValueError(f"warmup_steps {self.warmup_steps} > max_steps {self.max_steps}")
        return self


def parse_override(item: str) -> tuple[str, Any]:
    """``key=value`` with a YAML value (numbers, booleans, lists parse as such)."""
    key, sep, value = item.partition("=")
    if not sep or not key.strip():
        raise TrainConfigError(f"override {item!r} is not key=value")
    return key.strip(), yaml.safe_load(value) if value.strip() else None


def load_train_config(recipe: Path | None = None, overrides: tuple[str, ...] = (),
                      section: str | None = "train") -> TrainConfig:
    """A recipe file (optionally its ``train:`` section) plus overrides, validated."""
    data: dict[str, Any] = {}
    if recipe is not None:
        loaded = yaml.safe_load(Path(recipe).read_text()) or {}
        if not isinstance(loaded, dict):
            raise TrainConfigError(f"{recipe}: a recipe must be a mapping of settings")
        if section is not None and isinstance(loaded.get(section), dict):
            loaded = loaded[section]
        data.update(loaded)
    for item in overrides:
        key, value = parse_override(item)
        data[key] = value
    try:
        return TrainConfig.model_validate(data)
    except ValidationError as exc:
        raise TrainConfigError(f"invalid training config:\n{exc}") from None
