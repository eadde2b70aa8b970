"""Checkpoint integrity: complete or ignored, never unpickled, never a silent fresh start."""

import pytest
import torch

from raygrow.errors import CheckpointError
from raygrow.train import checkpoint
from raygrow.grow.state import TrainState


def make_state(step: int) -> tuple[TrainState, dict]:
    generator = torch.Generator().manual_seed(step)
    params = {"model.a.weight": torch.randn(4, 3, generator=generator),
              "model.b": torch.randn(3, generator=generator)}
    state = TrainState(params=params, exp_avg={k: v * 0.1 for k, v in params.items()},
                       exp_avg_sq={k: v * v for k, v in params.items()}, step=step)
    return state, {"step": step, "rows_consumed": 8 * step}


def test_round_trip_is_exact(tmp_path):
    state, meta = make_state(3)
    checkpoint.save(tmp_path / "c", state, meta)
    loaded, loaded_meta = checkpoint.load(tmp_path / "c")
    assert loaded_meta == {**meta, "optimizer_step": 3} and loaded.step == 3
    for key in ("params", "exp_avg", "exp_avg_sq"):
        for name, tensor in getattr(state, key).items():
            assert torch.equal(getattr(loaded, key)[name], tensor)


def test_weights_only_load_leaves_the_moments_unread(tmp_path):
    state, meta = make_state(2)
    checkpoint.save(tmp_path / "c", state, meta)
    loaded, _ = checkpoint.load(tmp_path / "c", moments=False)
    assert loaded.exp_avg == {} and loaded.exp_avg_sq == {}
    assert all(torch.equal(loaded.params[name], tensor) for name, tensor in state.params.items())


def test_latest_valid_skips_truncated_tampered_and_incomplete(tmp_path):
    for step in (2, 4, 6, 8):
        checkpoint.save(tmp_path / checkpoint.dir_name(step), *make_state(step))
    assert checkpoint.latest_valid(tmp_path).name == checkpoint.dir_name(8)
    (tmp_path / checkpoint.dir_name(8) / checkpoint.MARKER).unlink()  # crash before the marker
    weights = tmp_path / checkpoint.dir_name(6) / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-10])  # truncated
    state_json = tmp_path / checkpoint.dir_name(4) / "state.json"
    state_json.write_text(state_json.read_text().replace("32", "99"))  # tampered, same size
    assert checkpoint.latest_valid(tmp_path).name == checkpoint.dir_name(2)
    with pytest.raises(CheckpointError, match="contents changed"):
        checkpoint.load(tmp_path / checkpoint.dir_name(4))


def test_all_broken_is_refused_not_a_fresh_start(tmp_path):
    checkpoint.save(tmp_path / checkpoint.dir_name(2), *make_state(2))
    (tmp_path / checkpoint.dir_name(2) / checkpoint.MARKER).write_text("{not json")
    with pytest.raises(CheckpointError, match="no checkpoint verifies"):
        checkpoint.latest_valid(tmp_path)
    assert checkpoint.latest_valid(tmp_path / "fresh") is None


def test_nothing_is_unpickled(tmp_path):
    """A pickle planted as a checkpoint file is refused before anything reads it."""
    checkpoint.save(tmp_path / "c", *make_state(1))
    torch.save({"x": 1}, tmp_path / "c" / "model.safetensors")  # a pickle, not safetensors
    with pytest.raises(CheckpointError):
        checkpoint.load(tmp_path / "c")


def test_publish_puts_a_complete_checkpoint_in_place_and_keeps_the_newest(tmp_path):
    for step in (2, 4, 6):
        checkpoint.publish(tmp_path, step, *make_state(step), keep=2)
    assert [path.name for path in checkpoint.candidates(tmp_path)] == [
        checkpoint.dir_name(6), checkpoint.dir_name(4)]
    loaded, meta = checkpoint.load(tmp_path / checkpoint.dir_name(6))
    assert meta["step"] == 6 and loaded.step == 6
