"""Where a run's text comes from: config.data -> documents, tokenizer and packed LM rows.

LM sources (config.data.source): "synthetic" (the embedded procedurally generated HH world,
hh.data.synthetic: the default), "default_corpus" (Python's reference docs, plain English prose),
"files:GLOB" and "tfds:NAME[/CONFIG][:VERSION]" (text, hh.data.text_sources: read into memory,
tokenized and packed at the start; fine for a corpus that fits in RAM), and "array_record:GLOB"
(rows packed offline by `python -m hh.data.prepare`, read by index as training needs them:
memory does not grow with the corpus). The tokenizer is "bytes", "sentencepiece" (trained on the
run's training documents at the start and saved in the workdir, so the run is self-contained and
a resume reloads the very same one; with array_record shards: the shards' own), or a path to a
saved tokenizer directory.
"""

import jax
import numpy as np
from etils import epath

from hh.config import ConfigError
from hh.data import corpus, shards, synthetic, text_sources
from hh.data.byte_tokenizer import ByteTokenizer, padded_vocab_size
from hh.data.errors import DataError
from hh.data.packing import pack_documents
from hh.data.pmp import dumps as pmp_dumps
from hh.data.records import field, jsonl_records, number_field
from hh.data.tokenizer import SentencePieceTokenizer, load_tokenizer, train_sentencepiece

TOKENIZER_DIR = "tokenizer"
EVAL_SEED_OFFSET = 1000   # the synthetic eval documents' sampling seed, past any run's own


def lm_documents(data_cfg):
    """(train documents, eval documents) for LM pretraining."""
    if data_cfg.source == "synthetic":
        world, n_eval = data_cfg.world_size, data_cfg.eval_documents
        train = synthetic.pretraining_documents(data_cfg.synthetic_documents, data_cfg.seed, world)
        # Held-out documents: another sample of the same generator, minus any text in train (short
        # facts repeat), so the eval loss is never measured on a training document.
        seen = set(train)
        fresh = synthetic.pretraining_documents(4 * n_eval, data_cfg.seed + EVAL_SEED_OFFSET, world)
        held_out = list(dict.fromkeys(d for d in fresh if d not in seen))[:n_eval]
        return train, held_out
    if data_cfg.source == "default_corpus":
        return corpus.split_documents(corpus.default_documents(), data_cfg.eval_fraction)
    if text_sources.prefix_of(data_cfg.source) in ("files", "tfds"):
        documents = text_sources.documents(data_cfg.source, data_cfg.text_field, data_cfg.text_split,
                                           data_cfg.tfds_data_dir, data_cfg.manual_dir)
        return corpus.split_documents(list(documents), data_cfg.eval_fraction)
    raise ConfigError(f"config.data.source={data_cfg.source!r}: use synthetic, default_corpus, "
                      f"files:GLOB, tfds:NAME[/CONFIG][:VERSION] or array_record:GLOB")


def run_tokenizer(data_cfg, documents, workdir=None):
    """The run's tokenizer; a trained one is saved to (and on resume loaded from) workdir."""
    spec = data_cfg.tokenizer
    if spec == "bytes":
        return ByteTokenizer()
    if spec != "sentencepiece":
        tokenizer = load_tokenizer(spec)
        # A copy in the workdir keeps the run self-contained (export, serving, a moved source).
        saved = epath.Path(workdir) / TOKENIZER_DIR if workdir else None
        if saved is not None and not saved.exists() and jax.process_index() == 0:
            tokenizer.save(saved)
        return tokenizer
    saved = epath.Path(workdir) / TOKENIZER_DIR if workdir else None
    if saved is not None and (saved / "tokenizer.model").exists():
        return SentencePieceTokenizer.load(saved)
    # Deterministic training: every process trains the same model; process 0 saves it.
    tokenizer = train_sentencepiece(documents, data_cfg.tokenizer_vocab_size)
    if saved is not None and jax.process_index() == 0:
        tokenizer.save(saved)
    return tokenizer


def check_vocab(tokenizer, model_vocab_size: int):
    if tokenizer.vocab_size > model_vocab_size:
        raise ValueError(f"the tokenizer has {tokenizer.vocab_size} tokens but config.model.vocab_size"
                         f"={model_vocab_size}: raise the model's vocabulary (e.g. "
                         f"--config.model.vocab_size={padded_vocab_size(tokenizer.vocab_size)})")


def pack(documents, tokenizer, seq_len):
    """Documents -> packed rows of seq_len + 1 tokens (hh.data.packing)."""
    return pack_documents(tokenizer.encode_batch(documents), seq_len, tokenizer.bos_id,
                          tokenizer.eos_id, tokenizer.pad_id)


def lm_rows(data_cfg, workdir=None):
    """-> (train rows, eval rows, tokenizer) for LM pretraining: rows are a dict of int32 arrays
    [n, seq_len + 1] (in memory) or a shards.ShardRows (array_record shards, read by index)."""
    if text_sources.prefix_of(data_cfg.source) == "array_record":
        return shard_rows(data_cfg, workdir)
    train_docs, eval_docs = lm_documents(data_cfg)
    tokenizer = run_tokenizer(data_cfg, train_docs, workdir)
    return pack(train_docs, tokenizer, data_cfg.seq_len), pack(eval_docs, tokenizer, data_cfg.seq_len), tokenizer


def shards_tokenizer(data_cfg, manifest_dir, manifest: dict, workdir=None):
    """The run's tokenizer for shards: the shards' own (data.tokenizer="sentencepiece"), or the one
    data.tokenizer names, which must be the one the shards were tokenized with."""
    shards_dir = epath.Path(manifest_dir) / "tokenizer"
    if data_cfg.tokenizer == "sentencepiece":
        if not (shards_dir / "tokenizer.model").exists() and not (shards_dir / "tokenizer.json").exists():
            raise DataError(shards_dir, "the shards carry no tokenizer: set config.data.tokenizer "
                                        "to the one they were prepared with")
        spec = str(shards_dir)
    else:
        spec = data_cfg.tokenizer
    tokenizer = ByteTokenizer() if spec == "bytes" else load_tokenizer(spec)
    if shards.tokenizer_identity(tokenizer) != manifest["tokenizer"]:
        raise ConfigError(f"config.data.tokenizer={data_cfg.tokenizer!r} is {shards.tokenizer_identity(tokenizer)}, "
                          f"but the shards in {manifest_dir} were tokenized with {manifest['tokenizer']}: "
                          f"refusing to train on ids from another tokenizer")
    saved = epath.Path(workdir) / TOKENIZER_DIR if workdir else None
    if saved is not None and spec != "bytes" and not saved.exists() and jax.process_index() == 0:
        tokenizer.save(saved)   # the workdir stays self-contained (export, serving)
    return tokenizer


def shard_rows(data_cfg, workdir=None):
    """(train rows, eval rows, tokenizer) of array_record shards: the last data.eval_rows rows are
    held out for eval."""
    source = shards.Shards(data_cfg.source.removeprefix("array_record:"))
    manifest = source.manifest
    if source.kind != "lm_rows":
        raise ConfigError(f"config.data.source={data_cfg.source!r} holds {source.kind}, not lm_rows")
    if manifest["width"] != data_cfg.seq_len + 1:
        raise ConfigError(f"the shards hold rows of {manifest['width'] - 1} tokens (+1), "
                          f"config.data.seq_len={data_cfg.seq_len}: set it to {manifest['width'] - 1}")
    n_eval = data_cfg.eval_rows
    if not 0 < n_eval < len(source):
        raise ConfigError(f"config.data.eval_rows={n_eval}: the shards hold {len(source)} rows")
    tokenizer = shards_tokenizer(data_cfg, epath.Path(source.files[0]).parent, manifest, workdir)
    cut = len(source) - n_eval
    return shards.ShardRows(source, 0, cut), shards.ShardRows(source, cut), tokenizer


class ConcatSource:
    """Random access over several sources in order (a mix of tranches)."""

    def __init__(self, parts):
        self.parts = list(parts)
        self.offsets = np.cumsum([0] + [len(p) for p in self.parts])

    def __len__(self):
        return int(self.offsets[-1])

    def __getitem__(self, index):
        part = int(np.searchsorted(self.offsets, index, side="right") - 1)
        return self.parts[part][int(index - self.offsets[part])]


SYNTHETIC_COMPARISONS = {"synthetic-helpful": "helpful", "synthetic-harmless": "harmless"}
PROMPT_FIELDS = ("prompt",)                        # what an RL prompt source needs
PAIR_FIELDS = ("prompt", "chosen", "rejected")     # what a PM source needs


def comparison_source(name: str, split: str, data_cfg, fields=PROMPT_FIELDS):
    """A random-access sequence of comparison dicts (hh.data.pm_data's schema).

    name: "synthetic-helpful" | "synthetic-harmless" | "synthetic-pmp" | "synthetic-redteam" (prompts
    only, every one to be declined; sizes from
    data_cfg.synthetic_comparisons / eval_comparisons), a TFDS dataset such as
    "hh_rlhf/harmless-base", built under data_cfg.tfds_data_dir from data_cfg.manual_dir,
    "pmp-stackexchange" | "pmp-reddit" | "pmp-wikipedia" (raw dumps under data_cfg.manual_dir, in
    data_cfg.pmp_form: hh.data.pmp.dumps), a FILE.jsonl whose rows must hold the string
    `fields` (PAIR_FIELDS for a PM), "files:GLOB" (JSON lines in hh's or hh-rlhf's layout),
    "tfds:NAME[/CONFIG][:VERSION]" (the split `split`, under data_cfg.tfds_data_dir) or
    "array_record:GLOB" (comparison shards from `python -m hh.data.prepare`, read by index).
    """
    # the gold split trains the gold PM: as many pairs as a train split
    n = data_cfg.synthetic_comparisons if split in ("train", "gold") else data_cfg.eval_comparisons
    if name in SYNTHETIC_COMPARISONS:
        return synthetic.comparisons(SYNTHETIC_COMPARISONS[name], n, data_cfg.seed, split, data_cfg.world_size)
    if name == "synthetic-pmp":
        return synthetic.pmp_pairs(n, data_cfg.seed, split, data_cfg.world_size)
    if name == "synthetic-redteam":
        return synthetic.redteam_prompts(n, data_cfg.seed, split, data_cfg.world_size)
    if name in pmp_dumps.SOURCES:
        return pmp_dumps.comparisons(name, split, data_cfg)
    prefix = text_sources.prefix_of(name)
    if prefix == "files":
        return text_sources.comparison_rows(name, fields=fields)
    if prefix == "tfds":
        return TfdsComparisons(text_sources.tfds_source(name, split, data_cfg.tfds_data_dir,
                                                        data_cfg.manual_dir), name, fields)
    if prefix == "array_record":
        source = shards.Shards(name.removeprefix("array_record:"))
        if source.kind != "comparisons":
            raise ConfigError(f"comparison source {name!r} holds {source.kind}, not comparisons")
        return source
    if name.endswith(".jsonl"):
        return jsonl_rows(name, fields)
    if name.startswith(("hh_rlhf/", "red_team_attempts")):
        from hh.data.tfds import prepare
        builder = prepare(name, data_cfg.tfds_data_dir, data_cfg.manual_dir or None)
        return builder.as_data_source(split=split)
    raise ValueError(f"unknown comparison source {name!r}: use synthetic-helpful, "
                     f"synthetic-harmless, synthetic-pmp, synthetic-redteam, hh_rlhf/<tranche>, "
                     f"{', '.join(pmp_dumps.SOURCES)}, a FILE.jsonl, files:GLOB, "
                     f"tfds:NAME[/CONFIG][:VERSION] or array_record:GLOB")


class TfdsComparisons:
    """Random access to a TFDS split's examples as comparison dicts (either layout, bytes decoded)."""

    def __init__(self, source, name: str, fields=PAIR_FIELDS):
        self.source, self.name, self.fields = source, name, fields

    def __len__(self):
        return len(self.source)

    def __getitem__(self, index):
        return text_sources.comparison_row(dict(self.source[int(index)]), self.name, int(index), self.fields)


def jsonl_rows(path, fields=PROMPT_FIELDS) -> list:
    """A JSON-lines file of rows holding the string `fields`: {"prompt"} for RL prompts (as
    hh.rl.prompt_gen writes them), prompt/chosen/rejected for a PM; a "weight", where present, must
    be a number. A bad line or field is a DataError naming the file, line and field."""
    rows = []
    for line, row in jsonl_records(path):
        for name in fields:
            field(row, name, str, path, line)
        if "weight" in row:
            row["weight"] = number_field(row, "weight", path, line)
        rows.append(row)
    return rows


def comparisons(names, split: str, data_cfg):
    """Several comparison sources concatenated (the sampler shuffles across them)."""
    return ConcatSource(comparison_source(n, split, data_cfg) for n in names)


def same_tokenizer(a, b) -> bool:
    """Whether two tokenizers map text to the same ids (a PM must read its policy's tokens):
    same kind, same size, and the same fingerprint where the kind has one."""
    fingerprint = lambda t: getattr(t, "fingerprint", lambda: "")()  # noqa: E731
    return type(a) is type(b) and a.vocab_size == b.vocab_size and fingerprint(a) == fingerprint(b)
