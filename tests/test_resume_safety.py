"""Resume safely or refuse: inputs that changed under an old run name, bad numbers, growths that
cannot be done, damaged run state, keys that leave their directory, and a second writer of a
run. These need no Ray cluster; the fault tests with real processes and signals are in
tests/test_faults.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from raygrow import storage
from raygrow.config import load_config
from raygrow.coordinator.state import STATE_FILE, CoordinatorState
from raygrow.errors import CheckpointError, ConfigError, DataError, RaygrowError
from raygrow.lease import LEASE_FILE, Lease
from raygrow.resume import check_inputs, run_inputs
from raygrow.train.metrics import MetricsLog, read_jsonl
from raygrow.train.records import StepRecord

REPO = Path(__file__).resolve().parents[1]
DEFAULT_PLAN = REPO / "jobs" / "plans" / "tiny.yaml"


def raygrow(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "RAY_ADDRESS": ""}  # never join a cluster: these are refused before one
    return subprocess.run([sys.executable, "-m", "raygrow.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def one_line(result: subprocess.CompletedProcess) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    assert lines[0].startswith("raygrow: error: ") and "Traceback" not in result.stderr
    return lines[0]


# ---- point 1: a resume belongs to its inputs -----------------------------------------------


def recorded_run(tmp_path: Path, overrides: list[str] = ()) -> Path:
    """A run directory as the default plan's first invocation leaves it: coordinator.json with
    the run's inputs (what the driver checks before any cluster work)."""
    from raygrow.data import dataset_dir

    config = load_config(DEFAULT_PLAN, [f"storage={tmp_path}", *overrides])
    state = CoordinatorState(current="stage-0", phase="training",
                             inputs=run_inputs(config.to_dict(),
                                               storage.base_name(dataset_dir(config))))
    state.save(config.run_dir)
    return Path(config.run_dir)


DRIFT = {  # override on the rerun: the field the refusal must name
    "max_documents": ("data.max_documents=250", "data.max_documents"),
    "shuffle seed": ("data.shuffle_seed=7", "data.shuffle_seed"),
    "shuffle window": ("data.shuffle_window=2", "data.shuffle_window"),
    "batch": ("train.batch_tokens=4096", "train.batch_tokens"),
    "stages": ("stages.1.tokens=1310720", "stages[1].tokens"),
    "seq_len": ("data.seq_len=64", "data.seq_len"),
}


@pytest.mark.parametrize("case", DRIFT, ids=list(DRIFT))
def test_a_rerun_with_other_inputs_is_refused_naming_what_changed(tmp_path, case):
    override, field = DRIFT[case]
    run_dir = recorded_run(tmp_path)
    before = (run_dir / STATE_FILE).read_text()
    config = load_config(DEFAULT_PLAN, [f"storage={tmp_path}", override])
    from raygrow.data import dataset_dir
    from raygrow.driver import check_resume_inputs

    with pytest.raises(ConfigError) as refused:
        check_resume_inputs(config,
                            run_inputs(config.to_dict(), storage.base_name(dataset_dir(config))))
    assert field in str(refused.value) and "another --name" in str(refused.value)
    assert (run_dir / STATE_FILE).read_text() == before


def test_safe_changes_pass_and_the_cli_refuses_drift_before_any_work(tmp_path):
    from raygrow.data import dataset_dir

    run_dir = recorded_run(tmp_path)
    safe = load_config(DEFAULT_PLAN,
                       [f"storage={tmp_path}", "train.workers=2", "train.zero_stage=3",
                        "train.log_every=1", "checkpoint.every_steps=5", "data.ingest=direct",
                        "data.prefetch_steps=4"])
    check_inputs(CoordinatorState.load(str(run_dir)).inputs,
                 run_inputs(safe.to_dict(), storage.base_name(dataset_dir(safe))), "tiny")
    listing = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    line = one_line(raygrow("train", str(DEFAULT_PLAN), "--storage", str(tmp_path), "--set",
                            "data.max_documents=250", cwd=tmp_path))
    assert "run tiny was started with other inputs (data.max_documents: 300 → 250)" in line
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == listing  # nothing new


def test_a_changed_corpus_under_the_same_config_is_refused(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "a.txt").write_text("def f():\n    return 1\n" * 50)
    run_dir = recorded_run(tmp_path, [f"data.source={corpus}", "data.max_documents=null"])
    (corpus / "b.txt").write_text("class B:\n    pass\n" * 50)  # a new file: other rows
    line = one_line(raygrow("train", str(DEFAULT_PLAN), "--storage", str(tmp_path), "--set",
                            f"data.source={corpus}", "--set", "data.max_documents=null",
                            cwd=tmp_path))
    assert "dataset:" in line and "another --name" in line
    assert (run_dir / STATE_FILE).exists()


# ---- points 3, 4, 5: refused at load time, naming the field --------------------------------


LOAD_REFUSALS = {
    "masked ramp longer than its stage": (["stages.1.growth.depth_op=masked"],
                                          "stages[1].growth.ramp_steps: the mask ramp "
                                          "(100 steps) must end"),
    "head_dim changes": (["stages.1.shape.hidden=192", "stages.1.shape.heads=4",
                          "stages.1.growth.width_op=split"],
                         "stages[1].shape.heads: must be hidden / head_dim"),
    "hyperclone multiple": (["stages.1.shape.hidden=160", "stages.1.shape.heads=5",
                             "stages.1.growth.width_op=hyperclone"],
                            "stages[1].shape.hidden: hyperclone needs an integer multiple of 128"),
    "layer order length": (["stages.1.growth.layer_order=[0, 1, 0]"],
                           "stages[1].growth.layer_order: has 3 entries, target layers is 4"),
    "infinite lr": (["train.lr=.inf"], "train.lr: must be a finite number"),
    "nan lr": (["train.lr=.nan"], "train.lr: must be a finite number"),
    "beta1 of 2": (["train.beta1=2"], "train.beta1: must be in [0, 1), got 2"),
    "negative weight decay": (["train.weight_decay=-1"], "train.weight_decay: must be ≥ 0"),
    "value that is not YAML": (["data.source=@x"],
                               "data.source: cannot read the value '@x' as YAML"),
}


@pytest.mark.parametrize("case", LOAD_REFUSALS, ids=list(LOAD_REFUSALS))
def test_bad_values_and_impossible_growths_are_refused_at_load_time(case):
    overrides, message = LOAD_REFUSALS[case]
    with pytest.raises(ConfigError) as refused:
        load_config(DEFAULT_PLAN, overrides)
    assert str(refused.value).startswith(message), str(refused.value)
    assert "\n" not in str(refused.value)


def test_validate_runs_every_growth_check_up_front(tmp_path):
    line = one_line(raygrow("validate", str(DEFAULT_PLAN), "--set",
                            "stages.1.growth.depth_op=masked",
                            cwd=tmp_path))
    assert "stages[1].growth.ramp_steps" in line
    assert one_line(raygrow("validate", str(DEFAULT_PLAN), "--set", "train.beta1=2", cwd=tmp_path))
    ok = raygrow("validate", str(DEFAULT_PLAN), "--set", "stages.1.growth.depth_op=masked", "--set",
                 "stages.1.growth.ramp_steps=40", cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr


# ---- point 7: damaged run state ------------------------------------------------------------


@pytest.mark.parametrize("content, fragment", [
    ("{not json", "is damaged (not JSON)"),
    (json.dumps({"stage": 1, "phase": "training", "schedules": [], "growths": []}), "has schema 1"),
    (json.dumps({"schema": 2, "current": "stage-0"}), "is damaged (fields missing or wrong)"),
])
def test_a_damaged_or_old_coordinator_state_is_one_clear_line(tmp_path, content, fragment):
    (tmp_path / STATE_FILE).write_text(content)
    with pytest.raises(CheckpointError) as refused:
        CoordinatorState.load(str(tmp_path))
    assert fragment in str(refused.value) and "delete" in str(refused.value)
    assert "\n" not in str(refused.value)


def test_a_damaged_coordinator_state_stops_the_cli_before_any_work(tmp_path):
    run_dir = tmp_path / "tiny"
    run_dir.mkdir()
    (run_dir / STATE_FILE).write_text("{torn")
    line = one_line(raygrow("train", str(DEFAULT_PLAN), "--storage", str(tmp_path), cwd=tmp_path))
    assert f"{run_dir / STATE_FILE} is damaged" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny"]


def record(step: int) -> StepRecord:
    return StepRecord(step=step, lr=0.1, grad_norm=1.0, tokens=step * 8, flops=step * 80.0)


def test_a_torn_last_metrics_line_is_dropped_and_the_log_goes_on(tmp_path):
    log = MetricsLog(str(tmp_path))
    log.write([record(1), record(2)])
    with open(tmp_path / "metrics.jsonl", "a") as handle:
        handle.write('{"step": 3, "lr": 0.1, "grad_no')  # power loss in the middle of a line
    assert [r.step for r in read_jsonl(str(tmp_path / "metrics.jsonl"))] == [1, 2]
    log.write([record(3)])  # appending after a torn line must not glue onto it
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [1, 2, 3]


def test_a_damaged_metrics_line_in_the_middle_is_refused_naming_it(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1, "lr": 0.1, "grad_norm": 1, "tokens": 1, "flops": 1}\nGARBAGE\n'
                    '{"step": 2, "lr": 0.1, "grad_norm": 1, "tokens": 2, "flops": 2}\n')
    with pytest.raises(CheckpointError, match="line 2 is not a metrics record"):
        read_jsonl(str(path))


def test_all_broken_checkpoints_advise_a_new_name_not_moving_them(tmp_path):
    from raygrow.train import checkpoint

    (tmp_path / checkpoint.dir_name(2)).mkdir()
    with pytest.raises(CheckpointError) as refused:
        checkpoint.latest_valid(tmp_path)
    assert "another --name" in str(refused.value) and "move" not in str(refused.value)


# ---- point 10: object keys never leave their directory ------------------------------------


@pytest.mark.parametrize("name", ["../escape", "a/../../b", "/etc/passwd", "a//b", "./x", ""])
def test_names_that_leave_their_directory_are_refused(name):
    with pytest.raises(DataError, match="leaves its directory"):
        storage.contained(name, "s3://bucket/run")


def test_plain_names_pass():
    assert storage.contained("stage-0/checkpoint_00000002/model.safetensors", "x") == \
        "stage-0/checkpoint_00000002/model.safetensors"


def test_a_checkpoint_marker_naming_a_file_outside_is_not_loaded(tmp_path):
    from raygrow.train import checkpoint

    directory = tmp_path / checkpoint.dir_name(2)
    directory.mkdir()
    (directory / checkpoint.MARKER).write_text(
        json.dumps({"files": {"../../secret": {"bytes": 1, "sha256": "x"}}}))
    with pytest.raises(CheckpointError, match="leaves its directory"):
        checkpoint.verify(directory)


def test_a_manifest_naming_a_shard_outside_is_refused(tmp_path):
    from raygrow.data import Manifest

    manifest = Manifest(seq_len=4, tokenizer="byte", tokenizer_fingerprint="byte-v1",
                        vocab_size=258, eos_id=256,
                        train_shards=["../outside.parquet"], train_shard_rows=[1], val_shards=[],
                        val_shard_rows=[], train_rows=1, val_rows=0, train_tokens=5, documents=1,
                        replaced_documents=0, source="x")
    manifest.save(str(tmp_path))
    with pytest.raises(DataError, match="leaves its directory"):
        Manifest.load(str(tmp_path))


# ---- point 8: one writer per run directory ---------------------------------------------------


def test_a_live_lease_refuses_a_second_driver_naming_it(tmp_path):
    first = Lease(str(tmp_path), timeout_s=60)
    first.acquire("r")
    try:
        with pytest.raises(RaygrowError, match=f"pid {os.getpid()} on .*lease renewed .* ago"):
            Lease(str(tmp_path), timeout_s=60).acquire("r")
    finally:
        first.release()
    assert not (tmp_path / LEASE_FILE).exists()
    again = Lease(str(tmp_path), timeout_s=60)
    again.acquire("r")  # released: free
    again.release()


def test_a_stale_or_dead_holders_lease_is_taken_over(tmp_path):
    stale = {"id": "other", "host": "elsewhere", "pid": 1, "renewed": time.time() - 120}
    (tmp_path / LEASE_FILE).write_text(json.dumps(stale))
    taker = Lease(str(tmp_path), timeout_s=60)
    taker.acquire("r")  # not renewed for 120 s > 60 s: stale
    taker.release()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True)
    import socket

    fresh = {"id": "dead", "host": socket.gethostname(), "pid": int(dead.stdout),
             "renewed": time.time()}
    (tmp_path / LEASE_FILE).write_text(json.dumps(fresh))
    taker = Lease(str(tmp_path), timeout_s=60)
    taker.acquire("r")  # renewed just now, but by a process of this host that no longer runs
    taker.release()
    alive = {**fresh, "host": "another-host"}
    (tmp_path / LEASE_FILE).write_text(json.dumps(alive))
    with pytest.raises(RaygrowError, match="another-host"):
        Lease(str(tmp_path), timeout_s=60).acquire("r")


def test_shipped_plans_parse_with_every_growth_checked():
    for plan in sorted((REPO / "jobs" / "plans").glob("*.yaml")):
        raw = yaml.safe_load(plan.read_text())
        if "init" in json.dumps(raw.get("stages", [])):
            continue  # plans that start from a pretrained directory check it when it exists
        load_config(plan)
