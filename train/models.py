"""Llama-style causal language models: named size presets, or any local HF checkpoint folder.

Models are built from a ``transformers.LlamaConfig`` (random init, nothing downloaded) or
loaded from a folder written by ``save_pretrained`` (a checkpoint of this trainer or any
local Llama-compatible model). The vocabulary comes from the token stage, so a preset always
matches the tokenizer the data was made with.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

PRESETS: dict[str, dict[str, Any]] = {
    # CPU tests: a few hundred thousand parameters
    "tiny": dict(hidden_size=64, intermediate_size=176, num_hidden_layers=2,
                 num_attention_heads=4, num_key_value_heads=4),
    "125m": dict(hidden_size=768, intermediate_size=2048, num_hidden_layers=12,
                 num_attention_heads=12, num_key_value_heads=12),
    "350m": dict(hidden_size=1024, intermediate_size=2816, num_hidden_layers=24,
                 num_attention_heads=16, num_key_value_heads=16),
    "1b": dict(hidden_size=2048, intermediate_size=5632, num_hidden_layers=22,
               num_attention_heads=32, num_key_value_heads=4),
}


def model_config(preset: str, vocab_size: int, max_positions: int,
                 attn_implementation: str = "sdpa", **overrides: Any) -> Any:
    """The ``LlamaConfig`` of a preset, sized to the tokenizer and the training context."""
    from transformers import LlamaConfig

    if preset not in PRESETS:
        raise ValueError(f"unknown model preset {preset!r}: use one of {sorted(PRESETS)} "
                         f"or the path of a local checkpoint folder")
    cfg = LlamaConfig(vocab_size=vocab_size, max_position_embeddings=max_positions,
                      rope_theta=10000.0, tie_word_embeddings=preset == "tiny",
                      use_cache=False, **{**PRESETS[preset], **overrides})
    cfg._attn_implementation = attn_implementation
    return cfg


def is_checkpoint(name: str | Path) -> bool:
    return (Path(name) / "config.json").is_file()


def build_model(name: str | Path, vocab_size: int | None = None, max_positions: int = 2048,
                attn_implementation: str = "sdpa", seed: int = 0) -> Any:
    """A preset built from scratch (seeded init) or a local checkpoint folder, in float32."""
    import torch
    from transformers import AutoModelForCausalLM, LlamaForCausalLM

    if is_checkpoint(name):
        model = AutoModelForCausalLM.from_pretrained(
            str(name), local_files_only=True, torch_dtype=torch.float32,
            attn_implementation=attn_implementation)
        if vocab_size is not None and model.config.vocab_size < vocab_size:
            raise ValueError(f"checkpoint {name} has {model.config.vocab_size} token "
                             f"embeddings but the data uses ids up to {vocab_size - 1}")
        model.config.use_cache = False
        return model
    if vocab_size is None:
        raise ValueError("a model preset needs the vocabulary size of the token stage")
    torch.manual_seed(seed)
    return LlamaForCausalLM(model_config(str(name), vocab_size, max_positions,
                                         attn_implementation))


def count_parameters(model: Any, non_embedding: bool = True) -> int:
    """Parameters for the 6*N*tokens FLOPs estimate (embeddings excluded by default)."""
    n = sum(p.numel() for p in model.parameters())
    if non_embedding:
        n -= model.get_input_embeddings().weight.numel()
    return n
