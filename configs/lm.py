"""LM pretraining: `python -m hh.main --config configs/lm.py:<preset> --workdir DIR`.

Presets: smoke, tiny (CPU), 13M … 52B (the paper's family). Any field can be overridden, e.g.
`--config.train.steps=50 --config.model.remat=full`. On the embedded default corpus the model's
vocabulary is the tokenizer's, rounded up to a multiple of 128. The default
data is the embedded synthetic HH world (hh.data.synthetic) with a SentencePiece BPE trained on it.
"""

import ml_collections

from configs import common
from hh.models import presets

# preset: (seq_len, global batch, steps, warmup, log/eval/checkpoint cadence)
RUN_SHAPES = {
    "smoke": dict(seq_len=64, batch=8, steps=20, warmup=5, log_every=5, eval_every=10, ckpt=10,
                  tokenizer="bytes"),
    "tiny": dict(seq_len=256, batch=16, steps=300, warmup=30, log_every=10, eval_every=100, ckpt=50),
}
PAPER_RUN = dict(seq_len=2048, batch=256, steps=20000, warmup=1000, log_every=50, eval_every=1000,
                 ckpt=1000, loss_chunk=256)


def get_config(arg="tiny"):
    preset = arg or "tiny"
    run = RUN_SHAPES.get(preset, PAPER_RUN)
    config = ml_collections.ConfigDict()
    config.stage = "lm"
    config.model_preset = preset
    config.seed = 0
    # A rerun in a workdir that has a checkpoint must use the config that wrote it (hh.train.resume
    # lists the changed fields); True resumes anyway and records the change in provenance.json.
    config.resume_with_changes = False
    # Params to start from: "" (fresh init) or a Hugging Face directory (Llama, GPT-NeoX/Pythia,
    # GPT-2), whose architecture and tokenizer then replace config.model's and config.data's.
    config.init_from = ""
    # Regexes of tensors of a Hugging Face init_from that may be left unread (full names, e.g.
    # r"score\.weight"); any other unread tensor is an error, since dropping it changes the model.
    config.init_from_allow_unused = ()

    config.data = common.data(run["seq_len"], tokenizer=run.get("tokenizer", "sentencepiece"))
    config.model = common.model(preset)
    config.model.vocab_size = common.model_vocab(config.data)

    config.train = ml_collections.ConfigDict(dict(
        global_batch_size=run["batch"], microbatches=1, z_loss=0.0, eval_batch_size=run["batch"],
        # LM head + loss over this many positions at a time (0: all at once). Paper sizes chunk,
        # so [batch, length, 65536] float32 logits never exist.
        loss_chunk=run.get("loss_chunk", 0)))
    config.loop = common.loop(run["steps"], run["log_every"], run["eval_every"], run["ckpt"])
    config.optimizer = common.optimizer(presets.learning_rate(preset), "cosine", run["warmup"])
    config.mesh = common.mesh(preset)
    config.sharding = common.sharding()
    return common.with_tuples(config)


def get_sweep(arg=None):
    """Override dicts for a sweep over the paper's sizes (the launcher expands them)."""
    return [{"model": name} for name in presets.PAPER_SIZES]
