"""Plans from pretrained models (`stages[0].init`) on a real local Ray cluster: a LLaMA-Pro
block expansion of a Llama-3-style model, and function-preserving growth of Mistral and Qwen2.
Every model is written by stock transformers; every export is loaded by stock transformers."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from raygrow import driver
from raygrow.cli import main
from raygrow.config import run_config
from raygrow.grow import PRESERVATION_TOLERANCE, load_into_model, max_logit_difference
from raygrow.model import EMBED, FINAL_NORM, LM_HEAD, flops_per_token, layer_key
from raygrow.tiny_hf import write_tiny_model
from raygrow.train import checkpoint

pytestmark = pytest.mark.ray

SEQ, BATCH = 32, 512
EXPORTS = ("stage-0/export", "stage-1/export", "export")


def pretrained_plan(
    init: Path, storage: Path, dataset_cache: str, growth: dict, shape: dict, **train
) -> dict:
    """Stage 0 is the pretrained model (0 tokens), stage 1 its growth, trained for 3 steps."""
    return {
        "name": "pretrained",
        "storage": str(storage),
        "data": {
            "source": "stdlib",
            "seq_len": SEQ,
            "max_documents": 60,
            "val_fraction": 0.1,
            "cache_dir": dataset_cache,
            "rows_per_shard": 512,
        },
        "train": {
            "batch_tokens": BATCH,
            "micro_batch": 4,
            "workers": 1,
            "cpus_per_worker": 1,
            "zero_stage": 2,
            "lr": 1e-2,
            "warmup_steps": 0,
            "log_every": 1,
            "val_every": 3,
            "val_rows": 8,
            "max_failures": 0,
            **train,
        },
        "checkpoint": {"every_steps": 3, "keep": 1},
        "stages": [
            {"init": str(init), "tokens": 0},
            {"growth": growth, "shape": shape, "tokens": 3 * BATCH},
        ],
    }


def load(path: Path):
    return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)


def check_exports(run_dir: Path, source) -> None:
    """Every export is the source's class with its config fields; stage 0's is the source."""
    for export in EXPORTS:
        model = load(run_dir / export)
        assert type(model) is type(source), export
        for field in ("rope_parameters", "rms_norm_eps", "head_dim", "sliding_window"):
            assert getattr(model.config, field, None) == getattr(source.config, field, None), field
    assert (
        max_logit_difference(source, load(run_dir / "stage-0/export"), source.config.vocab_size)
        == 0
    )


def test_llama_pro_trains_only_new_blocks_and_grows_as_offline(ray_local, dataset_cache, tmp_path):
    source_dir = write_tiny_model(tmp_path / "tiny-llama", "llama")  # llama3 RoPE, GQA
    config = run_config(
        pretrained_plan(
            source_dir,
            tmp_path / "runs",
            dataset_cache,
            {"depth_op": "zero", "every": 2},
            {"layers": 6},
            trainable="new_blocks",
        )
    )
    summary = driver.train(config, show_progress=False)
    run_dir = Path(config.run_dir)
    assert summary["complete"]
    assert [stage["steps"] for stage in summary["stages"]] == [0, 3]
    source = load(source_dir)
    check_exports(run_dir, source)

    # 0 tokens, then growth: the grown init is what offline `raygrow grow` makes of the directory
    offline = tmp_path / "offline"
    assert (
        main(
            [
                "grow",
                str(source_dir),
                "--to",
                "layers=6",
                "--depth-op",
                "zero",
                "--every",
                "2",
                "--seed",
                str(config.train.seed + 1),
                "--out",
                str(offline),
            ]
        )
        == 0
    )
    grown, _ = checkpoint.load(run_dir / "stage-1" / "init", moments=False)
    offline_tensors = load_file(offline / "model.safetensors")
    assert grown.params.keys() == offline_tensors.keys()
    assert all(torch.equal(grown.params[name], offline_tensors[name]) for name in offline_tensors)
    assert (
        max_logit_difference(source, load(offline), source.config.vocab_size)
        <= PRESERVATION_TOLERANCE
    )

    # LLaMA-Pro: original blocks, embeddings, norm and head bit-identical; new blocks trained
    final, original = (
        load_file(run_dir / "export" / "model.safetensors"),
        load_file(source_dir / "model.safetensors"),
    )
    for name in (EMBED, FINAL_NORM, LM_HEAD):
        assert torch.equal(final[name], original[name]), name
    block = [name.split(".", 3)[3] for name in original if name.startswith("model.layers.0.")]
    for target, layer in enumerate([0, 1, None, 2, 3, None]):
        for tensor in block:
            key = layer_key(target, tensor)
            if layer is None:
                assert not torch.equal(final[key], grown.params[key]), key
            else:
                assert torch.equal(final[key], original[layer_key(layer, tensor)]), key
    last, _ = checkpoint.load(checkpoint.candidates(run_dir / "stage-1")[0])
    trainable = {layer_key(layer, tensor) for layer in (2, 5) for tensor in block}
    assert set(last.exp_avg) == set(last.exp_avg_sq) == trainable  # no state for frozen ones

    shape = config.stages[1].shape
    per_token = flops_per_token(shape, shape.vocab, SEQ, trainable)
    assert per_token < flops_per_token(shape, shape.vocab, SEQ)
    assert summary["stages"][1]["flops"] == pytest.approx(3 * BATCH * per_token)


# Mistral is `slow`: its head_dim and class are also covered without a cluster (test_pretrained,
# tests/grow/test_grow_preserving), and the default suite's Ray time is kept small.
@pytest.mark.parametrize(
    "family, shape",
    [
        pytest.param(
            "mistral",
            {"layers": 6, "hidden": 128, "ffn": 256},  # head_dim 32: still 4 heads
            marks=pytest.mark.slow,
            id="mistral",
        ),
        pytest.param(
            "qwen2", {"layers": 6, "hidden": 128, "heads": 8, "kv_heads": 4, "ffn": 256}, id="qwen2"
        ),
    ],
)
def test_family_keeps_its_class_and_function_through_growth(
    ray_local, dataset_cache, tmp_path, family, shape
):
    source_dir = write_tiny_model(tmp_path / f"tiny-{family}", family)
    config = run_config(
        pretrained_plan(
            source_dir,
            tmp_path / "runs",
            dataset_cache,
            {"depth_op": "zero", "width_op": "zero", "every": 2},
            shape,
        )
    )
    summary = driver.train(config, show_progress=False)
    run_dir = Path(config.run_dir)
    assert summary["complete"] and summary["stages"][1]["steps"] == 3
    source = load(source_dir)
    check_exports(run_dir, source)
    grown_shape = config.stages[1].shape
    state, _ = checkpoint.load(run_dir / "stage-1" / "init", moments=False)
    grown = load_into_model(state, grown_shape, grown_shape.vocab)
    assert type(grown) is type(source)
    assert max_logit_difference(source, grown, source.config.vocab_size) <= PRESERVATION_TOLERANCE
    biases = sorted(
        name for name in load_file(run_dir / "export" / "model.safetensors") if ".bias" in name
    )
    assert len(biases) == (6 * 3 if family == "qwen2" else 0)
