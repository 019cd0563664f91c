"""Packs tokenised documents into fixed-length rows for LM training (concatenate and chunk).

Each document becomes [bos] + tokens + [eos]; the stream is cut into rows of `row_length + 1`
tokens, so a row gives `row_length` (input, target) pairs. Segment ids number the document pieces
within a row from 1 (0 = padding) and positions restart at 0 for each piece, so attention and
rotary positions never cross documents. A document cut by a row boundary continues as a new
segment in the next row.
"""

import numpy as np


def _with_markers(token_lists, bos_id, eos_id, first_doc=0):
    """The stream [bos] + doc + [eos] of each document, and each token's document number."""
    stream = [np.asarray([bos_id, *toks, eos_id], np.int32) for toks in token_lists]
    docs = [np.full(len(s), first_doc + i, np.int64) for i, s in enumerate(stream)]
    if not stream:
        return np.zeros(0, np.int32), np.zeros(0, np.int64)
    return np.concatenate(stream), np.concatenate(docs)


def _rows(tokens, docs, width):
    """Full rows of a token stream whose length is a multiple of width (doc -1: padding)."""
    tokens, docs = tokens.reshape(-1, width), docs.reshape(-1, width)
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


def _padded(tokens, docs, width, pad_id):
    pad = -len(tokens) % width
    return (np.concatenate([tokens, np.full(pad, pad_id, np.int32)]),
            np.concatenate([docs, np.full(pad, -1, np.int64)]))


def pack_documents(token_lists, row_length, bos_id, eos_id, pad_id):
    """-> dict of int32 arrays [n_rows, row_length + 1]: tokens, segment_ids, positions."""
    width = row_length + 1
    tokens, docs = _with_markers(token_lists, bos_id, eos_id)
    return _rows(*_padded(tokens, docs, width, pad_id), width)


def pack_stream(token_lists, row_length, bos_id, eos_id, pad_id, chunk_rows=256):
    """pack_documents over a stream of documents without holding it: yields the same rows, in
    blocks of about chunk_rows (dicts of [n, row_length + 1] arrays); memory is one block."""
    width, done = row_length + 1, 0
    tokens, docs = np.zeros(0, np.int32), np.zeros(0, np.int64)
    pending, pending_tokens = [], 0
    for toks in token_lists:
        pending.append(toks)
        pending_tokens += len(toks) + 2   # with its bos and eos
        if pending_tokens + len(tokens) < chunk_rows * width:
            continue
        more_tokens, more_docs = _with_markers(pending, bos_id, eos_id, done)
        done, pending, pending_tokens = done + len(pending), [], 0
        tokens, docs = np.concatenate([tokens, more_tokens]), np.concatenate([docs, more_docs])
        full = len(tokens) // width * width
        yield _rows(tokens[:full], docs[:full], width)
        tokens, docs = tokens[full:], docs[full:]
    more_tokens, more_docs = _with_markers(pending, bos_id, eos_id, done)
    tokens, docs = np.concatenate([tokens, more_tokens]), np.concatenate([docs, more_docs])
    if len(tokens):
        yield _rows(*_padded(tokens, docs, width, pad_id), width)


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
