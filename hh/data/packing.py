"""Packs tokenised documents into fixed-length rows for LM training (concatenate and chunk).

Each document becomes [bos] + tokens + [eos]; the stream is cut into rows of `row_length + 1`
tokens, so a row gives `row_length` (input, target) pairs. Segment ids number the document pieces
within a row from 1 (0 = padding) and positions restart at 0 for each piece, so attention and
rotary positions never cross documents. A document cut by a row boundary continues as a new
segment in the next row.
"""

import numpy as np


def pack_documents(token_lists, row_length, bos_id, eos_id, pad_id):
    """-> dict of int32 arrays [n_rows, row_length + 1]: tokens, segment_ids, positions."""
    width = row_length + 1
    stream = [np.asarray([bos_id, *toks, eos_id], np.int32) for toks in token_lists]
    doc_index = [np.full(len(s), i, np.int64) for i, s in enumerate(stream)]
    tokens = np.concatenate(stream) if stream else np.zeros(0, np.int32)
    docs = np.concatenate(doc_index) if stream else np.zeros(0, np.int64)
    n_rows = -(-len(tokens) // width)
    pad = n_rows * width - len(tokens)
    tokens = np.concatenate([tokens, np.full(pad, pad_id, np.int32)]).reshape(n_rows, width)
    docs = np.concatenate([docs, np.full(pad, -1)]).reshape(n_rows, width)
    # A new segment starts where the document changes or the row starts.
    starts = np.ones_like(docs, bool)
    starts[:, 1:] = docs[:, 1:] != docs[:, :-1]
    segment_ids = np.cumsum(starts, axis=1).astype(np.int32)
    segment_ids[docs < 0] = 0
    index = np.broadcast_to(np.arange(width), docs.shape)
    segment_start = np.maximum.accumulate(np.where(starts, index, 0), axis=1)
    positions = (index - segment_start).astype(np.int32)
    positions[docs < 0] = 0
    return {"tokens": tokens, "segment_ids": segment_ids, "positions": positions}


def lm_example(rows):
    """Rows of width L+1 -> next-token inputs/targets of width L with the loss mask.

    The loss counts a target only when it continues the input's own segment: never across a
    document boundary, never on padding.
    """
    seg_in, seg_out = rows["segment_ids"][:, :-1], rows["segment_ids"][:, 1:]
    return {
        "inputs": rows["tokens"][:, :-1],
        "targets": rows["tokens"][:, 1:],
        "positions": rows["positions"][:, :-1],
        "segment_ids": seg_in,
        "loss_mask": ((seg_in == seg_out) & (seg_in != 0)).astype(np.float32),
    }
