"""Throughput accounting (MFU against a table of peaks) and the metrics channel to the driver."""

from __future__ import annotations

import time

import ray
import torch

# Dense bf16 peak FLOP/s per device (vendor figures; see REFERENCES.md). A CPU has no such
# figure that means anything for this workload, so its peak is measured (`measured_cpu_peak`).
PEAK_FLOPS = {
    "h100": 989e12,
    "h200": 989e12,
    "a100": 312e12,
}


def measured_cpu_peak(threads: int, size: int = 1024, trials: int = 5, repeats: int = 3) -> float:
    """FLOP/s of an fp32 matmul on this process's threads: the CPU 'peak' MFU is measured against.
    The best of several trials, so a busy moment at start-up does not lower the peak (which would
    inflate MFU)."""
    torch.set_num_threads(threads)
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b  # warm up
    best = float("inf")
    for _ in range(trials):
        start = time.perf_counter()
        for _ in range(repeats):
            a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 * repeats / best


def device_peak() -> tuple[str, float]:
    """(device name, peak FLOP/s) for the device this worker trains on."""
    if torch.cuda.is_available():
        name = torch.cuda.get_device_name().lower()
        for key, peak in PEAK_FLOPS.items():
            if key in name:
                return key, peak
        return name, float("nan")  # unknown GPU: MFU is reported as NaN rather than guessed
    return "cpu", measured_cpu_peak(torch.get_num_threads())


@ray.remote(num_cpus=0)
class MetricsSink:
    """Collects metric records from rank 0 so the driver can show progress while `fit()` runs."""

    def __init__(self) -> None:
        self.records: list[dict] = []

    def push(self, record: dict) -> None:
        self.records.append(record)

    def drain(self) -> list[dict]:
        records, self.records = self.records, []
        return records
