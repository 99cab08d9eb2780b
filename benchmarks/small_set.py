"""A small, reproducible stand-in for real recordings: ten synthetic sound classes in noise.

The issue's real set was 10 sound classes, 160 training and 80 held-out 10-s segments, each a
5-s recording placed in noise. There are no recordings here, so this module synthesises ten
classes hard enough that a linear model on pooled log-mel statistics does not solve them (it
reaches about 0.8 mAP, not 1.0): every example draws its own pitch, timing, duration, level,
onset within the clip, signal-to-noise ratio against pink-to-brown background noise, and some
clips carry an unlabelled distractor sound. Two classes (rising and falling chirps) share their
spectra and differ only in time; two harmonic classes share their pitch range and differ in
spectral envelope and vibrato.

The clips are written by the project's own cache writer (``CacheWriter`` / ``open_manifest``)
at 32 kHz pcm16 (the downloader's default rate), labelled with ten of ``n_labels`` label mids
(527 by default, so the models have AudioSet's 527 outputs and most of them are never
positive, as on a real small download).

Usage (from the repository root)::

    python benchmarks/small_set.py --root /tmp/small --train small_train --eval small_eval
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import numpy as np
from scipy import signal

from audioset_data.cache.manifest import clip_key
from audioset_data.cache.reader import cache_dir
from audioset_data.cache.store import CacheWriter, open_manifest

RATE = 32000
SECONDS = 10.0
#: The classes, in label order.
CLASSES = ("vibrato tone", "bright tone", "noise bursts", "rising chirps", "click train",
           "AM tone", "formant speech", "falling chirps", "engine", "bird song")


def label_mids(n_labels: int = 527) -> list[str]:
    """``n_labels`` synthetic label mids; the first ten are the sound classes."""
    return [f"/t/small{k:03d}" for k in range(n_labels)]


# -- the sounds ----------------------------------------------------------------------------
def _phase(freq: np.ndarray, rate: int) -> np.ndarray:
    return 2 * np.pi * np.cumsum(freq) / rate


def _harmonics(rng: np.random.Generator, f0: np.ndarray, rate: int,
               gain: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """A harmonic tone on the (time-varying) fundamental ``f0``; ``gain(f)`` shapes it."""
    phase = _phase(f0, rate)
    out = np.zeros_like(f0)
    top = min(7000.0, rate / 2 - 500)
    for k in range(1, int(top // max(float(f0.min()), 20.0)) + 1):
        fk = k * float(f0.mean())
        if fk > top:
            break
        out += gain(np.asarray(fk)) * np.sin(k * phase + rng.uniform(0, 2 * np.pi))
    return out


def _band_noise(rng: np.random.Generator, n: int, rate: int, lo: float, hi: float) -> np.ndarray:
    sos = signal.butter(4, [lo, min(hi, rate / 2 - 100)], "bandpass", fs=rate, output="sos")
    return signal.sosfilt(sos, rng.standard_normal(n))


def _gates(rng: np.random.Generator, n: int, rate: int, per_s: tuple[float, float],
           length_s: tuple[float, float]) -> list[tuple[int, int]]:
    """Start and stop samples of events at a random rate within ``n`` samples."""
    out, t = [], rng.uniform(0, 0.2)
    rate_hz = rng.uniform(*per_s)
    while t < n / rate:
        dur = rng.uniform(*length_s)
        a, b = int(t * rate), min(n, int((t + dur) * rate))
        if b - a > 16:
            out.append((a, b))
        t += dur + rng.exponential(1.0 / rate_hz)
    return out


def _fade(x: np.ndarray, rate: int, seconds: float = 0.01) -> np.ndarray:
    k = min(len(x) // 2, max(1, int(seconds * rate)))
    ramp = np.linspace(0.0, 1.0, k)
    x[:k] *= ramp
    x[-k:] *= ramp[::-1]
    return x


def vibrato_tone(rng: np.random.Generator, n: int, rate: int) -> np.ndarray:
    t = np.arange(n) / rate
    f0 = rng.uniform(180, 500) * (1 + rng.uniform(0.01, 0.04)
                                  * np.sin(2 * np.pi * rng.uniform(4, 7) * t))
    slope = rng.uniform(1.0, 1.6)
    return _harmonics(rng, f0, rate, lambda f: (f / 200.0) ** -slope)


def bright_tone(rng: np.random.Generator, n: int, rate: int) -> np.ndarray:
    t = np.arange(n) / rate
    f0 = np.full(n, rng.uniform(180, 500))
    peak, width = rng.uniform(1200, 2500), rng.uniform(0.5, 1.0)
    x = _harmonics(rng, f0, rate,
                   lambda f: np.exp(-0.5 * (np.log2(np.maximum(f, 1) / peak) / width) ** 2))
    return x * (1 + 0.2 * np.sin(2 * np.pi * rng.uniform(2, 5) * t))


def noise_bursts(rng: np.random.Generator, n: int, rate: int) -> np.ndarray:
    centre = rng.uniform(1000, 3000)
    band = _band_noise(rng, n, rate, centre / 1.5, centre * 1.5)
    env = np.zeros(n)
    for a, b in _gates(rng, n, rate, (2, 6), (0.05, 0.2)):
        env[a:b] = np.hanning(b - a)
    return band * env


def _chirps(rng: np.random.Generator, n: int, rate: int, rising: bool) -> np.ndarray:
    out = np.zeros(n)
    lo, hi = rng.uniform(400, 800), rng.uniform(2000, 4000)
    for a, b in _gates(rng, n, rate, (1.5, 4), (0.15, 0.4)):
        m = b - a
        f = lo * (hi / lo) ** (np.arange(m) / m)
        if not rising:
            f = f[::-1]
        out[a:b] = np.sin(_phase(f, rate)) * np.hanning(m)
    return out


def rising_chirps(rng: np.random.Generator, n: int, rate: int) -> np.ndarray:
    return _chirps(rng, n, rate, True)


def falling_chirps(rng: np.random.Generator, n: int, rate: int) -> np.ndarray:
    return _chirps(rng, n, rate, False)


def click_train(rng: np.random.Generator, n: int, rate: int) -> np.ndarray:
    pulses = np.zeros(n)
    period = rate / rng.uniform(8, 30)
    at = np.arange(rng.uniform(0, period), n, period)
    at = np.clip((at + rng.normal(0, period * 0.05, len(at))).astype(int), 0, n - 1)
    pulses[at] = rng.uniform(0.6, 1.0, len(at))
    f, q = rng.uniform(2000, 5000), rng.uniform(3, 8)
    b, a = signal.iirpeak(f, q, fs=rate)
    return signal.lfilter(b, a, pulses)


def am_tone(rng: np.random.Generator, n: int, rate: int) -> np.ndarray:
    t = np.arange(n) / rate
    f = rng.uniform(600, 2500)
    carrier = np.sin(2 * np.pi * f * t) + 0.3 * np.sin(4 * np.pi * f * t)
    return carrier * (1 + 0.8 * np.sin(2 * np.pi * rng.uniform(6, 20) * t))


def formant_speech(rng: np.random.Generator, n: int, rate: int) -> np.ndarray:
    t = np.arange(n) / rate
    f0 = rng.uniform(90, 220) * (1 + 0.1 * np.sin(2 * np.pi * rng.uniform(0.5, 2) * t))
    saw = 2 * ((np.cumsum(f0) / rate) % 1.0) - 1
    out = np.zeros(n)
    hop = int(rng.uniform(0.15, 0.3) * rate)
    for a in range(0, n, hop):  # one vowel per syllable, formants drawn anew
        seg = saw[a:a + hop]
        y = np.zeros_like(seg)
        for lo, hi, g in ((300, 800, 1.0), (900, 2200, 0.6), (2300, 3000, 0.3)):
            b, a_ = signal.iirpeak(rng.uniform(lo, hi), 6, fs=rate)
            y += g * signal.lfilter(b, a_, seg)
        out[a:a + hop] = y * np.hanning(len(seg))
    return out


def engine(rng: np.random.Generator, n: int, rate: int) -> np.ndarray:
    t = np.arange(n) / rate
    f0 = rng.uniform(30, 80) * (1 + 0.05 * np.sin(2 * np.pi * rng.uniform(0.2, 1) * t))
    x = _harmonics(rng, f0, rate, lambda f: (f < 1500) * (f / 50.0) ** -0.7)
    rumble = _band_noise(rng, n, rate, 40, 600)
    return x / (np.std(x) + 1e-9) + 0.5 * rumble / (np.std(rumble) + 1e-9)


def bird_song(rng: np.random.Generator, n: int, rate: int) -> np.ndarray:
    out = np.zeros(n)
    centre = rng.uniform(2500, 5500)
    for a, b in _gates(rng, n, rate, (3, 8), (0.05, 0.15)):
        m = b - a
        tt = np.arange(m) / rate
        f = centre * (1 + 0.15 * np.sin(2 * np.pi * rng.uniform(10, 40) * tt))
        out[a:b] = np.sin(_phase(f, rate)) * np.hanning(m)
    return out


SOUNDS: tuple[Callable[[np.random.Generator, int, int], np.ndarray], ...] = (
    vibrato_tone, bright_tone, noise_bursts, rising_chirps, click_train, am_tone,
    formant_speech, falling_chirps, engine, bird_song)


def background(rng: np.random.Generator, n: int) -> np.ndarray:
    """Noise with a 1/f^a power spectrum, a drawn from [1, 2] (pink to brown), unit RMS."""
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1 / RATE)
    spec *= np.maximum(f, 20.0) ** (-rng.uniform(1.0, 2.0) / 2)
    x = np.fft.irfft(spec, n)
    return x / np.std(x)


def distractor(rng: np.random.Generator, n: int, rate: int) -> np.ndarray:
    """An unlabelled sound: a knock of coloured noise or a steady hum."""
    if rng.random() < 0.5:
        x = _band_noise(rng, n, rate, rng.uniform(100, 800), rng.uniform(1500, 8000))
        return x * np.exp(-np.arange(n) / (rng.uniform(0.02, 0.2) * rate))
    t = np.arange(n) / rate
    return np.sin(2 * np.pi * rng.choice([50.0, 60.0, 100.0, 120.0]) * t)


def synth_clip(rng: np.random.Generator, label: int, *, snr_db: tuple[float, float] = (-9, 6),
               event_s: tuple[float, float] = (3.0, 6.0), seconds: float = SECONDS,
               rate: int = RATE) -> np.ndarray:
    """One clip of class ``label``: an event of ``event_s`` seconds (3-6) at a random onset in
    background noise, maybe with a distractor; float64, peak at most 0.5."""
    n = int(round(seconds * rate))
    noise = background(rng, n)
    dur = int(min(seconds, rng.uniform(*event_s)) * rate)
    event = _fade(SOUNDS[label](rng, dur, rate), rate)
    active = event[np.abs(event) > 1e-3 * np.abs(event).max()]
    event *= 10 ** (rng.uniform(*snr_db) / 20) / (np.sqrt(np.mean(active ** 2)) + 1e-12)
    at = rng.integers(0, n - dur + 1)
    x = noise
    x[at:at + dur] += event
    if rng.random() < 0.5:
        d_len = min(n, int(rng.uniform(0.5, 3.0) * rate))
        d_at = rng.integers(0, n - d_len + 1)
        x[d_at:d_at + d_len] += _fade(distractor(rng, d_len, rate), rate) * rng.uniform(0.5, 2)
    return x * (rng.uniform(0.05, 0.5) / np.abs(x).max())


def write_split(folder: Path, *, per_class: int, seed: int, prefix: str,
                n_classes: int = 10, n_labels: int = 527, seconds: float = SECONDS,
                rate: int = RATE, event_s: tuple[float, float] = (3.0, 6.0),
                ) -> tuple[list[str], np.ndarray]:
    """Write ``n_classes × per_class`` clips to the cache ``folder``; return keys and the
    class of each clip."""
    rng = np.random.default_rng(seed)
    mids = label_mids(n_labels)
    n = int(round(seconds * rate))
    labels = np.repeat(np.arange(n_classes), per_class)
    rng.shuffle(labels)
    rows, clips = [], []
    for j, label in enumerate(labels):
        ytid = f"{prefix}{j:07d}"[:11].ljust(11, "x")
        start = float(j % 7)
        key = clip_key(ytid, start)
        rows.append((key, ytid, start, start + seconds, mids[label]))
        clip = synth_clip(rng, int(label), event_s=event_s, seconds=seconds, rate=rate)
        pcm = np.clip(clip * 32767, -32768, 32767).astype(np.int16)
        target = np.zeros(n_labels, dtype=bool)
        target[label] = True
        clips.append((key, ytid, start, pcm, target))
    manifest = open_manifest(folder, fmt="pcm16", sample_rate=rate, clip_samples=n,
                             label_mids=mids)
    manifest.add_segments(rows)
    writer = CacheWriter(folder, manifest, fmt="pcm16", sample_rate=rate, clip_samples=n,
                         label_mids=mids, batch_size=32, shard_size=256)
    for key, ytid, start, pcm, target in clips:
        writer.add(key, ytid, start, start + seconds, pcm, len(pcm), target)
    writer.close()
    manifest.close()
    return [r[0] for r in rows], labels


def write_small_set(root: Path | str | None = None, *, train: str = "small_train",
                    eval: str = "small_eval", train_per_class: int = 16,  # noqa: A002
                    eval_per_class: int = 8, seed: int = 0, n_classes: int = 10,
                    n_labels: int = 527, seconds: float = SECONDS, rate: int = RATE,
                    event_s: tuple[float, float] = (3.0, 6.0)) -> tuple[Path, Path]:
    """Write the training and held-out caches (160 and 80 clips by default) under ``root``
    (the usual data root when ``None``); return their folders. The same seed writes the same
    audio."""
    folders = cache_dir(train, root), cache_dir(eval, root)
    for folder, per_class, s, prefix in ((folders[0], train_per_class, seed * 2 + 1, "st"),
                                         (folders[1], eval_per_class, seed * 2 + 2, "se")):
        write_split(folder, per_class=per_class, seed=s, prefix=prefix, n_classes=n_classes,
                    n_labels=n_labels, seconds=seconds, rate=rate, event_s=event_s)
    return folders


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", help="data root (default: the usual)")
    parser.add_argument("--train", default="small_train")
    parser.add_argument("--eval", default="small_eval")
    parser.add_argument("--train-per-class", type=int, default=16)
    parser.add_argument("--eval-per-class", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    for folder in write_small_set(args.root, train=args.train, eval=args.eval,
                                  train_per_class=args.train_per_class,
                                  eval_per_class=args.eval_per_class, seed=args.seed):
        print(folder)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
