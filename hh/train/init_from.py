"""Params-only initialisation from a previous stage (`config.init_from`): LM -> PMP -> PM -> policy.

`initial_params` and `initial_tokenizer` are the one dispatch point for where a stage's starting
weights and vocabulary come from: "" (fresh), an hh workdir (its latest checkpoint and its saved
tokenizer) or a Hugging Face directory (its architecture, weights and tokenizer, via
hh.checkpoints). The loop's resume from the stage's own workdir comes first (hh.train.loop).
"""

import dataclasses

import jax

from hh.checkpoints import pipeline as hf_pipeline
from hh.config import ConfigError
from hh.data import sources
from hh.train import resume
from hh.train.checkpoint import ShapeMismatchError, absolute
from hh.train.workdir import read_config, read_tokenizer, restore_params

# Stages whose params are a bare TransformerLM tree (no score head): they fill a PM's "trunk",
# and any tool that loads a language model or policy (hh.trained) reads them.
LM_STAGES = ("lm", "distill", "dpo")
# Fields that fix parameter shapes: they must equal the source run's.
SHAPE_FIELDS = ("vocab_size", "d_model", "n_layers", "n_heads", "d_head", "d_ff", "n_kv_heads",
                "use_bias", "tie_embeddings", "position", "norm", "activation", "scan_layers")


def resolve_from_source(config):
    """Before provenance is written: the model shape must equal the source run's (errors name the
    field), and the tokenizer fields are taken from it, so config.json says what was used."""
    init_from = config.get("init_from")
    if not init_from:
        return
    if hf_pipeline.adopt_imported_architecture(config):   # a Hugging Face directory
        return
    source = read_config(init_from, "init_from")
    for field in ("tokenizer", "tokenizer_vocab_size"):
        if field in source["data"]:
            config.data[field] = source["data"][field]
    src = source["model"]
    for field in SHAPE_FIELDS:
        if field in src and src[field] != config.model[field]:
            raise ConfigError(f"config.model.{field}={config.model[field]!r} but the init_from run "
                              f"{init_from} has {src[field]!r}: use the same model preset")


def initial_params(init_from, abstract_params, fresh_params_fn, model_cfg=None, tokenizer=None,
                   allow_unused=()):
    """Params to start from: the source checkpoint's where it has them, fresh elsewhere.

    abstract_params: ShapeDtypeStructs carrying the target shardings; fresh_params_fn() -> params
    already placed. A PM started from an LM gets the LM as its "trunk" and a fresh score head.
    model_cfg and tokenizer (its added tokens get mean embedding rows) serve Hugging Face sources;
    allow_unused: regexes of their tensors that may be left unread (config.init_from_allow_unused).
    """
    if not init_from:
        return fresh_params_fn()
    if hf_pipeline.init_from_hf({"init_from": init_from}):
        if "trunk" in abstract_params:
            trunk = hf_pipeline.imported_params(init_from, abstract_params["trunk"], model_cfg, tokenizer,
                                                allow_unused)
            return {**fresh_params_fn(), "trunk": trunk}
        return hf_pipeline.imported_params(init_from, abstract_params, model_cfg, tokenizer, allow_unused)
    source = read_config(init_from, "init_from")
    try:
        if source["stage"] in LM_STAGES and "trunk" in abstract_params:
            _, trunk = restore_params(init_from, abstract_params["trunk"])
            return {**fresh_params_fn(), "trunk": trunk}
        _, params = restore_params(init_from, abstract_params)
        return params
    except ShapeMismatchError as error:   # name the model fields whose values differ
        current = {"model": dataclasses.asdict(model_cfg)} if model_cfg is not None else None
        explained = resume.explain_mismatch(error, {"model": source["model"]}, current)
        raise ShapeMismatchError(f"config.init_from={init_from!r}: {explained}", error.mismatches) from None


def initial_tokenizer(config, documents, workdir=None):
    """The run's tokenizer. From an hh workdir: the one that run used (its saved SentencePiece
    model, copied into this workdir so the next stage finds it too), else a fresh
    `sources.run_tokenizer` trained on `documents`. The model vocab must cover it."""
    init_from = config.get("init_from")
    if not init_from or hf_pipeline.init_from_hf(config):   # HF: config.data.tokenizer is its dir
        tokenizer = sources.run_tokenizer(config.data, documents, workdir)
    else:
        source_data = read_config(init_from, "init_from")["data"]
        tokenizer = read_tokenizer(init_from, source_data)
        if source_data["tokenizer"] == "sentencepiece" and workdir and jax.process_index() == 0:
            own = absolute(workdir) / sources.TOKENIZER_DIR
            if not (own / "tokenizer.model").exists():
                tokenizer.save(own)
    if tokenizer.vocab_size > config.model.vocab_size:
        raise ConfigError(f"the tokenizer has {tokenizer.vocab_size} tokens but "
                          f"config.model.vocab_size={config.model.vocab_size}")
    return tokenizer
