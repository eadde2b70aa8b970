"""The DeepSpeed engine of one worker, and moving full (gathered) state in and out of it.

Ray Train has already created the process group (gloo on CPU, NCCL on GPU); DeepSpeed reuses it.
Full state goes through DeepSpeed's tensor-fragment API (`safe_get_full_*` / `safe_set_full_*`),
which is the same for ZeRO 1, 2 and 3; under ZeRO-3 those calls are collectives, so every rank
walks the parameters in the same order. ZeRO stage 0 has no fragments: the torch optimizer's own
state is used directly.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Collection

import deepspeed
import deepspeed.ops
import torch
import torch.distributed as dist
from deepspeed.utils import (
    safe_get_full_fp32_param,
    safe_get_full_optimizer_state,
    safe_set_full_fp32_param,
    safe_set_full_optimizer_state,
)

from raygrow.config import RunConfig
from raygrow.grow.state import TrainState
from raygrow.train.checkpoint import MOMENTS


def deepspeed_config(config: RunConfig, workers: int) -> dict:
    train = config.train
    return {
        "train_micro_batch_size_per_gpu": train.micro_batch,
        "gradient_accumulation_steps": config.grad_accum(workers),
        "train_batch_size": config.batch_rows,
        "gradient_clipping": train.grad_clip,
        "zero_optimization": {"stage": train.zero_stage},
        "bf16": {"enabled": train.precision == "bf16"},
        # AdamW is torch's own: it runs on CPU and GPU alike and its state is plain tensors.
        "zero_allow_untested_optimizer": True,
        "steps_per_print": 1 << 30,
        "wall_clock_breakdown": False,
    }


def checkpoint_activations(model: torch.nn.Module, mode: str, every: int = 2) -> list[int]:
    """Turn on the Hugging Face model's own activation (gradient) checkpointing, non-reentrant:
    `mode` full = every decoder block, every_k = blocks 0, k, 2k, ... (k = `every`), none =
    nothing. Returns the indices of the checkpointed blocks.

    Transformers 5 decoder blocks are `GradientCheckpointingLayer`s: each reads its own
    `gradient_checkpointing` flag at every forward (in training mode with gradients on), so
    enabling the model and then clearing the flag of the blocks left out checkpoints exactly
    the chosen ones. Non-reentrant checkpointing recomputes inside autograd, so forward hooks
    (MSG masks), ZeRO-3's parameter gathering and compiled blocks see an ordinary forward."""
    if mode == "none":
        return []
    enable = getattr(model, "activation_checkpointing_enable", None)
    if enable is None:  # transformers before the rename
        enable = model.gradient_checkpointing_enable
    enable({"use_reentrant": False})
    step = 1 if mode == "full" else every
    chosen = []
    for index, block in enumerate(model.model.layers):
        block.gradient_checkpointing = index % step == 0
        if block.gradient_checkpointing:
            chosen.append(index)
    return chosen


def freeze(model: torch.nn.Module, trainable: Collection[str] | None) -> None:
    """Freeze every parameter not named in `trainable` (None: all train), before the engine is
    built: a frozen parameter gets no gradient, no AdamW state and no update (train.trainable)."""
    if trainable is None:
        return
    trainable = set(trainable)
    for name, param in model.named_parameters():
        param.requires_grad_(name in trainable)


def single_process_group() -> None:
    """A one-rank gloo process group, as Ray Train gives each worker, so that a DeepSpeed engine
    can be built in a plain process (benchmarks, tests)."""
    if dist.is_initialized():
        return
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": "0",
                       "WORLD_SIZE": "1", "LOCAL_RANK": "0", "LOCAL_WORLD_SIZE": "1"})
    dist.init_process_group("gloo", rank=0, world_size=1)


def _plain_gloo_on_cpu() -> None:
    """On CPU, DeepSpeed JIT-compiles a shared-memory allreduce op when it sets up its comm
    backend. Its compiler flags come from a CPU probe that answers differently under load, so
    worker processes kept rebuilding it (about a minute of gcc on 2 cores per stage start, seen
    here). DeepSpeed keeps op compatibility in one module-level dict meant to be edited; marking
    the op incompatible makes it use plain gloo collectives."""
    if not torch.cuda.is_available():
        deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False


def build_engine(model: torch.nn.Module, config: RunConfig, workers: int):
    _plain_gloo_on_cpu()
    train = config.train
    # Only trainable parameters go to AdamW: a frozen one (train.trainable) gets no state at all.
    trained = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in trained if p.ndim >= 2]
    no_decay = [p for p in trained if p.ndim < 2]  # norms and biases: no weight decay
    groups = [{"params": params, "weight_decay": weight_decay}
              for params, weight_decay in ((decay, train.weight_decay), (no_decay, 0.0)) if params]
    optimizer = torch.optim.AdamW(groups, lr=train.lr, betas=(train.beta1, train.beta2), eps=1e-8,
                                  foreach=False)
    engine, *_ = deepspeed.initialize(model=model, optimizer=optimizer,
                                      config=deepspeed_config(config, workers))
    init_optimizer_state(engine)
    return engine


def engine_from_state(model: torch.nn.Module, config: RunConfig, workers: int,
                      state: TrainState | None = None):
    """The DeepSpeed engine of `model`, holding `state` when given (its weights and, where present,
    AdamW moments and step count). The weights go into the Hugging Face model before
    `deepspeed.initialize` (which partitions them under ZeRO-3); the fp32 master copy and the
    moments after, through the full-state API."""
    if state is not None:
        _check_names(model, state)
        with torch.no_grad():
            for name, param in model.named_parameters():
                param.copy_(state.params[name])
    engine = build_engine(model, config, workers)
    if state is not None:
        load_full_state(engine, state)
    return engine


def base_optimizer(engine) -> torch.optim.Optimizer:
    """The torch AdamW underneath DeepSpeed's ZeRO wrapper (or the optimizer itself at stage 0)."""
    return getattr(engine.optimizer, "optimizer", engine.optimizer)


def _zero(engine) -> bool:
    return engine.zero_optimization_stage() > 0 or engine.bfloat16_enabled()


def set_lr(engine, lr: float) -> None:
    for group in base_optimizer(engine).param_groups:
        group["lr"] = lr


def gather_full_state(engine, keep: bool = True) -> TrainState:
    """Full fp32 parameters and AdamW moments by HF name. Under ZeRO every rank takes part in
    the gathers (collectives), but only a rank with `keep` holds the full copy in memory (the
    one that writes the checkpoint); the others return an empty state."""
    state = TrainState(params={}, step=optimizer_step_count(engine))
    optimizer = base_optimizer(engine)
    if not keep and not _zero(engine):
        return state  # no collective to take part in
    for name, param in engine.module.named_parameters():
        if not param.requires_grad:  # frozen: outside the optimizer, whole in the module (ZeRO 0-2)
            if keep:
                state.params[name] = param.detach().float().cpu().clone()
            continue
        if _zero(engine):
            full = safe_get_full_fp32_param(param)
            if keep:
                state.params[name] = full.detach().cpu().clone()
            del full
            for key in MOMENTS:
                moment = safe_get_full_optimizer_state(param, key)
                if moment is not None and keep:
                    getattr(state, key)[name] = moment.detach().cpu().clone()
                del moment
        else:
            state.params[name] = param.detach().float().cpu().clone()
            for key in MOMENTS:
                if key in optimizer.state.get(param, {}):
                    getattr(state, key)[name] = optimizer.state[param][key].detach().cpu().clone()
    return state


def optimizer_step_count(engine) -> int:
    states = base_optimizer(engine).state.values()
    return max((int(s["step"]) for s in states if "step" in s), default=0)


def _hp_param_groups(engine) -> list[tuple[int, list[torch.Tensor]]]:
    """(param group index, the fp32 tensors AdamW steps for it). ZeRO-3 keeps its flat fp32
    partitions outside `param_groups` and swaps them in per sub-group at each step."""
    zero_optimizer = engine.optimizer
    if hasattr(zero_optimizer, "fp32_partitioned_groups_flat"):
        return [(zero_optimizer.sub_group_to_group_id[i], [flat])
                for i, flat in enumerate(zero_optimizer.fp32_partitioned_groups_flat)]
    return [(i, list(group["params"]))
            for i, group in enumerate(base_optimizer(engine).param_groups)]


def _materialise_optimizer_state(engine, step: int) -> None:
    """AdamW creates its state on the first step; take one step at lr 0 with zero gradients
    (which leaves the parameters bit-identical) so that saved moments have somewhere to go."""
    optimizer = base_optimizer(engine)
    saved_lr = [group["lr"] for group in optimizer.param_groups]
    for group in optimizer.param_groups:
        group["lr"] = 0.0
    for group_index, tensors in _hp_param_groups(engine):
        group = optimizer.param_groups[group_index]
        saved_params, group["params"] = group["params"], tensors
        for tensor in tensors:
            tensor.grad = torch.zeros_like(tensor)
        optimizer.step()
        for tensor in tensors:
            tensor.grad = None
        group["params"] = saved_params
    for group, lr in zip(optimizer.param_groups, saved_lr):
        group["lr"] = lr
    for param_state in optimizer.state.values():
        param_state["step"] = torch.tensor(float(step), dtype=param_state["step"].dtype)


def init_optimizer_state(engine, step: int = 0) -> None:
    """Create AdamW state for every parameter now, not lazily at the first step.

    DeepSpeed's ZeRO-1/2 optimizer links its per-parameter state views once, after the first
    step of the *first* param group, when the other groups have no state yet; their moments are
    then unreachable through `safe_get_full_optimizer_state`. Creating the state up front and
    relinking avoids that, and gives loaded moments somewhere to go.
    """
    _materialise_optimizer_state(engine, step)
    zero_optimizer = engine.optimizer
    if hasattr(zero_optimizer, "_hp_optimizer_states_linked"):
        zero_optimizer._hp_optimizer_states_linked = False
        zero_optimizer._lazy_init_hp_params_optimizer_state()


def load_full_state(engine, state: TrainState) -> None:
    """Put full parameters (and moments, when present) into an engine fresh from `build_engine`."""
    _check_names(engine.module, state)
    if _zero(engine):  # frozen parameters have no fp32 master copy: the module's is the one
        for name, param in engine.module.named_parameters():
            if param.requires_grad:
                safe_set_full_fp32_param(param, state.params[name])
    init_optimizer_state(engine, state.step)
    optimizer = base_optimizer(engine)
    for name, param in engine.module.named_parameters():
        for key in MOMENTS:
            # None kept (a reset after growth): they stay zero; frozen: there are none.
            if name not in getattr(state, key) or not param.requires_grad:
                continue
            value = getattr(state, key)[name]
            if _zero(engine):
                safe_set_full_optimizer_state(param, value, key)
            else:
                optimizer.state[param][key].copy_(value)


def _check_names(model: torch.nn.Module, state: TrainState) -> None:
    missing = sorted({name for name, _ in model.named_parameters()} - set(state.params))
    if missing:
        raise ValueError(f"checkpoint lacks parameters {missing[:3]}…")
