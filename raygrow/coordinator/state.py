"""The coordinator's persisted state machine, `<run>/coordinator.json`.

For each spec, in order, the phases run  preparing → rescaling → training → exporting, and the
spec is then done; after the last one the run is `done`. `preparing` writes the spec's init
(a growth or a rebase onto new data), `rescaling` asks the cluster for its workers. The state is
written atomically after every transition, so a driver or coordinator killed at any point and
resubmitted with the same name continues in the phase it was in: a finished spec is never
retrained, a growth is never applied twice (and if redone, it is seeded: the same tensors).

Every spec the run has started keeps the fingerprint of its inputs (`StageSpec.fingerprint`):
a rerun whose spec of the same name has other inputs is refused instead of continuing at a
meaningless position, while new specs (a versions plan extended by a version) are simply run.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

from raygrow import storage
from raygrow.coordinator.growth import GrowthRecord
from raygrow.errors import CheckpointError
from raygrow.grow import MaskSpec

PHASES = ("preparing", "rescaling", "training", "exporting", "done")
STATE_FILE = "coordinator.json"
SCHEMA = 2  # bump when the file's layout changes; an older file is refused with one line


@dataclass
class SpecState:
    """What the coordinator remembers of one spec."""

    fingerprint: dict[str, Any]  # its inputs when it started
    done: bool = False  # trained (its export started)
    exported: bool = False  # its exports published (a spec without exports: when done)
    growth: GrowthRecord | None = None  # how its init was grown, once it was
    resource_wait_s: float = 0.0  # how long it waited for the cluster to hold its workers
    # wall-clock stamps (s since the epoch) of its phases in the invocation that ran them:
    # prepare_start/_end (its init written: a growth), train_start/_end (fit), export_start/_end
    times: dict[str, float] = field(default_factory=dict)


@dataclass
class CoordinatorState:
    current: str | None = None  # the spec being worked on (None: not started)
    phase: str = "preparing"
    specs: dict[str, SpecState] = field(default_factory=dict)  # every spec started, by name
    inputs: dict[str, Any] = field(default_factory=dict)  # the run's inputs (coordinator.resume)
    wall_s: float = 0.0  # coordinator time summed over every invocation
    schema: int = SCHEMA

    def advance(self, phase: str, spec: str | None = None) -> None:
        assert phase in PHASES, phase
        self.phase = phase
        if spec is not None:
            self.current = spec

    def save(self, run_dir: str) -> None:
        storage.make_dirs(run_dir)
        text = json.dumps(dataclasses.asdict(self), indent=1)
        storage.write_bytes(storage.join(run_dir, STATE_FILE), text.encode())

    @classmethod
    def load(cls, run_dir: str) -> CoordinatorState:
        """The saved state, or a fresh one; CheckpointError (one line) for a damaged or older
        file."""
        path = storage.join(run_dir, STATE_FILE)
        if not storage.exists(path):
            return cls()
        redo = (f"delete {path} to let the rerun rebuild it from the stages' checkpoints (finished "
                "stages resume at their final step and growth is redone identically), or start a "
                "new run with another --name")
        try:
            raw = json.loads(storage.read_bytes(path))
        except ValueError:
            raise CheckpointError(f"{path} is damaged (not JSON); {redo}") from None
        if not isinstance(raw, dict) or raw.get("schema") != SCHEMA:
            found = raw.get("schema", 1) if isinstance(raw, dict) else "?"
            raise CheckpointError(f"{path} has schema {found}, this raygrow reads {SCHEMA}; {redo}")
        try:
            return cls._from_json(raw)
        except (KeyError, TypeError, ValueError):
            raise CheckpointError(f"{path} is damaged (fields missing or wrong); {redo}") from None

    @classmethod
    def _from_json(cls, raw: dict[str, Any]) -> CoordinatorState:
        specs = {}
        for name, entry in raw["specs"].items():
            growth = entry.get("growth")
            if growth is not None:
                masks = growth["masks"]
                growth = GrowthRecord(**{**growth,
                                         "masks": MaskSpec.from_dict(masks) if masks else None})
            specs[name] = SpecState(fingerprint=entry["fingerprint"], done=bool(entry["done"]),
                                    # older files: a spec done was exported
                                    exported=bool(entry.get("exported", entry["done"])),
                                    growth=growth,
                                    resource_wait_s=float(entry.get("resource_wait_s", 0.0)),
                                    times={key: float(value)
                                           for key, value in entry.get("times", {}).items()})
        if raw["phase"] not in PHASES:
            raise ValueError(raw["phase"])
        return cls(current=raw["current"], phase=raw["phase"], specs=specs, inputs=raw["inputs"],
                   wall_s=float(raw["wall_s"]), schema=raw["schema"])
