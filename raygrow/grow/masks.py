"""MSG masks: new parts of a grown model fade in as m rises from 0 to 1, then the masks go away.

The masks live in forward hooks plus non-persistent buffers on the Hugging Face modules, so
parameter names, the state dict and a DeepSpeed engine built around the model are unaffected, and
the buffers follow the model across `.to(device)` and dtype casts. The hooks scale activations
only and never read weights, so they also work under ZeRO-3, where weights exist only inside
a module's own forward.

At m = 1 every hook returns its input unchanged, so `fold` (which removes them) changes no logit
by even one bit. A training loop uses them like this:

    handle = apply_masks(model, result.masks)  # m = 0: exactly the source model's function
    set_mask_value(handle, mask_value(steps_since_growth, ramp_steps))  # before every step
    fold(model)  # once m = 1; until then a checkpoint stores MaskSpec.to_dict() and the ramp
                 # position
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from transformers import PreTrainedModel

from raygrow.errors import RaygrowError

HANDLE_ATTRIBUTE = "_raygrow_masks"
NEW_INPUTS = "raygrow_new_inputs"  # buffer: 1.0 where an input coordinate belongs to a new unit
# buffer: 1.0 where an output coordinate is a new hidden coordinate
NEW_OUTPUTS = "raygrow_new_outputs"


@dataclass
class MaskSpec:
    """Which parts of a grown model are new (target indices); JSON-friendly for checkpoints."""

    layers: list[int] = field(default_factory=list)  # new blocks: h <- m·Block(h) + (1-m)·h
    hidden: list[int] = field(default_factory=list)  # new hidden coordinates: residual writes × m
    ffn: list[int] = field(default_factory=list)  # new FFN units (every block): activations × m
    heads: list[int] = field(default_factory=list)  # new query heads (every block): outputs × m

    def to_dict(self) -> dict[str, list[int]]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "MaskSpec":
        return cls(**{key: [int(i) for i in value] for key, value in data.items()})


@dataclass
class MaskHandle:
    """The live masks of one model: the current m and what to remove when folding."""

    value: float = 0.0  # m: 0 = the source model's function, 1 = the full grown model
    hooks: list[Any] = field(default_factory=list)  # torch RemovableHandles
    buffers: list[tuple[nn.Module, str]] = field(default_factory=list)


def mask_value(step: int, ramp_steps: int) -> float:
    """m after `step` optimizer steps since the growth: linear from 0 to 1 over `ramp_steps`."""
    if ramp_steps <= 0:
        return 1.0
    return min(1.0, max(0.0, step / ramp_steps))


def apply_masks(model: PreTrainedModel, masks: MaskSpec, value: float = 0.0) -> MaskHandle:
    """Install `masks` on `model` at mask value `value`; returns the handle set_mask_value takes."""
    if getattr(model, HANDLE_ATTRIBUTE, None) is not None:
        raise RaygrowError("model already has growth masks: fold them before applying new ones")
    handle = MaskHandle(value=_checked(value))
    config, base = model.config, model.model
    blocks = list(base.layers)
    if any(not 0 <= layer < len(blocks) for layer in masks.layers):
        raise RaygrowError(f"mask layers {masks.layers} do not exist in a "
                           f"{len(blocks)}-layer model")
    for layer in masks.layers:
        handle.hooks.append(blocks[layer].register_forward_hook(_fade_block(handle),
                                                                with_kwargs=True))
    if masks.ffn:
        for block in blocks:
            _mask_inputs(handle, block.mlp.down_proj, _flags(config.intermediate_size, masks.ffn))
    if masks.heads:
        head_dim = getattr(config, "head_dim", None) or \
            config.hidden_size // config.num_attention_heads
        dims = [head * head_dim + i for head in masks.heads for i in range(head_dim)]
        for block in blocks:
            _mask_inputs(handle, block.self_attn.o_proj,
                         _flags(config.num_attention_heads * head_dim, dims))
    if masks.hidden:
        _mask_hidden(handle, model, _flags(config.hidden_size, masks.hidden))
    setattr(model, HANDLE_ATTRIBUTE, handle)
    return handle


def set_mask_value(handle_or_model: MaskHandle | nn.Module, value: float) -> None:
    """Set m for every mask of a model (or its DeepSpeed engine, or the handle itself)."""
    handle = (handle_or_model if isinstance(handle_or_model, MaskHandle)
              else _handle_of(handle_or_model))
    handle.value = _checked(value)


def fold(model: nn.Module) -> nn.Module:
    """Remove the masks once m = 1, leaving a plain Hugging Face model with the same function."""
    handle = _handle_of(model)
    if handle.value < 1.0:
        raise RaygrowError(f"masks are at m={handle.value:g}: finish the ramp (m=1) "
                           "before folding them")
    for hook in handle.hooks:
        hook.remove()
    for module, name in handle.buffers:
        delattr(module, name)
    owner = model if getattr(model, HANDLE_ATTRIBUTE, None) is handle else model.module
    delattr(owner, HANDLE_ATTRIBUTE)
    return model


def _handle_of(model: nn.Module) -> MaskHandle:
    # A DeepSpeed engine wraps the Hugging Face model as `.module`.
    for candidate in (model, getattr(model, "module", None)):
        handle = getattr(candidate, HANDLE_ATTRIBUTE, None)
        if handle is not None:
            return handle
    raise RaygrowError("model has no growth masks (apply_masks was not called, "
                       "or they were folded)")


def _checked(value: float) -> float:
    if not 0.0 <= value <= 1.0:
        raise RaygrowError(f"mask value must be in [0, 1], got {value}")
    return float(value)


def _flags(size: int, new: list[int]) -> torch.Tensor:
    flags = torch.zeros(size)
    flags[torch.tensor(new, dtype=torch.long)] = 1.0
    return flags


def _mask(module: nn.Module, buffer: str, value: float) -> torch.Tensor:
    """1 on old coordinates, m on new ones, in fp32 (a bf16 sum over thousands of them would
    drift)."""
    return 1.0 - getattr(module, buffer).float() * (1.0 - value)


def _add_buffer(handle: MaskHandle, module: nn.Module, name: str, flags: torch.Tensor) -> None:
    reference = next(module.parameters(), None)
    device = (reference.device if reference is not None and reference.device.type != "meta"
              else "cpu")
    module.register_buffer(name, flags.to(device), persistent=False)
    handle.buffers.append((module, name))


def _fade_block(handle: MaskHandle):
    def hook(block, args, kwargs, output):
        if handle.value >= 1.0:
            return None
        before = args[0] if args else kwargs["hidden_states"]
        return before + handle.value * (output - before)
    return hook


def _mask_inputs(handle: MaskHandle, module: nn.Module, flags: torch.Tensor) -> None:
    """New units' activations × m on their way into `module` (down_proj: FFN; o_proj: heads).

    MSG scales a new head's Q/K/V by m; scaling the head's output instead is linear in m like the
    FFN mask and has the same end points (m=0: the head adds nothing; m=1: the plain head).
    """
    _add_buffer(handle, module, NEW_INPUTS, flags)

    def hook(module, args):
        if handle.value >= 1.0:
            return None
        x = args[0]
        return (x * _mask(module, NEW_INPUTS, handle.value).to(x.dtype),) + tuple(args[1:])
    handle.hooks.append(module.register_forward_pre_hook(hook))


def _mask_outputs(handle: MaskHandle, module: nn.Module, flags: torch.Tensor) -> None:
    """What `module` writes into new hidden coordinates × m (embedding, o_proj, down_proj)."""
    _add_buffer(handle, module, NEW_OUTPUTS, flags)

    def hook(module, args, output):
        if handle.value >= 1.0:
            return None
        return output * _mask(module, NEW_OUTPUTS, handle.value).to(output.dtype)
    handle.hooks.append(module.register_forward_hook(hook))


def _mask_norm(handle: MaskHandle, norm: nn.Module, flags: torch.Tensor) -> None:
    """RMSNorm with its statistics over the masked vector x⊙m (MSG).

    y = w ⊙ (x⊙m) / sqrt(Σ(x⊙m)²/Σm + eps) ⊙ m. The norm's own forward runs on x⊙m·sqrt(D/Σm),
    whose mean square over D equals Σ(x⊙m)²/Σm, so eps enters exactly as in the source model
    (REFERENCES' form Norm(x⊙m)·sqrt(Σm/D) would scale eps by D/Σm); the output is then
    multiplied by sqrt(Σm/D)⊙m. At m=0 this is the source's norm over the old coordinates.
    """
    _add_buffer(handle, norm, NEW_OUTPUTS, flags)

    def before(module, args):
        if handle.value >= 1.0:
            return None
        x = args[0]
        mask = _mask(module, NEW_OUTPUTS, handle.value)
        return (x * (mask * (mask.numel() / mask.sum()).sqrt()).to(x.dtype),)

    def after(module, args, output):
        if handle.value >= 1.0:
            return None
        mask = _mask(module, NEW_OUTPUTS, handle.value)
        return output * (mask * (mask.sum() / mask.numel()).sqrt()).to(output.dtype)
    handle.hooks.append(norm.register_forward_pre_hook(before))
    handle.hooks.append(norm.register_forward_hook(after))


def _mask_hidden(handle: MaskHandle, model: PreTrainedModel, flags: torch.Tensor) -> None:
    base = model.model
    _mask_outputs(handle, base.embed_tokens, flags)
    for block in base.layers:
        _mask_outputs(handle, block.self_attn.o_proj, flags)
        _mask_outputs(handle, block.mlp.down_proj, flags)
        _mask_norm(handle, block.input_layernorm, flags)
        _mask_norm(handle, block.post_attention_layernorm, flags)
    _mask_norm(handle, base.norm, flags)
