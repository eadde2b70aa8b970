"""The growth operators and what each declares: preservation, optimizer and LR policy."""

from __future__ import annotations

from dataclasses import dataclass

OPTIMIZER_POLICIES = ("reset", "carry", "transform")
LR_POLICIES = ("restart", "rewind", "continue")


@dataclass(frozen=True)
class Operator:
    name: str
    dimension: str  # "depth" | "width"
    function_preserving: bool  # masked: at m = 0; split: unless the hidden size grows unevenly
    optimizer: str  # default optimizer-state policy (OPTIMIZER_POLICIES)
    lr: str  # recommended LR policy at the growth step (LR_POLICIES)
    masked: bool = False  # needs apply_masks and an m ramp while training
    summary: str = ""


# Policy choices:
# - stack / interleave change the function, and old moments describe blocks that now sit at
#   other depths: fresh AdamW and a re-warmed schedule, as G_stack's prts does.
# - masked: MSG carries old moments (new entries 0, step kept) and jumps the LR back to its peak
#   without re-warming: the function is unchanged at m = 0, so there is nothing to protect.
# - zero: the same situation as MSG with the mask already at 1: old moments stay valid, new
#   units start from zero moments and need the peak LR to move away from zero.
# - split / hyperclone: the whole training state is transformed like the weights (staged training,
#   arXiv 2203.06211: Adam m and v scaled with the copies), so the run continues on its schedule
#   as if the large model had been trained all along.
_TABLE = [
    Operator("stack", "depth", False, "reset", "restart",
             summary="G_stack: target block i copies source block order[i] (default: the sequence "
                     "repeated)"),
    Operator("interleave", "depth", False, "reset", "restart",
             summary="each block repeated in place: 0,0,1,1,..."),
    Operator("zero", "depth", True, "carry", "rewind",
             summary="new identity blocks (zeroed o_proj and down_proj) spread between the "
                     "source blocks"),
    Operator("masked", "depth", True, "carry", "rewind", masked=True,
             summary="MSG: new random blocks, h <- m·Block(h) + (1-m)·h with m ramped 0 -> 1"),
    Operator("split", "width", True, "transform", "continue",
             summary="Net2Net/bert2BERT: new units copy source units, fan-in divided by the "
                     "copy count"),
    Operator("hyperclone", "width", True, "transform", "continue",
             summary="HyperCloning: integer multiples, every unit replicated, W' = repeat(W)/n_in"),
    Operator("zero", "width", True, "carry", "rewind",
             summary="zero-padded new units; the residual stream rescaled so RMSNorm keeps its "
                     "statistics"),
    Operator("masked", "width", True, "carry", "rewind", masked=True,
             summary="MSG: new random units behind masks ramped 0 -> 1; norms over unmasked "
                     "coordinates"),
]

# OPERATORS["depth"]["stack"], OPERATORS["width"]["split"], ...
OPERATORS: dict[str, dict[str, Operator]] = {
    dimension: {op.name: op for op in _TABLE if op.dimension == dimension}
    for dimension in ("depth", "width")
}


def combined_optimizer(operators: list[Operator]) -> str:
    """The default policy for several operators: reset if any resets; transform if any transforms
    (for zero and masked growth transform and carry agree, except that transform also rescales
    moments of rescaled tensors); else carry."""
    defaults = {op.optimizer for op in operators}
    return next((policy for policy in ("reset", "transform") if policy in defaults), "carry")


def combined_lr(operators: list[Operator]) -> str:
    """The most cautious recommendation of several operators wins: restart > rewind > continue."""
    recommended = {op.lr for op in operators}
    return next((policy for policy in LR_POLICIES if policy in recommended), "continue")
