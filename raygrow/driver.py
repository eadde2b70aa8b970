"""The driver of a run: validate, prepare data, start the coordinator, show progress.

Order matters for invariant 5: everything that can be checked without a cluster (config, corpus
paths, tokenizer, S3 endpoint, credentials and buckets) is checked before Ray starts or anything
is written.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import threading
import time

import ray
from tqdm import tqdm

from raygrow import storage
from raygrow.config import RunConfig
from raygrow.coordinator.actor import RunOutcome
from raygrow.coordinator.spec import StageSpec, plan_specs
from raygrow.coordinator.state import CoordinatorState
from raygrow.coordinator.summary import summarise_plan, write_json
from raygrow.data import DatasetPlan, Manifest, plan_dataset, prepare
from raygrow.errors import ConfigError, RaygrowError, first_line
from raygrow.lease import Lease
from raygrow.model import flops_per_token, tokens_for_flops
from raygrow.train.resources import on_this_node
from raygrow.report import plot_run
from raygrow.resume import check_inputs, run_inputs
from raygrow.tracking import RunTracker, check_tracking, open_tracker
from raygrow.train.metrics import MetricsLog

log = logging.getLogger("raygrow")


def check(config: RunConfig) -> DatasetPlan:
    """Everything that can be checked without a cluster; raises a one-line RaygrowError. Returns
    the dataset plan (corpus listed, tokenizer loaded: once per driver)."""
    if not config.stages and config.train.tokens == 0:
        raise ConfigError("train.tokens", "must be ≥ 1 (a run of one stage must train)")
    for index, stage in enumerate(config.plan_stages):
        if stage.shape is None:
            raise ConfigError(f"stages[{index}].shape",
                              "required to train (params-only stages are for "
                              "`raygrow plan`)")
    check_storage(config)
    if config.eval is not None:  # lm-eval tasks and their data, before any cluster work
        from raygrow.eval.evaluate import check as check_eval

        check_eval(config.eval)
    check_tracking(config)
    plan = plan_dataset(config)
    if storage.info(config.run_dir).type not in (storage.FileType.NotFound,
                                                 storage.FileType.Directory):
        raise ConfigError("name", f"{config.run_dir} exists and is not a directory")
    return plan


def check_vocab(config: RunConfig, tokenizer_vocab: int) -> None:
    """Every token id the tokenizer makes must have an embedding row in every stage's model."""
    for index, stage in enumerate(config.plan_stages):
        if stage.shape.vocab is None or stage.shape.vocab >= tokenizer_vocab:
            continue
        if stage.init:
            raise ConfigError("data.tokenizer", f"{config.data.tokenizer} has {tokenizer_vocab} "
                              f"tokens, more than the {stage.shape.vocab} of the model in "
                              "stages[0].init; use the model's own tokenizer")
        raise ConfigError("model.vocab" if not config.stages else f"stages[{index}].shape.vocab",
                          f"{stage.shape.vocab} is smaller than the tokenizer's {tokenizer_vocab} "
                          "tokens; raise it or leave it unset")


def check_storage(config: RunConfig) -> None:
    """Set this process's S3 settings and probe every s3:// location the run uses: endpoint
    reachable, credentials accepted, bucket present, writable where the run writes. Local paths
    need no probe."""
    storage.configure_s3(config.s3.endpoint_url, config.s3.region)
    locations = {}  # path → (setting, written by the run?)
    sources = [(config.data.source_field(index), source.source, False)
               for index, source in enumerate(config.data.mixture)]
    for setting, path, write in (("storage", config.run_dir, True),
                                 ("data.cache_dir" if config.data.cache_dir else "storage",
                                  config.dataset_root, True),
                                 *sources):
        if storage.is_remote(path) and (path not in locations or write):
            locations[path] = (setting, write)
    for path, (setting, write) in locations.items():
        storage.probe(path, setting, write)


def ensure_ray() -> bool:
    """Join the cluster named by RAY_ADDRESS (as `ray job submit` sets), else start a local one.
    Returns whether the cluster can grow (an existing cluster may have an autoscaler; a local
    one started here cannot)."""
    if ray.is_initialized():
        return os.environ.get("RAYGROW_AUTOSCALING", "") == "1"
    joining = bool(os.environ.get("RAY_ADDRESS"))
    verbose = log.isEnabledFor(logging.DEBUG)  # `raygrow -v`
    # An embedded cluster runs no dashboard: on a small machine its processes take CPU from
    # training (start one with `ray start --head` and set RAY_ADDRESS to have it). What Ray's,
    # DeepSpeed's and the workers' processes print stays in the cluster's log files (`ray_logs`
    # in summary.json) unless -v streams it here: the console shows raygrow's own lines.
    quiet = logging.DEBUG if verbose else logging.ERROR
    ray.init(logging_level=quiet, log_to_driver=verbose,
             include_dashboard=None if joining else False,
             runtime_env={"env_vars": {"PYTHONWARNINGS": "ignore::FutureWarning"}})
    for name in ("ray", "ray.data", "ray.train", "ray.tune"):
        logging.getLogger(name).setLevel(logging.WARNING if verbose else logging.ERROR)
    return joining and os.environ.get("RAYGROW_AUTOSCALING", "1") == "1"


def ray_logs_dir() -> str | None:
    """Where this cluster's processes write their logs (for summary.json and `raygrow -v`)."""
    try:
        return ray._private.worker._global_node.get_logs_dir_path()
    except AttributeError:  # a client connection has no local node
        return None


def _watch(coordinator, config: RunConfig, specs: list[StageSpec], show_progress: bool,
           stop: StopSignal, tracker: RunTracker | None = None) -> RunOutcome:
    """Wait for the coordinator's outcome, with a progress bar per spec (and the run's new
    records forwarded to its trackers); on SIGTERM or Ctrl-C ask it to stop at the next step
    boundary, with a checkpoint, within `train.stop_grace_s`."""
    future = coordinator.run.remote()
    progress = _Progress(specs, show_progress)
    deadline = None
    try:
        while True:
            ready, _ = ray.wait([future], timeout=0.5)
            if ready:
                break
            if stop.received and deadline is None:
                log.warning("%s: stopping run %s at the next step boundary (checkpointed; "
                            "up to %g s)",
                            stop.received, config.name, config.train.stop_grace_s)
                coordinator.request_stop.remote()
                deadline = time.monotonic() + config.train.stop_grace_s
            if deadline is not None and time.monotonic() > deadline:
                raise RaygrowError(f"{stop.received}: run {config.name} did not reach a checkpoint "
                                   f"within train.stop_grace_s ({config.train.stop_grace_s:g} s); "
                                   "rerun the same command to continue from its last checkpoint")
            try:
                status = ray.get(coordinator.status.remote())
            except ray.exceptions.RayActorError:
                break  # the coordinator died since the wait: `ray.get(future)` below says so
            for message in status.pop("messages", []):
                progress.write(f"raygrow: {message}")
            progress.show(status)
            if tracker is not None:
                tracker.poll()
    finally:
        progress.close()
    try:
        return ray.get(future)
    except ray.exceptions.RayTaskError as error:
        cause = error.cause if isinstance(getattr(error, "cause", None), RaygrowError) else None
        raise cause or RaygrowError(f"run failed: {first_line(error)}") from None
    except ray.exceptions.RayActorError:
        raise RaygrowError(f"the coordinator of run {config.name} died; rerun the same command to "
                           "continue where it stopped") from None


class _Progress:
    """One progress bar per spec: its steps, and the coordinator's phase."""

    def __init__(self, specs: list[StageSpec], show: bool):
        self.by_name = {spec.name: spec for spec in specs}
        self.show_bars = show
        self.bar, self.spec = None, None

    def show(self, status: dict) -> None:
        if not self.show_bars or status["spec"] not in self.by_name:
            return
        if status["spec"] != self.spec:
            self.close()
            self.spec = status["spec"]
            spec = self.by_name[self.spec]
            self.bar = tqdm(total=spec.end_step, initial=spec.start_step, desc=self.spec,
                            unit="step",
                            mininterval=2.0)
        postfix = status["phase"]
        if status.get("loss") is not None:
            postfix += f", loss {status['loss']:.3f}, {status['tokens_per_s']:,.0f} tokens/s"
        if (self.bar.n, self.bar.postfix) != (status["step"], postfix):
            self.bar.set_postfix_str(postfix, refresh=False)
            self.bar.update(status["step"] - self.bar.n)

    def write(self, line: str) -> None:
        """A line of its own above the bar (or plain, without bars)."""
        if self.show_bars:
            tqdm.write(line)
        else:
            log.info("%s", line.removeprefix("raygrow: "))

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class StopSignal:
    """SIGTERM (what `ray job stop`, Kubernetes and spot reclaim send) and SIGINT (Ctrl-C), caught
    while a run executes: `received` names the first one; the previous handlers come back after."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self) -> None:
        self.received: str | None = None
        self._previous: dict = {}

    def __enter__(self) -> StopSignal:
        # signals reach the main thread only
        if threading.current_thread() is threading.main_thread():
            for number in self.SIGNALS:
                self._previous[number] = signal.signal(number, self._catch)
        return self

    def __exit__(self, *exc) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)

    def _catch(self, number: int, frame) -> None:
        self.received = self.received or signal.Signals(number).name


# Coordinators are named after their run directory in one namespace shared by all drivers, so a
# second driver of the same run on the cluster finds the first and is refused.
COORDINATOR_NAMESPACE = "raygrow"


def check_resume_inputs(config: RunConfig, inputs: dict) -> None:
    """Before any cluster work: a rerun of an existing run must have the inputs it started with."""
    state = CoordinatorState.load(storage.canonical(config.run_dir))
    check_inputs(state.inputs, inputs, config.name)


def execute(config: RunConfig, specs: list[StageSpec], inputs: dict, autoscaling: bool,
            show_progress: bool = True, tracker: RunTracker | None = None) -> RunOutcome:
    """Run `specs` with the run's coordinator (one per run directory on the cluster), holding the
    run's lease (one writer per run directory, across clusters) while it runs."""
    from raygrow.coordinator import Coordinator

    lease = Lease(storage.canonical(config.run_dir), config.train.lease_timeout_s)
    lease.acquire(config.name)
    name = f"raygrow:{storage.canonical(config.run_dir)}"
    try:
        # every driver (each `ray job submit`, each Tune trial) has its own namespace: name it in
        # ours
        try:
            # On the driver's node (the head, for `ray job submit`): losing a worker node must
            # not take the run's control plane with it.
            coordinator = Coordinator.options(name=name, namespace=COORDINATOR_NAMESPACE,
                                              scheduling_strategy=on_this_node()).remote(
                specs, config.run_dir, inputs, config.s3, autoscaling,
                os.environ.get("RAYGROW_FAULT"))
        except ValueError:  # the name is taken: another driver is running this run
            raise RaygrowError(f"run {config.name} is already running on this cluster; wait for it "
                               "or pick another --name") from None
        try:
            with StopSignal() as stop:
                outcome = _watch(coordinator, config, specs, show_progress, stop, tracker)
            outcome.stopped_by = stop.received
            return outcome
        finally:
            ray.kill(coordinator)
    finally:
        lease.release()


def train(config: RunConfig, show_progress: bool = True) -> dict:
    """Run every stage of `config` (or up to `train.stop_after`); returns summary.json's
    contents."""
    plan = check(config)
    check_vocab(config, plan.tokenizer.vocab_size)  # before any cluster work, after the config
    specs = plan_specs(config, plan.directory)
    inputs = run_inputs(config.to_dict(), storage.base_name(plan.directory))
    check_resume_inputs(config, inputs)
    autoscaling = ensure_ray()
    manifest = prepare(config, show_progress=show_progress, plan=plan)
    tracker = open_tracker(config, specs)
    summary = None
    try:
        outcome = execute(config, specs, inputs, autoscaling, show_progress, tracker)
        vocab = config.plan_stages[0].shape.vocab_size(manifest.vocab_size)
        summary = summarise_plan(config, specs, outcome, storage.canonical(config.run_dir),
                                 plan.directory, vocab, ray_logs_dir())
    finally:
        if tracker is not None:
            tracker.close(summary, complete=bool(summary and summary["complete"]))
    if outcome.failure:  # summary.json says incomplete; the command says why, in one line
        raise RaygrowError(outcome.failure)
    return {**summary, "stopped_by": outcome.stopped_by}


def baseline_config(config: RunConfig, total_flops: float, vocab: int) -> RunConfig:
    """The final shape trained from scratch for the same FLOPs, as a sibling run
    `<name>-baseline`."""
    final = config.plan_stages[-1].shape
    per_token = flops_per_token(final, final.vocab_size(vocab), config.data.seq_len)
    # the final stage's workers and ZeRO stage
    last = config.stage_config(len(config.plan_stages) - 1)
    train = dataclasses.replace(last.train, tokens=tokens_for_flops(total_flops, per_token,
                                                                    config.train.batch_tokens))
    data = dataclasses.replace(config.data, cache_dir=config.dataset_root)
    return dataclasses.replace(config, model=final, stages=[], name=f"{config.name}-baseline",
                               train=train,
                               data=data)


def train_with_baseline(config: RunConfig, show_progress: bool = True) -> dict:
    """Train the plan, then its from-scratch baseline; overlay both in the plan's report.png."""
    summary = train(config, show_progress)
    if not summary["complete"]:
        return summary
    vocab = Manifest.load(summary["dataset"]).vocab_size
    sibling = baseline_config(config, summary["total_flops"], vocab)
    baseline = train(sibling, show_progress)
    run_dir = config.run_dir
    summary["baseline"] = {"name": sibling.name, "flops": baseline["total_flops"],
                           "tokens": baseline["total_tokens"],
                           "final_val_loss": baseline["stages"][-1]["final_val_loss"]}
    write_json(storage.join(run_dir, "summary.json"), summary)
    plot_run(MetricsLog(run_dir).records(), storage.join(run_dir, "report.png"), title=config.name,
             baseline=MetricsLog(sibling.run_dir).records())
    return summary
