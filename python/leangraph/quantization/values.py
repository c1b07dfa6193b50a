"""A tensor's values over the check samples as the runs fetched them, one array per run, and
the statistics quantize reads from them, computed block by block to the bit of what the
joined array gives.

Joining them was a quarter of Xception's quantization: a 147x147x128 tensor over 8 samples
is 88 MB, every new array that size is mapped afresh (the allocator hands arrays over
32 MB straight back to the system) and pays its page faults, and the SQNR of two of them
made four more in float64. Here nothing larger than a block is made, and each block
is made where its sum is taken, so it stays in cache.
"""

import numpy as np

from leangraph.metrics import sqnr_of_sums
from leangraph.quantization.calibrate import join

#: Elements per block (512 KB in float64): at most this many are made at once.
_BLOCK = 1 << 16


class Parts:
    """One tensor's values over the examples: the arrays several runs fetched, in order, read
    as calibrate.join would join them (join itself is never made unless asked for).

    In each of join's layouts (stacked on axis 0, rows of the last axis, one flat axis) the
    joined array's values, read in order, are the parts' values one part after the other;
    the blocks below are cut from that order."""

    def __init__(self, parts):
        self.parts = [np.asarray(p) for p in parts]
        self._flat = [p.reshape(-1) for p in self.parts]
        self._starts = np.cumsum([0] + [f.size for f in self._flat])

    @classmethod
    def of(cls, value):
        """Parts as they are; an array as one part."""
        return value if isinstance(value, Parts) else cls([value])

    @property
    def size(self):
        return int(self._starts[-1])

    @property
    def shape(self):
        """The joined array's shape."""
        parts = self.parts
        if len(parts) == 1:
            return parts[0].shape
        if all(p.ndim for p in parts) and len({p.shape[1:] for p in parts}) == 1:
            return (sum(p.shape[0] for p in parts),) + parts[0].shape[1:]
        if all(p.ndim for p in parts) and len({p.shape[-1] for p in parts}) == 1:
            return (sum(p.size // p.shape[-1] for p in parts), parts[0].shape[-1])
        return (self.size,)

    def joined(self):
        return join(self.parts)

    def finite(self):
        """Whether every value is finite."""
        return all(np.isfinite(p).all() for p in self.parts)

    def flat(self, start, count):
        """Values start..start+count of the joined array in order, as one array (a view
        where they lie in one part)."""
        i = int(np.searchsorted(self._starts, start, "right")) - 1
        stop = start + count
        if stop <= self._starts[i + 1]:
            offset = start - self._starts[i]
            return self._flat[i][offset:offset + count]
        pieces = []
        while start < stop:
            end = min(stop, int(self._starts[i + 1]))
            pieces.append(self._flat[i][start - self._starts[i]:end - self._starts[i]])
            start, i = end, i + 1
        return np.concatenate(pieces)


def parts_sqnr_db(reference, value):
    """metrics.sqnr_db of the joined arrays, to the bit, without joining them.

    numpy sums a contiguous float64 array pairwise, halving it (the first half rounded down
    to a multiple of 8) down to blocks of 128; np.sum of a node of that recursion is that
    node's sum, so the recursion is followed down to nodes of at most _BLOCK values,
    each made, squared and summed in cache, and the nodes' sums are added as numpy adds
    them (tests/test_quantize_time.py checks it against metrics.sqnr_db). Each node is
    made in the same two buffers, squared in place: (r - v) * (r - v) is (r - v) ** 2 to
    the bit. A non-finite value makes a sum non-finite, so only then are the values
    scanned for what sqnr_db says of them."""
    reference, value = Parts.of(reference), Parts.of(value)
    count = reference.size
    if value.size != count:
        raise ValueError(f"sqnr_db: {value.size} values against a reference of {count}")
    r_buffer, v_buffer = np.empty(min(count, _BLOCK)), np.empty(min(count, _BLOCK))

    def sums(start, n):
        if n > _BLOCK:
            half = n // 2
            half -= half % 8
            a, b = sums(start, half), sums(start + half, n - half)
            return a[0] + b[0], a[1] + b[1]
        r, v = r_buffer[:n], v_buffer[:n]
        np.copyto(r, reference.flat(start, n), casting="unsafe")
        np.copyto(v, value.flat(start, n), casting="unsafe")
        np.subtract(r, v, out=v)
        np.multiply(v, v, out=v)
        np.multiply(r, r, out=r)
        return np.sum(v), np.sum(r)

    with np.errstate(over="ignore", invalid="ignore"):
        noise, signal = sums(0, count) if count else (np.float64(0.0), np.float64(0.0))
    if np.isfinite(noise) and np.isfinite(signal):
        return sqnr_of_sums(noise, signal)
    return sqnr_of_sums(noise, signal, value.finite(), reference.finite())


def row_blocks(values, channels, rows):
    """The joined array as rows of `channels` (its last axis), `rows` rows at a time: the
    blocks that slicing reshape(-1, channels) gives, in order."""
    values = Parts.of(values)
    total = values.size // channels
    for start in range(0, total, rows):
        count = min(rows, total - start)
        yield values.flat(start * channels, count * channels).reshape(count, channels)
