"""`config.init_from` = a Hugging Face directory: the LM stage adopts its architecture and
tokenizer, starts from its weights, and trains from the command line."""

import json
import subprocess
import sys

import jax
import numpy as np
import pytest

import hf_fixtures as fx
from configs import lm as lm_config
from hh.checkpoints import hf_import
from hh.checkpoints.pipeline import adopt_imported_architecture
from hh.config import ConfigError
from hh.data.hf_tokenizer import HFTokenizer
from hh.lm import stage as lm_stage
from hh.train import runtime


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory):
    """A random small Llama with its own byte-level BPE tokenizer (vocabulary sizes agree)."""
    directory = tmp_path_factory.mktemp("llama")
    fx.make_bpe_tokenizer(directory)
    tokenizer = HFTokenizer.from_directory(directory)
    fx.make_hf_model(directory, "llama", vocab_size=tokenizer.original_vocab_size)
    fx.make_bpe_tokenizer(directory)   # save_pretrained leaves the tokenizer files alone; rewrite to be sure
    return directory


def smoke_config(hf_dir, steps=2):
    config = lm_config.get_config("smoke")
    config.init_from = str(hf_dir)
    config.loop.steps = steps
    return config


def test_config_adopts_the_checkpoint_architecture_and_tokenizer(hf_dir):
    config = smoke_config(hf_dir)
    config.model.remat = "full"   # an execution choice: kept
    assert adopt_imported_architecture(config)
    tokenizer = HFTokenizer.from_directory(hf_dir)
    assert (config.model.norm, config.model.activation, config.model.n_kv_heads) == ("rmsnorm", "swiglu", 2)
    assert config.model.vocab_size == tokenizer.vocab_size   # grown by <pad>, <eoc> and the markers
    assert config.model.remat == "full" and config.data.tokenizer == str(hf_dir)
    assert adopt_imported_architecture(config)   # idempotent


def test_the_first_state_holds_the_imported_weights(hf_dir, tmp_path):
    config = smoke_config(hf_dir)
    adopt_imported_architecture(config)
    mesh, rules = runtime.mesh_and_rules(config)
    task = lm_stage.build_task(config, mesh, rules, tmp_path, verbose=False)
    state = task.init_state()
    _, reference = hf_import.load_hf_model(hf_dir, tokenizer=HFTokenizer.from_directory(hf_dir))
    jax.tree.map(lambda a, b: np.testing.assert_array_equal(np.asarray(a), np.asarray(b)),
                 state.params, reference)
    assert int(state.step) == 0


def test_init_from_must_be_a_checkpoint(tmp_path):
    config = lm_config.get_config("smoke")
    config.init_from = str(tmp_path / "nowhere")
    with pytest.raises(ConfigError, match="config.init_from=.* is not a Hugging Face directory"):
        lm_stage.train_and_evaluate(config, tmp_path / "w")


@pytest.mark.slow
def test_cli_continues_pretraining_an_imported_model(hf_dir, tmp_path):
    workdir = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, "-m", "hh.main", "--config", "configs/lm.py:smoke", "--workdir", str(workdir),
         f"--config.init_from={hf_dir}", "--config.loop.steps=6", "--config.loop.eval_every=6"],
        capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    written = json.loads((workdir / "config.json").read_text())
    assert written["model"]["norm"] == "rmsnorm" and written["init_from"] == str(hf_dir)
    assert (workdir / "tokenizer" / "tokenizer.json").exists()
    rows = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    evals = [r["eval/loss"] for r in rows if "eval/loss" in r]
    assert len(evals) == 1 and np.isfinite(evals[0])


def test_pm_stage_starts_its_trunk_from_an_imported_model(hf_dir, tmp_path):
    """configs/pm.py with init_from = an HF directory: trunk = the checkpoint, score head = zero."""
    from configs import pm as pm_config
    from hh.data import pm_sources
    from hh.pm import stage as pm_stage
    from hh.train import init_from
    config = pm_config.get_config("smoke")
    config.init_from = str(hf_dir)
    init_from.resolve_from_source(config)
    assert config.model.norm == "rmsnorm" and config.data.tokenizer == str(hf_dir)
    train_source, eval_source = pm_sources.train_source(config.data, config.train), pm_sources.eval_source(config.data)
    pm_stage.resolve_steps(config, len(train_source))
    mesh, rules = runtime.mesh_and_rules(config)
    tokenizer = init_from.initial_tokenizer(config, pm_sources.texts(train_source), tmp_path)
    assert isinstance(tokenizer, HFTokenizer) and (tmp_path / "tokenizer" / "tokenizer.json").exists()
    task = pm_stage.build_task(config, mesh, rules, train_source, eval_source, tokenizer, verbose=False)
    state = task.init_state()
    _, reference = hf_import.load_hf_model(hf_dir, tokenizer=tokenizer)
    jax.tree.map(lambda a, b: np.testing.assert_array_equal(np.asarray(a), np.asarray(b)),
                 state.params["trunk"], reference)
    assert float(np.abs(np.asarray(state.params["score_head"]["score"]["kernel"])).max()) == 0.0


def test_unread_checkpoint_tensors_are_refused_unless_the_config_allows_them(hf_dir, tmp_path):
    """config.init_from_allow_unused reaches the importer: an extra tensor stops the LM stage's
    first state, and the same run with a pattern for it starts from the checkpoint's weights."""
    import shutil

    from safetensors.numpy import load_file, save_file

    from hh.checkpoints.safetensors_dir import CheckpointFormatError
    directory = tmp_path / "extra"
    shutil.copytree(hf_dir, directory)
    tensors = {**load_file(directory / "model.safetensors"), "model.extra.weight": np.ones((2, 2), np.float32)}
    save_file(tensors, directory / "model.safetensors", metadata={"format": "pt"})

    def first_state(allow):
        config = smoke_config(directory)
        config.init_from_allow_unused = allow
        adopt_imported_architecture(config)
        mesh, rules = runtime.mesh_and_rules(config)
        return lm_stage.build_task(config, mesh, rules, tmp_path / "w", verbose=False).init_state()

    with pytest.raises(CheckpointFormatError, match=r"model\.extra\.weight"):
        first_state(())
    state = first_state((r"model\.extra\.weight",))
    _, reference = hf_import.load_hf_model(hf_dir, tokenizer=HFTokenizer.from_directory(hf_dir))
    jax.tree.map(lambda a, b: np.testing.assert_array_equal(np.asarray(a), np.asarray(b)),
                 state.params, reference)
