"""MSG masks: invisible to parameter names, ramped 0 -> 1 while training, folded away at 1."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from raygrow.errors import RaygrowError
from raygrow.grow import (MaskSpec, apply_masks, fold, grow, load_into_model, mask_value,
                          set_mask_value)


def masked_growth(kit):
    source = kit.shape()
    target = kit.shape(layers=3, hidden=24, heads=6, kv_heads=2, ffn=30)
    return grow(kit.state(source), source, target, kit.vocab, "masked", "masked")


def logits(model, tokens):
    with torch.no_grad():
        return model(tokens).logits


def test_masks_leave_names_and_state_dict_alone(kit):
    result = masked_growth(kit)
    model = load_into_model(result.state, result.shape, kit.vocab)
    names, keys = [n for n, _ in model.named_parameters()], list(model.state_dict())
    apply_masks(model, result.masks)
    assert [n for n, _ in model.named_parameters()] == names
    assert list(model.state_dict()) == keys
    assert any("raygrow" in name for name, _ in model.named_buffers())  # they move with .to(device)


def test_ramp_trains_and_folds_to_a_plain_model(kit):
    result = masked_growth(kit)
    model = load_into_model(result.state, result.shape, kit.vocab)
    handle = apply_masks(model, result.masks)
    ramp_steps, tokens = 6, kit.batch()
    losses = kit.train(model, tokens, steps=10, before_step=lambda step: set_mask_value(
        handle, mask_value(step, ramp_steps)))
    assert handle.value == 1.0
    assert losses[-1] < losses[0]
    before = logits(model, tokens)
    fold(model)
    assert torch.equal(logits(model, tokens), before)
    assert not any("raygrow" in name for name, _ in model.named_buffers())
    assert all(not module._forward_hooks and not module._forward_pre_hooks
               for module in model.modules())
    plain = load_into_model(type(result.state)(params=dict(model.named_parameters())),
                            result.shape, kit.vocab)
    assert torch.equal(logits(plain, tokens), before)


def test_intermediate_mask_value_is_between_source_and_full_model(kit):
    result = masked_growth(kit)
    model = load_into_model(result.state, result.shape, kit.vocab)
    full = logits(model, kit.batch())
    handle = apply_masks(model, result.masks)
    at_zero = logits(model, kit.batch())
    set_mask_value(model, 0.5)  # by model, as a training loop holding only the model would
    halfway = logits(model, kit.batch())
    assert not torch.allclose(halfway, at_zero) and not torch.allclose(halfway, full)
    set_mask_value(handle, 1.0)
    assert torch.equal(logits(model, kit.batch()), full)


def test_mask_value_through_a_wrapping_engine(kit):
    """DeepSpeed's engine holds the model as `.module`; set_mask_value and fold see through it."""
    result = masked_growth(kit)
    model = load_into_model(result.state, result.shape, kit.vocab)
    apply_masks(model, result.masks)
    engine = nn.Module()
    engine.module = model
    set_mask_value(engine, 1.0)
    fold(engine)
    with pytest.raises(RaygrowError):
        set_mask_value(model, 0.5)


def test_mask_refusals(kit):
    result = masked_growth(kit)
    model = load_into_model(result.state, result.shape, kit.vocab)
    handle = apply_masks(model, result.masks)
    with pytest.raises(RaygrowError, match="m=0.25"):
        set_mask_value(handle, 0.25)
        fold(model)
    with pytest.raises(RaygrowError, match=r"\[0, 1\]"):
        set_mask_value(handle, 1.5)
    with pytest.raises(RaygrowError, match="already"):
        apply_masks(model, result.masks)


def test_mask_value_ramps_linearly():
    assert [mask_value(step, 4) for step in (-1, 0, 1, 2, 4, 9)] == [0.0, 0.0, 0.25, 0.5, 1.0, 1.0]
    assert mask_value(0, 0) == 1.0


def test_mask_spec_round_trips_through_json_types():
    spec = MaskSpec(layers=[1, 3], hidden=[16, 17], ffn=[24], heads=[2])
    assert MaskSpec.from_dict(spec.to_dict()) == spec


def test_masks_follow_dtype_casts(kit):
    """Buffers cast with the model (bf16 here, as under DeepSpeed bf16) and the hooks still work."""
    result = masked_growth(kit)
    plain = load_into_model(result.state, result.shape, kit.vocab).to(torch.bfloat16)
    model = load_into_model(result.state, result.shape, kit.vocab)
    apply_masks(model, result.masks, value=0.5)
    model.to(torch.bfloat16)
    assert all(buffer.dtype == torch.bfloat16 for name, buffer in model.named_buffers()
               if "raygrow" in name)
    assert torch.isfinite(logits(model, kit.batch())).all()
    set_mask_value(model, 1.0)
    assert torch.equal(logits(model, kit.batch()), logits(plain, kit.batch()))
