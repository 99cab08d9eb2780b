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
and later downloads of the split skip the clips imported.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import h5py
import numpy as np
import pandas as pd

from audioset_data.cache.codec import encode_clip
from audioset_data.cache.manifest import clip_key
from audioset_data.cache.reader import cache_dir
from audioset_data.cache.store import CacheWriter, FolderLock, open_manifest
from audioset_data.config import PathLike
from audioset_data.errors import CacheError, ConfigError
from audioset_data.segments.labels import LabelIndex

if TYPE_CHECKING:
    from audioset_data.segments.labels import LabelIndex
    from audioset_data.segments.table import Segments

logger = logging.getLogger(__name__)

#: ``Y`` + 11-character video id, then optionally ``_start`` and ``_end`` (seconds) and an
#: extension: ``Y--PJHxphWEs.wav``, ``Y--PJHxphWEs_30.000.wav``, ``--PJHxphWEs_30.000_40.000``.
_NAME = re.compile(r"Y?(?P<ytid>[A-Za-z0-9_-]{11})"
                   r"(?:_(?P<start>\d+(?:\.\d*)?)(?:_(?P<end>\d+(?:\.\d*)?))?)?"
                   r"(?:\.[A-Za-z0-9]+)?")
#: PANNs' sample rate, used when the file has no ``sample_rate`` attribute.
PANNS_SAMPLE_RATE = 32000
#: Share of rows whose labels may differ from the segment list before the label columns are
#: taken to be in another order (a list updated since packing changes a few rows, not most).
_MAX_LABEL_MISMATCH = 0.5


@dataclass
class PannsImport:
    """What :func:`import_panns` did.

    Attributes
    ----------
    folder
        The cache folder written.
    rows
        Rows in the PANNs file.
    imported
        Clips written to the cache.
    skipped
        Rows not imported: columns ``row``, ``audio_name``, ``reason`` (a placeholder for a
        missing clip, a name that is no video id, a duplicate, a clip already cached...).
    label_mismatches
        Imported rows whose labels differ from the segment list's (0 without a list).
    """

    folder: Path
    rows: int
    imported: int
    skipped: pd.DataFrame = field(default_factory=lambda: _skipped([], [], []))
    label_mismatches: int = 0

    def summary(self) -> dict[str, Any]:
        """Counts for printing: rows, imported, skipped by reason."""
        return {"folder": str(self.folder), "rows": self.rows, "imported": self.imported,
                "label_mismatches": self.label_mismatches,
                "skipped": {str(k): int(v) for k, v in
                            self.skipped["reason"].value_counts().items()}}


def _skipped(rows: list[int], names: list[str], reasons: list[str]) -> pd.DataFrame:
    return pd.DataFrame({"row": np.asarray(rows, dtype=np.int64),
                         "audio_name": pd.Series(names, dtype=object),
                         "reason": pd.Series(reasons, dtype=object)})


def parse_audio_name(name: str) -> tuple[str, float | None, float | None] | None:
    """``(ytid, start, end)`` of a PANNs ``audio_name`` (start and end None when the name has
    none), or None when the name is no video id."""
    m = _NAME.fullmatch(name.strip())
    if m is None:
        return None
    start, end = m.group("start"), m.group("end")
    return (m.group("ytid"), float(start) if start is not None else None,
            float(end) if end is not None else None)


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
    fmt: str = "pcm16",
    batch_size: int = 64,
    shard_size: int = 1000,
) -> PannsImport:
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
        (PANNs' own ``Y<ytid>.wav``); when given, each row's labels are also checked against
        the list's.
    label_index
        The index whose order the ``target`` columns follow (default: the official one).
    fmt
        Cache format: ``"pcm16"``, ``"flac"`` or ``"opus"``.
    batch_size, shard_size
        Rows read at a time; clips per cache shard.

    Returns
    -------
    PannsImport
        Counts and the rows skipped with their reasons.

    Raises
    ------
    CacheError
        The file lacks PANNs' datasets, its shapes disagree, its label columns do not fit the
        label index, or the cache was made with other settings.
    ConfigError
        No cache named, or the names carry no start time and no segment list is given.
    """
    if folder is None:
        if split is None:
            raise ConfigError("import_panns needs a split name or a cache folder")
        folder = cache_dir(split, root)
    folder = Path(folder)
    if batch_size < 1:
        raise ConfigError(f"batch_size={batch_size!r} must be at least 1")
    if label_index is None:
        label_index = LabelIndex.load(root=root)
    mids = np.array(label_index.mids, dtype=object)
    path = Path(h5_path)
    try:
        h5 = h5py.File(path, "r")
    except OSError as exc:
        raise CacheError(f"PANNs file {str(path)!r} cannot be read: {exc}") from None
    with h5:
        names, wave, target, sr = _open_datasets(h5, path, len(mids))
        plan = _plan(names, segments, label_index, target, path)
        folder.mkdir(parents=True, exist_ok=True)
        with FolderLock(folder / ".lock"):
            manifest = open_manifest(folder, fmt=fmt, sample_rate=sr,
                                     clip_samples=wave.shape[1], label_mids=list(mids))
            try:
                cached = {str(k) for k in manifest.keys_with_status("ok").to_pylist()}
                plan.skip_where(plan.key.isin(cached), "already cached")
                imported = _write(folder, manifest, plan, wave, target, mids, sr, fmt,
                                  batch_size, shard_size)
            finally:
                manifest.close()
    report = PannsImport(folder, len(names), imported, plan.skipped(),
                         plan.label_mismatches)
    if len(report.skipped):
        logger.warning("%s: %d of %d rows not imported (%s)", path, len(report.skipped),
                       len(names), report.summary()["skipped"])
    logger.info("%s: %d clips imported into %s", path, imported, folder)
    return report


def _open_datasets(h5: h5py.File, path: Path, n_labels: int
                   ) -> tuple[list[str], h5py.Dataset, np.ndarray, int]:
    missing = [d for d in ("audio_name", "waveform", "target") if d not in h5]
    if missing:
        hint = ("; it is an index file (hdf5_name, index_in_hdf5): import the waveform files "
                "it names, one by one") if "index_in_hdf5" in h5 else ""
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
    return names, wave, np.asarray(target[()], dtype=bool), sr


class _Plan:
    """Per row: key, ytid, start, end, and why it is skipped (empty: imported)."""

    def __init__(self, n: int):
        self.key = pd.Series([""] * n, dtype=object)
        self.ytid = [""] * n
        self.start = np.zeros(n)
        self.end = np.zeros(n)
        self.reason = np.full(n, "", dtype=object)
        self.names: list[str] = []
        self.label_mismatches = 0

    def skip_where(self, mask: Any, reason: str) -> None:
        mask = np.asarray(mask, dtype=bool) & (self.reason == "")
        self.reason[mask] = reason

    def skipped(self) -> pd.DataFrame:
        rows = np.flatnonzero(self.reason != "")
        return _skipped(rows.tolist(), [self.names[r] for r in rows],
                        self.reason[rows].tolist())


def _plan(names: list[str], segments: Segments | None, label_index: LabelIndex,
          target: np.ndarray, path: Path) -> _Plan:
    """Keys of every row, from the names (and the segment list where they lack a start)."""
    n = len(names)
    plan = _Plan(n)
    plan.names = names
    listed: dict[str, int] = {}
    repeated: set[str] = set()
    if segments is not None:
        if segments.label_index.mids != label_index.mids:
            raise ConfigError("the segment list uses another label index than the import")
        for i, y in enumerate(segments.ytids):
            if y in listed:
                repeated.add(y)
            listed[y] = i
    seg_start = segments.start if segments is not None else None
    seg_end = segments.end if segments is not None else None
    row_in_list = np.full(n, -1, dtype=np.int64)
    for r, name in enumerate(names):
        parsed = parse_audio_name(name) if name else None
        if parsed is None:
            plan.reason[r] = "no name" if not name else "name is not a video id"
            continue
        ytid, start, end = parsed
        plan.ytid[r] = ytid
        if start is None:
            if segments is None:
                raise ConfigError(
                    f"{str(path)!r}: names such as {name!r} carry no start time; pass the "
                    "segment list the file was packed from (segments=, --segments)")
            if ytid not in listed:
                plan.reason[r] = "video id not in the segment list"
                continue
            if ytid in repeated:
                plan.reason[r] = "video id listed more than once in the segment list"
                continue
            row_in_list[r] = listed[ytid]
            start, end = float(seg_start[listed[ytid]]), float(seg_end[listed[ytid]])
        elif ytid in listed and ytid not in repeated \
                and abs(float(seg_start[listed[ytid]]) - start) < 5e-4:
            row_in_list[r] = listed[ytid]
        plan.start[r] = start
        plan.end[r] = end if end is not None else start + 10.0
        plan.key[r] = clip_key(ytid, start)
    if segments is not None:
        _check_labels(plan, segments, target, row_in_list, path)
    dup = plan.key.duplicated(keep="first").to_numpy() & (plan.key != "").to_numpy()
    plan.skip_where(dup, "duplicate of an earlier row")
    return plan


def _check_labels(plan: _Plan, segments: Segments, target: np.ndarray,
                  row_in_list: np.ndarray, path: Path) -> None:
    """Rows found in the list must mostly carry the list's labels: otherwise the columns are
    in another order than the label index."""
    rows = np.flatnonzero(row_in_list >= 0)
    if not len(rows):
        return
    got = target[rows]
    want = segments.label_matrix[row_in_list[rows]].toarray().astype(bool)
    empty = ~got.any(axis=1)  # placeholders carry no labels: judged later, not here
    differ = (got != want).any(axis=1) & ~empty
    if differ.sum() > _MAX_LABEL_MISMATCH * max(int((~empty).sum()), 1):
        raise CacheError(
            f"{str(path)!r}: {int(differ.sum())} of {int((~empty).sum())} rows carry other "
            "labels than the segment list: the target columns are not in the label index's "
            "order (class_labels_indices.csv), or the list is not the one the file was "
            "packed from")
    plan.label_mismatches = int(differ.sum())
    if plan.label_mismatches:
        logger.warning("%s: %d rows carry other labels than the segment list; their own labels "
                       "are kept", path, plan.label_mismatches)


#: Why a placeholder row is skipped.
PLACEHOLDER = "placeholder (all-zero waveform and target: a clip PANNs did not have)"


def _write(folder: Path, manifest: Any, plan: _Plan, wave: h5py.Dataset, target: np.ndarray,
           mids: np.ndarray, sr: int, fmt: str, batch_size: int, shard_size: int) -> int:
    """Read the rows in blocks, mark placeholders, register and write the rest."""
    clip = wave.shape[1]
    writer = CacheWriter(folder, manifest, fmt=fmt, sample_rate=sr, clip_samples=clip,
                         label_mids=list(mids), batch_size=batch_size, shard_size=shard_size)
    imported = 0
    for lo in range(0, len(plan.names), batch_size):
        hi = min(lo + batch_size, len(plan.names))
        block = _as_int16(wave[lo:hi])
        empty = ~target[lo:hi].any(axis=1) & ~block.any(axis=1)
        plan.reason[lo:hi][empty] = PLACEHOLDER  # whatever else was wrong with the row
        rows = np.flatnonzero(plan.reason[lo:hi] == "")
        if not len(rows):
            continue
        manifest.add_segments(
            (plan.key[lo + r], plan.ytid[lo + r], float(plan.start[lo + r]),
             float(plan.end[lo + r]), ",".join(mids[target[lo + r]])) for r in rows)
        for r in rows:
            audio = block[r] if fmt == "pcm16" else encode_clip(block[r], sr, fmt)
            writer.add(plan.key[lo + r], plan.ytid[lo + r], float(plan.start[lo + r]),
                       float(plan.end[lo + r]), audio, clip, target[lo + r])
            imported += 1
    writer.close()
    return imported


__all__ = ["PANNS_SAMPLE_RATE", "PLACEHOLDER", "PannsImport", "import_panns", "parse_audio_name"]
