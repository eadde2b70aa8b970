"""The coordinator actor: the one executor. It runs a list of `StageSpec`s (a growth plan, a
versions plan, a sweep trial's plan) as the state machine in state.py, one spec at a time:
write its init (growth or rebase), ask the cluster for its workers, train it, export it. A spec's
export runs as a Ray task beside the next spec's growth and training (it reads only the final
checkpoint, which nothing changes any more); the run waits for every export before it returns."""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass

import ray

from raygrow import storage
from raygrow.config import S3Config
from raygrow.coordinator.evaluation import Evaluations
from raygrow.coordinator.growth import (
    GrowthRecord, grow_checkpoint, pretrained_checkpoint, rebase_checkpoint,
)
from raygrow.coordinator.spec import INIT_DIR, StageSpec
from raygrow.resume import check_inputs, check_resume
from raygrow.coordinator.state import CoordinatorState, SpecState
from raygrow.data import Manifest
from raygrow.errors import CheckpointError, RaygrowError, first_line
from raygrow.export import export_checkpoint
from raygrow.train import checkpoint
from raygrow.train.launch import WorkerGroup, layout
from raygrow.train.records import StepRecord, events, steps
from raygrow.train.resources import check_schedulable
from raygrow.train.stage_run import StageRun

log = logging.getLogger("raygrow")


@dataclass
class RunOutcome:
    """What a coordinator's `run` ends with; the run's summary is built from it and the logs."""

    complete: bool  # every spec done
    done: list[str]  # the specs done, in order
    growths: dict[str, GrowthRecord]  # by grown spec
    wall_s: float  # coordinator time over every invocation
    stopped_by: str | None = None  # SIGTERM / SIGINT: the driver stopped the run (it resumes)
    failure: str | None = None  # why the run stopped before its end, when it did not just pause
    waits: dict[str, float] = dataclasses.field(default_factory=dict)  # resource wait by spec, s
    times: dict[str, dict[str, float]] = dataclasses.field(default_factory=dict)  # phase stamps


@ray.remote(num_cpus=0, max_concurrency=4)
class Coordinator:
    """Runs specs in order: preparing → rescaling → training → exporting each, persisted in
    coordinator.json."""

    def __init__(self, specs: list[StageSpec], run_dir: str, inputs: dict, s3: S3Config,
                 autoscaling: bool, fault: str | None = None):
        checkpoint.set_fault(fault)  # test hook (see raygrow.train.checkpoint.fault_point)
        logging.basicConfig(level=logging.INFO,
                            format="%(asctime)s %(name)s %(levelname)s %(message)s")
        storage.configure_s3(s3.endpoint_url, s3.region)
        self.s3 = s3
        self.specs = specs
        self.by_name = {spec.name: spec for spec in specs}
        self.run_dir = storage.canonical(run_dir)
        self.autoscaling = autoscaling
        self.fault = fault
        self.state = CoordinatorState.load(self.run_dir)
        check_inputs(self.state.inputs, inputs, storage.base_name(self.run_dir))
        check_resume(self.state, specs)
        self.state.inputs = inputs
        self.current = {"spec": self.state.current, "phase": self.state.phase, "step": 0}
        self.stopping = False
        self.sink = None  # the MetricsSink of the stage in training
        self.group: WorkerGroup | None = None  # the workers of the last stage trained, waiting
        self.failure: str | None = None
        self.messages: list[str] = []  # progress lines the driver has not shown yet
        # `eval:` of the plan, beside training
        self.evaluations = Evaluations(specs, self.run_dir, s3)
        self.exporting: dict[str, ray.ObjectRef] = {}  # exports in flight, by spec
        self.deferred: list[StageSpec] = []  # trained specs whose export waits for the next growth
        self.export_error: RaygrowError | None = None  # the first export that failed

    def status(self) -> dict:
        """Where the run is (spec, phase, step, last loss and speed) and the coordinator's new
        progress messages, for the driver's console."""
        messages, self.messages = self.messages, []
        return {**self.current, "messages": messages}

    def _say(self, message: str) -> None:
        log.info("%s", message)
        self.messages.append(message)

    def run(self) -> RunOutcome:
        """Advance the state machine until every spec is done, or one stops early."""
        started = time.monotonic()
        try:
            complete = self._run_specs()
        except BaseException:
            self._close_group()
            self._finish_exports(failing=True)  # a deferred export is left to the rerun
            raise
        self._close_group()
        self._start_deferred_exports()
        self._finish_exports()
        if self.evaluations.running or self.evaluations.waiting:
            self._say("waiting for the evaluations of the stages' exports")
        self.evaluations.collect()
        if complete:
            self._advance("done")
        # withdraw the resource request, so the autoscaler can release idle nodes
        if self.autoscaling:
            from ray.autoscaler.sdk import request_resources

            request_resources(bundles=[])
        self.state.wall_s += time.monotonic() - started
        self.state.save(self.run_dir)
        return RunOutcome(complete=complete, failure=self.failure,
                          done=[s.name for s in self.specs if self._done(s.name)],
                          growths={name: entry.growth for name, entry in self.state.specs.items()
                                   if entry.growth is not None},
                          waits={name: entry.resource_wait_s
                                 for name, entry in self.state.specs.items()},
                          times={name: entry.times for name, entry in self.state.specs.items()},
                          wall_s=self.state.wall_s)

    def _run_specs(self) -> bool:
        for spec in self.specs:
            known = self.state.specs.get(spec.name)
            if known is not None and known.done:
                if known.exported:
                    self.evaluations.after_export(spec)  # one a previous invocation did not record
                else:  # trained, its export cut short: export it again (published atomically)
                    self._start_export(spec)
                continue
            self._reap_exports()
            if self.stopping or not self._run_spec(spec):
                return False
        return True

    def _done(self, name: str) -> bool:
        return name in self.state.specs and self.state.specs[name].done

    def _run_spec(self, spec: StageSpec) -> bool:
        """Take `spec` from wherever it is to done; False when training stopped before its end."""
        if self.state.current != spec.name or spec.name not in self.state.specs:
            self.state.specs[spec.name] = SpecState(fingerprint=spec.fingerprint())
            self._advance("preparing", spec.name)
        self.current.update(spec=spec.name, step=spec.start_step)
        if self.state.phase == "preparing":
            self._timed(spec, "prepare", self._prepare)
            self._advance("rescaling")
        self._start_deferred_exports()
        if self.state.phase == "rescaling" and spec.end_step == 0:
            self._advance("exporting")  # trains nothing (a pretrained model grown at once)
        if self.state.phase == "rescaling":
            if not self._chains(spec):  # else its workers are there, waiting
                self._close_group()
                self.state.specs[spec.name].resource_wait_s = check_schedulable(
                    spec.config, spec.workers, self.autoscaling,
                    spec.config.train.resource_timeout_s, stage=spec.name)
            self._advance("training")
        if spec.init.kind == "grow" and spec.init.writes_init:
            growth = self.state.specs[spec.name].growth
            self.evaluations.after_growth(spec, self._init_dir(spec),
                                          masked=bool(growth and growth.masks))
        if self.state.phase == "training":
            if not self._timed(spec, "train", self._train):
                return False
            self._advance("exporting")
        entry = self.state.specs[spec.name]
        entry.done, entry.exported = True, not spec.exports
        self.state.save(self.run_dir)
        if spec.exports:  # started once the next spec is prepared: see _start_deferred_exports
            self.deferred.append(spec)
        return True

    def _start_deferred_exports(self) -> None:
        """Start the exports of the specs trained before this point, once the next spec is
        grown: the export then reuses the growth's warm task process (2-3 s against 9-10 s in a
        cold one, jobs/bench/RESULTS.md) and runs beside the training that follows."""
        deferred, self.deferred = self.deferred, []
        for spec in deferred:
            self._start_export(spec)

    def _timed(self, spec: StageSpec, phase: str, action):
        """`action(spec)`, its start and end stamped into the spec's state (`times`)."""
        times = self.state.specs[spec.name].times
        times[f"{phase}_start"] = time.time()
        outcome = action(spec)
        times[f"{phase}_end"] = time.time()
        return outcome

    def _advance(self, phase: str, spec: str | None = None) -> None:
        self.state.advance(phase, spec)
        self.current["phase"] = phase
        self.state.save(self.run_dir)

    # ---- the phases ----------------------------------------------------------------------

    def _prepare(self, spec: StageSpec) -> None:
        """Write `<spec>/init` when the spec starts from a growth or from other data."""
        init = spec.init
        if not init.writes_init:
            return
        out = self._init_dir(spec)
        if init.kind == "pretrained":
            self._say(f"{spec.name}: loading the pretrained model {init.path}")
            _run_task(f"loading {init.path}", pretrained_checkpoint, init.path, self.fault, self.s3,
                      init.path, spec.model, out)
            return
        source = self._final_checkpoint(init.spec)
        if init.kind == "grow":
            self._say(f"{spec.name}: growing {init.spec}'s final checkpoint "
                      f"({init.growth.depth_op or '-'} depth, {init.growth.width_op or '-'} width)")
            self.state.specs[spec.name].growth = _run_task(
                f"growing {spec.name}", grow_checkpoint, source, self.fault, self.s3, source,
                self.by_name[init.spec].model, spec.model, init.growth, init.seed, out,
                rebase=init.rebase)
        else:
            _run_task(f"starting {spec.name} from {init.spec}", rebase_checkpoint, source,
                      self.fault, self.s3, source, out)

    def _train(self, spec: StageSpec) -> bool:
        """Train `spec`; True when it reached its last step."""
        growth = self.state.specs[spec.name].growth
        run = StageRun(config=spec.config, run_dir=spec.directory(self.run_dir),
                       dataset_dir=spec.dataset,
                       lr=spec.lr, workers=spec.workers, init_from=self._init_from(spec),
                       grown=spec.init.kind == "grow", fingerprint=spec.fingerprint(),
                       masks=growth.masks if growth else None,
                       ramp_steps=growth.ramp_steps if growth else 0, trainable=spec.trainable)
        self.current.pop("loss", None)
        chained = self._chains(spec)
        self._say(f"{spec.name}: training steps {spec.start_step}–{spec.end_step} on "
                  f"{spec.workers} worker(s), ZeRO-{spec.config.train.zero_stage}"
                  + (" (the same worker group)" if chained else ""))
        if not chained:
            self._close_group()
            self.group = WorkerGroup(run)
        self.sink = self.group.sink
        if self.stopping:  # asked to stop while the stage was starting
            self.sink.request_stop.remote()
        try:
            # an export that ended while this stage trains: its evaluation starts
            records = self.group.train(run, on_record=self._on_record, on_poll=self._reap_exports)
        except BaseException:
            self._close_group()
            raise
        finally:
            self.sink = None
        if not self.group.waiting:  # the stage stopped before its end: so did its workers
            self._close_group()
        stopped = [r for r in events(records, "nonfinite")
                   if (r.detail or {}).get("action") == "stopped"]
        if stopped and stopped[-1].step >= max((r.step for r in steps(records)), default=0):
            detail = stopped[-1].detail
            self.failure = (f"{spec.name}: a non-finite loss or gradient at step "
                            f"{stopped[-1].step} (loss {detail['loss']}, gradient norm "
                            f"{detail['grad_norm']}) and {detail['reason']}: the run stops "
                            "incomplete; check the learning rate and the data, then rerun (it "
                            "resumes from the stage's last checkpoint)")
            return False
        last = max((r.step for r in steps(records)), default=spec.start_step)
        stop_after = spec.config.train.stop_after
        if stop_after is not None and last >= stop_after:
            self._say(f"{spec.name}: stopped after step {last} (train.stop_after); a rerun "
                      "continues")
            return False  # the invocation ends here, even on the stage's last step
        return last >= spec.end_step

    def _chains(self, spec: StageSpec) -> bool:
        """Whether `spec` trains in the waiting workers of the stage before it (the same worker
        layout): no new worker group between them."""
        return (self.group is not None and self.group.waiting
                and self.group.layout is not None
                and self.group.layout == layout(spec.config, spec.workers))

    def _close_group(self) -> None:
        group, self.group = self.group, None
        if group is not None:
            group.close()

    def request_stop(self) -> None:
        """Stop at the next step boundary with a checkpoint (the driver got SIGTERM or Ctrl-C);
        `run` then returns an incomplete outcome, and a rerun continues from that checkpoint."""
        self.stopping = True
        if self.sink is not None:
            self.sink.request_stop.remote()

    def _on_record(self, record) -> None:
        if isinstance(record, StepRecord):
            self.current["step"] = record.step
            if record.loss is not None:
                self.current.update(loss=record.loss, tokens_per_s=record.tokens_per_s)
        elif record.event == "placement":
            ranks = (record.detail or {}).get("ranks", [])
            self._say(f"{self.current['spec']}: {len(ranks)} worker(s) on "
                      f"{len({rank['node'] for rank in ranks})} node(s): "
                      + ", ".join(f"rank {index} on {rank['ip']} ({rank['node'][:8]})"
                                  for index, rank in enumerate(ranks)))
        elif record.event in ("resume", "nonfinite", "spike", "stop"):
            self._say(f"{self.current['spec']}: {record.event} at step {record.step}"
                      + (f" ({record.checkpoint})" if record.checkpoint else "")
                      + (f": {record.detail}" if record.detail else ""))

    def _start_export(self, spec: StageSpec) -> None:
        """Start `spec`'s HF export as a Ray task; `_finish_exports` waits for it. Stamped
        export_start here and export_end by the task itself (its own clock, not when waited on)."""
        self._say(f"{spec.name}: exporting to {', '.join(spec.exports)} (beside what comes next)")
        final = self._final_checkpoint(spec.name)
        outs = [storage.join(self.run_dir, *path.split("/")) for path in spec.exports]
        self.state.specs[spec.name].times["export_start"] = time.time()
        self.exporting[spec.name] = _start_task(_stamped_export, final, self.fault, self.s3,
                                                final, outs, Manifest.load(spec.dataset))

    def _reap_exports(self, wait: bool = False, failing: bool = False) -> None:
        """Settle the exports in flight that have ended (`wait`: all of them): mark each spec
        exported and queue its evaluation (beside the training now running, as before). A failed
        export is kept in `export_error`, raised by `_finish_exports`."""
        if not self.exporting:
            return
        futures = list(self.exporting.values())
        ended, _ = ray.wait(futures, num_returns=len(futures), timeout=None if wait else 0)
        for name, future in [(n, f) for n, f in self.exporting.items() if f in ended]:
            del self.exporting[name]
            try:
                stamp = _result(future, f"exporting {name}")
            except RaygrowError as error:
                self.export_error = self.export_error or error
                continue
            entry = self.state.specs[name]
            entry.exported, entry.times["export_end"] = True, stamp
            self.state.save(self.run_dir)
            if not failing:
                self.evaluations.after_export(self.by_name[name])

    def _finish_exports(self, failing: bool = False) -> None:
        """Wait for every export in flight. The first that failed is raised (one line) unless the
        run is failing already (its own error wins); either way the rerun exports it again, as
        after any export cut short."""
        self._reap_exports(wait=True, failing=failing)
        error, self.export_error = self.export_error, None
        if error is not None and not failing:
            raise error

    # ---- where things are -----------------------------------------------------------------

    def _init_dir(self, spec: StageSpec) -> str:
        return storage.join(spec.directory(self.run_dir), INIT_DIR)

    def _init_from(self, spec: StageSpec) -> str | None:
        if spec.init.writes_init:
            return self._init_dir(spec)
        if spec.init.kind == "checkpoint":
            return self._final_checkpoint(spec.init.spec)
        return None

    def _final_checkpoint(self, name: str) -> str:
        """The final checkpoint of spec `name`: its newest, which must be at its last step (an
        older one would silently stand in for a stage that did not finish). Not verified here:
        whoever reads it verifies it, once."""
        source = self.by_name[name]
        if source.end_step == 0 and source.init.writes_init:  # trained nothing: its init is final
            return self._init_dir(source)
        found = checkpoint.candidates(source.directory(self.run_dir))
        if not found or checkpoint.step_of(found[0]) != source.end_step:
            raise CheckpointError(f"{name} has no checkpoint at its last step {source.end_step} to "
                                  "start from; rerun to train it")
        return str(found[0])


def _run_task(what: str, function, checkpoint_dir: str, fault: str | None, s3: S3Config,
              *args, **kwargs):
    """`function(*args, **kwargs)` as Ray work (see `_start_task`), waited for; a failure is
    one RaygrowError line."""
    return _result(_start_task(function, checkpoint_dir, fault, s3, *args, **kwargs), what)


def _start_task(function, checkpoint_dir: str, fault: str | None, s3: S3Config, *args, **kwargs):
    """Start `function(*args, **kwargs)` as Ray work, not in this zero-CPU actor (which may sit
    on a small head node): it declares memory by the size of the checkpoint it reads (a few
    copies of its tensors), so Ray places it on a node that can hold it. Not retried: a crash is
    reported, and the rerun redoes the step (growth is seeded, outputs are published
    atomically)."""
    memory = max(256 << 20, 4 * checkpoint.size_bytes(checkpoint_dir))
    return _task.options(num_cpus=0, memory=memory, max_retries=0).remote(
        function, fault, s3, *args, **kwargs)


def _stamped_export(*args) -> float:
    """`export_checkpoint(*args)`, then the time it ended."""
    export_checkpoint(*args)
    return time.time()


@ray.remote
def _task(function, fault: str | None, s3: S3Config, *args, **kwargs):
    """Run `function` in a Ray task with this run's S3 settings (and the test fault hook)."""
    checkpoint.set_fault(fault)
    storage.configure_s3(s3.endpoint_url, s3.region)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    return function(*args, **kwargs)


def _result(future, what: str):
    try:
        return ray.get(future)
    except ray.exceptions.RayTaskError as error:
        cause = error.cause if isinstance(getattr(error, "cause", None), RaygrowError) else None
        raise cause or RaygrowError(f"{what} failed: {first_line(error)}") from None
    except ray.exceptions.RayError as error:  # the task's process died (a crash, a lost node)
        raise RaygrowError(f"{what} failed ({type(error).__name__}); rerun to continue") from None
