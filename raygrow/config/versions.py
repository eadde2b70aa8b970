"""The `versions:` section of a run config: data versions released one after another.

```yaml
model: {layers: 2, hidden: 64, heads: 4}      # the first version's shape
versions:
  mode: path_switching                        # or from_scratch, continual
  decay_fraction: 0.6                         # path_switching: a branch decays over this share
                                              # of its version's steps
  data:                                       # oldest first
    - {source: stdlib, documents: {start: 0, end: 200}}
    - {documents: {start: 200, end: 400}}     # source left out: data.source
    - documents: {start: 400, end: 600}
      shape: {layers: 4, hidden: 64, heads: 4}  # this boundary is also a growth point
      growth: {depth_op: stack}
```
Validation is pure (no data is read): see `check_versions` for the checks that need the rest of
the run config, and `raygrow.versions.data.check_version_sources` for the ones that read sources.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from raygrow.config.binding import require
from raygrow.config.growth import GrowthConfig, check_transition
from raygrow.config.shape import Shape
from raygrow.errors import ConfigError

MODES = ("path_switching", "from_scratch", "continual")

# LR path switching (arXiv 2410.04103): each release branches off the main path this far before
# its version's end and decays the LR to the minimum over the rest. 0.6 is the paper's share of a
# version's steps; with four equal versions it gives their cost figure: main path 4 versions plus
# branches 4·0.6, less the last version's main-path tail (trained when a next version comes),
# = 5.8 version-lengths against 1+2+3+4 = 10 from scratch, i.e. 58%.
PAPER_DECAY_FRACTION = 0.6


@dataclass
class DocumentSlice:
    """Documents [start, end) of a source, counted in the source's sorted file order (the order
    `data.max_documents` uses; blank documents count)."""

    start: int = 0
    end: int | None = None  # exclusive; None = to the end of the source

    def __post_init__(self) -> None:
        require(self.start >= 0, "start", f"must be ≥ 0, got {self.start}")


@dataclass
class VersionSpec:
    """One data version: a corpus or a slice of one; each version is released as one model."""

    # a data.source spec (stdlib, file, directory, glob); None = data.source
    source: str | None = None
    documents: DocumentSlice | None = None  # None: every document of the source
    # training tokens on this version; None = one pass over its training rows
    tokens: int | None = None
    # from this version on, the model has this shape: the boundary is a growth point
    shape: Shape | None = None
    # how the model grows into `shape` (operators, optimizer, LR)
    growth: GrowthConfig | None = None
    name: str | None = None  # None = v<k>, k counting from 1

    def __post_init__(self) -> None:
        require(self.tokens is None or self.tokens >= 1, "tokens",
                f"must be ≥ 1, got {self.tokens}")
        if self.documents is not None and self.documents.end is not None:
            require(self.documents.end > self.documents.start, "documents",
                     f"empty slice [{self.documents.start}, {self.documents.end}); a version needs "
                     "at least one document")
        require(self.name is None
                or re.fullmatch(r"[A-Za-z0-9._-]+", self.name) is not None, "name",
                 f"must be a plain name (letters, digits, . _ -), got {self.name!r}")


@dataclass
class VersionsConfig:
    """Data versions v1..vn and how each version's release is trained (raygrow.versions).

    `decay_fraction` defaults to 0.6, the branch share of LR path switching (arXiv 2410.04103);
    it reproduces the paper's cost figure (see PAPER_DECAY_FRACTION)."""

    mode: Literal["path_switching", "from_scratch", "continual"] = "path_switching"
    # path_switching: a branch decays the LR from peak to the minimum over this share of its
    # version's steps, from the main path's checkpoint that far before the version's end.
    decay_fraction: float = PAPER_DECAY_FRACTION
    data: list[VersionSpec] = field(default_factory=list)  # the versions, oldest first

    def __post_init__(self) -> None:
        require(self.mode in MODES, "mode", f"must be one of {', '.join(MODES)}, got {self.mode!r}")
        require(0 < self.decay_fraction <= 1, "decay_fraction",
                f"must be in (0, 1], got {self.decay_fraction}")
        require(len(self.data) >= 1, "data", "list at least one version")
        names = self.names
        for index, name in enumerate(names):
            require(name not in names[:index], f"data[{index}].name",
                     f"{name!r} is used by an earlier version; names must be unique")
        _check_numbered_order(names)

    @property
    def names(self) -> list[str]:
        return [spec.name or f"v{index + 1}" for index, spec in enumerate(self.data)]

    def shape_of(self, index: int, model: Shape) -> Shape:
        """Version `index`'s model: the last shape given at or before it, else `model`."""
        for spec in reversed(self.data[:index + 1]):
            if spec.shape is not None:
                return spec.shape
        return model


def _check_numbered_order(names: list[str]) -> None:
    """Names like v3 carry an order: a list with v2 before v1 is out of order."""
    numbered = [(index, int(m.group(1))) for index, name in enumerate(names)
                if (m := re.fullmatch(r"[vV](\d+)", name))]
    for (_, before), (index, number) in zip(numbered, numbered[1:]):
        require(number > before, f"data[{index}].name",
                 f"v{number} comes after v{before}; list versions oldest first")


def check_versions(versions: VersionsConfig, model: Shape, default_source: str,
                   batch_tokens: int) -> None:
    """Checks that need the rest of the run config; field names are full dotted paths."""
    slices: dict[str, list[tuple[int, int, float]]] = {}
    for index, spec in enumerate(versions.data):
        where = f"versions.data[{index}]"
        if spec.tokens is not None:
            require(spec.tokens >= batch_tokens, f"{where}.tokens",
                    f"{spec.tokens} is less than one batch ({batch_tokens} tokens)")
        _check_slice_order(where, index, spec.source or default_source, spec.documents, slices)
        _check_shape(versions, model, index)


def _check_slice_order(where: str, index: int, source: str, documents: DocumentSlice | None,
                       slices: dict[str, list[tuple[int, int, float]]]) -> None:
    """Versions of one source are consecutive slices: a later version starts at or after the end
    of every earlier one (a version holds newer data than the ones before it)."""
    start = documents.start if documents else 0
    end = documents.end if documents and documents.end is not None else float("inf")
    for earlier, earlier_start, earlier_end in slices.get(source, []):
        if start < earlier_end:
            span = (f"[{earlier_start}, "
                    f"{'end' if earlier_end == float('inf') else int(earlier_end)})")
            raise ConfigError(f"{where}.documents",
                              f"starts at document {start}, inside or before data[{earlier}]'s "
                              f"{span} of {source}; list versions oldest first, each after the "
                              "ones before")
    slices.setdefault(source, []).append((index, start, end))


def _check_shape(versions: VersionsConfig, model: Shape, index: int) -> None:
    """A version's shape grows (never shrinks) the previous one's, through a named growth."""
    spec = versions.data[index]
    where = f"versions.data[{index}]"
    if index == 0:
        require(spec.shape is None and spec.growth is None, f"{where}.shape",
                "the first version has the run's `model` shape; growth starts at a later version")
        return
    if spec.shape is None:
        require(spec.growth is None, f"{where}.growth", "give the shape it grows to as well")
        return
    require(spec.growth is not None, f"{where}.growth",
            "a new shape needs a growth (e.g. {depth_op: stack})")
    check_transition(versions.shape_of(index - 1, model), spec.shape, spec.growth, where,
                     f"data[{index - 1}]")
