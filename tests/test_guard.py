"""Nothing non-finite is kept (DESIGN.md invariant 8): a step with a non-finite loss is never
applied; `train.on_nonfinite` rolls back (default), skips or stops; non-finite weights are never
checkpointed, resumed from or exported; loss spikes are logged."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from raygrow import driver
from raygrow.errors import CheckpointError, RaygrowError
from raygrow.grow import TrainState
from raygrow.train import checkpoint

BATCH_ROWS = 16  # tiny_config: 512-token steps of 32-token rows


def poisoned(tiny_config, name: str, policy: str, monkeypatch, position: int, steps: int = 6):
    monkeypatch.setenv("RAYGROW_FAULT", f"poison_rows:{position}")  # that batch's loss is NaN
    return tiny_config(name, train={"tokens": steps * 512, "log_rows": True, "deterministic": False,
                                    "on_nonfinite": policy, "val_every": 1000})


def trained_rows(run_dir: Path) -> list[int]:
    rows = []
    for path in sorted((run_dir / "stage-0" / "rows").glob("rank-*.jsonl")):
        rows += [row for line in path.read_text().splitlines() for row in json.loads(line)["rows"]]
    return rows


def events(run_dir: Path, kind: str) -> list[dict]:
    lines = (run_dir / "stage-0" / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r.get("event") == kind]


@pytest.mark.ray
def test_a_poisoned_batch_is_rolled_back_and_every_other_row_trained_once(ray_local, tiny_config,
                                                                           monkeypatch):
    config = poisoned(tiny_config, "rolled-back", "rollback", monkeypatch, position=4 * BATCH_ROWS)
    summary = driver.train(config, show_progress=False)
    assert summary["complete"] and summary["stages"][0]["steps"] == 6
    run_dir = Path(config.run_dir)
    (event,) = events(run_dir, "nonfinite")
    assert (event["step"] == 5
            and event["detail"]["action"] == f"rolled back to {checkpoint.dir_name(4)}")
    assert (event["detail"]["rows"] == [4 * BATCH_ROWS, 5 * BATCH_ROWS]
            and event["detail"]["loss"] == "nan")
    rows = trained_rows(run_dir)
    assert len(rows) == len(set(rows)) == 6 * BATCH_ROWS  # six full steps, no row twice
    from raygrow.data import PackedRows

    stream = PackedRows(summary["dataset"], "train", config.data.shuffle_seed,
                        config.data.shuffle_window)
    poison = set(stream.take(4 * BATCH_ROWS, BATCH_ROWS)[0].tolist())
    expected = (set(stream.take(0, 4 * BATCH_ROWS)[0].tolist())
                | set(stream.take(5 * BATCH_ROWS, 2 * BATCH_ROWS)[0].tolist()))
    assert set(rows) == expected and not poison & set(rows)  # the poisoned batch never trained
    state, _ = checkpoint.load(checkpoint.latest_valid(run_dir / "stage-0"))
    assert checkpoint.nonfinite(state) is None
    assert (run_dir / "export" / "config.json").exists()


@pytest.mark.slow
@pytest.mark.ray
def test_skip_goes_on_and_stop_ends_the_run_incomplete(ray_local, tiny_config, monkeypatch):
    skipping = poisoned(tiny_config, "skipped", "skip", monkeypatch,
                        position=2 * BATCH_ROWS, steps=4)
    summary = driver.train(skipping, show_progress=False)
    assert summary["complete"]
    (event,) = events(Path(skipping.run_dir), "nonfinite")
    assert event["detail"]["action"] == "skipped" and event["step"] == 3
    # the poisoned step trained nothing
    assert len(trained_rows(Path(skipping.run_dir))) == 3 * BATCH_ROWS

    stopping = poisoned(tiny_config, "stopped", "stop", monkeypatch, position=0, steps=4)
    with pytest.raises(RaygrowError, match="stage-0: a non-finite loss or gradient at step 1 "
                                           ".*on_nonfinite is stop"):
        driver.train(stopping, show_progress=False)
    run_dir = Path(stopping.run_dir)
    assert json.loads((run_dir / "summary.json").read_text())["complete"] is False
    assert not (run_dir / "export").exists() and not checkpoint.candidates(run_dir / "stage-0")


def test_non_finite_weights_are_never_checkpointed_or_loaded(tmp_path):
    state = TrainState(params={"w": torch.tensor([1.0, float("nan")])})
    with pytest.raises(CheckpointError, match="refusing to checkpoint step 3: w holds non-finite"):
        checkpoint.save(tmp_path / "refused", state, {"step": 3})
    assert not (tmp_path / "refused").exists()
    good = tmp_path / checkpoint.dir_name(2)
    checkpoint.save(good, TrainState(params={"w": torch.ones(2)}, exp_avg={"w": torch.zeros(2)}),
                    {"step": 2})
    from safetensors.torch import save_file

    bad = tmp_path / checkpoint.dir_name(4)  # newer, complete, its marker matching an infinity
    checkpoint.save(bad, TrainState(params={"w": torch.ones(2)}), {"step": 4})
    save_file({"w": torch.tensor([float("inf"), 1.0])}, bad / "model.safetensors")
    _remark(bad)
    checkpoint.verify(bad)  # the files are what the marker says...
    with pytest.raises(CheckpointError, match="w holds non-finite values"):
        checkpoint.load(bad)  # ...but a non-finite weight is never loaded
    path, _, meta = checkpoint.load_latest(tmp_path)
    assert Path(path).name == checkpoint.dir_name(2) and meta["step"] == 2


def _remark(directory: Path) -> None:
    """Rewrite a checkpoint's completion marker for the files it holds now."""
    from raygrow import storage

    files = {p.name: {"bytes": p.stat().st_size, "sha256": storage.sha256(p)}
             for p in sorted(directory.iterdir()) if p.name != checkpoint.MARKER}
    (directory / checkpoint.MARKER).write_text(json.dumps({"files": files}))


def test_a_loss_spike_is_an_event():
    from raygrow.config import TrainConfig
    from raygrow.train.loop import Guard

    emitted = []

    class Emitter:  # the worker's two attributes the spike detector uses
        progress = type("P", (), {"step": 0})()

        def emit(self, record):
            emitted.append(record)

    guard = Guard(TrainConfig(spike_zscore=4.0, spike_window=20))
    worker = Emitter()
    for step, loss in enumerate([2.0, 2.1, 1.9, 2.05, 1.95] * 4 + [9.0]):
        worker.progress.step = step
        guard.watch_spikes(worker, loss)
    assert [(r.event, r.step) for r in emitted] == [("spike", 20)] and emitted[0].detail["z"] > 4
