"""Download segments into the resumable HDF5 cache: the main job of the package.

:func:`download` reads a segment list (a named split, a subset, or any CSV in the official
format), records every segment in the cache's manifest, and fetches the clips that are not yet
cached with parallel workers. Each clip is one task (yt-dlp resolves the audio stream, ffmpeg
reads only the segment) run in a worker process that is killed when the clip passes its time
limit; results come back to a single writer that publishes them atomically. Transient failures
are retried with exponential backoff and jitter. Throttling of the client (many different
videos answering 429/403 with nothing arriving) trips a circuit breaker that pauses every
worker; a few videos that keep refusing while the others arrive fail on their own, with their
reason. Permanent failures are recorded with their reason. A run can be stopped at any moment
(Ctrl-C or kill -9) and resumed by running it again.

Planning a run is vectorised (ids, keys, duplicates and job-array parts are computed on Arrow
and NumPy arrays), and the manifest keeps a fingerprint of the list it registered last, so a
resumed run over an unchanged list of millions of segments does not register it again.
"""

from __future__ import annotations

import contextlib
import hashlib
import heapq
import itertools
import logging
import random
import shutil
import time
import zlib
from collections import Counter, deque
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Executor, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from tqdm.auto import tqdm

from .clip import (
    YTID_PATTERN,
    ClipFailure,
    ClipFetcher,
    ClipWorkerPool,
    InvalidIdError,
    fetch_task,
)
from .config import PathLike
from .errors import AudioSetError, CacheError, ConfigError, DownloadError, SegmentsError
from .labels import LabelIndex
from .manifest import Manifest
from .store import (
    MANIFEST_NAME,
    CacheWriter,
    bytes_per_clip,
    cache_dir,
    check_format,
    open_manifest,
)

logger = logging.getLogger(__name__)

#: Failure reasons that mean the client is being throttled or blocked, not that a video is gone.
THROTTLE_REASONS = frozenset({"http_429", "http_403", "bot_check"})

#: Default flush policy: finished clips are published as one small batch file (and one
#: manifest transaction) every ``DEFAULT_BATCH_SIZE`` clips or ``DEFAULT_FLUSH_INTERVAL``
#: seconds, whichever comes first; that is all a kill -9 can lose besides the clips in flight.
DEFAULT_BATCH_SIZE = 8
DEFAULT_FLUSH_INTERVAL = 2.0
#: Seconds between checkpoints of the manifest's write-ahead log during a run.
CHECKPOINT_INTERVAL = 10.0

# a task fetched through an external executor is pickled by reference: keep the old name
_fetch_task = fetch_task


@dataclass(frozen=True)
class ShardSpec:
    """This job's part of a job array: ``index`` of ``count``, 1-based (``--shard 2/8``)."""

    index: int
    count: int

    @classmethod
    def parse(cls, text: str | tuple[int, int] | ShardSpec) -> ShardSpec:
        """Read ``"I/N"`` or ``(I, N)``; raise :class:`ConfigError` when it makes no sense."""
        if isinstance(text, ShardSpec):
            return text
        try:
            i, n = (int(x) for x in (text.split("/") if isinstance(text, str) else text))
        except (ValueError, TypeError):
            raise ConfigError(f"shard {text!r} must look like I/N, e.g. 2/8") from None
        if not 1 <= i <= n:
            raise ConfigError(f"shard {text!r}: I must be between 1 and N")
        return cls(i, n)

    def owns(self, key: str) -> bool:
        """Whether segment ``key`` belongs to this part (stable, independent of list order)."""
        return zlib.crc32(key.encode()) % self.count == self.index - 1

    def owns_many(self, keys: pa.Array | pa.ChunkedArray) -> np.ndarray:
        """:meth:`owns` for a whole array of keys at once (a boolean mask)."""
        return _crc32_many(keys) % self.count == self.index - 1

    @property
    def tag(self) -> str:
        """File-name tag of this part."""
        return f"part-{self.index}-of-{self.count}"


class RateLimiter:
    """At most ``rate`` task starts per second across all workers (token bucket)."""

    def __init__(self, rate: float | None, burst: int = 1):
        self.rate = rate
        self.burst = max(1, burst)
        self._tokens = float(self.burst)
        self._last = time.monotonic()

    def acquire(self) -> None:
        """Block until one more request is allowed."""
        if not self.rate:
            return
        while True:
            now = time.monotonic()
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
            self._last = now
            if self._tokens >= 1:
                self._tokens -= 1
                return
            time.sleep((1 - self._tokens) / self.rate)


class CircuitBreaker:
    """Pause every worker when the client itself looks throttled.

    The client looks throttled when ``threshold`` *different* videos answer with throttling
    (429, 403, a bot check) and no clip arrives in between. One video answering again does not
    add to the count, and the download stops reporting a video here once clips of other videos
    arrived between two of its refusals: that video refuses, the client is fine (it fails on
    its own after a bounded number of tries). Each trip pauses for ``cooldown`` seconds,
    doubling up to ``max_cooldown``; after ``max_trips`` trips with no success in between the
    run stops with a :class:`DownloadError`, leaving the rest pending.
    """

    def __init__(self, threshold: int = 5, cooldown: float = 60.0, max_cooldown: float = 900.0,
                 max_trips: int = 6):
        self.threshold = threshold
        self.cooldown = cooldown
        self.max_cooldown = max_cooldown
        self.max_trips = max_trips
        self.trips = 0
        self.total_trips = 0
        self.open_until = 0.0
        #: clips that arrived so far (a video that refuses again after one of them refuses alone)
        self.successes = 0
        self._videos: set[str] = set()
        self._anonymous = itertools.count()

    @property
    def streak(self) -> int:
        """Different videos throttled since the last clip arrived or the last trip."""
        return len(self._videos)

    def is_open(self, now: float) -> bool:
        """Whether new work must wait."""
        return now < self.open_until

    def success(self) -> None:
        """A clip arrived: the client is not blocked."""
        self._videos.clear()
        self.trips = 0
        self.successes += 1

    def throttled(self, now: float, video: str | None = None) -> bool:
        """Record a throttling answer about ``video`` (None: count it as a new video); return
        True when this trips the breaker.

        Raises
        ------
        DownloadError
            After ``max_trips`` pauses with no clip arriving in between.
        """
        self._videos.add(video if video is not None else f"#{next(self._anonymous)}")
        if len(self._videos) < self.threshold or self.is_open(now):
            return False
        pause = min(self.max_cooldown, self.cooldown * 2**self.trips)
        self.trips += 1
        self.total_trips += 1
        self._videos.clear()
        self.open_until = now + pause
        if self.trips > self.max_trips:
            raise DownloadError(
                f"the server keeps throttling this client: {self.threshold} different videos "
                f"in a row answered 429/403 or a bot check with no clip arriving, "
                f"{self.trips} times in a row after pauses of up to {pause:.0f} s; the rest "
                "stays pending: resume later, lower --rate-limit, or pass cookies"
            )
        logger.warning("%d different videos throttled in a row: pausing all workers for %.0f s",
                       self.threshold, pause)
        return True


@dataclass
class DownloadReport:
    """What a run did and how far the cache is from the full list.

    ``to_fetch`` is the number of clips the run set out to fetch (pending ones, transient
    failures, and permanent ones with ``retry_failed``); a ``dry_run`` stops there.
    """

    folder: Path
    requested: int
    ok: int
    failed: int
    pending: int
    fetched_now: int
    failed_now: int
    elapsed_s: float
    by_reason: dict[str, int] = field(default_factory=dict)
    per_class: pd.DataFrame | None = None
    report_path: Path | None = None
    to_fetch: int = 0

    @property
    def clips_per_s(self) -> float:
        """Clips cached per second in this run."""
        return self.fetched_now / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def summary(self) -> str:
        """A few lines for people: totals, coverage, failures by reason."""
        cover = 100.0 * self.ok / self.requested if self.requested else 0.0
        lines = [
            f"cache {self.folder}: {self.ok}/{self.requested} clips cached ({cover:.1f} %), "
            f"{self.failed} failed, {self.pending} pending",
            f"this run: {self.fetched_now} fetched, {self.failed_now} failed in "
            f"{self.elapsed_s:.1f} s ({self.clips_per_s:.2f} clips/s)",
        ]
        for reason, n in sorted(self.by_reason.items(), key=lambda kv: -kv[1]):
            lines.append(f"  failed {reason}: {n}")
        if self.per_class is not None and self.failed:
            pc_ = self.per_class.assign(
                cover=self.per_class["cached"] / self.per_class["requested"])
            pc_ = pc_[pc_["cover"] < 1]
            worst = pc_.sort_values(["cover", "requested"], ascending=[True, False]).head(5)
            lines.append("lowest coverage: " + "; ".join(
                f"{r.display_name} {r.cached}/{r.requested}" for r in worst.itertuples()))
        return "\n".join(lines)


@dataclass
class _Item:
    key: str
    ytid: str
    start: float
    end: float
    labels: str
    attempts: int = 0
    failures: int = 0
    throttled: int = 0
    reason: str | None = None
    detail: str | None = None
    #: other clips arrived between two throttling answers of this video: it refuses alone
    refuses: bool = False
    #: the breaker's success count at this video's last throttling answer
    success_mark: int = 0


# -- planning -----------------------------------------------------------------------------------
#: Statuses as small integers, for whole-list arrays.
_PENDING, _OK, _FAILED = 0, 1, 2
_STATUS_NAMES = np.array(["pending", "ok", "failed"], dtype=object)
_COLUMNS = ("key", "ytid", "start", "end", "labels")


@dataclass
class _Plan:
    """The segments of one run, one row per segment key: ``key, ytid, start, end, labels``
    (labels comma-joined), in list order, and the fingerprint of exactly these rows."""

    table: pa.Table
    fingerprint: str

    def __len__(self) -> int:
        return self.table.num_rows


def _segment_table(segments: Any) -> pa.Table:
    """ytid, start, end, labels (comma-joined mids) from a Segments object or a DataFrame."""
    if hasattr(segments, "arrow"):  # a Segments object: stays in Arrow, no Python objects
        t = segments.arrow
        labels = t["labels"]
        if pa.types.is_list(labels.type) or pa.types.is_large_list(labels.type):
            labels = pc.binary_join(labels, ",")
        return pa.table({
            "ytid": t["ytid"].cast(pa.string()),
            "start": t["start"].cast(pa.float64()),
            "end": t["end"].cast(pa.float64()),
            "labels": labels.cast(pa.string()),
        })
    if not isinstance(segments, pd.DataFrame):
        raise ConfigError(f"cannot read segments from {type(segments).__name__}")
    missing = {"ytid", "start", "end", "labels"} - set(segments.columns)
    if missing:
        raise ConfigError(f"segment table lacks columns {sorted(missing)}")
    try:
        start = segments["start"].astype(float).to_numpy()
        end = segments["end"].astype(float).to_numpy()
    except (TypeError, ValueError) as exc:
        raise SegmentsError(f"segment table: start/end are not numbers ({exc})") from None
    bad = ~(np.isfinite(start) & np.isfinite(end) & (start >= 0) & (end > start))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise SegmentsError(
            f"segment table row {i}: start={start[i]!r}, end={end[i]!r} is not a time range "
            f"({int(bad.sum())} such rows)")

    def joined(v: Any) -> str:
        if isinstance(v, str):
            return v
        if isinstance(v, list | tuple | np.ndarray):
            return ",".join(map(str, v))
        raise SegmentsError(f"segment table: labels {v!r} are neither text nor a list of mids")

    return pa.table({
        "ytid": pa.array(segments["ytid"].astype(str).tolist(), pa.string()),
        "start": pa.array(start, pa.float64()),
        "end": pa.array(end, pa.float64()),
        "labels": pa.array(segments["labels"].map(joined).tolist(), pa.string()),
    })


def _resolve_segments(
    split: str | None, segments: Any, root: PathLike | None, csv_base_url: str | None,
    accept_new_upstream: bool, label_index: LabelIndex,
) -> tuple[str, pa.Table]:
    """The cache name and the segment table of what the caller asked for."""
    if segments is not None and not isinstance(segments, str | Path):
        if split is None:
            raise ConfigError("give split= (the cache name) together with a segments object")
        return _cache_name(split), _segment_table(segments)
    from .segments import load_segments

    if segments is None:
        if split is None:
            raise ConfigError("download needs a split or segments")
        name = _cache_name(split)
        seg = load_segments(name, root=root, base_url=csv_base_url, label_index=label_index,
                            accept_new_upstream=accept_new_upstream)
        return name, _segment_table(seg)
    seg = load_segments(Path(segments), root=root, label_index=label_index)
    return _cache_name(split) if split else Path(segments).stem, _segment_table(seg)


def _cache_name(split: str) -> str:
    """Canonical split name for official splits (aliases folded), else the name as given."""
    from .segments import canonical_split

    try:
        return canonical_split(split)
    except AudioSetError:
        return split


def _check_ids(ytid: pa.Array) -> None:
    """Raise :class:`InvalidIdError` naming the first row whose id is not a YouTube id."""
    ok = pc.fill_null(pc.match_substring_regex(ytid, YTID_PATTERN.pattern), False)
    if pc.all(ok).as_py() is not False:
        return
    bad = np.flatnonzero(~ok.to_numpy(zero_copy_only=False))
    value = ytid[int(bad[0])].as_py()
    raise InvalidIdError(value, f"segment row {int(bad[0])}: {value!r} is not a YouTube id (11 "
                                f"characters of A-Z a-z 0-9 _ -); {len(bad)} such rows")


def _millis(start: pa.Array) -> pa.Array:
    """``round(start * 1000)`` as int64, rounding half to even like Python's ``round``."""
    return pc.cast(pc.round(pc.multiply(start, 1000.0), round_mode="half_to_even"), pa.int64())


def _clip_keys(ytid: pa.Array, start: pa.Array) -> pa.Array:
    """:func:`audioset_data.manifest.clip_key` of every row at once."""
    return pc.binary_join_element_wise(ytid, pc.cast(_millis(start), pa.string()), "_")


def _string_parts(arr: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """Offsets (from 0) and bytes of a string array without copying it."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    width = np.int64 if pa.types.is_large_string(arr.type) else np.int32
    offsets = np.frombuffer(arr.buffers()[1], dtype=width)[arr.offset: arr.offset + len(arr) + 1]
    data = arr.buffers()[2]
    raw = (np.frombuffer(data, dtype=np.uint8) if data is not None
           else np.zeros(0, np.uint8))[offsets[0]: offsets[-1]]
    return (offsets - offsets[0]).astype(np.int64), raw


def _has_duplicates(ytid: pa.Array, start: pa.Array) -> bool:
    """Whether two rows share a key (id and start in ms): a 64-bit hash per row, sorted;
    only equal hashes are checked exactly, so a list without repeats costs one sort."""
    n = len(ytid)
    if n < 2:
        return False
    offsets, raw = _string_parts(ytid)
    if not (np.diff(offsets) == 11).all():  # ids are checked first; be safe anyway
        return bool(pd.Series(_clip_keys(ytid, start).to_pylist()).duplicated().any())
    words = np.zeros((n, 16), np.uint8)
    words[:, :11] = raw.reshape(n, 11)
    w = words.view(np.uint64)
    ms = _millis(start).to_numpy(zero_copy_only=False).astype(np.uint64)
    with np.errstate(over="ignore"):
        h = (w[:, 0] * np.uint64(0x9E3779B97F4A7C15)) ^ (w[:, 1] * np.uint64(0xC2B2AE3D27D4EB4F))
        h ^= (ms + np.uint64(0x165667B19E3779F9)) * np.uint64(0xD6E8FEB86659FD93)
    h.sort()
    if not (h[1:] == h[:-1]).any():
        return False
    return bool(pd.Series(_clip_keys(ytid, start).to_pylist()).duplicated().any())


def _merge_duplicates(table: pd.DataFrame) -> pd.DataFrame:
    """One row per segment key; rows listed twice get the union of their labels."""
    dup = table["key"].duplicated(keep=False)
    if not dup.any():
        return table
    logger.warning("%d segments are listed more than once; their labels are joined",
                   int(table.loc[dup, "key"].nunique()))
    joined = (table[dup].groupby("key", sort=False)["labels"]
              .agg(lambda ls: ",".join(dict.fromkeys(m for x in ls for m in x.split(",") if m))))
    table = table.drop_duplicates("key").copy()
    table.loc[table["key"].isin(joined.index), "labels"] = (
        table.loc[table["key"].isin(joined.index), "key"].map(joined))
    return table


_CRC_TABLE: np.ndarray | None = None


def _crc32_many(keys: pa.Array | pa.ChunkedArray, chunk: int = 1 << 18) -> np.ndarray:
    """``zlib.crc32`` of each string's UTF-8 bytes, vectorised over the array."""
    global _CRC_TABLE
    if _CRC_TABLE is None:
        c = np.arange(256, dtype=np.uint32)
        for _ in range(8):
            c = np.where(c & 1, np.uint32(0xEDB88320) ^ (c >> 1), c >> 1).astype(np.uint32)
        _CRC_TABLE = c
    offsets, raw = _string_parts(keys)
    n = len(offsets) - 1
    out = np.empty(n, np.uint32)
    for lo in range(0, n, chunk):
        hi = min(n, lo + chunk)
        first, length = offsets[lo:hi], np.diff(offsets[lo: hi + 1])
        crc = np.full(hi - lo, 0xFFFFFFFF, np.uint32)
        for j in range(int(length.max(initial=0))):
            live = np.flatnonzero(length > j)
            byte = raw[first[live] + j]
            crc[live] = _CRC_TABLE[(crc[live] ^ byte) & 0xFF] ^ (crc[live] >> 8)
        out[lo:hi] = crc ^ np.uint32(0xFFFFFFFF)
    return out


def _fingerprint(table: pa.Table) -> str:
    """A digest of exactly the rows a run registers (keys, labels, times, in order)."""
    h = hashlib.blake2b(digest_size=20, person=b"audioset-list-1")
    h.update(str(table.num_rows).encode())
    for name in ("key", "labels"):
        offsets, raw = _string_parts(table[name])
        h.update(offsets.tobytes())
        h.update(raw.tobytes() if not raw.flags.c_contiguous else memoryview(raw))
    for name in ("start", "end"):
        h.update(np.ascontiguousarray(table[name].to_numpy(), dtype=np.float64).tobytes())
    return h.hexdigest()


def _plan(table: pa.Table, part: ShardSpec | None, limit: int | None) -> _Plan:
    """Check ids, make keys, join repeated segments, keep this job's part and the first
    ``limit`` rows: the rows this run registers and fetches."""
    table = table.combine_chunks()
    _check_ids(table["ytid"])
    keys = _clip_keys(table["ytid"], table["start"])
    table = table.add_column(0, "key", keys).select(list(_COLUMNS))
    if _has_duplicates(table["ytid"], table["start"]):
        frame = _merge_duplicates(table.to_pandas())
        table = pa.Table.from_pandas(frame, preserve_index=False).select(list(_COLUMNS))
    if part is not None:
        table = table.filter(pa.array(part.owns_many(table["key"])))
    if limit is not None:
        table = table.slice(0, max(0, limit))
    table = table.combine_chunks()
    return _Plan(table, _fingerprint(table))


def _rows(table: pa.Table) -> Iterator[tuple[str, str, float, float, str]]:
    """``(key, ytid, start, end, labels)`` tuples, converted a batch at a time."""
    for batch in table.select(list(_COLUMNS)).to_batches(max_chunksize=1 << 16):
        yield from zip(*(col.to_pylist() for col in batch.columns), strict=True)


def _register(manifest: Manifest, plan: _Plan) -> None:
    """Record every segment of the plan in the manifest, unless the manifest already holds
    exactly this list (same fingerprint, nothing changed since)."""
    if manifest.segments_fingerprint() == plan.fingerprint:
        logger.info("%d segments already registered in %s", len(plan), manifest.path.name)
        return
    new, relabelled = manifest.add_segments(_rows(plan.table), fingerprint=plan.fingerprint)
    if relabelled:
        logger.warning(
            "%d cached clips carry other labels in this list than when they were fetched; "
            "their stored targets keep the old labels", relabelled)
    # fold the registration into the database file now, not at the end of a long run
    manifest.checkpoint(truncate=True)
    logger.info("%d segments registered (%d new in the manifest)", len(plan), new)


def _statuses(manifest: Manifest, keys: pa.Array) -> tuple[np.ndarray, pd.DataFrame]:
    """The status of each key (``_PENDING``, ``_OK``, ``_FAILED``) and the failed rows among
    them (``key, reason, permanent, attempts`` and ``pos``, the row in ``keys``).

    Reads the smaller of the ``ok`` and ``pending`` key sets (as one text, not a Python
    object per key) and the failed rows, and finds them all in ``keys`` with one hash lookup.
    Every key must be registered.
    """
    counts = manifest.counts()
    failed = manifest.failed()
    read_ok = counts["ok"] <= counts["pending"]
    if (counts["ok"] if read_ok else counts["pending"]) == 0 and failed.empty:
        return np.full(len(keys), _OK if counts["ok"] else _PENDING, np.int8), failed.assign(
            pos=np.zeros(0, np.int64))
    some = manifest.keys_with_status("ok" if read_ok else "pending")
    probe = pa.concat_arrays([some, pa.array(failed["key"], pa.string())])
    pos = pc.index_in(probe, value_set=keys).to_numpy(zero_copy_only=False)
    pos_some, pos_failed = pos[: len(some)], pos[len(some):]
    codes = np.full(len(keys), _PENDING if read_ok else _OK, np.int8)
    pos_some = pos_some[~np.isnan(pos_some)].astype(np.int64)
    codes[pos_some] = _OK if read_ok else _PENDING
    inside = ~np.isnan(pos_failed)
    failed = failed[inside].assign(pos=pos_failed[inside].astype(np.int64))
    codes[failed["pos"].to_numpy()] = _FAILED
    return codes, failed.sort_values("pos").reset_index(drop=True)


def _items(table: pa.Table, rows: np.ndarray, chunk: int = 4096) -> Iterator[_Item]:
    """The work items of ``rows``, made a chunk at a time as the run needs them."""
    for lo in range(0, len(rows), chunk):
        part = table.take(pa.array(rows[lo: lo + chunk]))
        cols = [part[c].to_pylist() for c in _COLUMNS]
        for k, y, s, e, lab in zip(*cols, strict=True):
            yield _Item(k, y, s, e, lab)


# -- the download -------------------------------------------------------------------------------
def download(
    split: str | None = None,
    *,
    segments: Any = None,
    root: PathLike | None = None,
    csv_base_url: str | None = None,
    url_template: str = "https://www.youtube.com/watch?v={ytid}",
    sample_rate: int = 32000,
    clip_seconds: float = 10.0,
    fmt: str = "pcm16",
    workers: int = 4,
    executor: Executor | None = None,
    shard: str | tuple[int, int] | ShardSpec | None = None,
    retry_failed: bool = False,
    max_attempts: int = 3,
    backoff: float = 2.0,
    rate_limit: float | None = None,
    breaker: CircuitBreaker | None = None,
    cookiefile: PathLike | None = None,
    cookies_from_browser: str | None = None,
    fetcher: ClipFetcher | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    shard_size: int = 1000,
    flush_interval: float = DEFAULT_FLUSH_INTERVAL,
    limit: int | None = None,
    check_space: bool = True,
    accept_new_upstream: bool = False,
    progress: bool = True,
    label_index: LabelIndex | None = None,
    task_timeout: float | None = None,
    dry_run: bool = False,
) -> DownloadReport:
    """Download the clips of a split (or any segment list) into the resumable HDF5 cache.

    Parameters
    ----------
    split
        ``"eval"``, ``"balanced"`` (the default when nothing else is given) or
        ``"unbalanced"``; with ``segments`` it names the cache folder (a subset of a split
        shares that split's cache). A ``segments`` object needs it; a CSV path without it
        gets a cache named after the file.
    segments
        A segment list instead of the whole split: a CSV path in the official format, a
        ``Segments`` object, or a DataFrame with ``ytid, start, end, labels``.
    url_template
        Address of a video, with ``{ytid}``; point it at a mirror.
    fmt
        ``"pcm16"`` (raw int16 rows, PANNs-compatible) or a compact ``"flac"``/``"opus"``.
    workers
        Clips fetched at once: worker processes of a :class:`~audioset_data.clip.ClipWorkerPool`.
    executor
        Any :class:`concurrent.futures.Executor` (e.g. a Dask client's ``get_executor()``)
        instead of the worker processes; it owns its tasks, so a clip past ``task_timeout``
        is given up but not stopped.
    shard
        ``"I/N"``: only this job's part of the list, for cluster job arrays; join the parts
        with :func:`merge`.
    retry_failed
        Retry every failed clip, permanent ones included.
    max_attempts
        Tries per clip and run for transient failures, and for a video that keeps answering
        429/403 while other clips arrive (it then fails with that reason, and the next run
        tries again).
    breaker
        The circuit breaker for a throttled client (see :class:`CircuitBreaker`).
    batch_size, flush_interval
        Flush policy: finished clips are published (one small HDF5 file and one manifest
        transaction) every ``batch_size`` clips or when the oldest has waited
        ``flush_interval`` seconds. A kill -9 loses at most these clips and those in flight.
    shard_size
        Clips per compacted HDF5 shard.
    task_timeout
        Hard wall-clock limit of one clip attempt, in seconds: its worker process (with its
        ffmpeg) is killed and the attempt counts as a transient ``timeout``. Default: twice
        the fetcher's socket plus ffmpeg timeouts, plus a minute.
    dry_run
        Register the list and plan the run, then stop before fetching anything: the report
        gives the counts and ``to_fetch``.

    Returns
    -------
    DownloadReport
        Totals, failures by reason and a per-class table (also written as ``report.csv`` and
        ``failures.csv`` in the cache folder, also when the run stops early with an error or
        Ctrl-C).

    Raises
    ------
    ConfigError
        Bad settings. ``CacheError``: the cache folder is locked by another run, was made with
        other settings, or the disk is too small (``check_space=False`` skips that check).
    DownloadError
        The client stays throttled (see :class:`CircuitBreaker`); clips not yet decided stay
        pending, with the attempts and the last reason recorded.
    """
    t0 = time.monotonic()
    fmt = check_format(fmt)
    if "{ytid}" not in url_template:
        raise ConfigError(f"url_template {url_template!r} must contain {{ytid}}")
    if max_attempts < 1:
        raise ConfigError("max_attempts must be at least 1")
    if rate_limit is not None and not rate_limit > 0:
        raise ConfigError(f"rate_limit={rate_limit!r} must be a positive number of requests/s")
    if not flush_interval >= 0:
        raise ConfigError(f"flush_interval={flush_interval!r} must be a number of seconds >= 0")
    if task_timeout is not None and not task_timeout > 0:
        raise ConfigError(f"task_timeout={task_timeout!r} must be a positive number of seconds")
    if split is None and segments is None:
        split = "balanced"
    part = ShardSpec.parse(shard) if shard is not None else None
    index = label_index or LabelIndex.load(root=root, base_url=csv_base_url,
                                           accept_new_upstream=accept_new_upstream)
    name, table = _resolve_segments(split, segments, root, csv_base_url, accept_new_upstream,
                                    index)
    plan = _plan(table, part, limit)
    folder = cache_dir(name, root)
    clip_samples = int(round(sample_rate * clip_seconds))
    manifest_name = f"manifest.{part.tag}.sqlite" if part else MANIFEST_NAME
    prefix = f"{part.tag}-" if part else ""
    suffix = f".{part.tag}" if part else ""

    if fetcher is None:
        fetcher = ClipFetcher(
            url_template=url_template, sample_rate=sample_rate, clip_seconds=clip_seconds,
            cookiefile=str(cookiefile) if cookiefile else None,
            cookies_from_browser=cookies_from_browser,
        )
    elif fetcher.sample_rate != sample_rate:
        raise ConfigError(f"fetcher decodes at {fetcher.sample_rate} Hz, cache wants {sample_rate}")
    limit_s = task_timeout or 2 * (fetcher.socket_timeout + fetcher.ffmpeg_timeout) + 60

    folder.mkdir(parents=True, exist_ok=True)
    with _FolderLock(folder / f".{prefix}lock"):
        manifest = open_manifest(folder, fmt=fmt, sample_rate=sample_rate,
                                 clip_samples=clip_samples, label_mids=index.mids,
                                 name=manifest_name)
        try:
            _register(manifest, plan)
            # the writer's constructor reconciles the folder with the manifest (adopts clips
            # the manifest lost, sends clips of missing or damaged files back to pending), so
            # it must exist before the statuses are read
            writer = CacheWriter(folder, manifest, fmt=fmt, sample_rate=sample_rate,
                                 clip_samples=clip_samples, label_mids=index.mids,
                                 batch_size=batch_size, shard_size=shard_size,
                                 flush_interval=flush_interval, prefix=prefix)
            codes, failed = _statuses(manifest, plan.table["key"])
            todo_mask = codes == _PENDING
            retry = failed if retry_failed else failed[~failed["permanent"]]
            todo_mask[retry["pos"].to_numpy()] = True
            todo = np.flatnonzero(todo_mask)
            logger.info("%s: %d segments, %d to fetch", name, len(plan), len(todo))
            if check_space:
                _check_space(folder, len(todo), fmt, sample_rate, clip_seconds)
            if dry_run:
                return _summary(folder, plan, codes, failed, time.monotonic() - t0, len(todo))
            run = _Run(
                manifest=manifest, writer=writer, fetcher=fetcher, fmt=fmt, index=index,
                max_attempts=max_attempts, backoff=backoff,
                limiter=RateLimiter(rate_limit), breaker=breaker or CircuitBreaker(),
                tick=min(1.0, max(0.05, flush_interval / 4)),
            )
            own_executor = executor is None
            if own_executor and len(todo):
                pool: Executor = ClipWorkerPool(max(1, min(workers, len(todo))),
                                                time_limit=limit_s, shared=(fetcher,))
            elif own_executor:
                pool = _NoExecutor()
            else:
                pool = executor
                if isinstance(pool, ThreadPoolExecutor):
                    fetcher._prepare_worker()  # its threads share yt-dlp's start-up work
            # a worker pool ends a clip at its own limit; another executor may lose a task
            give_up = (pool.time_limit or limit_s) + 30 if isinstance(pool, ClipWorkerPool) \
                else limit_s
            try:
                run.run(_items(plan.table, todo), len(todo), pool,
                        max_inflight=max(2, 2 * workers), progress=progress, give_up=give_up)
                writer.close()
            except BaseException:
                if own_executor:  # end the workers now; nothing waits for a stuck fetch
                    pool.shutdown(wait=False, cancel_futures=True)
                run.abort()
                _write_reports_quietly(manifest, folder, plan, index, run, suffix)
                raise
            if own_executor:
                pool.shutdown(wait=True)
            codes, failed = _statuses(manifest, plan.table["key"])
            report = _report(folder, plan, codes, failed, index, run, time.monotonic() - t0,
                             len(todo), suffix=suffix)
        finally:
            with contextlib.suppress(Exception):
                manifest.finish()
            manifest.close()
    return report


class _Run:
    """The scheduling loop of one download: submit, collect, retry, write."""

    def __init__(self, *, manifest: Manifest, writer: CacheWriter, fetcher: ClipFetcher,
                 fmt: str, index: LabelIndex, max_attempts: int, backoff: float,
                 limiter: RateLimiter, breaker: CircuitBreaker, tick: float = 1.0):
        self.manifest = manifest
        self.writer = writer
        self.fetcher = fetcher
        self.fmt = fmt
        self.index = index
        self.max_attempts = max_attempts
        self.max_throttled = 3 * max_attempts
        self.backoff = backoff
        self.limiter = limiter
        self.breaker = breaker
        self.tick = tick
        self.fetched = 0
        self.failed = 0
        self.unknown_labels: Counter[str] = Counter()
        #: clips attempted in this run and not yet decided (their attempts are not recorded)
        self.open: dict[str, _Item] = {}
        self._rng = random.Random()
        self._checkpointed = time.monotonic()

    def run(self, items: Iterator[_Item], total: int, pool: Executor, max_inflight: int,
            progress: bool, give_up: float) -> None:
        """Fetch every item; return when each is cached or failed."""
        fresh = iter(items)
        queue: deque[_Item] = deque()  # retries that are due
        retry: list[tuple[float, int, _Item]] = []
        inflight: dict[Future, _Item] = {}
        submitted: dict[Future, float] = {}
        running: dict[Future, float] = {}  # since when the executor says a task runs
        seq = 0
        bar = tqdm(total=total, unit="clip", desc="download", disable=not progress,
                   dynamic_ncols=True)
        try:
            while True:
                now = time.monotonic()
                while retry and retry[0][0] <= now:
                    queue.append(heapq.heappop(retry)[2])
                while len(inflight) < max_inflight and not self.breaker.is_open(now):
                    item = queue.popleft() if queue else next(fresh, None)
                    if item is None:
                        break
                    self.limiter.acquire()
                    fut = pool.submit(fetch_task, self.fetcher, item.ytid, item.start,
                                      item.end, self.fmt)
                    inflight[fut] = item
                    submitted[fut] = time.monotonic()
                if not inflight:
                    if not queue and not retry:
                        nxt = next(fresh, None)
                        if nxt is None:
                            break
                        queue.appendleft(nxt)  # held back by the breaker
                    wake = [retry[0][0]] if retry else []
                    if self.breaker.is_open(now):
                        wake.append(self.breaker.open_until)
                    time.sleep(min(self.tick, max(0.01, min(wake, default=now) - now)))
                    self._housekeeping()
                    continue
                done, _ = wait(list(inflight), timeout=self.tick, return_when=FIRST_COMPLETED)
                now = time.monotonic()
                for f in inflight:
                    if f not in running and f.running():
                        running[f] = now
                # a task runs at most give_up seconds; one that never starts gets twice that
                stuck = [f for f in inflight if f not in done and (
                    now - running[f] > give_up if f in running
                    else now - submitted[f] > 2 * give_up)]
                for fut in [*done, *stuck]:
                    item = inflight.pop(fut)
                    del submitted[fut]
                    running.pop(fut, None)
                    if fut in done:
                        requeue = self._handle(fut, item)
                    else:  # an executor that never answers must not hang the run
                        fut.cancel()
                        requeue = self._record(item, "timeout", False,
                                               f"no result after {give_up:.0f} s")
                    if requeue is None:
                        bar.update(1)
                        bar.set_postfix(ok=self.fetched, failed=self.failed, refresh=False)
                    else:
                        seq += 1
                        heapq.heappush(retry, (time.monotonic() + requeue, seq, item))
                self._housekeeping()
        except BaseException:
            for fut, item in inflight.items():
                if not fut.cancel():  # it had started: that was an attempt
                    item.attempts += 1
                    if item.reason is None:
                        item.reason = "interrupted"
                        item.detail = "the run stopped during this attempt"
                    self.open[item.key] = item
            raise
        finally:
            bar.close()

    def _housekeeping(self) -> None:
        self.writer.flush_if_stale()
        if time.monotonic() - self._checkpointed >= CHECKPOINT_INTERVAL:
            self.manifest.checkpoint()
            self._checkpointed = time.monotonic()

    def abort(self) -> None:
        """After a stop: publish the clips that arrived, and record the attempts and last
        reason of the clips left undecided (they stay pending, or failed from an earlier
        run)."""
        try:
            self.writer.flush()
        except Exception as exc:  # noqa: BLE001 - the stop's own error is the one to raise
            logger.warning("could not publish the clips that arrived before the stop: %s", exc)
        rows = [(it.key, it.attempts, it.reason, it.detail) for it in self.open.values()
                if it.attempts]
        if rows:
            try:
                self.manifest.record_attempts(rows)
            except Exception as exc:  # noqa: BLE001
                logger.warning("could not record the attempts of %d clips: %s", len(rows), exc)
        self.open.clear()

    def _handle(self, fut: Future, item: _Item) -> float | None:
        """Record one finished attempt; return a delay when the clip should be retried."""
        try:
            kind, payload = fut.result()
        except ClipFailure as exc:  # the worker pool's time limit, a worker that died
            kind, payload = "failed", (exc.reason, bool(exc.permanent), str(exc.detail or exc))
        except Exception as exc:  # noqa: BLE001 - a worker crash must not stop the run
            kind, payload = "failed", ("worker_error", False, f"{type(exc).__name__}: {exc}")
        if kind != "ok":
            return self._record(item, *payload)
        item.attempts += 1
        audio, length = payload
        target = _targets(item.labels, self.index, self.unknown_labels)
        self.writer.add(item.key, item.ytid, item.start, item.end, audio, length, target,
                        attempts=item.attempts)
        self.open.pop(item.key, None)
        self.breaker.success()
        self.fetched += 1
        logger.debug("%s fetched", item.key)
        return None

    def _record(self, item: _Item, reason: str, permanent: bool, detail: str) -> float | None:
        """Record one failed attempt; return a delay when the clip should be retried."""
        item.attempts += 1
        item.reason, item.detail = reason, detail
        self.open[item.key] = item
        now = time.monotonic()
        if reason in THROTTLE_REASONS:
            if item.throttled and self.breaker.successes > item.success_mark:
                if not item.refuses:
                    logger.info("%s keeps answering %s while other clips arrive: this video "
                                "refuses, the client is not throttled", item.key, reason)
                item.refuses = True
            item.throttled += 1
            item.success_mark = self.breaker.successes
            if not item.refuses:
                # may pause every worker, or stop the run when the client stays throttled
                self.breaker.throttled(now, item.ytid)
            budget = self.max_attempts if item.refuses else self.max_throttled + 1
            if item.throttled < budget:
                delay = self.backoff * 2 ** min(item.throttled - 1, 6)
                delay *= self._rng.uniform(0.5, 1.5)
                if self.breaker.is_open(now):
                    delay = max(delay, self.breaker.open_until - now)
                return delay
        else:
            item.failures += 1
            if not permanent and item.failures < self.max_attempts:
                delay = self.backoff * 2 ** (item.failures - 1) * self._rng.uniform(0.5, 1.5)
                logger.info("%s: %s, retry %d in %.1f s", item.key, reason, item.failures, delay)
                return delay
        self.manifest.mark_failed(item.key, reason, permanent, detail, attempts=item.attempts)
        self.open.pop(item.key, None)
        logger.info("%s failed (%s): %s", item.key, reason, detail[:200])
        self.failed += 1
        return None


def _targets(labels: str, index: LabelIndex, unknown: Counter[str]) -> np.ndarray:
    target = np.zeros(len(index), dtype=bool)
    for mid in labels.split(","):
        if mid in index:
            target[index.index(mid)] = True
        elif mid:
            unknown[mid] += 1
    return target


class _NoExecutor(Executor):
    """Stands in for the worker pool of a run with nothing to fetch."""

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Future:
        raise RuntimeError("this run has nothing to fetch")


class _FolderLock:
    """An exclusive lock file so two runs never write the same cache part at once."""

    def __init__(self, path: Path):
        self.path = path
        self._fh: Any = None

    def __enter__(self) -> _FolderLock:
        import fcntl

        self._fh = open(self.path, "a+")  # noqa: SIM115 - held for the whole run
        try:
            fcntl.flock(self._fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._fh.close()
            raise CacheError(
                f"another download is writing {str(self.path.parent)!r}; wait for it to finish"
            ) from None
        return self

    def __exit__(self, *exc: object) -> None:
        self._fh.close()


def _check_space(folder: Path, n: int, fmt: str, sample_rate: int, clip_seconds: float) -> None:
    need = n * bytes_per_clip(fmt, sample_rate, clip_seconds)
    free = shutil.disk_usage(folder).free
    logger.info("about %.2f GB needed for %d clips (%s), %.2f GB free", need / 1e9, n, fmt,
                free / 1e9)
    if need > free:
        raise CacheError(
            f"{n} clips in {fmt} need about {need / 1e9:.2f} GB but {str(folder)!r} has "
            f"{free / 1e9:.2f} GB free; free space, choose a compact format (--format flac), "
            "or pass check_space=False (--no-space-check)"
        )


# -- reports ------------------------------------------------------------------------------------
def _summary(folder: Path, plan: _Plan, codes: np.ndarray, failed: pd.DataFrame,
             elapsed: float, to_fetch: int, run: _Run | None = None) -> DownloadReport:
    counts = np.bincount(codes, minlength=3)
    reasons = failed["reason"].fillna("unknown").value_counts()
    return DownloadReport(
        folder=folder, requested=len(plan), ok=int(counts[_OK]), failed=int(counts[_FAILED]),
        pending=int(counts[_PENDING]), fetched_now=run.fetched if run else 0,
        failed_now=run.failed if run else 0, elapsed_s=elapsed,
        by_reason={str(k): int(v) for k, v in reasons.items()}, to_fetch=to_fetch,
    )


def _report(folder: Path, plan: _Plan, codes: np.ndarray, failed: pd.DataFrame,
            index: LabelIndex, run: _Run, elapsed: float, to_fetch: int,
            suffix: str = "") -> DownloadReport:
    """The run's report; writes ``report.csv`` (per class) and ``failures.csv``."""
    report = _summary(folder, plan, codes, failed, elapsed, to_fetch, run)
    report.per_class = _per_class(plan.table["labels"], codes, failed, index)
    report.report_path = folder / f"report{suffix}.csv"
    report.per_class.to_csv(report.report_path, index=False)
    rows = plan.table.select(["ytid", "start", "end"]).take(pa.array(failed["pos"].to_numpy()))
    failures = pd.DataFrame({
        "key": failed["key"].to_numpy(), "ytid": rows["ytid"].to_pylist(),
        "start": rows["start"].to_numpy(), "end": rows["end"].to_numpy(),
        "reason": failed["reason"].to_numpy(), "permanent": failed["permanent"].to_numpy(),
        "attempts": failed["attempts"].to_numpy(),
    })
    failures.to_csv(folder / f"failures{suffix}.csv", index=False)
    if run.unknown_labels:
        logger.warning("labels not in the label index were ignored: %s",
                       dict(run.unknown_labels.most_common(5)))
    return report


def _write_reports_quietly(manifest: Manifest, folder: Path, plan: _Plan, index: LabelIndex,
                           run: _Run, suffix: str) -> None:
    """Write the reports of a run that stopped early; never raise over the stop's error."""
    try:
        codes, failed = _statuses(manifest, plan.table["key"])
        _report(folder, plan, codes, failed, index, run, 0.0, 0, suffix=suffix)
        logger.info("reports of the stopped run written to %s", folder)
    except Exception as exc:  # noqa: BLE001
        logger.warning("could not write the reports of the stopped run: %s", exc)


def _per_class(labels: pa.Array, codes: np.ndarray, failed: pd.DataFrame,
               index: LabelIndex) -> pd.DataFrame:
    """Per label: requested, cached, failed, pending, and failures by reason."""
    lists = pc.split_pattern(labels, ",")
    parent = pc.list_parent_indices(lists).to_numpy()
    mid = pc.index_in(pc.list_flatten(lists), value_set=pa.array(index.mids, pa.string()))
    mid = pc.fill_null(mid, -1).to_numpy().astype(np.int64)
    keep = mid >= 0
    mid, parent = mid[keep], parent[keep]
    n = len(index)
    by_status = np.bincount(mid * 3 + codes[parent], minlength=3 * n).reshape(n, 3)
    reason_names = sorted(set(failed["reason"].fillna("unknown")))
    row_reason = np.full(len(codes), -1, np.int64)
    lookup = {r: i for i, r in enumerate(reason_names)}
    row_reason[failed["pos"].to_numpy()] = [lookup[r] for r in failed["reason"].fillna("unknown")]
    r = row_reason[parent]
    has = r >= 0
    by_reason = np.bincount(mid[has] * max(1, len(reason_names)) + r[has],
                            minlength=n * max(1, len(reason_names)))
    by_reason = by_reason.reshape(n, max(1, len(reason_names)))
    frame = index.to_frame()
    out = pd.DataFrame({"mid": frame["mid"], "index": frame["index"],
                        "display_name": frame["display_name"]})
    out["requested"] = by_status.sum(axis=1)
    out["cached"] = by_status[:, _OK]
    out["failed"] = by_status[:, _FAILED]
    out["pending"] = by_status[:, _PENDING]
    for j, reason in enumerate(reason_names):
        out[f"failed_{reason}"] = by_reason[:, j]
    return out[out["requested"] > 0].reset_index(drop=True)


def merge(split: str, root: PathLike | None = None) -> Path:
    """Join the part manifests of a job array (``--shard I/N`` runs) into ``manifest.sqlite``.

    Part files stay where they are; the joined manifest references them. Each part is the
    source of truth for its own files, so merging again after resuming a part brings the
    joined manifest up to date. Parts that are still being written are refused.
    """
    folder = cache_dir(split, root)
    parts = sorted(folder.glob("manifest.part-*.sqlite"))
    if not parts:
        raise CacheError(f"no part manifests (manifest.part-*.sqlite) in {str(folder)!r}")
    target = folder / MANIFEST_NAME
    with contextlib.ExitStack() as stack:
        stack.enter_context(_FolderLock(folder / ".lock"))
        tags = [p.name[len("manifest."):-len(".sqlite")] for p in parts]
        for tag in tags:
            stack.enter_context(_FolderLock(folder / f".{tag}-lock"))
        with Manifest.open(target) as out:
            for part, tag in zip(parts, tags, strict=True):
                with Manifest.open(part, readonly=True) as src:
                    meta = {k: src.get_meta(k) or "" for k in
                            ("format", "sample_rate", "clip_samples", "labels")}
                out.check_or_set_meta(meta)
                out.merge_from(part, prefix=f"{tag}-")
                logger.info("merged %s", part.name)
            out.finish()
    return target


__all__ = [
    "CircuitBreaker",
    "DownloadReport",
    "RateLimiter",
    "ShardSpec",
    "download",
    "merge",
]
