"""Bootstrap confidence interval of the mean AP: clips resampled with replacement.

A resample is a vector of clip multiplicities ``w`` (how often each clip was drawn). AP only
needs, at each distinct score of a positive, the weight of the positives and of all the known
clips that score at least as high. So each column is sorted once: every known clip falls into
the *bucket* of the first positive tie group it scores at or above (clips below the lowest
positive are dropped), and the bucket sums of all resamples at once are one sparse product
``W @ S``; cumulative sums over each class's buckets then give the counts of every PR point.
No resample is ever sorted, and the result is the AP scikit-learn would give the resampled
(duplicated) clips.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from audioset_data.errors import EvaluationError

from .metrics import ArrayLike, _truth_and_scores, _validate, class_metrics

# Resamples per sparse product (bounds memory to a few (chunk × positive groups) arrays); fixed,
# so a seed gives the same samples whatever n_resamples is (the first ones agree).
_CHUNK = 50


@dataclass(frozen=True)
class BootstrapResult:
    """Percentile bootstrap interval of the mean AP.

    Attributes
    ----------
    estimate : float
        Mean AP on the data as given.
    low, high : float
        Bounds of the percentile interval at ``confidence``.
    samples : numpy.ndarray of float64, shape (n_resamples,)
        Mean AP of each resample (NaN where no class was defined in it).
    confidence : float
        The confidence level asked for.
    """

    estimate: float
    low: float
    high: float
    samples: np.ndarray
    confidence: float

    @property
    def bias(self) -> float:
        """Mean of the resampled means minus the estimate.

        AP is biased upwards on a resample: it holds about 63 % distinct clips, so fewer
        distinct positives, and the AP of a ranking of few positives is higher on average. On
        many classes the standard error of the mean AP is small, so this shift can move the
        whole percentile interval above the estimate; report it with the interval.
        """
        ok = np.isfinite(self.samples)
        return float(np.mean(self.samples[ok]) - self.estimate) if ok.any() else float("nan")

    @property
    def std(self) -> float:
        """Standard deviation of the resampled means (the bootstrap standard error)."""
        ok = np.isfinite(self.samples)
        return float(np.std(self.samples[ok], ddof=1)) if ok.sum() > 1 else float("nan")


def _buckets(y: np.ndarray, s: np.ndarray, k: np.ndarray | None
             ) -> tuple[sp.csc_array, sp.csc_array, np.ndarray, np.ndarray]:
    """The clip × bucket indicators of all clips and of positives, and bucket offsets."""
    n, c = y.shape
    rows_all: list[np.ndarray] = []
    cols_all: list[np.ndarray] = []
    rows_pos: list[np.ndarray] = []
    cols_pos: list[np.ndarray] = []
    offsets = np.zeros(c + 1, dtype=np.int64)
    yt = np.ascontiguousarray(y.T)
    st = np.negative(np.ascontiguousarray(s.T))
    kt = None if k is None else np.ascontiguousarray(k.T)
    for j in range(c):
        yj = yt[j]
        vj = st[j]
        if kt is not None:
            kj = kt[j]
            yj = yj & kj
        pos = np.flatnonzero(yj)
        u = np.unique(vj[pos])  # distinct negated positive scores, ascending
        g = u.size
        offsets[j + 1] = offsets[j] + g
        if g == 0:
            continue
        b = np.searchsorted(u, vj, side="left")
        keep = b < g
        if kt is not None:
            keep &= kj
        idx = np.flatnonzero(keep)
        rows_all.append(idx)
        cols_all.append(offsets[j] + b[idx])
        rows_pos.append(pos)
        cols_pos.append(offsets[j] + b[pos])
    total = int(offsets[-1])

    def build(rows: list[np.ndarray], cols: list[np.ndarray]) -> sp.csc_array:
        r = np.concatenate(rows) if rows else np.empty(0, dtype=np.int64)
        cc = np.concatenate(cols) if cols else np.empty(0, dtype=np.int64)
        m = sp.csr_array((np.ones(r.size, dtype=np.float32), (cc, r)), shape=(total, n))
        m.sum_duplicates()
        return m

    group_col = np.repeat(np.arange(c), np.diff(offsets))
    return build(rows_all, cols_all), build(rows_pos, cols_pos), offsets, group_col


def _segment_cumsum(a: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Cumulative sums along axis 1 restarting at each class's first bucket."""
    cs = np.cumsum(a, axis=1, dtype=np.float64)
    starts = offsets[:-1][np.diff(offsets) > 0]
    before = np.zeros((a.shape[0], starts.size))
    before[:, starts > 0] = cs[:, starts[starts > 0] - 1]
    lengths = np.diff(offsets)[np.diff(offsets) > 0]
    return cs - np.repeat(before, lengths, axis=1)


def bootstrap_map(y_true: ArrayLike | None = None, y_score: ArrayLike | None = None, *,
                  n_resamples: int = 1000, seed: int = 0, confidence: float = 0.95,
                  known: ArrayLike | None = None, targets: ArrayLike | None = None,
                  scores: ArrayLike | None = None) -> BootstrapResult:
    """Percentile bootstrap interval of the mean AP over classes.

    Clips (rows) are resampled with replacement ``n_resamples`` times; in each resample the AP
    of every class is computed as :func:`~audioset_data.evaluation.metrics.class_metrics`
    would on the resampled rows, classes without a positive or a negative in that resample are
    left out of its mean, and the interval is the ``(1 ± confidence) / 2`` quantiles of the
    resampled means (the percentile interval; see :attr:`BootstrapResult.bias` for why it
    can lie above the estimate when many classes are averaged).

    Parameters
    ----------
    y_true, y_score, known
        As for :func:`~audioset_data.evaluation.metrics.class_metrics` (truth first; the older
        keyword names ``targets``/``scores`` are still accepted).
    n_resamples : int
        Number of resamples (≥ 1).
    seed : int
        Seed of :func:`numpy.random.default_rng`; the same seed gives the same samples.
    confidence : float
        Coverage of the interval, in (0, 1).

    Raises
    ------
    EvaluationError
        Bad inputs (see ``class_metrics``), ``n_resamples < 1`` or ``confidence`` outside (0, 1).
    """
    if int(n_resamples) != n_resamples or n_resamples < 1:
        raise EvaluationError(f"n_resamples must be a positive integer; got {n_resamples!r}")
    if not 0.0 < confidence < 1.0:
        raise EvaluationError(f"confidence must be in (0, 1); got {confidence!r}")
    y_true, y_score = _truth_and_scores(y_true, y_score, targets, scores, "bootstrap_map")
    y, s, k = _validate(y_true, y_score, known)
    n, c = y.shape
    estimate = class_metrics(y_true=y, y_score=s, known=k).mean_ap
    s_all, s_pos, offsets, group_col = _buckets(y, s, k)
    last = offsets[1:] - 1
    has_group = np.diff(offsets) > 0
    kf = k.astype(np.float32) if k is not None else None

    rng = np.random.default_rng(seed)
    samples = np.empty(int(n_resamples))
    done = 0
    while done < n_resamples:
        r = min(_CHUNK, int(n_resamples) - done)
        draws = rng.integers(0, n, size=(_CHUNK, n))[:r]
        w = np.bincount((np.arange(r)[:, None] * n + draws).ravel(),
                        minlength=r * n).reshape(r, n).astype(np.float32)
        wt = np.ascontiguousarray(w.T)
        above = (s_all @ wt).T  # (r, groups): weight of the clips in each bucket
        d_tp = (s_pos @ wt).T  # weight of the positives of each group
        cum_all = _segment_cumsum(above, offsets)
        cum_tp = _segment_cumsum(d_tp, offsets)
        with np.errstate(divide="ignore", invalid="ignore"):
            contrib = np.where(cum_all > 0, d_tp * cum_tp / cum_all, 0.0)
        ap_sum = np.zeros((r, c))
        n_pos = np.zeros((r, c))
        if group_col.size:
            ap_sum[:, has_group] = np.add.reduceat(contrib, offsets[:-1][has_group], axis=1)
            n_pos[:, has_group] = cum_tp[:, last[has_group]]
        weight = (w @ kf).astype(np.float64) if kf is not None else np.full((r, c), float(n))
        n_neg = weight - n_pos
        defined = (n_pos > 0) & (n_neg > 0)
        with np.errstate(divide="ignore", invalid="ignore"):
            ap = np.where(defined, ap_sum / n_pos, 0.0)
        count = defined.sum(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            samples[done:done + r] = np.where(count > 0, ap.sum(axis=1) / count, np.nan)
        done += r

    alpha = (1.0 - confidence) / 2.0
    ok = samples[np.isfinite(samples)]
    if ok.size:
        low, high = (float(q) for q in np.quantile(ok, [alpha, 1.0 - alpha]))
    else:
        low = high = float("nan")
    return BootstrapResult(estimate=float(estimate), low=low, high=high, samples=samples,
                           confidence=float(confidence))


__all__ = ["BootstrapResult", "bootstrap_map"]
