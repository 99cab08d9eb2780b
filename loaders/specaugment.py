"""SpecAugment masking (time and frequency stripes) on batches of log-mel frames.

Masks are drawn for the whole batch at once from a ``torch.Generator`` (on the CPU, so a seed
gives the same masks on any device) and applied with one ``masked_fill``; in eval mode the
module returns its input untouched.
"""

from __future__ import annotations

import torch
from torch import nn

from audioset_data.errors import ConfigError


def _stripes(batch: int, masks: int, width: int, size: int,
             generator: torch.Generator | None) -> torch.Tensor:
    """``(batch, size)`` bool: ``masks`` stripes per row, each of a width drawn uniformly
    from ``0..width`` and placed uniformly within ``size``."""
    if masks == 0 or width == 0 or size == 0:
        return torch.zeros((batch, size), dtype=torch.bool)
    widths = torch.randint(0, min(width, size) + 1, (batch, masks), generator=generator)
    starts = (torch.rand((batch, masks), generator=generator, dtype=torch.float64)
              * (size - widths + 1)).long()
    index = torch.arange(size)[None, None, :]
    inside = (index >= starts[..., None]) & (index < (starts + widths)[..., None])
    return inside.any(dim=1)


class SpecAugment(nn.Module):
    """Time and frequency masking of ``(batch, frames, n_mels)`` tensors while training.

    Parameters
    ----------
    time_masks, time_width
        Stripes of frames per example, each up to ``time_width`` frames.
    freq_masks, freq_width
        Stripes of mel bands per example, each up to ``freq_width`` bands.
    generator
        The source of randomness; seed one for reproducible masks.
    fill
        The value written into masked cells (0 by default, as in PANNs).
    """

    def __init__(self, time_masks: int = 2, time_width: int = 24, freq_masks: int = 2,
                 freq_width: int = 8, generator: torch.Generator | None = None,
                 fill: float = 0.0) -> None:
        super().__init__()
        for name, value in (("time_masks", time_masks), ("time_width", time_width),
                            ("freq_masks", freq_masks), ("freq_width", freq_width)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ConfigError(f"SpecAugment {name} must be an int >= 0, got {value!r}")
        if generator is not None and generator.device.type != "cpu":
            raise ConfigError("SpecAugment generator must be a CPU torch.Generator")
        self.time_masks, self.time_width = time_masks, time_width
        self.freq_masks, self.freq_width = freq_masks, freq_width
        self.generator = generator
        self.fill = float(fill)

    def extra_repr(self) -> str:
        return (f"time_masks={self.time_masks}, time_width={self.time_width}, "
                f"freq_masks={self.freq_masks}, freq_width={self.freq_width}, fill={self.fill}")

    def stripes(self, batch: int, frames: int, n_mels: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Fresh masks on the CPU: ``(batch, frames)`` and ``(batch, n_mels)`` bool, True where
        masked; a cell is masked when its frame or its band is."""
        time = _stripes(batch, self.time_masks, self.time_width, frames, self.generator)
        freq = _stripes(batch, self.freq_masks, self.freq_width, n_mels, self.generator)
        return time, freq

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` with masked stripes set to ``fill`` (a new tensor); ``x`` itself in eval mode."""
        if not self.training:
            return x
        if x.ndim != 3:
            raise ConfigError(f"SpecAugment expects (batch, frames, n_mels), got shape "
                              f"{tuple(x.shape)}")
        time, freq = (m.to(x.device) for m in self.stripes(*x.shape))
        return x.masked_fill(time[:, :, None] | freq[:, None, :], self.fill)


__all__ = ["SpecAugment"]
