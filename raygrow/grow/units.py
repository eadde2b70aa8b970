"""Unit maps: where each unit of a grown dimension comes from.

A width operator is described by one map per dimension (hidden coordinates, FFN units, query heads,
key/value heads). Target unit t either copies source unit `source[t]` or is new (`-1`). Every
tensor of the model is then rebuilt by indexing along its axes with these maps, which is what lets
parameters and both Adam moments go through the same code.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import torch

NEW = -1  # marks a target unit with no source unit


@dataclass(frozen=True)
class UnitMap:
    # int64 [target units]: the source unit each target unit copies, NEW if none
    source: torch.Tensor

    @property
    def size(self) -> int:
        return self.source.numel()

    @cached_property
    def is_new(self) -> torch.Tensor:
        return self.source == NEW

    @cached_property
    def copies(self) -> torch.Tensor:
        """For each target unit, how many target units hold its source unit (1 for a new unit).

        A fan-in weight reading a copied unit is divided by this so the copies sum to the original.
        """
        held = self.source[~self.is_new]
        counts = torch.zeros(self.size, dtype=torch.long).index_add_(0, held, torch.ones_like(held))
        return torch.where(self.is_new, 1, counts[self.source.clamp(min=0)])

    @cached_property
    def is_original(self) -> torch.Tensor:
        """True at the first target unit holding each source unit: where carried moments go."""
        positions = torch.arange(self.size)
        first = torch.full((self.size,), self.size).scatter_reduce(
            0, self.source.clamp(min=0), torch.where(self.is_new, self.size, positions),
            reduce="amin")
        return ~self.is_new & (first[self.source.clamp(min=0)] == positions)

    def per_dimension(self, width: int) -> "UnitMap":
        """The map over a head's `width` coordinates each, from a map over whole heads."""
        offsets = torch.arange(width)
        expanded = self.source[:, None] * width + offsets[None, :]
        return UnitMap(torch.where(self.is_new[:, None], NEW, expanded).reshape(-1))


def identity(size: int) -> UnitMap:
    return UnitMap(torch.arange(size))


def extend(source_size: int, target_size: int, how: str,
           generator: torch.Generator | None = None) -> UnitMap:
    """Keep source units 0..n-1 in place and add `target_size - source_size` units after them.

    how="new": the added units are new. how="copy": they copy source units, whole tiles first
    (0..n-1, 0..n-1, ...) so an integer multiple copies every unit equally often; a remainder copies
    a random subset without repeats (seeded by `generator`), or the first units when none is given.
    """
    added = target_size - source_size
    if how == "new":
        extra = torch.full((added,), NEW)
    else:
        tiles, remainder = divmod(added, source_size)
        order = torch.randperm(source_size, generator=generator) if generator is not None \
            else torch.arange(source_size)
        extra = torch.cat([torch.arange(source_size).repeat(tiles),
                           order[:remainder].sort().values])
    return UnitMap(torch.cat([torch.arange(source_size), extra]))


def head_maps(source_heads: int, source_kv: int, target_heads: int, target_kv: int, how: str,
              generator: torch.Generator | None = None) -> tuple[UnitMap, UnitMap]:
    """(query-head map, key/value-head map) that keep grouped-query attention consistent.

    In Hugging Face Llama, query head i reads key/value head i // group. Target kv head k <
    source_kv is source kv head k with its source query heads first in its group, then added query
    heads; kv heads past source_kv are added whole groups. A copied query head always sits in a
    group whose kv head copies its own source kv head, so it attends exactly like its source head.
    """
    source_group, target_group = source_heads // source_kv, target_heads // target_kv
    kv_map = extend(source_kv, target_kv, how, generator)
    query_sources: list[int] = []
    for kv_source in kv_map.source.tolist():
        if kv_source == NEW:
            query_sources += [NEW] * target_group
            continue
        in_group = extend(source_group, target_group, how, generator).source
        query_sources += [NEW if q == NEW else kv_source * source_group + q
                          for q in in_group.tolist()]
    return UnitMap(torch.tensor(query_sources, dtype=torch.long)), kv_map
