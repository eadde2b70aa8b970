"""Hugging Face export: a directory stock `transformers.AutoModelForCausalLM` loads."""

from __future__ import annotations

from pathlib import Path

from raygrow import storage
from raygrow.config import Shape
from raygrow.data import Manifest, load_tokenizer
from raygrow.grow.state import load_into_model
from raygrow.train import checkpoint


def export_checkpoint(checkpoint_dir: str | Path, out_dirs: list[str], manifest: Manifest) -> None:
    """Write the checkpoint's weights, config and tokenizer as a Hugging Face model into each of
    `out_dirs` (local or s3://), reading the checkpoint once (weights only: the AdamW moments are
    two thirds of its bytes). Each directory is replaced atomically locally; on S3 `config.json`
    is uploaded last, so an interrupted upload does not load."""
    state, meta = checkpoint.load(checkpoint_dir, moments=False)
    model = load_into_model(state, Shape(**meta["shape"]), meta["vocab"], eos_id=manifest.eos_id)
    tokenizer = load_tokenizer(manifest.tokenizer)
    for out_dir in out_dirs:
        with storage.staged_dir(out_dir, last="config.json") as staging:
            model.save_pretrained(staging, safe_serialization=True)
            tokenizer.save_pretrained(str(staging))
