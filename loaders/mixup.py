"""Mixup for multi-label audio: mix two clips (waveforms or features) and their targets.

Two pairings are in use on AudioSet. PANNs mixes neighbours ``(0, 1), (2, 3), …`` with one
``lambda ~ Beta(1, 1)`` per pair and halves the batch; PaSST and EfficientAT keep the batch,
pair each clip with a random partner and draw ``lambda ~ Beta(0.3, 0.3)`` per clip. Both are
here, seeded, for any tensor shaped ``(batch, …)``: waveforms before the front end or log-mel
after it. Targets mix with the same ``lambda``; true lengths become the longer of the two.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from audioset_data.errors import ConfigError

__all__ = ["Mixed", "Mixup"]

_MODES = ("pairs", "permute")

#: a torch tensor or a NumPy array
Array = Any


@dataclass
class Mixed:
    """One mixed batch: ``inputs``, soft ``targets``, ``lam`` (one per output clip: the share
    of the first clip of its pair), the ``first``/``second`` source indices and ``lengths``
    (None unless lengths were given)."""

    inputs: Array
    targets: Array
    lam: Array
    first: Array
    second: Array
    lengths: Array | None = None


class Mixup:
    """Seeded mixup of a batch and its targets.

    Parameters
    ----------
    alpha
        ``lambda ~ Beta(alpha, alpha)``; PANNs uses 1.0, PaSST 0.3.
    mode
        ``"pairs"``: neighbours ``2i`` and ``2i + 1`` are mixed into one clip, so a batch of
        ``2B`` gives ``B`` (PANNs). ``"permute"``: each clip is mixed with a random partner and
        the batch keeps its size (PaSST).
    dominant
        Replace ``lambda`` by ``max(lambda, 1 - lambda)`` so the first clip dominates (PaSST).
    seed
        Seed of the NumPy generator that draws ``lambda`` and partners (drawn on the host, so
        the same seed gives the same mixes on CPU and GPU).
    """

    def __init__(self, alpha: float = 1.0, mode: str = "pairs", *, dominant: bool = False,
                 seed: int = 0):
        if not alpha > 0:
            raise ConfigError(f"mixup alpha={alpha!r} must be positive")
        if mode not in _MODES:
            raise ConfigError(f"mixup mode={mode!r}: use one of {_MODES}")
        self.alpha = float(alpha)
        self.mode = mode
        self.dominant = dominant
        self.rng = np.random.default_rng(seed)

    def state_dict(self) -> dict[str, object]:
        """The generator's state (plain types), so a resumed run draws the same mixes."""
        return {"generator": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, object]) -> None:
        """Restore what :meth:`state_dict` returned."""
        self.rng.bit_generator.state = state["generator"]

    def draw(self, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Source indices ``first``, ``second`` and ``lam`` for a batch of ``n`` clips."""
        if self.mode == "pairs":
            if n % 2:
                raise ConfigError(f"mixup mode 'pairs' needs an even batch, got {n} clips")
            first = np.arange(0, n, 2)
            second = first + 1
        else:
            first = np.arange(n)
            second = self.rng.permutation(n)
        lam = self.rng.beta(self.alpha, self.alpha, size=len(first))
        if self.dominant:
            lam = np.maximum(lam, 1 - lam)
        return first, second, lam

    def __call__(self, inputs: Array, targets: Array, lengths: Array | None = None) -> Mixed:
        """Mix ``inputs`` (batch, …) and ``targets`` (batch, classes): torch tensors (on
        their own device) or NumPy arrays; the result has the same kind."""
        n = inputs.shape[0]
        if targets.shape[0] != n or (lengths is not None and lengths.shape[0] != n):
            raise ConfigError(f"mixup: inputs have {n} clips, targets {targets.shape[0]}"
                              + ("" if lengths is None else f", lengths {lengths.shape[0]}"))
        first, second, lam = self.draw(n)
        if isinstance(inputs, torch.Tensor):
            dev = inputs.device
            dtype = inputs.dtype if inputs.is_floating_point() else torch.float32
            first_t = torch.from_numpy(first).to(dev)
            second_t = torch.from_numpy(second).to(dev)
            lam_t = torch.from_numpy(lam).to(device=dev, dtype=dtype)
            x, t = inputs.to(dtype), torch.as_tensor(targets, device=dev).to(dtype)
            out_len = None if lengths is None else torch.maximum(lengths[first_t],
                                                                 lengths[second_t])
            idx1, idx2 = first_t, second_t
        else:
            dtype = inputs.dtype if np.issubdtype(inputs.dtype, np.floating) else np.float32
            lam_t = lam.astype(dtype)
            x, t = inputs.astype(dtype, copy=False), np.asarray(targets).astype(dtype)
            out_len = None if lengths is None else np.maximum(lengths[first], lengths[second])
            idx1, idx2 = first, second
        mixed = _mix(x, idx1, idx2, lam_t)
        soft = _mix(t, idx1, idx2, lam_t)
        return Mixed(mixed, soft, lam_t, idx1, idx2, out_len)

    def __repr__(self) -> str:
        return f"Mixup(alpha={self.alpha}, mode={self.mode!r}, dominant={self.dominant})"



def _mix(x: Array, first: Array, second: Array, lam: Array) -> Array:
    """``lam * x[first] + (1 - lam) * x[second]`` with ``lam`` broadcast over the clip."""
    lam = lam.reshape((-1,) + (1,) * (x.ndim - 1))
    return x[first] * lam + x[second] * (1 - lam)
