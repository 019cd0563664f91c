"""An imported model's own tokenizer (`tokenizer.json`, read by `tokenizers`) behind the interface of
hh's SentencePiece tokenizer: pad/bos/eos/eoc ids, encode/decode without added bos/eos.

Tokens the pipeline needs and the tokenizer lacks are added: <pad> (PAD must differ from EOS,
docs/paper-notes.md §8.2), <eoc> (where PM scores are read) and the dialogue markers as single tokens. Their
ids (`new_token_ids`) get embedding rows initialised to the mean embedding (hh.checkpoints).
"""

import hashlib
import json

from etils import epath
from tokenizers import AddedToken, Tokenizer

from hh.data.special_tokens import DIALOGUE_MARKERS, EOC_PIECE
from hh.io import atomic_write_text

HF_TOKENIZER_FILE, HF_TOKENIZER_CONFIG = "tokenizer.json", "tokenizer_config.json"
PAD_PIECE = "<pad>"


def is_hf_tokenizer_dir(directory) -> bool:
    """True for a Hugging Face tokenizer.json (hh's own tokenizer.json is a small metadata file)."""
    path = epath.Path(directory) / HF_TOKENIZER_FILE
    if not path.exists():
        return False
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError:
        return False
    return isinstance(data, dict) and "model" in data and "added_tokens" in data


def _token_content(value):
    return value.get("content") if isinstance(value, dict) else value


def _special_roles(directory: epath.Path) -> dict:
    """bos/eos/pad/unk token strings from tokenizer_config.json, special_tokens_map.json, config.json."""
    roles = {}
    for file in ("special_tokens_map.json", HF_TOKENIZER_CONFIG):
        path = directory / file
        if path.exists():
            data = json.loads(path.read_text())
            for role in ("bos", "eos", "pad", "unk"):
                if data.get(f"{role}_token"):
                    roles[role] = _token_content(data[f"{role}_token"])
    return roles


class HFTokenizer:
    """A `tokenizers.Tokenizer` with hh's special tokens; see the module docstring."""

    def __init__(self, tokenizer: Tokenizer, roles: dict, config_ids: dict | None = None,
                 original_vocab_size: int | None = None):
        self._tok = tokenizer
        self.original_vocab_size = original_vocab_size or tokenizer.get_vocab_size(with_added_tokens=True)
        config_ids = config_ids or {}
        added = []

        def id_of(role, fallback_piece=None, special=True):
            piece = roles.get(role)
            token_id = tokenizer.token_to_id(piece) if piece else None
            if token_id is None and config_ids.get(f"{role}_token_id") is not None:
                token_id = int(config_ids[f"{role}_token_id"])
            if token_id is None and fallback_piece is not None:
                token_id = self._add(fallback_piece, special, added)
            return token_id

        self.eos_id = id_of("eos")
        if self.eos_id is None:
            raise ValueError("the tokenizer names no eos token (tokenizer_config.json eos_token or "
                             "config.json eos_token_id); hh needs one to end responses")
        self.bos_id = id_of("bos")
        if self.bos_id is None:
            self.bos_id = self.eos_id   # GPT-NeoX/GPT-2 style: documents start after <|endoftext|>
        self.pad_id = id_of("pad")
        if self.pad_id is None or self.pad_id == self.eos_id:
            self.pad_id = self._add(PAD_PIECE, True, added)
        self.eoc_id = tokenizer.token_to_id(EOC_PIECE)
        if self.eoc_id is None:
            self.eoc_id = self._add(EOC_PIECE, True, added)
        for marker in DIALOGUE_MARKERS:   # not special: decode keeps their text
            if tokenizer.token_to_id(marker) is None:
                self._add(marker, False, added)
        self.unk_id = id_of("unk")
        self.new_token_ids = tuple(i for i in added if i >= 0)
        self.vocab_size = tokenizer.get_vocab_size(with_added_tokens=True)

    def _add(self, piece, special, added):
        token = AddedToken(piece, special=special, normalized=False, single_word=False)
        (self._tok.add_special_tokens if special else self._tok.add_tokens)([token])
        token_id = self._tok.token_to_id(piece)
        added.append(token_id)
        return token_id

    @classmethod
    def from_directory(cls, directory) -> "HFTokenizer":
        directory = epath.Path(directory)
        path = directory / HF_TOKENIZER_FILE
        if not path.exists():
            raise ValueError(f"{directory}: no {HF_TOKENIZER_FILE}. SentencePiece-only (tokenizer.model) "
                             f"Hugging Face tokenizers are not supported yet: convert to tokenizer.json")
        tokenizer = Tokenizer.from_str(path.read_text())
        config_path = directory / "config.json"
        config_ids = json.loads(config_path.read_text()) if config_path.exists() else {}
        meta = {}
        tc = directory / HF_TOKENIZER_CONFIG
        if tc.exists():
            meta = json.loads(tc.read_text()).get("hh", {})
        return cls(tokenizer, _special_roles(directory), config_ids, meta.get("original_vocab_size"))

    def fingerprint(self) -> str:
        return hashlib.sha256(self._tok.to_str().encode()).hexdigest()

    def encode(self, text: str) -> list[int]:
        return self._tok.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts) -> list[list[int]]:
        return [e.ids for e in self._tok.encode_batch(list(texts), add_special_tokens=False)]

    def decode(self, ids) -> str:
        """Special tokens (pad, eoc, bos, eos) are dropped, as in hh's own tokenizers."""
        return self._tok.decode([int(i) for i in ids], skip_special_tokens=True)

    def decode_batch(self, batch) -> list[str]:
        return [self.decode(ids) for ids in batch]

    def piece(self, token_id: int) -> str:
        return self._tok.id_to_token(int(token_id))

    def save(self, directory) -> None:
        """Writes tokenizer.json (with the added tokens) and a tokenizer_config.json that
        transformers' AutoTokenizer reads; the hh block keeps the pre-addition vocabulary size."""
        directory = epath.Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        config = {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": self.piece(self.bos_id),
                  "eos_token": self.piece(self.eos_id), "pad_token": self.piece(self.pad_id),
                  "add_bos_token": False, "add_eos_token": False, "clean_up_tokenization_spaces": False,
                  "model_max_length": 1_000_000_000,
                  "hh": {"eoc_token": EOC_PIECE, "original_vocab_size": self.original_vocab_size}}
        if self.unk_id is not None:
            config["unk_token"] = self.piece(self.unk_id)
        for name, text in ((HF_TOKENIZER_FILE, self._tok.to_str()),
                           (HF_TOKENIZER_CONFIG, json.dumps(config, indent=2) + "\n")):
            atomic_write_text(directory / name, text)

    def __reduce__(self):
        return (_rebuild, (self._tok.to_str(), self.original_vocab_size, self.bos_id, self.eos_id,
                           self.pad_id, self.eoc_id, self.unk_id, self.new_token_ids))

    def __repr__(self):
        return (f"HFTokenizer(vocab_size={self.vocab_size}, added={list(self.new_token_ids)}, "
                f"fingerprint={self.fingerprint()[:12]})")


def _rebuild(text, original, bos, eos, pad, eoc, unk, new_ids):
    tok = HFTokenizer.__new__(HFTokenizer)
    tok._tok = Tokenizer.from_str(text)
    tok.original_vocab_size, tok.bos_id, tok.eos_id, tok.pad_id = original, bos, eos, pad
    tok.eoc_id, tok.unk_id, tok.new_token_ids = eoc, unk, new_ids
    tok.vocab_size = tok._tok.get_vocab_size(with_added_tokens=True)
    return tok
