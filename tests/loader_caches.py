"""Small caches for loader tests, written by the project's own writer.

Every clip carries two clicks at places unique to it (so a shifted, swapped or mis-scaled
waveform shows), some clips are shorter than the clip length (so padding and ``length``
show), and the labels are skewed: label 0 on most clips, label 1 on a third, label 2 on one in
seven, plus one label that depends on the clip (so a target paired with the wrong key shows).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from audioset_data.cache.codec import encode_clip
from audioset_data.cache.manifest import clip_key
from audioset_data.cache.store import CacheWriter, open_manifest

MIDS = [f"/m/l{j}" for j in range(8)]
SR = 100
CLIP = 1000  # 10 s at 100 Hz: ten 0.96-s frames


@dataclass(frozen=True)
class Clip:
    """What a test cache holds for one clip."""

    key: str
    ytid: str
    start: float
    pcm: np.ndarray  # padded to the clip length
    length: int
    target: np.ndarray  # bool, one per label


def clicks(i: int, clip: int = CLIP) -> tuple[int, int]:
    """Sample indices of clip ``i``'s positive and negative click."""
    at = (37 * i + 11) % (clip // 2)
    return at, at + 101 + (i % 13)


def make_clip(i: int, key: str | None = None, n_labels: int = len(MIDS),
              clip: int = CLIP) -> Clip:
    """Clip ``i``: clicks at :func:`clicks`, a short true length on every sixth clip, skewed
    labels (see the module docstring)."""
    if key is None:
        ytid, start = f"ld{i:09d}", float(i * 10)
        key = clip_key(ytid, start)
    else:
        ytid, _, ms = key.rpartition("_")
        start = int(ms) / 1000
    length = clip - 7 * (i % 50) - 3 if i % 6 == 5 else clip
    pcm = np.zeros(clip, dtype=np.int16)
    pos, neg = clicks(i, clip)
    pcm[pos] = 20000 + i
    pcm[neg] = -32768 + (i % 100)
    pcm[length:] = 0
    target = np.zeros(n_labels, dtype=bool)
    target[0] = i % 5 != 4
    target[1] = i % 3 == 0
    target[2] = i % 7 == 0
    target[3 + i % (n_labels - 3)] = True
    return Clip(key, ytid, start, pcm, length, target)


def build_cache(
    folder: Path,
    n: int | None = None,
    *,
    keys: Sequence[str] | None = None,
    fmt: str = "pcm16",
    label_mids: Sequence[str] = MIDS,
    listed_only: Sequence[int] = (),
    shard_size: int = 4,
    batch_size: int = 2,
) -> list[Clip]:
    """Write a cache of ``n`` clips (or one per key of ``keys``) into ``folder``.

    Indices in ``listed_only`` are registered in the manifest but never written (as clips
    whose download failed). Returns the clips written, in list order.
    """
    if keys is None:
        if n is None:
            raise ValueError("give n or keys")
        clips = [make_clip(i, n_labels=len(label_mids)) for i in range(n)]
    else:
        clips = [make_clip(i, k, n_labels=len(label_mids)) for i, k in enumerate(keys)]
    mids = list(label_mids)
    manifest = open_manifest(folder, fmt=fmt, sample_rate=SR, clip_samples=CLIP,
                             label_mids=mids)
    manifest.add_segments([
        (c.key, c.ytid, c.start, c.start + 10,
         ",".join(m for m, t in zip(mids, c.target, strict=True) if t)) for c in clips])
    writer = CacheWriter(folder, manifest, fmt=fmt, sample_rate=SR, clip_samples=CLIP,
                         label_mids=mids, batch_size=batch_size, shard_size=shard_size)
    written = []
    for i, c in enumerate(clips):
        if i in listed_only:
            continue
        audio = c.pcm if fmt == "pcm16" else encode_clip(c.pcm[: c.length], SR, fmt)
        writer.add(c.key, c.ytid, c.start, c.start + 10, audio, c.length, c.target)
        written.append(c)
    writer.close()
    manifest.close()
    return written


__all__ = ["CLIP", "MIDS", "SR", "Clip", "build_cache", "clicks", "make_clip"]
