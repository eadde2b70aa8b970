"""The device a plan is costed on: a table peak for GPUs, a measurement (or a flag) for CPUs."""

from __future__ import annotations

from dataclasses import dataclass

from raygrow.errors import ConfigError
from raygrow.hardware import PEAK_FLOPS, measure_cpu_peak

HARDWARE = ("cpu", *PEAK_FLOPS)


@dataclass(frozen=True)
class Hardware:
    name: str  # cpu | a100 | h100 | h200
    peak_flops: float  # FLOP/s of one device
    peak_source: str  # where the peak came from: "table", "--cpu-peak" or "measured"


def resolve_hardware(name: str, cpu_peak: float | None = None) -> Hardware:
    """The device `name` with its peak. For `cpu` the peak is `cpu_peak` if given, else measured.

    A CPU has no data-sheet peak comparable to a GPU's dense bf16 figure, so raygrow takes what an
    fp32 matmul actually achieves here (DESIGN.md: "CPU measured"); MFU on CPU is relative to that.
    """
    if name not in HARDWARE:
        raise ConfigError("--hardware",
                          f"unknown hardware {name!r}; choose one of {', '.join(HARDWARE)}")
    if cpu_peak is not None and name != "cpu":
        raise ConfigError("--cpu-peak", f"only applies to --hardware cpu ({name} has a table peak)")
    if name != "cpu":
        return Hardware(name, PEAK_FLOPS[name], "table")
    if cpu_peak is not None:
        if not cpu_peak > 0:
            raise ConfigError("--cpu-peak", f"must be > 0 FLOP/s, got {cpu_peak}")
        return Hardware("cpu", float(cpu_peak), "--cpu-peak")
    return Hardware("cpu", measure_cpu_peak(), "measured")
