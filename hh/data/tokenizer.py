"""SentencePiece BPE tokenizer: trained in memory from a text iterator, byte-exact round trips.

Interchangeable with hh.data.byte_tokenizer.ByteTokenizer (pad/bos/eos/eoc ids, encode, decode). It is
saved next to checkpoints (`tokenizer.model` + `tokenizer.json`) so a run is self-contained, and its
`fingerprint()` lets a checkpoint check that it is read with the tokenizer it was trained with.
"""

import hashlib
import io
import json
import re
from collections.abc import Iterable, Iterator

import numpy as np
import sentencepiece as spm
from etils import epath

from hh.data.byte_tokenizer import ByteTokenizer
from hh.data.hf_tokenizer import HFTokenizer, is_hf_tokenizer_dir
from hh.data.special_tokens import BOS_ID, DIALOGUE_MARKERS, EOC_PIECE, EOS_ID, PAD_ID
from hh.io import atomic_write_bytes, atomic_write_text

MODEL_FILE, META_FILE = "tokenizer.model", "tokenizer.json"
# The dialogue markers are user-defined symbols (one token each) and <eoc> a control symbol; ids 0-3
# are hh's special ids (eoc lands on 3 as the first control symbol). unk is never emitted (byte
# fallback), so it goes last.
UNK_ID = 4
# SentencePiece writes a space as U+2581 and decodes every U+2581 back to a space, so a literal U+2581
# in the text is encoded as its UTF-8 bytes instead (byte pieces decode verbatim).
_SPACE_SYMBOL = "\u2581"
# Training texts are cut at line ends into chunks of at most this many characters (documents can be
# far longer than a sentence); max_sentence_length is in bytes, up to 4 per character.
_CHUNK_CHARS = 4096


def _training_sentences(texts: Iterable[str], max_chars: int = _CHUNK_CHARS) -> Iterator[str]:
    """Chunks of each text, cut after a newline where possible, each at most max_chars long."""
    for text in texts:
        chunk = ""
        for line in text.splitlines(keepends=True):
            if len(chunk) + len(line) > max_chars and chunk:
                yield chunk
                chunk = ""
            while len(line) > max_chars:
                yield line[:max_chars]
                line = line[max_chars:]
            chunk += line
        if chunk:
            yield chunk


def train_sentencepiece(texts: Iterable[str], vocab_size: int, *, model_type: str = "bpe",
                        num_threads: int = 2, seed: int = 0,
                        max_sentences: int = 0) -> "SentencePieceTokenizer":
    """Trains a tokenizer of `vocab_size` pieces (specials, 256 bytes and markers included).

    Deterministic: the same texts and arguments give identical model bytes. `max_sentences` > 0
    trains on a sample of that many chunks, drawn with `seed`; 0 uses them all.
    """
    sentences = _training_sentences(texts)
    first = next(sentences, None)
    if first is None:
        raise ValueError("train_sentencepiece: no training text (the iterator was empty or all "
                         "texts were empty)")
    model = io.BytesIO()
    spm.set_random_generator_seed(seed)
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=_chain(first, sentences), model_writer=model,
            vocab_size=vocab_size, model_type=model_type, num_threads=num_threads,
            # Exact round trips (SentencePiece normalises by default): no NFKC, no whitespace collapsing, no unknowns.
            normalization_rule_name="identity", remove_extra_whitespaces=False, byte_fallback=True,
            # No "▁" is prepended to the text: decoding a slice of ids (a response) keeps its leading
            # space, and encode(a) + encode(b) stays close to encode(a + b).
            add_dummy_prefix=False,
            # Runs of spaces may be pieces of their own, so code indentation costs a token or two.
            allow_whitespace_only_pieces=True, split_digits=True,
            pad_id=PAD_ID, bos_id=BOS_ID, eos_id=EOS_ID, unk_id=UNK_ID,
            # A control symbol: never produced by encode, dropped by decode, appended by id.
            control_symbols=[EOC_PIECE], user_defined_symbols=list(DIALOGUE_MARKERS),
            max_sentence_length=4 * _CHUNK_CHARS, input_sentence_size=max_sentences,
            shuffle_input_sentence=max_sentences > 0, minloglevel=2)
    except RuntimeError as e:
        raise _training_error(e, vocab_size) from e
    return SentencePieceTokenizer(model.getvalue())


def _chain(first: str, rest: Iterator[str]) -> Iterator[str]:
    yield first
    yield from rest


def _training_error(e: RuntimeError, vocab_size: int) -> Exception:
    """SentencePiece's vocabulary-size errors as ValueErrors that give the admissible bound."""
    message = str(e)
    too_high = re.search(r"Vocabulary size too high \(\d+\)\. Please set it to a value <= (\d+)", message)
    if too_high:
        return ValueError(f"vocab_size={vocab_size} is too large for this corpus: sentencepiece "
                          f"reports a maximum of {too_high.group(1)}. Use a smaller vocab_size or "
                          f"more text. ({message})")
    too_low = re.search(r"smaller than required_chars\. \d+ vs (\d+)", message)
    if too_low:
        return ValueError(f"vocab_size={vocab_size} is too small: this corpus needs at least "
                          f"{too_low.group(1)} pieces (special tokens, 256 byte pieces, markers and "
                          f"its characters). ({message})")
    return ValueError(f"sentencepiece training failed (vocab_size={vocab_size}): {message}")


class SentencePieceTokenizer:
    """A trained SentencePiece model with the project's special tokens; see the module docstring."""

    def __init__(self, model_bytes: bytes):
        self._model_bytes = bytes(model_bytes)
        self._sp = spm.SentencePieceProcessor(model_proto=self._model_bytes)
        sp = self._sp
        self.pad_id, self.bos_id, self.eos_id = sp.pad_id(), sp.bos_id(), sp.eos_id()
        self.unk_id, self.eoc_id = sp.unk_id(), sp.piece_to_id(EOC_PIECE)
        self.vocab_size = sp.get_piece_size()
        if self.pad_id != 0 or self.eoc_id == self.unk_id or not sp.is_control(self.eoc_id):
            raise ValueError(f"not an hh tokenizer: pad id {self.pad_id} (must be 0), "
                             f"{EOC_PIECE!r} id {self.eoc_id} (must be a control symbol)")
        self._dropped = np.array([i for i in range(self.vocab_size)
                                  if sp.is_control(i) or sp.is_unknown(i)])
        self._space_bytes = [sp.piece_to_id(f"<0x{b:02X}>") for b in _SPACE_SYMBOL.encode()]

    @property
    def model_bytes(self) -> bytes:
        return self._model_bytes

    def fingerprint(self) -> str:
        """sha256 of the serialized model: equal fingerprints mean identical tokenization."""
        return hashlib.sha256(self._model_bytes).hexdigest()

    def encode(self, text: str) -> list[int]:
        """Ids of `text`, no bos/eos added; decode(encode(text)) == text for any str."""
        if _SPACE_SYMBOL not in text:
            return self._sp.encode(text)
        ids = []
        for i, part in enumerate(text.split(_SPACE_SYMBOL)):
            if i:
                ids += self._space_bytes
            ids += self._sp.encode(part)
        return ids

    def decode(self, ids) -> str:
        """Special tokens are dropped; invalid UTF-8 (a cut multi-byte char) becomes U+FFFD."""
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        return self._sp.decode(ids[~np.isin(ids, self._dropped)].tolist())

    def encode_batch(self, texts: Iterable[str]) -> list[list[int]]:
        texts = list(texts)
        batch = self._sp.encode(texts)
        return [self.encode(t) if _SPACE_SYMBOL in t else ids for t, ids in zip(texts, batch)]

    def decode_batch(self, batch: Iterable) -> list[str]:
        return [self.decode(ids) for ids in batch]

    def piece(self, token_id: int) -> str:
        """The vocabulary entry of one id, for inspection (e.g. "▁the", "<0x0A>", "<eoc>")."""
        return self._sp.id_to_piece(int(token_id))

    def save(self, directory) -> None:
        """Writes tokenizer.model and tokenizer.json into `directory` (local or gs://), atomically."""
        directory = epath.Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        meta = {"type": "sentencepiece", "fingerprint": self.fingerprint(),
                "vocab_size": self.vocab_size, "pad_id": self.pad_id, "bos_id": self.bos_id,
                "eos_id": self.eos_id, "eoc_id": self.eoc_id, "unk_id": self.unk_id,
                "dialogue_markers": [self._sp.piece_to_id(m) for m in DIALOGUE_MARKERS]}
        # The model first: a reader that finds a tokenizer.json finds its model complete beside it.
        atomic_write_bytes(directory / MODEL_FILE, self._model_bytes)
        atomic_write_text(directory / META_FILE, json.dumps(meta, indent=2) + "\n")

    @classmethod
    def load(cls, directory) -> "SentencePieceTokenizer":
        """Reads what save wrote; a tokenizer.json whose fingerprint differs from the model fails."""
        directory = epath.Path(directory)
        tokenizer = cls((directory / MODEL_FILE).read_bytes())
        meta_path = directory / META_FILE
        if meta_path.exists():
            expected = json.loads(meta_path.read_text()).get("fingerprint")
            if expected and expected != tokenizer.fingerprint():
                raise ValueError(f"{directory}: {MODEL_FILE} has fingerprint "
                                 f"{tokenizer.fingerprint()} but {META_FILE} records {expected}")
        return tokenizer

    # The processor is a C++ object; pickle (grain worker processes) carries the model bytes instead.
    def __reduce__(self):
        return (SentencePieceTokenizer, (self._model_bytes,))

    def __repr__(self) -> str:
        return (f"SentencePieceTokenizer(vocab_size={self.vocab_size}, "
                f"fingerprint={self.fingerprint()[:12]})")


def load_tokenizer(spec: str):
    """'bytes' -> ByteTokenizer(); a Hugging Face tokenizer.json directory -> HFTokenizer; a
    directory holding hh's tokenizer.model -> SentencePieceTokenizer."""
    if spec == "bytes":
        return ByteTokenizer()
    if spec and is_hf_tokenizer_dir(spec):
        return HFTokenizer.from_directory(spec)
    if spec and (epath.Path(spec) / MODEL_FILE).exists():
        return SentencePieceTokenizer.load(spec)
    raise ValueError(f"tokenizer spec {spec!r}: expected 'bytes', a directory containing "
                     f"{MODEL_FILE} (as written by SentencePieceTokenizer.save) or a Hugging Face "
                     f"tokenizer.json")


__all__ = ["SentencePieceTokenizer", "train_sentencepiece", "load_tokenizer"]
