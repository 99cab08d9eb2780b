"""The prior-balanced loss: binary cross-entropy whose positive term is weighted by class rarity.

AudioSet's labels are very unevenly spread (the most common class is on ~55 % of clips, the
rarest on a few dozen). Weighting the positive term of class ``c`` by
``(mean_prior / prior_c) ** beta`` gives rare classes the gradient a class at the mean prior
gets; negatives stay unweighted. ``beta = 0`` is plain binary cross-entropy, ``beta = 1`` full
balancing to the mean prior (about 0.003 on AudioSet).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from audioset_data.errors import ConfigError
from audioset_data.segments.priors import ClassPriors

__all__ = ["PriorBalancedBCE", "positive_weights", "prior_balanced_bce"]


def positive_weights(
    priors: ClassPriors | Sequence[float] | np.ndarray,
    beta: float = 1.0,
    *,
    max_weight: float | None = None,
) -> np.ndarray:
    """Weight of each class's positive term: ``(mean_prior / prior_c) ** beta``.

    ``priors`` is a :class:`~audioset_data.segments.priors.ClassPriors` or a vector of per-class
    priors (fractions of clips). A class no clip carries has no finite weight; it gets the
    largest weight of the classes that occur, so it is treated as the rarest one. ``max_weight``
    caps the weights (a class seen in 3 clips of 2 M gets ~2,000 at ``beta = 1``).

    Examples
    --------
    >>> positive_weights([0.5, 0.05, 0.0, 0.01], beta=1.0).round(3).tolist()
    [0.28, 2.8, 14.0, 14.0]
    >>> positive_weights([0.5, 0.05, 0.01], beta=0.0).tolist()
    [1.0, 1.0, 1.0]
    """
    p = priors.priors if isinstance(priors, ClassPriors) else np.asarray(priors, dtype=float)
    p = np.asarray(p, dtype=np.float64).ravel()
    if not np.isfinite(beta) or beta < 0:
        raise ConfigError(f"beta={beta!r} must be a finite number >= 0")
    if max_weight is not None and not max_weight > 0:
        raise ConfigError(f"max_weight={max_weight!r} must be positive")
    if p.size == 0 or not np.isfinite(p).all() or (p < 0).any() or (p > 1).any():
        raise ConfigError("priors must be a non-empty vector of fractions in [0, 1]")
    present = p > 0
    if not present.any():
        raise ConfigError("priors are all zero: no class occurs, nothing to balance against")
    mean = p.mean()
    w = np.ones_like(p)
    w[present] = (mean / p[present]) ** beta
    w[~present] = w[present].max()
    if max_weight is not None:
        w = np.minimum(w, max_weight)
    return w


def prior_balanced_bce(
    logits: torch.Tensor,
    targets: torch.Tensor,
    pos_weight: torch.Tensor | None = None,
    *,
    mask: torch.Tensor | None = None,
    reduction: str = "mean",
) -> torch.Tensor:
    """Binary cross-entropy on logits with the positive term of class ``c`` times
    ``pos_weight[c]``.

    ``targets`` may be soft (mixup). ``mask`` (broadcastable to ``logits``, bool or 0/1) keeps
    only the entries where the answer is known, e.g. frame targets from strong labels; with
    ``reduction="mean"`` the loss is averaged over the kept entries.
    """
    if logits.shape != targets.shape:
        raise ConfigError(f"logits {tuple(logits.shape)} and targets "
                          f"{tuple(targets.shape)} differ in shape")
    if reduction not in ("mean", "sum", "none"):
        raise ConfigError(f"reduction={reduction!r}: use 'mean', 'sum' or 'none'")
    targets = targets.to(logits.dtype)
    weight = None
    if mask is not None:
        weight = torch.broadcast_to(mask.to(logits.dtype), logits.shape)
    pw = None if pos_weight is None else pos_weight.to(device=logits.device, dtype=logits.dtype)
    loss = F.binary_cross_entropy_with_logits(logits, targets, weight=weight, pos_weight=pw,
                                              reduction="none")
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    if weight is None:
        return loss.mean()
    return loss.sum() / weight.sum().clamp_min(1.0)


class PriorBalancedBCE(nn.Module):
    """Loss module for multi-label training with class-prior balancing (see the module doc).

    Build it from priors with :meth:`from_priors`; the weights live in a buffer, so they move
    with ``.to(device)`` and are saved in a checkpoint.
    """

    pos_weight: torch.Tensor

    def __init__(self, pos_weight: Sequence[float] | np.ndarray | torch.Tensor,
                 reduction: str = "mean"):
        super().__init__()
        w = torch.as_tensor(np.asarray(pos_weight, dtype=np.float32))
        if w.ndim != 1 or not torch.isfinite(w).all() or (w < 0).any():
            raise ConfigError("pos_weight must be a vector of finite, non-negative weights")
        self.register_buffer("pos_weight", w)
        self.reduction = reduction

    @classmethod
    def from_priors(cls, priors: ClassPriors | Sequence[float] | np.ndarray, beta: float = 1.0,
                    *, max_weight: float | None = None,
                    reduction: str = "mean") -> PriorBalancedBCE:
        """The loss with ``positive_weights(priors, beta, max_weight=...)``."""
        return cls(positive_weights(priors, beta, max_weight=max_weight), reduction=reduction)

    def forward(self, logits: torch.Tensor, targets: torch.Tensor,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        """The loss of ``logits`` (…, classes) against ``targets`` of the same shape."""
        if logits.shape[-1] != len(self.pos_weight):
            raise ConfigError(f"logits have {logits.shape[-1]} classes; the loss was built "
                              f"for {len(self.pos_weight)}")
        return prior_balanced_bce(logits, targets, self.pos_weight, mask=mask,
                                  reduction=self.reduction)

    def extra_repr(self) -> str:
        w = self.pos_weight
        return (f"classes={len(w)}, weight min={float(w.min()):.3g} max={float(w.max()):.3g}, "
                f"reduction={self.reduction!r}")
