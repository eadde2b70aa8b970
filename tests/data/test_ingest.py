"""Training rows through Ray Data (raygrow.data.ingest) on a real local Ray cluster: the same rows
as a direct read, in the planned order, rebuilt from any position, and a stall is one line."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from data.test_packed import check_tokens_match, write_dataset, write_flat_corpus

from raygrow.config import DataConfig
from raygrow.data import PackedRows
from raygrow.data.ingest import DirectRows, RayDataRows
from raygrow.errors import DataError

pytestmark = pytest.mark.ray
DATA = DataConfig(ingest_timeout_s=60)
BATCH = 6  # rows per step, all ranks together


def streams(dataset: Path, world: int, cls=RayDataRows, cpus: float = 0.25, data=DATA):
    rows = [PackedRows(str(dataset), shuffle_seed=3, window=2) for _ in range(world)]
    if cls is DirectRows:
        return [DirectRows(rows[rank], rank, world, BATCH) for rank in range(world)]
    return [RayDataRows(rows[rank], rank, world, BATCH, data, cpus) for rank in range(world)]


def planned(first: int, steps: int, skipped: frozenset = frozenset()):
    """The worker's plan: one batch after another from `first`, skipped batches left out."""
    def plan() -> list[int]:
        starts, position = [], first
        while len(starts) < steps:
            if position not in skipped:
                starts.append(position)
            position += BATCH
        return starts
    return plan


def test_every_rank_gets_the_rows_a_direct_read_gives_across_epochs(ray_local, tmp_path):
    dataset = write_dataset(tmp_path, train_rows=50, rows_per_shard=7)
    plan = planned(0, 20)  # 120 rows: two epochs and more, windows and epochs straddled
    for world in (1, 2):
        through, direct = streams(dataset, world), streams(dataset, world, DirectRows)
        for start in plan():
            for rank in range(world):
                row_ids, tokens = through[rank].batch(start, plan)
                expected_ids, expected = direct[rank].batch(start, plan)
                np.testing.assert_array_equal(row_ids, expected_ids)
                np.testing.assert_array_equal(tokens, expected)
                check_tokens_match(row_ids, tokens)
        assert [stream.reads for stream in through] == [1] * world  # one pipeline for the stage
        for stream in through:
            stream.close()


def test_one_and_two_workers_take_the_same_rows_per_step(ray_local, tmp_path):
    dataset = write_dataset(tmp_path, train_rows=50, rows_per_shard=7)
    plan = planned(12, 8)
    (one,), two = streams(dataset, 1), streams(dataset, 2)
    for start in plan():
        both = np.concatenate([two[rank].batch(start, plan)[0] for rank in range(2)])
        np.testing.assert_array_equal(one.batch(start, plan)[0], both)
    for stream in (one, *two):
        stream.close()


def test_a_step_out_of_plan_rebuilds_the_pipeline_from_that_position(ray_local, tmp_path):
    """A rollback (the worker goes back to a checkpoint and leaves the bad batch out) or a
    restart mid-window: the rows continue from the position asked for, in the same order."""
    dataset = write_dataset(tmp_path, train_rows=50, rows_per_shard=7)
    (stream,), (direct,) = streams(dataset, 1), streams(dataset, 1, DirectRows)
    first = planned(0, 10)
    for start in first()[:4]:
        stream.batch(start, first)
    after = planned(6, 6, skipped=frozenset({18}))  # back to step 1, batch at 18 left out
    got = [stream.batch(start, after)[0] for start in after()]
    assert after()[:3] == [6, 12, 24] and stream.reads == 2
    np.testing.assert_array_equal(np.concatenate(got),
                                  np.concatenate([direct.batch(s, after)[0] for s in after()]))
    stream.close()


def test_a_pipeline_started_ahead_is_the_one_the_first_step_reads(ray_local, tmp_path):
    """The worker starts its pipeline before it builds its engine: the first step then reads
    from it (no second pipeline), the same rows as a direct read; a start asked twice builds
    nothing more, and a first step other than the plan's rebuilds from the position asked for."""
    dataset = write_dataset(tmp_path, train_rows=50, rows_per_shard=7)
    (stream,), (direct,) = streams(dataset, 1), streams(dataset, 1, DirectRows)
    plan = planned(12, 5)
    stream.start(plan)
    stream.start(plan)
    assert stream.reads == 1
    for start in plan():
        np.testing.assert_array_equal(stream.batch(start, plan)[0], direct.batch(start, plan)[0])
    assert stream.reads == 1
    stream.close()
    stream.start(planned(0, 3))
    later = planned(6, 2)
    np.testing.assert_array_equal(stream.batch(6, later)[0], direct.batch(6, later)[0])
    assert stream.reads == 3
    stream.close()


def test_rows_that_cannot_be_read_are_one_line_naming_the_timeout(ray_local, tmp_path):
    """Training holds every CPU (here a placement group does; a known Ray Data hang: its read
    task never gets one): the wait is reported within data.ingest_timeout_s, not waited on
    forever; once CPUs free up the pipeline goes on."""
    dataset = write_dataset(tmp_path, train_rows=50, rows_per_shard=7)
    data = dataclasses.replace(DATA, ingest_timeout_s=8)
    from ray.util.placement_group import placement_group, remove_placement_group

    held = placement_group([{"CPU": ray_local.cluster_resources()["CPU"]}])
    ray_local.get(held.ready())
    (stream,) = streams(dataset, 1, cpus=1, data=data)
    with pytest.raises(DataError) as caught:
        stream.batch(0, planned(0, 3))
    message = str(caught.value)
    assert "\n" not in message and message.startswith("data.ingest_timeout_s:")
    assert "needs 1 CPU and the cluster has 0 free" in message and "within 8 s" in message
    remove_placement_group(held)
    row_ids, _ = stream.batch(0, planned(0, 3))
    np.testing.assert_array_equal(row_ids, streams(dataset, 1, DirectRows)[0].batch(0, None)[0])
    stream.close()


def test_a_damaged_shard_is_the_readers_one_line_error(ray_local, tmp_path):
    dataset = write_dataset(tmp_path, train_rows=50, rows_per_shard=7)
    for shard in dataset.glob("train-*.parquet"):
        shard.write_bytes(b"not parquet")
    (stream,) = streams(dataset, 1)
    with pytest.raises(DataError) as caught:
        stream.batch(0, planned(0, 3))
    message = str(caught.value)
    assert "\n" not in message and "is unreadable" in message
    assert "prepare the data again" in message
    stream.close()


TWO_CPUS = textwrap.dedent("""
    import json, sys, ray
    from raygrow import driver
    from raygrow.config import RunConfig, from_dict

    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="ERROR")
    config = from_dict(RunConfig, {
        "name": "two-on-two", "storage": sys.argv[1],
        "data": {"source": "stdlib", "seq_len": 32, "max_documents": 60, "val_fraction": 0.1,
                 "rows_per_shard": 64, "shuffle_window": 2},
        "model": {"layers": 1, "hidden": 32, "heads": 4, "kv_heads": 2, "ffn": 64},
        "train": {"tokens": 4 * 512, "batch_tokens": 512, "micro_batch": 4, "workers": 2,
                  "zero_stage": 2, "lr": 1e-3, "warmup_steps": 1, "log_every": 1, "val_every": 4,
                  "val_rows": 8, "log_rows": True, "max_failures": 0},
        "checkpoint": {"every_steps": 2}})
    from raygrow.train.resources import worker_resources
    summary = driver.train(config, show_progress=False)
    print("RESULT " + json.dumps({"worker_cpus": worker_resources(config, 2)[0]["CPU"],
                                  "steps": summary["stages"][0]["steps"],
                                  "dataset": summary["dataset"], "run_dir": config.run_dir}))
    ray.shutdown()
""")


def test_two_workers_on_a_two_cpu_cluster_leave_ray_data_a_cpu_and_finish(tmp_path):
    """The embedded default's case (REFERENCES: two 1-CPU workers on 2 CPUs starve a streaming
    dataset): the default share leaves each worker's read task its CPUs, and every row of the
    four steps is trained once, in the stream's order."""
    done = subprocess.run([sys.executable, "-c", TWO_CPUS, str(tmp_path)], capture_output=True,
                          text=True, timeout=400)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.split("RESULT ", 1)[1].splitlines()[0])
    assert result["worker_cpus"] == 0.75 and result["steps"] == 4
    trained = []
    for path in sorted((Path(result["run_dir"]) / "stage-0" / "rows").glob("rank-*.jsonl")):
        trained += [row for line in path.read_text().splitlines()
                    for row in json.loads(line)["rows"]]
    stream = PackedRows(result["dataset"], "train", 0, 2)
    assert sorted(trained) == sorted(stream.take(0, 4 * 16)[0].tolist())  # 16 rows a step
    assert len(set(trained)) == len(trained)


RSS_THROUGH_RAY_DATA = textwrap.dedent("""
    import sys, ray
    from raygrow.config import DataConfig
    from raygrow.data import PackedRows
    from raygrow.data.ingest import RayDataRows

    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="ERROR")
    rows = PackedRows(sys.argv[1], shuffle_seed=0, window=2)
    stream = RayDataRows(rows, 0, 1, 1024, DataConfig(), 0.25)
    def resident(kind):  # MiB of this process's resident memory of one kind, now
        for line in open("/proc/self/status"):
            if line.startswith(kind + ":"):
                return int(line.split()[1]) // 1024

    starts, peaks = list(range(0, rows.num_rows, 1024)), {"RssAnon": 0, "RssShmem": 0}
    for start in starts:
        stream.batch(start, lambda: starts[starts.index(start):])
        peaks = {kind: max(peak, resident(kind)) for kind, peak in peaks.items()}
    stream.close()
    print("RSS", peaks["RssAnon"], peaks["RssShmem"])
    ray.shutdown()
""")


def test_a_workers_memory_stays_flat_through_ray_data_when_the_corpus_grows_tenfold(tmp_path):
    """Peak private resident memory (RssAnon) of a process that takes one epoch of rows of an
    8-shard and an 80-shard corpus (2 MiB per shard) through the Ray Data pipeline, as a worker
    does: it holds the steps in flight, not the corpus (160 MiB for 80 shards). The object
    store's shared pages it maps (RssShmem) are Ray's store, bounded by its object_store_memory."""
    peaks = []
    for shards in (8, 80):
        directory = write_flat_corpus(tmp_path / f"corpus-{shards}", shards)
        done = subprocess.run([sys.executable, "-c", RSS_THROUGH_RAY_DATA, str(directory)],
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        peaks.append([int(value) for value in done.stdout.split("RSS ", 1)[1].split()[:2]])
    (small, small_shared), (large, large_shared) = peaks
    assert large < small + 40, (f"private peak RSS {small} MiB for 8 shards, {large} MiB for 80 "
                                f"(shared {small_shared} / {large_shared} MiB)")
