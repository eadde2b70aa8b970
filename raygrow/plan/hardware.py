"""Peak FLOP/s per device: a table for GPUs, a quick measurement (or a flag) for CPUs."""

from __future__ import annotations

import time
from dataclasses import dataclass

from raygrow.errors import ConfigError

# Dense bf16 peaks per device, no sparsity (vendor data sheets; H100 and H200 are SXM parts).
PEAK_FLOPS = {
    "a100": 312e12,
    "h100": 989e12,
    "h200": 989e12,
}
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
        raise ConfigError("--hardware", f"unknown hardware {name!r}; choose one of {', '.join(HARDWARE)}")
    if cpu_peak is not None and name != "cpu":
        raise ConfigError("--cpu-peak", f"only applies to --hardware cpu ({name} has a table peak)")
    if name != "cpu":
        return Hardware(name, PEAK_FLOPS[name], "table")
    if cpu_peak is not None:
        if not cpu_peak > 0:
            raise ConfigError("--cpu-peak", f"must be > 0 FLOP/s, got {cpu_peak}")
        return Hardware("cpu", float(cpu_peak), "--cpu-peak")
    return Hardware("cpu", measure_cpu_peak(), "measured")


def measure_cpu_peak(size: int = 512, seconds: float = 0.3) -> float:
    """FLOP/s of an fp32 `size`×`size` matmul on this process's torch threads (best of a short loop).

    Best rather than mean: the peak is what the cores can do, not what a noisy neighbour left over.
    """
    import torch

    left, right = torch.randn(size, size), torch.randn(size, size)
    torch.matmul(left, right)  # warm-up: thread pool start and first-call allocation
    best = 0.0
    deadline = time.perf_counter() + seconds
    while True:
        start = time.perf_counter()
        torch.matmul(left, right)
        elapsed = time.perf_counter() - start
        best = max(best, 2 * size**3 / elapsed)
        if time.perf_counter() >= deadline:
            return best
