"""PackedRows: exact, resumable row access by global stream position (no Ray needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from raygrow.data import Manifest, PackedRows
from raygrow.data.packed import ShardWriter, epoch_permutation
from raygrow.errors import DataError

SEQ_LEN = 4
ROW = SEQ_LEN + 1


def write_dataset(directory: Path, train_rows: int = 50, val_rows: int = 6,
                  rows_per_shard: int = 7) -> Path:
    """A dataset whose row r holds the tokens r*ROW .. r*ROW+ROW-1, so tokens reveal the row id."""
    directory.mkdir(parents=True, exist_ok=True)
    writers = {}
    for split, rows in (("train", train_rows), ("val", val_rows)):
        writer = ShardWriter(str(directory), split, SEQ_LEN, rows_per_shard)
        stream = np.arange(rows * ROW + 3, dtype=np.int32)  # 3 extra tokens: a tail that is dropped
        for chunk in np.array_split(stream, 5):  # arrives in pieces, like batches from Ray
            writer.add(chunk)
        writer.finish()
        assert writer.dropped_tokens == 3
        writers[split] = writer
    Manifest(seq_len=SEQ_LEN, tokenizer="byte", tokenizer_fingerprint="byte-v1", vocab_size=1 << 20,
             eos_id=0, train_shards=writers["train"].shards,
             train_shard_rows=writers["train"].shard_rows,
             val_shards=writers["val"].shards, val_shard_rows=writers["val"].shard_rows,
             train_rows=train_rows, val_rows=val_rows, train_tokens=train_rows * ROW, documents=1,
             replaced_documents=0, source="test").save(str(directory))
    return directory


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    return write_dataset(tmp_path)


def check_tokens_match(row_ids: np.ndarray, tokens: np.ndarray) -> None:
    assert row_ids.dtype == np.int64 and tokens.dtype == np.int32
    assert tokens.shape == (len(row_ids), ROW)
    expected = row_ids[:, None] * ROW + np.arange(ROW)
    np.testing.assert_array_equal(tokens, expected)


def test_writer_cuts_fixed_size_shards(dataset: Path) -> None:
    manifest = Manifest.load(str(dataset))
    assert manifest.train_shard_rows == [7] * 7 + [1]
    assert manifest.train_shards[0] == "train-00000.parquet"
    assert manifest.val_shard_rows == [6]


def test_every_row_exactly_once_per_epoch(dataset: Path) -> None:
    rows = PackedRows(str(dataset))
    assert (rows.num_rows, rows.seq_len) == (50, SEQ_LEN)
    orders = []
    for epoch in range(3):
        row_ids, tokens = rows.take(epoch * 50, 50)
        check_tokens_match(row_ids, tokens)
        np.testing.assert_array_equal(np.sort(row_ids), np.arange(50))
        orders.append(row_ids)
    assert not np.array_equal(orders[0], orders[1]) and not np.array_equal(orders[1], orders[2])
    assert not np.array_equal(orders[0], np.arange(50))  # actually shuffled


def test_take_is_position_arithmetic(dataset: Path) -> None:
    rows = PackedRows(str(dataset))
    for start, first, second in [(0, 10, 5), (45, 5, 10), (48, 2, 100), (97, 1, 1), (120, 0, 7)]:
        whole_ids, whole_tokens = rows.take(start, first + second)
        ids_a, tokens_a = rows.take(start, first)
        ids_b, tokens_b = rows.take(start + first, second)
        np.testing.assert_array_equal(whole_ids, np.concatenate([ids_a, ids_b]))
        np.testing.assert_array_equal(whole_tokens, np.concatenate([tokens_a, tokens_b]))


def test_order_depends_only_on_seed_and_epoch(dataset: Path) -> None:
    a, b = PackedRows(str(dataset), shuffle_seed=7), PackedRows(str(dataset), shuffle_seed=7)
    b.take(0, 130)  # b has read other epochs first: caches must not change anything
    np.testing.assert_array_equal(a.take(60, 30)[0], b.take(60, 30)[0])
    other = PackedRows(str(dataset), shuffle_seed=8)
    assert not np.array_equal(a.take(0, 50)[0], other.take(0, 50)[0])


def test_no_shuffle_is_file_order(dataset: Path) -> None:
    rows = PackedRows(str(dataset), shuffle_seed=None)
    row_ids, tokens = rows.take(48, 4)
    np.testing.assert_array_equal(row_ids, [48, 49, 0, 1])
    check_tokens_match(row_ids, tokens)


def test_validation_split(dataset: Path) -> None:
    rows = PackedRows(str(dataset), split="val", shuffle_seed=None)
    assert rows.num_rows == 6
    row_ids, tokens = rows.take(0, 6)
    check_tokens_match(row_ids, tokens)


def test_permutation_is_pinned() -> None:
    # A resumed run must see the same order on any numpy version: the values are fixed here.
    assert epoch_permutation(10, 0, 0).tolist() == [1, 6, 2, 0, 8, 4, 5, 7, 9, 3]
    assert epoch_permutation(10, 0, 1).tolist() == [6, 4, 3, 9, 8, 7, 0, 2, 1, 5]
    assert epoch_permutation(10, 1, 0).tolist() == [9, 6, 0, 1, 8, 7, 3, 2, 5, 4]


def test_negative_position_is_refused(dataset: Path) -> None:
    with pytest.raises(ValueError):
        PackedRows(str(dataset)).take(-1, 2)


def test_directory_without_manifest_is_not_a_dataset(tmp_path: Path) -> None:
    (tmp_path / "train-00000.parquet").write_bytes(b"partial")
    with pytest.raises(DataError) as error:
        PackedRows(str(tmp_path))
    assert "manifest.json" in str(error.value) and str(tmp_path) in str(error.value)


def test_manifest_naming_a_missing_shard_is_incomplete(dataset: Path) -> None:
    (dataset / "train-00003.parquet").unlink()
    with pytest.raises(DataError) as error:
        Manifest.load(str(dataset))
    assert "train-00003.parquet is missing" in str(error.value)


def test_damaged_manifest(dataset: Path) -> None:
    (dataset / "manifest.json").write_text('{"seq_len": 4')
    with pytest.raises(DataError) as error:
        Manifest.load(str(dataset))
    assert "damaged" in str(error.value)


def test_shard_that_disagrees_with_manifest(tmp_path: Path) -> None:
    dataset = write_dataset(tmp_path / "a")
    other = write_dataset(tmp_path / "b", train_rows=60)
    (dataset / "train-00000.parquet").write_bytes((other / "train-00008.parquet").read_bytes())
    rows = PackedRows(str(dataset), shuffle_seed=None)
    with pytest.raises(DataError) as error:
        rows.take(0, 1)
    assert "train-00000.parquet" in str(error.value)


# ---- the streaming order: a window of shards at a time, bounded memory ---------------------


@pytest.mark.parametrize("seed, window", [(3, 8), (5, 1), (5, 2), (5, 3), (5, 8)])
def test_uneven_takes_cover_each_epoch_exactly_once(dataset: Path, seed: int, window: int) -> None:
    rows = PackedRows(str(dataset), shuffle_seed=seed, window=window)
    position, seen = 0, []
    for count in [1, 7, 13, 3, 29, 50, 11, 36]:  # three epochs, chunks straddle windows and epochs
        row_ids, tokens = rows.take(position, count)
        check_tokens_match(row_ids, tokens)
        seen.extend(row_ids.tolist())
        position += count
    for epoch in range(3):
        assert sorted(seen[epoch * 50:(epoch + 1) * 50]) == list(range(50))
    assert seen[:50] != sorted(seen[:50])  # shuffled


def test_a_window_reads_only_its_shards_and_a_fresh_reader_resumes_mid_window(
        dataset: Path) -> None:
    rows = PackedRows(str(dataset), shuffle_seed=5, window=2)
    order = rows.row_ids(0, 50)
    shard_of = order // 7  # 7 rows per shard, the last shard has 1
    windows, start = [], 0
    while start < 50:  # consecutive positions stay inside one window's two shards
        shards = {int(shard_of[start])}
        end = start
        while end < 50 and len(shards | {int(shard_of[end])}) <= 2:
            shards.add(int(shard_of[end]))
            end += 1
        windows.append(shards)
        start = end
    assert len(windows) == 4  # 8 shards, 2 per window
    assert sorted(s for window in windows for s in window) == list(range(8))
    fresh = PackedRows(str(dataset), shuffle_seed=5, window=2)  # a restart at position 23
    np.testing.assert_array_equal(fresh.take(23, 10)[0], order[23:33])


def test_streaming_order_is_pinned(dataset: Path) -> None:
    # A resumed run must see the same order on any numpy and raygrow version.
    assert PackedRows(str(dataset), shuffle_seed=0, window=2).row_ids(0, 12).tolist() == PINNED


PINNED = [12, 8, 43, 10, 9, 11, 44, 42, 46, 7, 47, 45]  # shards 1 and 6 form the first window


def test_sequential_reading_reads_each_shard_once_per_epoch_with_a_bounded_cache(
        tmp_path: Path) -> None:
    dataset = write_dataset(tmp_path / "wide", train_rows=40 * 7, rows_per_shard=7)
    rows = PackedRows(str(dataset), shuffle_seed=1, window=3)
    held = []
    for start in range(0, 2 * rows.num_rows, 5):  # two epochs in steps of 5 rows
        rows.take(start, 5)
        held.append(rows.cached_shards)
    assert max(held) <= rows.cache_shards == 6
    assert rows.shard_reads <= 2 * 40 + 6  # once per epoch (plus a window re-read at the boundary)


RSS_PROBE = """
import resource, sys
from raygrow.data import PackedRows
rows = PackedRows(sys.argv[1], shuffle_seed=0, window=2)
for start in range(0, rows.num_rows, 64):
    rows.take(start, 64)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)
"""


def write_flat_corpus(directory: Path, shards: int) -> Path:
    """`shards` train shards of 4096 rows of 128 tokens (2 MiB each; shard k's rows hold k)."""
    directory.mkdir()
    writer = ShardWriter(str(directory), "train", 127, 4096)
    for shard in range(shards):
        writer.add(np.full(4096 * 128, shard, dtype=np.int32))
    writer.finish()
    val = ShardWriter(str(directory), "val", 127, 4096)
    val.add(np.zeros(128, dtype=np.int32))
    val.finish()
    Manifest(seq_len=127, tokenizer="byte", tokenizer_fingerprint="byte-v1",
             vocab_size=256, eos_id=0,
             train_shards=writer.shards, train_shard_rows=writer.shard_rows,
             val_shards=val.shards,
             val_shard_rows=val.shard_rows, train_rows=writer.rows, val_rows=1,
             train_tokens=writer.rows * 128, documents=1, replaced_documents=0,
             source="test").save(str(directory))
    return directory


def test_reader_memory_stays_flat_when_the_corpus_grows_tenfold(tmp_path: Path) -> None:
    """Peak RSS of a process reading one epoch of an 8-shard and an 80-shard corpus (2 MiB per
    shard): the whole-corpus cache of before held 16 vs 160 MiB; the window keeps both flat."""
    import subprocess
    import sys

    peaks = []
    for shards in (8, 80):
        directory = write_flat_corpus(tmp_path / f"corpus-{shards}", shards)
        out = subprocess.run([sys.executable, "-c", RSS_PROBE, str(directory)], capture_output=True,
                             text=True, check=True)
        peaks.append(int(out.stdout.strip()))
    small, large = peaks
    assert large < small + 40, f"peak RSS {small} MiB for 8 shards, {large} MiB for 80"
