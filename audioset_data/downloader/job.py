"""Download segments into the resumable HDF5 cache: :func:`download`, the main job of the
package.

It reads a segment list (a named split, a subset, or any CSV in the official format), records
every segment in the cache's manifest, and fetches the clips that are not yet cached with
parallel workers. Each clip is one task (yt-dlp resolves the audio stream, ffmpeg reads only
the segment) run in a worker process that is killed when the clip passes its time limit;
results come back to a single writer that publishes them atomically. Transient failures are
retried with exponential backoff and jitter. Throttling of the client (many different videos
answering 429/403 with nothing arriving) trips a circuit breaker that pauses every worker; a
few videos that keep refusing while the others arrive fail on their own, with their reason.
Permanent failures are recorded with their reason. A run can be stopped at any moment (Ctrl-C
or kill -9) and resumed by running it again.

The parts: :mod:`~audioset_data.downloader.options` (the settings), :mod:`~.download_plan`
(what a run registers and fetches), :mod:`~.download_loop` (submit, collect, retry),
:mod:`~.throttle` (rate limit, circuit breaker), :mod:`~.download_report` (reports) and
:mod:`~.job_array` (parts of a job array, :func:`~audioset_data.downloader.job_array.merge`). All of
them log to the ``audioset_data.download`` logger.
"""

from __future__ import annotations

import contextlib
import logging
import time
from concurrent.futures import Executor, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from audioset_data.cache.manifest import MANIFEST_NAME, Manifest
from audioset_data.cache.reader import cache_dir
from audioset_data.cache.shards import bytes_per_clip
from audioset_data.cache.store import CacheWriter, FolderLock, open_manifest
from audioset_data.config import PathLike
from audioset_data.errors import ConfigError, DiskFullError
from audioset_data.fileio import disk_full, format_bytes, free_bytes
from audioset_data.segments.labels import LabelIndex

from .job_array import ShardSpec
from .loop import _NoExecutor, _Run
from .options import DownloadOptions
from .plan import (
    _PENDING,
    _items,
    _plan,
    _register,
    _resolve_segments,
    _statuses,
)
from .report import DownloadReport, _report, _summary, _write_reports_quietly
from .throttle import CircuitBreaker
from .worker_pool import ClipWorkerPool

logger = logging.getLogger("audioset_data.download")


def download(
    split: str | None = None,
    *,
    segments: Any = None,
    root: PathLike | None = None,
    workers: int = 4,
    shard: str | tuple[int, int] | ShardSpec | None = None,
    options: DownloadOptions | None = None,
    executor: Executor | None = None,
    breaker: CircuitBreaker | None = None,
    label_index: LabelIndex | None = None,
    **settings: Any,
) -> DownloadReport:
    """Download the clips of a split (or any segment list) into the resumable HDF5 cache.

    Parameters
    ----------
    split
        ``"eval"``, ``"balanced"`` (the default when nothing else is given) or
        ``"unbalanced"``, in any case and with aliases (``"balanced_train"``); with
        ``segments`` it names the cache folder (a subset of a split shares that split's
        cache). A ``segments`` object needs it; a CSV path without it gets a cache named after
        the file. At most 64 characters.
    segments
        A segment list instead of the whole split: a CSV path in the official format, a
        ``Segments`` object, or a DataFrame with ``ytid, start, end, labels``.
    root
        The data root (default: ``$AUDIOSET_DATA_HOME`` or the user cache folder).
    workers
        Clips fetched at once: worker processes of a
        :class:`~audioset_data.downloader.worker_pool.ClipWorkerPool`.
    shard
        This job's part of a job array: ``"I/N"`` or ``(I, N)`` counted from 1, or a
        :class:`~audioset_data.downloader.job_array.ShardSpec` (``ShardSpec.from_zero(i, n)``
        for arrays numbered from 0); join the parts with
        :func:`~audioset_data.downloader.job_array.merge`.
    options
        A :class:`~audioset_data.downloader.options.DownloadOptions`: how clips are fetched,
        stored, retried and reported.
    executor
        Any :class:`concurrent.futures.Executor` (e.g. a Dask client's ``get_executor()``)
        instead of the worker processes; it owns its tasks, so a clip past ``task_timeout``
        is given up but not stopped.
    breaker
        The circuit breaker for a throttled client (see
        :class:`~audioset_data.downloader.throttle.CircuitBreaker`).
    label_index
        The label index (default: the official one, fetched once).
    **settings
        Any field of :class:`~audioset_data.downloader.options.DownloadOptions`
        (``url_template=``, ``fmt=``, ``max_attempts=``...), applied over ``options``.

    Returns
    -------
    DownloadReport
        Totals, failures by reason and a per-class table (also written as ``report.csv`` and
        ``failures.csv`` in the cache folder, also when the run stops early with an error or
        Ctrl-C).

    Raises
    ------
    ConfigError
        Bad settings (before anything is read or fetched). ``CacheError``: the cache folder
        is locked by another run, was made with other settings, or the disk is too small
        (``check_space=False`` skips that check).
    DownloadError
        The client stays throttled (see :class:`~audioset_data.downloader.throttle.CircuitBreaker`);
        clips not yet decided stay pending, with the attempts and the last reason recorded.
    TypeError
        A keyword that is not a download option.
    """
    t0 = time.monotonic()
    opts = (options or DownloadOptions()).replace(**settings)
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ConfigError(f"workers={workers!r} must be a whole number, at least 1 (--workers)")
    if split is None and segments is None:
        split = "balanced"
    part = ShardSpec.parse(shard) if shard is not None else None
    index = label_index or LabelIndex.load(root=root, base_url=opts.csv_base_url,
                                           accept_new_upstream=opts.accept_new_upstream)
    name, table = _resolve_segments(split, segments, root, opts, index)
    folder = cache_dir(name, root)
    plan = _plan(table, part, opts.limit, opts.clip_seconds)
    manifest_name = f"manifest.{part.tag}.sqlite" if part else MANIFEST_NAME
    prefix = f"{part.tag}-" if part else ""
    suffix = f".{part.tag}" if part else ""
    fetcher = opts.make_fetcher()
    limit_s = opts.task_timeout or 2 * (fetcher.socket_timeout + fetcher.ffmpeg_timeout) + 60

    folder.mkdir(parents=True, exist_ok=True)
    with FolderLock(folder / f".{prefix}lock"):
        manifest = open_manifest(folder, fmt=opts.fmt, sample_rate=opts.sample_rate,
                                 clip_samples=opts.clip_samples, label_mids=index.mids,
                                 name=manifest_name)
        try:
            _register(manifest, plan)
            # the writer's constructor reconciles the folder with the manifest (adopts clips
            # the manifest lost, sends clips of missing or damaged files back to pending), so
            # it must exist before the statuses are read
            writer = CacheWriter(folder, manifest, fmt=opts.fmt, sample_rate=opts.sample_rate,
                                 clip_samples=opts.clip_samples, label_mids=index.mids,
                                 batch_size=opts.batch_size, shard_size=opts.shard_size,
                                 flush_interval=opts.flush_interval, prefix=prefix)
            codes, failed = _statuses(manifest, plan.table["key"])
            todo_mask = codes == _PENDING
            retry = failed if opts.retry_failed else failed[~failed["permanent"]]
            todo_mask[retry["pos"].to_numpy()] = True
            todo = np.flatnonzero(todo_mask)
            logger.info("%s: %d segments, %d to fetch", name, len(plan), len(todo))
            if opts.check_space:
                _check_space(folder, len(todo), opts)
            if opts.dry_run:
                return _summary(folder, plan, codes, failed, time.monotonic() - t0, len(todo))
            run = _Run(manifest=manifest, writer=writer, fetcher=fetcher, plan=plan,
                       index=index, options=opts, breaker=breaker or CircuitBreaker())
            own_executor = executor is None
            if own_executor and len(todo):
                pool: Executor = ClipWorkerPool(max(1, min(workers, len(todo))),
                                                time_limit=limit_s,
                                                stall_timeout=opts.stall_timeout,
                                                shared=(fetcher,))
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
                        max_inflight=max(2, 2 * workers), progress=opts.progress,
                        give_up=give_up)
                writer.close()
            except BaseException as exc:
                if own_executor:  # end the workers now; nothing waits for a stuck fetch
                    pool.shutdown(wait=False, cancel_futures=True)
                run.abort()
                _write_reports_quietly(manifest, folder, plan, index, run.fetched, run.failed,
                                       suffix)
                if isinstance(exc, DiskFullError):
                    raise _still_needed(exc, folder, len(todo) - run.failed, opts) from exc
                raise
            if own_executor:
                pool.shutdown(wait=True)
            report = _report(manifest, folder, plan, index, time.monotonic() - t0, len(todo),
                             run.fetched, run.failed, suffix=suffix)
        finally:
            with contextlib.suppress(Exception):
                manifest.finish()
            manifest.close()
    return report


def _run_bytes(n: int, opts: DownloadOptions) -> int:
    """About the disk space ``n`` more clips take: their audio, plus room to write one shard
    while the batches it is made of still exist."""
    per_clip = bytes_per_clip(opts.fmt, opts.sample_rate, opts.clip_seconds)
    return n * per_clip + min(n, opts.shard_size) * per_clip


def _check_space(folder: Path, n: int, opts: DownloadOptions) -> None:
    need = _run_bytes(n, opts)
    free = free_bytes(folder)
    if free is None:
        return
    logger.info("about %s needed for %d clips (%s), %s free", format_bytes(need), n, opts.fmt,
                format_bytes(free))
    if need > free:
        raise DiskFullError(
            f"{n} clips in {opts.fmt} need about {format_bytes(need)} (with room to compact one "
            f"shard) but {str(folder)!r} has {format_bytes(free)} free; free space, choose a "
            "compact format (--format flac), or pass check_space=False (--no-space-check)",
            folder=str(folder), need=need, free=free, what=f"{n} clips")


def _still_needed(exc: DiskFullError, folder: Path, left: int,
                  opts: DownloadOptions) -> DiskFullError:
    """``exc`` with what the rest of the run needs (the clips not yet cached)."""
    with contextlib.suppress(Exception):  # the count is a nicety; the manifest may be busy
        with Manifest.open(folder / MANIFEST_NAME, readonly=True) as manifest:
            left = manifest.counts()["pending"]
    more = (f"the {left} clips still to fetch need about {format_bytes(_run_bytes(left, opts))}"
            if left > 0 else "")
    return disk_full(exc.folder or folder, need=exc.need, what=exc.what or "a write", more=more)


__all__ = ["download"]
