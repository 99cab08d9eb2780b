"""The seed paper's fully connected baseline on 96 x 64 log-mel patches.

Hershey et al. (2017) compare a plain fully connected network with the image CNNs on the same
0.96-s patches; it is the cheap floor every other baseline should beat. The patch (96 frames
by 64 mel bins) is flattened to 6,144 inputs, passes through ReLU layers, and ends in one logit
per class (no sigmoid: the loss applies it).

Two options make it learn from few clips (``train_defaults``, measured in
``benchmarks/results/small_set.md``): ``input_norm`` removes each example's overall level (a
recording's gain says nothing about its class) and standardises every mel band with statistics
of the training batches, kept as buffers so prediction uses them; ``pool`` has the training
loop pool the example logits of a clip (multiple-instance learning) instead of copying the
clip's labels onto every example, most of which hold only the noise around the event.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from torch import nn

from audioset_data.errors import ConfigError

from .pooling import POOLS, pool_clips

PATCH_FRAMES = 96
PATCH_MELS = 64
NORMS = ("batch", "layer", "none")


def norm_layer(kind: str, width: int) -> nn.Module:
    """The normalisation after a hidden linear layer: batch, layer or none."""
    if kind == "batch":
        return nn.BatchNorm1d(width)
    if kind == "layer":
        return nn.LayerNorm(width)
    return nn.Identity()


class FullyConnected(nn.Module):
    """Flattened patch -> ``hidden`` ReLU layers -> logits.

    Each hidden layer is Linear -> norm -> ReLU -> dropout. Batch norm is the default: it
    lets a deep plain stack train at the learning rates the conv nets use, as in the seed
    paper, and it standardises the raw log-mel input scale at the first layer. Layer norm suits
    tiny or uneven batches (per-example statistics, nothing kept in ``eval``).

    Parameters
    ----------
    n_classes : int
        Number of logits (527 for AudioSet).
    hidden : sequence of int
        Widths of the hidden layers; the last one is the embedding.
    dropout : float
        Dropout after each hidden ReLU (0 disables it; the seed paper used none).
    norm : {"batch", "layer", "none"}
        Normalisation after each hidden linear layer.
    pool : {"frame", "mean", "max", "lse", "linsoft", "feature-max", "feature-mean"}
        How a clip's examples make its logits (:mod:`~audioset_data.baselines.pooling`), kept
        as ``clip_pool``: ``"frame"`` trains each example on its clip's labels and scores a
        clip by its mean example probability (the seed's way); the decision poolings pool the
        example logits, the feature poolings the last hidden layer before the classifier.
    input_norm : bool
        Subtract each example's mean log-mel (its level), then standardise each mel band with
        running statistics of the training batches (an affine-free batch norm over bands).
    band_mask : int
        While training, set one stripe of up to this many mel bands to 0 (SpecAugment's fill,
        before the input normalisation, so the stripe stands out as a band-limited sound would),
        the same stripe on every example of a clip: SpecAugment's frequency masking without its
        time masks, which would hide up to half of a 0.96-s example. Draws from torch's global
        generator, as dropout does. 0 disables it.
    """

    frontend: ClassVar[str] = "vggish"
    input_shape: ClassVar[tuple[int | None, ...]] = (None, PATCH_FRAMES, PATCH_MELS)
    #: The training settings ``audioset train --model fc`` starts from (see
    #: :func:`~audioset_data.baselines.models.model_defaults`), measured on the small set of
    #: ``benchmarks/results/small_set.md``: one hidden layer of 256 units, feature max pooling
    #: over the clip's examples, examples starting anywhere in the clip, band masking, level
    #: removal and band standardisation, lr 3e-3, and no loader workers (a small split's epoch
    #: is a few batches, and the workers would restart every epoch). The schedule is the
    #: automatic one: at least 1,000 steps.
    train_defaults: ClassVar[dict[str, Any]] = {
        "hidden": (256,), "pool": "feature-max", "time_shift": True, "band_mask": 8,
        "input_norm": True, "lr": 3e-3, "num_workers": 0}

    def __init__(self, n_classes: int = 527, hidden: Sequence[int] = (1000, 1000, 1000),
                 dropout: float = 0.0, norm: str = "batch", pool: str = "frame",
                 input_norm: bool = False, band_mask: int = 0) -> None:
        super().__init__()
        hidden = tuple(int(h) for h in hidden)
        if n_classes < 1:
            raise ConfigError(f"FullyConnected: n_classes must be >= 1; got {n_classes}")
        if not hidden or min(hidden) < 1:
            raise ConfigError(f"FullyConnected: hidden must be positive widths; got {hidden}")
        if not 0.0 <= dropout < 1.0:
            raise ConfigError(f"FullyConnected: dropout must be in [0, 1); got {dropout}")
        if norm not in NORMS:
            raise ConfigError(f"FullyConnected: unknown norm {norm!r}; use one of {NORMS}")
        if pool not in POOLS:
            raise ConfigError(f"FullyConnected: unknown pool {pool!r}; use one of {POOLS}")
        if not 0 <= int(band_mask) < PATCH_MELS:
            raise ConfigError(f"FullyConnected: band_mask must be in [0, {PATCH_MELS}); got "
                              f"{band_mask}")
        self.clip_pool = pool
        self.input_norm = bool(input_norm)
        self.band_mask = int(band_mask)
        self.bands = nn.BatchNorm1d(PATCH_MELS, affine=False) if input_norm else nn.Identity()
        layers: list[nn.Module] = []
        width = PATCH_FRAMES * PATCH_MELS
        for h in hidden:
            layers += [nn.Linear(width, h, bias=norm == "none"), norm_layer(norm, h),
                       nn.ReLU(inplace=True)]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = h
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(width, n_classes)
        self.n_classes = n_classes
        self.embedding_dim = width

    def _flatten(self, x: torch.Tensor, clip_index: torch.Tensor | None = None) -> torch.Tensor:
        if x.dim() == 4 and x.shape[1] == 1:
            x = x[:, 0]
        if x.dim() != 3 or tuple(x.shape[1:]) != (PATCH_FRAMES, PATCH_MELS):
            raise ConfigError(f"FullyConnected expects patches of shape (batch, {PATCH_FRAMES}, "
                              f"{PATCH_MELS}); got {tuple(x.shape)}")
        if self.training and self.band_mask and len(x):
            x = _mask_bands(x, self.band_mask, clip_index)
        if self.input_norm:
            x = x - x.mean(dim=(1, 2), keepdim=True)
            x = self.bands(x.reshape(-1, PATCH_MELS)).reshape(x.shape)
        return x.reshape(x.shape[0], -1)

    def embedding(self, x: torch.Tensor, clip_index: torch.Tensor | None = None,
                  ) -> torch.Tensor:
        """The last hidden layer's activations, shape (batch, ``embedding_dim``)
        (``clip_index``: the clip of each example, for the band masks while training)."""
        return self.body(self._flatten(x, clip_index))

    def forward(self, x: torch.Tensor, clip_index: torch.Tensor | None = None,
                ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Logits of each example, shape (batch, ``n_classes``); with ``clip_index`` (the clip
        of each example) the ``clip_pool`` pooled ``(clip logits, first example of each
        clip)`` of :func:`~audioset_data.baselines.pooling.pool_clips`."""
        emb = self.embedding(x, clip_index)
        if clip_index is None:
            return self.head(emb)
        if self.clip_pool == "frame":
            raise ConfigError("FullyConnected(pool='frame') scores examples, not clips: call "
                              "it without clip_index")
        if self.clip_pool.startswith("feature-"):
            pooled, first = pool_clips(emb, clip_index, self.clip_pool[len("feature-"):])
            return self.head(pooled), first
        return pool_clips(self.head(emb), clip_index, self.clip_pool)


def _mask_bands(x: torch.Tensor, most: int, clip_index: torch.Tensor | None) -> torch.Tensor:
    """``x`` (examples, frames, bands) with a stripe of 0 to ``most`` bands zeroed, drawn per
    clip of ``clip_index`` (per example without it) from torch's global CPU generator."""
    if clip_index is None:
        group = torch.arange(x.shape[0])
    else:
        group = torch.unique(clip_index.cpu(), return_inverse=True)[1]
    n = int(group.max()) + 1
    width = torch.randint(0, most + 1, (n,))
    start = (torch.rand(n, dtype=torch.float64) * (x.shape[2] - width + 1)).long()
    bands = torch.arange(x.shape[2])[None, :]
    hide = (bands >= start[:, None]) & (bands < (start + width)[:, None])
    return x.masked_fill(hide[group].to(x.device)[:, None, :], 0.0)


__all__ = ["FullyConnected"]
