"""Hugging Face export: a directory stock `transformers.AutoModelForCausalLM` loads."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from raygrow.config import Shape
from raygrow.data import Manifest, load_tokenizer
from raygrow.grow.state import load_into_model
from raygrow.train import checkpoint


def export_checkpoint(checkpoint_dir: Path, out_dir: Path, manifest: Manifest) -> Path:
    """Write safetensors weights, config and tokenizer files; replaces `out_dir` atomically."""
    state, meta = checkpoint.load(checkpoint_dir)
    model = load_into_model(state, Shape(**meta["shape"]), meta["vocab"], eos_id=manifest.eos_id)
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
