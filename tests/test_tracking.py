"""Experiment tracking (raygrow.tracking): TensorBoard, W&B (offline) and MLflow (file store),
each read back with its own library's reader.

The fast tests drive the tracker the way the driver does, on metrics.jsonl files written with
the project's own MetricsLog: a 2-stage plan whose second stage is grown, and a resume that
retrains steps after its checkpoint. The Ray test trains a real tiny 2-stage plan with all
three trackers on.
"""

from __future__ import annotations

import glob
import json
import struct
from pathlib import Path

import pytest

from raygrow.config import RunConfig, from_dict
from raygrow.coordinator.spec import plan_specs
from raygrow.errors import ConfigError
from raygrow.tracking import RunTracker, check_tracking
from raygrow.train.metrics import MetricsLog
from raygrow.train.records import EventRecord, StepRecord


def plan_config(storage: str, name: str = "tracked", **tracking) -> RunConfig:
    raw = {
        "name": name, "storage": storage,
        "data": {"seq_len": 32},
        "train": {"batch_tokens": 128, "micro_batch": 4, "log_every": 1, "val_every": 2},
        "stages": [
            {"tokens": 4 * 128,
             "shape": {"layers": 1, "hidden": 32, "heads": 4, "kv_heads": 2, "ffn": 64}},
            {"tokens": 3 * 128,
             "shape": {"layers": 2, "hidden": 32, "heads": 4, "kv_heads": 2, "ffn": 64},
             "growth": {"depth_op": "stack"}},
        ],
        "tracking": tracking or {
            "tensorboard": True,
            "wandb": {"project": "raygrow-test", "mode": "offline"},
            "mlflow": {"tracking_uri": f"file:{storage}/mlruns", "experiment": "tests"},
        },
    }
    return from_dict(RunConfig, raw)


def step(index: int, loss: float, val: float | None = None) -> StepRecord:
    return StepRecord(step=index, lr=1e-3, grad_norm=0.5, tokens=index * 128, flops=index * 1e6,
                      loss=loss, tokens_per_s=1000.0, val_loss=val)


def write(run_dir: str, spec: str, records: list) -> None:
    MetricsLog(f"{run_dir}/{spec}").write(records)


# ---- readers: each tracker's files through its own library ---------------------------------


def tensorboard_scalars(logdir: str) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(logdir, size_guidance={"scalars": 0, "tensors": 0})
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)]
            for tag in events.Tags()["scalars"]}


def tensorboard_texts(logdir: str, tag: str) -> list[tuple[int, str]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(logdir, size_guidance={"tensors": 0})
    events.Reload()
    return [(e.step, e.tensor_proto.string_val[0].decode())
            for e in events.Tensors(f"{tag}/text_summary")]


def wandb_history(path: str) -> list[dict]:
    """The history rows of an offline W&B run file (LevelDB log format of wandb's protobuf
    Records: a 7-byte W&B header, then 32 KiB blocks of chunks with 7-byte chunk headers)."""
    from wandb.proto import wandb_internal_pb2

    data = Path(path).read_bytes()
    assert data[:4] == b":W&B"
    block, position, chunks, pending = 32768, 7, [], b""
    while position + 7 <= len(data):
        room = block - position % block
        if room < 7:
            position += room
            continue
        _, length, kind = struct.unpack("<IHB", data[position:position + 7])
        if length == 0 and kind == 0:
            position += room
            continue
        chunk = data[position + 7:position + 7 + length]
        position += 7 + length
        if kind == 1:
            chunks.append(chunk)
        elif kind == 2:
            pending = chunk
        elif kind == 3:
            pending += chunk
        elif kind == 4:
            chunks.append(pending + chunk)
    rows = []
    for raw in chunks:
        record = wandb_internal_pb2.Record()
        record.ParseFromString(raw)
        if record.WhichOneof("record_type") == "history":
            rows.append({item.key or "/".join(item.nested_key): json.loads(item.value_json)
                         for item in record.history.item})
    return rows


def wandb_files(directory: str, run_id: str) -> list[str]:
    return sorted(glob.glob(f"{directory}/wandb/offline-run-*-{run_id}/run-{run_id}.wandb"))


def mlflow_client(storage: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=f"file:{storage}/mlruns")


# ---- a grown 2-stage plan, then a resume ----------------------------------------------------


@pytest.fixture(scope="module")
def tracked(tmp_path_factory):
    """Invocation 1 trains stage-0 to step 3 and stops; invocation 2 resumes from the step-2
    checkpoint (steps 3 retrained), finishes stage-0, grows, trains stage-1."""
    storage = str(tmp_path_factory.mktemp("tracking"))
    config = plan_config(storage)
    specs = plan_specs(config, f"{storage}/datasets/key")
    run_dir = config.run_dir

    first = RunTracker(config, specs)
    write(run_dir, "stage-0", [EventRecord(event="start", step=0, tokens=0, flops=0.0),
                               step(1, 5.0), step(2, 4.5, val=4.6), step(3, 4.2)])
    first.close(None, complete=False)
    ids = json.loads(Path(run_dir, "tracking.json").read_text())["backends"]

    second = RunTracker(config, specs)
    write(run_dir, "stage-0", [EventRecord(event="resume", step=2, checkpoint="checkpoint_000002"),
                               step(2, 4.5, val=4.6), step(3, 4.25), step(4, 4.0, val=4.1)])
    second.poll(force=True)
    write(run_dir, "stage-1",
          [EventRecord(event="growth", step=0, val_loss=4.1, tokens=512, flops=4e6),
                               step(1, 3.9), step(2, 3.8, val=3.85), step(3, 3.7, val=3.75)])
    summary = {"name": config.name, "complete": True, "eval": {"iq": {"mapping": 0.25}},
               "stages": [{"final_val_loss": 4.1}, {"final_val_loss": 3.75}]}
    second.close(summary, complete=True)
    return {"storage": storage, "run_dir": run_dir, "ids": ids,
            "final": json.loads(Path(run_dir, "tracking.json").read_text())}


def test_tensorboard_logs_each_step_once_with_a_global_step_and_the_growth_marker(tracked):
    scalars = tensorboard_scalars(f"{tracked['run_dir']}/tensorboard")
    # stage-0 steps 1-4, then stage-1 steps 1-3 as global steps 5-7; step 3 once (from the
    # first invocation, not again after the resume)
    assert [s for s, _ in scalars["train/loss"]] == [1, 2, 3, 4, 5, 6, 7]
    assert dict(scalars["train/loss"])[3] == pytest.approx(4.2)
    assert scalars["val/loss"] == [(2, pytest.approx(4.6)), (4, pytest.approx(4.1)),
                                   (6, pytest.approx(3.85)), (7, pytest.approx(3.75))]
    # the previous stage's last step: before and after on one x
    assert scalars["growth"] == [(4, 1.0)]
    assert scalars["val/loss_after_growth"] == [(4, pytest.approx(4.1))]
    assert [s for s, _ in scalars["events/resume"]] == [2]
    assert [value for _, value in scalars["stage"]] == [0.0] * 4 + [1.0] * 3
    assert scalars["eval/iq/mapping"] == [(7, pytest.approx(0.25))]
    texts = [text for _, text in tensorboard_texts(f"{tracked['run_dir']}/tensorboard", "events")]
    assert any("stage-1: growth at step 0 from stage-0 (depth stack" in t for t in texts)
    stages = tensorboard_texts(f"{tracked['run_dir']}/tensorboard", "stages")
    assert [(s, t.split(" at ")[0]) for s, t in stages] == [
        (0, "stage-0 begins"), (4, "stage-0 ends"), (4, "stage-1 begins"), (7, "stage-1 ends")]
    config_text = tensorboard_texts(f"{tracked['run_dir']}/tensorboard", "config")
    assert '"tracking"' in config_text[0][1]


def test_wandb_offline_resume_continues_the_same_run_id(tracked):
    run_id = tracked["ids"]["wandb"]["id"]
    assert tracked["final"]["backends"]["wandb"]["id"] == run_id
    files = wandb_files(tracked["run_dir"], run_id)
    assert len(files) == 2  # one offline file per invocation, both of the same run (`wandb sync`)
    rows = [row for path in files for row in wandb_history(path)]
    losses = [(row["_step"], row["train/loss"]) for row in rows if "train/loss" in row]
    assert [s for s, _ in losses] == [1, 2, 3, 4, 5, 6, 7]
    growth = [row for row in rows if "growth" in row]
    assert [(row["_step"], row["growth"], row["val/loss_after_growth"])
            for row in growth] == [(4, 1, 4.1)]
    assert any("stage-1: growth at step 0" in row.get("events", "") for row in rows)


def test_mlflow_file_store_resume_continues_the_same_run(tracked):
    client = mlflow_client(tracked["storage"])
    run_id = tracked["ids"]["mlflow"]["run_id"]
    assert tracked["final"]["backends"]["mlflow"]["run_id"] == run_id
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["train.batch_tokens"] == "128"
    history = client.get_metric_history(run_id, "train/loss")
    assert sorted(m.step for m in history) == [1, 2, 3, 4, 5, 6, 7]
    assert [(m.step, m.value) for m in client.get_metric_history(run_id, "growth")] == [(4, 1.0)]
    growth_tags = [value for key, value in run.data.tags.items() if key.startswith("events.")
                   and "growth" in value]
    assert (growth_tags == [tags for tags in growth_tags if "from stage-0" in tags]
            and len(growth_tags) == 1)
    experiment = client.get_experiment_by_name("tests")
    assert [r.info.run_id for r in client.search_runs([experiment.experiment_id])] == [run_id]


def test_cursor_records_what_was_forwarded(tracked):
    cursors = tracked["final"]["cursors"]
    assert cursors["stage-0"] == {"step": 4, "events": 2, "began": True, "ended": True}
    assert cursors["stage-1"] == {"step": 3, "events": 1, "began": True, "ended": True}


def test_a_tracker_that_cannot_start_is_left_out_and_the_rest_go_on(tmp_path, caplog):
    config = plan_config(str(tmp_path), tensorboard=True,
                         mlflow={"tracking_uri": "nosuchscheme://x", "experiment": "e"})
    specs = plan_specs(config, f"{tmp_path}/datasets/key")
    tracker = RunTracker(config, specs)
    assert list(tracker.backends) == ["tensorboard"]
    assert any("tracking: mlflow could not start" in r.getMessage() for r in caplog.records)
    write(config.run_dir, "stage-0", [step(1, 5.0), step(2, 4.0)])
    tracker.close(None, complete=False)
    assert ([s for s, _ in tensorboard_scalars(f"{config.run_dir}/tensorboard")["train/loss"]]
            == [1, 2])


# ---- config and refusals --------------------------------------------------------------------


def test_tracking_is_off_by_default_and_imports_nothing(tmp_path):
    import subprocess
    import sys

    code = ("import sys; from raygrow.config import RunConfig, Shape; import raygrow.driver; "
            "c = RunConfig(model=Shape(layers=1, hidden=32, heads=4, kv_heads=2, ffn=64)); "
            "assert not c.tracking.enabled; "
            "print(sorted(m for m in ('wandb', 'mlflow', 'tensorboard') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("tracking, field", [
    ({"wandb": {"mode": "offline"}}, "tracking.wandb.project"),
    ({"wandb": {"project": "p", "mode": "sometimes"}}, "tracking.wandb.mode"),
    ({"mlflow": {"experiment": ""}}, "tracking.mlflow.experiment"),
    ({"tensorboard": "yes"}, "tracking.tensorboard"),
    ({"every_s": 0}, "tracking.every_s"),
    ({"neptune": {}}, "tracking.neptune"),
])
def test_bad_tracking_config_is_refused_naming_the_field(tmp_path, tracking, field):
    with pytest.raises(ConfigError) as error:
        plan_config(str(tmp_path), **tracking)
    assert error.value.field == field


def test_local_tracker_dirs_are_required_with_s3_storage():
    with pytest.raises(ConfigError) as error:
        plan_config("s3://bucket/runs", tensorboard=True)
    assert error.value.field == "tracking.tensorboard_dir"
    with pytest.raises(ConfigError) as error:
        plan_config("s3://bucket/runs", wandb={"project": "p"})
    assert error.value.field == "tracking.wandb.dir"
    assert plan_config("s3://bucket/runs", tensorboard=True,
                       tensorboard_dir="/tmp/tb").tracking.tensorboard


def test_a_missing_tracker_library_is_refused_before_cluster_work(tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "wandb" else real(name, *a))
    with pytest.raises(ConfigError) as error:
        check_tracking(plan_config(str(tmp_path), wandb={"project": "p", "mode": "offline"}))
    assert error.value.field == "tracking.wandb" and "raygrow[tracking]" in str(error.value)
    check_tracking(plan_config(str(tmp_path), tensorboard=True))  # installed: no error


@pytest.mark.slow
@pytest.mark.ray
def test_ray_two_stage_plan_with_every_tracker(ray_local, tiny_config, tmp_path):
    """A real grown 2-stage plan, stopped after 2 steps and resumed, all three trackers on:
    one tracked run each, every step once, the growth marker at the stage boundary."""
    import dataclasses

    from raygrow import driver
    from raygrow.config import TrackingConfig

    shape = {"hidden": 32, "heads": 4, "kv_heads": 2, "ffn": 64}
    stages = [{"tokens": 3 * 512, "shape": {**shape, "layers": 1}},
              {"tokens": 3 * 512, "shape": {**shape, "layers": 2}, "growth": {"depth_op": "stack"}}]
    tracking = from_dict(TrackingConfig, {
        "tensorboard": True, "every_s": 1,
        "wandb": {"project": "raygrow-test", "mode": "offline"},
        "mlflow": {"tracking_uri": f"file:{tmp_path}/mlruns", "experiment": "ray"}})

    def plan(**train):
        config = tiny_config("tracked-plan", model=None, stages=stages, train=train)
        return dataclasses.replace(config, tracking=tracking)

    stopped = driver.train(plan(stop_after=2), show_progress=False)
    assert not stopped["complete"]
    run_dir = plan().run_dir
    first_ids = json.loads(Path(run_dir, "tracking.json").read_text())["backends"]
    summary = driver.train(plan(), show_progress=False)
    assert summary["complete"]
    ids = json.loads(Path(run_dir, "tracking.json").read_text())["backends"]
    assert ids["wandb"]["id"] == first_ids["wandb"]["id"]
    assert ids["mlflow"]["run_id"] == first_ids["mlflow"]["run_id"]

    scalars = tensorboard_scalars(f"{run_dir}/tensorboard")
    assert [s for s, _ in scalars["train/loss"]] == [1, 2, 3, 4, 5, 6]
    assert [s for s, _ in scalars["growth"]] == [3]
    assert [s for s, _ in scalars["events/resume"]] == [2]
    assert any("growth" in text
               for _, text in tensorboard_texts(f"{run_dir}/tensorboard", "events"))

    wandb_rows = [row for path in wandb_files(run_dir, ids["wandb"]["id"])
                  for row in wandb_history(path)]
    assert len(wandb_files(run_dir, ids["wandb"]["id"])) == 2
    assert sorted(row["_step"] for row in wandb_rows if "train/loss" in row) == [1, 2, 3, 4, 5, 6]
    assert [row["_step"] for row in wandb_rows if "growth" in row] == [3]

    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"file:{tmp_path}/mlruns")
    run = client.get_run(ids["mlflow"]["run_id"])
    assert run.info.status == "FINISHED"
    assert (sorted(m.step for m in client.get_metric_history(run.info.run_id, "train/loss"))
            == [1, 2, 3, 4, 5, 6])
    assert [m.step for m in client.get_metric_history(run.info.run_id, "growth")] == [3]
    final = client.get_metric_history(run.info.run_id, "val/loss")[-1]
    assert final.value == pytest.approx(summary["stages"][1]["final_val_loss"], rel=1e-6)
