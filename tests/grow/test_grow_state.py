"""TrainState <-> Hugging Face model."""

from __future__ import annotations

import pytest
import torch

from raygrow.grow import load_into_model, max_logit_difference, param_shapes, state_from_model
from raygrow.grow.state import LM_HEAD
from raygrow.model import build_model


@pytest.mark.parametrize("tied", [False, True])
def test_round_trip(kit, tied):
    shape = kit.shape(tie_embeddings=tied)
    model = build_model(shape, kit.vocab, seed=3)
    state = state_from_model(model)
    assert (LM_HEAD in state.params) == (not tied)
    assert ({name: tuple(value.shape) for name, value in state.params.items()}
            == param_shapes(shape, kit.vocab))
    assert state.exp_avg == {} and state.step == 0
    rebuilt = load_into_model(state, shape, kit.vocab)
    assert max_logit_difference(model, rebuilt, kit.vocab) == 0.0
    state.params["model.norm.weight"].add_(1.0)  # the state owns its tensors
    assert torch.equal(model.model.norm.weight, rebuilt.model.norm.weight)
