"""The import of a copy into the cache (:func:`import_copy`).

An importer (:mod:`~audioset_data.interop.panns`, :mod:`~audioset_data.interop.passt_h5`,
:mod:`~audioset_data.interop.hf_parquet`, :mod:`~audioset_data.interop.wds_import`) describes
its copy as a :class:`~.rows.Copy`: one name, video id, start, end and label row per clip, read
up front (names and labels are small), and the audio of any rows on demand.
:func:`import_copy` then

1. matches every row to the segment list by video id and start
   (:class:`~.matching.SegmentMatcher`): a row whose id or start the list lacks is *unlisted*,
   a row the list names is imported with the list's start and end; rows whose labels differ
   from the list's are counted;
2. skips rows already cached (so a second run, or a run after a kill, imports only the rest),
   duplicates, placeholders (PANNs' all-zero rows) and empty rows;
3. decodes each remaining clip once (:mod:`.decoding`, which also says when a clip's bytes are
   stored as they are): a row that does not decode is *damaged*, counted and named, and the
   import goes on;
4. writes the clips through the project's own :class:`~audioset_data.cache.store.CacheWriter`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
from tqdm.auto import tqdm

from audioset_data.cache.codec import encode_clip
from audioset_data.cache.manifest import MANIFEST_NAME, Manifest
from audioset_data.cache.shards import check_format
from audioset_data.cache.store import CacheWriter, FolderLock, open_manifest
from audioset_data.config import PathLike
from audioset_data.errors import CacheError, ConfigError
from audioset_data.segments.labels import LabelIndex
from audioset_data.segments.table import Segments

from .decoding import _as_is, decode_any
from .matching import _check_column_order, _mismatches, _Plan, _plan
from .report import CACHED, DAMAGED, EMPTY, PLACEHOLDER, ImportReport, _frame
from .rows import CLIP_SECONDS, Copy

logger = logging.getLogger(__name__)

@dataclass
class _Settings:
    fmt: str
    sample_rate: int | None
    clip_samples: int | None


def _existing(folder: Path) -> dict[str, str | None]:
    """The settings a cache folder was made with (all None when it has no manifest yet)."""
    path = folder / MANIFEST_NAME
    if not path.is_file():
        return {"format": None, "sample_rate": None, "clip_samples": None}
    with Manifest.open(path, readonly=True) as manifest:
        return {k: manifest.get_meta(k) for k in ("format", "sample_rate", "clip_samples")}


def _settings(folder: Path, copy: Copy, fmt: str | None, sample_rate: int | None,
              default_fmt: str) -> _Settings:
    old = _existing(folder)
    if copy.pcm:  # samples are written as they are: the cache must take the copy's settings
        sample_rate = copy.sample_rate
    for name, given in (("format", fmt), ("sample_rate", sample_rate)):
        if given is not None and old[name] is not None and str(given) != old[name]:
            raise CacheError(f"cache {str(folder)!r} was made with {name}={old[name]}, not "
                             f"{given}; import into another cache, or with the same setting "
                             "(leave it out to take the cache's)")
    fmt = fmt or old["format"] or default_fmt
    check_format(fmt)
    if copy.pcm:
        return _Settings(fmt, copy.sample_rate, copy.clip_samples)
    rate = sample_rate or (int(old["sample_rate"]) if old["sample_rate"] else None) \
        or copy.sample_rate
    clip = int(old["clip_samples"]) if old["clip_samples"] else copy.clip_samples
    if rate is not None and int(rate) <= 0:
        raise ConfigError(f"sample_rate={sample_rate!r} must be positive")
    return _Settings(fmt, int(rate) if rate else None, clip)


def import_copy(
    copy: Copy,
    folder: PathLike,
    *,
    segments: Segments | None,
    label_index: LabelIndex,
    fmt: str | None = None,
    default_fmt: str = "flac",
    sample_rate: int | None = None,
    take_labels: str = "copy",
    batch_size: int = 64,
    shard_size: int = 1000,
    progress: bool | None = None,
) -> ImportReport:
    """Match ``copy`` to ``segments``, then decode and write the rows it may import into the
    cache at ``folder``; see the module docstring for what is checked.

    ``fmt`` and ``sample_rate`` default to those of the cache already at ``folder``, else to
    ``default_fmt`` and the copy's own rate. ``take_labels`` is ``"copy"`` (keep each clip's
    own labels) or ``"list"`` (the segment list's, for the rows it names).
    """
    if take_labels not in ("copy", "list"):
        raise ConfigError(f"take_labels={take_labels!r}: choose 'copy' or 'list'")
    if take_labels == "list" and segments is None:
        raise ConfigError("take_labels='list' needs the segment list (segments=, --segments)")
    if batch_size < 1:
        raise ConfigError(f"batch_size={batch_size!r} must be at least 1")
    if copy.target.shape[1] != len(label_index):
        raise CacheError(f"{copy.path!r}: its labels have {copy.target.shape[1]} columns, the "
                         f"label index {len(label_index)}; give the label index it was made with")
    if segments is not None and tuple(segments.label_index.mids) != tuple(label_index.mids):
        raise ConfigError("the segment list uses another label index than the import")
    folder = Path(folder)
    mids = np.array(label_index.mids, dtype=object)
    plan = _plan(copy, segments)
    if segments is not None and copy.columns:
        _check_column_order(copy, segments, plan)
    target = copy.target
    if take_labels == "list" and segments is not None:
        listed = (plan.list_row >= 0).astype(np.int8)
        from_list = segments.label_matrix[np.where(listed, plan.list_row, 0)]
        own = sp.diags_array(1 - listed, dtype=np.int8) @ copy.target.astype(np.int8)
        given = sp.diags_array(listed, dtype=np.int8) @ from_list.astype(np.int8)
        target = sp.csr_array((own + given) != 0)
    folder.mkdir(parents=True, exist_ok=True)
    with FolderLock(folder / ".lock"):
        settings = _settings(folder, copy, fmt, sample_rate, default_fmt)
        cached: set[str] = set()
        if (folder / MANIFEST_NAME).is_file():
            with Manifest.open(folder / MANIFEST_NAME) as manifest:
                cached = {str(k) for k in manifest.keys_with_status("ok").to_pylist()}
        reason = copy.reason
        for r, key in enumerate(plan.key):
            if key in cached and not reason[r]:
                reason[r] = CACHED
        writer = _Writer(folder, settings, mids, batch_size, shard_size)
        details = np.full(len(copy.names), "", dtype=object)
        for r, text in copy.details.items():
            details[r] = text
        todo = np.flatnonzero(reason == "")
        bar = tqdm(total=len(todo), unit="clip", desc="import", dynamic_ncols=True,
                   disable=None if progress is None else not progress)
        try:
            with bar:
                for r, audio in copy.read(todo):
                    bar.update(1)
                    _one(copy, plan, target, writer, r, audio, details)
        except BaseException:
            # keep what was imported before the interruption: a second run resumes after it
            try:
                writer.close()
            except Exception as exc:  # the first error is the one to report
                logger.warning("%s: could not publish the clips imported so far: %s",
                               folder, exc)
            raise
        writer.close()
    imported_rows = np.asarray(writer.rows, dtype=np.int64)
    skipped = np.flatnonzero(reason != "")
    report = ImportReport(
        folder, copy.path, len(copy.names), writer.imported, writer.as_is,
        _frame(skipped.tolist(), [copy.sources[r] for r in skipped],
               [copy.names[r] for r in skipped], reason[skipped].tolist(),
               details[skipped].tolist()),
        unknown_labels=dict(copy.unknown_labels))
    if segments is not None:
        report.label_mismatches = _mismatches(copy, segments, plan, imported_rows, mids)
        held = np.zeros(len(segments), dtype=bool)
        found = plan.list_row[(plan.list_row >= 0) & np.isin(reason, ["", CACHED])]
        held[found] = True
        report.listed_not_in_copy = int((~held).sum())
    _log(report)
    return report


def _log(report: ImportReport) -> None:
    s = report.summary()
    problems = {k: v for k, v in s["skipped"].items() if k != CACHED}
    if problems:
        logger.warning("%s: %d of %d rows not imported (%s)", report.path,
                       sum(problems.values()), report.rows, problems)
    if s["already_cached"]:
        logger.info("%s: %d rows already cached", report.path, s["already_cached"])
    if s["label_mismatches"]:
        logger.warning("%s: %d imported rows carry other labels than the segment list",
                       report.path, s["label_mismatches"])
    if s["damaged"]:
        logger.warning("%s: %d rows do not decode, e.g. %s", report.path, len(s["damaged"]),
                       s["damaged"][0])
    logger.info("%s: %d clips imported into %s (%d stored as they were)", report.path,
                report.imported, report.folder, report.stored_as_is)


class _Writer:
    """The cache writer, opened on the first clip (whose rate fixes the cache's when neither
    the caller nor an earlier cache did)."""

    def __init__(self, folder: Path, settings: _Settings, mids: np.ndarray, batch_size: int,
                 shard_size: int):
        self.folder = folder
        self.settings = settings
        self.mids = mids
        self.batch_size = batch_size
        self.shard_size = shard_size
        self.manifest: Manifest | None = None
        self.writer: CacheWriter | None = None
        self.pending: list[tuple[str, str, float, float, np.ndarray, Any, int]] = []
        self.rows: list[int] = []
        self.imported = 0
        self.as_is = 0

    def open(self, sample_rate: int) -> None:
        s = self.settings
        if s.sample_rate is None:
            s.sample_rate = int(sample_rate)
        if s.clip_samples is None:
            s.clip_samples = int(round(CLIP_SECONDS * s.sample_rate))
        self.manifest = open_manifest(self.folder, fmt=s.fmt, sample_rate=s.sample_rate,
                                      clip_samples=s.clip_samples, label_mids=list(self.mids))
        self.writer = CacheWriter(self.folder, self.manifest, fmt=s.fmt,
                                  sample_rate=s.sample_rate, clip_samples=s.clip_samples,
                                  label_mids=list(self.mids), batch_size=self.batch_size,
                                  shard_size=self.shard_size)

    def add(self, row: int, key: str, ytid: str, start: float, end: float,
            target: np.ndarray, audio: Any, length: int, as_is: bool) -> None:
        self.pending.append((key, ytid, start, end, target, audio, length))
        self.rows.append(row)
        self.imported += 1
        self.as_is += int(as_is)
        if len(self.pending) >= self.batch_size:
            self.flush()

    def flush(self) -> None:
        """Register the pending clips in the manifest, then hand them to the writer."""
        if not self.pending:
            return
        if self.manifest is None or self.writer is None:
            raise CacheError(f"{str(self.folder)!r}: clips queued before the cache was opened")
        self.manifest.add_segments((k, y, s, e, ",".join(self.mids[t])) for k, y, s, e, t, _, _
                                   in self.pending)
        for key, ytid, start, end, target, audio, length in self.pending:
            self.writer.add(key, ytid, start, end, audio, length, target)
        self.pending = []

    def close(self) -> None:
        try:
            if self.writer is not None:
                self.flush()
                self.writer.close()
        finally:
            if self.manifest is not None:
                self.manifest.close()


def _one(copy: Copy, plan: _Plan, target: sp.csr_array, writer: _Writer, r: int, audio: Any,
         details: np.ndarray) -> None:
    """Check, convert and queue one row's audio (or mark why it is skipped)."""
    reason = copy.reason
    labels = np.zeros(target.shape[1], dtype=bool)
    labels[target[[r]].indices] = True
    s = writer.settings
    if isinstance(audio, np.ndarray):  # int16 samples at the copy's rate (PANNs)
        if not audio.any() and not copy.target[[r]].nnz:
            reason[r] = PLACEHOLDER
            return
        if writer.writer is None:
            writer.open(int(copy.sample_rate or 0))
        clip = np.asarray(audio, dtype=np.int16)[: s.clip_samples]
        stored: Any = clip if s.fmt == "pcm16" else encode_clip(clip, s.sample_rate, s.fmt)
        writer.add(r, plan.key[r], plan.ytid[r], float(plan.start[r]), float(plan.end[r]),
                   labels, stored, len(clip), False)
        return
    if isinstance(audio, Exception):  # the copy's reader met a broken row
        reason[r] = DAMAGED
        details[r] = str(audio)
        return
    data = bytes(audio) if audio is not None else b""
    if not data:
        reason[r] = EMPTY
        return
    try:
        dec = decode_any(data, s.sample_rate, s.clip_samples)
    except CacheError as exc:
        reason[r] = DAMAGED
        details[r] = str(exc)
        return
    if writer.writer is None:
        writer.open(dec.sample_rate)
        if s.clip_samples is not None and len(dec.pcm) > s.clip_samples:
            dec.pcm = dec.pcm[: s.clip_samples]
    length = len(dec.pcm)
    as_is = _as_is(data, dec, s.fmt, length)
    if as_is:
        stored = data
    elif s.fmt == "pcm16":
        stored = dec.pcm
    else:
        stored = encode_clip(dec.pcm, s.sample_rate, s.fmt)
    writer.add(r, plan.key[r], plan.ytid[r], float(plan.start[r]), float(plan.end[r]), labels,
               stored, length, as_is)


__all__ = ["import_copy"]
