"""The model family: the paper's seven sizes, counted from the real module (no allocation)."""

import subprocess
import sys

import pytest

from hh.models import presets

# Askell et al. 2021 App. A, Table 1.
PAPER = {"13M": (4, 512), "42M": (6, 768), "197M": (10, 1280), "810M": (16, 2048),
         "2.7B": (24, 3072), "13B": (40, 5120), "52B": (64, 8192)}


@pytest.mark.parametrize("name", list(PAPER))
def test_paper_size_matches_twelve_l_d_squared(name):
    cfg = presets.model_config(name)
    n_layers, d_model = PAPER[name]
    assert (cfg.n_layers, cfg.d_model, cfg.d_ff) == (n_layers, d_model, 4 * d_model)
    assert cfg.vocab_size == 65536 and cfg.max_len == 8192
    assert cfg.n_heads * cfg.d_head == d_model and cfg.d_head == 64
    non_embedding, total = presets.parameter_counts(cfg)
    assert non_embedding == pytest.approx(12 * n_layers * d_model**2, rel=0.01)
    # embedding and unembedding (untied) are the rest
    assert total - non_embedding == 2 * 65536 * d_model


def test_big_presets_scan_and_rematerialise():
    assert presets.model_config("810M").scan_layers and presets.model_config("52B").remat == "full"
    assert not presets.model_config("197M").scan_layers


def test_test_presets_are_small():
    assert presets.parameter_counts(presets.model_config("smoke"))[1] <= 300_000
    assert presets.model_config("smoke").max_len <= 64


def test_unknown_preset_lists_the_known_ones():
    with pytest.raises(KeyError, match="known: smoke, tiny, 13M"):
        presets.model_config("7B")


def test_table_cli_prints_every_preset():
    out = subprocess.run([sys.executable, "-m", "hh.models.presets"], capture_output=True,
                         text=True, check=True, timeout=300).stdout
    for name in presets.preset_names():
        assert f" {name} " in out
    assert "51,541,721,088" in out   # 52B non-embedding, from the module
