"""Test setup: 8 fake CPU devices (before jax is imported) and shared small helpers."""

import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
if "--xla_force_host_platform_device_count" not in os.environ["XLA_FLAGS"]:
    os.environ["XLA_FLAGS"] += " --xla_force_host_platform_device_count=8"

import jax  # noqa: E402

jax.config.update("jax_num_cpu_devices", 8)


import pytest  # noqa: E402


@pytest.fixture(scope="session")
def pm_chain(tmp_path_factory):
    """The smoke-preset LM -> PMP -> PM chain, trained once per session: {stage: workdir}."""
    from configs import lm as lm_config, pm as pm_config, pmp as pmp_config
    from hh import main

    root = tmp_path_factory.mktemp("pm_chain")
    dirs = {name: root / name for name in ("lm", "pmp", "pm")}
    main.run(lm_config.get_config("smoke"), str(dirs["lm"]))
    pmp = pmp_config.get_config("smoke")
    pmp.init_from = str(dirs["lm"])
    main.run(pmp, str(dirs["pmp"]))
    pm = pm_config.get_config("smoke")
    pm.init_from = str(dirs["pmp"])
    main.run(pm, str(dirs["pm"]))
    return dirs


def lm_smoke_config():
    """The smoke LM that configs/distill.py:smoke expects: 128-token context, SentencePiece."""
    from configs import lm as lm_config

    config = lm_config.get_config("smoke")
    config.data.seq_len = 128
    config.data.tokenizer = "sentencepiece"
    config.data.synthetic_documents = 4000
    config.model.vocab_size = 512
    config.loop.steps, config.loop.eval_every, config.loop.checkpoint_every = 150, 0, 150
    config.optimizer.warmup_steps = 10
    return config


@pytest.fixture(scope="session")
def lm_smoke(tmp_path_factory):
    """A smoke LM trained once per session (the teacher and student of the distillation tests)."""
    from hh import main

    workdir = tmp_path_factory.mktemp("lm_smoke") / "lm"
    main.run(lm_smoke_config(), str(workdir))
    return workdir


SMOKE_PIPELINE = ["-m", "hh.pipeline", "--config", "configs/pipeline.py:smoke"]


@pytest.fixture(scope="session")
def smoke_pipeline(tmp_path_factory):
    """The whole smoke pipeline, run once per session through its CLI: (workdir, the CLI's
    output). Its users only read it or rerun it unchanged (every step then skips)."""
    import subprocess
    import sys

    workdir = tmp_path_factory.mktemp("smoke_pipeline") / "pipe"
    out = subprocess.run([sys.executable, *SMOKE_PIPELINE, "--workdir", str(workdir)],
                         capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    return workdir, out
