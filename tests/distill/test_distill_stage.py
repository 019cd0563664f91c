"""The distillation stage on the smoke LM: the held-out KL to the prompted teacher halves, the
stored targets are the teacher's (re-derived), shards are reused and only lost ones recomputed,
the result is an LM workdir for later stages, and config errors name the field."""

import json
import re
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import distill as distill_config
from hh import main
from hh.config import ConfigError
from hh.data.tokenizer import SentencePieceTokenizer
from hh.distill import data as distill_data, prompt as hhh_prompt
from hh.distill.stage import BEFORE_FILE, TEACHER_DIR
from hh.distill.teacher import ARRAYS, StoredTargets
from hh.models.transformer import TransformerConfig, TransformerLM
from hh.train import init_from

TOL = dict(rtol=1e-5, atol=1e-6)


def smoke_config(lm_workdir, **overrides):
    config = distill_config.get_config("smoke")
    config.init_from = str(lm_workdir)
    for key, value in overrides.items():
        node, _, leaf = key.rpartition(".")
        (config[node] if node else config)[leaf] = value
    return config


@pytest.fixture(scope="module")
def distilled(lm_smoke, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("distill") / "run"
    return workdir, main.run(smoke_config(lm_smoke), str(workdir))


def test_distillation_halves_the_held_out_kl(distilled):
    workdir, result = distilled
    before = json.loads((workdir / BEFORE_FILE).read_text())
    after = result.last_eval
    assert before["tokens"] == after["tokens"] > 1000
    assert before["kl"] > 0.1, before          # the prompt really changes the LM's predictions
    assert after["kl"] <= 0.5 * before["kl"], (before, after)
    assert after["top1_agreement"] > before["top1_agreement"]
    assert after["teacher_top_mass"] > before["teacher_top_mass"]


def _teacher_log_probs(lm_workdir, workdir, config, row):
    """log p0(· | [bos] + prompt + text[:j]) for the text positions of one row, in float64."""
    tokenizer = SentencePieceTokenizer.load(workdir / "tokenizer")
    _, prompt_ids = hhh_prompt.load_prompt(config.distill, tokenizer, config.data.seq_len)
    texts = distill_data.distillation_texts(config.data)[0]
    rows = distill_data.text_rows(texts, tokenizer, config.distill.text_len)
    n = int(rows["loss_mask"][row].sum())
    tokens = np.concatenate([[tokenizer.bos_id], prompt_ids, rows["inputs"][row, 1:n]])[None]
    source = json.loads((lm_workdir / "config.json").read_text())["model"]
    model = TransformerLM(TransformerConfig(**source))
    abstract = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 8), jnp.int32)))["params"]
    abstract = jax.tree.map(lambda x: getattr(x, "value", x), abstract, is_leaf=lambda x: hasattr(x, "value"))
    params = init_from.initial_params(str(lm_workdir), abstract, None)
    logits = np.asarray(model.apply({"params": params}, jnp.asarray(tokens))["logits"], np.float64)[0]
    logits = logits[len(prompt_ids):]
    return logits - np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1, keepdims=True)) \
        - logits.max(-1, keepdims=True), n


def test_stored_targets_are_the_prompted_teachers(lm_smoke, distilled):
    workdir, _ = distilled
    config = smoke_config(lm_smoke)
    stored = StoredTargets(workdir / TEACHER_DIR / "train")
    assert len(stored) == config.data.distill_texts
    row = 3
    got = stored.gather(np.array([row]))
    log_p, n = _teacher_log_probs(lm_smoke, workdir, config, row)
    top = np.argsort(-log_p, axis=-1, kind="stable")[:, :50]
    np.testing.assert_array_equal(got["teacher_indices"][0, :n], top)
    np.testing.assert_allclose(got["teacher_log_probs"][0, :n], np.take_along_axis(log_p, top, -1),
                               rtol=1e-4, atol=1e-5)
    total = np.exp(got["teacher_log_probs"][0, :n].astype(np.float64)).sum(-1) + \
        np.exp(got["teacher_rest"][0, :n].astype(np.float64))
    np.testing.assert_allclose(total, 1.0, rtol=1e-5)


def _written(out):
    return re.findall(r"teacher targets: wrote \S+/teacher/(\w+/shard-\d+)", out)


def test_a_finished_run_resumes_without_recomputing(lm_smoke, distilled, capsys):
    workdir, _ = distilled
    capsys.readouterr()
    result = main.run(smoke_config(lm_smoke), str(workdir))
    out = capsys.readouterr().out
    assert result.step == 40 and "resumed from" in out and _written(out) == []


def test_only_a_lost_shard_is_recomputed(lm_smoke, distilled, tmp_path, capsys):
    """A run killed during the teacher pass leaves finished shards and maybe a temporary one."""
    workdir, _ = distilled
    shutil.copytree(workdir / TEACHER_DIR, tmp_path / "run" / TEACHER_DIR)
    train = tmp_path / "run" / TEACHER_DIR / "train"
    shutil.rmtree(train / "shard-00002")
    (train / ".shard-00003.abc.tmp").mkdir()   # a half-written shard: ignored, never read
    capsys.readouterr()
    main.run(smoke_config(lm_smoke, **{"loop.steps": 2}), str(tmp_path / "run"))
    assert _written(capsys.readouterr().out) == ["train/shard-00002"]
    for key in ARRAYS:
        np.testing.assert_allclose(np.load(train / "shard-00002" / f"{key}.npy"),
                                   np.load(workdir / TEACHER_DIR / "train" / "shard-00002" / f"{key}.npy"),
                                   **TOL)


def test_targets_of_another_prompt_are_refused(lm_smoke, distilled, tmp_path):
    workdir, _ = distilled
    shutil.copytree(workdir / TEACHER_DIR, tmp_path / "run" / TEACHER_DIR)
    prompt = tmp_path / "other.txt"
    prompt.write_text("Be kind.\n-----\nHuman: hi\n\nAssistant: hello\n")
    with pytest.raises(ConfigError, match=r"teacher targets in .* another \['prompt', 'prompt_tokens'\]"):
        main.run(smoke_config(lm_smoke, **{"distill.prompt_file": str(prompt)}), str(tmp_path / "run"))


def test_the_result_is_an_lm_workdir_for_later_stages(distilled):
    workdir, result = distilled
    assert json.loads((workdir / "config.json").read_text())["stage"] == "distill"
    assert (workdir / "tokenizer" / "tokenizer.model").exists()
    abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), result.state.params)
    params = init_from.initial_params(str(workdir), abstract, None)
    jax.tree.map(np.testing.assert_array_equal, params, jax.device_get(result.state.params))
    pm = init_from.initial_params(str(workdir), {"trunk": abstract}, lambda: {"trunk": None, "head": 0})
    assert pm["head"] == 0   # a PM started from it: the distilled LM is its trunk
    jax.tree.map(np.testing.assert_array_equal, pm["trunk"], jax.device_get(result.state.params))


@pytest.mark.parametrize("overrides,message", [
    ({"init_from": ""}, r"config\.init_from is empty"),
    ({"data.seq_len": 256}, r"config\.data\.seq_len=256 .* exceeds the context 128"),
    ({"distill.text_len": 100}, r"config\.distill\.text_len=100: .* > config\.data\.seq_len=128"),
    ({"train.eval_batch_size": 16}, r"config\.train\.eval_batch_size=16"),
    ({"distill.top_k": 0}, r"config\.distill\.top_k=0"),
])
def test_config_errors_name_the_field(lm_smoke, tmp_path, overrides, message):
    with pytest.raises(ConfigError, match=message):
        main.run(smoke_config(lm_smoke, **overrides), str(tmp_path / "run"))


@pytest.mark.parametrize("preset", ["smoke", "tiny", "13M", "52B"])
def test_presets_validate_with_the_papers_learning_rate(preset):
    from configs import lm as lm_config
    from hh.config import validate
    from hh.distill.stage import validate_distill
    from hh.train.optim import learning_rate_schedule

    config = distill_config.get_config(preset)
    config.init_from = "/some/lm"
    validate_distill(config)
    validate(config, n_devices=8)
    lm_lr = lm_config.get_config(preset).optimizer.learning_rate
    schedule = learning_rate_schedule(config.optimizer, config.loop.steps)   # Bai et al. App. A.1
    assert float(schedule(0)) == pytest.approx(0.05 * lm_lr)
    assert float(schedule(config.loop.steps // 2)) == pytest.approx(0.025 * lm_lr, rel=0.02)
    assert float(schedule(config.loop.steps)) == pytest.approx(0.0, abs=1e-12)
    if preset in ("13M", "52B"):
        assert config.train.global_batch_size == 32 and config.train.loss_chunk == 256
