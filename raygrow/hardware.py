"""Peak FLOP/s per device: the one table of GPU peaks and the one CPU probe raygrow measures MFU
(and plans costs) against."""

from __future__ import annotations

import time

# Dense bf16 peaks per device, no sparsity (vendor data sheets; H100 and H200 are SXM parts; see
# REFERENCES.md). A CPU has no such figure that means anything for this workload, so its peak is
# measured (`measure_cpu_peak`).
PEAK_FLOPS = {
    "a100": 312e12,
    "h100": 989e12,
    "h200": 989e12,
}


def measure_cpu_peak(threads: int | None = None, size: int = 1024, trials: int = 5,
                     repeats: int = 3) -> float:
    """FLOP/s of an fp32 matmul on this process's torch threads (`threads` sets them first).

    The best of several trials, not the mean: the peak is what the cores can do, and a busy
    moment at start-up must not lower it (which would inflate MFU)."""
    import torch

    if threads is not None:
        torch.set_num_threads(threads)
    left, right = torch.randn(size, size), torch.randn(size, size)
    left @ right  # warm-up: thread pool start and first-call allocation
    best = float("inf")
    for _ in range(trials):
        start = time.perf_counter()
        for _ in range(repeats):
            left @ right
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 * repeats / best


def gpu_peak(device_name: str) -> tuple[str, float]:
    """(table key, peak FLOP/s) for a CUDA device name; NaN for a GPU not in the table (MFU is
    reported as NaN rather than guessed)."""
    name = device_name.lower()
    for key, peak in PEAK_FLOPS.items():
        if key in name:
            return key, peak
    return name, float("nan")
