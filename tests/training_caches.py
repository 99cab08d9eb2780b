"""Small caches of synthetic sounds with distinct spectral signatures, written by the
project's own cache writer: class k is band noise around its own centre frequency, so a model
that learns anything learns the classes, and one that learns nothing scores at chance."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from audioset_data.cache.manifest import clip_key
from audioset_data.cache.store import CacheWriter, open_manifest

CENTRES = (300.0, 900.0, 2200.0, 5000.0)


def sound_mids(classes: int) -> list[str]:
    """Label mids of the synthetic classes."""
    return [f"/m/snd{k}" for k in range(classes)]


def band_noise(rng: np.random.Generator, n: int, rate: int, centre: float) -> np.ndarray:
    """White noise kept within a third of an octave around ``centre`` (unit peak)."""
    spec = np.fft.rfft(rng.standard_normal(n))
    freq = np.fft.rfftfreq(n, 1 / rate)
    spec[(freq < centre * 2 ** (-1 / 6)) | (freq > centre * 2 ** (1 / 6))] = 0
    x = np.fft.irfft(spec, n)
    return x / np.abs(x).max()


def write_sound_cache(folder: Path, *, classes: int = 4, per_class: int = 12, rate: int = 16000,
                      seconds: float = 10.0, seed: int = 0, prefix: str = "snd",
                      fmt: str = "pcm16") -> tuple[list[str], np.ndarray]:
    """Write ``classes × per_class`` clips (every third clip also carries the next class) and
    return their keys and targets."""
    rng = np.random.default_rng(seed)
    mids = sound_mids(classes)
    n = int(round(seconds * rate))
    clips = []
    for k in range(classes):
        for j in range(per_class):
            target = np.zeros(classes, dtype=bool)
            target[k] = True
            if j % 3 == 0:
                target[(k + 1) % classes] = True
            wave = 0.05 * rng.standard_normal(n)
            for c in np.flatnonzero(target):
                wave += 0.4 * band_noise(rng, n, rate, CENTRES[c % len(CENTRES)])
            pcm = np.clip(wave * 20000, -32768, 32767).astype(np.int16)
            ytid = f"{prefix}{k:02d}x{j:05d}"[:11]
            clips.append((ytid, float(j), pcm, target))
    rows = [(clip_key(y, s), y, s, s + seconds,
             ",".join(m for m, t in zip(mids, tg, strict=True) if t))
            for y, s, _, tg in clips]
    manifest = open_manifest(folder, fmt=fmt, sample_rate=rate, clip_samples=n,
                             label_mids=mids)
    manifest.add_segments(rows)
    writer = CacheWriter(folder, manifest, fmt=fmt, sample_rate=rate, clip_samples=n,
                         label_mids=mids, batch_size=16, shard_size=64)
    for y, s, pcm, tg in clips:
        writer.add(clip_key(y, s), y, s, s + seconds, pcm, len(pcm), tg)
    writer.close()
    manifest.close()
    return [r[0] for r in rows], np.stack([c[3] for c in clips])
