"""Seeded splits of multi-label data that keep every class's share in every part.

A plain random split of a multi-label list leaves rare classes badly off: a class on 60 clips
may get 2 or 11 of them in a 10 % validation part instead of 6. Iterative stratification
(Sechidis, Tsoumakas and Vlahavas, 2011) deals the clips out class by class, the class with
the fewest clips still to deal first, so each part ends up with close to its fraction of every
class.

:func:`stratified_split` works on a clip × label matrix (sparse or dense); :func:`split_segments`
splits a :class:`~audioset_data.segments.table.Segments` into train and validation parts.

One change to the paper's choice of part: the paper sends each clip to the part that still
wants the most clips of the class being dealt. On AudioSet that lets a frequent class dealt
late (Speech, with a few clips left and the validation part short of them) drag the rare
classes those clips also carry: on the balanced list a 60-clip class ended up with 29 clips in
a 10 % part. Here each clip goes to the part with the largest open share of *all* its
classes (each class's remaining want over the part's full want of it, summed over the clip's
classes, plus the part's open share of its size weighed as eight classes), ties to the larger
part, then at random. On the balanced list every class then lands within 6 clips of its target
share, the rare ones within 2 (``benchmarks/results/interop.md``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp

from audioset_data.errors import ConfigError

if TYPE_CHECKING:
    from .table import Segments


#: How many classes the part sizes weigh as in each clip's choice of part: enough to keep the
#: parts within about 1 % of their sizes on the balanced list (10 % on a 2,000-clip list whose
#: classes have a handful of clips each), little enough to leave the classes' shares first.
_SIZE_WEIGHT = 8.0


def _check_fractions(fractions: Sequence[float]) -> np.ndarray:
    frac = np.asarray(list(fractions), dtype=np.float64)
    if frac.ndim != 1 or len(frac) < 2:
        raise ConfigError(f"fractions={list(fractions)!r}: give at least two parts")
    if not np.isfinite(frac).all() or (frac <= 0).any():
        raise ConfigError(f"fractions={list(fractions)!r}: every fraction must be above 0")
    if abs(frac.sum() - 1.0) > 1e-6:
        raise ConfigError(f"fractions={list(fractions)!r} sum to {frac.sum():g}, not 1")
    return frac


def _as_csr(targets: Any) -> sp.csr_array:
    """0/1 int32 CSR of any matrix whose non-zero entries mark labels."""
    if not sp.issparse(targets):
        targets = np.asarray(targets)
        if targets.ndim != 2:
            raise ConfigError(f"targets must be a clips × labels matrix, not shape "
                              f"{targets.shape}")
    y = sp.csr_array(sp.csr_array(targets) != 0, dtype=np.int32)
    y.sum_duplicates()
    return y


def stratified_split(targets: Any, fractions: Sequence[float] = (0.9, 0.1),
                     seed: int = 0) -> list[np.ndarray]:
    """Split clips into parts of the given fractions, keeping each class's share in each part.

    Parameters
    ----------
    targets
        Clip × label matrix: a scipy sparse matrix or array, or a dense array; any non-zero
        entry marks a label.
    fractions
        Share of the clips in each part (at least two, each above 0, summing to 1).
    seed
        Seed of the random order and tie-breaks: the same seed gives the same parts.

    Returns
    -------
    list of numpy.ndarray
        One sorted array of clip positions per part; the parts are disjoint and together hold
        every clip.

    Raises
    ------
    ConfigError
        ``fractions`` is not a set of positive shares summing to 1, or ``targets`` is not a
        matrix.

    Examples
    --------
    >>> import numpy as np
    >>> y = np.zeros((100, 3), dtype=bool); y[:50, 0] = True; y[::10, 1] = True
    >>> train, val = stratified_split(y, (0.8, 0.2), seed=1)
    >>> len(train), len(val), int(y[val, 1].sum())
    (80, 20, 2)
    """
    frac = _check_fractions(fractions)
    y = _as_csr(targets)
    n, n_labels = y.shape
    k = len(frac)
    rng = np.random.default_rng(seed)
    overall = frac * n
    counts = np.asarray(y.sum(axis=0)).ravel().astype(np.float64)
    demand = frac[:, None] * counts[None, :]  # parts × labels wanted
    remaining = counts.copy()  # unassigned clips per label
    part = np.full(n, -1, dtype=np.int64)
    y_csc = y.tocsc()
    # a part's open share of a class: remaining want over its full want (at least one clip,
    # so a class too small to reach a part does not pull clips into it)
    weight = 1.0 / np.maximum(frac[:, None] * counts[None, :], 1.0)
    share = demand * weight
    indptr, indices = y.indptr, y.indices
    size = np.maximum(frac * n, 1.0)  # the parts' sizes, weighed as _SIZE_WEIGHT classes
    ties = rng.random((n, k))
    for _ in range(n_labels):
        live = remaining > 0
        if not live.any():
            break
        noise = rng.random(n_labels)  # random tie-break among equally rare labels
        label = int(np.lexsort((noise, np.where(live, remaining, np.inf)))[0])
        rows = y_csc.indices[y_csc.indptr[label]:y_csc.indptr[label + 1]]
        rows = rows[part[rows] < 0]
        for r in rows[rng.permutation(len(rows))]:
            labels = indices[indptr[r]:indptr[r + 1]]
            score = share[:, labels].sum(axis=1) + _SIZE_WEIGHT * overall / size
            j = int(np.lexsort((ties[r], overall, score))[-1])
            part[r] = j
            share[j, labels] -= weight[j, labels]
            remaining[labels] -= 1
            overall[j] -= 1
    rest = np.flatnonzero(part < 0)  # clips without any label: only the part sizes count
    for r in rest[rng.permutation(len(rest))]:
        j = int(np.lexsort((ties[r], overall, overall / size))[-1])
        part[r] = j
        overall[j] -= 1
    return [np.flatnonzero(part == j) for j in range(k)]


def split_segments(segments: Segments, fraction: float = 0.1,
                   seed: int = 0) -> tuple[Segments, Segments]:
    """Split a segment list into train and validation parts with each class's share kept.

    ``fraction`` is the validation share (between 0 and 1); both parts keep the list's order.
    See :func:`stratified_split`.

    Examples
    --------
    ``train, val = split_segments(load_segments("balanced_train"), 0.1, seed=0)``
    """
    if not 0 < fraction < 1:
        raise ConfigError(f"fraction={fraction!r} must lie strictly between 0 and 1")
    train, val = stratified_split(segments.label_matrix, (1 - fraction, fraction), seed)
    return segments[train], segments[val]


__all__ = ["split_segments", "stratified_split"]
