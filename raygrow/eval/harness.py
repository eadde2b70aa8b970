"""lm-evaluation-harness: exports evaluated through its Hugging Face model class (`HFLM`), and
the IQ suite written out as lm-eval tasks (local JSON-lines data + task YAMLs).

There is no dataset hub here: every run is offline (`HF_DATASETS_OFFLINE`, `HF_HUB_OFFLINE`), so
an installed lm-eval task whose data is not on this machine fails fast, and `check_tasks` turns
that into one line before any work.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import yaml

from raygrow.errors import DataError
from raygrow.eval.config import LM_EVAL_PREFIX, EvalConfig
from raygrow.eval.tasks import SUITE_VERSION, TASKS, items

log = logging.getLogger("raygrow")

IQ_PREFIX = "raygrow_iq_"  # lm-eval task names of the IQ suite: raygrow_iq_<task>
IQ_GROUP = "raygrow_iq"


def _offline() -> None:
    for name in ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        os.environ.setdefault(name, "1")
    for name in ("lm-eval", "lm_eval", "datasets", "evaluate"):
        logging.getLogger(name).setLevel(logging.ERROR)


def task_manager(include_path: str | None = None):
    _offline()
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=include_path, verbosity="ERROR")


def check_tasks(names: list[str], shots: int | None = None,
                include_path: str | None = None) -> None:
    """Each of `names` is an lm-eval task whose data is on this machine, with at least `shots`
    examples to draw shots from; else one DataError line naming the task."""
    if not names:
        return
    manager = task_manager(include_path)
    from lm_eval.tasks import get_task_dict

    for name in names:
        if name not in manager.all_tasks:
            raise DataError(f"{LM_EVAL_PREFIX}{name}: no such lm-eval task (see `lm-eval ls "
                            "tasks`, or write local ones with `raygrow eval "
                            "--write-lm-eval-tasks DIR`)")
        try:
            built = get_task_dict([name], manager)  # builds the task, which loads its dataset
        # datasets raises many types (ConnectionError, FileNotFoundError…)
        except Exception as error:
            reason = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
            raise DataError(f"{LM_EVAL_PREFIX}{name}: its dataset is not on this machine "
                            f"({reason}); put it in the Hugging Face datasets cache or pick "
                            "another task") from None
        if shots:
            for task_name, task in _leaf_tasks(built):
                available = len(task.fewshot_docs() or [])
                if shots > available:
                    raise DataError(f"{LM_EVAL_PREFIX}{task_name}: {shots} shots but only "
                                    f"{available} examples to draw them from; lower --shots")


def _leaf_tasks(built: dict) -> list[tuple[str, object]]:
    """(name, Task) of every task in lm-eval's (possibly nested) task dict."""
    leaves = []
    for key, value in built.items():
        if isinstance(value, dict):
            leaves += _leaf_tasks(value)
        else:
            leaves.append((getattr(key, "group_name", key) if not isinstance(key, str)
                           else key, value))
    return leaves


def lm_eval_scores(model, tokenizer, names: list[str], config: EvalConfig,
                   include_path: str | None = None) -> dict[str, dict]:
    """Scores of a loaded model on lm-eval tasks `names`, through lm-eval's HFLM: for each task
    its metrics as lm-eval reports them (e.g. {"acc,none": 0.25, ...}), with its sample count."""
    manager = task_manager(include_path)
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM

    lm = HFLM(pretrained=model, tokenizer=tokenizer, device="cpu" if model.device.type == "cpu"
              else str(model.device), batch_size=1, dtype="float32")
    output = simple_evaluate(model=lm, tasks=list(names), num_fewshot=config.shots,
                             limit=config.limit,
                             task_manager=manager, log_samples=False, bootstrap_iters=0,
                             random_seed=config.seed, numpy_random_seed=config.seed,
                             torch_random_seed=config.seed, fewshot_random_seed=config.seed)
    scores = {}
    for name in names:
        metrics = output["results"].get(name, {})
        scores[name] = {key: value for key, value in metrics.items()
                        if isinstance(value, (int, float)) and not key.endswith("_stderr,none")
                        and "stderr" not in key and key != "sample_len"}
        scores[name]["samples"] = output.get("n-samples", {}).get(name, {}).get("effective")
    return scores


def write_iq_tasks(directory: str, config: EvalConfig) -> list[str]:
    """The IQ tasks of `config` as lm-eval tasks in `directory`: per task a JSON-lines file of its
    items (the few-shot pairs are inside each prompt: a pattern-mining item's shots share its rule,
    which lm-eval's own shot sampler could not keep) and a YAML; plus a group `raygrow_iq`.
    Run them with `lm-eval run --include_path DIR --tasks raygrow_iq`. Returns the task names."""
    out = Path(directory).resolve()
    out.mkdir(parents=True, exist_ok=True)
    names = []
    for name in config.iq_tasks:
        task_name = IQ_PREFIX + name
        shots = config.shots_of(name)
        rows = [{"prompt": entry.prompt, "answer": entry.answer}
                for entry in items(name, config.seed, config.limit, shots)]
        data = out / f"{task_name}.jsonl"
        data.write_text("".join(json.dumps(row) + "\n" for row in rows))
        (out / f"{task_name}.yaml").write_text(
            yaml.safe_dump(_task_yaml(task_name, data, name, shots, config), sort_keys=False))
        names.append(task_name)
    group = {"group": IQ_GROUP, "task": names,
             "aggregate_metric_list": [{"metric": "exact_match", "aggregation": "mean",
                                        "weight_by_size": False}],
             "metadata": {"version": 1, "suite": SUITE_VERSION}}
    (out / f"{IQ_GROUP}.yaml").write_text(yaml.safe_dump(group, sort_keys=False))
    return names


def _task_yaml(task_name: str, data: Path, name: str, shots: int, config: EvalConfig) -> dict:
    """One IQ task for lm-eval: greedy generation to the first newline, exact match after
    stripping whitespace (as raygrow's own scorer)."""
    return {
        "task": task_name,
        "tag": [IQ_GROUP + "_tasks"],
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"test": str(data)}},
        "test_split": "test",
        "output_type": "generate_until",
        "doc_to_text": "{{prompt}}",
        "doc_to_target": "{{answer}}",
        "target_delimiter": " ",
        "num_fewshot": 0,
        "generation_kwargs": {"until": ["\n"], "do_sample": False,
                              "max_gen_toks": config.max_new_tokens},
        "filter_list": [{"name": "strip", "filter": [{"function": "take_first"}]}],
        "metric_list": [{"metric": "exact_match", "aggregation": "mean", "higher_is_better": True,
                         "regexes_to_ignore": ["^\\s+", "\\s+$"]}],
        "metadata": {"version": 1, "suite": SUITE_VERSION, "family": TASKS[name].family,
                     "chance": TASKS[name].chance, "seed": config.seed, "shots": shots},
    }
