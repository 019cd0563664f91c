"""How each hh parameter is read out of a checkpoint's tensors, slice by slice.

A recipe has the hh parameter's `shape` and `read(index) -> np.ndarray` for any tuple of slices
into it; `hh.checkpoints.hf_import` hands `read` to `jax.make_array_from_callback`, so every
device reads just its part (a transposed, head-regrouped or stacked view of source tensors).
"""

import dataclasses
from typing import Callable, Optional

import numpy as np


def bounds(index, shape) -> list[tuple[int, int]]:
    """A tuple of slices (possibly shorter than shape, None ends) -> [(start, stop)] per axis."""
    index = tuple(index) + (slice(None),) * (len(shape) - len(index))
    out = []
    for s, n in zip(index, shape):
        start, stop, step = s.indices(n)
        if step != 1:
            raise ValueError(f"strided reads are not supported (step {step})")
        out.append((start, stop))
    return out


@dataclasses.dataclass(frozen=True)
class Slab:
    """A (possibly transposed) source tensor whose feature axis may be regrouped.

    hh[..., c] = source[..., feature_rows(c)] for 1-D (biases, norms) and for kernels kept as
    stored (GPT-2's Conv1D); with transpose (torch nn.Linear [out, in] -> flax [in, out]),
    hh[r, c] = source[feature_rows(c), r]. `feature_rows` maps hh feature indices to source
    indices (NeoX packs q, k, v per head); None is the identity.
    """
    source: object
    name: str
    transpose: bool = False
    feature_rows: Optional[Callable[[np.ndarray], np.ndarray]] = None
    features: Optional[int] = None      # hh size of the feature axis when feature_rows regroups

    @property
    def shape(self):
        src = self.source.shape(self.name)
        shape = list(src[::-1] if self.transpose else src)
        if self.features is not None:
            shape[-1] = self.features
        return tuple(shape)

    def read(self, index):
        *other, (c0, c1) = bounds(index, self.shape)
        cols = np.arange(c0, c1)
        rows = self.feature_rows(cols) if self.feature_rows is not None else cols
        lo, hi = (int(rows.min()), int(rows.max()) + 1) if len(rows) else (0, 0)
        feature_slice = slice(lo, hi)
        other_slices = tuple(slice(a, b) for a, b in other)
        if self.transpose:
            block = self.source.read(self.name, (feature_slice, *other_slices))
            block = np.take(block, rows - lo, axis=0)
            return block.T
        block = self.source.read(self.name, (*other_slices, feature_slice))
        return np.take(block, rows - lo, axis=-1)


def packed_qkv_rows(part: int, n_parts: int, n_heads: int, d_head: int, per_head: bool):
    """Source rows of q (part 0), k (1) or v (2) columns inside a packed qkv projection.

    per_head (GPT-NeoX): the packed axis is [head, part, d_head]; otherwise (GPT-2) [part, head, d_head].
    """
    def rows(cols):
        if per_head:
            head, dim = cols // d_head, cols % d_head
            return head * n_parts * d_head + part * d_head + dim
        return part * n_heads * d_head + cols
    return rows


@dataclasses.dataclass(frozen=True)
class Stacked:
    """[layers, ...]: layer i from recipes[i] (for nn.scan'd stacks)."""
    recipes: tuple

    @property
    def shape(self):
        return (len(self.recipes), *self.recipes[0].shape)

    def read(self, index):
        (l0, l1), *_ = bounds(index, self.shape)
        inner = tuple(index)[1:]
        return np.stack([self.recipes[i].read(inner) for i in range(l0, l1)])


@dataclasses.dataclass(frozen=True)
class WithNewRows:
    """An embedding-like matrix with vocabulary rows added or re-initialised to the mean row.

    `new_rows` (ids of tokens added to the tokenizer, e.g. <eoc> and the dialogue markers) and any
    row beyond the source get the mean over the first `n_original` rows (the tokenizer's own
    tokens, not a checkpoint's untrained padding rows): a new token starts as an average token.
    """
    inner: object
    vocab_size: int
    vocab_axis: int
    new_rows: tuple
    n_original: int

    @property
    def shape(self):
        shape = list(self.inner.shape)
        shape[self.vocab_axis] = self.vocab_size
        return tuple(shape)

    def read(self, index):
        b = bounds(index, self.shape)
        v0, v1 = b[self.vocab_axis]
        source_rows = self.inner.shape[self.vocab_axis]
        out_shape = [hi - lo for lo, hi in b]
        out = np.empty(out_shape, dtype=np.float32)
        if v0 < min(v1, source_rows):
            real = list(b)
            real[self.vocab_axis] = (v0, min(v1, source_rows))
            block = self.inner.read(tuple(slice(lo, hi) for lo, hi in real))
            put = [slice(None)] * len(b)
            put[self.vocab_axis] = slice(0, block.shape[self.vocab_axis])
            out[tuple(put)] = block
        fresh = sorted({r for r in self.new_rows if v0 <= r < v1} | set(range(max(v0, source_rows), v1)))
        if fresh:
            every = list(b)
            every[self.vocab_axis] = (0, self.n_original)
            mean = self.inner.read(tuple(slice(lo, hi) for lo, hi in every)).astype(np.float64).mean(
                axis=self.vocab_axis, keepdims=True)
            put = [slice(None)] * len(b)
            put[self.vocab_axis] = np.array(fresh) - v0
            out[tuple(put)] = mean.astype(np.float32)
        return out
