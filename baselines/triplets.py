"""Triplets for unsupervised embeddings: the seed's four constraints, drawn from the cache.

The AudioSet work learns an embedding without labels from four assumptions about sound, each
turned into (anchor, positive, negative) triplets of log-mel patches:

``noise``
    Noise-corrupted audio keeps its category: the positive is the anchor's waveform plus white
    noise at a signal-to-noise ratio drawn from ``snr_db`` (exactly that ratio).
``mix``
    A mix of two sounds belongs to both: the positive is the anchor plus a segment of another
    clip at a level (relative to the anchor) drawn from ``mix_db``.
``shift``
    Small translations keep the category: the positive starts up to ``shift_frames`` frames
    away in time and is moved up to ``shift_bins`` mel bins in frequency (edge bins repeated).
``near``
    Frames of one clip close in time are alike: the positive is another patch of the same clip
    starting at most ``near_frames`` frames away.

The negative is always a patch of another clip (never the anchor's, never the mix partner's).
Each rule can be switched off (weight 0); the rule of every triplet is drawn by the weights.
Batch ``i`` is a pure function of ``(seed, i)``, so the sampler's state is one step counter and
a resumed run sees the same batches as an uninterrupted one.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from audioset_data.errors import ConfigError
from audioset_data.loaders.frontend import VGGISH, LogMel

logger = logging.getLogger(__name__)

__all__ = ["RULES", "TripletBatch", "TripletRules", "TripletSampler", "shift_mel_bins",
           "triplet_loss"]

#: Rule names, in the order of their codes in :attr:`TripletBatch.rule`.
RULES = ("noise", "mix", "shift", "near")


def _pair(name: str, value: Any) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ConfigError(f"TripletRules.{name} must be a (low, high) pair; got {value!r}") \
            from None
    if not (math.isfinite(lo) and math.isfinite(hi)) or lo > hi:
        raise ConfigError(f"TripletRules.{name} must be finite with low <= high; got {value!r}")
    return lo, hi


@dataclass(frozen=True)
class TripletRules:
    """Which rules draw triplets (weights) and their limits.

    Parameters
    ----------
    noise, mix, shift, near : float
        Relative weight of each rule (0 switches it off; at least one must be positive).
    snr_db : (low, high)
        Signal-to-noise ratio of the ``noise`` rule's positive, in dB.
    mix_db : (low, high)
        Level of the ``mix`` partner relative to the anchor, in dB (power ratio).
    shift_frames, shift_bins : int
        Largest time shift (frames) and frequency shift (mel bins) of the ``shift`` rule.
    near_frames : int
        Largest distance (frames) between anchor and positive starts in the ``near`` rule.
    """

    noise: float = 1.0
    mix: float = 1.0
    shift: float = 1.0
    near: float = 1.0
    snr_db: tuple[float, float] = field(default=(0.0, 20.0))
    mix_db: tuple[float, float] = field(default=(-10.0, 0.0))
    shift_frames: int = 10
    shift_bins: int = 2
    near_frames: int = 300

    def __post_init__(self) -> None:
        for name in RULES:
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
                raise ConfigError(f"TripletRules.{name} weight must be a number >= 0; "
                                  f"got {value!r}")
        if not sum(getattr(self, name) for name in RULES) > 0:
            raise ConfigError(f"TripletRules: every rule weight is 0; switch on at least one "
                              f"of {RULES}")
        object.__setattr__(self, "snr_db", _pair("snr_db", self.snr_db))
        object.__setattr__(self, "mix_db", _pair("mix_db", self.mix_db))
        for name in ("shift_frames", "shift_bins", "near_frames"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 0:
                raise ConfigError(f"TripletRules.{name} must be a whole number >= 0; "
                                  f"got {value!r}")

    @property
    def weights(self) -> np.ndarray:
        """Probability of each rule, in the order of :data:`RULES`."""
        w = np.array([getattr(self, name) for name in RULES], dtype=np.float64)
        return w / w.sum()

    def to_dict(self) -> dict[str, Any]:
        """Plain values (lists for pairs), for checkpoints."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TripletRules:
        """The rules of :meth:`to_dict`."""
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


@dataclass
class TripletBatch:
    """One batch of triplets and how each was made.

    ``anchor``, ``positive`` and ``negative`` are model inputs, ``(batch, frames, n_mels)``
    log-mel patches on the sampler's device. The arrays describe each triplet: ``rule`` (code
    into :data:`RULES`), the clips (dataset indices; ``partner_clip`` is -1 outside ``mix``),
    the start frame of each patch, ``freq_shift`` (mel bins, ``shift`` rule), ``snr_db``
    (``noise``) and ``mix_db`` (``mix``; NaN elsewhere). ``waves`` holds the float waveform
    segments the patches were made from (``anchor``, ``positive``, ``negative``), at the
    cache's rate.
    """

    step: int
    anchor: torch.Tensor
    positive: torch.Tensor
    negative: torch.Tensor
    rule: np.ndarray
    anchor_clip: np.ndarray
    partner_clip: np.ndarray
    negative_clip: np.ndarray
    anchor_frame: np.ndarray
    positive_frame: np.ndarray
    negative_frame: np.ndarray
    partner_frame: np.ndarray
    freq_shift: np.ndarray
    snr_db: np.ndarray
    mix_db: np.ndarray
    waves: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(self.rule)


def shift_mel_bins(x: torch.Tensor, shifts: torch.Tensor | np.ndarray) -> torch.Tensor:
    """Move each patch of ``x`` (batch, frames, mels) up by ``shifts[i]`` mel bins (down when
    negative), repeating the edge bin into the bins it vacates."""
    shifts = torch.as_tensor(np.asarray(shifts), dtype=torch.int64, device=x.device)
    if shifts.shape != (x.shape[0],):
        raise ConfigError(f"shift_mel_bins: need one shift per patch ({x.shape[0]}); got shape "
                          f"{tuple(shifts.shape)}")
    mels = x.shape[2]
    index = (torch.arange(mels, device=x.device)[None, :] - shifts[:, None]).clamp(0, mels - 1)
    return torch.gather(x, 2, index[:, None, :].expand(-1, x.shape[1], -1))


def triplet_loss(anchor: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor,
                 margin: float = 0.1) -> torch.Tensor:
    """Mean hinge ``max(0, |a-p|² - |a-n|² + margin)`` over L2-normalised embeddings.

    On the unit sphere squared distances lie in [0, 4], so one ``margin`` suits any trunk.
    """
    a, p, n = (nn.functional.normalize(v.float(), dim=1, eps=1e-8)
               for v in (anchor, positive, negative))
    d_pos = (a - p).square().sum(dim=1)
    d_neg = (a - n).square().sum(dim=1)
    return torch.relu(d_pos - d_neg + margin).mean()


class TripletSampler:
    """Batches of triplets drawn from the clips of a dataset by :class:`TripletRules`.

    Parameters
    ----------
    dataset
        An :class:`~audioset_data.loaders.AudioSetDataset` (its cache and selection are read;
        clips shorter than one patch are never drawn).
    rules
        Which rules and their limits.
    batch_size
        Triplets per batch.
    seed
        Batch ``i`` depends only on ``(seed, i)``.
    frontend
        The log-mel front end of the model to train (``frontend_for(model, rate)``); VGGish
        examples at the cache's rate by default. One patch is ``config.example_frames`` frames.
    device
        Where the log-mel patches are computed and returned.
    """

    def __init__(self, dataset: Any, rules: TripletRules | None = None, *, batch_size: int = 32,
                 seed: int = 0, frontend: nn.Module | None = None,
                 device: str | torch.device = "cpu") -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"batch_size={batch_size!r} must be a whole number >= 1")
        self.dataset = dataset
        self.rules = rules or TripletRules()
        self.batch_size = batch_size
        self.seed = int(seed)
        self.step = 0
        self.device = torch.device(device)
        cache = dataset.cache
        self.rate = int(cache.sample_rate)
        self.frontend = (frontend if frontend is not None
                         else LogMel(VGGISH, input_rate=self.rate)).to(self.device)
        cfg = self.frontend.config
        self.frames = int(cfg.example_frames)
        self._samples_per_frame = cfg.hop_length * self.rate / cfg.sample_rate
        self.segment = self._segment_samples()
        lengths = np.asarray(cache.lengths)[np.asarray(dataset.positions)]
        last = np.floor((lengths - self.segment) / self._samples_per_frame).astype(np.int64)
        self.last_frame = np.where(lengths >= self.segment, last, -1)
        self.eligible = np.flatnonzero(self.last_frame >= 0)
        need = 3 if self.rules.mix > 0 else 2
        if len(self.eligible) < need:
            raise ConfigError(f"TripletSampler: {len(self.eligible)} clip(s) of "
                              f"{str(cache.folder)!r} hold a whole {self.frames}-frame patch; "
                              f"need at least {need} (negatives come from other clips"
                              f"{', mixes from a third' if need == 3 else ''})")
        if len(self.eligible) < len(dataset):
            logger.info("%d of %d clips are shorter than one patch and never drawn",
                        len(dataset) - len(self.eligible), len(dataset))

    def _segment_samples(self) -> int:
        """Input samples that make exactly one patch of ``frames`` frames (at least)."""
        cfg = self.frontend.config
        model = (self.frames - 1) * cfg.hop_length + (0 if cfg.center else cfg.win_length)
        n = max(1, math.ceil(model * self.rate / cfg.sample_rate))
        while int(self.frontend.frame_counts([n])[0]) < self.frames:
            n += 1
        return n

    def __repr__(self) -> str:
        return (f"TripletSampler({len(self.eligible)} clips, batch_size={self.batch_size}, "
                f"seed={self.seed}, step={self.step}, rules={self.rules})")

    # -- state ----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, int]:
        """The seed and the next batch's number."""
        return {"seed": self.seed, "step": self.step}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from :meth:`state_dict`; the seed must match."""
        if int(state.get("seed", self.seed)) != self.seed:
            raise ConfigError(f"sampler state has seed {state.get('seed')}, this sampler "
                              f"{self.seed}; a resumed run must keep its seed")
        self.step = int(state["step"])

    def __iter__(self) -> TripletSampler:
        return self

    def __next__(self) -> TripletBatch:
        batch = self.batch(self.step)
        self.step += 1
        return batch

    # -- drawing --------------------------------------------------------------------------
    def _other(self, rng: np.random.Generator, avoid: np.ndarray) -> np.ndarray:
        """An eligible clip per row that is none of the clips in that row of ``avoid``."""
        out = self.eligible[rng.integers(len(self.eligible), size=avoid.shape[0])]
        while True:
            bad = (out[:, None] == avoid).any(axis=1)
            if not bad.any():
                return out
            out[bad] = self.eligible[rng.integers(len(self.eligible), size=int(bad.sum()))]

    def _start(self, rng: np.random.Generator, clips: np.ndarray) -> np.ndarray:
        return rng.integers(0, self.last_frame[clips] + 1)

    def plan(self, step: int) -> dict[str, np.ndarray]:
        """What batch ``step`` is made of (clips, frames, rule parameters), without audio."""
        r = self.rules
        rng = np.random.default_rng([self.seed, int(step)])
        n = self.batch_size
        rule = rng.choice(len(RULES), size=n, p=r.weights)
        anchor = self.eligible[rng.integers(len(self.eligible), size=n)]
        is_mix = rule == RULES.index("mix")
        partner = np.full(n, -1, dtype=np.int64)
        if is_mix.any():
            partner[is_mix] = self._other(rng, anchor[is_mix, None])
        negative = self._other(rng, np.stack([anchor, partner], axis=1))
        a_frame = self._start(rng, anchor)
        n_frame = self._start(rng, negative)
        p_frame = a_frame.copy()
        last = self.last_frame[anchor]
        for code, reach in ((RULES.index("shift"), r.shift_frames),
                            (RULES.index("near"), r.near_frames)):
            rows = rule == code
            if rows.any():
                lo = np.maximum(0, a_frame[rows] - reach)
                hi = np.minimum(last[rows], a_frame[rows] + reach)
                p_frame[rows] = rng.integers(lo, hi + 1)
        freq = np.zeros(n, dtype=np.int64)
        rows = rule == RULES.index("shift")
        freq[rows] = rng.integers(-r.shift_bins, r.shift_bins + 1, size=int(rows.sum()))
        snr = np.full(n, np.nan)
        rows = rule == RULES.index("noise")
        snr[rows] = rng.uniform(*r.snr_db, size=int(rows.sum()))
        mix_db = np.full(n, np.nan)
        mix_db[is_mix] = rng.uniform(*r.mix_db, size=int(is_mix.sum()))
        partner_frame = np.full(n, -1, dtype=np.int64)
        if is_mix.any():
            partner_frame[is_mix] = self._start(rng, partner[is_mix])
        return {"rule": rule, "anchor_clip": anchor, "partner_clip": partner,
                "negative_clip": negative, "anchor_frame": a_frame, "positive_frame": p_frame,
                "negative_frame": n_frame, "partner_frame": partner_frame,
                "freq_shift": freq, "snr_db": snr, "mix_db": mix_db,
                "noise_seed": rng.integers(2**63 - 1)}

    def _segments(self, clips: np.ndarray, frames: np.ndarray) -> np.ndarray:
        """Float waveform segments (one patch each) of dataset clips from their start frames."""
        clips = np.asarray(clips)
        wanted, inverse = np.unique(clips, return_inverse=True)
        got = self.dataset.cache.read(np.asarray(self.dataset.positions)[wanted])["waveform"]
        offsets = np.round(np.asarray(frames) * self._samples_per_frame).astype(np.int64)
        take = offsets[:, None] + np.arange(self.segment)[None, :]
        return got[inverse[:, None], take].astype(np.float32) * np.float32(1.0 / 32768.0)

    def batch(self, step: int) -> TripletBatch:
        """Batch number ``step`` (the same for the same seed, whatever came before)."""
        p = self.plan(step)
        n = len(p["rule"])
        mixed = p["partner_clip"] >= 0
        clips = np.concatenate([p["anchor_clip"], p["anchor_clip"], p["negative_clip"],
                                p["partner_clip"][mixed]])
        frames = np.concatenate([p["anchor_frame"], p["positive_frame"], p["negative_frame"],
                                 p["partner_frame"][mixed]])
        segs = self._segments(clips, frames)
        anchor, positive, negative = segs[:n], segs[n: 2 * n].copy(), segs[2 * n: 3 * n]
        power = np.maximum(np.mean(anchor.astype(np.float64) ** 2, axis=1), 1e-20)
        noisy = np.flatnonzero(~np.isnan(p["snr_db"]))
        if len(noisy):
            noise = np.random.default_rng(p["noise_seed"]).standard_normal(
                (len(noisy), self.segment))
            scale = np.sqrt(power[noisy] / (10 ** (p["snr_db"][noisy] / 10)
                                            * np.mean(noise ** 2, axis=1)))
            positive[noisy] += (noise * scale[:, None]).astype(np.float32)
        if mixed.any():
            other = segs[3 * n:].astype(np.float64)
            rows = np.flatnonzero(mixed)
            gain = np.sqrt(power[rows] * 10 ** (p["mix_db"][rows] / 10)
                           / np.maximum(np.mean(other ** 2, axis=1), 1e-20))
            positive[rows] += (other * gain[:, None]).astype(np.float32)
        with torch.no_grad():
            wave = torch.from_numpy(np.concatenate([anchor, positive, negative])).to(self.device)
            logmel = self.frontend(wave)[:, : self.frames].float()
        a, pos, neg = logmel[:n], logmel[n: 2 * n], logmel[2 * n:]
        if p["freq_shift"].any():
            pos = shift_mel_bins(pos, p["freq_shift"])
        info = {k: v for k, v in p.items() if k != "noise_seed"}
        return TripletBatch(step=int(step), anchor=a, positive=pos, negative=neg,
                            waves={"anchor": anchor, "positive": positive,
                                   "negative": negative}, **info)
