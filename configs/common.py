"""Pieces every stage's config shares: the sharding rules table, mesh, optimizer and loop fields.

The rules map the model's logical axis names to the mesh axes (data, fsdp, tensor). Flax applies
them in order, skipping a mesh axis already used by the same array: activations [batch, length,
embed] take ("data", "fsdp") for batch, so their embed stays whole, while weights [embed, mlp]
shard embed over fsdp (ZeRO-3 style) and mlp over tensor (Megatron style).
"""

import dataclasses
import typing

import ml_collections
from ml_collections.config_dict import placeholder

from hh.data.byte_tokenizer import ByteTokenizer, padded_vocab_size
from hh.models import presets
from hh.models.transformer import TransformerConfig

SHARDING_RULES = (
    ("batch", ("data", "fsdp")),
    ("embed", "fsdp"),
    ("heads", "tensor"),
    ("kv_heads", "tensor"),
    ("mlp", "tensor"),
    ("vocab", "tensor"),
    ("length", None),
    ("layers", None),
)


def data(seq_len, tokenizer="sentencepiece", source="synthetic"):
    """Text source and tokenizer. The synthetic world is the embedded default (offline)."""
    return ml_collections.ConfigDict(dict(
        # "synthetic" | "default_corpus" (Python docs prose) | "files:GLOB" | "tfds:NAME[/CONFIG]
        # [:VERSION]" (text, read into memory) | "array_record:GLOB" (`python -m hh.data.prepare`)
        source=source,
        text_field="text",              # files:/tfds: the JSON field or TFDS feature of a document
        text_split="train",             # tfds: the split spec the documents come from
        eval_rows=256,                  # array_record: the last rows, held out for eval
        tokenizer=tokenizer,            # "sentencepiece" (trained per run) | "bytes" | a directory
        tokenizer_vocab_size=512,       # SentencePiece pieces; presets' models keep 65,536
        seq_len=seq_len,
        seed=0,                         # which synthetic samples; the world itself is fixed
        world_size="tiny",              # synthetic world: smoke|tiny|small|medium|large or an entity count
        synthetic_documents=20000,
        eval_documents=400,
        eval_fraction=0.05,             # default_corpus: share of paragraphs held out
        synthetic_comparisons=4000,     # per synthetic comparison source, train split
        eval_comparisons=500,           # per synthetic comparison source, test split
        tfds_data_dir="~/tensorflow_datasets",   # where TFDS builds real datasets
        manual_dir="",                  # a local copy of the data set (offline), e.g. data/hh-rlhf
        # pmp-stackexchange/-reddit/-wikipedia rows: "binarized" (two GOOD/BAD rows per ranked
        # pair, Askell et al. 2021 §4.1) | "ranked" (one A > B row, which §4.1 finds transfers worse)
        pmp_form="binarized",
        # Reading ahead of training (hh.data.sampler): threads, batches in flight, and grain
        # worker processes (0: read in this process; >0 for large models' hosts).
        read_threads=1,
        prefetch=2,
        workers=0,
    ))


def optional_field_types(cls=TransformerConfig) -> dict:
    """{field: type} of the dataclass's Optional[type] fields (None: "derive it from another")."""
    hints = typing.get_type_hints(cls)
    types = {}
    for field in dataclasses.fields(cls):
        args = typing.get_args(hints[field.name])
        if typing.get_origin(hints[field.name]) is typing.Union and type(None) in args:
            types[field.name] = next(a for a in args if a is not type(None))
    return types


OPTIONAL_MODEL_FIELDS = optional_field_types()


def with_tuples(config) -> ml_collections.ConfigDict:
    """The config with every list a tuple: ml_collections' flags cannot override a list field,
    while a tuple field takes `--config.x='["a","b"]'` (or `'("a","b")'`) from the command line
    and from the launcher. Code that assigns a list to such a field still gets a tuple.

    A model field that is None (n_kv_heads, mlp_bias: "same as n_heads / use_bias") becomes a
    typed placeholder: still None in to_dict() and config.json, but `--config.model.n_kv_heads=2`
    works (a NoneType field cannot be overridden from the command line)."""
    def convert(value, key=None, parent=None):
        if isinstance(value, dict):
            return {k: convert(v, k, key) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return tuple(convert(v) for v in value)
        if value is None and parent == "model" and key in OPTIONAL_MODEL_FIELDS:
            return placeholder(OPTIONAL_MODEL_FIELDS[key])
        return value
    return ml_collections.ConfigDict(convert(config.to_dict()))


def model_vocab(data_cfg):
    """The model's vocabulary for this data: the tokenizer's, rounded up to a multiple of 128."""
    if data_cfg.tokenizer == "bytes":
        return padded_vocab_size(ByteTokenizer.vocab_size)
    return padded_vocab_size(data_cfg.tokenizer_vocab_size)


def is_paper_size(preset):
    return preset in presets.PAPER_SIZES


def model(preset):
    """The preset's architecture. Paper sizes compute in bfloat16 with float32 params and use the
    backend's fused attention kernel (hh.models.attention: splash on TPU, cuDNN on GPU, XLA on
    CPU); the CPU presets keep dense attention, the reference the fused kernels are tested against."""
    fields = presets.model_fields(preset)
    if is_paper_size(preset):
        fields["dtype"] = "bfloat16"
        fields["attention"] = "fused"
    return ml_collections.ConfigDict(fields)


def mesh(preset):
    """Data parallel for small models; fully sharded (fsdp) from 810M up."""
    big = is_paper_size(preset) and presets.PAPER_SIZES[preset][0] >= presets.SCAN_FROM_LAYERS
    return ml_collections.ConfigDict(dict(data=1 if big else -1, fsdp=-1 if big else 1, tensor=1))


def sharding():
    return ml_collections.ConfigDict(dict(
        rules=[list(rule) for rule in SHARDING_RULES],
        # Weights this large must not be fully replicated when fsdp or tensor > 1.
        min_partitioned_elements=2**16,
    ))


def optimizer(learning_rate, schedule="cosine", warmup_steps=100):
    return ml_collections.ConfigDict(dict(
        learning_rate=learning_rate, schedule=schedule, warmup_steps=warmup_steps,
        end_lr_factor=0.1, b1=0.9, b2=0.95, eps=1e-8, weight_decay=0.1, clip_norm=1.0,
        frozen=""))   # regex of parameter paths kept at their initial values (hh/train/optim.py)


def loop(steps, log_every=10, eval_every=100, checkpoint_every=100):
    return ml_collections.ConfigDict(dict(
        steps=steps, log_every=log_every, eval_every=eval_every,
        checkpoint_every=checkpoint_every, keep_checkpoints=3, async_checkpoints=True))
