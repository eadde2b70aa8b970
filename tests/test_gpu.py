"""The GPU paths (CUDA devices, NCCL, bf16 on a GPU) on a real local Ray cluster.

They run only where torch sees a CUDA GPU (`pytest -m gpu` on a GPU machine); the same code's
CPU paths are covered by test_train.py and test_coordinator.py on every run.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from raygrow import driver
from raygrow.train import checkpoint

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.ray,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]

SMALL = {"layers": 2, "hidden": 64, "heads": 4, "kv_heads": 2, "ffn": 128}
LARGE = {**SMALL, "layers": 4}


def test_growth_plan_trains_in_bf16_on_the_gpu(ray_local, tiny_config):
    stages = [
        {"shape": SMALL, "tokens": 8 * 512, "zero_stage": 2},
        {"growth": {"depth_op": "zero"}, "shape": LARGE, "tokens": 8 * 512, "zero_stage": 3},
    ]
    config = tiny_config("gpu-plan", model=None, stages=stages,
                         train={"precision": "bf16", "use_gpu": True, "deterministic": False,
                                "workers": min(2, torch.cuda.device_count())})
    summary = driver.train(config, show_progress=False)
    assert summary["complete"] and len(summary["stages"]) == 2
    run_dir = Path(config.run_dir)
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    devices = {r["device"] for r in records if "device" in r}
    assert devices and all(d != "cpu" for d in devices), devices  # trained on the GPU
    windows = [r for r in records if "mfu" in r]
    assert all(r["mfu"] > 0 for r in windows if r["device"] in ("h100", "h200", "a100"))
    first, last = summary["stages"][0], summary["stages"][-1]
    assert last["final_val_loss"] < first["final_val_loss"]
    (transition,) = summary["transitions"]
    # zero-initialised depth growth preserves the function, up to bf16 rounding of the forward
    assert abs(transition["val_loss_after"] - transition["val_loss_before"]) < 0.05
    state, meta = checkpoint.load(checkpoint.latest_valid(run_dir / "stage-1"))
    assert meta["zero_stage"] == 3 and all(t.dtype == torch.float32 for t in state.params.values())


def test_compiled_gpu_run_exports_for_stock_transformers(ray_local, tiny_config):
    """train.compile (inductor) on the GPU: trains, and the export loads with stock transformers."""
    from transformers import AutoModelForCausalLM

    config = tiny_config("gpu-export",
                         train={"precision": "bf16", "use_gpu": True, "deterministic": False,
                                              "tokens": 4 * 512, "compile": True})
    driver.train(config, show_progress=False)
    model = AutoModelForCausalLM.from_pretrained(Path(config.run_dir) / "export").to("cuda")
    tokens = torch.randint(0, model.config.vocab_size, (2, 16), device="cuda")
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
        logits = model(input_ids=tokens).logits
    assert logits.shape == (2, 16, model.config.vocab_size) and torch.isfinite(logits).all()
