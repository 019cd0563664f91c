"""A byte-level tokenizer with the project's special tokens: no training, no files, exact round trips.

`data.tokenizer=bytes`, as the `smoke` presets use it: it needs no training, so the smallest runs
start at once (the default is SentencePiece, hh.data.tokenizer). Ids: 0 pad, 1 bos, 2 eos, 3 eoc
(end-of-context, where preference scores are read), then the 256 byte values.
"""

import numpy as np

from hh.data.special_tokens import BOS_ID, EOC_ID, EOS_ID, PAD_ID

N_SPECIAL = 4


class ByteTokenizer:
    pad_id, bos_id, eos_id, eoc_id = PAD_ID, BOS_ID, EOS_ID, EOC_ID
    vocab_size = N_SPECIAL + 256

    def encode(self, text: str) -> list[int]:
        return [b + N_SPECIAL for b in text.encode("utf-8")]

    def encode_batch(self, texts) -> list[list[int]]:
        return [self.encode(t) for t in texts]

    def decode(self, ids) -> str:
        """Special tokens are dropped; invalid UTF-8 (a cut multi-byte char) becomes U+FFFD."""
        data = bytes(int(i) - N_SPECIAL for i in np.asarray(ids).reshape(-1) if int(i) >= N_SPECIAL)
        return data.decode("utf-8", errors="replace")


def padded_vocab_size(vocab_size: int, multiple: int = 128) -> int:
    """The model's vocabulary: the tokenizer's rounded up, so the vocab axis shards and tiles well."""
    return -(-vocab_size // multiple) * multiple
