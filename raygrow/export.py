"""Hugging Face export: a directory stock `transformers.AutoModelForCausalLM` loads."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import torch

from raygrow.config import Shape
from raygrow.data import Manifest
from raygrow.data.tokenizer import load_tokenizer
from raygrow.model import build_model
from raygrow.train import checkpoint


def model_from_params(params: dict[str, torch.Tensor], shape: Shape, vocab: int, eos_id: int | None = None):
    """An HF model holding `params` (full fp32 tensors by HF name)."""
    model = build_model(shape, vocab, eos_id=eos_id)
    with torch.no_grad():
        for name, param in model.named_parameters():
            param.copy_(params[name])
    return model


def export_checkpoint(checkpoint_dir: Path, out_dir: Path, manifest: Manifest) -> Path:
    """Write safetensors weights, config and tokenizer files; replaces `out_dir` atomically."""
    state = checkpoint.load(checkpoint_dir)
    shape = Shape(**state.meta["shape"])
    model = model_from_params(state.params, shape, state.meta["vocab"], eos_id=manifest.eos_id)
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, safe_serialization=True)
    load_tokenizer(manifest.tokenizer).save_pretrained(str(tmp))
    old = out_dir.with_name(out_dir.name + ".old")
    if out_dir.exists():
        os.replace(out_dir, old)
    os.replace(tmp, out_dir)
    shutil.rmtree(old, ignore_errors=True)
    return out_dir
