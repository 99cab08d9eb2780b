"""Caches for the triplet tests and benchmark, written by the project's own writer: clicks of
random pitch (every patch unique) and band classes heard through a background whose colour
changes every second (raw log-mel neighbours then often share only the background)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from audioset_data.cache.manifest import clip_key
from audioset_data.cache.store import CacheWriter, open_manifest

RATE = 16000
#: Class centres (Hz) of the masked-band caches, a bit over half an octave apart.
CENTRES = (300.0, 480.0, 760.0, 1200.0, 1900.0, 3000.0, 4700.0, 6000.0)


def write_cache(folder: Path, waves: list[np.ndarray], targets: np.ndarray, *,
                prefix: str, rate: int = RATE) -> list[str]:
    """Write float waveforms (peak below 1) with boolean targets through the project's writer."""
    mids = [f"/m/tri{k}" for k in range(targets.shape[1])]
    n = max(len(w) for w in waves)
    rows, pcms = [], []
    for i, (w, t) in enumerate(zip(waves, targets, strict=True)):
        ytid = f"{prefix}{i:06d}"[:11]
        rows.append((clip_key(ytid, 0.0), ytid, 0.0, n / rate,
                     ",".join(m for m, on in zip(mids, t, strict=True) if on)))
        pcm = np.zeros(n, np.int16)
        pcm[: len(w)] = np.clip(w * 32768, -32768, 32767).astype(np.int16)
        pcms.append((pcm, len(w)))
    manifest = open_manifest(folder, fmt="pcm16", sample_rate=rate, clip_samples=n,
                             label_mids=mids)
    manifest.add_segments(rows)
    writer = CacheWriter(folder, manifest, fmt="pcm16", sample_rate=rate, clip_samples=n,
                         label_mids=mids, batch_size=16, shard_size=64)
    for (key, ytid, s, e, _), (pcm, length), t in zip(rows, pcms, targets, strict=True):
        writer.add(key, ytid, s, e, pcm, length, t)
    writer.close()
    manifest.close()
    return [r[0] for r in rows]


def click_waves(n_clips: int, seconds: float, seed: int) -> list[np.ndarray]:
    """Sparse clicks of random pitch over faint noise: every 10-ms frame and mel bin differs
    from its neighbours, so a patch matches only where it was cut."""
    rng = np.random.default_rng(seed)
    n = int(seconds * RATE)
    waves = []
    for _ in range(n_clips):
        w = 0.002 * rng.standard_normal(n)
        t = np.arange(200) / RATE
        for at in rng.integers(0, n - 200, size=int(seconds * 12)):
            w[at: at + 200] += 0.3 * np.sin(2 * np.pi * rng.uniform(300, 6000) * t) \
                * np.exp(-t * 400)
        waves.append(w)
    return waves


def band(rng: np.random.Generator, n: int, centre: float) -> np.ndarray:
    """Unit-power noise within a third of an octave around ``centre``."""
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1 / RATE)
    spec[(f < centre * 2 ** (-1 / 6)) | (f > centre * 2 ** (1 / 6))] = 0
    x = np.fft.irfft(spec, n)
    return x / np.sqrt(np.mean(x ** 2))


def coloured(rng: np.random.Generator, n: int) -> np.ndarray:
    """Unit-power noise under a random smooth spectral envelope (three broad bumps of up to
    ±15 dB at random frequencies): a different colour each call."""
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.maximum(np.fft.rfftfreq(n, 1 / RATE), 20.0)
    db = np.zeros_like(f)
    for _ in range(3):
        centre = np.exp(rng.uniform(np.log(100), np.log(7000)))
        db += rng.uniform(-15, 15) * np.exp(-np.log2(f / centre) ** 2 / 0.5)
    x = np.fft.irfft(spec * 10 ** (db / 20), n)
    return x / np.sqrt(np.mean(x ** 2))


def masked_band_cache(folder: Path, *, per_class: int, seed: int, prefix: str,
                      classes: int = 4) -> tuple[list[str], np.ndarray]:
    """4-s clips of ``classes`` classes (every third clip also carries the next class): class
    k is a narrow band at its own centre (every other of ``CENTRES`` for 4), heard through a
    loud background whose colour changes every second. Over the whole log-mel patch the
    background differs more between seconds than the classes differ, so raw log-mel
    neighbours often share only the background; the class stays through each clip."""
    rng = np.random.default_rng(seed)
    n = 4 * RATE
    waves, targets = [], []
    centres = CENTRES[::2] if classes == 4 else CENTRES[:classes]
    for k in range(classes):
        for j in range(per_class):
            t = np.zeros(classes, bool)
            t[k] = True
            if j % 3 == 0:
                t[(k + 1) % classes] = True
            w = np.concatenate([coloured(rng, RATE) for _ in range(4)])
            for c in np.flatnonzero(t):
                w += 0.5 * band(rng, n, centres[c])
            waves.append(0.03 * w)
            targets.append(t)
    targets = np.stack(targets)
    return write_cache(folder, waves, targets, prefix=prefix), targets
