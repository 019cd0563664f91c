"""Where a run's text comes from: config.data -> documents, tokenizer and packed LM rows.

Sources: "synthetic" (the embedded procedurally generated HH world, hh.data.synthetic: the
default) and "default_corpus" (Python's reference docs, plain English prose). The tokenizer is
"bytes", "sentencepiece" (trained on the run's training documents at the start and saved in
the workdir, so the run is self-contained and a resume reloads the very same one), or a path to a
saved tokenizer directory.
"""

import jax
from etils import epath

from hh.data import corpus, synthetic
from hh.data.byte_tokenizer import ByteTokenizer
from hh.data.packing import pack_documents
from hh.data.tokenizer import SentencePieceTokenizer, load_tokenizer, train_sentencepiece

TOKENIZER_DIR = "tokenizer"


def lm_documents(data_cfg):
    """(train documents, eval documents) for LM pretraining."""
    if data_cfg.source == "synthetic":
        train = synthetic.pretraining_documents(data_cfg.synthetic_documents, data_cfg.seed)
        # Held-out requests (synthetic's "test" split) never occur in the training documents.
        n = data_cfg.eval_documents // 2
        held_out = (synthetic.comparisons("helpful", n, data_cfg.seed, split="test")
                    + synthetic.comparisons("harmless", n, data_cfg.seed, split="test"))
        return train, [c["prompt"] + c["chosen"] for c in held_out]
    if data_cfg.source == "default_corpus":
        return corpus.split_documents(corpus.default_documents(), data_cfg.eval_fraction)
    raise ValueError(f"config.data.source={data_cfg.source!r}: use 'synthetic' or 'default_corpus'")


def run_tokenizer(data_cfg, documents, workdir=None):
    """The run's tokenizer; a trained one is saved to (and on resume loaded from) workdir."""
    spec = data_cfg.tokenizer
    if spec == "bytes":
        return ByteTokenizer()
    if spec != "sentencepiece":
        return load_tokenizer(spec)
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
                         f"={model_vocab_size}: raise the model's vocabulary")


def pack(documents, tokenizer, seq_len):
    """Documents -> packed rows of seq_len + 1 tokens (hh.data.packing)."""
    return pack_documents(tokenizer.encode_batch(documents), seq_len, tokenizer.bos_id,
                          tokenizer.eos_id, tokenizer.pad_id)


def lm_rows(data_cfg, workdir=None):
    """-> (train rows, eval rows, tokenizer) for LM pretraining."""
    train_docs, eval_docs = lm_documents(data_cfg)
    tokenizer = run_tokenizer(data_cfg, train_docs, workdir)
    return pack(train_docs, tokenizer, data_cfg.seq_len), pack(eval_docs, tokenizer, data_cfg.seq_len), tokenizer
