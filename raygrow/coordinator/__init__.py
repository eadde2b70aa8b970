"""The coordinator: runs a plan's stages in order, regrows the model and rescales the workers
between them, and continues a killed run at the right stage and step."""

from raygrow.coordinator.actor import Coordinator
from raygrow.coordinator.state import PHASES, CoordinatorState

__all__ = ["PHASES", "Coordinator", "CoordinatorState"]
