"""Vectorised epoch builders behind :mod:`audioset_data.loaders.samplers` (NumPy only).

Every builder returns the items of a contiguous range ``[lo, hi)`` of one epoch's sequence, and
the item at a position is a pure function of (seed, epoch, position) and the sampler's fixed
configuration. So ranks of a distributed job agree on the global sequence without talking to
each other, and a sampler resumes mid-epoch with vectorised work and no replay in Python.

Randomness is counter-based: each independent piece (the class order of a block of rounds, the
queue of one class for the epoch, a block of weighted draws) gets its own generator seeded from
``(seed, epoch, tag, ...)``, so no piece depends on how much of the epoch was drawn before. What
a resume regenerates: the round orders and weighted-draw blocks from the resume point on, but
the whole per-class queues of the balanced sampler, the shuffle's permutation and the
without-replacement keys (each one vectorised pass over the clips).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from scipy import sparse

from audioset_data.errors import ConfigError

_TAG_PERMUTATION = 1
_TAG_ROUND_ORDER = 2
_TAG_CLASS_QUEUE = 3
_TAG_WEIGHTED_DRAWS = 4
_TAG_WEIGHTED_KEYS = 5

ROUND_BLOCK = 64
"""Rounds whose class orders share one generator (a fixed size keeps positions pure)."""
DRAW_BLOCK = 1 << 16
"""Weighted draws with replacement per generator."""


def rng_for(*words: int) -> np.random.Generator:
    """A generator determined only by ``words`` (seed, epoch, a tag and counters)."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(list(words))))


def random_permutations(rng: np.random.Generator, rows: int, width: int) -> np.ndarray:
    """``rows`` independent uniform permutations of ``0..width-1`` as an ``int64`` array.

    Each row sorts 64-bit random keys whose low bits are replaced by the index: sorting plain
    integers is faster than an argsort, and the at least 40 random bits left make a tie (which
    the index would break) vanishingly rare, as with uniform float keys.
    """
    bits = max(1, int(width - 1).bit_length())
    if bits > 24:
        return np.argsort(rng.random((rows, width)), axis=1)
    keys = rng.bit_generator.random_raw((rows, width))
    keys &= ~np.uint64((1 << bits) - 1)
    keys |= np.arange(width, dtype=np.uint64)
    keys.sort(axis=1)
    keys &= np.uint64((1 << bits) - 1)
    return keys.astype(np.int64)


def as_label_matrix(targets: object, name: str = "targets") -> Any:
    """``targets`` (scipy sparse or dense, clips × classes) as a boolean CSR matrix or array.

    Nonzero entries are labels. Raises :class:`ConfigError` for anything that is not a
    non-empty 2-D matrix.
    """
    if sparse.issparse(targets):
        if targets.ndim != 2:  # type: ignore[attr-defined]
            raise ConfigError(f"{name} must be a 2-D clips × classes matrix")
        m = targets.tocsr()  # no copy for CSR input, so scipy's cached format flags stay
    else:
        arr = np.asarray(targets)
        if arr.ndim != 2:
            raise ConfigError(f"{name} must be a 2-D clips × classes matrix, got shape "
                              f"{arr.shape}")
        m = sparse.csr_array(arr)
    if m.shape[0] == 0 or m.shape[1] == 0:
        raise ConfigError(f"{name} is empty (shape {m.shape}); a sampler needs at least one "
                          "clip and one class")
    if not m.has_canonical_format:  # repeated entries would count a clip twice
        m = m.copy()
        m.sum_duplicates()
    if not m.data.all():  # stored zeros are not labels; never edit the caller's matrix
        m = m.copy()
        m.eliminate_zeros()
    return m.astype(bool, copy=False)


def shuffled_positions(n: int, seed: int, epoch: int, shuffle: bool) -> np.ndarray:
    """The epoch's order of ``n`` clips: a permutation seeded by (seed, epoch), or 0..n-1."""
    if not shuffle:
        return np.arange(n, dtype=np.int64)
    return rng_for(seed, epoch, _TAG_PERMUTATION).permutation(n).astype(np.int64, copy=False)


class BalancedPlan:
    """The PANNs balanced sampling algorithm as a pure function of the position.

    The sequence is made of rounds: every round visits each non-empty class once, in an order
    shuffled per round. Each class keeps a queue of its clips; its ``j``-th draw of the epoch
    (made in round ``j``) is entry ``j mod n_c`` of the queue's pass ``j div n_c``, each pass
    an independent shuffle. So within a pass a class never repeats a clip, and the clip at any
    position is found from that position's round order and the class's queue for the epoch
    (one generator per class; every pass shuffled at once by one vectorised sort).

    A class with more clips than the epoch has rounds never finishes its first pass; for it
    only the first ``rounds`` entries of a uniformly shuffled queue are drawn (an ordered sample
    without replacement, which has the same distribution as a prefix of a full shuffle).
    """

    def __init__(self, targets: Any, num_samples: int) -> None:
        csc = targets.tocsc()  # a column's rows come out ascending whatever the CSR order
        counts = np.diff(csc.indptr)
        self.n_clips = int(csc.shape[0])
        self.classes = np.flatnonzero(counts).astype(np.int64)
        if self.classes.size == 0:
            raise ConfigError("targets has no labels: balanced sampling needs at least one "
                              "class with a clip")
        self.counts = counts[self.classes].astype(np.int64)
        self._starts = csc.indptr[self.classes].astype(np.int64)
        self._members = csc.indices  # int32 for any real label set: half the memory traffic
        self.class_counts = counts.astype(np.int64)
        self.num_samples = int(num_samples)
        self.rounds = -(-self.num_samples // self.classes.size)
        self._prefix = self.counts > self.rounds  # classes that never finish a pass

    def _round_orders(self, seed: int, epoch: int, r_lo: int, r_hi: int) -> np.ndarray:
        """Class orders (indices into ``self.classes``) of rounds ``r_lo``..``r_hi - 1``, each
        a uniformly random permutation."""
        n_cls = self.classes.size
        b_lo, b_hi = r_lo // ROUND_BLOCK, (r_hi - 1) // ROUND_BLOCK + 1
        blocks = [random_permutations(rng_for(seed, epoch, _TAG_ROUND_ORDER, b), ROUND_BLOCK,
                                      n_cls) for b in range(b_lo, b_hi)]
        orders = np.concatenate(blocks) if len(blocks) > 1 else blocks[0]
        first = r_lo - b_lo * ROUND_BLOCK
        return orders[first: first + (r_hi - r_lo)]

    def _queue_entries(self, seed: int, epoch: int, j: int) -> np.ndarray:
        """The clips class ``j`` draws in rounds ``0..rounds - 1`` of the epoch: its queue
        passes (each a uniform shuffle) laid end to end, or for a
        class with more clips than rounds an ordered sample of ``rounds`` distinct clips."""
        n_c = int(self.counts[j])
        start = int(self._starts[j])
        members = self._members[start: start + n_c]
        rng = rng_for(seed, epoch, _TAG_CLASS_QUEUE, int(self.classes[j]))
        if self._prefix[j]:
            return members[rng.choice(n_c, size=self.rounds, replace=False)]
        passes = -(-self.rounds // n_c)
        return members[random_permutations(rng, passes, n_c).ravel()]

    def draws(self, seed: int, epoch: int, lo: int, hi: int,
              with_classes: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
        """Clip positions for the sequence positions ``lo``..``hi - 1`` and, if asked, the
        class (column of ``targets``) each was drawn for."""
        if hi <= lo:
            return np.zeros(0, np.int64), (np.zeros(0, np.int64) if with_classes else None)
        n_cls = self.classes.size
        r_lo, r_hi = lo // n_cls, (hi - 1) // n_cls + 1
        orders = self._round_orders(seed, epoch, r_lo, r_hi)
        cut = slice(lo - r_lo * n_cls, hi - r_lo * n_cls)
        if r_hi - r_lo > 2:  # a whole round inside the range: every class draws
            present = np.ones(n_cls, dtype=bool)
        else:
            present = np.zeros(n_cls, dtype=bool)
            present[orders.ravel()[cut]] = True
        pieces, shift = [], np.zeros(n_cls, np.int64)
        total = 0
        for k in np.flatnonzero(present).tolist():
            clips = self._queue_entries(seed, epoch, k)
            pieces.append(clips)
            shift[k] = total
            total += clips.size
        flat = np.concatenate(pieces)
        # the draw of class j in round r sits at flat[shift[j] + r]
        where = shift[orders]
        where += np.arange(r_lo, r_hi, dtype=np.int64)[:, None]
        clips = flat[where.ravel()[cut]]
        return clips, (self.classes[orders.ravel()[cut]] if with_classes else None)


def cumulative_weights(weights: np.ndarray) -> tuple[np.ndarray, int]:
    """The running sum of ``weights`` and the index of the last positive weight."""
    cdf = np.cumsum(weights, dtype=np.float64)
    return cdf, int(np.flatnonzero(weights > 0)[-1])


def _blocks(lo: int, hi: int, make: Callable[[int], np.ndarray]) -> np.ndarray:
    """Positions ``lo``..``hi - 1`` of a sequence made in blocks of :data:`DRAW_BLOCK` by
    ``make(block_number)``."""
    b_lo, b_hi = lo // DRAW_BLOCK, (hi - 1) // DRAW_BLOCK + 1
    out = np.concatenate([make(b) for b in range(b_lo, b_hi)])
    first = lo - b_lo * DRAW_BLOCK
    return out[first: first + (hi - lo)]


def weighted_draws(cdf: np.ndarray, last_positive: int, seed: int, epoch: int, lo: int,
                   hi: int) -> np.ndarray:
    """Draws ``lo``..``hi - 1`` with replacement, clip ``i`` with probability ``w_i / sum w``.

    Inverse-CDF sampling, one generator per block of :data:`DRAW_BLOCK` draws. A block's
    uniforms are made already sorted (normalised partial sums of exponentials are the order
    statistics of uniforms), so the binary searches in the running sum walk it in order and
    stay in cache; a random permutation of the block then restores independent draws.
    """
    if hi <= lo:
        return np.zeros(0, np.int64)
    total = cdf[-1]

    def make(b: int) -> np.ndarray:
        rng = rng_for(seed, epoch, _TAG_WEIGHTED_DRAWS, b)
        spacing = np.cumsum(rng.standard_exponential(DRAW_BLOCK + 1))
        u = spacing[:-1] * (total / spacing[-1])
        idx = np.minimum(np.searchsorted(cdf, u, side="right"), last_positive)
        return idx[rng.permutation(DRAW_BLOCK)]

    return _blocks(lo, hi, make)


class LabelMixture:
    """Weighted draws for label-rule weights as a two-step mixture, O(1) per draw.

    With clip weights ``w_i = sum over labels c of v_c``, drawing class ``c`` with probability
    ``v_c * count_c / sum w`` and then a uniform clip of ``c`` picks clip ``i`` with
    probability exactly ``w_i / sum w``; the class step is a multinomial count over the few
    hundred classes, so no search over millions of clips is needed.
    """

    def __init__(self, targets: Any, class_weights: np.ndarray) -> None:
        csc = targets.tocsc()
        counts = np.diff(csc.indptr).astype(np.int64)
        mass = class_weights * counts
        self.p = mass / mass.sum()
        self.starts = csc.indptr[:-1].astype(np.int64)
        self.counts = counts
        self.members = csc.indices

    def draws(self, seed: int, epoch: int, lo: int, hi: int) -> np.ndarray:
        """Draws ``lo``..``hi - 1`` (one generator per block of :data:`DRAW_BLOCK`)."""
        if hi <= lo:
            return np.zeros(0, np.int64)
        classes = np.arange(self.p.size)

        def make(b: int) -> np.ndarray:
            rng = rng_for(seed, epoch, _TAG_WEIGHTED_DRAWS, b)
            cls = np.repeat(classes, rng.multinomial(DRAW_BLOCK, self.p))
            k = (rng.random(DRAW_BLOCK) * self.counts[cls]).astype(np.int64)
            clips = self.members[self.starts[cls] + np.minimum(k, self.counts[cls] - 1)]
            return clips[rng.permutation(DRAW_BLOCK)]

        return _blocks(lo, hi, make)


def weighted_order(weights: np.ndarray, k: int, seed: int, epoch: int) -> np.ndarray:
    """``k`` distinct clips drawn without replacement with probability proportional to
    ``weights``, in draw order (Efraimidis–Spirakis: the ``k`` smallest keys ``E_i / w_i``
    with ``E_i`` standard exponential, sorted by key)."""
    keys = rng_for(seed, epoch, _TAG_WEIGHTED_KEYS).standard_exponential(weights.size)
    with np.errstate(divide="ignore"):
        keys /= weights  # weight 0: key inf, never among the k smallest finite keys
    positive = int(np.count_nonzero(weights > 0))
    if k < weights.size:
        top = np.argpartition(keys, k - 1)[:k]
        order = top[np.argsort(keys[top])]
    else:
        order = np.argsort(keys)
    if k > positive:
        raise ConfigError(f"cannot draw {k} distinct clips: only {positive} have weight > 0")
    return order.astype(np.int64, copy=False)
