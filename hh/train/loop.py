"""The one training loop shared by every stage (LM, PMP, PM, distillation, PPO).

It owns what stages must not re-implement: resume from the workdir's latest checkpoint (train
state plus data-iterator position; a shape that no longer fits names the parameter and the config
field behind it), per-process global batches, periodic eval, metrics, a
progress line, async checkpoints, a save-and-exit on SIGTERM, and a NaN/inf guard. Steps are
dispatched asynchronously; metrics are fetched from the device only at log, eval and save points.
A stage's own host-side work between steps (e.g. PPO's sample log) is a LoopHook.
"""

import dataclasses
import signal
import time
from typing import Any, Callable, Iterable, Iterator, Optional, Sequence

import jax
import numpy as np
import tqdm
from etils import epath
from jax.experimental import multihost_utils

from hh.parallel.distributed import one_at_a_time
from hh.parallel.sharding import make_global_batch
from hh.train import resume
from hh.train.checkpoint import Checkpointer, ShapeMismatchError
from hh.train.metrics import MetricsWriter
from hh.train.step import means_from_sums


class NonFiniteLossError(RuntimeError):
    """Raised when a step's metrics are NaN/inf; the last checkpoint (all finite) is kept."""


class LoopHook:
    """Host-side work beside the steps, called on every process (collectives are allowed).

    Subclasses override what they need. A hook that reads a step's device outputs should fetch
    them only at the steps it acts on, so the loop's other steps stay free of host round trips.
    """

    def start(self, step: int) -> None:
        """Before the first step: `step` is where the run starts (0, or the restored checkpoint's),
        so output written after that step by an interrupted run can be dropped."""

    def after_step(self, step: int, state, outputs) -> None:
        """After step `step` (counted from 1), before any checkpoint of it is saved. outputs: the
        train step's third result, or None when it returns (state, metrics)."""


@dataclasses.dataclass
class Task:
    """What a stage hands the loop. Batches are process-local numpy dicts."""
    abstract_state: Any                       # ShapeDtypeStructs carrying shardings (restore target)
    init_state: Callable[[], Any]             # fresh state, already sharded
    train_step: Callable                      # (state, batch) -> (state, metrics[, outputs for hooks])
    train_batches: Iterator                   # with .state() -> dict and .restore(dict)
    batch_sharding: Any                       # NamedSharding of [batch, length] inputs
    global_batch_size: int
    tokens_per_step: int
    eval_step: Optional[Callable] = None      # jitted (state, batch) -> dict of sums
    eval_batches: Optional[Callable[[], Iterable]] = None
    eval_summary: Callable[[dict], dict] = means_from_sums
    eval_batch_size: Optional[int] = None     # global rows per eval batch (None: global_batch_size)
    hooks: Sequence[LoopHook] = ()


@dataclasses.dataclass
class LoopResult:
    state: Any
    step: int
    preempted: bool
    last_eval: Optional[dict]


class _StopFlag:
    """Preemption: the loop saves and exits at the next step boundary.

    One process: our SIGTERM handler sets a flag. Several processes: JAX's preemption sync point
    (set up by jax.distributed, which watches for the TPU VM's notice) makes every process stop
    at the same step; a local flag alone would leave the others hanging in a collective.
    """

    def __init__(self):
        self.local = False
        self._previous = None
        if jax.process_count() == 1:
            self._previous = signal.signal(signal.SIGTERM, self._handle)

    def _handle(self, signum, frame):
        self.local = True

    def requested(self, step: int) -> bool:
        if jax.process_count() == 1:
            return self.local
        return multihost_utils.reached_preemption_sync_point(step)

    def restore(self):
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)


def evaluate(task: Task, state) -> dict:
    """Sums the eval step over one pass of the eval batches, then averages once."""
    totals = None
    for local in task.eval_batches():
        batch = make_global_batch(local, task.batch_sharding, task.eval_batch_size or task.global_batch_size)
        sums = one_at_a_time(task.eval_step(state, batch))   # eval steps are independent
        totals = sums if totals is None else jax.tree.map(lambda a, b: a + b, totals, sums)
    return {k: float(v) for k, v in task.eval_summary(jax.device_get(totals)).items()}


def _check_finite(rows):
    for step, metrics in rows:
        bad = {k: v for k, v in metrics.items() if not np.all(np.isfinite(v))}
        if bad:
            raise NonFiniteLossError(f"non-finite metrics at step {step}: {bad}; stopping and "
                                     f"keeping the last checkpoint")


def _restore(ckpt, step, task, workdir, meta):
    try:
        return ckpt.restore(step, task.abstract_state)
    except ShapeMismatchError as error:   # which config field made the shapes differ
        ckpt.close()
        point = resume.resume_point(workdir)
        raise resume.explain_mismatch(error, point and point.config, meta.get("config")) from None


def train_loop(task: Task, loop_cfg, workdir, meta: dict) -> LoopResult:
    """Runs `loop_cfg.steps` steps of `task`, resuming from `workdir` if it has a checkpoint.

    loop_cfg: steps, log_every, eval_every, checkpoint_every, keep_checkpoints, async_checkpoints.
    meta: saved with every checkpoint (hh.train.resume.start_run's: the config and its changes).
    """
    workdir = epath.Path(workdir)
    ckpt = Checkpointer(workdir / "checkpoints", keep=loop_cfg.keep_checkpoints,
                        every=loop_cfg.checkpoint_every, async_save=loop_cfg.async_checkpoints)
    start = ckpt.latest_step()
    if start is not None:
        state, data_state, _ = _restore(ckpt, start, task, workdir, meta)
        task.train_batches.restore(data_state)
        print(f"resumed from {workdir / 'checkpoints'} at step {start}", flush=True)
    else:
        state, start = task.init_state(), 0
    for hook in task.hooks:
        hook.start(start)
    writer = MetricsWriter(workdir, resume_step=start if start else None)
    stop = _StopFlag()
    pending, last_eval, step, preempted = [], None, start, False
    bar = tqdm.tqdm(total=loop_cfg.steps, initial=start, unit="step", dynamic_ncols=True,
                    disable=jax.process_index() != 0, mininterval=2.0)
    clock, clock_step = time.perf_counter(), start

    def flush():
        nonlocal clock, clock_step
        rows = jax.device_get(pending)
        pending.clear()
        _check_finite(rows)
        now = time.perf_counter()
        tokens_per_s = (step - clock_step) * task.tokens_per_step / max(now - clock, 1e-9)
        clock, clock_step = now, step
        for s, m in rows:
            writer.write(s, m)
        if rows:
            bar.set_postfix(loss=f"{rows[-1][1].get('loss', float('nan')):.4f}",
                            tok_s=f"{tokens_per_s:,.0f}", refresh=False)
            writer.write(step, {"tokens_per_second": tokens_per_s}, prefix="perf")

    try:
        while step < loop_cfg.steps:
            batch = make_global_batch(next(task.train_batches), task.batch_sharding,
                                      task.global_batch_size)
            state, metrics, *outputs = task.train_step(state, batch)
            step += 1
            for hook in task.hooks:
                hook.after_step(step, state, outputs[0] if outputs else None)
            bar.update(1)
            pending.append((step, metrics))
            last = step == loop_cfg.steps
            preempted = stop.requested(step)
            save = last or preempted or step % loop_cfg.checkpoint_every == 0
            if save or step % loop_cfg.log_every == 0:
                flush()  # also the NaN guard: nothing is saved unless all steps since are finite
            if save:
                ckpt.save(step, state, task.train_batches.state(), {**meta, "step": step}, force=True)
            if task.eval_step and (last or (loop_cfg.eval_every and step % loop_cfg.eval_every == 0)):
                last_eval = evaluate(task, state)
                writer.write(step, last_eval, prefix="eval")
                bar.write(f"step {step}: eval " + ", ".join(f"{k}={v:.4g}" for k, v in last_eval.items()))
            if preempted:
                bar.write(f"SIGTERM: saved a checkpoint at step {step}; exiting")
                break
    finally:
        getattr(task.train_batches, "close", lambda: None)()   # prefetch threads, worker processes
        ckpt.wait()   # lets an in-flight async save finish, so the last good checkpoint is whole
        ckpt.close()
        stop.restore()
        bar.close()
        writer.close()
    return LoopResult(state=state, step=step, preempted=preempted, last_eval=last_eval)
