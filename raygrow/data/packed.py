"""Packed rows: the shard format, its writer, and exact random access by stream position.

A shard is a parquet file with one column `tokens`: fixed-size lists of seq_len + 1 int32 ids.
Training reads rows by *global stream position*: position p lies in epoch p // num_rows, and
within an epoch rows come in a seeded streaming order (shards in a seeded order, a window of
shards at a time, rows shuffled inside the window). A checkpoint stores only the next position,
so resuming, resizing or growing the model never re-reads or skips a row (DESIGN invariant 1).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from raygrow import storage
from raygrow.data.manifest import Manifest
from raygrow.errors import DataError

TOKENS = "tokens"
_MASK64 = (1 << 64) - 1


def shard_name(split: str, index: int) -> str:
    return f"{split}-{index:05d}.parquet"


class ShardWriter:
    """Cuts one split's token stream into rows of seq_len + 1 and writes fixed-size shards in
    order."""

    def __init__(self, directory: str, split: str, seq_len: int, rows_per_shard: int) -> None:
        self.directory = directory
        self.split = split
        self.row_tokens = seq_len + 1
        self.rows_per_shard = rows_per_shard
        self.shards: list[str] = []
        self.shard_rows: list[int] = []
        self.dropped_tokens = 0  # the tail that does not fill a row
        self._pending = np.empty(0, dtype=np.int32)

    def add(self, tokens: np.ndarray) -> None:
        """Append tokens to the stream, writing every shard that fills up."""
        self._pending = np.concatenate([self._pending, tokens.astype(np.int32, copy=False)])
        shard_tokens = self.rows_per_shard * self.row_tokens
        full = len(self._pending) // shard_tokens
        for index in range(full):
            self._write(self._pending[index * shard_tokens:(index + 1) * shard_tokens])
        self._pending = self._pending[full * shard_tokens:]

    def finish(self) -> None:
        """Write the last, shorter shard; tokens that do not fill a whole row are dropped."""
        rows = len(self._pending) // self.row_tokens
        if rows:
            self._write(self._pending[:rows * self.row_tokens])
        self.dropped_tokens = len(self._pending) - rows * self.row_tokens
        self._pending = np.empty(0, dtype=np.int32)

    @property
    def rows(self) -> int:
        return sum(self.shard_rows)

    def _write(self, tokens: np.ndarray) -> None:
        name = shard_name(self.split, len(self.shards))
        rows = pa.FixedSizeListArray.from_arrays(pa.array(tokens, type=pa.int32()), self.row_tokens)
        filesystem, path = storage.resolve(f"{self.directory}/{name}")
        pq.write_table(pa.table({TOKENS: rows}), path, filesystem=filesystem, compression="zstd",
                       row_group_size=len(rows))
        self.shards.append(name)
        self.shard_rows.append(len(rows))


def read_shard(path: str, rows: int, row_tokens: int) -> np.ndarray:
    """A shard's rows as an int32 array [rows, row_tokens]; DataError if it does not match the
    manifest."""
    try:  # the whole file in one read (on S3 one GET), then parsed from memory
        column = pq.read_table(pa.BufferReader(storage.read_bytes(path)),
                               columns=[TOKENS]).column(TOKENS)
        tokens = column.combine_chunks().flatten().to_numpy(zero_copy_only=False)
    except (OSError, pa.ArrowInvalid, KeyError) as error:
        raise DataError(f"{path} is unreadable ({error}); delete its dataset directory and prepare "
                        "the data again") from None
    if len(tokens) != rows * row_tokens:
        raise DataError(f"{path} holds {len(tokens)} tokens, its manifest says {rows} rows of "
                        f"{row_tokens}; delete its dataset directory and prepare the data again")
    return tokens.astype(np.int32, copy=False).reshape(rows, row_tokens)


def _splitmix64(values: np.ndarray) -> np.ndarray:
    """A bijective 64-bit mix (SplitMix64's finaliser); uint64 arithmetic wraps by design."""
    values = values ^ (values >> np.uint64(30))
    values = values * np.uint64(0xBF58476D1CE4E5B9)
    values = values ^ (values >> np.uint64(27))
    values = values * np.uint64(0x94D049BB133111EB)
    return values ^ (values >> np.uint64(31))


def _key(seed: int, epoch: int, salt: int = 0) -> int:
    return (seed * 0x9E3779B97F4A7C15 + epoch * 0xD1B54A32D192ED03 + salt * 0x94D049BB133111EB
            + 1) & _MASK64


def keyed_permutation(count: int, key: int) -> np.ndarray:
    """0..count-1 sorted by a keyed hash of the index.

    Written out (not numpy's Generator) so the order is the same on every numpy version: a run
    resumed after an upgrade must not reshuffle the epoch it is in the middle of.
    """
    hashed = _splitmix64(np.arange(count, dtype=np.uint64) ^ np.uint64(key))
    return np.argsort(hashed, kind="stable").astype(np.int64)


def epoch_permutation(num_rows: int, seed: int, epoch: int) -> np.ndarray:
    """A whole-epoch permutation of `num_rows` (the shuffle inside one window uses the same
    hash)."""
    return keyed_permutation(num_rows, _key(seed, epoch))


@dataclass(frozen=True)
class EpochLayout:
    """One epoch of the streaming order: the shards in a seeded order, cut into windows of
    `window` consecutive shards; window k's rows fill positions window_starts[k] onwards."""

    shards: np.ndarray  # shard indices in this epoch's order
    window: int
    window_starts: np.ndarray  # first position of each window, plus the epoch's end

    def window_shards(self, k: int) -> np.ndarray:
        return self.shards[k * self.window:(k + 1) * self.window]


class PackedRows:
    """Exact, resumable access to one split of a prepared dataset, read as a stream.

    The order of an epoch (seed, epoch) reads sequentially: the shards in a seeded order, taken
    `window` at a time, the rows of one window in a seeded permutation. A position (the next
    global row) therefore maps to a row without reading anything before it, and consecutive
    positions touch at most `window` shards. Shards are read on first use and held in a cache of
    two windows (a take may straddle a window or an epoch boundary), so a worker's memory for
    data is bounded by the window, not by the corpus. `shuffle_seed=None` is file order.
    """

    def __init__(self, directory: str, split: str = "train", shuffle_seed: int | None = 0,
                 window: int = 8, manifest: Manifest | None = None) -> None:
        """`manifest`: the directory's, already loaded and checked (Manifest.load looks up every
        shard: on S3 a request each, which a Ray Data read task need not repeat)."""
        if window < 1:
            raise ValueError(f"window must be ≥ 1 shard, got {window}")
        manifest = manifest or Manifest.load(directory)
        self.manifest = manifest
        self.directory = directory
        self.split = split
        self.shuffle_seed = shuffle_seed
        self.window = window
        self.seq_len = manifest.seq_len
        self._shards, self._shard_rows = manifest.shards(split)
        self._sizes = np.asarray(self._shard_rows, dtype=np.int64)
        self._shard_starts = np.concatenate([[0], np.cumsum(self._sizes)])
        self.num_rows = int(self._shard_starts[-1])
        if self.num_rows == 0:
            raise DataError(f"{directory} has no {split} rows; prepare the data again with more "
                            "text")
        self.cache_shards = 2 * window
        self._loaded: OrderedDict[int, np.ndarray] = OrderedDict()  # least recently used first
        self._layouts: dict[int, EpochLayout] = {}
        self._permutations: dict[tuple[int, int], np.ndarray] = {}
        self.shard_reads = 0  # shard files read so far (a cache miss each)

    def take(self, start: int, count: int) -> tuple[np.ndarray, np.ndarray]:
        """The rows at stream positions start .. start+count-1.

        Returns (row ids int64[count], tokens int32[count, seq_len + 1]); a row id is the row's
        index in file order, stable across epochs and processes.
        """
        if start < 0 or count < 0:
            raise ValueError(f"start and count must be ≥ 0, got start={start}, count={count}")
        return self._take_ids(self.row_ids(start, count))

    def row_ids(self, start: int, count: int) -> np.ndarray:
        """The row ids at stream positions start .. start+count-1 (reads no shard)."""
        positions = np.arange(start, start + count, dtype=np.int64)
        epochs, offsets = np.divmod(positions, self.num_rows)
        row_ids = np.empty(count, dtype=np.int64)
        for epoch in np.unique(epochs):
            in_epoch = epochs == epoch
            row_ids[in_epoch] = self._epoch_rows(int(epoch), offsets[in_epoch])
        return row_ids

    def windows(self, positions: np.ndarray) -> np.ndarray:
        """The window each stream position lies in, numbered across epochs (epoch · windows per
        epoch + k): consecutive positions of one window read the same `window` shards."""
        positions = np.asarray(positions, dtype=np.int64)
        epochs, offsets = np.divmod(positions, self.num_rows)
        numbers = np.empty(len(positions), dtype=np.int64)
        for epoch in np.unique(epochs):
            here = epochs == epoch
            starts = self._layout(int(epoch)).window_starts
            k = np.searchsorted(starts, offsets[here], side="right") - 1
            numbers[here] = epoch * (len(starts) - 1) + k
        return numbers

    def _take_ids(self, row_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        tokens = np.empty((len(row_ids), self.seq_len + 1), dtype=np.int32)
        shard_of = np.searchsorted(self._shard_starts, row_ids, side="right") - 1
        for shard in dict.fromkeys(shard_of.tolist()):  # in order of first use
            in_shard = shard_of == shard
            tokens[in_shard] = self._shard(shard)[row_ids[in_shard] - self._shard_starts[shard]]
        return row_ids, tokens

    def _epoch_rows(self, epoch: int, offsets: np.ndarray) -> np.ndarray:
        if self.shuffle_seed is None:
            return offsets.copy()
        layout = self._layout(epoch)
        windows = np.searchsorted(layout.window_starts, offsets, side="right") - 1
        rows = np.empty(len(offsets), dtype=np.int64)
        for k in np.unique(windows):
            here = windows == k
            shards = layout.window_shards(int(k))
            sizes = self._sizes[shards]
            permutation = self._permutation(epoch, int(k), int(sizes.sum()))
            local = permutation[offsets[here] - layout.window_starts[k]]
            starts = np.concatenate([[0], np.cumsum(sizes)])
            which = np.searchsorted(starts, local, side="right") - 1
            rows[here] = self._shard_starts[shards[which]] + local - starts[which]
        return rows

    def _layout(self, epoch: int) -> EpochLayout:
        if epoch not in self._layouts:
            if len(self._layouts) >= 2:  # a take may straddle one epoch boundary
                self._layouts.pop(min(self._layouts))
            shards = (np.arange(len(self._sizes)) if self.shuffle_seed is None else  # file order
                      keyed_permutation(len(self._sizes), _key(self.shuffle_seed, epoch, salt=1)))
            sizes = self._sizes[shards]
            ends = np.cumsum(sizes)[self.window - 1::self.window]
            if len(sizes) % self.window:
                ends = np.concatenate([ends, [sizes.sum()]])
            self._layouts[epoch] = EpochLayout(shards, self.window, np.concatenate([[0], ends]))
        return self._layouts[epoch]

    def _permutation(self, epoch: int, k: int, rows: int) -> np.ndarray:
        if (epoch, k) not in self._permutations:
            if len(self._permutations) >= 2:
                self._permutations.pop(min(self._permutations))
            key = _key(self.shuffle_seed, epoch, salt=k + 2)
            self._permutations[(epoch, k)] = keyed_permutation(rows, key)
        return self._permutations[(epoch, k)]

    def _shard(self, index: int) -> np.ndarray:
        if index in self._loaded:
            self._loaded.move_to_end(index)
            return self._loaded[index]
        path = f"{self.directory}/{self._shards[index]}"
        rows = read_shard(path, self._shard_rows[index], self.seq_len + 1)
        self.shard_reads += 1
        self._loaded[index] = rows
        while len(self._loaded) > self.cache_shards:
            self._loaded.popitem(last=False)
        return rows

    @property
    def cached_shards(self) -> int:
        """Shards held in memory now (at most `cache_shards`)."""
        return len(self._loaded)
