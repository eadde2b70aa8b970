"""Evaluate one export under an EvalConfig: what `raygrow eval` and a run's Ray tasks call."""

from __future__ import annotations

import dataclasses
import logging

import torch

from raygrow import storage
from raygrow.eval.config import EvalConfig
from raygrow.eval.score import load_export, score_items
from raygrow.eval.tasks import SUITE_VERSION, TASKS, items

log = logging.getLogger("raygrow")


def check(config: EvalConfig) -> None:
    """What can be refused before loading any model: lm-eval tasks and their data."""
    if config.lm_eval_tasks:
        from raygrow.eval.harness import check_tasks

        check_tasks(config.lm_eval_tasks, config.shots, config.lm_eval_include)


def evaluate_loaded(model, tokenizer, config: EvalConfig) -> dict[str, dict]:
    """Scores of a loaded model on every task of `config`: IQ tasks by raygrow's scorer
    (exact_match, loglik, loglik_per_byte, chance, items, shots), lm-eval tasks as lm-eval
    reports them (keyed `lm-eval:NAME`)."""
    scores: dict[str, dict] = {}
    for name in config.iq_tasks:
        shots = config.shots_of(name)
        entries = items(name, config.seed, config.limit, shots)
        scores[name] = dataclasses.asdict(score_items(model, tokenizer, entries,
                                                      config.max_new_tokens,
                                                      TASKS[name].chance, shots))
        log.info("eval %s: exact match %.3f (chance %.3f)", name, scores[name]["exact_match"],
                 TASKS[name].chance)
    if config.lm_eval_tasks:
        from raygrow.eval.harness import lm_eval_scores

        found = lm_eval_scores(model, tokenizer, config.lm_eval_tasks, config,
                               config.lm_eval_include)
        scores.update({f"lm-eval:{name}": value for name, value in found.items()})
    return scores


def evaluate_export(path: str, config: EvalConfig, threads: int | None = None) -> dict:
    """{"export": path, "suite", the config's key, "scores": {task: {...}}} for one export (a
    local directory or s3://)."""
    if threads:
        torch.set_num_threads(threads)
    with storage.local_copy(path) as local:
        model, tokenizer = load_export(str(local))
        scores = evaluate_loaded(model, tokenizer, config)
    return {"export": str(path), "suite": SUITE_VERSION, "key": config.key(), "scores": scores}

