"""Data mixtures (`data.sources`) and Hugging Face `datasets` directories as sources.

The schedule, the config and the sources are checked without Ray; one real Ray prepare packs a
two-source mixture (a `save_to_disk` directory and a parquet dataset directory) and reads back
which source every row of every shard came from.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from raygrow import cli, storage
from raygrow.config import (
    DataConfig,
    RunConfig,
    Shape,
    SourceConfig,
    TrainConfig,
    load_config,
)
from raygrow.data import Manifest, PackedRows, check_sources, dataset_dir, prepare
from raygrow.data.mixture import schedule
from raygrow.data.sources import read_documents, resolve_source
from raygrow.errors import ConfigError, DataError
from raygrow.resume import check_inputs, run_inputs

REPO = Path(__file__).resolve().parents[2]
A, B = ord("a"), ord("b")  # source A's documents are all "a", source B's all "b" (byte ids)


def deviation_per_shard(order: np.ndarray, shares: list[float], shard_rows: int) -> float:
    """The largest |rows of a source in a shard − its share of the shard's rows|."""
    worst = 0.0
    for start in range(0, len(order), shard_rows):
        chunk = order[start:start + shard_rows]
        counts = np.bincount(chunk, minlength=len(shares))
        worst = max(worst, float(np.abs(counts - np.asarray(shares) * len(chunk)).max()))
    return worst


@pytest.mark.parametrize("weights", [[1, 1], [3, 1], [0.7, 0.3], [1, 9], [0.123, 0.877]])
@pytest.mark.parametrize("shard_rows", [1, 7, 8, 64])
def test_two_sources_match_their_weights_within_one_row_per_shard(weights, shard_rows) -> None:
    order = schedule(weights, [5000, 5000])
    shares = [weight / sum(weights) for weight in weights]
    assert deviation_per_shard(order, shares, shard_rows) <= 1.0
    counts = np.bincount(order, minlength=2)
    assert np.abs(counts - np.asarray(shares) * len(order)).max() <= 0.5  # the whole dataset too


def test_the_mixture_ends_when_the_first_source_runs_out() -> None:
    order = schedule([3, 1], [300, 1000])  # A runs out at its weight first: 300 + 100 rows
    assert np.bincount(order).tolist() == [300, 100]
    assert schedule([1, 1], [0, 50]).size == 0  # an empty source ends it at once
    assert schedule([2, 1, 1], [40, 40, 40]).tolist() == schedule([2, 1, 1], [40, 40, 40]).tolist()


# ---- config -------------------------------------------------------------------------------


def mixture_plan(tmp_path: Path, sources: list[dict], **data: object) -> Path:
    plan = tmp_path / "mix.yaml"
    plan.write_text(yaml.safe_dump({
        "name": "mix", "storage": str(tmp_path / "runs"),
        "data": {"sources": sources, "seq_len": 32, "rows_per_shard": 8, "val_fraction": 0.25,
                 **data},
        "model": {"layers": 1, "hidden": 16, "heads": 2},
        "train": {"tokens": 64, "batch_tokens": 64, "micro_batch": 2}}))
    return plan


CONFIG_REFUSALS = {  # (sources, overrides, the refusal's start)
    "source and sources": ([{"source": "stdlib"}], ["data.source=stdlib"],
                           "data.sources: give either data.source or data.sources, not both"),
    "zero weight": ([{"source": "stdlib"}, {"source": "stdlib", "weight": 0}], [],
                    "data.sources[1].weight: must be > 0, got 0"),
    "negative weight": ([{"source": "stdlib", "weight": -1}], [],
                        "data.sources[0].weight: must be > 0"),
    "no source": ([], [], "data.sources: must list at least one source"),
    "unknown key": ([{"source": "stdlib", "share": 1}], [], "data.sources[0].share: unknown key"),
    "versions plan": ([{"source": "stdlib"}],
                      ["versions={data: [{documents: {start: 0, end: 9}}]}"],
                      "data.sources: a versions plan reads data.source"),
}


@pytest.mark.parametrize("case", CONFIG_REFUSALS, ids=list(CONFIG_REFUSALS))
def test_bad_mixtures_are_refused_naming_the_field(tmp_path, case) -> None:
    sources, overrides, expected = CONFIG_REFUSALS[case]
    with pytest.raises(ConfigError) as error:
        load_config(mixture_plan(tmp_path, sources), overrides)
    assert str(error.value).startswith(expected) and "\n" not in str(error.value)


def test_the_single_source_form_is_a_mixture_of_one() -> None:
    data = DataConfig(source="stdlib", text_field="body")
    assert data.mixture == [SourceConfig("stdlib", 1.0, "body")]
    assert DataConfig().source == "stdlib"  # the default corpus, as before
    mixed = DataConfig(sources=[SourceConfig("x", 2.0), SourceConfig("y", 1.0, "content")])
    assert [(s.source, s.weight, s.text_field) for s in mixed.mixture] == [
        ("x", 2.0, "text"), ("y", 1.0, "content")]


# ---- sources: datasets directories, stdlib globs, one-line refusals -------------------------


def save_dataset(directory: Path, texts: list[str], field: str = "text", shards: int = 1) -> Path:
    import datasets

    datasets.Dataset.from_dict({field: texts, "id": list(range(len(texts)))}).save_to_disk(
        str(directory), num_shards=shards)
    return directory


def test_a_load_from_disk_directory_is_a_source(tmp_path) -> None:
    texts = [f"document {index} " * (index + 1) for index in range(30)]
    directory = save_dataset(tmp_path / "saved", texts, field="content", shards=3)
    files = resolve_source(str(directory))
    assert [file.kind for file in files] == ["arrow"] * 3
    read = [document.text for file in files for document in read_documents(file, "content")]
    assert read == texts  # every row, in the dataset's own order
    check_sources(DataConfig(source=str(directory), text_field="content"))


def test_a_parquet_dataset_directory_is_a_source(tmp_path) -> None:
    import datasets

    texts = [f"row {index}" for index in range(20)]
    (tmp_path / "pq").mkdir()
    datasets.Dataset.from_dict({"text": texts}).to_parquet(str(tmp_path / "pq" / "train.parquet"))
    files = resolve_source(str(tmp_path / "pq"))
    assert [document.text for file in files for document in read_documents(file, "text")] == texts


def test_a_stdlib_glob_names_part_of_the_standard_library() -> None:
    email = resolve_source("stdlib:email/*")
    assert email and all("/email/" in file.path for file in email)
    assert len(email) < len(resolve_source("stdlib"))


def refusal(data: DataConfig) -> str:
    with pytest.raises(DataError) as error:
        check_sources(data)
    assert "\n" not in str(error.value)
    return str(error.value)


def test_sources_are_checked_one_by_one_naming_their_field(tmp_path) -> None:
    import datasets

    good = save_dataset(tmp_path / "good", ["some text"] * 3)
    missing = refusal(DataConfig(sources=[SourceConfig(str(good)),
                                          SourceConfig(str(tmp_path / "nope"))]))
    assert missing.startswith(f"data.sources[1].source: {tmp_path / 'nope'} does not exist")
    column = refusal(DataConfig(sources=[SourceConfig(str(good), text_field="body")]))
    assert column.startswith("data.sources[0].source: ") and "no column 'body'" in column
    assert column.endswith("set data.sources[0].text_field")
    assert refusal(DataConfig(sources=[SourceConfig("stdlib:no_such_package/*")])).startswith(
        "data.sources[0].source: stdlib:no_such_package/* matches no .py file")
    splits = datasets.DatasetDict({"train": datasets.Dataset.from_dict({"text": ["a"]}),
                                   "test": datasets.Dataset.from_dict({"text": ["b"]})})
    splits.save_to_disk(str(tmp_path / "dict"))
    whole = refusal(DataConfig(source=str(tmp_path / "dict")))
    assert "is a datasets DatasetDict (splits: test, train)" in whole and "/dict/test" in whole


def test_the_cli_refuses_a_missing_source_in_one_line(tmp_path) -> None:
    plan = mixture_plan(tmp_path, [{"source": "stdlib:json/*"}, {"source": str(tmp_path / "gone")}])
    result = subprocess.run([sys.executable, "-m", "raygrow.cli", "validate", str(plan)],
                            env={**os.environ, "RAY_ADDRESS": ""}, capture_output=True, text=True,
                            timeout=120, check=False)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    assert lines[0].startswith(f"raygrow: error: data.sources[1].source: {tmp_path / 'gone'}")


# ---- the mixture is part of the dataset key, so a resume under another mixture is refused ---


def test_a_changed_weight_is_another_dataset_and_its_resume_is_refused(tmp_path) -> None:
    plan = REPO / "jobs" / "plans" / "tiny_mixture.yaml"
    first = load_config(plan, [f"storage={tmp_path}"])
    recorded = run_inputs(first.to_dict(), storage.base_name(dataset_dir(first)))
    again = load_config(plan, [f"storage={tmp_path}", "train.workers=1"])
    check_inputs(recorded, run_inputs(again.to_dict(), storage.base_name(dataset_dir(again))), "r")
    for override, field in (("data.sources.1.weight=2", "data.sources[1].weight"),
                            ("data.sources.1.source=stdlib:json/*", "data.sources[1].source"),
                            ("data.sources.0.text_field=body", "data.sources[0].text_field")):
        changed = load_config(plan, [f"storage={tmp_path}", override])
        assert dataset_dir(changed) != dataset_dir(first)
        now = run_inputs(changed.to_dict(), storage.base_name(dataset_dir(changed)))
        with pytest.raises(ConfigError) as refused:
            check_inputs(recorded, now, "tiny-mixture")
        assert f"({field}: " in str(refused.value) and "another --name" in str(refused.value)


def test_the_cli_refuses_a_rerun_under_a_changed_weight_before_any_work(tmp_path) -> None:
    from raygrow.coordinator.state import CoordinatorState

    plan = REPO / "jobs" / "plans" / "tiny_mixture.yaml"
    config = load_config(plan, [f"storage={tmp_path}"])
    inputs = run_inputs(config.to_dict(), storage.base_name(dataset_dir(config)))
    CoordinatorState(current="stage-0", phase="training", inputs=inputs).save(config.run_dir)
    result = subprocess.run([sys.executable, "-m", "raygrow.cli", "train", str(plan), "--storage",
                             str(tmp_path), "--set", "data.sources.1.weight=2"],
                            env={**os.environ, "RAY_ADDRESS": ""}, capture_output=True, text=True,
                            timeout=300, check=False)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    assert "run tiny-mixture was started with other inputs (data.sources[1].weight: 1.0 → 2.0)" \
        in lines[0]
    assert not (tmp_path / "datasets").exists()  # refused before preparing anything


def test_the_single_source_key_is_unchanged(tmp_path) -> None:
    """A `data.source` config keeps the dataset directory it had before mixtures (so prepared
    datasets and runs from before keep theirs): the key below is the one raygrow always wrote."""
    import hashlib

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "a.txt").write_text("some text " * 40)
    config = RunConfig(model=Shape(layers=1, hidden=16, heads=2), storage=str(tmp_path),
                       data=DataConfig(source=str(corpus), seq_len=32),
                       train=TrainConfig(tokens=64, batch_tokens=64, micro_batch=2))
    file = resolve_source(str(corpus))[0]
    legacy = {"format": 1, "source": str(corpus), "files": [[file.path, file.size, file.mtime_ns]],
              "text_field": "text", "tokenizer": "byte-v1", "seq_len": 32, "val_fraction": 0.02,
              "max_documents": None, "rows_per_shard": 4096}
    digest = hashlib.sha256(json.dumps(legacy, sort_keys=True).encode()).hexdigest()[:16]
    assert storage.base_name(dataset_dir(config)) == f"corpus-byte-32-{digest}"


# ---- one real Ray prepare --------------------------------------------------------------------


def letter_documents(letter: str, count: int, salt: int) -> list[str]:
    """Distinct documents of one letter (distinct lengths: the validation split hashes the text)."""
    return [letter * (20 + (index * 7 + salt) % 90 + index) for index in range(count)]


@pytest.mark.ray
def test_a_two_source_mixture_is_packed_by_weight(ray_local, tmp_path, capsys) -> None:
    import datasets

    saved = save_dataset(tmp_path / "a_saved", letter_documents("a", 60, 0), field="content",
                         shards=2)
    (tmp_path / "b_parquet").mkdir()
    datasets.Dataset.from_dict({"text": letter_documents("b", 120, 3)}).to_parquet(
        str(tmp_path / "b_parquet" / "part-0.parquet"))
    sources = [{"source": str(saved), "weight": 3, "text_field": "content"},
               {"source": str(tmp_path / "b_parquet"), "weight": 1}]
    plan = mixture_plan(tmp_path, sources)
    config = load_config(plan)
    manifest = prepare(config, show_progress=False)
    directory = dataset_dir(config)
    assert Manifest.load(directory) == manifest
    assert not any(name.startswith(".") for name in os.listdir(directory))  # spool removed

    # which source each row came from, in file order (shard after shard): its letter
    tokens = PackedRows(directory, "train", shuffle_seed=None).take(0, manifest.train_rows)[1]
    letters = [set(row.tolist()) - {256} for row in tokens]
    assert all(found in ({A}, {B}) for found in letters)  # a row holds one source's text only
    order = np.array([0 if found == {A} else 1 for found in letters])
    assert len(manifest.train_shards) > 3
    assert deviation_per_shard(order, [0.75, 0.25], config.data.rows_per_shard) <= 1.0

    first, second = manifest.sources
    assert manifest.exhausted == "stop"
    assert (first.weight, first.target, second.target) == (3, 0.75, 0.25)
    assert [first.train_rows, second.train_rows] == np.bincount(order).tolist()
    assert (first.train_tokens, second.train_tokens) == (first.train_rows * 33,
                                                         second.train_rows * 33)
    assert first.realised == first.train_rows / manifest.train_rows
    assert abs(first.realised - 0.75) <= 0.5 / manifest.train_rows
    assert first.val_rows + second.val_rows == manifest.val_rows and second.val_rows > 0
    # A, with its weight 3 but fewer rows, runs out first; B's remaining rows are left out
    assert first.packed_train_rows == first.train_rows
    assert second.packed_train_rows > second.train_rows
    assert first.documents == 60 and second.documents == 120
    assert manifest.documents == 180 and manifest.source == f"{saved} + {tmp_path / 'b_parquet'}"

    # the same config prepared again elsewhere gives the same shards, byte for byte
    again = load_config(plan, [f"storage={tmp_path / 'again'}"])
    assert prepare(again, show_progress=False) == manifest
    for name in manifest.train_shards + manifest.val_shards:
        assert Path(dataset_dir(again), name).read_bytes() == Path(directory, name).read_bytes()

    # `raygrow prepare` shows the realised mixture (the dataset is reused: no second packing)
    capsys.readouterr()
    assert cli.main(["prepare", str(plan), "-q"]) == 0
    printed = capsys.readouterr().out
    assert f"{manifest.train_rows} train rows" in printed and "mixture of 2 sources" in printed
    assert f"{saved}: weight 3, target 75.0%, realised {first.realised:.1%}" in printed
    assert f"{first.train_tokens} train tokens ({first.train_rows} rows)" in printed
    unused = second.packed_train_rows - second.train_rows
    assert f"{second.train_tokens} train tokens" in printed and f"{unused} rows left out" in printed
    assert json.loads(Path(directory, "manifest.json").read_text())["sources"][1]["weight"] == 1
