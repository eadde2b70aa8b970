"""raygrow: pretrain language models by growing them on a Ray cluster."""

__version__ = "0.1.0"
