"""Samplers for training on AudioSet: plain shuffle, PANNs class balance, label weights.

NumPy only: a ``torch.utils.data.DataLoader`` accepts any iterable with ``__len__`` as
``sampler=``, and a NumPy or JAX batch loop can iterate the same objects. Every sampler yields
``int`` positions ``0..n-1`` of the clips, and shares one contract:

* **Deterministic.** An epoch's global sequence is a pure function of (seed, epoch, position)
  and the sampler's configuration; :meth:`set_epoch` selects the epoch. Finishing an epoch
  does not advance it (as with ``torch.utils.data.DistributedSampler``): call ``set_epoch``.
* **Distributed.** The global sequence is rounded up to a multiple of ``num_replicas`` by
  wrapping round to its start (or cut down with ``drop_last``); rank ``r`` takes positions
  ``r, r + num_replicas, ...``, so ranks get equal lengths and disjoint positions.
  ``len(sampler)`` is the length of this rank's share.
* **Resumable.** Iterating counts the items this rank has handed out (``position``);
  :meth:`state_dict` is a small plain dict (pickle and JSON safe) and :meth:`load_state_dict`
  restores it, after which iteration continues the identical sequence, produced by
  vectorised work (no replay of the consumed part in Python). A ``DataLoader`` prefetches
  ahead of the training step, so a trainer should checkpoint the number of samples it
  actually consumed: ``sampler.state_dict(position=consumed)`` (or set ``"position"`` in the
  dict it loads).
  Because every rank has the same length, one rank's state may be loaded on every rank.
  An iteration left unfinished is continued by the next ``iter()`` (the position is kept);
  ``set_epoch`` with another epoch, or :meth:`load_state_dict`, starts elsewhere.

The epoch builders (NumPy) live in
:mod:`audioset_data.loaders.sampler_epochs`.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Iterator
from typing import Any

import numpy as np

from audioset_data.errors import ConfigError

from .sampler_epochs import (
    LabelMixture,
    as_label_matrix,
    balanced_epoch,
    class_queues,
    cumulative_weights,
    shuffled_positions,
    weighted_draws,
    weighted_order,
)

logger = logging.getLogger(__name__)

_YIELD_CHUNK = 1 << 15


def _check_int(name: str, value: Any, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise ConfigError(f"{name} must be an integer, got {value!r}")
    if value < low:
        raise ConfigError(f"{name} must be >= {low}, got {value}")
    return int(value)


def label_weights(targets: Any, offset: float = 100.0, scale: float = 1000.0,
                  unlabeled_weight: float = 0.0) -> np.ndarray:
    """Per-clip sampling weights from label frequencies: the rule of PaSST and EfficientAT.

    Class ``c`` with ``count_c`` clips in ``targets`` weighs ``scale / (count_c + offset)``;
    a clip weighs the sum over its labels, so rare classes are drawn more often while the
    offset keeps very rare classes from dominating.

    Parameters
    ----------
    targets
        Clips × classes boolean matrix (scipy sparse or dense); nonzero entries are labels.
    offset, scale
        The constants of the rule; ``offset >= 0`` and ``scale > 0``.
    unlabeled_weight
        Weight of a clip with no label. The default 0 leaves such clips out of weighted
        sampling: every AudioSet clip has a label, so an unlabelled row means the labels were
        filtered to a subset the clip is not in.

    Returns
    -------
    numpy.ndarray
        ``float64`` weights, one per clip.

    Raises
    ------
    ConfigError
        If ``targets`` is empty or not 2-D, or a constant is out of range.
    """
    m = as_label_matrix(targets)
    return _label_weights(m, _class_weights(m, offset, scale), unlabeled_weight)


def _class_weights(m: Any, offset: float, scale: float) -> np.ndarray:
    """``scale / (count_c + offset)`` per class of the label matrix ``m`` (0 if unused)."""
    if not offset >= 0:
        raise ConfigError(f"offset must be >= 0, got {offset}")
    if not scale > 0:
        raise ConfigError(f"scale must be > 0, got {scale}")
    counts = np.bincount(m.indices, minlength=m.shape[1]).astype(np.float64)
    per_class = np.zeros_like(counts)
    used = counts > 0
    per_class[used] = scale / (counts[used] + offset)
    return per_class


def _label_weights(m: Any, per_class: np.ndarray, unlabeled_weight: float) -> np.ndarray:
    if not unlabeled_weight >= 0:
        raise ConfigError(f"unlabeled_weight must be >= 0, got {unlabeled_weight}")
    weights = np.asarray(m.astype(np.float64) @ per_class, dtype=np.float64).ravel()
    if unlabeled_weight:
        weights[np.diff(m.indptr) == 0] = unlabeled_weight
    return weights


class _Sampler:
    """Shared machinery: distributed split, iteration with position tracking, state."""

    kind = "sampler"

    def __init__(self, *, seed: int, num_replicas: int, rank: int, drop_last: bool) -> None:
        self.seed = _check_int("seed", seed, 0)
        self.num_replicas = _check_int("num_replicas", num_replicas, 1)
        self.rank = _check_int("rank", rank, 0)
        if self.rank >= self.num_replicas:
            raise ConfigError(f"rank must be < num_replicas ({self.num_replicas}), got "
                              f"{self.rank}")
        self.drop_last = bool(drop_last)
        self.epoch = 0
        self.position = 0

    def _setup_length(self, base: int) -> None:
        """Fix the global and per-rank lengths for a global sequence of ``base`` items."""
        self.num_samples = base
        if self.drop_last:
            self.total_size = base // self.num_replicas * self.num_replicas
        else:
            self.total_size = -(-base // self.num_replicas) * self.num_replicas
        if self.total_size == 0:
            raise ConfigError(f"drop_last leaves no items: {base} samples over "
                              f"{self.num_replicas} replicas")

    def _generate(self, lo: int, hi: int) -> np.ndarray:
        """Items at positions ``lo``..``hi - 1`` of the epoch's unpadded global sequence."""
        raise NotImplementedError

    def _config(self) -> dict[str, Any]:
        """Fields a loaded state must match."""
        return {"kind": self.kind, "n": self.n, "num_samples": self.num_samples,
                "num_replicas": self.num_replicas, "drop_last": self.drop_last}

    def __len__(self) -> int:
        return self.total_size // self.num_replicas

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch (its own sequence). A new epoch starts at position 0; setting the
        current epoch again keeps the position, so a resumed run may call it as usual."""
        epoch = _check_int("epoch", epoch, 0)
        if epoch != self.epoch:
            self.position = 0
        self.epoch = epoch

    def indices(self, start: int | None = None) -> np.ndarray:
        """This rank's items from its position ``start`` (default: the current position) to
        the end of the epoch, without iterating or changing state."""
        start = self.position if start is None else _check_int("start", start, 0)
        if start > len(self):
            raise ConfigError(f"start {start} is past the end of the epoch ({len(self)} items)")
        first, step, base = self.rank + start * self.num_replicas, self.num_replicas, \
            self.num_samples
        if first >= self.total_size:
            return np.zeros(0, dtype=np.int64)
        if self.total_size <= base:  # no padding: one contiguous range, strided
            return np.ascontiguousarray(self._generate(first, self.total_size)[::step], np.int64)
        g = np.arange(first, self.total_size, step, dtype=np.int64)
        out = np.empty(g.size, dtype=np.int64)
        main = g < base
        if main.any():
            lo, hi = int(g[main][0]), int(g[main][-1]) + 1
            out[main] = self._generate(lo, hi)[g[main] - lo]
        if not main.all():
            wrapped = g[~main] % base
            out[~main] = self._generate(0, int(wrapped.max()) + 1)[wrapped]
        return out

    def __iter__(self) -> Iterator[int]:
        return self._iterate(self.indices())

    def _iterate(self, items: np.ndarray) -> Iterator[int]:
        for lo in range(0, items.size, _YIELD_CHUNK):
            for item in items[lo: lo + _YIELD_CHUNK].tolist():
                self.position += 1
                yield item
        self.position = 0

    def state_dict(self, position: int | None = None) -> dict[str, Any]:
        """A small plain dict to resume from: configuration, seed, epoch and ``position``
        (items this rank has handed out; pass the trainer's count of consumed samples as
        ``position`` when a ``DataLoader`` prefetches)."""
        pos = self.position if position is None else _check_int("position", position, 0)
        return {**self._config(), "seed": self.seed, "epoch": self.epoch, "position": pos,
                "rank": self.rank}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore seed, epoch and position from :meth:`state_dict`; the next iteration
        continues the identical sequence.

        Raises
        ------
        ConfigError
            If a field is missing or the state was made by a sampler of another kind, clip
            count, length, replica count or label set (the message names the field).
        """
        if not isinstance(state, dict):
            raise ConfigError(f"sampler state must be a dict, got {type(state).__name__}")
        for key, want in self._config().items():
            if key not in state:
                raise ConfigError(f"sampler state has no {key!r} field")
            if state[key] != want:
                raise ConfigError(f"sampler state field {key!r} is {state[key]!r}, but this "
                                  f"sampler has {want!r}")
        for key in ("seed", "epoch", "position"):
            if key not in state:
                raise ConfigError(f"sampler state has no {key!r} field")
        seed = _check_int("state 'seed'", state["seed"], 0)
        epoch = _check_int("state 'epoch'", state["epoch"], 0)
        position = _check_int("state 'position'", state["position"], 0)
        if position > len(self):
            raise ConfigError(f"sampler state field 'position' is {position}, past this rank's "
                              f"epoch length {len(self)}")
        self.seed, self.epoch, self.position = seed, epoch, position

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(num_samples={self.num_samples}, seed={self.seed}, "
                f"epoch={self.epoch}, position={self.position}, rank={self.rank}/"
                f"{self.num_replicas})")


class ShuffleSampler(_Sampler):
    """Every clip exactly once per epoch, in an order shuffled per (seed, epoch).

    Distributed, ranks take disjoint clips that together cover every clip; without
    ``drop_last`` the epoch is padded by wrapping round to its start, as
    ``torch.utils.data.DistributedSampler`` does.

    Parameters
    ----------
    n
        Number of clips.
    seed, shuffle, num_replicas, rank, drop_last
        As in ``DistributedSampler``; ``shuffle=False`` keeps the clips in order.
    """

    kind = "shuffle"

    def __init__(self, n: int, *, seed: int = 0, shuffle: bool = True, num_replicas: int = 1,
                 rank: int = 0, drop_last: bool = False) -> None:
        super().__init__(seed=seed, num_replicas=num_replicas, rank=rank, drop_last=drop_last)
        self.n = _check_int("n", n, 1)
        self.shuffle = bool(shuffle)
        self._setup_length(self.n)
        self._cache: tuple[tuple[int, int], np.ndarray] | None = None

    def _config(self) -> dict[str, Any]:
        return {**super()._config(), "shuffle": self.shuffle}

    def _generate(self, lo: int, hi: int) -> np.ndarray:
        key = (self.seed, self.epoch)
        if self._cache is None or self._cache[0] != key:
            self._cache = (key, shuffled_positions(self.n, self.seed, self.epoch, self.shuffle))
        return self._cache[1][lo:hi]


class BalancedSampler(_Sampler):
    """Class-balanced sampling as in PANNs: every class is drawn about equally often.

    The sequence runs in rounds; each round visits every class that has a clip once, in an
    order shuffled per round, and takes the next clip of that class's shuffled queue; a queue
    is reshuffled when it runs out, so a class repeats no clip until it has drawn them all.
    Classes with no clips are skipped. The epoch is built whole with NumPy
    (:func:`~audioset_data.loaders.sampler_epochs.balanced_epoch`) and kept for its epoch.

    Parameters
    ----------
    targets
        Clips × classes boolean matrix (scipy sparse, e.g. ``AudioSetCache.targets()``, or
        dense); nonzero entries are labels.
    num_samples
        Draws per epoch over all ranks (default: the number of clips).
    seed, num_replicas, rank, drop_last
        See the module docstring.
    """

    kind = "balanced"

    def __init__(self, targets: Any, *, num_samples: int | None = None, seed: int = 0,
                 num_replicas: int = 1, rank: int = 0, drop_last: bool = False) -> None:
        super().__init__(seed=seed, num_replicas=num_replicas, rank=rank, drop_last=drop_last)
        m = as_label_matrix(targets)
        base = m.shape[0] if num_samples is None else _check_int("num_samples", num_samples, 1)
        self._classes, self._queues, counts = class_queues(m)
        self.n = int(m.shape[0])
        self._setup_length(base)
        self._fingerprint = zlib.crc32(counts.tobytes())
        self._cache: tuple[tuple[int, int], np.ndarray, np.ndarray] | None = None
        logger.debug("balanced sampler: %d clips, %d non-empty classes", self.n,
                     self._classes.size)

    @property
    def num_classes(self) -> int:
        """Classes with at least one clip (the ones the sampler visits)."""
        return int(self._classes.size)

    def _config(self) -> dict[str, Any]:
        return {**super()._config(), "fingerprint": self._fingerprint}

    def _epoch(self) -> tuple[np.ndarray, np.ndarray]:
        key = (self.seed, self.epoch)
        if self._cache is None or self._cache[0] != key:
            clips, slots = balanced_epoch(self._queues, self.num_samples, self.seed, self.epoch)
            self._cache = (key, clips, slots)
        return self._cache[1], self._cache[2]

    def _generate(self, lo: int, hi: int) -> np.ndarray:
        return self._epoch()[0][lo:hi]

    def draws(self, start: int = 0, stop: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Positions ``start``..``stop - 1`` of the epoch's global (unpadded) sequence: the
        clips and the class each was drawn for. Round ``r`` is positions
        ``r * num_classes`` to ``(r + 1) * num_classes - 1``."""
        stop = self.num_samples if stop is None else stop
        if not 0 <= start <= stop <= self.num_samples:
            raise ConfigError(f"draws({start}, {stop}) is outside 0..{self.num_samples}")
        clips, slots = self._epoch()
        return clips[start:stop].astype(np.int64), self._classes[slots[start:stop]]


class WeightedSampler(_Sampler):
    """Clips drawn with probability proportional to a weight, with or without replacement.

    The weights are ``weights`` or, given ``targets``, :func:`label_weights` of them (the
    PaSST / EfficientAT rule). Clips of weight 0 are never drawn. With replacement the epoch has
    ``num_samples`` draws (default: the number of clips); without, ``num_samples`` distinct
    clips (default: every clip of positive weight) in a weighted random order, heavy clips
    tending to come first.

    Parameters
    ----------
    targets
        Clips × classes label matrix to derive the weights from; give this or ``weights``.
    weights
        Non-negative per-clip weights, not all zero.
    num_samples, replacement, seed, num_replicas, rank, drop_last
        See above and the module docstring.
    """

    kind = "weighted"

    def __init__(self, targets: Any = None, *, weights: Any = None,
                 num_samples: int | None = None, replacement: bool = True, seed: int = 0,
                 num_replicas: int = 1, rank: int = 0, drop_last: bool = False) -> None:
        super().__init__(seed=seed, num_replicas=num_replicas, rank=rank, drop_last=drop_last)
        if (targets is None) == (weights is None):
            raise ConfigError("WeightedSampler needs exactly one of targets and weights")
        self._labels: tuple[Any, np.ndarray] | None = None
        self._mixture: LabelMixture | None = None
        if targets is not None:
            m = as_label_matrix(targets)
            per_class = _class_weights(m, 100.0, 1000.0)
            w = _label_weights(m, per_class, 0.0)
            self._labels = (m, per_class)  # the mixture is built on the first draw
        else:
            w = np.asarray(weights, np.float64)
        if w.ndim != 1 or w.size == 0:
            raise ConfigError(f"weights must be a non-empty 1-D array, got shape {w.shape}")
        if not np.all(np.isfinite(w)):
            bad = int(np.flatnonzero(~np.isfinite(w))[0])
            raise ConfigError(f"weights must be finite; weight {bad} is {w[bad]}")
        if (w < 0).any():
            bad = int(np.flatnonzero(w < 0)[0])
            raise ConfigError(f"weights must be >= 0; weight {bad} is {w[bad]}")
        positive = int(np.count_nonzero(w))
        if positive == 0:
            raise ConfigError("every weight is zero: nothing to sample")
        self.weights = w
        self.n = int(w.size)
        self.replacement = bool(replacement)
        if num_samples is None:
            base = self.n if self.replacement else positive
        else:
            base = _check_int("num_samples", num_samples, 1)
        if not self.replacement and base > positive:
            raise ConfigError(f"num_samples {base} exceeds the {positive} clips of positive "
                              "weight; sampling without replacement cannot draw more")
        self._setup_length(base)
        self._fingerprint = zlib.crc32(w.tobytes())
        self._cdf: tuple[np.ndarray, int] | None = None
        self._cache: tuple[tuple[int, int], np.ndarray] | None = None

    def _config(self) -> dict[str, Any]:
        return {**super()._config(), "replacement": self.replacement,
                "from_labels": self._labels is not None,
                "fingerprint": self._fingerprint}

    def _generate(self, lo: int, hi: int) -> np.ndarray:
        if self.replacement and self._labels is not None:
            if self._mixture is None:
                self._mixture = LabelMixture(*self._labels)
            return self._mixture.draws(self.seed, self.epoch, lo, hi)
        if self.replacement:
            if self._cdf is None:
                self._cdf = cumulative_weights(self.weights)
            cdf, last = self._cdf
            return weighted_draws(cdf, last, self.seed, self.epoch, lo, hi)
        key = (self.seed, self.epoch)
        if self._cache is None or self._cache[0] != key:
            self._cache = (key, weighted_order(self.weights, self.num_samples, self.seed,
                                               self.epoch))
        return self._cache[1][lo:hi]


def _world(num_replicas: int | None, rank: int | None) -> tuple[int, int]:
    """Fill unset ``num_replicas``/``rank`` from ``torch.distributed`` when it is initialised,
    else 1 and 0."""
    if num_replicas is not None and rank is not None:
        return num_replicas, rank
    size, me = 1, 0
    try:
        import torch.distributed as dist
    except ImportError:
        dist = None
    if dist is not None and dist.is_available() and dist.is_initialized():
        size, me = dist.get_world_size(), dist.get_rank()
    else:
        logger.debug("torch.distributed is not initialised; defaulting to one replica")
    return (size if num_replicas is None else num_replicas), (me if rank is None else rank)


class DistributedShuffleSampler(ShuffleSampler):
    """:class:`ShuffleSampler` whose ``num_replicas``/``rank`` default to the
    ``torch.distributed`` world size and rank (1 and 0 when it is not initialised)."""

    def __init__(self, n: int, *, seed: int = 0, shuffle: bool = True,
                 num_replicas: int | None = None, rank: int | None = None,
                 drop_last: bool = False) -> None:
        num_replicas, rank = _world(num_replicas, rank)
        super().__init__(n, seed=seed, shuffle=shuffle, num_replicas=num_replicas, rank=rank,
                         drop_last=drop_last)


class DistributedBalancedSampler(BalancedSampler):
    """:class:`BalancedSampler` whose ``num_replicas``/``rank`` default to the
    ``torch.distributed`` world size and rank (1 and 0 when it is not initialised)."""

    def __init__(self, targets: Any, *, num_samples: int | None = None, seed: int = 0,
                 num_replicas: int | None = None, rank: int | None = None,
                 drop_last: bool = False) -> None:
        num_replicas, rank = _world(num_replicas, rank)
        super().__init__(targets, num_samples=num_samples, seed=seed, num_replicas=num_replicas,
                         rank=rank, drop_last=drop_last)


class DistributedWeightedSampler(WeightedSampler):
    """:class:`WeightedSampler` whose ``num_replicas``/``rank`` default to the
    ``torch.distributed`` world size and rank (1 and 0 when it is not initialised); PyTorch
    itself has no distributed weighted sampler."""

    def __init__(self, targets: Any = None, *, weights: Any = None,
                 num_samples: int | None = None, replacement: bool = True, seed: int = 0,
                 num_replicas: int | None = None, rank: int | None = None,
                 drop_last: bool = False) -> None:
        num_replicas, rank = _world(num_replicas, rank)
        super().__init__(targets, weights=weights, num_samples=num_samples,
                         replacement=replacement, seed=seed, num_replicas=num_replicas,
                         rank=rank, drop_last=drop_last)


__all__ = [
    "BalancedSampler",
    "DistributedBalancedSampler",
    "DistributedShuffleSampler",
    "DistributedWeightedSampler",
    "ShuffleSampler",
    "WeightedSampler",
    "label_weights",
]
