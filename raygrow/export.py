"""Hugging Face export: a directory stock `transformers.AutoModelForCausalLM` loads."""

from __future__ import annotations

from pathlib import Path

from raygrow.config import Shape
from raygrow import storage
from raygrow.data import Manifest, load_tokenizer
from raygrow.grow.state import load_into_model
from raygrow.train import checkpoint


def export_checkpoint(checkpoint_dir: str | Path, out_dir: str | Path, manifest: Manifest) -> str | Path:
    """Write safetensors weights, config and tokenizer files; replaces `out_dir` (local or s3://)
    atomically locally; on S3 `config.json` is uploaded last, so an interrupted upload does not load."""
    state, meta = checkpoint.load(checkpoint_dir, moments=False)  # an export holds weights only
    model = load_into_model(state, Shape(**meta["shape"]), meta["vocab"], eos_id=manifest.eos_id)
    with storage.staged_dir(out_dir, last="config.json") as staging:
        model.save_pretrained(staging, safe_serialization=True)
        load_tokenizer(manifest.tokenizer).save_pretrained(str(staging))
    return out_dir
