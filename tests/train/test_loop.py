"""The shared training loop, driven by the LM stage on the smoke preset: outputs, SIGTERM
save-and-resume with identical losses, and the NaN guard; its hooks on a counting task."""

import json
import os
import signal

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from configs import lm as lm_config
from hh import main
from hh.lm import stage
from hh.train import runtime
from hh.train.checkpoint import Checkpointer
from hh.train.loop import LoopHook, NonFiniteLossError, Task, train_loop
from hh.train.metrics import read_metrics


def _smoke(steps=20):
    config = lm_config.get_config("smoke")
    config.loop.steps = steps
    return config


def _train_losses(workdir):
    rows = [r for r in read_metrics(workdir) if "train/loss" in r]
    return {r["step"]: r["train/loss"] for r in rows}


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("uninterrupted")
    result = main.run(_smoke(), str(workdir))
    return workdir, result


def test_run_writes_checkpoints_metrics_and_provenance(uninterrupted):
    workdir, result = uninterrupted
    assert result.step == 20 and not result.preempted
    assert Checkpointer(workdir / "checkpoints", keep=3, every=10).all_steps() == [10, 20]
    losses = _train_losses(workdir)
    assert sorted(losses) == list(range(1, 21))
    evals = [r for r in read_metrics(workdir) if "eval/loss" in r]
    assert [r["step"] for r in evals] == [10, 20]
    # it learns: from ln(384) ≈ 5.95 at init to well below within 20 steps
    assert losses[1] > 5.5 and evals[-1]["eval/loss"] < 4.8
    assert evals[-1]["eval/perplexity"] == pytest.approx(np.exp(evals[-1]["eval/loss"]), rel=1e-5)
    config = json.loads((workdir / "config.json").read_text())
    assert config["model"]["vocab_size"] == 384 and config["stage"] == "lm"
    provenance = json.loads((workdir / "provenance.json").read_text())
    assert set(provenance) >= {"config_hash", "git_commit", "git_dirty", "packages", "devices", "mesh"}
    assert any(p.startswith("jax==") for p in provenance["packages"])
    assert (workdir / "tensorboard").is_dir()


@pytest.mark.slow
def test_sigterm_saves_and_the_resumed_run_matches(uninterrupted, tmp_path):
    reference = _train_losses(uninterrupted[0])
    config = _smoke()
    mesh, rules = runtime.mesh_and_rules(config)
    task = stage.build_task(config, mesh, rules, verbose=False)
    real_step, calls = task.train_step, [0]

    def step_then_preempt(state, batch):
        calls[0] += 1
        if calls[0] == 7:
            os.kill(os.getpid(), signal.SIGTERM)   # what a preemption notice does
        return real_step(state, batch)

    task.train_step = step_then_preempt
    first = train_loop(task, config.loop, tmp_path, meta={})
    assert first.preempted and first.step == 7
    assert Checkpointer(tmp_path / "checkpoints", keep=3, every=10).latest_step() == 7

    second = main.run(config, str(tmp_path))
    assert second.step == 20 and not second.preempted
    resumed = _train_losses(tmp_path)
    assert sorted(resumed) == list(range(1, 21))       # no duplicated or missing rows
    for s in range(1, 21):
        assert resumed[s] == pytest.approx(reference[s], rel=1e-6, abs=1e-6), s


def test_nan_guard_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    config = _smoke()
    config.loop.log_every = 5
    mesh, rules = runtime.mesh_and_rules(config)
    task = stage.build_task(config, mesh, rules, verbose=False)
    real_step, calls = task.train_step, [0]

    def poisoned(state, batch):
        calls[0] += 1
        state, metrics = real_step(state, batch)
        if calls[0] == 13:
            metrics = {**metrics, "loss": metrics["loss"] * np.nan}
        return state, metrics

    task.train_step = poisoned
    with pytest.raises(NonFiniteLossError, match="step 13"):
        train_loop(task, config.loop, tmp_path, meta={})
    assert Checkpointer(tmp_path / "checkpoints", keep=3, every=10).all_steps() == [10]
    assert max(r["step"] for r in read_metrics(tmp_path)) <= 10


def test_jit_compiles_the_train_step_once(tmp_path):
    config = _smoke(steps=6)
    mesh, rules = runtime.mesh_and_rules(config)
    task = stage.build_task(config, mesh, rules, verbose=False)
    train_loop(task, config.loop, tmp_path, meta={})
    assert task.train_step.jitted._cache_size() == 1


@pytest.mark.slow   # a path detail, covered by the CLI tests too; saves the fast suite ~8 s
def test_a_relative_workdir_works(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = _smoke(steps=10)
    config.loop.eval_every = 0
    result = main.run(config, "runs/relative")
    assert result.step == 10
    assert Checkpointer(tmp_path / "runs/relative/checkpoints", keep=3, every=10).all_steps() == [10]


def test_eval_batches_may_differ_from_the_train_batch():
    """eval_batch_size ≠ global_batch_size: the same eval numbers (sums over the same rows)."""
    from hh.train.loop import evaluate

    config = _smoke(steps=2)
    mesh, rules = runtime.mesh_and_rules(config)
    evals, state = {}, None
    for size in (8, 16):
        config.train.eval_batch_size = size
        task = stage.build_task(config, mesh, rules, verbose=False)
        state = state if state is not None else task.init_state()
        evals[size] = evaluate(task, state)
    assert evals[8]["tokens"] == evals[16]["tokens"]
    np.testing.assert_allclose(evals[8]["loss"], evals[16]["loss"], rtol=1e-5, atol=1e-6)


class _NumberedBatches:
    """Batch i holds the number i: what a step's outputs carry, so hooks can be checked."""

    def __init__(self):
        self.i = 0

    def __next__(self):
        self.i += 1
        return {"x": np.full((8, 1), self.i, np.int32)}

    def state(self):
        return {"i": self.i}

    def restore(self, state):
        self.i = int(state["i"])


class _Recorder(LoopHook):
    def __init__(self):
        self.calls = []

    def start(self, step):
        self.calls.append(("start", step))

    def after_step(self, step, state, outputs):
        self.calls.append((step, int(state["n"]), int(outputs)))


def _counting_task(hook):
    mesh = jax.make_mesh((jax.device_count(),), ("data",))
    replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())

    @jax.jit
    def train_step(state, batch):
        return {"n": state["n"] + 1}, {"loss": jnp.float32(1.0)}, jnp.max(batch["x"])
    return Task(abstract_state={"n": jax.ShapeDtypeStruct((), jnp.int32, sharding=replicated)},
                init_state=lambda: {"n": jax.device_put(jnp.int32(0), replicated)}, train_step=train_step,
                train_batches=_NumberedBatches(), global_batch_size=8, tokens_per_step=8,
                batch_sharding=jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data")),
                hooks=[hook])


def test_hooks_get_the_start_step_and_every_steps_outputs(tmp_path):
    loop_cfg = ml_collections.ConfigDict(dict(steps=4, log_every=1, eval_every=0, checkpoint_every=2,
                                              keep_checkpoints=3, async_checkpoints=False))
    first = _Recorder()
    train_loop(_counting_task(first), loop_cfg, tmp_path, meta={})
    assert first.calls == [("start", 0), (1, 1, 1), (2, 2, 2), (3, 3, 3), (4, 4, 4)]
    loop_cfg.steps = 6   # resumed from step 4: the hook is told so, then sees steps 5 and 6
    resumed = _Recorder()
    train_loop(_counting_task(resumed), loop_cfg, tmp_path, meta={})
    assert resumed.calls == [("start", 4), (5, 5, 5), (6, 6, 6)]
