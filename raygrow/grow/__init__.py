"""Growth operators on full training states (parameters and AdamW moments, Hugging Face names).

Pure PyTorch: no Ray, no DeepSpeed. `grow` maps a state from a small shape to a larger one;
`apply_masks` / `set_mask_value` / `fold` run the MSG mask ramp on a live model.
"""

from raygrow.config.growth import check_growth
from raygrow.grow.api import GrowthResult, grow
from raygrow.grow.check import PRESERVATION_TOLERANCE, max_logit_difference
from raygrow.grow.masks import MaskHandle, MaskSpec, apply_masks, fold, mask_value, set_mask_value
from raygrow.config.operators import LR_POLICIES, OPERATORS, OPTIMIZER_POLICIES, Operator
from raygrow.grow.state import TrainState, load_into_model, param_shapes, state_from_model

__all__ = [
    "GrowthResult", "LR_POLICIES", "MaskHandle", "MaskSpec", "OPERATORS", "OPTIMIZER_POLICIES",
    "Operator", "PRESERVATION_TOLERANCE", "TrainState", "apply_masks", "check_growth", "fold",
    "grow", "load_into_model", "mask_value", "max_logit_difference", "param_shapes",
    "set_mask_value", "state_from_model",
]
