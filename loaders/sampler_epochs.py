"""Vectorised epoch builders behind :mod:`audioset_data.loaders.samplers` (NumPy only).

Every epoch's sequence is a pure function of (seed, epoch) and the sampler's fixed
configuration, so ranks of a distributed job agree on the global sequence without talking to
each other, and a sampler resumes mid-epoch with vectorised work and no replay in Python.

Randomness is counter-based: each independent piece (a shuffle, a balanced epoch, a block of
weighted draws) gets its own generator seeded from ``(seed, epoch, tag, ...)``. The shuffle,
the balanced epoch and the without-replacement order are built whole (one vectorised pass,
kept by the sampler for its epoch) and a resume slices them; weighted draws with replacement
come in blocks, so a resume makes only the blocks from the resume point on.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from scipy import sparse

from audioset_data.errors import ConfigError

_TAG_PERMUTATION = 1
_TAG_BALANCED = 2
_TAG_WEIGHTED_DRAWS = 4
_TAG_WEIGHTED_KEYS = 5

DRAW_BLOCK = 1 << 16
"""Weighted draws with replacement per generator."""


def rng_for(*words: int) -> np.random.Generator:
    """A generator determined only by ``words`` (seed, epoch, a tag and counters)."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(list(words))))


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


def class_queues(targets: Any) -> tuple[np.ndarray, list[np.ndarray], np.ndarray]:
    """The columns of a label matrix that have a clip, each one's clips (ascending), and the
    clip count of every column."""
    csc = targets.tocsc()  # a column's rows come out ascending whatever the CSR order
    counts = np.diff(csc.indptr).astype(np.int64)
    classes = np.flatnonzero(counts)
    if classes.size == 0:
        raise ConfigError("targets has no labels: balanced sampling needs at least one "
                          "class with a clip")
    queues = [csc.indices[csc.indptr[c]: csc.indptr[c + 1]] for c in classes.tolist()]
    return classes, queues, counts


def balanced_epoch(queues: list[np.ndarray], num_samples: int, seed: int,
                   epoch: int) -> tuple[np.ndarray, np.ndarray]:
    """One epoch of the PANNs balanced sampler: the clips drawn and the queue each was drawn
    for (an index into ``queues``).

    The epoch runs in rounds; each round visits every queue once, in an order shuffled per
    round, and takes the queue's next clip; a queue is reshuffled when it runs out, so a class
    repeats no clip until it has drawn them all. A queue at least as long as the epoch has
    rounds never runs out: it draws an ordered sample of ``rounds`` distinct clips, which has
    the distribution of the start of a full shuffle without shuffling all of it.
    """
    rng = rng_for(seed, epoch, _TAG_BALANCED)
    rounds = -(-num_samples // len(queues))
    table = np.empty((len(queues), rounds), dtype=queues[0].dtype)  # queue j's draw in round r
    for j, members in enumerate(queues):
        n = members.size
        if n >= rounds:
            table[j] = members[rng.choice(n, rounds, replace=False)]
        else:  # one independent shuffle per pass through the queue
            passes = rng.permuted(np.tile(np.arange(n), (-(-rounds // n), 1)), axis=1)
            table[j] = members[passes.ravel()[:rounds]]
    order = rng.permuted(np.tile(np.arange(len(queues)), (rounds, 1)), axis=1)
    clips = table[order, np.arange(rounds)[:, None]].ravel()[:num_samples]
    return clips, order.ravel()[:num_samples]


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
