"""Per-class ranking metrics of a multi-label tagger: AP, ROC AUC, d-prime and EER.

Each column's scores are sorted once, a block of columns at a time (``np.sort`` on the
transposed block: a values-only sort, several times faster than ``argsort``). The labels are
not carried through the sort: positives are few, so each positive's place is found by binary
search, which gives the counts of all pairs and of positives scoring above it and tied with it.
AP, AUC and the EER follow from those counts at the end of each tie group. The results equal
scikit-learn's ``average_precision_score`` (the step sum, no interpolation) and
``roc_auc_score`` (ties count one half, the trapezoid of the ROC curve), to rounding.

A class is *undefined* when it has no positive or no negative (among the known pairs): its
metrics are NaN, it is left out of every average and counted in
:attr:`ClassMetrics.n_undefined`. (scikit-learn reports AP 0 with a warning and torchmetrics an
AUROC of 0 for such classes; both move the average.)

The optional ``known`` mask marks the (clip, class) pairs whose truth is known; the others are
dropped from that class's computation rather than counted negative, which is what frame-level or
partially annotated evaluation needs.

A class's d-prime is ``sqrt(2)·Φ⁻¹(AUC)``, with the AUC kept half a pair from 0 and 1 (within
``[1/(2PN), 1 - 1/(2PN)]`` for P positives and N negatives; the usual correction for hit rates
of 0 or 1 in signal detection): a class ranked perfectly on a small evaluation set gets a large
finite d-prime that grows with the evidence, not ``inf``, so the mean of the per-class
d-primes is defined (``inf`` and ``-inf`` classes made it NaN, with a NumPy warning).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
from scipy.special import ndtri

from audioset_data.errors import EvaluationError

# Pairs per block of columns: the work arrays stay at a few MiB, which the allocator reuses
# from block to block (larger ones are mapped and unmapped afresh, page faults and all).
_BLOCK_ELEMENTS = 1 << 20

ArrayLike = Any


def dprime(auc: ArrayLike) -> np.ndarray:
    """d-prime of ROC AUC values: ``sqrt(2) * Φ⁻¹(auc)``.

    An AUC of 1 gives ``inf``, 0 gives ``-inf``, NaN stays NaN.

    Examples
    --------
    >>> float(dprime(0.5))
    0.0
    >>> round(float(dprime(0.9)), 4)
    1.8124
    """
    return np.sqrt(2.0) * ndtri(np.asarray(auc, dtype=np.float64))


def _nanmean(values: np.ndarray, mask: np.ndarray) -> float:
    if not mask.any():
        return float("nan")
    return float(np.mean(values[mask]))


@dataclass(frozen=True)
class ClassMetrics:
    """Per-class metrics and their averages.

    Attributes
    ----------
    ap, auc, dprime, eer : numpy.ndarray of float64, shape (C,)
        Average precision, ROC AUC, ``sqrt(2)·Φ⁻¹(auc)`` (the AUC kept half a pair from 0 and
        1, so always finite) and equal error rate; NaN where the class is undefined.
    n_pos, n_neg : numpy.ndarray of int64, shape (C,)
        Positives and negatives of each class among the known pairs.
    defined : numpy.ndarray of bool, shape (C,)
        At least one positive and one negative.
    """

    ap: np.ndarray
    auc: np.ndarray
    dprime: np.ndarray
    eer: np.ndarray
    n_pos: np.ndarray
    n_neg: np.ndarray
    defined: np.ndarray

    @property
    def n_classes(self) -> int:
        """Number of classes (columns)."""
        return int(self.ap.shape[0])

    @property
    def n_undefined(self) -> int:
        """Classes without a positive or without a negative (left out of the averages)."""
        return int((~self.defined).sum())

    @property
    def mean_ap(self) -> float:
        """Macro mean AP over the defined classes (the "mAP" of AudioSet papers)."""
        return _nanmean(self.ap, self.defined)

    @property
    def mean_auc(self) -> float:
        """Macro mean ROC AUC over the defined classes."""
        return _nanmean(self.auc, self.defined)

    @property
    def dprime_of_mean_auc(self) -> float:
        """``sqrt(2)·Φ⁻¹(mean_auc)``: the d-prime reported by AST and PANNs."""
        return float(dprime(self.mean_auc))

    @property
    def mean_dprime(self) -> float:
        """Mean of the per-class d-primes (finite: see the module's note on AUCs of 0 and 1)."""
        return _nanmean(self.dprime, self.defined)

    @property
    def mean_eer(self) -> float:
        """Macro mean equal error rate over the defined classes."""
        return _nanmean(self.eer, self.defined)

    def _weighted(self, values: np.ndarray, prior: ArrayLike | None) -> float:
        if prior is None:
            w = self.n_pos.astype(np.float64)
        else:
            w = np.asarray(prior, dtype=np.float64)
            if w.shape != values.shape:
                raise EvaluationError(
                    f"prior has shape {w.shape}; expected ({self.n_classes},), one weight "
                    "per class")
            if not np.all(np.isfinite(w)) or np.any(w < 0):
                raise EvaluationError("prior must be finite and non-negative")
        w = np.where(self.defined, w, 0.0)
        total = w.sum()
        if total <= 0:
            return float("nan")
        return float(np.dot(np.where(self.defined, values, 0.0), w) / total)

    def weighted_ap(self, prior: ArrayLike | None = None) -> float:
        """AP averaged with class weights ``prior`` over the defined classes.

        Parameters
        ----------
        prior : array_like of shape (C,), optional
            Non-negative weight per class, e.g. the class priors of a training set. Default:
            the number of positives of each class in these targets.
        """
        return self._weighted(self.ap, prior)

    def weighted_auc(self, prior: ArrayLike | None = None) -> float:
        """ROC AUC averaged with class weights ``prior`` (see :meth:`weighted_ap`)."""
        return self._weighted(self.auc, prior)

    def summary(self) -> dict[str, float | int]:
        """The averages as a plain dict (for reports and JSON)."""
        return {
            "mean_ap": self.mean_ap,
            "mean_auc": self.mean_auc,
            "dprime_of_mean_auc": self.dprime_of_mean_auc,
            "mean_dprime": self.mean_dprime,
            "mean_eer": self.mean_eer,
            "n_classes": self.n_classes,
            "n_undefined": self.n_undefined,
        }


# ---------------------------------------------------------------------------------------------
# validation


def _as_bool_matrix(x: ArrayLike, name: str) -> np.ndarray:
    """Dense 2-D bool array of a dense or sparse bool/0-1 integer input."""
    if sp.issparse(x):
        dtype = x.dtype
        if x.ndim != 2:
            raise EvaluationError(f"{name} must be 2-D (clips × classes); got {x.ndim}-D")
        if dtype != np.bool_ and not np.issubdtype(dtype, np.integer):
            raise EvaluationError(f"{name} must be boolean (or 0/1 integers); got dtype {dtype}")
        dense = x.toarray()
    else:
        dense = np.asarray(x)
        if dense.ndim != 2:
            raise EvaluationError(
                f"{name} must be 2-D (clips × classes); got shape {dense.shape}")
        if dense.dtype != np.bool_ and not np.issubdtype(dense.dtype, np.integer):
            raise EvaluationError(
                f"{name} must be boolean (or 0/1 integers); got dtype {dense.dtype}; convert "
                "probabilities with a threshold first")
    if dense.dtype != np.bool_:
        if dense.size and (dense.min() < 0 or dense.max() > 1):
            raise EvaluationError(f"{name} holds values other than 0 and 1")
        dense = dense.astype(np.bool_)
    return dense


def _as_scores(x: ArrayLike, name: str = "scores") -> np.ndarray:
    if sp.issparse(x):
        x = x.toarray()
    a = np.asarray(x)
    if a.ndim != 2:
        raise EvaluationError(f"{name} must be 2-D (clips × classes); got shape {a.shape}")
    if a.dtype == np.bool_ or not (np.issubdtype(a.dtype, np.floating)
                                   or np.issubdtype(a.dtype, np.integer)):
        raise EvaluationError(f"{name} must be real numbers; got dtype {a.dtype}")
    if a.dtype not in (np.float32, np.float64):
        a = a.astype(np.float64)  # float32 is kept: sorting it is exact and twice as fast
    # min/max propagate NaN and show inf without an (n, C) temporary
    if a.size and not (np.isfinite(a.min()) and np.isfinite(a.max())):
        bad = np.argwhere(~np.isfinite(a))[0]
        raise EvaluationError(
            f"{name} must be finite; {name}[{bad[0]}, {bad[1]}] is {a[bad[0], bad[1]]}")
    return a


def _truth_and_scores(y_true: ArrayLike | None, y_score: ArrayLike | None,
                      targets: ArrayLike | None, scores: ArrayLike | None,
                      where: str) -> tuple[ArrayLike, ArrayLike]:
    """The two arrays of a call given as ``y_true``/``y_score`` (scikit-learn's names, truth
    first, the order of every function of the harness) or by their older keyword names
    ``targets``/``scores``."""
    if targets is not None:
        if y_true is not None:
            raise EvaluationError(f"{where}: give y_true or targets, not both")
        y_true = targets
    if scores is not None:
        if y_score is not None:
            raise EvaluationError(f"{where}: give y_score or scores, not both")
        y_score = scores
    if y_true is None or y_score is None:
        raise EvaluationError(f"{where} needs y_true (the targets, clips × labels) and y_score "
                              "(the scores, the same shape)")
    return y_true, y_score


def _validate(targets: ArrayLike, scores: ArrayLike, known: ArrayLike | None
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    y = _as_bool_matrix(targets, "targets")
    s = _as_scores(scores)
    if y.shape != s.shape:
        raise EvaluationError(f"targets have shape {y.shape} but scores {s.shape}")
    if y.shape[0] == 0 or y.shape[1] == 0:
        raise EvaluationError(f"nothing to evaluate: shape {y.shape}")
    k = None
    if known is not None:
        k = _as_bool_matrix(known, "known")
        if k.shape != y.shape:
            raise EvaluationError(f"known has shape {k.shape} but targets {y.shape}")
    return y, s, k


# ---------------------------------------------------------------------------------------------
# the kernel


@dataclass
class _Block:
    """One block of columns (classes × clips): scores sorted, and the known positives.

    ``desc`` holds the negated scores sorted ascending (so descending scores), unknown pairs
    as NaN at the end of each row; ``n_known`` is the number of valid entries of each row.
    ``pos_val`` lists the negated scores of the known positives row by row, ``pos_off`` the
    start of each row's run.
    """

    desc: np.ndarray
    n_known: np.ndarray
    pos_val: np.ndarray
    pos_off: np.ndarray


def _positives(y: np.ndarray, k: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """(class, clip) of every known positive, sorted by class."""
    clip, cls = np.nonzero(y if k is None else y & k)
    order = np.argsort(cls, kind="stable")
    return cls[order], clip[order]


def _make_block(s: np.ndarray, kt: np.ndarray | None, pos_cls: np.ndarray,
                pos_clip: np.ndarray, cols: slice) -> _Block:
    neg = np.negative(s[:, cols].T, order="C")  # transposed: one class per row
    if kt is not None:
        kb = kt[cols]
        neg[~kb] = np.nan
        n_known = kb.sum(axis=1)
    else:
        n_known = np.full(neg.shape[0], neg.shape[1], dtype=np.int64)
    lo, hi = np.searchsorted(pos_cls, [cols.start, cols.stop])
    pos_row = pos_cls[lo:hi] - cols.start
    pos_val = neg[pos_row, pos_clip[lo:hi]]
    # np.sort is far faster than argsort (SIMD); ties and labels are recovered by searching.
    neg.sort(axis=1)
    pos_off = np.searchsorted(pos_row, np.arange(neg.shape[0] + 1))
    return _Block(neg, n_known, pos_val, pos_off)


def _block_metrics(b: _Block) -> tuple[np.ndarray, ...]:
    n_rows = b.desc.shape[0]
    n_pos = np.diff(b.pos_off).astype(np.float64)
    n_known = b.n_known.astype(np.float64)
    n_neg = n_known - n_pos
    ap = np.full(n_rows, np.nan)
    auc = np.full(n_rows, np.nan)
    eer = np.full(n_rows, np.nan)
    for r in range(n_rows):
        lo, hi = b.pos_off[r], b.pos_off[r + 1]
        p, k = hi - lo, int(b.n_known[r])
        if p == 0 or p == k:
            continue
        v = b.pos_val[lo:hi]
        row = b.desc[r, :k]
        ge = np.searchsorted(row, v, side="right")  # known pairs scoring >= the positive
        gt = np.searchsorted(row, v, side="left")  # known pairs scoring > the positive
        pv = np.sort(v)
        pge = np.searchsorted(pv, v, side="right")  # the same among the positives
        pgt = np.searchsorted(pv, v, side="left")
        # AP: every positive adds the precision at the end of its tie group (the step sum).
        ap[r] = np.sum(pge / ge) / p
        # AUC: negatives below each positive, ties one half (Mann-Whitney U).
        below = np.sum((k - ge) - (p - pge)) + 0.5 * np.sum((ge - gt) - (pge - pgt))
        auc[r] = below / (p * (k - p))
        eer[r] = _eer(row, pv, p, k - p)
    return ap, auc, eer, n_pos, n_neg


def _eer(row: np.ndarray, pv: np.ndarray, p: int, n: int) -> float:
    """EER of one class from its sorted (negated) scores ``row`` and positives ``pv``.

    The DET points are the ends of the tie groups (highest threshold first). Along them
    ``h = FPR + TPR - 1 = FPR - FNR`` strictly increases (each group adds a negative or a
    positive), so the smallest ``|FPR - FNR|`` is at the last point with ``h < 0`` or the first
    with ``h >= 0``. Those are found by searching: the first positive group with ``h >= 0``,
    then among the negative-only groups before it the one where ``h`` crosses zero. On equal
    gaps the higher threshold wins; the EER reported is ``(FPR + FNR) / 2`` there.
    """
    u = np.unique(pv)  # distinct positive scores, highest first (negated, ascending)
    tp_g = np.searchsorted(pv, u, side="right")
    end_g = np.searchsorted(row, u, side="right")
    start_g = np.searchsorted(row, u, side="left")
    h_g = (end_g - tp_g) / n + tp_g / p - 1.0
    g = int(np.argmax(h_g >= 0))  # exists: the last group has h = (end - p) / n >= 0
    cand_cnt = [int(end_g[g])]
    cand_tp = [int(tp_g[g])]
    t_prev = int(tp_g[g - 1]) if g > 0 else 0
    lo_cnt = int(end_g[g - 1]) if g > 0 else 0
    if g > 0:
        cand_cnt.append(lo_cnt)
        cand_tp.append(t_prev)
    hi_cnt = int(start_g[g])
    if hi_cnt > lo_cnt:  # negative-only groups between the two positive groups
        target = t_prev + n * (1.0 - t_prev / p)  # count where h would be 0
        pos = min(max(int(np.ceil(target)) - 1, lo_cnt), hi_cnt - 1)
        e1 = int(np.searchsorted(row, row[pos], side="right"))
        e0 = int(np.searchsorted(row, row[pos], side="left"))
        cand_cnt.append(e1)
        cand_tp.append(t_prev)
        if e0 > lo_cnt:
            cand_cnt.append(e0)
            cand_tp.append(t_prev)
    cnt = np.array(cand_cnt, dtype=np.int64)
    tp = np.array(cand_tp, dtype=np.int64)
    order = np.argsort(cnt, kind="stable")
    cnt, tp = cnt[order], tp[order]
    # |FPR - FNR| * n * p in integers, so equal gaps compare equal (no rounding).
    gap = np.abs((cnt - tp) * p - (p - tp) * n)
    i = int(np.argmin(gap))
    return 0.5 * ((cnt[i] - tp[i]) / n + (p - tp[i]) / p)


def _blocks(n: int, c: int) -> list[slice]:
    width = max(1, min(c, _BLOCK_ELEMENTS // max(n, 1)))
    return [slice(i, min(i + width, c)) for i in range(0, c, width)]


def class_metrics(y_true: ArrayLike | None = None, y_score: ArrayLike | None = None, *,
                  known: ArrayLike | None = None, targets: ArrayLike | None = None,
                  scores: ArrayLike | None = None) -> ClassMetrics:
    """AP, ROC AUC, d-prime and EER of every class.

    Parameters
    ----------
    y_true : array_like or scipy sparse, shape (n, C)
        True labels, boolean (or 0/1 integers). Truth first, as in scikit-learn and every
        function of the harness (pass both by keyword to leave no doubt); ``targets=`` is
        the older name and still accepted.
    y_score : array_like, shape (n, C)
        Finite real scores (probabilities or logits); higher means more likely positive
        (``scores=`` still accepted).
    known : array_like or scipy sparse of bool, shape (n, C), optional
        Pairs whose truth is known; the others are left out of their class's computation.

    Returns
    -------
    ClassMetrics

    Raises
    ------
    EvaluationError
        Shapes differ or are not 2-D, targets are not boolean, scores are not finite.

    Notes
    -----
    * AP is ``Σ_k (R_k - R_{k-1}) P_k`` over the distinct thresholds (scikit-learn's
      ``average_precision_score``, no interpolation).
    * AUC is the trapezoid of the ROC curve over the distinct thresholds, so tied positive /
      negative pairs count one half (scikit-learn's ``roc_auc_score``).
    * EER: at each distinct threshold the DET point (FPR, FNR) is taken; the point with the
      smallest ``|FPR - FNR|`` is chosen (compared exactly, as integers), the highest
      threshold among equal gaps, and the reported EER is ``(FPR + FNR) / 2`` there.
    * A class without positives or without negatives is NaN in every metric.

    Examples
    --------
    >>> m = class_metrics(y_true=[[1, 0], [0, 1], [1, 0]],
    ...                   y_score=[[0.9, 0.2], [0.4, 0.1], [0.3, 0.8]])
    >>> m.ap.round(4).tolist(), m.auc.tolist()
    ([0.8333, 0.3333], [0.5, 0.0])
    """
    y_true, y_score = _truth_and_scores(y_true, y_score, targets, scores, "class_metrics")
    y, s, k = _validate(y_true, y_score, known)
    n, c = y.shape
    ap = np.empty(c)
    auc = np.empty(c)
    eer = np.empty(c)
    n_pos = np.empty(c)
    n_neg = np.empty(c)
    kt = None if k is None else np.ascontiguousarray(k.T)
    pos_cls, pos_clip = _positives(y, k)
    for cols in _blocks(n, c):
        b = _make_block(s, kt, pos_cls, pos_clip, cols)
        ap[cols], auc[cols], eer[cols], n_pos[cols], n_neg[cols] = _block_metrics(b)
    defined = (n_pos > 0) & (n_neg > 0)
    for arr in (ap, auc, eer):
        arr[~defined] = np.nan
    return ClassMetrics(ap=ap, auc=auc, dprime=dprime(_bounded_auc(auc, n_pos, n_neg)),
                        eer=eer,
                        n_pos=n_pos.astype(np.int64), n_neg=n_neg.astype(np.int64),
                        defined=defined)


def _bounded_auc(auc: np.ndarray, n_pos: np.ndarray, n_neg: np.ndarray) -> np.ndarray:
    """The AUC kept half a pair (``1 / (2 P N)``) from 0 and 1, where d-prime is infinite."""
    with np.errstate(divide="ignore", invalid="ignore"):
        half = 0.5 / (n_pos * n_neg)
    return np.where(np.isfinite(half), np.clip(auc, half, 1.0 - half), auc)


def micro_average_precision(y_true: ArrayLike | None = None, y_score: ArrayLike | None = None,
                            *, known: ArrayLike | None = None,
                            targets: ArrayLike | None = None,
                            scores: ArrayLike | None = None) -> float:
    """AP of all (clip, class) pairs pooled into one ranking (the "micro" average).

    ``y_true``, ``y_score`` and ``known`` as for :func:`class_metrics`. Unknown pairs
    (``known`` False) are left out. NaN when the pooled pairs have no positive or no negative.
    """
    y_true, y_score = _truth_and_scores(y_true, y_score, targets, scores,
                                        "micro_average_precision")
    y, s, k = _validate(y_true, y_score, known)
    if k is not None:
        y, s = y[k], s[k]
        if y.size == 0:
            return float("nan")
    y = y.reshape(-1, 1)
    s = s.reshape(-1, 1)
    pos_cls, pos_clip = _positives(y, None)
    b = _make_block(s, None, pos_cls, pos_clip, slice(0, 1))
    ap, _, _, n_pos, n_neg = _block_metrics(b)
    if n_pos[0] == 0 or n_neg[0] == 0:
        return float("nan")
    return float(ap[0])


__all__ = ["ClassMetrics", "class_metrics", "dprime", "micro_average_precision"]
