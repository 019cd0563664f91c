"""PM finetuning on HH comparisons: `python -m hh.main --config configs/pm.py:<preset> --workdir DIR
--config.init_from=<PMP workdir>`.

Bai et al. 2022 App. A.2: LR 0.01× the LM-pretraining LR, constant, one epoch, context 1024, the
score on an appended EOC token; §5.1: the helpful↔harmless mixture at a fixed total
(`data.helpful_fraction`, `data.train_pairs`) and the weight λ on the harmless loss
(`train.harmless_weight`). `base_config` is shared with configs/pmp.py.
"""

import ml_collections

from configs import common
from hh.models import presets

# preset: (seq_len, PMP batch, PM batch, tokenizer, train pairs)
RUN_SHAPES = {
    "smoke": dict(seq_len=64, pmp_batch=8, pm_batch=8, tokenizer="bytes", pairs=160),
    "tiny": dict(seq_len=256, pmp_batch=16, pm_batch=16, tokenizer="sentencepiece", pairs=4000),
}
# Askell et al. 2021 App. C.1–C.2: context 1024, batch 512 pairs (PMP) and 32 pairs (finetuning).
PAPER_RUN = dict(seq_len=1024, pmp_batch=512, pm_batch=32, tokenizer="sentencepiece", pairs=4000,
                 loss_chunk=256)


def base_config(stage, preset, lr_factor, batch, helpful, harmless, helpful_fraction, evals):
    run = RUN_SHAPES.get(preset, PAPER_RUN)
    config = ml_collections.ConfigDict()
    config.stage = stage
    config.model_preset = preset
    config.seed = 0
    # A rerun in a workdir that has a checkpoint must use the config that wrote it (hh.train.resume
    # lists the changed fields); True resumes anyway and records the change in provenance.json.
    config.resume_with_changes = False
    # An hh workdir of the previous stage (params only; the score head is fresh from an LM). The
    # tokenizer and its vocabulary come from it too. "" starts from a random init.
    config.init_from = ""
    # Regexes of tensors of a Hugging Face init_from that may be left unread (full names, e.g.
    # r"score\.weight"); any other unread tensor is an error, since dropping it changes the model.
    config.init_from_allow_unused = ()

    config.data = common.data(run["seq_len"], tokenizer=run["tokenizer"])
    config.data.helpful_sources = list(helpful)     # specs, see hh.data.pm_sources
    config.data.harmless_sources = list(harmless)
    config.data.helpful_fraction = helpful_fraction
    config.data.train_pairs = run["pairs"]
    config.data.eval_sources = list(evals)
    config.model = common.model(preset)
    config.model.vocab_size = common.model_vocab(config.data)

    config.train = ml_collections.ConfigDict(dict(
        global_batch_size=run[batch], microbatches=1, eval_batch_size=run[batch],
        epochs=1.0,            # "In all phases, we only train over one iteration" (Bai et al. A.2)
        pm_weight=1.0,         # λ, μ of Askell et al. eq. C.1: (1, 1) for PMP and finetuning
        lm_weight=1.0,
        harmless_weight=1.0,   # Bai et al. §5.1: L_helpful + λ·L_harmless, λ ∈ {1, 2, 3, 4, 10}
        loss_chunk=run.get("loss_chunk", 0)))
    # steps = -1: derived from epochs × pairs / batch by the stage (recorded in config.json)
    config.loop = common.loop(-1, log_every=10, eval_every=0, checkpoint_every=100)
    config.optimizer = common.optimizer(lr_factor * presets.learning_rate(preset), "constant",
                                        warmup_steps=0)
    config.mesh = common.mesh(preset)
    config.sharding = common.sharding()
    return common.with_tuples(config)


def get_config(arg="tiny"):
    preset = arg or "tiny"
    return base_config("pm", preset, lr_factor=0.01, batch="pm_batch",
                       helpful=["synthetic-helpful"], harmless=["synthetic-harmless"],
                       helpful_fraction=0.5, evals=["synthetic-helpful", "synthetic-harmless"])


def get_sweep(arg=None):
    """Bai et al. §5.1: mixtures from 100% helpful to 100% harmless in 10% steps (the cross matrix)."""
    return [{"data.helpful_fraction": f / 10} for f in range(11)]
