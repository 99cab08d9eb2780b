"""Clip taggers on the released AudioSet embeddings (128-d per second, up to 10 per clip).

The AudioSet release ships, for every clip, one 128-d VGGish-style embedding per second,
PCA-whitened and quantised to 8 bits. Dequantise with ``q * 4 / 255 - 2`` (range [-2, 2]) and
feed the models a float tensor ``x`` of shape (batch, T, 128) with a boolean ``mask`` of shape
(batch, T) (True = real frame; about 1.7 % of the balanced clips hold fewer than 10 frames and
are padded).

Two models:

* :class:`EmbeddingFC` -- the seed paper's fully connected baseline moved onto the embeddings.
  Hershey et al. (2017) train their fully connected net on the per-second inputs with the
  clip's labels copied to every second, and score a clip by averaging its per-second outputs;
  this class does the same: a per-frame ReLU MLP, then the masked mean of the per-frame logits
  (``forward``). :meth:`EmbeddingFC.frame_logits` gives the per-frame logits for per-frame
  training (clip labels on every real frame).
* :class:`EmbeddingAttention` -- attention pooling after a per-frame MLP, in the two forms of
  Kong et al.: ``pooling="decision"`` (2018: per-class ``cla = sigmoid(W h_t)`` weighted by
  ``att = softmax_t(W' h_t)``; the clip probability is ``sum_t att * cla``) and
  ``pooling="feature"`` (2019: each hidden unit is attention-pooled over time, then a linear
  classifier). ``forward`` always returns LOGITS for ``BCEWithLogitsLoss``; for the decision
  form that is the logit of the clip probability, clamped to ``[eps, 1 - eps]``.

Masked frames never enter a pool; a clip with no real frame yields finite logits (the
decision form gives ``logit(eps)``, the feature form the classifier's bias).

The defaults are the recipe tuned on a stratified 80/20 split of the balanced-train part (see
``benchmarks/embedding_recipe.py`` for the table and the training settings).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch
from torch import nn

from audioset_data.errors import ConfigError

from .fc import NORMS, norm_layer

EMBEDDING_DIM = 128
MAX_FRAMES = 10
POOLINGS = ("decision", "feature")
_NEG = -1e4  # additive mask for the softmax over time (finite: no NaN on empty clips)


def _check(name: str, n_classes: int, hidden: tuple[int, ...], dropout: float,
           norm: str) -> None:
    if n_classes < 1:
        raise ConfigError(f"{name}: n_classes must be >= 1; got {n_classes}")
    if not hidden or min(hidden) < 1:
        raise ConfigError(f"{name}: hidden must be positive widths; got {hidden}")
    if not 0.0 <= dropout < 1.0:
        raise ConfigError(f"{name}: dropout must be in [0, 1); got {dropout}")
    if norm not in NORMS:
        raise ConfigError(f"{name}: unknown norm {norm!r}; use one of {NORMS}")


class ByteDropout(nn.Module):
    """Dropout that draws one random byte per element (kept where the byte is at least
    ``round(256 p)``, scaled by ``256 / (256 - round(256 p))``): ``nn.Dropout`` with ``p`` on a
    1/256 grid, at about half its CPU cost, where drawing a float per element dominates (8 ms
    for the 1,280 x 512 activations of one batch, the embedding models' largest cost after
    the matrix products)."""

    def __init__(self, p: float) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ConfigError(f"ByteDropout: p must be in [0, 1); got {p}")
        self.p = float(p)
        self.threshold = round(256 * self.p)
        self.scale = 256.0 / (256 - self.threshold)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.threshold == 0:
            return x
        draw = torch.empty(x.shape, dtype=torch.uint8, device=x.device).random_()
        return x * (draw >= self.threshold).to(x.dtype).mul_(self.scale)

    def extra_repr(self) -> str:
        return f"p={self.p}"


def _mlp(hidden: tuple[int, ...], dropout: float, norm: str) -> nn.Sequential:
    layers: list[nn.Module] = []
    width = EMBEDDING_DIM
    for h in hidden:
        layers += [nn.Linear(width, h, bias=norm == "none"), norm_layer(norm, h),
                   nn.ReLU(inplace=True)]
        if dropout > 0:
            layers.append(ByteDropout(dropout))
        width = h
    return nn.Sequential(*layers)


class _FrameModel(nn.Module):
    """Shared input checks, input standardisation and the per-frame MLP."""

    frontend: ClassVar[str] = "embeddings"
    input_shape: ClassVar[tuple[int | None, ...]] = (None, MAX_FRAMES, EMBEDDING_DIM)
    #: train under bf16 autocast on CPUs with native bf16 (``precision="auto"``): the same
    #: validation mAP as fp32, in about 0.57 of the time (benchmarks/results/features.md)
    cpu_bf16: ClassVar[bool] = True

    def _setup(self, hidden: tuple[int, ...], dropout: float, norm: str,
               input_norm: bool) -> int:
        # Per-dimension standardisation of the PCA'd inputs, learnt from the batches (no
        # dataset statistics to carry around); affine-free, so it only rescales.
        self.input_norm = (nn.BatchNorm1d(EMBEDDING_DIM, affine=False) if input_norm
                           else nn.Identity())
        self.body = _mlp(hidden, dropout, norm)
        return hidden[-1]

    def _inputs(self, x: torch.Tensor,
                mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        if x.dim() == 2:
            x = x.unsqueeze(1)
        if x.dim() != 3 or x.shape[-1] != EMBEDDING_DIM:
            raise ConfigError(f"{type(self).__name__} expects x of shape (batch, T, "
                              f"{EMBEDDING_DIM}); got {tuple(x.shape)}")
        if mask is None:
            mask = torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
        elif tuple(mask.shape) != tuple(x.shape[:2]):
            raise ConfigError(f"{type(self).__name__}: mask must have shape "
                              f"{tuple(x.shape[:2])}; got {tuple(mask.shape)}")
        return x.float(), mask.to(device=x.device, dtype=torch.bool)

    def _frames(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Per-frame hidden features, shape (batch, T, width); padded frames are zeroed
        before the MLP so they do not disturb the batch-norm statistics much."""
        b, t, d = x.shape
        x = x * mask.unsqueeze(-1)
        h = self.body(self.input_norm(x.reshape(b * t, d)))
        return h.reshape(b, t, -1)


#: The training recipe of both embedding models, tuned on a stratified 80/20 split of the
#: balanced part (docs/features.md): Adam at a constant 1e-3 without weight decay or warm-up
#: (a cosine decay to 0 scored 0.261 held-out mAP against 0.289), batches of 128, 20 passes,
#: uniform sampling and a plain BCE (the balanced part is balanced already), no mixup;
#: evaluated once, at the end.
EMBEDDING_RECIPE: dict[str, object] = {
    "batch_size": 128, "epochs": 20.0, "lr": 1e-3, "weight_decay": 0.0, "warmup": 0.0,
    "schedule": "constant", "sampler": "shuffle", "beta": 0.0, "mixup": 0.0, "eval_every": 0,
}
#: ``embedding-fc``'s: the same with the trainer's warm-up + cosine, with which it was measured
#: (0.270 held-out mAP, ``audioset benchmark --features``).
EMBEDDING_FC_RECIPE: dict[str, object] = {**EMBEDDING_RECIPE, "warmup": 0.05,
                                          "schedule": "cosine"}


class EmbeddingFC(_FrameModel):
    """Per-second MLP on the embeddings; clip logits = masked mean of the frame logits.

    Each hidden layer is Linear -> norm -> ReLU -> dropout. The seed paper trains on the
    per-second inputs with the clip labels; :meth:`frame_logits` exposes the per-frame logits
    for that, while ``forward`` pools them so the model also trains on clip labels directly.

    Parameters
    ----------
    n_classes : int
        Number of logits (527 for AudioSet).
    hidden : sequence of int
        Widths of the hidden layers; the last one is the embedding.
    dropout : float
        Dropout after each hidden ReLU.
    norm : {"batch", "layer", "none"}
        Normalisation after each hidden linear layer.
    input_norm : bool
        Standardise each input dimension with an affine-free batch norm.
    """

    embedding_dim: int
    #: the training settings ``audioset train --model embedding-fc`` starts from
    train_defaults: ClassVar[dict[str, object]] = EMBEDDING_FC_RECIPE

    def __init__(self, n_classes: int = 527, hidden: Sequence[int] = (1024,),
                 dropout: float = 0.5, norm: str = "batch", input_norm: bool = True) -> None:
        super().__init__()
        hidden = tuple(int(h) for h in hidden)
        _check("EmbeddingFC", n_classes, hidden, dropout, norm)
        width = self._setup(hidden, dropout, norm, input_norm)
        self.head = nn.Linear(width, n_classes)
        self.n_classes = n_classes
        self.embedding_dim = width

    def frame_logits(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Per-frame logits, shape (batch, T, ``n_classes``) (padded frames included)."""
        x, mask = self._inputs(x, mask)
        return self.head(self._frames(x, mask))

    def embedding(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Masked mean of the last hidden layer over the real frames, (batch, ``embedding_dim``);
        zeros for a clip with no real frame."""
        x, mask = self._inputs(x, mask)
        m = mask.unsqueeze(-1).to(x.dtype)
        return (self._frames(x, mask) * m).sum(1) / m.sum(1).clamp(min=1.0)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Clip logits, (batch, ``n_classes``): the mean of the real frames' logits (the bias
        for a clip with no real frame)."""
        x, mask = self._inputs(x, mask)
        m = mask.unsqueeze(-1).to(x.dtype)
        z = self.head(self._frames(x, mask)).float()
        pooled = (z * m).sum(1) / m.sum(1).clamp(min=1.0)
        empty = ~mask.any(1, keepdim=True)
        return torch.where(empty, self.head.bias.expand_as(pooled), pooled)


class EmbeddingAttention(_FrameModel):
    """Per-frame MLP, then attention pooling over time (Kong et al. 2018 / 2019).

    Parameters
    ----------
    n_classes : int
        Number of logits (527 for AudioSet).
    hidden : sequence of int
        Widths of the per-frame hidden layers (Linear -> norm -> ReLU -> dropout).
    dropout : float
        Dropout after each hidden ReLU (and before the classifier in the feature form).
    norm : {"batch", "layer", "none"}
        Normalisation after each hidden linear layer.
    pooling : {"decision", "feature"}
        ``"decision"``: per-class attention over per-frame class probabilities (Kong 2018);
        ``"feature"``: per-unit attention over a sigmoid-gated projection of the hidden
        features, then a linear classifier (Kong 2019).
    input_norm : bool
        Standardise each input dimension with an affine-free batch norm.
    eps : float
        Clamp of the clip probability before the logit (decision form only).
    """

    embedding_dim: int
    #: the training settings ``audioset train --model embedding-attention`` starts from
    train_defaults: ClassVar[dict[str, object]] = EMBEDDING_RECIPE

    def __init__(self, n_classes: int = 527, hidden: Sequence[int] = (512, 512, 512),
                 dropout: float = 0.5, norm: str = "batch", pooling: str = "decision",
                 input_norm: bool = True, eps: float = 1e-7) -> None:
        super().__init__()
        hidden = tuple(int(h) for h in hidden)
        _check("EmbeddingAttention", n_classes, hidden, dropout, norm)
        if pooling not in POOLINGS:
            raise ConfigError(f"EmbeddingAttention: unknown pooling {pooling!r}; "
                              f"use one of {POOLINGS}")
        if not 0.0 < eps < 0.5:
            raise ConfigError(f"EmbeddingAttention: eps must be in (0, 0.5); got {eps}")
        width = self._setup(hidden, dropout, norm, input_norm)
        self.pooling = pooling
        self.eps = float(eps)
        self.n_classes = n_classes
        if pooling == "decision":
            self.cla = nn.Linear(width, n_classes)
            self.att = nn.Linear(width, n_classes)
            self.embedding_dim = width
        else:
            self.att = nn.Linear(width, width)
            self.val = nn.Linear(width, width)
            self.drop = ByteDropout(dropout) if dropout > 0 else nn.Identity()
            self.head = nn.Linear(width, n_classes)
            self.embedding_dim = width

    @staticmethod
    def _softmax_time(scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Softmax over the time axis of (batch, T, k) with padded frames excluded; an empty
        clip gets all-zero weights."""
        scores = scores.masked_fill(~mask.unsqueeze(-1), _NEG)
        weights = torch.softmax(scores, dim=1)
        return weights * mask.unsqueeze(-1).to(weights.dtype)

    def _pooled_features(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        weights = self._softmax_time(self.att(h).float(), mask)
        return (weights * torch.sigmoid(self.val(h).float())).sum(1)

    def embedding(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Clip embedding, (batch, ``embedding_dim``): the attention-pooled hidden features
        (feature form) or the masked mean of the last hidden layer (decision form)."""
        x, mask = self._inputs(x, mask)
        h = self._frames(x, mask)
        if self.pooling == "feature":
            return self._pooled_features(h, mask)
        m = mask.unsqueeze(-1).to(h.dtype)
        return (h * m).sum(1) / m.sum(1).clamp(min=1.0)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Clip logits, (batch, ``n_classes``), for ``BCEWithLogitsLoss``."""
        x, mask = self._inputs(x, mask)
        h = self._frames(x, mask)
        if self.pooling == "feature":
            return self.head(self.drop(self._pooled_features(h, mask))).float()
        # the heads may run in bf16 (autocast); the pooling and the logit in float32, where
        # 1 - eps is not 1
        weights = self._softmax_time(self.att(h).float(), mask)
        prob = (weights * torch.sigmoid(self.cla(h).float())).sum(1)
        prob = prob.clamp(self.eps, 1.0 - self.eps)
        return torch.log(prob) - torch.log1p(-prob)


__all__ = ["EmbeddingAttention", "EmbeddingFC"]
