"""`raygrow grow SRC_DIR --to layers=8,hidden=128,heads=8 --depth-op stack --width-op split
--out DST_DIR`

Grows a Hugging Face Llama, Mistral or Qwen2 model offline and writes another of the same
class that stock `AutoModelForCausalLM.from_pretrained` loads (every config field kept). Masked
operators are refused here: their masks only make sense during a training ramp, and a model saved
at m = 0 would not be a plain Llama.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import shutil
from pathlib import Path

import torch
from transformers import AutoConfig, PreTrainedModel

from raygrow.command import one_line_errors
from raygrow.config import Shape
from raygrow.errors import ConfigError, RaygrowError, first_line
from raygrow.config.growth import check_growth, expand_layer_order, shape_text
from raygrow.grow.api import GrowthResult, grow
from raygrow.grow.check import PRESERVATION_TOLERANCE, max_logit_difference
from raygrow.config.operators import OPERATORS
from raygrow.grow.state import load_into_model, state_from_model
from raygrow.model import FAMILY_CLASSES, shape_of

TARGET_KEYS = ("layers", "hidden", "heads", "kv_heads", "ffn", "max_positions")
# Files passed through unchanged: the tokenizer and sampling defaults do not depend on the shape.
PASSTHROUGH = ("tokenizer*", "special_tokens_map.json", "added_tokens.json", "vocab.*",
               "merges.txt", "*.model", "chat_template*", "generation_config.json")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("src", metavar="SRC_DIR",
                        help="Hugging Face Llama / Mistral / Qwen2 model directory "
                             "(config.json + safetensors)")
    parser.add_argument("--to", required=True, metavar="KEY=N,...",
                        help=f"target shape; keys {', '.join(TARGET_KEYS)}; unnamed keys keep the "
                             "source's (heads follow hidden to keep head_dim, kv_heads keeps the "
                             "query heads per kv head, ffn keeps its ratio to hidden)")
    # masked stays among the choices so that it gets its own explanation instead of "invalid
    # choice".
    parser.add_argument("--depth-op", choices=list(OPERATORS["depth"]),
                        help="how to add layers (needed when layers change; masked needs training)")
    parser.add_argument("--width-op", choices=list(OPERATORS["width"]),
                        help="how to widen hidden / ffn / heads (needed when any changes; masked "
                             "needs training)")
    parser.add_argument("--layer-order", metavar="I,J,...",
                        help="stack only: the source layer of each target layer, e.g. 0,1,0,1 "
                             "or ranges 0..23,8..31")
    parser.add_argument("--every", type=int, metavar="K",
                        help="zero depth op: one new block after every K source blocks (LLaMA-Pro)")
    parser.add_argument("--out", required=True, metavar="DST_DIR",
                        help="new directory for the grown export")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed for new weights and symmetry-breaking noise")


@one_line_errors
def run(args: argparse.Namespace) -> int:
    source_dir, out_dir = Path(args.src), Path(args.out)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise ConfigError("--out",
                          f"{out_dir} already exists and is not empty: choose a new directory")
    for flag, op in (("--depth-op", args.depth_op), ("--width-op", args.width_op)):
        if op == "masked":
            raise ConfigError(flag,
                              "masked growth needs a training ramp (m: 0 -> 1); grow with it in a "
                              "training plan, or use zero for an offline "
                              "function-preserving growth")
    config = _read_config(source_dir)
    source = shape_of(config)
    target = parse_target(args.to, source)
    order = _parse_order(args.layer_order)
    check_growth(source, target, config.vocab_size, args.depth_op, args.width_op, layer_order=order,
                 every=args.every)
    model = _load_model(source_dir, source)
    result = grow(state_from_model(model), source, target, config.vocab_size, args.depth_op,
                  args.width_op,
                  layer_order=order, seed=args.seed, every=args.every)
    grown = load_into_model(result.state, target, config.vocab_size,
                            bos_id=config.bos_token_id, eos_id=config.eos_token_id)
    difference = max_logit_difference(model, grown, config.vocab_size, args.seed)
    if result.function_preserving and not difference <= PRESERVATION_TOLERANCE:
        raise RaygrowError("growth claims to preserve the function but logits differ by "
                           f"{difference:.3g} (> {PRESERVATION_TOLERANCE}); nothing written")
    _write_atomically(grown, source_dir, out_dir, _summary(args, source, result, difference))
    _report(args, source, result, difference)
    return 0


def parse_target(text: str, source: Shape) -> Shape:
    """`layers=8,hidden=128,...` over the source shape."""
    values: dict[str, int] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, _, number = item.partition("=")
        if key not in TARGET_KEYS:
            raise ConfigError("--to", f"unknown key {key!r} (known: {', '.join(TARGET_KEYS)})")
        if not number.strip().isdigit():
            raise ConfigError(f"--to {key}", f"must be a positive integer, got {number!r}")
        values[key] = int(number)
    hidden = values.get("hidden", source.hidden)
    # Width growth keeps head_dim (see raygrow.grow.width), so a new hidden size implies the heads
    # (in the source's ratio of heads to hidden).
    scaled, remainder = divmod(hidden * source.heads, source.hidden)
    heads = values.get("heads", source.heads if remainder else scaled)
    group = source.heads // source.kv_heads
    defaults = {
        "layers": source.layers, "hidden": hidden, "heads": heads,
        "kv_heads": max(1, heads // group),
        "ffn": math.ceil(source.ffn * hidden / source.hidden),
        "max_positions": source.max_positions,
    }
    try:
        return dataclasses.replace(source, **{**defaults, **values})
    except ConfigError as error:
        raise error.under("--to") from None


def _read_config(source_dir: Path):
    if not (source_dir / "config.json").is_file():
        raise ConfigError("SRC_DIR", f"{source_dir} has no config.json: give a Hugging Face model "
                                     "directory")
    try:
        return AutoConfig.from_pretrained(source_dir)
    except (OSError, ValueError) as error:  # an unknown model_type, unreadable JSON
        raise ConfigError(f"{source_dir / 'config.json'}", first_line(error)) from None


def _load_model(source_dir: Path, shape: Shape) -> PreTrainedModel:
    """The model in its own family's class (shape_of has refused any other family)."""
    try:
        return FAMILY_CLASSES[shape.family][1].from_pretrained(source_dir, dtype=torch.float32)
    except (OSError, ValueError) as error:
        raise ConfigError("SRC_DIR", f"cannot load the model in {source_dir}: "
                                     f"{first_line(error)}") from None


def _parse_order(text: str | None) -> list[int] | None:
    if text is None:
        return None
    items = [int(part) if part.strip().isdigit() else part for part in text.split(",")]
    try:
        return expand_layer_order(items)
    except ConfigError as error:
        raise ConfigError("--layer-order", error.message) from None


def _write_atomically(model: PreTrainedModel, source_dir: Path, out_dir: Path,
                      summary: dict) -> None:
    """Write into a temporary sibling directory and rename it into place: all or nothing."""
    out_dir = out_dir.absolute()
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    temporary = out_dir.parent / f".{out_dir.name}.tmp-{os.getpid()}"
    shutil.rmtree(temporary, ignore_errors=True)
    try:
        model.save_pretrained(temporary, safe_serialization=True)
        for pattern in PASSTHROUGH:
            for path in source_dir.glob(pattern):
                if path.is_file():
                    shutil.copy2(path, temporary / path.name)
        (temporary / "growth.json").write_text(json.dumps(summary, indent=2) + "\n")
        if out_dir.exists():
            out_dir.rmdir()  # empty, checked before: replaced by the finished directory
        os.replace(temporary, out_dir)
    finally:
        shutil.rmtree(temporary, ignore_errors=True)


def _summary(args: argparse.Namespace, source: Shape, result: GrowthResult,
             difference: float) -> dict:
    return {
        "source": str(args.src),
        "source_shape": dataclasses.asdict(source),
        "target_shape": dataclasses.asdict(result.shape),
        "depth_op": args.depth_op, "width_op": args.width_op,
        "layer_order": _parse_order(args.layer_order), "every": args.every, "seed": args.seed,
        "function_preserving": result.function_preserving, "max_logit_difference": difference,
        "optimizer_policy": result.optimizer_policy, "lr_policy": result.lr_policy,
    }


def _report(args: argparse.Namespace, source: Shape, result: GrowthResult,
            difference: float) -> None:
    verdict = "yes" if result.function_preserving else "no"
    print(f"grew {args.src} -> {args.out}")
    print(f"  shape: {shape_text(source)} -> {shape_text(result.shape)}")
    print(f"  operators: depth {args.depth_op or '-'}, width {args.width_op or '-'}")
    print(f"  function-preserving: {verdict} (max |logit difference| on random input: "
          f"{difference:.3g})")
    print(f"  when training on: optimizer {result.optimizer_policy}, learning rate "
          f"{result.lr_policy}")
