"""Packed rows: the shard format, its writer, and exact random access by stream position.

A shard is a parquet file with one column `tokens`: fixed-size lists of seq_len + 1 int32 ids.
Training reads rows by *global stream position*: position p lies in epoch p // num_rows, and
within an epoch rows come in a seeded permutation. A checkpoint stores only the next position, so
resuming, resizing or growing the model never re-reads or skips a row (DESIGN invariant 1).
"""

from __future__ import annotations

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
    """Cuts one split's token stream into rows of seq_len + 1 and writes fixed-size shards in order."""

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
    """A shard's rows as an int32 array [rows, row_tokens]; DataError if it does not match the manifest."""
    filesystem, local = storage.resolve(path)
    try:
        column = pq.read_table(local, columns=[TOKENS], filesystem=filesystem).column(TOKENS)
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


def epoch_permutation(num_rows: int, seed: int, epoch: int) -> np.ndarray:
    """Row order of one epoch: rows sorted by a keyed hash of their index.

    Written out (not numpy's Generator) so the order is the same on every numpy version: a run
    resumed after an upgrade must not reshuffle the epoch it is in the middle of.
    """
    key = (seed * 0x9E3779B97F4A7C15 + epoch * 0xD1B54A32D192ED03 + 1) & _MASK64
    hashed = _splitmix64(np.arange(num_rows, dtype=np.uint64) ^ np.uint64(key))
    return np.argsort(hashed, kind="stable").astype(np.int64)


class PackedRows:
    """Exact, resumable access to one split of a prepared dataset.

    Shards are read lazily on first use and kept in memory; every process reads on its own, so
    any number of workers can share one directory.
    """

    _CACHED_EPOCHS = 2  # a take may straddle one epoch boundary

    def __init__(self, directory: str, split: str = "train", shuffle_seed: int | None = 0) -> None:
        manifest = Manifest.load(directory)
        self.directory = directory
        self.split = split
        self.shuffle_seed = shuffle_seed
        self.seq_len = manifest.seq_len
        self._shards, self._shard_rows = manifest.shards(split)
        self._shard_starts = np.concatenate([[0], np.cumsum(self._shard_rows)]).astype(np.int64)
        self.num_rows = int(self._shard_starts[-1])
        if self.num_rows == 0:
            raise DataError(f"{directory} has no {split} rows; prepare the data again with more text")
        self._loaded: dict[int, np.ndarray] = {}
        self._orders: dict[int, np.ndarray] = {}

    def take(self, start: int, count: int) -> tuple[np.ndarray, np.ndarray]:
        """The rows at stream positions start .. start+count-1.

        Returns (row ids int64[count], tokens int32[count, seq_len + 1]); a row id is the row's
        index in file order, stable across epochs and processes.
        """
        if start < 0 or count < 0:
            raise ValueError(f"start and count must be ≥ 0, got start={start}, count={count}")
        positions = np.arange(start, start + count, dtype=np.int64)
        epochs, offsets = np.divmod(positions, self.num_rows)
        row_ids = np.empty(count, dtype=np.int64)
        for epoch in np.unique(epochs):
            in_epoch = epochs == epoch
            row_ids[in_epoch] = self._order(int(epoch))[offsets[in_epoch]]
        return row_ids, self._rows(row_ids)

    def _order(self, epoch: int) -> np.ndarray:
        if self.shuffle_seed is None:
            return np.arange(self.num_rows, dtype=np.int64)
        if epoch not in self._orders:
            if len(self._orders) >= self._CACHED_EPOCHS:
                self._orders.pop(min(self._orders))
            self._orders[epoch] = epoch_permutation(self.num_rows, self.shuffle_seed, epoch)
        return self._orders[epoch]

    def _rows(self, row_ids: np.ndarray) -> np.ndarray:
        tokens = np.empty((len(row_ids), self.seq_len + 1), dtype=np.int32)
        shard_of = np.searchsorted(self._shard_starts, row_ids, side="right") - 1
        for shard in np.unique(shard_of):
            in_shard = shard_of == shard
            tokens[in_shard] = self._shard(int(shard))[row_ids[in_shard] - self._shard_starts[shard]]
        return tokens

    def _shard(self, index: int) -> np.ndarray:
        if index not in self._loaded:
            path = f"{self.directory}/{self._shards[index]}"
            self._loaded[index] = read_shard(path, self._shard_rows[index], self.seq_len + 1)
        return self._loaded[index]
