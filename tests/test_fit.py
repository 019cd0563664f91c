"""hh.tools.fit: the stages' real steps compiled ahead of time for a TPU topology from this CPU.

The compiles need libtpu (the `tpu` extra, which `make test` installs) and skip without it. The FLOP
references are hh.train.flops' analytic counts, the memory reference the parameter counts of the
real modules (hh.models.presets.parameter_counts).
"""

import math

import pytest

from configs import dpo as dpo_config, lm as lm_config, pm as pm_config, ppo as ppo_config
from hh.models import presets
from hh.tools import fit
from hh.train import runtime
from launch import slices

TOPOLOGY = "v5p:2x2x1"   # 4 chips, one host


@pytest.fixture(scope="module")
def lm_report():
    pytest.importorskip("libtpu")
    return fit.fit_report(lm_config.get_config("tiny"), TOPOLOGY)


@pytest.fixture(scope="module")
def ppo_report():
    pytest.importorskip("libtpu")
    return fit.fit_report(ppo_config.get_config("smoke"), TOPOLOGY)


def _sane(report):
    assert report["devices"] == report["chips"] == 4 and report["generation"] == "v5p"
    assert report["hbm_bytes_per_device"] == fit.HBM_AVAILABLE["v5p"] and report["peak_flops_per_device"] == 459e12
    for phase in report["phases"].values():
        for key in ("argument_bytes", "output_bytes", "temp_bytes", "total_bytes"):
            assert phase[key] > 0, key
        assert phase["xla_flops"] > 0 and phase["model_flops"] > 0 and phase["compile_s"] > 0
    assert report["peak_bytes"] == max(p["total_bytes"] for p in report["phases"].values())
    assert report["fits"] == (report["peak_bytes"] <= report["hbm_bytes_per_device"])


def test_lm_step_report(lm_report):
    _sane(lm_report)
    assert list(lm_report["phases"]) == ["train"] and lm_report["fits"]
    assert lm_report["mesh"] == {"data": 4, "fsdp": 1, "tensor": 1}
    train = lm_report["phases"]["train"]
    # No loops in the tiny step, so XLA's count is the whole step: the analytic 6·N + attention per
    # token (per chip) leaves out only norms, softmax, loss and optimizer, a few percent here.
    assert 0.9 < train["xla_flops"] / train["model_flops"] < 1.3
    # donated state: the new state reuses the old one's buffers
    assert train["alias_bytes"] > 0.5 * train["argument_bytes"]


def test_ppo_counts_all_four_models(ppo_report):
    _sane(ppo_report)
    phases = ppo_report["phases"]
    assert list(phases) == ["generate", "score", "update"]
    # Pure data parallelism (smoke): every device holds every float32 weight. Policy and value
    # model with their Adam moments (3 copies), frozen reference and PM (1 copy each).
    cfg = runtime.model_config(ppo_config.get_config("smoke"))
    lm_params = presets.parameter_counts(cfg)[1]
    value_params = lm_params - cfg.d_model * cfg.vocab_size   # the critic has no LM head
    at_least = 4 * (3 * lm_params + 3 * value_params + lm_params + lm_params)
    for name, phase in phases.items():
        assert phase["total_bytes"] >= at_least, name
        assert phase["resident_other_bytes"] > 0, name   # what the phase does not take as arguments
    # what generate leaves resident (value model, both optimizer states, reference, PM) is most
    # of the four models
    assert phases["generate"]["resident_other_bytes"] > 0.6 * at_least


def test_ppo_flops_against_analytic(ppo_report):
    config = ppo_config.get_config("smoke")
    phases, minibatches = ppo_report["phases"], config.ppo.minibatches
    # Scoring and the update's θ_old forwards run in a loop over minibatch × microbatch row
    # pieces, and XLA counts a loop's body once
    pieces = minibatches * config.train.microbatches
    assert 0.7 < phases["score"]["xla_flops"] * pieces / phases["score"]["model_flops"] < 1.3
    # The update: the θ_old forwards of policy and value model (counted as the score phase's two
    # forwards, same sizes), then the minibatch scan
    theta_old = phases["score"]["model_flops"]
    one_minibatch = theta_old / pieces + (phases["update"]["model_flops"] - theta_old) / minibatches
    assert 0.7 < phases["update"]["xla_flops"] / one_minibatch < 1.3


def test_dpo_counts_the_policy_its_moments_and_the_frozen_reference():
    pytest.importorskip("libtpu")
    report = fit.fit_report(dpo_config.get_config("smoke"), TOPOLOGY)
    _sane(report)
    phases = report["phases"]
    assert list(phases) == ["reference", "update"]
    lm_params = presets.parameter_counts(runtime.model_config(dpo_config.get_config("smoke")))[1]
    for name, phase in phases.items():   # float32 policy + 2 Adam moments + the reference
        assert phase["total_bytes"] >= 4 * 4 * lm_params, name
        assert phase["resident_other_bytes"] > 0, name
    # one forward of both responses vs the update's forward + backward of both: about 1 : 3
    assert 2.5 < phases["update"]["xla_flops"] / phases["reference"]["xla_flops"] < 3.6


def test_cli_helpers():
    assert fit.parse_mesh("data=1,fsdp=-1,tensor=4") == {"data": 1, "fsdp": -1, "tensor": 4}
    config = fit.use_paper_vocab(ppo_config.get_config("13M"))
    assert config.model.vocab_size == presets.PAPER_VOCAB
    assert fit.use_paper_vocab(ppo_config.get_config("smoke")).model.vocab_size == 384
    with pytest.raises(ValueError, match="topology"):
        fit.topology_devices("v9x:2x2")


def test_default_slices_cover_every_preset_with_a_valid_mesh():
    assert set(slices.DEFAULT_SLICES) == set(presets.preset_names())
    for preset in presets.preset_names():
        entry = slices.default_slice(preset)
        chips = math.prod(int(d) for d in entry["topology"].removeprefix("v5p:").split("x"))
        mesh = entry["mesh"]
        assert math.prod(mesh.values()) == chips, preset
        shards = mesh["data"] * mesh["fsdp"]
        # every stage's paper batch splits over the batch axes (PPO: per minibatch)
        assert lm_config.get_config(preset).train.global_batch_size % shards == 0, preset
        assert pm_config.get_config(preset).train.global_batch_size % shards == 0, preset
        assert dpo_config.get_config(preset).train.global_batch_size % shards == 0, preset
        ppo = ppo_config.get_config(preset)
        assert ppo.train.global_batch_size % (ppo.ppo.minibatches * shards) == 0, preset
    with pytest.raises(KeyError, match="7B"):
        slices.default_slice("7B")


def test_mesh_candidates_cover_every_factorisation_fsdp_heavy_first():
    from hh.tools.mesh_choice import mesh_candidates
    meshes = mesh_candidates(8)
    assert len(meshes) == 10 and all(m["data"] * m["fsdp"] * m["tensor"] == 8 for m in meshes)
    assert len({tuple(m.values()) for m in meshes}) == 10
    assert meshes[:4] == [{"data": 1, "fsdp": 8, "tensor": 1}, {"data": 2, "fsdp": 4, "tensor": 1},
                          {"data": 4, "fsdp": 2, "tensor": 1}, {"data": 8, "fsdp": 1, "tensor": 1}]
    assert meshes[-1] == {"data": 1, "fsdp": 1, "tensor": 8}


def test_a_larger_slice_gets_a_proposed_mesh_instead_of_a_divisibility_error():
    """The 52B PPO config on v5p:8x8x8 (512 chips): its minibatch of 512 / 4 rows cannot be split
    over data × fsdp = 512, so the fit check answers with the first mesh the stage accepts."""
    from hh.config import ConfigError
    config = fit.use_paper_vocab(ppo_config.get_config("52B"))
    config.mesh = {"data": 1, "fsdp": -1, "tensor": 1}
    with pytest.raises(ConfigError, match="not divisible by minibatches × microbatches × data × fsdp = 2048"):
        fit._validate(config, 512)
    proposed, why = fit.mesh_for_slice(config, 512)
    assert why["config_mesh"] == {"data": 1, "fsdp": -1, "tensor": 1} and "2048" in why["reason"]
    assert why["mesh"] == dict(proposed.mesh) == {"data": 1, "fsdp": 128, "tensor": 4}
    assert fit._validate(proposed, 512)["tensor"] == 4          # valid, and tensor as small as it can be
    assert dict(config.mesh) == {"data": 1, "fsdp": -1, "tensor": 1}   # the caller's config is unchanged
    same, none = fit.mesh_for_slice(config, 32)                 # a slice where it already divides
    assert same is config and none is None
    config.model.n_heads = 3                                   # nothing divides 3 heads and 512 rows/4
    with pytest.raises(ConfigError, match="no .* mesh of 512 devices"):
        fit.mesh_for_slice(config, 512)
