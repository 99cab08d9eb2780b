"""Pool frame-level scores into clip-level scores (mean, max or linear softmax).

Frames are grouped by a clip index; the frames of one clip need not be contiguous. The frames
are sorted once by clip (stable), then every clip is reduced with one ``reduceat`` call.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from audioset_data.errors import EvaluationError

from .metrics import ArrayLike

PoolMethod = Literal["mean", "max", "linear_softmax"]
POOL_METHODS: tuple[str, ...] = ("mean", "max", "linear_softmax")


def frames_to_clips(frame_scores: ArrayLike, clip_index: ArrayLike,
                    method: PoolMethod = "mean") -> tuple[np.ndarray, np.ndarray]:
    """Pool the scores of frames into one score per clip and class.

    Parameters
    ----------
    frame_scores : array_like, shape (F, C)
        Finite scores of each frame.
    clip_index : array_like, shape (F,)
        Clip of each frame (ids of any sortable type: YouTube ids, integers).
    method : {"mean", "max", "linear_softmax"}
        ``"mean"`` and ``"max"`` over the clip's frames; ``"linear_softmax"`` is
        ``Σ p² / Σ p`` per class (the linear-softmax pooling of Wang et al., 2019, which weighs
        each frame by its own probability); it needs probabilities (≥ 0) and gives 0 where
        every frame of the clip scores 0.

    Returns
    -------
    clips : numpy.ndarray, shape (K,)
        The distinct clip ids, in order of first appearance.
    scores : numpy.ndarray of float64, shape (K, C)
        The pooled scores, row ``i`` for ``clips[i]``.

    Raises
    ------
    EvaluationError
        Shapes do not fit, scores are not finite (or negative for ``linear_softmax``), or the
        method is unknown.

    Examples
    --------
    >>> ids, pooled = frames_to_clips([[0.2], [0.9], [0.4]], ["a", "b", "a"], method="max")
    >>> ids.tolist(), pooled.ravel().tolist()
    (['a', 'b'], [0.4, 0.9])
    """
    if method not in POOL_METHODS:
        raise EvaluationError(f"unknown pooling method {method!r}; use one of {POOL_METHODS}")
    x = np.asarray(frame_scores)
    if x.ndim != 2:
        raise EvaluationError(f"frame_scores must be 2-D (frames × classes); got shape {x.shape}")
    if x.dtype == np.bool_ or not (np.issubdtype(x.dtype, np.floating)
                                   or np.issubdtype(x.dtype, np.integer)):
        raise EvaluationError(f"frame_scores must be real numbers; got dtype {x.dtype}")
    x = x.astype(np.float64, copy=False)
    ids = np.asarray(clip_index)
    if ids.ndim != 1 or ids.shape[0] != x.shape[0]:
        raise EvaluationError(
            f"clip_index must be 1-D with one entry per frame ({x.shape[0]}); got shape "
            f"{ids.shape}")
    if x.shape[0] == 0:
        raise EvaluationError("no frames to pool")
    if not np.all(np.isfinite(x)):
        raise EvaluationError("frame_scores must be finite (no NaN or inf)")
    if method == "linear_softmax" and np.any(x < 0):
        raise EvaluationError("linear_softmax pools probabilities; frame_scores has negatives")

    uniq, first, inverse = np.unique(ids, return_index=True, return_inverse=True)
    appearance = np.argsort(first, kind="stable")
    rank = np.empty_like(appearance)
    rank[appearance] = np.arange(appearance.size)
    clip_of_frame = rank[inverse.ravel()]
    order = np.argsort(clip_of_frame, kind="stable")
    xs = x[order]
    counts = np.bincount(clip_of_frame, minlength=uniq.size)
    starts = np.zeros(uniq.size, dtype=np.int64)
    np.cumsum(counts[:-1], out=starts[1:])

    if method == "mean":
        pooled = np.add.reduceat(xs, starts, axis=0) / counts[:, None]
    elif method == "max":
        pooled = np.maximum.reduceat(xs, starts, axis=0)
    else:
        num = np.add.reduceat(xs * xs, starts, axis=0)
        den = np.add.reduceat(xs, starts, axis=0)
        pooled = np.divide(num, den, out=np.zeros_like(num), where=den > 0)
    return uniq[appearance], pooled


__all__ = ["POOL_METHODS", "PoolMethod", "frames_to_clips"]
