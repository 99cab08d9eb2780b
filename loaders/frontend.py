"""The log-mel front end: batched waveforms in, log-mel frames and fixed-length examples out.

One torch module does the whole chain on CPU or GPU: int16 scaling, masking of batch padding,
band-limited resampling from the cache's rate to the model's (:mod:`.resample`), the STFT,
a mel filter bank computed in NumPy and held as a buffer, and the log. Two presets:

``VGGISH``
    The front end Google published with VGGish and YAMNet: 16 kHz, 25 ms periodic Hann
    frames every 10 ms with no centre padding, FFT 512, magnitude spectrum, 64 HTK mel bands
    from 125 to 7500 Hz with triangles in mel space, ``log(mel + 0.01)``, and non-overlapping
    examples of 96 frames (0.96 s), ten per 10-s clip.

``PANNS``
    The front end of the PANNs CNNs (Cnn14 and kin): 32 kHz, periodic Hann of 1024 samples
    every 320, centre padding by reflection, power spectrum, 64 Slaney mel bands from 50 Hz to
    14 kHz with area normalisation (librosa's default filter bank), ``10 log10(max(mel,
    1e-10))``. PANNs feeds whole clips to the network; the preset's examples are 1 s (100
    frames) for clip-level pooling, a choice of ours. One difference from PANNs: frames near
    the end of a clip shorter than its batch see the batch's zero padding where PANNs (one clip
    at a time) would see the clip's reflection.

Integer (int16) audio is scaled by 1/32768 to [-1, 1). Frames are counted as in VGGish:
``1 + (n - win_length) // hop_length`` without centre padding, ``1 + n // hop_length`` with it.

Threads: on CPU the module runs on torch's intra-op threads. Where other processes share the
cores, give each process one thread (``torch.set_num_threads(1)``; DataLoader workers already
run with one) or start the process with ``OMP_WAIT_POLICY=PASSIVE`` in its environment. With
libgomp's default policy idle threads spin after each parallel region: on two cores busy with
other jobs, two threads were measured at 0.12-0.22x librosa's clips/s where one thread reached
1.3-1.9x (``benchmarks/bench_frontend.py`` compares both sides at equal thread counts). The
policy is read once, when torch loads, so the package cannot set it for a process that has
already imported torch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional

from audioset_data.errors import ConfigError

from .resample import Resampler, resampled_length

MEL_SCALES = ("htk", "slaney")
LOG_KINDS = ("offset", "db")
#: On CPU, clips are processed in groups of about this many input samples (6 clips of 10 s
#: at 16 kHz), so that a group's spectrum stays in cache between the FFT, the magnitude and
#: the mel product; much smaller groups multiply thread synchronisations, which cost dearly
#: when other processes share the cores.
CPU_GROUP_SAMPLES = 1 << 20
#: On other devices, groups are bounded only to cap the memory of the intermediate spectra
#: (about 2 GB of float32 complex spectrum for VGGish, 420 clips of 10 s at 16 kHz).
DEVICE_GROUP_SAMPLES = 1 << 26


@dataclass(frozen=True)
class FrontEndConfig:
    """Settings of a log-mel front end; see :data:`VGGISH` and :data:`PANNS`.

    Parameters
    ----------
    sample_rate
        Model rate in Hz; input at another rate is resampled to it.
    n_fft, win_length, hop_length
        FFT size, Hann window length and hop, in samples.
    n_mels, fmin, fmax
        Mel bands and their frequency range in Hz.
    power
        1 for the magnitude spectrum (VGGish), 2 for the power spectrum (PANNs).
    mel_scale
        ``"htk"``: HTK mel formula, triangles drawn in mel space, DC bin zeroed, no
        normalisation (VGGish); ``"slaney"``: Slaney's mel formula, triangles drawn in Hz,
        each band scaled to unit area (librosa's default, used by PANNs).
    log
        ``"offset"``: ``ln(mel + log_offset)``; ``"db"``: ``10 log10(max(mel, log_offset))``.
    log_offset
        The stabiliser of the log (0.01 in VGGish, 1e-10 in PANNs).
    center
        Pad ``n_fft // 2`` samples by reflection at both ends so frame ``i`` is centred on
        sample ``i * hop_length`` (PANNs); without it frame ``i`` starts there (VGGish).
    window
        Only ``"hann"`` (periodic) is supported.
    example_frames
        Frames per example for :meth:`LogMel.examples`.
    """

    sample_rate: int = 16000
    n_fft: int = 512
    win_length: int = 400
    hop_length: int = 160
    n_mels: int = 64
    fmin: float = 125.0
    fmax: float = 7500.0
    power: float = 1.0
    mel_scale: str = "htk"
    log: str = "offset"
    log_offset: float = 0.01
    center: bool = False
    window: str = "hann"
    example_frames: int = 96

    def __post_init__(self) -> None:
        for name in ("sample_rate", "n_fft", "win_length", "hop_length", "n_mels",
                     "example_frames"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ConfigError(f"FrontEndConfig.{name} must be a positive int, got {value!r}")
        if self.win_length > self.n_fft:
            raise ConfigError(f"FrontEndConfig.win_length {self.win_length} exceeds n_fft "
                              f"{self.n_fft}")
        if not 0 <= self.fmin < self.fmax <= self.sample_rate / 2:
            raise ConfigError(f"FrontEndConfig needs 0 <= fmin < fmax <= sample_rate / 2, got "
                              f"fmin={self.fmin}, fmax={self.fmax}, "
                              f"sample_rate={self.sample_rate}")
        if self.power not in (1.0, 2.0):
            raise ConfigError(f"FrontEndConfig.power must be 1 or 2, got {self.power!r}")
        if self.mel_scale not in MEL_SCALES:
            raise ConfigError(f"FrontEndConfig.mel_scale must be one of {MEL_SCALES}, got "
                              f"{self.mel_scale!r}")
        if self.log not in LOG_KINDS:
            raise ConfigError(f"FrontEndConfig.log must be one of {LOG_KINDS}, got {self.log!r}")
        if not self.log_offset > 0:
            raise ConfigError(f"FrontEndConfig.log_offset must be > 0, got {self.log_offset!r}")
        if self.window != "hann":
            raise ConfigError(f"FrontEndConfig.window must be 'hann', got {self.window!r}")

    @property
    def n_bins(self) -> int:
        """Frequency bins of the one-sided spectrum, ``n_fft // 2 + 1``."""
        return self.n_fft // 2 + 1

    def frames(self, n: int) -> int:
        """Frames made from ``n`` samples at the model rate (0 if too short)."""
        if self.center:
            return 1 + n // self.hop_length
        return 0 if n < self.win_length else 1 + (n - self.win_length) // self.hop_length


VGGISH = FrontEndConfig()
PANNS = FrontEndConfig(sample_rate=32000, n_fft=1024, win_length=1024, hop_length=320,
                       n_mels=64, fmin=50.0, fmax=14000.0, power=2.0, mel_scale="slaney",
                       log="db", log_offset=1e-10, center=True, example_frames=100)


def hz_to_mel(hz: np.ndarray | float, scale: str = "htk") -> np.ndarray:
    """Mel value of frequencies in Hz: HTK ``1127 ln(1 + f/700)`` or Slaney's scale (linear
    below 1 kHz at 3 mel per 200 Hz, logarithmic above)."""
    hz = np.asarray(hz, dtype=np.float64)
    if scale == "htk":
        return 1127.0 * np.log1p(hz / 700.0)
    linear = hz * 3.0 / 200.0
    log_part = 15.0 + np.log(np.maximum(hz, 1e-12) / 1000.0) * 27.0 / np.log(6.4)
    return np.where(hz >= 1000.0, log_part, linear)


def mel_to_hz(mel: np.ndarray | float, scale: str = "htk") -> np.ndarray:
    """Inverse of :func:`hz_to_mel`."""
    mel = np.asarray(mel, dtype=np.float64)
    if scale == "htk":
        return 700.0 * np.expm1(mel / 1127.0)
    linear = mel * 200.0 / 3.0
    log_part = 1000.0 * np.exp((mel - 15.0) * np.log(6.4) / 27.0)
    return np.where(mel >= 15.0, log_part, linear)


def _triangles(points: np.ndarray, at: np.ndarray) -> np.ndarray:
    """Triangular weights ``(len(at), len(points) - 2)``: band ``b`` rises from
    ``points[b]`` to 1 at ``points[b + 1]`` and falls to 0 at ``points[b + 2]``."""
    lower, centre, upper = points[:-2], points[1:-1], points[2:]
    rising = (at[:, None] - lower) / (centre - lower)
    falling = (upper - at[:, None]) / (upper - centre)
    return np.maximum(0.0, np.minimum(rising, falling))


def mel_matrix(config: FrontEndConfig = VGGISH) -> np.ndarray:
    """The mel filter bank ``(n_fft // 2 + 1, n_mels)`` in float64: spectrum @ matrix = mel.

    ``"htk"`` follows VGGish (band edges evenly spaced in HTK mel, triangles drawn in mel
    space, the DC bin zeroed, peaks of 1); ``"slaney"`` follows librosa's default (edges evenly
    spaced in Slaney mel, triangles drawn in Hz, each band divided by half its width in Hz).
    """
    scale = config.mel_scale
    bins_hz = np.linspace(0.0, config.sample_rate / 2, config.n_bins)
    edges_mel = np.linspace(float(hz_to_mel(config.fmin, scale)),
                            float(hz_to_mel(config.fmax, scale)), config.n_mels + 2)
    if scale == "htk":
        weights = _triangles(edges_mel, hz_to_mel(bins_hz, scale))
        weights[0, :] = 0.0
        return weights
    edges_hz = mel_to_hz(edges_mel, scale)
    weights = _triangles(edges_hz, bins_hz)
    return weights * (2.0 / (edges_hz[2:] - edges_hz[:-2]))


def _as_lengths(lengths: torch.Tensor | Sequence[int] | None, batch: int,
                samples: int) -> torch.Tensor | None:
    """``lengths`` as a CPU int64 tensor of ``batch`` values in ``[0, samples]``."""
    if lengths is None:
        return None
    out = torch.as_tensor(lengths).detach().to("cpu", torch.int64).reshape(-1)
    if out.numel() != batch:
        raise ConfigError(f"lengths has {out.numel()} values for a batch of {batch} clips")
    if batch and (int(out.min()) < 0 or int(out.max()) > samples):
        raise ConfigError(f"lengths must lie in [0, {samples}] (the padded clip length), got "
                          f"{int(out.min())}..{int(out.max())}")
    return out


class LogMel(nn.Module):
    """Log-mel spectrogram of a batch of clips, ``(batch, samples) -> (batch, frames, n_mels)``.

    Output is float64 for float64 input and float32 otherwise. Move the module with
    ``.to(device)``; the input must be on the same device.

    Parameters
    ----------
    config
        The front end settings (:data:`VGGISH` by default).
    input_rate
        The rate of the waveforms given to :meth:`forward` (the cache's rate); ``None`` means
        ``config.sample_rate``. Other rates are resampled in torch.
    """

    def __init__(self, config: FrontEndConfig = VGGISH, input_rate: int | None = None) -> None:
        super().__init__()
        self.config = config
        self.input_rate = int(config.sample_rate if input_rate is None else input_rate)
        self.resampler = Resampler(self.input_rate, config.sample_rate)
        weights = mel_matrix(config)
        used = np.flatnonzero(weights.any(axis=1))
        self.n_used_bins = int(used[-1]) + 1 if used.size else 1
        self.register_buffer("window", torch.hann_window(config.win_length, periodic=True,
                                                         dtype=torch.float64),
                             persistent=False)
        self.register_buffer("mel_t", torch.from_numpy(weights[: self.n_used_bins].T.copy()),
                             persistent=False)

    def extra_repr(self) -> str:
        return f"config={self.config}, input_rate={self.input_rate}"

    @staticmethod
    def _check(wave: torch.Tensor | np.ndarray) -> tuple[torch.Tensor, torch.dtype]:
        """``wave`` as a 2-D tensor, and the float dtype it is computed in."""
        wave = torch.as_tensor(wave)
        if wave.ndim != 2:
            raise ConfigError(f"wave must be (batch, samples), got shape {tuple(wave.shape)}")
        if wave.dtype == torch.float64:
            return wave, torch.float64
        if wave.dtype != torch.int16 and not wave.is_floating_point():
            raise ConfigError(f"wave must be int16 or floating point, got {wave.dtype}")
        return wave, torch.float32

    def frame_counts(self, lengths: torch.Tensor | Sequence[int], samples: int | None = None,
                     ) -> torch.Tensor:
        """Frames lying within each clip's true length (``lengths`` in input samples).

        ``samples`` (the padded length) caps the counts at the frames of the padded batch.
        """
        counts = [self.config.frames(resampled_length(int(n), self.input_rate,
                                                      self.config.sample_rate))
                  for n in torch.as_tensor(lengths).reshape(-1).tolist()]
        if samples is not None:
            cap = self.config.frames(resampled_length(samples, self.input_rate,
                                                      self.config.sample_rate))
            counts = [min(c, cap) for c in counts]
        return torch.tensor(counts, dtype=torch.int64)

    def _spectrum(self, wave: torch.Tensor) -> torch.Tensor:
        """Log-mel of float clips already at the model rate."""
        cfg = self.config
        dtype = wave.dtype
        if cfg.center:
            padded = wave
        else:
            # torch.stft centres the window in an n_fft frame; shift so the window starts at
            # sample i * hop as in VGGish.
            left = (cfg.n_fft - cfg.win_length) // 2
            padded = functional.pad(wave, (left, cfg.n_fft - cfg.win_length - left))
        spec = torch.stft(padded, cfg.n_fft, cfg.hop_length, cfg.win_length,
                          self.window.to(dtype), center=cfg.center, pad_mode="reflect",
                          return_complex=True)
        # Real and imaginary parts as two strided views: several times faster than
        # complex abs() or a reduction over the (re, im) axis.
        real, imag = torch.view_as_real(spec[:, : self.n_used_bins]).unbind(-1)
        spectrum = real.square().addcmul_(imag, imag)
        if cfg.power == 1.0:
            spectrum = spectrum.sqrt_()
        mel = torch.matmul(self.mel_t.to(dtype), spectrum).transpose(1, 2)
        if cfg.log == "offset":
            return mel.add_(cfg.log_offset).log_()
        return mel.clamp_(min=cfg.log_offset).log10_().mul_(10.0)

    def forward(self, wave: torch.Tensor, lengths: torch.Tensor | Sequence[int] | None = None,
                ) -> torch.Tensor:
        """Log-mel ``(batch, frames, n_mels)`` of ``(batch, samples)`` int16 or float clips.

        With ``lengths`` (true samples per clip) the padding past each length is zeroed first,
        so a clip's frames inside its length do not depend on what it was padded with; use
        :meth:`frame_counts` to know how many frames of each clip are real.
        """
        wave, dtype = self._check(wave)
        cfg = self.config
        batch, samples = wave.shape
        lengths = _as_lengths(lengths, batch, samples)
        n_model = self.resampler.output_length(samples)
        n_frames = cfg.frames(n_model)
        out = torch.empty((batch, n_frames, cfg.n_mels), dtype=dtype, device=wave.device)
        if n_frames == 0 or batch == 0:
            return out
        if cfg.center and n_model <= cfg.n_fft // 2:
            raise ConfigError(f"clips of {samples} samples are too short for centre padding "
                              f"(need more than {cfg.n_fft // 2} at {cfg.sample_rate} Hz)")
        budget = CPU_GROUP_SAMPLES if wave.device.type == "cpu" else DEVICE_GROUP_SAMPLES
        group = max(1, budget // max(samples, 1))
        # Scaling and masking happen group by group too, while the group is in cache.
        for lo in range(0, batch, group):
            chunk = wave[lo: lo + group].to(dtype)
            if wave.dtype == torch.int16:
                chunk = chunk.mul_(1.0 / 32768.0)
            if lengths is not None:
                ends = lengths[lo: lo + group].to(wave.device)[:, None]
                # out of place: for float input, chunk is a view of the caller's tensor
                chunk = chunk.masked_fill(torch.arange(samples, device=wave.device) >= ends, 0.0)
            out[lo: lo + group] = self._spectrum(self.resampler(chunk))
        return out

    def examples(self, wave: torch.Tensor, lengths: torch.Tensor | Sequence[int] | None = None,
                 *, shift: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Non-overlapping examples of ``config.example_frames`` frames, and their clip index.

        Returns ``(examples, clip_index)``: ``(n_examples, example_frames, n_mels)`` and
        ``(n_examples,)`` int64, clip by clip in order. A clip gives only the examples lying
        wholly within its true length (``lengths``, in input samples; the padded length if
        omitted): with VGGISH a 10-s clip gives 10, a 4.5-s clip padded to 10 s gives 4.

        ``shift=True`` (time-shift augmentation for training) first rolls each clip's real
        frames circularly by an offset drawn from torch's global generator, so the examples
        start anywhere in the clip instead of at multiples of 0.96 s.
        """
        logmel = self.forward(wave, lengths)
        batch, n_frames, n_mels = logmel.shape
        size = self.config.example_frames
        if lengths is None:
            counts = torch.full((batch,), n_frames, dtype=torch.int64)
        else:
            counts = self.frame_counts(lengths, torch.as_tensor(wave).shape[-1])
        if shift and batch and n_frames:
            logmel = _roll_frames(logmel, counts)
        per_clip = (counts // size).to(logmel.device)
        most = n_frames // size
        blocks = logmel[:, : most * size].reshape(batch, most, size, n_mels)
        keep = torch.arange(most, device=logmel.device)[None, :] < per_clip[:, None]
        clip_index = torch.arange(batch, device=logmel.device)[:, None].expand(batch, most)
        return blocks[keep], clip_index[keep]

    def example_seconds(self) -> float:
        """Span of one example in seconds (0.975 s of audio for VGGish: 96 hops + a window)."""
        cfg = self.config
        return ((cfg.example_frames - 1) * cfg.hop_length + cfg.win_length) / cfg.sample_rate


def _roll_frames(logmel: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """Each clip's first ``counts[i]`` frames rolled by a random offset in ``[0, counts[i])``
    (torch's global CPU generator); the frames past the count stay where they are."""
    batch, n_frames, _ = logmel.shape
    counts = counts.clamp(1, n_frames)
    offsets = (torch.rand(batch, dtype=torch.float64) * counts).long()
    t = torch.arange(n_frames)[None, :]
    index = torch.where(t < counts[:, None], (t + offsets[:, None]) % counts[:, None], t)
    index = index.to(logmel.device)[:, :, None].expand_as(logmel)
    return torch.gather(logmel, 1, index)


def frame_of_time(config: FrontEndConfig, seconds: float) -> int:
    """Index of the frame whose window centre is nearest to ``seconds``."""
    offset = 0.0 if config.center else config.win_length / 2
    return max(0, math.floor((seconds * config.sample_rate - offset) / config.hop_length + 0.5))


__all__ = [
    "PANNS",
    "VGGISH",
    "FrontEndConfig",
    "LogMel",
    "frame_of_time",
    "hz_to_mel",
    "mel_matrix",
    "mel_to_hz",
]
