"""Pooling per clip: how the 0.96-s examples of a frame model make one clip.

AudioSet's labels are weak: an event sits somewhere in the clip's 10 s. Copying the clip's
labels onto every example (``"frame"``) teaches the model that the noise around a 5-s event is
the event, and scoring the clip by the mean example probability dilutes the event by the noise.
Pooling the examples of a clip and training the pooled clip score against the clip's labels
(multiple-instance learning) does neither. Two levels:

* decision pooling of example logits (:func:`pool_clips`: ``mean``, ``max``, ``lse``,
  ``linsoft``);
* feature pooling (``feature-max``, ``feature-mean``): the last hidden layer is pooled over the
  clip's examples and the classifier reads the pooled embedding, so each hidden unit acts as a
  detector whose strongest response anywhere in the clip counts (the fc's default: on the
  small set of ``benchmarks/results/small_set.md`` it is the pooling that beats the linear
  anchor).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from audioset_data.errors import ConfigError

#: Poolings of :func:`pool_clips`.
CLIP_POOLS = ("mean", "max", "lse", "linsoft")
#: Every pooling a frame model may use: ``"frame"`` (none: per-example training), the decision
#: poolings of :data:`CLIP_POOLS`, and the feature poolings.
POOLS = ("frame", *CLIP_POOLS, "feature-max", "feature-mean")


def _segment_logsumexp(values: torch.Tensor, index: torch.Tensor, n: int) -> torch.Tensor:
    """``log(sum(exp(values)))`` over the rows of each segment ``index`` (n, classes)."""
    idx = index.unsqueeze(1).expand_as(values)
    top = values.new_full((n, values.shape[1]), -math.inf).scatter_reduce(
        0, idx, values, reduce="amax", include_self=True).detach()
    summed = values.new_zeros(n, values.shape[1]).scatter_add(
        0, idx, torch.exp(values - top[index]))
    return torch.log(summed) + top


def pool_clips(logits: torch.Tensor, clip_index: torch.Tensor,
               pool: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Pool example logits into clip logits (``mean`` and ``max`` pool any per-example
    values, e.g. embeddings for the feature poolings).

    Parameters
    ----------
    logits : Tensor, shape (N, classes)
        Logits (or other values) of the examples of several clips.
    clip_index : Tensor of int, shape (N,)
        Clip of each example (any order; clips without examples get no row).
    pool : {"mean", "max", "lse", "linsoft"}
        ``"mean"`` of logits; ``"max"`` (the most confident example, one example gets the
        gradient); ``"lse"`` log-mean-exp (a smooth max); ``"linsoft"``, the linear-softmax
        pooling of Wang et al. (2019), ``sum p_i**2 / sum p_i`` of the example probabilities
        returned as a logit: confident examples dominate, and every example learns.

    Returns
    -------
    (pooled, first) : Tensors of shapes (n_clips, classes) and (n_clips,)
        One row per clip present, in increasing clip number, and the position in ``logits`` of
        each clip's first example (``targets[first]`` are the clip targets when ``targets``
        was repeated per example).

    Examples
    --------
    >>> x = torch.tensor([[0.0], [2.0], [-1.0]])
    >>> pooled, first = pool_clips(x, torch.tensor([0, 0, 1]), "max")
    >>> pooled.flatten().tolist(), first.tolist()
    ([2.0, -1.0], [0, 2])
    """
    if pool not in CLIP_POOLS:
        raise ConfigError(f"unknown clip pooling {pool!r}; use one of {CLIP_POOLS}")
    index = torch.as_tensor(clip_index, device=logits.device).long()
    if index.dim() != 1 or index.shape[0] != logits.shape[0]:
        raise ConfigError(f"clip_index must be 1-D with one entry per example "
                          f"({logits.shape[0]}); got shape {tuple(index.shape)}")
    clips, inverse = torch.unique(index, sorted=True, return_inverse=True)
    n = int(clips.numel())
    positions = torch.arange(index.shape[0], device=index.device)
    first = positions.new_full((n,), index.shape[0]).scatter_reduce(
        0, inverse, positions, reduce="amin", include_self=True)
    x = logits.float()
    if pool == "mean" or pool == "max":
        idx = inverse.unsqueeze(1).expand_as(x)
        pooled = x.new_zeros(n, x.shape[1]).scatter_reduce(
            0, idx, x, reduce="mean" if pool == "mean" else "amax", include_self=False)
    elif pool == "lse":
        counts = torch.bincount(inverse, minlength=n).to(x.dtype).unsqueeze(1)
        pooled = _segment_logsumexp(x, inverse, n) - torch.log(counts)
    else:
        # logit(sum p^2 / sum p) = log sum p^2 - log sum p (1 - p), in log space
        log_p, log_q = nn.functional.logsigmoid(x), nn.functional.logsigmoid(-x)
        pooled = (_segment_logsumexp(2 * log_p, inverse, n)
                  - _segment_logsumexp(log_p + log_q, inverse, n))
    return pooled.to(logits.dtype), first


__all__ = ["CLIP_POOLS", "POOLS", "pool_clips"]
