"""ResNet-50 on 96 x 64 log-mel patches, the seed paper's strongest patch classifier.

The net is He et al.'s ResNet-50 (bottleneck blocks 3-4-6-3, widths 256 -> 2048, global
average pooling, a 2048-d embedding) with two adaptations to a one-channel 96 x 64 patch
instead of a 224 x 224 RGB image:

* the 7 x 7 stem takes one channel;
* the stem convolution has stride 1 (``stem_stride``), as Hershey et al. (2017) did, so the
  patch is only halved by the stem's max pool: the feature maps are 48 x 32 -> 48 x 32 ->
  24 x 16 -> 12 x 8 -> 6 x 4 across the four stages. With the image stride of 2 the last stage
  would see 3 x 2 cells, too few to pool over; stride 1 costs about 2 GFLOPs a patch, half the
  image net's 4.1.

The last batch norm of each residual branch starts at zero (``zero_init_residual``), so every
block starts as the identity; this is the usual recipe for training from scratch with large
batches (Goyal et al., 2017).
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from audioset_data.errors import ConfigError

PATCH_FRAMES = 96
PATCH_MELS = 64
STAGES = ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2))  # (bottleneck width, blocks, stride)
EXPANSION = 4


class Bottleneck(nn.Module):
    """1x1 reduce -> 3x3 (carries the stride) -> 1x1 expand, plus the shortcut."""

    def __init__(self, in_ch: int, width: int, stride: int) -> None:
        super().__init__()
        out_ch = width * EXPANSION
        self.conv1 = nn.Conv2d(in_ch, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, out_ch, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_ch)
        self.relu = nn.ReLU(inplace=True)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_ch != out_ch:
            self.downsample = nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False),
                                            nn.BatchNorm2d(out_ch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return self.relu(y + shortcut)


class ResNet50(nn.Module):
    """ResNet-50 for one-channel 96 x 64 log-mel patches; logits and a 2048-d embedding.

    Parameters
    ----------
    n_classes : int
        Number of logits (527 for AudioSet).
    stem_stride : int
        Stride of the 7 x 7 stem convolution: 1 for the patch (default), 2 for the image net.
    zero_init_residual : bool
        Start each residual branch's last batch-norm scale at zero.
    """

    frontend: ClassVar[str] = "vggish"
    input_shape: ClassVar[tuple[int | None, ...]] = (None, PATCH_FRAMES, PATCH_MELS)
    embedding_dim: int = 512 * EXPANSION

    def __init__(self, n_classes: int = 527, stem_stride: int = 1,
                 zero_init_residual: bool = True) -> None:
        super().__init__()
        if n_classes < 1:
            raise ConfigError(f"ResNet50: n_classes must be >= 1; got {n_classes}")
        if stem_stride not in (1, 2):
            raise ConfigError(f"ResNet50: stem_stride must be 1 or 2; got {stem_stride}")
        self.conv1 = nn.Conv2d(1, 64, 7, stride=stem_stride, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        in_ch = 64
        stages = []
        for width, blocks, stride in STAGES:
            layer = []
            for b in range(blocks):
                layer.append(Bottleneck(in_ch, width, stride if b == 0 else 1))
                in_ch = width * EXPANSION
            stages.append(nn.Sequential(*layer))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.fc = nn.Linear(in_ch, n_classes)
        self.n_classes = n_classes
        self._init(zero_init_residual)

    def _init(self, zero_init_residual: bool) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, Bottleneck):
                    nn.init.zeros_(m.bn3.weight)

    def _image(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 3:
            x = x.unsqueeze(1)
        if x.dim() != 4 or tuple(x.shape[1:]) != (1, PATCH_FRAMES, PATCH_MELS):
            raise ConfigError(f"ResNet50 expects patches of shape (batch, {PATCH_FRAMES}, "
                              f"{PATCH_MELS}); got {tuple(x.shape)}")
        if self.conv1.weight.is_contiguous(memory_format=torch.channels_last):
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def embedding(self, x: torch.Tensor) -> torch.Tensor:
        """Globally average-pooled last-stage features, shape (batch, 2048)."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(self._image(x)))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return x.mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits, shape (batch, ``n_classes``)."""
        return self.fc(self.embedding(x))


__all__ = ["Bottleneck", "ResNet50"]
