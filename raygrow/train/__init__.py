"""The per-worker training loop: DeepSpeed engine, steps, metrics, checkpoint save/load."""
