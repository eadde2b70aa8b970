"""Scoring a Hugging Face export on IQ items: exact match of greedy generation, and the
log-likelihood of the gold answer.

The model is loaded with stock `transformers` (`AutoModelForCausalLM`, `AutoTokenizer`), as any
user of the export would. Prompts longer than the model's context are cut on the left, as
lm-evaluation-harness does.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from raygrow.errors import DataError
from raygrow.eval.tasks import Item

log = logging.getLogger("raygrow")


@dataclass
class TaskScore:
    """One task's scores over its items."""

    exact_match: float  # share of items whose greedy answer (first line, stripped) is the gold one
    loglik: float  # mean over items of the summed log-probability of the gold target (nats)
    loglik_per_byte: float  # the same per UTF-8 byte of the target: comparable across tokenizers
    chance: float  # exact match of a uniformly random answer (see raygrow.eval.tasks)
    items: int
    shots: int


def check_model_dir(path: str) -> None:
    """A Hugging Face model directory (config.json and weights), else one DataError line."""
    directory = Path(path)
    if not directory.is_dir():
        raise DataError(f"{path}: no such directory; give an export (e.g. runs/tiny/export) or a "
                        "run directory with --stages")
    if not (directory / "config.json").is_file():
        raise DataError(f"{path} is not a model directory (no config.json); give a Hugging Face "
                        "export such as runs/tiny/export, or a run directory with --stages")
    if not any(directory.glob("*.safetensors")) and not any(directory.glob("*.bin")):
        raise DataError(f"{path} has a config.json but no weights (*.safetensors); re-export it")


def load_export(path: str):
    """(model, tokenizer) of an export directory, in fp32 and eval mode."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    check_model_dir(path)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True,
                                                     dtype=torch.float32)
    except (OSError, ValueError) as error:
        raise DataError(f"{path}: cannot load it with transformers ({str(error).splitlines()[0]})"
                        ) from None
    model.eval()
    return model, tokenizer


def context_length(model) -> int:
    return int(getattr(model.config, "max_position_embeddings", 2048))


def encode(tokenizer, prompt: str, target: str) -> tuple[list[int], list[int]]:
    """Token ids of the prompt and of the target after it (split where the prompt's ids end, so
    a tokenizer that merges across the boundary is scored on the text as a whole)."""
    context = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    whole = tokenizer(prompt + target, add_special_tokens=False)["input_ids"]
    return context, whole[len(context):]


@torch.inference_mode()
def gold_loglik(model, context: list[int], continuation: list[int]) -> float:
    """Summed log-probability of `continuation` after `context` (context cut on the left)."""
    ids = (context + continuation)[-(context_length(model) + 1):]
    inputs = torch.tensor([ids[:-1]])
    logprobs = torch.log_softmax(model(input_ids=inputs).logits[0].float(), dim=-1)
    positions = range(len(ids) - 1 - len(continuation), len(ids) - 1)
    return float(sum(logprobs[p, ids[p + 1]] for p in positions))


@torch.inference_mode()
def greedy_answer(model, tokenizer, context: list[int], max_new_tokens: int) -> str:
    """The model's greedy continuation up to its first newline, stripped."""
    budget = max(1, min(max_new_tokens, context_length(model) - 1))
    ids = context[-(context_length(model) - budget):]
    eos = tokenizer.eos_token_id
    output = model.generate(torch.tensor([ids]),
                            attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                            max_new_tokens=budget, do_sample=False, pad_token_id=eos,
                            eos_token_id=eos,
                            stop_strings=["\n"], tokenizer=tokenizer)
    text = tokenizer.decode(output[0, len(ids):], skip_special_tokens=True)
    return text.split("\n", 1)[0].strip()


def score_items(model, tokenizer, entries: list[Item], max_new_tokens: int, chance: float,
                shots: int) -> TaskScore:
    """Exact match and gold log-likelihood over `entries`.

    The generation budget of an item is its target's length plus two tokens (at most
    `max_new_tokens`): a longer generation cannot change the verdict, since the first line must
    end right after the answer for an exact match."""
    hits, logliks, per_byte = 0, [], []
    for entry in entries:
        context, continuation = encode(tokenizer, entry.prompt, entry.target)
        logliks.append(gold_loglik(model, context, continuation))
        per_byte.append(logliks[-1] / len(entry.target.encode()))
        answer = greedy_answer(model, tokenizer, context,
                               min(max_new_tokens, len(continuation) + 2))
        hits += answer == entry.answer
    count = len(entries)
    return TaskScore(exact_match=hits / count, loglik=sum(logliks) / count,
                     loglik_per_byte=sum(per_byte) / count, chance=chance, items=count, shots=shots)
