"""Growth runs on a real local Ray cluster: stages, growth, rescaling, kills and resumes."""

from __future__ import annotations

import json
import shutil
import threading
import time
from pathlib import Path

import pytest
import ray
import torch
from safetensors.torch import load_file

from raygrow import driver
from raygrow.coordinator.summary import transition_breakdown
from raygrow.errors import RaygrowError
from raygrow.train import checkpoint

pytestmark = pytest.mark.ray

SMALL = {"layers": 2, "hidden": 32, "heads": 4, "kv_heads": 2, "ffn": 64}
LARGE = {**SMALL, "layers": 4}


def plan(tiny_config, name: str, second_workers=2, **train):
    stages = [
        {"shape": SMALL, "tokens": 4 * 512, "workers": 1, "zero_stage": 2},
        {"growth": {"depth_op": "stack"}, "shape": LARGE, "tokens": 4 * 512,
         "workers": second_workers,
         "zero_stage": 3},
    ]
    return tiny_config(name, model=None, stages=stages, train={"log_rows": True, **train})


def rows_of(run_dir: Path, stage: int) -> list[int]:
    rows = []
    for path in sorted((run_dir / f"stage-{stage}" / "rows").glob("rank-*.jsonl")):
        rows += [row for line in path.read_text().splitlines() for row in json.loads(line)["rows"]]
    return rows


def stage_records(run_dir: Path, stage: int) -> list[dict]:
    path = run_dir / f"stage-{stage}" / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def tensors(path: Path) -> dict[str, torch.Tensor]:
    return load_file(path / "model.safetensors")


def assert_same_tensors(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


@pytest.fixture(scope="module")
def grown(ray_local, tiny_config):
    config = plan(tiny_config, "grown")
    return config, driver.train(config, show_progress=False)


def test_two_stage_plan_grows_and_rescales(grown):
    config, summary = grown
    run_dir = Path(config.run_dir)
    assert summary["complete"] and len(summary["stages"]) == 2
    small, large = summary["stages"]
    assert (small["shape"]["layers"], small["workers"], small["zero_stage"]) == (2, 1, 2)
    assert (large["shape"]["layers"], large["workers"], large["zero_stage"]) == (4, 2, 3)
    assert small["tokens"] == large["tokens"] == 4 * 512
    assert large["flops"] > small["flops"] > 0
    import ray

    # where each stage's workers ran
    here = {node["NodeID"] for node in ray.nodes() if node["Alive"]}
    assert len(small["nodes"]) == len(large["nodes"]) == 1 and set(large["nodes"]) <= here
    assert 0 <= small["resource_wait_s"] < 5 and 0 <= large["resource_wait_s"] < 5
    assert summary["total_flops"] == pytest.approx(small["flops"] + large["flops"])
    (transition,) = summary["transitions"]
    assert transition["depth_op"] == "stack" and transition["from_stage"] == 0
    assert transition["val_loss_before"] == small["final_val_loss"]
    assert transition["val_loss_after"] > 0 and transition["seconds"] > 0
    # the same transition from the workers' and the coordinator's own stamps, part by part
    parts = transition["breakdown"]
    assert {"final_checkpoint", "worker_group_end", "growth", "ray_train_start",
            "process_and_imports", "worker_setup", "checkpoint_load", "engine",
            "growth_validation", "first_step"} <= parts.keys()
    # stage 0's export ran beside stage 1's training: not before the growth, not during it
    specs = json.loads((run_dir / "coordinator.json").read_text())["specs"]
    first, second = specs["stage-0"]["times"], specs["stage-1"]["times"]
    assert transition["export_s"] == pytest.approx(first["export_end"] - first["export_start"])
    assert second["prepare_end"] <= first["export_start"] < second["train_end"]
    assert all(specs[f"stage-{stage}"]["exported"] for stage in (0, 1))
    assert all(seconds >= 0 for seconds in parts.values())
    assert sum(parts.values()) == pytest.approx(transition["seconds"], abs=2.0)
    # G_stack: stage 1's first blocks are copies of stage 0's, in order 0, 1, 0, 1.
    source = tensors(checkpoint.latest_valid(run_dir / "stage-0"))
    init = tensors(run_dir / "stage-1" / "init")
    for target, origin in enumerate([0, 1, 0, 1]):
        key = "model.layers.{}.mlp.up_proj.weight"
        assert torch.equal(init[key.format(target)], source[key.format(origin)])
    for stage in (0, 1):
        assert (run_dir / f"stage-{stage}" / "export" / "config.json").exists()
    assert (run_dir / "report.png").exists() and (run_dir / "export" / "model.safetensors").exists()


def test_a_transition_breakdown_adds_up_its_stamps_in_order():
    stamps = {"stepped": 10.0, "saved": 10.5, "train_end": 12.0, "prepare_start": 12.25,
              "prepare_end": 13.0, "train_start": 13.5, "process": 1.0, "imported": 18.0,
              "train_fn": 19.0, "first_step": 21.0}
    # no export: its coordinator gaps merge; a process Ray started before fit() counts from fit()
    assert transition_breakdown(stamps) == {
        "final_checkpoint": 0.5, "worker_group_end": 1.5, "coordinator": 0.25, "growth": 0.75,
        "rescaling": 0.5, "ray_train_start": 0.0, "process_and_imports": 4.5,
        "worker_setup": 1.0, "first_step": 2.0}
    assert transition_breakdown({**stamps, "saved": 9.0}) is None  # stamps of two invocations
    assert transition_breakdown({"stepped": 1.0}) is None


def test_rows_exactly_once_across_the_stage_boundary(grown):
    config, _ = grown
    rows = rows_of(Path(config.run_dir), 0) + rows_of(Path(config.run_dir), 1)
    assert len(rows) == len(set(rows)) == 8 * config.batch_rows


def test_an_export_cut_short_is_redone_by_the_rerun_without_training(grown):
    """Exports run beside the next stage: a spec trained but not exported (the run stopped while
    its export ran) is exported again by the rerun, and nothing is retrained."""
    config, _ = grown
    run_dir = Path(config.run_dir)
    exported = tensors(run_dir / "stage-0" / "export")
    state = json.loads((run_dir / "coordinator.json").read_text())
    state["specs"]["stage-0"]["exported"] = False
    (run_dir / "coordinator.json").write_text(json.dumps(state))
    shutil.rmtree(run_dir / "stage-0" / "export")
    metrics = [(run_dir / f"stage-{stage}" / "metrics.jsonl").read_text() for stage in (0, 1)]

    assert driver.train(config, show_progress=False)["complete"]
    assert_same_tensors(tensors(run_dir / "stage-0" / "export"), exported)
    assert json.loads((run_dir / "coordinator.json").read_text())["specs"]["stage-0"]["exported"]
    assert [(run_dir / f"stage-{stage}" / "metrics.jsonl").read_text()
            for stage in (0, 1)] == metrics  # not retrained


def test_worker_killed_mid_stage_resumes_elastically_exactly_once(grown, tiny_config, monkeypatch):
    reference, _ = grown
    monkeypatch.setenv("RAYGROW_FAULT", "kill_rank:1:3")
    config = plan(tiny_config, "killed-worker", second_workers={"min": 1, "max": 2}, max_failures=2)
    config = type(config)(**{**config.__dict__,
                             "checkpoint": type(config.checkpoint)(every_steps=2, keep=5)})
    summary = driver.train(config, show_progress=False)
    run_dir = Path(config.run_dir)
    assert summary["complete"]
    assert (run_dir / "stage-1" / ".fault-fired").exists()
    assert any(r.get("event") == "resume" and r["step"] == 2 for r in stage_records(run_dir, 1))
    rows = rows_of(run_dir, 0) + rows_of(run_dir, 1)
    assert len(rows) == len(set(rows)) == 8 * config.batch_rows
    assert sorted(rows) == sorted(rows_of(Path(reference.run_dir), 0)
                                  + rows_of(Path(reference.run_dir), 1))


def test_a_grown_stage_of_the_same_worker_layout_trains_in_the_same_worker_group(
        ray_local, tiny_config, monkeypatch):
    """Stage 1 keeps stage 0's one worker: it is handed to the waiting worker process (no new
    process or imports), publishes its own checkpoints (pruned to `keep`), and a rank killed in
    it restarts the group in stage 1, from stage 1's checkpoint, rows exactly once."""
    monkeypatch.setenv("RAYGROW_FAULT", "kill_rank:0:5")  # stage 1 only: stage 0 has 4 steps
    stages = [{"shape": SMALL, "tokens": 4 * 512, "workers": 1, "zero_stage": 2},
              {"growth": {"depth_op": "stack"}, "shape": LARGE, "tokens": 6 * 512, "workers": 1,
               "zero_stage": 3}]
    config = tiny_config("same-group", model=None, stages=stages,
                         train={"log_rows": True, "max_failures": 1},
                         checkpoint={"every_steps": 2, "keep": 2})
    summary = driver.train(config, show_progress=False)
    run_dir = Path(config.run_dir)
    assert summary["complete"] and [s["workers"] for s in summary["stages"]] == [1, 1]
    assert (run_dir / "stage-1" / ".fault-fired").exists()
    records = stage_records(run_dir, 1)
    startups = [r["detail"]["times"] for r in records if r.get("event") == "startup"]
    # handed over: its stamps begin when the waiting process took it; then the restarted group
    handed, restarted = startups
    assert "process" not in handed and handed["released"] <= handed["handed"]
    assert restarted["process"] < restarted["train_fn"]
    assert any(r.get("event") == "resume" and r["step"] == 4 for r in records)
    published = checkpoint.candidates(run_dir / "stage-1")
    assert [path.name for path in published] == [checkpoint.dir_name(6), checkpoint.dir_name(4)]
    checkpoint.verify(published[0])
    assert [r["step"] for r in records if "event" not in r][-1] == 6
    rows = rows_of(run_dir, 0) + rows_of(run_dir, 1)
    assert len(rows) == len(set(rows)) == 10 * config.batch_rows
    (transition,) = summary["transitions"]
    parts = transition["breakdown"]
    assert "hand_over" in parts and not {"ray_train_start", "process_and_imports"} & parts.keys()


@pytest.mark.slow
def test_killed_coordinator_resumes_in_stage_two(grown, tiny_config):
    reference, _ = grown
    config = plan(tiny_config, "killed-coordinator")
    run_dir = Path(config.run_dir)
    outcome = {}
    groups_before = set(ray.util.placement_group_table())
    thread = threading.Thread(target=lambda: outcome.update(error=_capture(driver.train, config)))
    thread.start()
    deadline = time.monotonic() + 600
    while not checkpoint.candidates(run_dir / "stage-1") and time.monotonic() < deadline:
        time.sleep(0.5)
    ray.kill(ray.get_actor(f"raygrow:{run_dir.resolve()}", namespace=driver.COORDINATOR_NAMESPACE))
    thread.join(timeout=300)
    assert isinstance(outcome["error"], RaygrowError)
    state = json.loads((run_dir / "coordinator.json").read_text())
    assert (state["current"], state["phase"]) == ("stage-1", "training")
    _remove_orphaned_placement_groups(groups_before)
    stage0_before = (run_dir / "stage-0" / "metrics.jsonl").read_text()

    summary = driver.train(config, show_progress=False)
    assert summary["complete"]
    assert (run_dir / "stage-0" / "metrics.jsonl").read_text() == stage0_before  # not retrained
    assert any(r.get("event") == "resume" for r in stage_records(run_dir, 1))
    assert_same_tensors(tensors(checkpoint.latest_valid(run_dir / "stage-1")),
                        tensors(checkpoint.latest_valid(Path(reference.run_dir) / "stage-1")))


@pytest.mark.slow
def test_masked_growth_killed_midway_regrows_identically_and_preserves_loss(
        ray_local, tiny_config, monkeypatch):
    """MSG growth in depth and width, with the coordinator killed inside the growth step: the
    rerun's grown state equals a growth computed straight from stage 0's final checkpoint (what an
    uninterrupted run does), the ramp trains, and the loss right after growth equals the loss
    before it (masks at m = 0 preserve the function)."""
    from raygrow.config import Shape
    from raygrow.grow import grow

    wide = {**SMALL, "layers": 4, "hidden": 64, "heads": 8, "kv_heads": 4, "ffn": 128}
    stages = [{"shape": SMALL, "tokens": 3 * 512},
              {"growth": {"depth_op": "masked", "width_op": "masked", "ramp_steps": 2},
               "shape": wide,
               "tokens": 4 * 512}]
    config = tiny_config("killed-growth", model=None, stages=stages)
    run_dir = Path(config.run_dir)
    monkeypatch.setenv("RAYGROW_FAULT", "grow:stage-1")
    with pytest.raises(RaygrowError, match="growing stage-1 failed"):
        driver.train(config, show_progress=False)
    state = json.loads((run_dir / "coordinator.json").read_text())
    assert (state["current"], state["phase"]) == ("stage-1", "preparing")
    assert not (run_dir / "stage-1" / "init").exists()
    monkeypatch.delenv("RAYGROW_FAULT")
    summary = driver.train(config, show_progress=False)
    assert summary["complete"]

    state, meta = checkpoint.load(checkpoint.latest_valid(run_dir / "stage-0"))
    direct = grow(state, Shape(**SMALL), Shape(**wide), meta["vocab"], "masked", "masked",
                  seed=config.train.seed + 1)
    assert_same_tensors(tensors(run_dir / "stage-1" / "init"), direct.state.params)
    (transition,) = summary["transitions"]
    assert transition["function_preserving"]
    assert transition["val_loss_after"] == pytest.approx(transition["val_loss_before"], abs=1e-4)
    assert summary["stages"][1]["final_val_loss"] < transition["val_loss_after"]


@pytest.mark.slow
def test_baseline_is_a_sibling_run_with_the_same_flops(grown):
    config, summary = grown
    # the plan itself is done: not rerun
    result = driver.train_with_baseline(config, show_progress=False)
    baseline = result["baseline"]
    assert baseline["name"] == f"{config.name}-baseline"
    step_flops = (summary["stages"][1]["flops"] / summary["stages"][1]["steps"])
    assert abs(baseline["flops"] - summary["total_flops"]) <= step_flops
    assert json.loads((Path(config.run_dir) / "summary.json").read_text())["baseline"] == baseline
    assert (Path(config.storage) / baseline["name"] / "export" / "config.json").exists()


def test_a_stage_the_cluster_cannot_hold_is_refused_before_training(ray_local, tiny_config):
    from raygrow.errors import ConfigError

    config = tiny_config("too-big", train={"workers": 8, "micro_batch": 2})
    with pytest.raises(ConfigError, match="train.workers: stage-0: 8 worker\\(s\\) need 1 CPU "
                                          "each, on one node each, but the nodes hold 4"):
        driver.train(config, show_progress=False)
    assert not (Path(config.run_dir) / "stage-0").exists()


def _remove_orphaned_placement_groups(before: set[str]) -> None:
    """Remove the placement groups this test's killed run left. Ray Train's detached
    PlacementGroupCleaner removes a dead controller's group, but it asks the State API, which
    this dashboard-free test cluster does not serve; a leaked group would hold its CPUs from the
    tests after this one (their Ray Data read tasks then wait for CPUs that never come)."""
    from ray._raylet import PlacementGroupID
    from ray.util.placement_group import PlacementGroup

    for group_id, group in ray.util.placement_group_table().items():
        if group_id not in before and group["state"] != "REMOVED":
            ray.util.remove_placement_group(PlacementGroup(PlacementGroupID.from_hex(group_id)))


def _capture(function, *args):
    try:
        function(*args, show_progress=False)
    except Exception as error:  # noqa: BLE001 - the test inspects it
        return error
    return None


@ray.remote(num_cpus=0)
class _OtherDriversCoordinator:
    """Stands for the coordinator that another driver (another job, its own namespace) started."""

    def ping(self) -> bool:
        return True


def test_second_driver_of_a_running_run_is_refused(ray_local, tiny_config):
    config = tiny_config("driven-twice")
    from raygrow.storage import canonical

    other = _OtherDriversCoordinator.options(
        name=f"raygrow:{canonical(config.run_dir)}",
        namespace=driver.COORDINATOR_NAMESPACE).remote()
    assert ray.get(other.ping.remote())
    try:
        with pytest.raises(RaygrowError, match="already running"):
            driver.train(config, show_progress=False)
        assert not list(Path(config.run_dir).glob("stage-*/checkpoint_*"))  # nothing trained
    finally:
        ray.kill(other)


@pytest.mark.slow
def test_records_lost_after_the_final_checkpoint_come_back_and_the_run_completes(
        ray_local, tiny_config):
    """A coordinator that dies after a stage's final checkpoint but before writing its last records
    down: the rerun resumes at that checkpoint, which carries its step's record, so the stage log
    ends where training ended and the run completes instead of counting the stage unfinished."""
    config = tiny_config("lost-records", train={"tokens": 4 * 512})
    run_dir = Path(config.run_dir)
    first = driver.train(config, show_progress=False)
    assert first["complete"]
    log = run_dir / "stage-0" / "metrics.jsonl"
    records = [json.loads(line) for line in log.read_text().splitlines()]
    final = [r for r in records if r.get("step") == 4 and "event" not in r]
    log.write_text("".join(json.dumps(r) + "\n" for r in records
                           if r.get("step", 0) < 4 or "event" in r))
    state = json.loads((run_dir / "coordinator.json").read_text())
    specs = {name: {**entry, "done": False} for name, entry in state["specs"].items()}
    (run_dir / "coordinator.json").write_text(json.dumps({**state, "specs": specs,
                                                          "current": "stage-0",
                                                          "phase": "training"}))

    again = driver.train(config, show_progress=False)
    assert again["complete"]
    restored = [r for r in stage_records(run_dir, 0) if r.get("step") == 4 and "event" not in r]
    assert len(restored) == 1 and restored[0]["val_loss"] == final[0]["val_loss"]
    assert restored[0]["loss"] == final[0]["loss"]


@pytest.mark.slow
def test_lr_policies_restart_rewind_and_continue_through_a_real_plan(ray_local, tiny_config):
    """Four stages of 2 steps, growing by stack (LR restart), then by nothing with LR rewind and
    with LR continue: every step's LR, as the workers applied it, against the cosine schedule
    computed here by hand."""
    import math

    stages = [{"shape": SMALL, "tokens": 2 * 512},
              {"shape": LARGE, "tokens": 2 * 512, "growth": {"depth_op": "stack", "lr": "restart"}},
              {"shape": LARGE, "tokens": 2 * 512, "growth": {"lr": "rewind"}},
              {"shape": LARGE, "tokens": 2 * 512, "growth": {"lr": "continue"}}]
    config = tiny_config("lr-policies", model=None, stages=stages,
                         train={"warmup_steps": 1, "schedule": "cosine", "lr": 1e-3,
                                "min_lr_ratio": 0.1,
                                "deterministic": False, "val_every": 2})
    summary = driver.train(config, show_progress=False)
    assert summary["complete"]
    peak, floor = 1e-3, 1e-4

    def cosine(position: int, length: int, warmup: int) -> float:
        if position < warmup:
            return peak * (position + 1) / warmup
        progress = min(1.0, (position - warmup) / max(1, length - warmup))
        return floor + (peak - floor) * 0.5 * (1 + math.cos(math.pi * progress))

    expected = [
        [cosine(0, 8, 1), cosine(1, 8, 1)],  # stage 0: one schedule over the plan's 8 steps
        # restart: a new schedule over the 6 steps left, warm-up
        [cosine(0, 6, 1), cosine(1, 6, 1)],
        [cosine(0, 4, 0), cosine(1, 4, 0)],  # rewind: over the 4 left, straight at peak
        [cosine(2, 4, 0), cosine(3, 4, 0)],  # continue: stage 2's schedule, 2 steps on
    ]
    run_dir = Path(config.run_dir)
    for stage, lrs in enumerate(expected):
        trace = [r["lr"] for r in stage_records(run_dir, stage) if "event" not in r]
        assert trace == pytest.approx(lrs, rel=1e-12), stage
    assert [t["lr"] for t in summary["transitions"]] == ["restart", "rewind", "continue"]
