"""Weighted interleaving of packed rows: a data mixture realised in the shards themselves.

Each source is packed into rows of its own first (a document never shares a row with another
source's); `schedule` then decides, row by row, which source the next output row comes from, and
`interleave` writes the output shards in that order. Training reads the result like any packed
dataset: the stream position stays one global row number, so exactly-once holds unchanged.

The schedule is largest deficit first: output row n + 1 comes from the source i that is furthest
behind its share, max(share_i * (n + 1) - taken_i), ties to the lower index. For two sources every
prefix of the schedule is within half a row of the shares, so every shard (a contiguous run of
rows) is within one row of them. With more sources a prefix can lag by about a row (measured
over random weights: at most 0.8 rows for three sources, 1.03 for five), so a shard is then
within about two rows.
It has no randomness: the training order's shuffle (data.shuffle_seed) comes on top at train time.

A source running out ends the mixture (EXHAUSTED_STOP): the schedule stops at the first row it
would take from a source with no rows left, so no row is repeated and the shares hold; the other
sources' remaining rows are left out (the manifest records how many).
"""

from __future__ import annotations

import numpy as np

from raygrow.data.packed import ShardWriter, read_shard


def schedule(weights: list[float], rows: list[int]) -> np.ndarray:
    """The source of each output row (int64), until a source with `rows[i]` rows runs out."""
    total = sum(weights)
    shares = [weight / total for weight in weights]
    taken = [0] * len(weights)
    order = []
    sources = range(len(weights))
    while True:
        emitted = len(order) + 1
        chosen = max(sources, key=lambda index: shares[index] * emitted - taken[index])
        if taken[chosen] == rows[chosen]:
            return np.asarray(order, dtype=np.int64)
        taken[chosen] += 1
        order.append(chosen)


class _RowStream:
    """One source's packed rows in order, read a shard at a time (memory: one shard)."""

    def __init__(self, directory: str, shards: list[str], shard_rows: list[int], row_tokens: int):
        self._files = [(f"{directory}/{name}", rows) for name, rows in zip(shards, shard_rows)]
        self._row_tokens = row_tokens
        self._rows = np.empty((0, row_tokens), dtype=np.int32)

    def take(self, count: int) -> np.ndarray:
        while len(self._rows) < count:
            path, rows = self._files.pop(0)
            self._rows = np.concatenate([self._rows, read_shard(path, rows, self._row_tokens)])
        taken, self._rows = self._rows[:count], self._rows[count:]
        return taken


def interleave(packed: list[ShardWriter], order: np.ndarray, out: ShardWriter) -> None:
    """Write the rows of the sources' writers (finished) into `out` in `order`, a shard's worth
    of rows at a time."""
    streams = [_RowStream(writer.directory, writer.shards, writer.shard_rows, writer.row_tokens)
               for writer in packed]
    for start in range(0, len(order), out.rows_per_shard):
        chunk = order[start:start + out.rows_per_shard]
        rows = np.empty((len(chunk), out.row_tokens), dtype=np.int32)
        for source, stream in enumerate(streams):
            here = chunk == source
            rows[here] = stream.take(int(here.sum()))
        out.add(rows.reshape(-1))
    out.finish()
