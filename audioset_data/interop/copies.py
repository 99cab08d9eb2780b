"""What every import of an existing copy shares: clip names to keys, the segment-list check,
decoding, the writes into the cache, and the report of what was skipped and why.

An importer (:mod:`.panns`, :mod:`.passt_h5`, :mod:`.hf_parquet`, :mod:`.wds_import`) describes
its copy as a :class:`Copy`: one name, video id, start, end and label row per clip, read up front
(names and labels are small), and the audio of any rows on demand. :func:`import_copy` then

1. matches every row to the segment list by video id and start (:class:`SegmentMatcher`): a
   row whose id or start the list lacks is *unlisted*, a row the list names is imported with
   the list's start and end; rows whose labels differ from the list's are counted;
2. skips rows already cached (so a second run, or a run after a kill, imports only the rest),
   duplicates, placeholders (PANNs' all-zero rows) and empty rows;
3. decodes each remaining clip once: a row that does not decode is *damaged*, counted and
   named, and the import goes on;
4. writes the clips through the project's own :class:`~audioset_data.cache.store.CacheWriter`.

Audio formats. The cache holds mono 16-bit audio at one sample rate per cache, as raw PCM
(``pcm16``) or as FLAC or Ogg Opus bytes that the reader decodes at read time
(:mod:`audioset_data.cache.codec`). A copy's clip is stored **as it is** when its bytes are
already what the cache would hold: the same codec as the cache's format (FLAC into a ``flac``
cache, Ogg Opus into an ``opus`` one), one channel, and the cache's sample rate. The bytes are
decoded once anyway, to find the clip's length and to refuse damaged ones, and the reader's own
decoder must return the very samples the import checked. Everything else is decoded and
resampled once, with the same FFmpeg libraries the reader uses, and stored in the cache's
format: MP3 (PaSST, EfficientAT), stereo or 44.1 kHz FLAC (some Hugging Face rows), WAV, or
any clip at another rate than the cache's. MP3 is not made a cache format of its own: every
reader, the repair and the downloader would have to learn a fourth format that only imports
could write, and MP3's encoder delay makes a clip's sample count depend on how the file was
made; stored as FLAC, a cache holds exactly the samples PaSST's loader decodes, losslessly.
"""

from __future__ import annotations

import glob
import io
import logging
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av
import numpy as np
import pandas as pd
import scipy.sparse as sp
from tqdm.auto import tqdm

from audioset_data.cache.codec import FORMATS as ENCODED_FORMATS
from audioset_data.cache.codec import decode_clip, encode_clip
from audioset_data.cache.manifest import MANIFEST_NAME, Manifest, clip_key
from audioset_data.cache.reader import cache_dir
from audioset_data.cache.shards import check_format
from audioset_data.cache.store import CacheWriter, FolderLock, open_manifest
from audioset_data.config import PathLike
from audioset_data.errors import CacheError, ConfigError, UnknownClassError
from audioset_data.segments.labels import LabelIndex
from audioset_data.segments.table import Segments

logger = logging.getLogger(__name__)

#: Video id with an optional ``Y`` in front, then optionally ``_start`` and ``_end`` and an
#: extension: ``Y--PJHxphWEs.wav``, ``Y--PJHxphWEs_30.000.wav``, ``--PJHxphWEs_30000``.
_NAME = re.compile(r"Y?(?P<ytid>[A-Za-z0-9_-]{11})"
                   r"(?:_(?P<start>\d+(?:\.\d*)?)(?:_(?P<end>\d+(?:\.\d*)?))?)?"
                   r"(?:\.[A-Za-z0-9]+)?")
#: Seconds within which a start read from a name equals a listed start (names round to ms).
_START_TOLERANCE = 5e-4
#: Length of an AudioSet clip, for the cache's clip length when the copy does not say.
CLIP_SECONDS = 10.0
#: Share of rows whose label columns may differ from the segment list before the columns are
#: taken to be in another order (a list updated since packing changes a few rows, not most).
_MAX_LABEL_MISMATCH = 0.5

# -- why a row is not imported ------------------------------------------------------------------
PLACEHOLDER = "placeholder (all-zero waveform and target: a clip PANNs did not have)"
EMPTY = "empty (no audio bytes)"
DAMAGED = "damaged (the audio does not decode)"
NO_NAME = "no name"
NOT_AN_ID = "name is not a video id"
UNLISTED_ID = "video id not in the segment list"
UNLISTED_START = "start time not in the segment list"
REPEATED_ID = "video id listed more than once in the segment list"
DUPLICATE = "duplicate of an earlier row"
CACHED = "already cached"
#: The reasons that mean "the segment list does not name this clip".
UNLISTED = (UNLISTED_ID, UNLISTED_START)


def parse_clip_name(name: str) -> tuple[str, float | None, float | None] | None:
    """``(ytid, start, end)`` of a clip file name (start and end None when the name has none),
    or None when the name is no video id.

    Folders in front are dropped (PaSST's ``00/Y<id>.mp3``, Hugging Face's
    ``audio/bal_train/<id>.flac``); then ``Y`` and the 11-character id, optionally ``_start``
    and ``_end`` in seconds, and an extension.

    >>> parse_clip_name("00/Y--PJHxphWEs.mp3")
    ('--PJHxphWEs', None, None)
    >>> parse_clip_name("--PJHxphWEs_30.000_40.000.flac")
    ('--PJHxphWEs', 30.0, 40.0)
    """
    base = re.split(r"[/\\]", name.strip())[-1]
    m = _NAME.fullmatch(base)
    if m is None:
        return None
    start, end = m.group("start"), m.group("end")
    return (m.group("ytid"), float(start) if start is not None else None,
            float(end) if end is not None else None)


def cache_folder(split: str | None, root: PathLike | None, folder: PathLike | None,
                 who: str) -> Path:
    """The cache an import writes: ``folder``, else the cache of ``split`` under the root."""
    if folder is not None:
        return Path(folder)
    if split is None:
        raise ConfigError(f"{who} needs a split name or a cache folder")
    return cache_dir(split, root)


def expand_paths(path: PathLike, suffixes: Sequence[str], what: str) -> list[Path]:
    """The files ``path`` names: the file itself, the files ending in ``suffixes`` under a
    folder (recursively, sorted), or those a glob pattern matches (sorted)."""
    p = Path(path)
    if p.is_file():
        return [p]
    if p.is_dir():
        found = sorted(f for f in p.rglob("*") if f.is_file() and f.name.endswith(tuple(suffixes)))
    else:
        found = sorted(Path(f) for f in glob.glob(str(path), recursive=True) if Path(f).is_file())
    if not found:
        kinds = " or ".join(f"*{s}" for s in suffixes)
        raise ConfigError(f"{what}: {str(path)!r} is no file, no folder holding {kinds} files, "
                          "and no glob pattern matching any; give the path of the copy")
    return found


def label_columns(values: Iterable[Any], label_index: LabelIndex
                  ) -> tuple[list[int], list[str]]:
    """Columns of labels given as mids, display names or column numbers; and the values that
    name no label of ``label_index``."""
    cols: list[int] = []
    unknown: list[str] = []
    for v in values:
        if isinstance(v, bool):
            unknown.append(str(v))
        elif isinstance(v, int | np.integer):
            if 0 <= int(v) < len(label_index):
                cols.append(int(v))
            else:
                unknown.append(str(v))
        else:
            try:
                cols.append(label_index.index(str(v)))
            except UnknownClassError:
                unknown.append(str(v))
    return cols, unknown


def rows_to_matrix(cols: Sequence[Sequence[int]], n_labels: int) -> sp.csr_array:
    """A boolean row-per-clip label matrix from each row's label columns (repeats ignored)."""
    rows = [sorted(set(c)) for c in cols]
    indptr = np.zeros(len(rows) + 1, dtype=np.int64)
    indptr[1:] = np.cumsum([len(c) for c in rows])
    indices = np.fromiter((c for row in rows for c in row), dtype=np.int64,
                          count=int(indptr[-1]))
    data = np.ones(len(indices), dtype=bool)
    return sp.csr_array((data, indices, indptr), shape=(len(rows), n_labels))


# -- the copy -----------------------------------------------------------------------------------
@dataclass
class Copy:
    """One copy's rows as an importer reads them, before any audio.

    ``ids`` holds each row's ``(ytid, start, end)`` (None where the row names no video id;
    start and end None where it gives none), ``target`` the labels it carries, ``reason`` a
    reason to skip a row found while reading (``""``: none). ``columns`` says the labels came as
    columns in label-index order (PANNs, PaSST), whose order is then checked against the list.
    ``read(rows)`` yields ``(row, audio)`` for increasing rows: the bytes of an encoded file
    (None or empty: no audio; an exception: the row could not be read), or, when ``pcm`` is
    set, int16 samples at ``sample_rate`` (``clip_samples`` then is the copy's clip length,
    and both fix the cache's). ``details`` explains skip reasons found while reading.
    """

    path: str
    names: list[str]
    ids: list[tuple[str, float | None, float | None] | None]
    target: sp.csr_array
    read: Callable[[np.ndarray], Iterator[tuple[int, Any]]]
    sources: list[str] | None = None
    reason: np.ndarray | None = None
    columns: bool = False
    sample_rate: int | None = None
    clip_samples: int | None = None
    pcm: bool = False
    unknown_labels: dict[str, int] = field(default_factory=dict)
    details: dict[int, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.names)
        if len(self.ids) != n or self.target.shape[0] != n:
            raise CacheError(f"{self.path!r}: names, ids and labels disagree on the row count")
        if self.reason is None:
            self.reason = np.full(n, "", dtype=object)
        if self.sources is None:  # one file: the report names rows without it
            self.sources = [""] * n


# -- the report ---------------------------------------------------------------------------------
def _frame(rows: Sequence[int], sources: Sequence[str], names: Sequence[str],
           reasons: Sequence[str], details: Sequence[str]) -> pd.DataFrame:
    return pd.DataFrame({"row": np.asarray(rows, dtype=np.int64),
                         "source": pd.Series(list(sources), dtype=object),
                         "name": pd.Series(list(names), dtype=object),
                         "reason": pd.Series(list(reasons), dtype=object),
                         "detail": pd.Series(list(details), dtype=object)})


@dataclass
class ImportReport:
    """What an import did.

    Attributes
    ----------
    folder
        The cache folder written.
    path
        The copy read.
    rows
        Rows in the copy.
    imported
        Clips written to the cache.
    stored_as_is
        Of those, clips whose bytes went in unchanged (the rest were decoded and re-encoded).
    skipped
        Rows not imported: ``row``, ``source`` (the file, in a copy of several), ``name``,
        ``reason`` (unlisted, placeholder, empty, damaged, duplicate, already cached...) and
        ``detail`` (the decoder's message for a damaged row).
    label_mismatches
        Rows whose labels differ from the segment list's: ``row``, ``name``, ``key``,
        ``only_in_copy`` and ``only_in_list`` (mids, comma-separated). Only rows the list names.
    listed_not_in_copy
        Segments of the list the copy holds no usable clip of (neither imported now nor
        cached by an earlier import of it); 0 without a list.
    unknown_labels
        Label values that name no label of the index, with how many rows carry each.
    """

    folder: Path
    path: str
    rows: int
    imported: int = 0
    stored_as_is: int = 0
    skipped: pd.DataFrame = field(default_factory=lambda: _frame([], [], [], [], []))
    label_mismatches: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(
        {"row": [], "name": [], "key": [], "only_in_copy": [], "only_in_list": []}))
    listed_not_in_copy: int = 0
    unknown_labels: dict[str, int] = field(default_factory=dict)

    @property
    def damaged(self) -> pd.DataFrame:
        """The rows whose audio did not decode, with the decoder's message."""
        return self.skipped[self.skipped["reason"] == DAMAGED].reset_index(drop=True)

    def count(self, *reasons: str) -> int:
        """Rows skipped for any of ``reasons``."""
        return int(self.skipped["reason"].isin(reasons).sum())

    def summary(self) -> dict[str, Any]:
        """Counts for printing: rows, imported, label mismatches, unlisted, damaged (named),
        and the rows skipped by reason."""
        damaged = self.damaged
        return {"folder": str(self.folder), "copy": self.path, "rows": self.rows,
                "imported": self.imported, "stored_as_is": self.stored_as_is,
                "label_mismatches": len(self.label_mismatches),
                "unlisted": self.count(*UNLISTED),
                "placeholders": self.count(PLACEHOLDER, EMPTY),
                "damaged": [f"{s}: {n}" if s else n for s, n in
                            zip(damaged["source"], damaged["name"], strict=True)],
                "already_cached": self.count(CACHED),
                "listed_not_in_copy": self.listed_not_in_copy,
                "unknown_labels": dict(self.unknown_labels),
                "skipped": {str(k): int(v) for k, v in
                            self.skipped["reason"].value_counts().items()}}


# -- matching to the segment list ---------------------------------------------------------------
class SegmentMatcher:
    """Finds the row of the segment list that holds a clip, by video id and start."""

    def __init__(self, segments: Segments):
        self.segments = segments
        self._start = np.asarray(segments.start, dtype=np.float64)
        self._end = np.asarray(segments.end, dtype=np.float64)
        self._rows: dict[str, list[int]] = {}
        for i, y in enumerate(segments.ytids.tolist()):
            self._rows.setdefault(str(y), []).append(i)

    def find(self, ytid: str, start: float | None) -> tuple[int, str]:
        """``(list row, "")``, or ``(-1, reason)`` when the list does not name the clip.

        A start matches a listed one within half a millisecond; one that matches none in
        seconds but one in milliseconds (the project's own ``<ytid>_<ms>`` keys) is read so.
        """
        rows = self._rows.get(ytid)
        if not rows:
            return -1, UNLISTED_ID
        if start is None:
            return (rows[0], "") if len(rows) == 1 else (-1, REPEATED_ID)
        for guess in (start, start / 1000.0):
            for i in rows:
                if abs(self._start[i] - guess) < _START_TOLERANCE:
                    return i, ""
        return -1, UNLISTED_START

    def start_end(self, row: int) -> tuple[float, float]:
        """Start and end of a list row."""
        return float(self._start[row]), float(self._end[row])


@dataclass
class _Plan:
    key: list[str]
    ytid: list[str]
    start: np.ndarray
    end: np.ndarray
    list_row: np.ndarray


def _plan(copy: Copy, segments: Segments | None) -> _Plan:
    """Keys of every row, from the names (and the segment list where they lack a start)."""
    n = len(copy.names)
    reason = copy.reason
    plan = _Plan([""] * n, [""] * n, np.zeros(n), np.zeros(n), np.full(n, -1, np.int64))
    matcher = SegmentMatcher(segments) if segments is not None else None
    for r, parsed in enumerate(copy.ids):
        if reason[r]:
            continue
        if parsed is None:
            reason[r] = NO_NAME if not copy.names[r] else NOT_AN_ID
            continue
        ytid, start, end = parsed
        plan.ytid[r] = ytid
        if matcher is None:
            if start is None:
                raise ConfigError(
                    f"{copy.path!r}: clips such as {copy.names[r]!r} carry no start time; pass "
                    "the segment list the copy was made from (segments=, --segments)")
        else:
            row, why = matcher.find(ytid, start)
            if why:
                reason[r] = why
                continue
            plan.list_row[r] = row
            start, listed_end = matcher.start_end(row)
            end = listed_end
        plan.start[r] = start
        plan.end[r] = end if end is not None else start + CLIP_SECONDS
        plan.key[r] = clip_key(ytid, start)
    seen: set[str] = set()
    for r, key in enumerate(plan.key):
        if key and not reason[r]:
            if key in seen:
                reason[r] = DUPLICATE
            seen.add(key)
    return plan


def _check_column_order(copy: Copy, segments: Segments, plan: _Plan) -> None:
    """Rows found in the list must mostly carry the list's labels: otherwise the label
    columns are in another order than the label index."""
    rows = np.flatnonzero(plan.list_row >= 0)
    if not len(rows):
        return
    got = copy.target[rows]
    want = segments.label_matrix[plan.list_row[rows]].astype(bool)
    labelled = _row_counts(got) > 0  # placeholders carry no labels: judged later
    differ = (_row_counts(got != want) > 0) & labelled
    if differ.sum() > _MAX_LABEL_MISMATCH * max(int(labelled.sum()), 1):
        raise CacheError(
            f"{copy.path!r}: {int(differ.sum())} of {int(labelled.sum())} rows carry other "
            "labels than the segment list: the target columns are not in the label index's "
            "order (class_labels_indices.csv), or the list is not the one the copy was made "
            "from")


def _row_counts(m: Any) -> np.ndarray:
    """True entries of each row of a sparse boolean matrix."""
    return np.asarray(sp.csr_array(m).astype(np.int64).sum(axis=1)).reshape(-1)


def _mismatches(copy: Copy, segments: Segments, plan: _Plan, rows: np.ndarray,
                mids: np.ndarray) -> pd.DataFrame:
    """The imported rows whose labels differ from the list's, with the labels that differ."""
    rows = rows[plan.list_row[rows] >= 0]
    got = copy.target[rows].astype(bool)
    want = segments.label_matrix[plan.list_row[rows]].astype(bool)
    differ = np.flatnonzero(_row_counts(got != want) > 0)
    out = {"row": [], "name": [], "key": [], "only_in_copy": [], "only_in_list": []}
    for i in differ.tolist():
        a = set(got[[i]].indices.tolist())
        b = set(want[[i]].indices.tolist())
        r = int(rows[i])
        out["row"].append(r)
        out["name"].append(copy.names[r])
        out["key"].append(plan.key[r])
        out["only_in_copy"].append(",".join(mids[sorted(a - b)]))
        out["only_in_list"].append(",".join(mids[sorted(b - a)]))
    return pd.DataFrame(out)


# -- decoding -----------------------------------------------------------------------------------
@dataclass
class Decoded:
    """One clip decoded to mono int16, and what its bytes hold."""

    pcm: np.ndarray
    sample_rate: int
    container: str
    codec: str
    channels: int
    source_rate: int


def decode_any(data: bytes, sample_rate: int | None, max_samples: int | None = None
               ) -> Decoded:
    """Decode any encoded clip (FLAC, MP3, WAV, Ogg...) to mono int16 at ``sample_rate`` (its
    own rate when None), through FFmpeg's decoders and resampler as the cache's reader does;
    decoding stops once ``max_samples`` are had. Raises :class:`CacheError` naming the reason
    when the bytes do not decode."""
    what = f"clip of {len(data)} bytes"
    chunks: list[np.ndarray] = []
    have = 0
    try:
        with av.open(io.BytesIO(data)) as container:
            if not container.streams.audio:
                raise CacheError(f"{what}: the {container.format.name} file has no audio stream")
            stream = container.streams.audio[0]
            ctx = stream.codec_context
            ctx.thread_count = 1
            if ctx.name == "flac":  # check each frame's CRC, as the cache's reader does
                ctx.options = {"err_detect": "crccheck+explode"}
            source_rate = int(ctx.sample_rate or 0)
            rate = int(sample_rate or source_rate)
            if rate <= 0:
                raise CacheError(f"{what}: the stream names no sample rate")
            resampler = av.AudioResampler(format="s16", layout="mono", rate=rate)
            done = False
            expected = 0  # FLAC numbers its frames by sample: a frame failing its CRC leaves a gap
            for frame in container.decode(stream):
                if ctx.name == "flac" and frame.pts is not None and frame.time_base:
                    at = round(frame.pts * frame.time_base * source_rate)
                    if at != expected:
                        raise CacheError(f"{what}: the FLAC frames at samples {expected}.."
                                         f"{at} fail their checksum (damaged bytes)")
                expected += frame.samples
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray().reshape(-1).copy())
                    have += len(chunks[-1])
                if max_samples is not None and have >= max_samples:
                    done = True
                    break
            if not done:
                for out in resampler.resample(None):
                    chunks.append(out.to_ndarray().reshape(-1).copy())
            info = (container.format.name, ctx.name, int(ctx.channels or 0), source_rate)
    except CacheError:
        raise
    except (av.FFmpegError, ValueError, EOFError, OSError, IndexError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise CacheError(f"{what} cannot be decoded: {reason}") from exc
    pcm = np.concatenate(chunks) if chunks else np.zeros(0, np.int16)
    if max_samples is not None:
        pcm = pcm[:max_samples]
    if not len(pcm):
        raise CacheError(f"{what} holds no audio samples")
    return Decoded(pcm.astype(np.int16, copy=False), rate, *info)


def _as_is(data: bytes, dec: Decoded, fmt: str, length: int) -> bool:
    """Whether the cache can hold ``data`` unchanged: the cache's codec, one channel, the
    cache's rate, and the reader's decoder returns exactly the samples checked."""
    if fmt not in ENCODED_FORMATS:
        return False
    container, codec = ENCODED_FORMATS[fmt]
    if (dec.container.split(",")[0], dec.codec) != (container, codec) or dec.channels != 1:
        return False
    if fmt == "flac" and dec.source_rate != dec.sample_rate:
        return False
    try:
        served = decode_clip(data, fmt, sample_rate=dec.sample_rate, num_samples=length)
    except CacheError:
        return False
    return bool(np.array_equal(served, dec.pcm[:length]))


# -- the import ---------------------------------------------------------------------------------
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


def blocks(rows: np.ndarray, size: int) -> Iterator[tuple[int, int, np.ndarray]]:
    """``(lo, hi, rows)`` for each run of ``size`` consecutive row numbers holding any of
    ``rows``: the blocks an importer reads at once."""
    if not len(rows):
        return
    for lo in range(int(rows[0]) - int(rows[0]) % size, int(rows[-1]) + 1, size):
        hi = lo + size
        inside = rows[(rows >= lo) & (rows < hi)]
        if len(inside):
            yield lo, hi, inside


__all__ = [
    "CACHED",
    "CLIP_SECONDS",
    "DAMAGED",
    "DUPLICATE",
    "EMPTY",
    "PLACEHOLDER",
    "UNLISTED",
    "UNLISTED_ID",
    "UNLISTED_START",
    "Copy",
    "ImportReport",
    "cache_folder",
    "SegmentMatcher",
    "decode_any",
    "expand_paths",
    "import_copy",
    "label_columns",
    "parse_clip_name",
    "rows_to_matrix",
]
