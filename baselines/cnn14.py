"""CNN14, the clip-level PANNs network (Kong et al., 2020), on PANNs' log-mel.

Input is a whole clip's log-mel, (batch, frames, 64): 1001 frames for 10 s at 32 kHz with hop
320. What follows PANNs because it changes results:

* a batch norm over the 64 mel bins first (each bin standardised on its own);
* six conv blocks (two 3 x 3 conv -> BN -> ReLU each), 64 -> 2048 channels; the first five
  end in 2 x 2 average pooling, the sixth pools nothing (PANNs' ``pool_size=(1, 1)``), so time
  is downsampled 32x and the 64 bins 32x;
* dropout 0.2 after every block and 0.5 before the 2048-unit ``fc1``; none between ``fc1``
  and the logits (PANNs drops out only the embedding it returns, never the classifier's
  input, so ``forward`` feeds ``fc_audioset`` the undropped ``fc1`` output);
* global pooling: mean over frequency, then max plus mean over time;
* Xavier-uniform conv and linear weights, zero biases, unit batch-norm scales.

Layer names follow PANNs (``bn0``, ``conv_block1.conv1``, ``fc1``, ``fc_audioset``), so a
state dict from their code loads once its log-mel extractor and SpecAugment entries are
dropped. The log-mel front end and augmentation (SpecAugment, mixup) live in the loaders, not
in the model.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from audioset_data.errors import ConfigError

MEL_BINS = 64
CHANNELS = (64, 128, 256, 512, 1024, 2048)
TIME_STRIDE = 32  # five 2x2 poolings
BLOCK_DROPOUT = 0.2
HEAD_DROPOUT = 0.5


def _init_layer(layer: nn.Conv2d | nn.Linear) -> None:
    nn.init.xavier_uniform_(layer.weight)
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)


def _init_bn(bn: nn.BatchNorm2d) -> None:
    nn.init.ones_(bn.weight)
    nn.init.zeros_(bn.bias)


class ConvBlock(nn.Module):
    """Two 3 x 3 conv -> BN -> ReLU, then average pooling of ``pool`` (if any)."""

    def __init__(self, in_ch: int, out_ch: int, pool: tuple[int, int]) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=False)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.pool = pool
        for layer in (self.conv1, self.conv2):
            _init_layer(layer)
        for bn in (self.bn1, self.bn2):
            _init_bn(bn)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu_(self.bn1(self.conv1(x)))
        x = F.relu_(self.bn2(self.conv2(x)))
        if self.pool != (1, 1):
            x = F.avg_pool2d(x, kernel_size=self.pool)
        return x


class Cnn14(nn.Module):
    """PANNs' CNN14: clip log-mel (batch, frames, 64) -> logits and a 2048-d embedding.

    Parameters
    ----------
    n_classes : int
        Number of logits (527 for AudioSet).
    mel_bins : int
        Mel bins of the input (64 in PANNs); at least 32.
    """

    frontend: ClassVar[str] = "panns"
    embedding_dim: int = 2048
    min_frames: ClassVar[int] = TIME_STRIDE

    def __init__(self, n_classes: int = 527, mel_bins: int = MEL_BINS) -> None:
        super().__init__()
        if n_classes < 1:
            raise ConfigError(f"Cnn14: n_classes must be >= 1; got {n_classes}")
        if mel_bins < 32:
            raise ConfigError(f"Cnn14: mel_bins must be >= 32 (five 2x2 poolings); got {mel_bins}")
        self.mel_bins = mel_bins
        self.input_shape: tuple[int | None, ...] = (None, None, mel_bins)
        self.bn0 = nn.BatchNorm2d(mel_bins)
        _init_bn(self.bn0)
        in_ch = 1
        for i, out_ch in enumerate(CHANNELS, start=1):
            pool = (2, 2) if i < len(CHANNELS) else (1, 1)
            self.add_module(f"conv_block{i}", ConvBlock(in_ch, out_ch, pool))
            in_ch = out_ch
        self.fc1 = nn.Linear(in_ch, self.embedding_dim)
        self.fc_audioset = nn.Linear(self.embedding_dim, n_classes)
        _init_layer(self.fc1)
        _init_layer(self.fc_audioset)
        self.n_classes = n_classes

    def _blocks(self) -> list[ConvBlock]:
        return [getattr(self, f"conv_block{i}") for i in range(1, len(CHANNELS) + 1)]

    def embedding(self, x: torch.Tensor) -> torch.Tensor:
        """ReLU of ``fc1`` over the pooled conv features, shape (batch, 2048)."""
        if x.dim() == 4 and x.shape[1] == 1:
            x = x[:, 0]
        if x.dim() != 3 or x.shape[2] != self.mel_bins or x.shape[1] < TIME_STRIDE:
            raise ConfigError(f"Cnn14 expects log-mel of shape (batch, frames >= {TIME_STRIDE}, "
                              f"{self.mel_bins}); got {tuple(x.shape)}")
        # batch norm per mel bin: bins become the channel axis for bn0
        x = self.bn0(x.transpose(1, 2).unsqueeze(-1)).squeeze(-1).transpose(1, 2)
        x = x.unsqueeze(1)
        if self.conv_block1.conv1.weight.is_contiguous(memory_format=torch.channels_last):
            x = x.contiguous(memory_format=torch.channels_last)
        for block in self._blocks():
            x = F.dropout(block(x), p=BLOCK_DROPOUT, training=self.training)
        x = x.mean(dim=3)
        x = x.amax(dim=2) + x.mean(dim=2)
        x = F.dropout(x, p=HEAD_DROPOUT, training=self.training)
        return F.relu_(self.fc1(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits, shape (batch, ``n_classes``)."""
        return self.fc_audioset(self.embedding(x))


__all__ = ["Cnn14", "ConvBlock"]
