"""Throughput accounting (MFU against a table of peaks) and the metrics channel to the driver."""

from __future__ import annotations

import ray
import torch

from raygrow.hardware import gpu_peak, measure_cpu_peak


def device_peak() -> tuple[str, float]:
    """(device name, peak FLOP/s) for the device this worker trains on."""
    if torch.cuda.is_available():
        return gpu_peak(torch.cuda.get_device_name())
    return "cpu", measure_cpu_peak(torch.get_num_threads())


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
