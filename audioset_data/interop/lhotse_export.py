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
from audioset_data.errors import AudioSetError, ConfigError, ExportError

from . import (
    audio_bytes,
    check_audio_format,
    clip_batches,
    clip_table,
    label_names,
    positions_of,
    require,
    target_folder,
    unwritable,
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
        Replace existing manifests and audio files. Without it the export writes nothing
        when a file it would write (a manifest, or the audio file of a clip) already exists.

    Returns
    -------
    tuple
        ``(RecordingSet, SupervisionSet)``, opened lazily from the written manifests;
        ``lhotse.CutSet.from_manifests(recordings=..., supervisions=...)`` joins them.

    Raises
    ------
    ConfigError
        ``lhotse`` is not installed, a setting is invalid, or the manifests exist.
    ExportError
        ``out`` is a file, lies under one, or cannot be written; or audio files the export
        would write exist already (without ``overwrite``).
    """
    lhotse = require("lhotse", "lhotse")
    fmt = check_audio_format(audio_format)
    pos = positions_of(cache, positions)
    out = Path(out)
    rec_path, sup_path = out / RECORDINGS_NAME, out / SUPERVISIONS_NAME
    if not overwrite and (rec_path.exists() or sup_path.exists()):
        raise ConfigError(f"manifests exist in {str(out)!r}; pass overwrite=True to replace "
                          "them")
    out = target_folder(out)
    mids = list(cache.label_mids)
    names = label_names(mids, label_index)
    sr = cache.sample_rate
    meta = clip_table(cache, pos)
    keys, ytids = meta["key"].to_pylist(), meta["ytid"].to_pylist()
    starts = meta["start"].to_numpy()
    if not overwrite:
        _refuse_foreign_files(out, keys, fmt)
    tmp_rec = rec_path.with_name(f".tmp-{rec_path.name}")  # lhotse gzips by the suffix
    tmp_sup = sup_path.with_name(f".tmp-{sup_path.name}")
    try:
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
    except OSError as exc:
        if isinstance(exc, AudioSetError):
            raise
        raise unwritable(out, exc) from None
    finally:
        tmp_rec.unlink(missing_ok=True)
        tmp_sup.unlink(missing_ok=True)
    logger.info("wrote %d clips of %s as lhotse manifests in %s", len(pos), cache.folder, out)
    return lhotse.load_manifest_lazy(rec_path), lhotse.load_manifest_lazy(sup_path)


def _audio_path(out: Path, key: str, fmt: str) -> Path:
    """Where the audio file of clip ``key`` goes (a few thousand folders, never a million
    files in one)."""
    return out / "audio" / key[:2] / f"{key}.{fmt}"


def _refuse_foreign_files(out: Path, keys: list[str], fmt: str) -> None:
    """Refuse, before anything is written, to replace files this export did not write."""
    there = [p for p in (_audio_path(out, k, fmt) for k in keys) if os.path.lexists(p)]
    if there:
        raise ExportError(
            f"{len(there)} audio files the export would write already exist in {str(out)!r} "
            f"(e.g. {str(there[0])!r}) and were not written by this export; choose an empty "
            "folder, or pass overwrite=True to replace them")


def _write_audio(out: Path, key: str, data: bytes, fmt: str) -> Path:
    """Write one clip's file (under a temporary name, then renamed) and return its path."""
    path = _audio_path(out, key, fmt)
    path.parent.mkdir(parents=True, exist_ok=True)
    path = path.resolve()
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return path


__all__ = ["RECORDINGS_NAME", "SUPERVISIONS_NAME", "to_lhotse"]
