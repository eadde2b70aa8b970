"""The coordinator's persisted state machine.

Per stage k the phases run  rescaling → training → growing (→ stage k+1 rescaling) … → done.
The state is written atomically to <run>/coordinator.json after every transition, so a driver
or coordinator killed at any point and resubmitted with the same name continues in the phase it
was in: a finished stage is never retrained, a growth is never applied twice.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

from raygrow import storage

PHASES = ("rescaling", "training", "growing", "done")
STATE_FILE = "coordinator.json"


@dataclass
class CoordinatorState:
    stage: int = 0  # the stage being worked on
    phase: str = "rescaling"
    schedules: list[dict] = field(default_factory=list)  # per stage: its LR segment (see train.loop)
    growths: list[dict] = field(default_factory=list)  # per transition: operators, policies, masks
    wall_s: float = 0.0  # coordinator time summed over every invocation

    def advance(self, phase: str, stage: int | None = None) -> None:
        assert phase in PHASES, phase
        self.phase = phase
        if stage is not None:
            self.stage = stage

    def save(self, run_dir: str) -> None:
        storage.make_dirs(run_dir)
        storage.write_bytes(storage.join(run_dir, STATE_FILE), json.dumps(asdict(self), indent=1).encode())

    @classmethod
    def load(cls, run_dir: str) -> "CoordinatorState":
        path = storage.join(run_dir, STATE_FILE)
        return cls(**json.loads(storage.read_bytes(path))) if storage.exists(path) else cls()
