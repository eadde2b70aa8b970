"""Width operators: unit maps, GQA consistency, and where copies and zeros land."""

from __future__ import annotations

import pytest
import torch

from raygrow.grow import grow
from raygrow.grow.state import EMBED, FINAL_NORM, LM_HEAD, layer_key
from raygrow.grow.units import NEW, extend, head_maps


@pytest.mark.parametrize("heads, kv, target_heads, target_kv, how", [
    (4, 2, 8, 4, "copy"), (4, 2, 12, 2, "copy"), (4, 2, 12, 3, "copy"), (6, 3, 8, 4, "new"),
    (4, 4, 6, 6, "copy"),
])
def test_query_heads_stay_with_their_kv_heads(heads, kv, target_heads, target_kv, how):
    query, key_value = head_maps(heads, kv, target_heads, target_kv, how,
                                 torch.Generator().manual_seed(0))
    source_group, target_group = heads // kv, target_heads // target_kv
    for position, source_head in enumerate(query.source.tolist()):
        if source_head != NEW:
            assert key_value.source[position // target_group] == source_head // source_group
    kept = sorted(h for h in query.source.tolist() if h != NEW)
    assert set(kept) == set(range(heads))  # every source head survives
    assert int(query.is_original.sum()) == heads


def test_copy_maps_tile_before_choosing():
    assert extend(3, 9, "copy").source.tolist() == [0, 1, 2, 0, 1, 2, 0, 1, 2]
    uneven = extend(4, 6, "copy", torch.Generator().manual_seed(0))
    assert uneven.source[:4].tolist() == [0, 1, 2, 3] and len(set(uneven.source[4:].tolist())) == 2
    assert extend(2, 4, "new").source.tolist() == [0, 1, NEW, NEW]
    assert extend(2, 5, "copy").copies.tolist() == [3, 2, 3, 2, 3]


def test_hyperclone_replicates_hidden(kit):
    source, target = kit.shape(), kit.shape(hidden=32, heads=8, kv_heads=4, ffn=48)
    state = kit.state(source)
    grown = grow(state, source, target, kit.vocab, None, "hyperclone").state.params
    embed = state.params[EMBED]
    assert torch.equal(grown[EMBED], torch.cat([embed, embed], dim=1))  # [x; x]
    assert torch.equal(grown[FINAL_NORM], state.params[FINAL_NORM].repeat(2))
    # Fan-in halves carry symmetry-breaking noise that cancels: the halves sum to the source.
    for name in (LM_HEAD, layer_key(0, "mlp.up_proj.weight"),
                 layer_key(1, "self_attn.q_proj.weight")):
        rows = grown[name].shape[0] // (1 if name == LM_HEAD else 2)
        halves = grown[name][:rows, :16] + grown[name][:rows, 16:]
        assert torch.allclose(halves, state.params[name], atol=1e-6)
        assert not torch.equal(grown[name][:rows, :16], grown[name][:rows, 16:])


def test_zero_width_pads_with_zeros_where_outputs_would_change(kit):
    source, target = kit.shape(), kit.shape(hidden=24, heads=6, kv_heads=2, ffn=30)
    state = kit.state(source)
    grown = grow(state, source, target, kit.vocab, None, "zero").state.params
    scale = (24 / 16) ** 0.5  # the residual stream is rescaled so RMSNorm keeps its statistics
    assert torch.allclose(grown[EMBED][:, :16], state.params[EMBED] * scale)
    assert not grown[EMBED][:, 16:].any()
    down = grown[layer_key(0, "mlp.down_proj.weight")]
    assert not down[16:].any() and not down[:, 24:].any()
    o_proj = grown[layer_key(1, "self_attn.o_proj.weight")]
    # Each kv group of 2 query heads grows to 3: new heads 2 and 5 (head_dim 4) write nothing.
    assert not o_proj[:, 8:12].any() and not o_proj[:, 20:24].any()
    norm = grown[layer_key(0, "input_layernorm.weight")]
    assert torch.allclose(norm[:16], state.params[layer_key(0, "input_layernorm.weight")] / scale)


def test_masked_width_reports_new_units(kit):
    source, target = kit.shape(), kit.shape(layers=3, hidden=24, heads=6, kv_heads=2, ffn=30)
    result = grow(kit.state(source), source, target, kit.vocab, "masked", "masked")
    assert result.masks.hidden == list(range(16, 24))
    assert result.masks.ffn == list(range(24, 30))
    assert result.masks.heads == [2, 5]  # one new head per kv group of three
    assert result.masks.layers == [2]  # source layer j sits at floor(j * 3 / 2): 0 and 1
