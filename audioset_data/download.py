"""Download segments into the resumable HDF5 cache: the main job of the package.

:func:`download` reads a segment list (a named split, a subset, or any CSV in the official
format), records every segment in the cache's manifest, and fetches the clips that are not yet
cached with parallel workers. Each clip is one task (yt-dlp resolves the audio stream, ffmpeg
reads only the segment); results come back to a single writer that publishes them atomically.
Transient failures are retried with exponential backoff and jitter, throttling trips a circuit
breaker that pauses every worker, and permanent failures are recorded with their reason. A run
can be stopped at any moment (Ctrl-C or kill -9) and resumed by running it again.
"""

from __future__ import annotations

import contextlib
import heapq
import logging
import random
import shutil
import time
import zlib
from collections import Counter, deque
from concurrent.futures import FIRST_COMPLETED, Executor, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from .clip import ClipFailure, ClipFetcher, validate_ytid
from .config import PathLike
from .errors import AudioSetError, CacheError, ConfigError, DownloadError, SegmentsError
from .labels import LabelIndex
from .manifest import Manifest, clip_key
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
    """Pause every worker when ``threshold`` throttling answers arrive in a row.

    Each trip pauses for ``cooldown`` seconds, doubling up to ``max_cooldown``; after
    ``max_trips`` trips with no success in between the run stops, leaving the rest pending.
    """

    def __init__(self, threshold: int = 5, cooldown: float = 60.0, max_cooldown: float = 900.0,
                 max_trips: int = 6):
        self.threshold = threshold
        self.cooldown = cooldown
        self.max_cooldown = max_cooldown
        self.max_trips = max_trips
        self.streak = 0
        self.trips = 0
        self.total_trips = 0
        self.open_until = 0.0

    def is_open(self, now: float) -> bool:
        """Whether new work must wait."""
        return now < self.open_until

    def success(self) -> None:
        """A clip arrived: the client is not blocked."""
        self.streak = 0
        self.trips = 0

    def throttled(self, now: float) -> bool:
        """Record a throttling answer; return True when this trips the breaker."""
        self.streak += 1
        if self.streak < self.threshold or self.is_open(now):
            return False
        pause = min(self.max_cooldown, self.cooldown * 2**self.trips)
        self.trips += 1
        self.total_trips += 1
        self.streak = 0
        self.open_until = now + pause
        if self.trips > self.max_trips:
            raise DownloadError(
                f"the server keeps throttling this client ({self.trips} pauses in a row); "
                "the rest stays pending: resume later, lower --rate-limit, or pass cookies"
            )
        logger.warning("throttled %d times in a row: pausing all workers for %.0f s",
                       self.threshold, pause)
        return True


@dataclass
class DownloadReport:
    """What a run did and how far the cache is from the full list."""

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
            pc = self.per_class.assign(cover=self.per_class["cached"] / self.per_class["requested"])
            pc = pc[pc["cover"] < 1]
            worst = pc.sort_values(["cover", "requested"], ascending=[True, False]).head(5)
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


def _fetch_task(fetcher: ClipFetcher, ytid: str, start: float, end: float,
                fmt: str) -> tuple[str, Any]:
    """One attempt at one clip, run on a worker. Returns plain data so any executor can ship
    it back: ``("ok", (audio, length))`` or ``("failed", (reason, permanent, detail))``."""
    try:
        clip = fetcher.fetch(ytid, start, end)
        audio: np.ndarray | bytes = clip.waveform
        if fmt != "pcm16":
            from .codec import encode_clip

            audio = encode_clip(clip.waveform, fetcher.sample_rate, fmt)
        return "ok", (audio, int(clip.num_samples))
    except ClipFailure as exc:
        return "failed", (exc.reason, bool(exc.permanent), str(exc.detail or exc))
    except AudioSetError as exc:
        return "failed", ("unknown", False, f"{type(exc).__name__}: {exc}")


def _segment_table(segments: Any) -> pd.DataFrame:
    """ytid, start, end, labels (comma-joined mids) from a Segments object or a DataFrame."""
    if hasattr(segments, "arrow"):  # a Segments object: join label lists in Arrow, not Python
        import pyarrow.compute as pc

        t = segments.arrow
        return pd.DataFrame({
            "ytid": t["ytid"].to_numpy(zero_copy_only=False).astype(str),
            "start": t["start"].to_numpy(),
            "end": t["end"].to_numpy(),
            "labels": pc.binary_join(t["labels"], ",").to_numpy(zero_copy_only=False),
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

    return pd.DataFrame({
        "ytid": segments["ytid"].astype(str).to_numpy(),
        "start": start,
        "end": end,
        "labels": segments["labels"].map(joined).to_numpy(),
    })


def _resolve_segments(
    split: str | None, segments: Any, root: PathLike | None, csv_base_url: str | None,
    accept_new_upstream: bool, label_index: LabelIndex,
) -> tuple[str, pd.DataFrame]:
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


def _targets(labels: str, index: LabelIndex, unknown: Counter[str]) -> np.ndarray:
    target = np.zeros(len(index), dtype=bool)
    for mid in labels.split(","):
        if mid in index:
            target[index.index(mid)] = True
        elif mid:
            unknown[mid] += 1
    return target


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
    batch_size: int = 32,
    shard_size: int = 1000,
    flush_interval: float = 30.0,
    limit: int | None = None,
    check_space: bool = True,
    accept_new_upstream: bool = False,
    progress: bool = True,
    label_index: LabelIndex | None = None,
    task_timeout: float | None = None,
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
    executor
        Any :class:`concurrent.futures.Executor` (e.g. a Dask client's ``get_executor()``);
        default: a thread pool of ``workers``.
    shard
        ``"I/N"``: only this job's part of the list, for cluster job arrays; join the parts
        with :func:`merge`.
    retry_failed
        Retry every failed clip, permanent ones included.
    task_timeout
        Seconds after which a clip task that has not answered counts as a transient
        ``timeout`` (default: twice the fetcher's socket plus ffmpeg timeouts, plus a minute),
        so an executor that loses a task cannot hang the run.

    Returns
    -------
    DownloadReport
        Totals, failures by reason and a per-class table (also written as ``report.csv`` and
        ``failures.csv`` in the cache folder).

    Raises
    ------
    ConfigError
        Bad settings. ``CacheError``: the cache folder is locked by another run, was made with
        other settings, or the disk is too small (``check_space=False`` skips that check).
    """
    t0 = time.monotonic()
    fmt = check_format(fmt)
    if "{ytid}" not in url_template:
        raise ConfigError(f"url_template {url_template!r} must contain {{ytid}}")
    if max_attempts < 1:
        raise ConfigError("max_attempts must be at least 1")
    if rate_limit is not None and not rate_limit > 0:
        raise ConfigError(f"rate_limit={rate_limit!r} must be a positive number of requests/s")
    if split is None and segments is None:
        split = "balanced"
    part = ShardSpec.parse(shard) if shard is not None else None
    index = label_index or LabelIndex.load(root=root, base_url=csv_base_url,
                                           accept_new_upstream=accept_new_upstream)
    name, table = _resolve_segments(split, segments, root, csv_base_url, accept_new_upstream,
                                    index)
    for ytid in table["ytid"]:
        validate_ytid(ytid)
    table["key"] = [clip_key(y, s) for y, s in zip(table["ytid"], table["start"], strict=True)]
    table = _merge_duplicates(table)
    if part is not None:
        table = table[[part.owns(k) for k in table["key"]]]
    if limit is not None:
        table = table.iloc[:limit]
    folder = cache_dir(name, root)
    clip_samples = int(round(sample_rate * clip_seconds))
    manifest_name = f"manifest.{part.tag}.sqlite" if part else MANIFEST_NAME
    prefix = f"{part.tag}-" if part else ""

    if fetcher is None:
        fetcher = ClipFetcher(
            url_template=url_template, sample_rate=sample_rate, clip_seconds=clip_seconds,
            cookiefile=str(cookiefile) if cookiefile else None,
            cookies_from_browser=cookies_from_browser,
        )
    elif fetcher.sample_rate != sample_rate:
        raise ConfigError(f"fetcher decodes at {fetcher.sample_rate} Hz, cache wants {sample_rate}")

    folder.mkdir(parents=True, exist_ok=True)
    with _FolderLock(folder / f".{prefix}lock"):
        manifest = open_manifest(folder, fmt=fmt, sample_rate=sample_rate,
                                 clip_samples=clip_samples, label_mids=index.mids,
                                 name=manifest_name)
        try:
            new, relabelled = manifest.add_segments(
                zip(table["key"], table["ytid"], table["start"], table["end"], table["labels"],
                    strict=True)
            )
            if relabelled:
                logger.warning(
                    "%d cached clips carry other labels in this list than when they were "
                    "fetched; their stored targets keep the old labels", relabelled)
            # the writer's constructor reconciles the folder with the manifest (adopts clips
            # the manifest lost, sends clips of missing or damaged files back to pending), so
            # it must exist before the statuses are read
            writer = CacheWriter(folder, manifest, fmt=fmt, sample_rate=sample_rate,
                                 clip_samples=clip_samples, label_mids=index.mids,
                                 batch_size=batch_size, shard_size=shard_size,
                                 flush_interval=flush_interval, prefix=prefix)
            status = table.merge(manifest.statuses(), on="key", how="left", validate="1:1")
            logger.info("%s: %d segments (%d new in the manifest)", name, len(table), new)
            todo_mask = status["status"].eq("pending") | (
                status["status"].eq("failed") & (retry_failed | status["permanent"].eq(0))
            )
            todo = status[todo_mask]
            if check_space:
                _check_space(folder, len(todo), fmt, sample_rate, clip_seconds)
            items = [
                _Item(k, y, float(s), float(e), lab)
                for k, y, s, e, lab in zip(todo["key"], todo["ytid"], todo["start"],
                                           todo["end"], todo["labels"], strict=True)
            ]
            run = _Run(
                manifest=manifest, writer=writer, fetcher=fetcher, fmt=fmt, index=index,
                max_attempts=max_attempts, backoff=backoff,
                limiter=RateLimiter(rate_limit), breaker=breaker or CircuitBreaker(),
                task_timeout=task_timeout or 2 * (fetcher.socket_timeout + fetcher.ffmpeg_timeout)
                + 60,
            )
            own_executor = executor is None
            pool = executor or ThreadPoolExecutor(max_workers=max(1, workers),
                                                  thread_name_prefix="audioset-dl")
            try:
                run.run(items, pool, max_inflight=max(2, 2 * workers), progress=progress)
                writer.close()
            except BaseException:
                if own_executor:  # return to the caller now; running fetches end on their own
                    pool.shutdown(wait=False, cancel_futures=True)
                raise
            if own_executor:
                pool.shutdown(wait=True)
            report = _report(manifest, folder, table, index, run, time.monotonic() - t0,
                             suffix=f".{part.tag}" if part else "")
            manifest.finish()
        finally:
            manifest.close()
    return report


class _Run:
    """The scheduling loop of one download: submit, collect, retry, write."""

    def __init__(self, *, manifest: Manifest, writer: CacheWriter, fetcher: ClipFetcher,
                 fmt: str, index: LabelIndex, max_attempts: int, backoff: float,
                 limiter: RateLimiter, breaker: CircuitBreaker, task_timeout: float):
        self.manifest = manifest
        self.writer = writer
        self.fetcher = fetcher
        self.fmt = fmt
        self.index = index
        self.max_attempts = max_attempts
        self.max_throttled = 3 * max_attempts
        self.task_timeout = task_timeout
        self.backoff = backoff
        self.limiter = limiter
        self.breaker = breaker
        self.fetched = 0
        self.failed = 0
        self.unknown_labels: Counter[str] = Counter()
        self._rng = random.Random()

    def run(self, items: list[_Item], pool: Executor, max_inflight: int, progress: bool) -> None:
        queue: deque[_Item] = deque(items)
        retry: list[tuple[float, int, _Item]] = []
        inflight: dict[Future, _Item] = {}
        started: dict[Future, float] = {}
        seq = 0
        bar = tqdm(total=len(items), unit="clip", desc="download", disable=not progress,
                   dynamic_ncols=True)
        try:
            while queue or retry or inflight:
                now = time.monotonic()
                while retry and retry[0][0] <= now:
                    queue.appendleft(heapq.heappop(retry)[2])
                while queue and len(inflight) < max_inflight and not self.breaker.is_open(now):
                    self.limiter.acquire()
                    item = queue.popleft()
                    fut = pool.submit(_fetch_task, self.fetcher, item.ytid, item.start,
                                      item.end, self.fmt)
                    inflight[fut] = item
                    started[fut] = time.monotonic()
                if not inflight:
                    wake = [retry[0][0]] if retry else []
                    if self.breaker.is_open(now):
                        wake.append(self.breaker.open_until)
                    time.sleep(min(1.0, max(0.01, min(wake, default=now) - now)))
                    self.writer.flush_if_stale()
                    continue
                done, _ = wait(list(inflight), timeout=1.0, return_when=FIRST_COMPLETED)
                now = time.monotonic()
                stuck = [f for f in inflight if f not in done
                         and now - started[f] > self.task_timeout]
                for fut in [*done, *stuck]:
                    item = inflight.pop(fut)
                    del started[fut]
                    if fut in done:
                        requeue = self._handle(fut, item)
                    else:  # an executor that never answers must not hang the run
                        fut.cancel()
                        requeue = self._record(item, "timeout", False,
                                               f"no result after {self.task_timeout:.0f} s")
                    if requeue is None:
                        bar.update(1)
                        bar.set_postfix(ok=self.fetched, failed=self.failed, refresh=False)
                    else:
                        seq += 1
                        heapq.heappush(retry, (time.monotonic() + requeue, seq, item))
                self.writer.flush_if_stale()
        except BaseException:
            for fut in inflight:
                fut.cancel()
            # keep every clip that already arrived
            self.writer.flush()
            raise
        finally:
            bar.close()

    def _handle(self, fut: Future, item: _Item) -> float | None:
        """Record one finished attempt; return a delay when the clip should be retried."""
        try:
            kind, payload = fut.result()
        except Exception as exc:  # noqa: BLE001 - a worker crash must not stop the run
            kind, payload = "failed", ("worker_error", False, f"{type(exc).__name__}: {exc}")
        if kind != "ok":
            return self._record(item, *payload)
        item.attempts += 1
        audio, length = payload
        target = _targets(item.labels, self.index, self.unknown_labels)
        self.writer.add(item.key, item.ytid, item.start, item.end, audio, length, target,
                        attempts=item.attempts)
        self.breaker.success()
        self.fetched += 1
        return None

    def _record(self, item: _Item, reason: str, permanent: bool, detail: str) -> float | None:
        """Record one failed attempt; return a delay when the clip should be retried."""
        item.attempts += 1
        now = time.monotonic()
        if reason in THROTTLE_REASONS:
            # throttling says nothing about the clip: pause (breaker) and retry it later,
            # within a larger budget so one video that always answers 403 still ends
            self.breaker.throttled(now)
            item.throttled += 1
            if item.throttled <= self.max_throttled:
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
        logger.info("%s failed (%s): %s", item.key, reason, detail[:200])
        self.failed += 1
        return None


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


def _report(manifest: Manifest, folder: Path, table: pd.DataFrame, index: LabelIndex,
            run: _Run, elapsed: float, suffix: str = "") -> DownloadReport:
    status = table.merge(manifest.statuses(), on="key", how="left", validate="1:1")
    counts = status["status"].value_counts()
    failed = status[status["status"] == "failed"]
    by_reason = {str(k): int(v) for k, v in failed["reason"].value_counts().items()}
    per_class = _per_class(status, index)
    per_class.to_csv(folder / f"report{suffix}.csv", index=False)
    failed[["key", "ytid", "start", "end", "reason", "permanent", "attempts"]].to_csv(
        folder / f"failures{suffix}.csv", index=False)
    if run.unknown_labels:
        logger.warning("labels not in the label index were ignored: %s",
                       dict(run.unknown_labels.most_common(5)))
    return DownloadReport(
        folder=folder, requested=len(status), ok=int(counts.get("ok", 0)),
        failed=int(counts.get("failed", 0)), pending=int(counts.get("pending", 0)),
        fetched_now=run.fetched, failed_now=run.failed, elapsed_s=elapsed,
        by_reason=by_reason, per_class=per_class, report_path=folder / f"report{suffix}.csv",
    )


def _per_class(status: pd.DataFrame, index: LabelIndex) -> pd.DataFrame:
    """Per label: requested, cached, failed, and failures by reason."""
    exploded = status.assign(mid=status["labels"].str.split(",")).explode("mid")
    exploded = exploded[exploded["mid"].isin(set(index.mids))]
    table = pd.crosstab(exploded["mid"], exploded["status"])
    reasons = pd.crosstab(exploded["mid"], exploded["reason"].fillna("")).drop(
        columns=[""], errors="ignore").add_prefix("failed_")
    out = index.to_frame().set_index("mid")
    out["requested"] = exploded.groupby("mid").size()
    for col in ("ok", "failed", "pending"):
        out[col] = table[col] if col in table else 0
    out = out.join(reasons)
    num = [c for c in out.columns if c not in ("index", "display_name")]
    out[num] = out[num].fillna(0).astype(int)
    out = out.rename(columns={"ok": "cached"}).reset_index()
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
