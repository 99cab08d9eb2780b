"""The seed paper's fully connected baseline on 96 x 64 log-mel patches.

Hershey et al. (2017) compare a plain fully connected network with the image CNNs on the same
0.96-s patches; it is the cheap floor every other baseline should beat. The patch (96 frames
by 64 mel bins) is flattened to 6,144 inputs, passes through ReLU layers, and ends in one logit
per class (no sigmoid: the loss applies it).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch
from torch import nn

from audioset_data.errors import ConfigError

PATCH_FRAMES = 96
PATCH_MELS = 64
NORMS = ("batch", "layer", "none")


def _norm(kind: str, width: int) -> nn.Module:
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
    """

    frontend: ClassVar[str] = "vggish"
    input_shape: ClassVar[tuple[int | None, ...]] = (None, PATCH_FRAMES, PATCH_MELS)

    def __init__(self, n_classes: int = 527, hidden: Sequence[int] = (1000, 1000, 1000),
                 dropout: float = 0.0, norm: str = "batch") -> None:
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
        layers: list[nn.Module] = []
        width = PATCH_FRAMES * PATCH_MELS
        for h in hidden:
            layers += [nn.Linear(width, h, bias=norm == "none"), _norm(norm, h),
                       nn.ReLU(inplace=True)]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = h
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(width, n_classes)
        self.n_classes = n_classes
        self.embedding_dim = width

    def _flatten(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 4 and x.shape[1] == 1:
            x = x[:, 0]
        if x.dim() != 3 or tuple(x.shape[1:]) != (PATCH_FRAMES, PATCH_MELS):
            raise ConfigError(f"FullyConnected expects patches of shape (batch, {PATCH_FRAMES}, "
                              f"{PATCH_MELS}); got {tuple(x.shape)}")
        return x.reshape(x.shape[0], -1)

    def embedding(self, x: torch.Tensor) -> torch.Tensor:
        """The last hidden layer's activations, shape (batch, ``embedding_dim``)."""
        return self.body(self._flatten(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits, shape (batch, ``n_classes``)."""
        return self.head(self.embedding(x))


__all__ = ["FullyConnected"]
