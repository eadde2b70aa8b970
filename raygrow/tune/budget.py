"""Trials at a fixed FLOP budget: growth timing d and factor g → a two-stage growth plan.

Stage 0 trains the small model (the base plan's final shape with layers / g) on d tokens; stage 1
trains the final shape on whatever the budget has left, so every trial spends the same FLOPs:

    FLOPs = f_small · d + f_final · D_final = budget    (f: `raygrow.model.flops_per_token`)

Tokens are whole optimizer steps of `train.batch_tokens` (as the trainer runs them): d is rounded
down, D_final to the nearest step, so a trial's FLOPs are within half a final-model step of the
budget. Pure arithmetic on configs: nothing here starts Ray or reads data.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from raygrow.config import GrowthConfig, RunConfig, Shape, StageConfig
from raygrow.errors import ConfigError
from raygrow.model import flops_per_token, tokens_for_flops
from raygrow.plan import vocab_size
from raygrow.tune.config import SweepConfig

DEFAULT_GROWTH = GrowthConfig(depth_op="stack")  # G_stack, when the base plan does not grow


@dataclass(frozen=True)
class Trial:
    """One point of the grid as a growth plan."""

    d: float  # as given: tokens, or a share of the budget
    g: float
    small_tokens: int  # stage 0, whole batches
    final_tokens: int  # stage 1, whole batches
    small_flops: int
    final_flops: int
    plan: RunConfig  # the two-stage plan, with the base plan's name, storage and data cache

    @property
    def flops(self) -> int:
        return self.small_flops + self.final_flops

    @property
    def run_name(self) -> str:
        """Unique within a sweep (its (d, g) pairs are), stable across reruns: a resumed sweep finds
        each trial's growth run again."""
        return f"g{self.g:g}-d{self.small_tokens}"

    @property
    def key(self) -> str:
        return trial_key(self.d, self.g)


def trial_key(d: float, g: float) -> str:
    """How a trial's parameters name its plan (Tune hands the trial function d and g)."""
    return f"d={d!r},g={g!r}"


def target_stages(base: RunConfig) -> tuple[StageConfig, StageConfig]:
    """(stage the small model borrows workers and ZeRO stage from, final stage) of the base plan."""
    stages = base.plan_stages
    if len(stages) > 2:
        raise ConfigError("plan.stages",
                          f"a sweep grows one small model into the final one: give one or "
                          f"two stages, got {len(stages)}")
    if stages[-1].shape is None:
        raise ConfigError(f"plan.stages[{len(stages) - 1}].shape",
                          "required (params-only stages are for "
                          "`raygrow plan`)")
    return stages[0], stages[-1]


def small_shape(final: Shape, g: float, field: str) -> Shape:
    layers = final.layers / g
    if not layers.is_integer() or layers < 1:
        raise ConfigError(field, f"{g:g} does not divide the final model's {final.layers} layers "
                          "into whole layers; pick a divisor")
    return dataclasses.replace(final, layers=int(layers))


def growth_of(base: RunConfig) -> GrowthConfig:
    """The base plan's growth with a depth operator and no fixed layer order (g changes the
    layers)."""
    growth = base.plan_stages[-1].growth or DEFAULT_GROWTH
    return dataclasses.replace(growth, depth_op=growth.depth_op or DEFAULT_GROWTH.depth_op,
                               layer_order=None)


def make_trial(sweep: SweepConfig, base: RunConfig, d: float, g: float, d_field: str,
               g_field: str) -> Trial:
    """The growth plan for (d, g); ConfigError (naming `d_field` or `g_field`) if it cannot fit the
    budget."""
    first, last = target_stages(base)
    final = last.shape
    small = small_shape(final, g, g_field)
    batch, seq_len = base.train.batch_tokens, base.data.seq_len
    per_token_small = flops_per_token(small, vocab_size(base, small), seq_len)
    per_token_final = flops_per_token(final, vocab_size(base, final), seq_len)
    wanted = d * sweep.flop_budget / per_token_small if d < 1 else d
    small_tokens = int(wanted // batch) * batch
    if small_tokens < batch:
        raise ConfigError(d_field,
                          f"{d:g} gives {int(wanted)} small-model tokens (g={g:g}), less than one "
                          f"batch ({batch} tokens); raise d or flop_budget")
    left = sweep.flop_budget - per_token_small * small_tokens
    if round(left / (per_token_final * batch)) < 1:
        raise ConfigError(d_field, f"{d:g} (g={g:g}) leaves {max(left, 0):.3g} of the "
                          f"{sweep.flop_budget:.3g} FLOP budget for the final model, less than one "
                          f"step ({per_token_final * batch:.3g}); lower d or raise flop_budget")
    final_tokens = tokens_for_flops(left, per_token_final, batch)
    stages = [dataclasses.replace(first, shape=small, params=None, tokens=small_tokens,
                                  growth=None),
              dataclasses.replace(last, shape=final, params=None, tokens=final_tokens,
                                  growth=growth_of(base))]
    train = dataclasses.replace(base.train, stop_after=None)  # a trial runs its whole budget
    plan = dataclasses.replace(base, model=None, stages=stages, train=train)
    return Trial(d=d, g=g, small_tokens=small_tokens, final_tokens=final_tokens,
                 small_flops=per_token_small * small_tokens,
                 final_flops=per_token_final * final_tokens, plan=plan)


def make_trials(sweep: SweepConfig, base: RunConfig) -> list[Trial]:
    """Every (d, g) of the grid, g-major; the first that cannot fit the budget is refused."""
    return [make_trial(sweep, base, d, g, f"space.d[{d_index}]", f"space.g[{g_index}]")
            for g_index, g in enumerate(sweep.space.g) for d_index, d in enumerate(sweep.space.d)]
