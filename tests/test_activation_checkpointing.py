"""Activation checkpointing (`train.activation_checkpointing`): the Hugging Face model's own
non-reentrant gradient checkpointing, on exactly the chosen blocks, with the same losses as
without it (fp32, ≤ 1e-5) through the real DeepSpeed engine at ZeRO 0-3, with MSG masks and
compiled blocks, and through a real Ray run at ZeRO-3.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from raygrow.config import RunConfig, Shape, from_dict
from raygrow.errors import ConfigError
from raygrow.grow import MaskSpec, apply_masks
from raygrow.model import build_model, compile_blocks
from raygrow.train.engine import checkpoint_activations, engine_from_state, single_process_group
from raygrow.train.loop import causal_lm_loss

SHAPE = {"layers": 4, "hidden": 32, "heads": 4, "kv_heads": 2, "ffn": 64}
VOCAB = 64
SEQ = 16


def config(zero_stage: int, **train) -> RunConfig:
    return from_dict(RunConfig, {
        "model": SHAPE, "data": {"seq_len": SEQ},
        "train": {"batch_tokens": 8 * SEQ, "micro_batch": 4, "zero_stage": zero_stage, "lr": 1e-2,
                  "warmup_steps": 0, **train}})


def rows(steps: int, rows_per_step: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(1)
    return torch.randint(0, VOCAB, (steps, rows_per_step, SEQ + 1), generator=generator)


def train_losses(run: RunConfig, masks: MaskSpec | None = None, compile_backend: str | None = None,
                 steps: int = 3) -> list[float]:
    """The loss of every micro-batch of `steps` optimizer steps, as the worker trains: the
    model built, masked, checkpointed and compiled in the worker's order, then the engine."""
    single_process_group()
    model = build_model(run.model, VOCAB, seed=0)
    if masks is not None:
        apply_masks(model, masks, 0.5)
    checkpoint_activations(model, run.train.activation_checkpointing,
                           run.train.activation_checkpointing_every)
    if compile_backend is not None:
        compile_blocks(model, backend=compile_backend)
    engine = engine_from_state(model, run, 1)
    losses = []
    for batch in rows(steps, run.batch_rows):
        for micro in batch.split(run.train.micro_batch):
            loss = causal_lm_loss(engine, micro)
            engine.backward(loss)
            engine.step()
            losses.append(loss.item())
    return losses


def mlp_calls_per_block(model: torch.nn.Module, train: bool = True) -> list[int]:
    """How often each block's MLP runs in one forward and backward: twice where the block is
    checkpointed (its forward is replayed in the backward pass), once elsewhere."""
    counts = [0] * len(model.model.layers)
    # a pre-hook: the replay stops as soon as the saved tensors are back (torch's early stop),
    # inside the MLP, before a forward hook at its end would run
    handles = [block.mlp.register_forward_pre_hook(
                   lambda *_, i=i: counts.__setitem__(i, counts[i] + 1))
               for i, block in enumerate(model.model.layers)]
    model.train(train)
    causal_lm_loss(model, rows(1, 2)[0]).backward()
    for handle in handles:
        handle.remove()
    return counts


@pytest.mark.parametrize("mode, every, chosen", [
    ("none", 2, []), ("full", 2, [0, 1, 2, 3]), ("every_k", 2, [0, 2]), ("every_k", 3, [0, 3]),
    ("every_k", 1, [0, 1, 2, 3]),
])
def test_exactly_the_chosen_blocks_are_recomputed(mode, every, chosen):
    model = build_model(Shape(**SHAPE), VOCAB, seed=0)
    assert checkpoint_activations(model, mode, every) == chosen
    assert [i for i, block in enumerate(model.model.layers)
            if block.gradient_checkpointing] == chosen
    assert mlp_calls_per_block(model) == [2 if i in chosen else 1 for i in range(4)]


def test_validation_forwards_recompute_nothing():
    model = build_model(Shape(**SHAPE), VOCAB, seed=0)
    checkpoint_activations(model, "full")
    model.eval()
    with torch.no_grad():
        causal_lm_loss(model, rows(1, 2)[0])
    assert mlp_calls_per_block(model, train=False) == [1, 1, 1, 1]  # eval mode: no checkpointing


@pytest.fixture(scope="module")
def baselines():
    """Losses without checkpointing at each ZeRO stage (computed once)."""
    return {zero: train_losses(config(zero)) for zero in (0, 1, 2, 3)}


@pytest.mark.parametrize("zero_stage", [0, 1, 2, 3])
@pytest.mark.parametrize("mode", ["full", "every_k"])
def test_same_losses_with_and_without_checkpointing(baselines, zero_stage, mode):
    losses = train_losses(config(zero_stage, activation_checkpointing=mode))
    assert len(losses) == 6
    assert losses[-1] < losses[0]  # it trains
    assert max(abs(a - b) for a, b in zip(losses, baselines[zero_stage])) <= 1e-5


@pytest.mark.parametrize("zero_stage", [2, 3])
def test_same_losses_under_msg_masks(zero_stage):
    masks = MaskSpec(layers=[3], ffn=list(range(48, 64)), heads=[3])
    plain = train_losses(config(zero_stage), masks=masks)
    checkpointed = train_losses(config(zero_stage, activation_checkpointing="every_k",
                                       activation_checkpointing_every=3), masks=masks)
    assert max(abs(a - b) for a, b in zip(plain, checkpointed)) <= 1e-5


def test_same_losses_with_compiled_blocks():
    # aot_eager traces the blocks through dynamo and AOTAutograd (what train.compile does) without
    # inductor's C++ build, which takes minutes on this CPU
    plain = train_losses(config(2), compile_backend="aot_eager", steps=2)
    checkpointed = train_losses(config(2, activation_checkpointing="full"),
                                compile_backend="aot_eager",
                                steps=2)
    assert max(abs(a - b) for a, b in zip(plain, checkpointed)) <= 1e-5


@pytest.mark.parametrize("train, field", [
    ({"activation_checkpointing": "some"}, "train.activation_checkpointing"),
    ({"activation_checkpointing": True}, "train.activation_checkpointing"),
    ({"activation_checkpointing": "every_k", "activation_checkpointing_every": 0},
     "train.activation_checkpointing_every"),
    ({"activation_checkpointing_every": 1.5}, "train.activation_checkpointing_every"),
])
def test_bad_config_is_refused_naming_the_field(train, field):
    with pytest.raises(ConfigError) as error:
        config(0, **train)
    assert error.value.field == field


def test_checkpointing_is_safe_to_change_on_resume():
    from raygrow.resume import first_change, run_inputs

    before = run_inputs(config(3).to_dict(), "data")
    after = run_inputs(config(3, activation_checkpointing="every_k",
                              activation_checkpointing_every=4).to_dict(), "data")
    assert first_change(before, after) is None


@pytest.mark.slow
@pytest.mark.ray
def test_ray_zero3_run_same_losses(ray_local, tiny_config):
    """The real path: driver → coordinator → Ray Train workers (2, ZeRO-3), with and without."""
    from raygrow import driver
    from raygrow.train.metrics import MetricsLog
    from raygrow.train.records import steps

    train = {"workers": 2, "zero_stage": 3, "tokens": 4 * 512, "val_every": 2}
    runs = {}
    for mode in ("none", "full"):
        run = tiny_config(f"ckpt-{mode}", train={**train, "activation_checkpointing": mode},
                          model={**SHAPE, "layers": 3})
        summary = driver.train(run, show_progress=False)
        assert summary["complete"]
        runs[mode] = steps(MetricsLog(f"{run.run_dir}/stage-0").records())
    plain, checkpointed = runs["none"], runs["full"]
    assert [r.step for r in plain] == [r.step for r in checkpointed] == [1, 2, 3, 4]
    for a, b in zip(plain, checkpointed):
        assert abs(a.loss - b.loss) <= 1e-5
        assert (a.val_loss is None) == (b.val_loss is None)
        if a.val_loss is not None:
            assert abs(a.val_loss - b.val_loss) <= 1e-5
    assert dataclasses.asdict(plain[-1])["tokens"] == 4 * 512
