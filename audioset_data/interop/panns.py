"""Read a split from a local copy in PANNs' HDF5 layout into the project's cache.

PANNs (Kong et al., ``audioset_tagging_cnn``) packs a split into one HDF5 file with the
datasets ``audio_name`` (bytes such as ``b"Y--PJHxphWEs.wav"``: ``Y``, the video id, maybe
``_start`` or ``_start_end`` seconds, an extension), ``waveform`` (int16, clips × samples,
32 kHz, padded with zeros to 10 s; float32 in early versions), ``target`` (bool, clips × 527,
columns in ``class_labels_indices.csv`` order) and a ``sample_rate`` attribute. The file is
allocated for every row of the segment list before the audio is read, so a clip that was
missing stays an all-zero row (no name, no labels, silence): those placeholders are reported
and skipped, never imported as clips (PANNs issue 68).

:func:`import_panns` maps each row to the project's key
(:func:`~audioset_data.cache.manifest.clip_key` of the video id and start: from the name, else from
the segment list the file was packed from), checks the label columns against the label index, and
writes the rows through the project's own writer, so the cache is the one a download would have made
and later downloads of the split skip the clips imported. The matching, the checks and the report
are the ones every import shares (:mod:`.copies`); the samples are stored as they are (``pcm16``)
or encoded once (``flac``, ``opus``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import h5py
import numpy as np
import scipy.sparse as sp

from audioset_data.config import PathLike
from audioset_data.errors import CacheError, ConfigError
from audioset_data.segments.labels import LabelIndex

from .copies.importer import import_copy
from .copies.names import cache_folder, parse_clip_name
from .copies.report import PLACEHOLDER, ImportReport
from .copies.rows import Copy, blocks

if TYPE_CHECKING:
    from audioset_data.segments.table import Segments

logger = logging.getLogger(__name__)

#: PANNs' sample rate, used when the file has no ``sample_rate`` attribute.
PANNS_SAMPLE_RATE = 32000
#: What :func:`import_panns` returns (the report every import gives).
PannsImport = ImportReport
#: ``(ytid, start, end)`` of a PANNs ``audio_name`` (see
#: :func:`.copies.names.parse_clip_name`).
parse_audio_name = parse_clip_name


def _as_int16(block: np.ndarray) -> np.ndarray:
    if block.dtype == np.int16:
        return block
    if np.issubdtype(block.dtype, np.floating):  # early PANNs files: float32 in [-1, 1]
        return np.round(np.clip(block, -1.0, 1.0) * 32767.0).astype(np.int16)
    raise CacheError(f"waveform dtype {block.dtype} is neither int16 nor float")


def import_panns(
    h5_path: PathLike,
    split: str | None = None,
    root: PathLike | None = None,
    *,
    folder: PathLike | None = None,
    segments: Segments | None = None,
    label_index: LabelIndex | None = None,
    fmt: str | None = "pcm16",
    take_labels: str = "copy",
    batch_size: int = 64,
    shard_size: int = 1000,
    progress: bool | None = None,
) -> ImportReport:
    """Import the clips of a PANNs HDF5 file into the cache of ``split`` (or ``folder``).

    Parameters
    ----------
    h5_path
        The PANNs file (e.g. ``balanced_train.h5``).
    split, root
        Cache to write: :func:`~audioset_data.cache.reader.cache_dir` of ``split`` under the
        data root.
    folder
        An explicit cache folder instead of ``split``.
    segments
        The segment list the file was packed from. Needed when the names carry no start time
        (PANNs' own ``Y<ytid>.wav``); when given, rows it does not name are skipped as unlisted
        and each row's labels are checked against the list's.
    label_index
        The index whose order the ``target`` columns follow (default: the official one).
    fmt
        Cache format: ``"pcm16"``, ``"flac"`` or ``"opus"`` (None: the existing cache's, else
        ``pcm16``).
    take_labels
        ``"copy"`` keeps each row's own labels, ``"list"`` takes the segment list's.
    batch_size, shard_size
        Rows read at a time; clips per cache shard.
    progress
        Show a progress bar (None: when writing to a terminal).

    Returns
    -------
    ImportReport
        Counts, and the rows skipped with their reasons.

    Raises
    ------
    CacheError
        The file lacks PANNs' datasets, its shapes disagree, its label columns do not fit the
        label index, or the cache was made with other settings.
    ConfigError
        No cache named, or the names carry no start time and no segment list is given.
    """
    folder = cache_folder(split, root, folder, "import_panns")
    if batch_size < 1:
        raise ConfigError(f"batch_size={batch_size!r} must be at least 1")
    if label_index is None:
        label_index = LabelIndex.load(root=root)
    path = Path(h5_path)
    try:
        h5 = h5py.File(path, "r")
    except OSError as exc:
        raise CacheError(f"PANNs file {str(path)!r} cannot be read: {exc}") from None
    with h5:
        copy = _copy(h5, path, len(label_index), batch_size)
        return import_copy(copy, folder, segments=segments, label_index=label_index, fmt=fmt,
                           default_fmt="pcm16", take_labels=take_labels,
                           batch_size=batch_size, shard_size=shard_size, progress=progress)


def _copy(h5: h5py.File, path: Path, n_labels: int, batch_size: int) -> Copy:
    """The rows of a PANNs file: names, labels, and its waveforms read block by block."""
    missing = [d for d in ("audio_name", "waveform", "target") if d not in h5]
    if missing:
        hint = ""
        if "index_in_hdf5" in h5:
            hint = ("; it is an index file (hdf5_name, index_in_hdf5): import the waveform "
                    "files it names, one by one")
        elif "mp3" in h5:
            hint = "; it holds MP3 bytes: import it as PaSST's layout (`audioset import passt`)"
        raise CacheError(f"{str(path)!r} is not in PANNs' layout: no dataset "
                         f"{missing[0]!r}{hint}")
    wave, target = h5["waveform"], h5["target"]
    n = h5["audio_name"].shape[0]
    if wave.ndim != 2 or target.ndim != 2 or wave.shape[0] != n or target.shape[0] != n:
        raise CacheError(f"{str(path)!r}: audio_name {h5['audio_name'].shape}, waveform "
                         f"{wave.shape} and target {target.shape} do not hold the same rows")
    if target.shape[1] != n_labels:
        raise CacheError(f"{str(path)!r}: target has {target.shape[1]} label columns, the "
                         f"label index {n_labels}; give the label index it was packed with")
    sr = int(h5.attrs.get("sample_rate", PANNS_SAMPLE_RATE))
    names = [(x.decode("utf-8", "replace") if isinstance(x, bytes) else str(x)).strip("\0 ")
             for x in h5["audio_name"][()]]
    # labels are small (a 50,000-row PANNs part: 26 MB): read once
    labels = sp.csr_array(np.asarray(target[()], dtype=bool))
    reason = np.full(n, "", dtype=object)
    # PANNs allocates every row of its list and leaves a clip it did not get unnamed and
    # unlabelled: a placeholder, known without reading its waveform
    unnamed = np.array([not name for name in names], dtype=bool)
    reason[unnamed & (np.diff(labels.indptr) == 0)] = PLACEHOLDER

    def read(rows: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
        for lo, hi, inside in blocks(rows, batch_size):
            block = _as_int16(wave[lo:min(hi, n)])
            for r in inside.tolist():
                yield r, block[r - lo]

    return Copy(str(path), names, [parse_clip_name(x) if x else None for x in names], labels,
                read, reason=reason, columns=True, sample_rate=sr,
                clip_samples=int(wave.shape[1]), pcm=True)


__all__ = ["PANNS_SAMPLE_RATE", "PLACEHOLDER", "PannsImport", "import_panns", "parse_audio_name"]
