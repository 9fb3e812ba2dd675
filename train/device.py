"""Where the fine-tuning and preference trainers run: the GPU when there is one, in bf16
autocast there (fp32 master weights, as the pre-training loop), and fp32 on the CPU."""

from __future__ import annotations

import contextlib
from typing import Any


def training_device() -> Any:
    """``cuda`` (the first GPU) when available, else the CPU."""
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def model_device(model: Any) -> Any:
    """The device a model's weights are on (so batches follow the model)."""
    return next(model.parameters()).device


def autocast(device: Any) -> contextlib.AbstractContextManager:
    """bf16 autocast on a GPU, nothing on the CPU."""
    import torch

    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def adamw(params: Any, device: Any, **kwargs: Any) -> Any:
    """AdamW, fused on a GPU."""
    import torch

    return torch.optim.AdamW(params, fused=device.type == "cuda", **kwargs)
