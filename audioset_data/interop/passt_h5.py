"""Read a split from a local copy in PaSST's (and EfficientAT's) HDF5 layout into the cache.

PaSST (Koutini et al., ``kkoutini/PaSST``, ``audioset/prepare_scripts``) converts PANNs' 32 kHz
WAV files to MP3 (``ffmpeg -codec:a mp3 -ar 32000``) and packs a split into one HDF5 file
(``balanced_train_segments_mp3.hdf``, ``eval_segments_mp3.hdf``,
``unbalanced_train_segments_mp3.hdf``); EfficientAT reads the same files. Its datasets:

``audio_name``
    ``S20`` bytes: ``Y<ytid>.mp3``, or ``NN/Y<ytid>.mp3`` in the unbalanced file (``NN`` the
    part). No start time: the segment list the file was packed from says it.
``mp3``
    Variable-length ``uint8``: each clip's whole MP3 file.
``target``
    ``uint8``, the 527 label columns (``class_labels_indices.csv`` order) packed with
    ``np.packbits`` along the label axis (66 bytes a row); the loaders unpack it with
    ``np.unpackbits(target, axis=-1, count=527)``. An unpacked boolean ``target`` is read too.

Only the clips the packer found are in the file, so there are no placeholder rows; an empty
``mp3`` row is still skipped and counted. The MP3 is decoded once (as PaSST's loader decodes
it: FFmpeg's MP3 decoder, gapless) and stored in the cache's format, FLAC unless told
otherwise, at the MP3's own rate: the cache cannot hold MP3 as it is (see
:mod:`.copies.decoding` for why it gets no MP3 format).
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
from .copies.report import ImportReport
from .copies.rows import Copy, blocks

if TYPE_CHECKING:
    from audioset_data.segments.table import Segments

logger = logging.getLogger(__name__)

def import_passt(
    h5_path: PathLike,
    split: str | None = None,
    root: PathLike | None = None,
    *,
    folder: PathLike | None = None,
    segments: Segments | None = None,
    label_index: LabelIndex | None = None,
    fmt: str | None = None,
    sample_rate: int | None = None,
    take_labels: str = "copy",
    batch_size: int = 64,
    shard_size: int = 1000,
    progress: bool | None = None,
) -> ImportReport:
    """Import the clips of a PaSST / EfficientAT MP3 HDF5 file into the cache of ``split``.

    Parameters
    ----------
    h5_path
        The file (e.g. ``eval_segments_mp3.hdf``).
    split, root, folder
        Cache to write: the cache of ``split`` under the data root, or an explicit folder.
    segments
        The segment list the file was packed from: its names carry no start time, so the list
        gives each clip's start and end; rows it does not name are skipped as unlisted, and
        each row's labels are checked against the list's.
    label_index
        The index whose order the packed ``target`` columns follow (default: the official one).
    fmt
        Cache format (``"flac"``, ``"opus"``, ``"pcm16"``; None: the existing cache's, else
        FLAC, which keeps the decoded MP3 samples exactly).
    sample_rate
        Cache sample rate (None: the existing cache's, else the MP3's own, 32 kHz).
    take_labels
        ``"copy"`` keeps each row's own labels, ``"list"`` takes the segment list's.
    batch_size, shard_size
        Rows read at a time; clips per cache shard.
    progress
        Show a progress bar (None: when writing to a terminal).

    Returns
    -------
    ImportReport
        Counts, the rows skipped with their reasons, damaged rows named.

    Raises
    ------
    CacheError
        The file lacks PaSST's datasets, its packed labels do not fit the label index, its
        label columns are in another order than the list's, or the cache was made with other
        settings.
    ConfigError
        No cache or no segment list given.
    """
    target_folder = cache_folder(split, root, folder, "import_passt")
    if segments is None:
        raise ConfigError(f"{str(h5_path)!r}: PaSST's names (Y<ytid>.mp3) carry no start time; "
                          "pass the segment list the file was packed from (segments=, "
                          "--segments)")
    if batch_size < 1:
        raise ConfigError(f"batch_size={batch_size!r} must be at least 1")
    if label_index is None:
        label_index = LabelIndex.load(root=root)
    path = Path(h5_path)
    try:
        h5 = h5py.File(path, "r")
    except OSError as exc:
        raise CacheError(f"PaSST file {str(path)!r} cannot be read: {exc}") from None
    with h5:
        copy = _copy(h5, path, len(label_index), batch_size)
        return import_copy(copy, target_folder, segments=segments, label_index=label_index,
                           fmt=fmt, default_fmt="flac", sample_rate=sample_rate,
                           take_labels=take_labels, batch_size=batch_size,
                           shard_size=shard_size, progress=progress)


def unpack_targets(target: np.ndarray, n_labels: int, path: str) -> np.ndarray:
    """The boolean label matrix of PaSST's ``target``: bit-packed ``uint8`` rows (``np.packbits``
    along the labels) or already boolean."""
    target = np.asarray(target)
    if target.ndim != 2:
        raise CacheError(f"{path!r}: target has shape {target.shape}, not rows x labels")
    if target.shape[1] == n_labels and target.dtype in (np.bool_, np.uint8) \
            and (target.dtype == np.bool_ or target.max(initial=0) <= 1):
        return target.astype(bool)
    packed = -(-n_labels // 8)
    if target.dtype != np.uint8 or target.shape[1] != packed:
        raise CacheError(f"{path!r}: target is {target.dtype} with {target.shape[1]} columns; "
                         f"the label index's {n_labels} labels pack into {packed} uint8 columns "
                         "(np.packbits): give the label index the file was packed with")
    return np.unpackbits(target, axis=-1, count=n_labels).astype(bool)


def _copy(h5: h5py.File, path: Path, n_labels: int, batch_size: int) -> Copy:
    """The rows of a PaSST file: names, unpacked labels, and the MP3 bytes on demand."""
    missing = [d for d in ("audio_name", "mp3", "target") if d not in h5]
    if missing:
        hint = ("; it holds waveforms: import it as PANNs' layout (`audioset import panns`)"
                if "waveform" in h5 else "")
        raise CacheError(f"{str(path)!r} is not in PaSST's layout: no dataset "
                         f"{missing[0]!r}{hint}")
    mp3, target = h5["mp3"], h5["target"]
    n = h5["audio_name"].shape[0]
    if mp3.shape != (n,) or target.shape[0] != n:
        raise CacheError(f"{str(path)!r}: audio_name {h5['audio_name'].shape}, mp3 "
                         f"{mp3.shape} and target {target.shape} do not hold the same rows")
    names = [(x.decode("utf-8", "replace") if isinstance(x, bytes) else str(x)).strip("\0 ")
             for x in h5["audio_name"][()]]
    labels = sp.csr_array(unpack_targets(target[()], n_labels, str(path)))

    def read(rows: np.ndarray) -> Iterator[tuple[int, bytes]]:
        for lo, hi, inside in blocks(rows, batch_size):
            block = mp3[lo:min(hi, n)]
            for r in inside.tolist():
                yield r, np.asarray(block[r - lo], dtype=np.uint8).tobytes()

    return Copy(str(path), names, [parse_clip_name(x) if x else None for x in names], labels,
                read, columns=True)


__all__ = ["import_passt", "unpack_targets"]
