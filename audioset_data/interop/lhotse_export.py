"""A cached split as lhotse manifests: a RecordingSet and a SupervisionSet.

Each clip is written as a whole FLAC (or WAV) file of its true length under
``out/audio/<first two characters of the ytid>/<key>.flac`` (a few thousand folders, never a
million files in one), which lhotse loads through soundfile. One recording per clip, id the
segment key; one supervision per clip spanning it, whose ``custom`` field carries the labels
(``mids``, ``names``, ``label_ids`` in the cache's label order) and where the clip came from
(``ytid``, ``segment_start`` in the video, seconds). The manifests are written line by line as
``recordings.jsonl.gz`` and ``supervisions.jsonl.gz``; the split never has to fit in memory.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from audioset_data.config import PathLike
from audioset_data.errors import ConfigError

from . import (
    audio_bytes,
    check_audio_format,
    clip_batches,
    clip_table,
    label_names,
    positions_of,
    require,
)

if TYPE_CHECKING:
    from audioset_data.cache.reader import AudioSetCache
    from audioset_data.segments.labels import LabelIndex

logger = logging.getLogger(__name__)

RECORDINGS_NAME = "recordings.jsonl.gz"
SUPERVISIONS_NAME = "supervisions.jsonl.gz"


def to_lhotse(
    cache: AudioSetCache,
    out: PathLike,
    *,
    label_index: LabelIndex | None = None,
    positions: Sequence[int] | np.ndarray | None = None,
    audio_format: str = "flac",
    batch_size: int = 64,
    overwrite: bool = False,
) -> tuple[Any, Any]:
    """Write a cached split as lhotse manifests and audio files in ``out``.

    Parameters
    ----------
    cache
        The split, from :func:`~audioset_data.cache.reader.open_cache`.
    out
        Folder for ``audio/``, ``recordings.jsonl.gz`` and ``supervisions.jsonl.gz``.
    label_index
        Source of the display names (``names`` holds None without one).
    positions
        Cache positions to export, in this order (all clips when None).
    audio_format
        ``"flac"`` or ``"wav"``.
    batch_size
        Clips read at a time.
    overwrite
        Replace existing manifests (audio files of the same keys are rewritten).

    Returns
    -------
    tuple
        ``(RecordingSet, SupervisionSet)``, opened lazily from the written manifests;
        ``lhotse.CutSet.from_manifests(recordings=..., supervisions=...)`` joins them.

    Raises
    ------
    ConfigError
        ``lhotse`` is not installed, a setting is invalid, or the manifests exist.
    """
    lhotse = require("lhotse", "lhotse")
    fmt = check_audio_format(audio_format)
    pos = positions_of(cache, positions)
    out = Path(out)
    rec_path, sup_path = out / RECORDINGS_NAME, out / SUPERVISIONS_NAME
    if not overwrite and (rec_path.exists() or sup_path.exists()):
        raise ConfigError(f"manifests exist in {str(out)!r}; pass overwrite=True to replace "
                          "them")
    mids = list(cache.label_mids)
    names = label_names(mids, label_index)
    sr = cache.sample_rate
    meta = clip_table(cache, pos)
    keys, ytids = meta["key"].to_pylist(), meta["ytid"].to_pylist()
    starts = meta["start"].to_numpy()
    tmp_rec = rec_path.with_name(f".tmp-{rec_path.name}")  # lhotse gzips by the suffix
    tmp_sup = sup_path.with_name(f".tmp-{sup_path.name}")
    out.mkdir(parents=True, exist_ok=True)
    with lhotse.RecordingSet.open_writer(tmp_rec) as recs, \
            lhotse.SupervisionSet.open_writer(tmp_sup) as sups:
        at = 0
        for _, clips in clip_batches(cache, pos, batch_size):
            for wave, n, target in zip(clips["waveform"], clips["length"], clips["target"],
                                       strict=True):
                key, n = keys[at], int(n)
                path = _write_audio(out, key, audio_bytes(wave[:n], sr, fmt), fmt)
                source = lhotse.AudioSource(type="file", channels=[0], source=str(path))
                recs.write(lhotse.Recording(id=key, sources=[source], sampling_rate=sr,
                                            num_samples=n, duration=n / sr))
                ids = np.flatnonzero(target)
                sups.write(lhotse.SupervisionSegment(
                    id=key, recording_id=key, start=0.0, duration=n / sr, channel=0,
                    custom={"mids": [mids[i] for i in ids], "names": [names[i] for i in ids],
                            "label_ids": ids.tolist(), "ytid": ytids[at],
                            "segment_start": float(starts[at])}))
                at += 1
    os.replace(tmp_rec, rec_path)
    os.replace(tmp_sup, sup_path)
    logger.info("wrote %d clips of %s as lhotse manifests in %s", len(pos), cache.folder, out)
    return lhotse.load_manifest_lazy(rec_path), lhotse.load_manifest_lazy(sup_path)


def _write_audio(out: Path, key: str, data: bytes, fmt: str) -> Path:
    """Write one clip's file (under a temporary name, then renamed) and return its path."""
    folder = out / "audio" / key[:2]
    folder.mkdir(parents=True, exist_ok=True)
    path = (folder / f"{key}.{fmt}").resolve()
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return path


__all__ = ["RECORDINGS_NAME", "SUPERVISIONS_NAME", "to_lhotse"]
