"""A byte-level tokenizer with the project's special tokens: no training, no files, exact round trips.

The foundation's default (ISSUE-NOTES: issue 2 pretrains on built-in text with bytes; issue 3 adds
SentencePiece). Ids: 0 pad, 1 bos, 2 eos, 3 eoc (end-of-context, where preference scores are read),
then the 256 byte values.
"""

import numpy as np

PAD, BOS, EOS, EOC = 0, 1, 2, 3
N_SPECIAL = 4


class ByteTokenizer:
    pad_id, bos_id, eos_id, eoc_id = PAD, BOS, EOS, EOC
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
