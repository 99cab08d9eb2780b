"""The cache folder and its single writer: clips published atomically, never lost.

Layout of one cache folder (``<root>/cache/<split>/``)::

    manifest.sqlite          one row per segment (see :mod:`audioset_data.cache.manifest`)
    shard-00000.h5           ``shard_size`` clips, immutable once published
    batch-....h5             a few clips written since the last compaction

Every file is written under a temporary name, flushed, fsynced and renamed into place; a
published file is never appended to (:mod:`audioset_data.cache.shards` has the file layout). The
writer publishes small *batch* files (so a kill loses at most the clips still in memory),
registers them in the manifest, and compacts them into shards of ``shard_size`` clips. Before
it writes anything it reconciles the folder with the manifest (:mod:`audioset_data.cache.repair`):
files the manifest lost are adopted, never deleted while they hold clips nothing else holds.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

import filelock
import h5py
import numpy as np
import pandas as pd

from audioset_data.config import PathLike
from audioset_data.errors import CacheError, ConfigError

from .index import write_index
from .manifest import MANIFEST_NAME, Manifest, Placement
from .repair import ReconcileReport, owner, reconcile
from .shards import (
    ClipBlock,
    Layout,
    check_format,
    open_h5,
    write_file,
)

logger = logging.getLogger(__name__)

def open_manifest(
    folder: PathLike,
    *,
    fmt: str,
    sample_rate: int,
    clip_samples: int,
    label_mids: Sequence[str],
    name: str = MANIFEST_NAME,
) -> Manifest:
    """Create or open the manifest of a cache folder and pin its audio settings.

    Raises :class:`CacheError` when the folder was made with other settings, so one cache never
    mixes sample rates, formats or label sets.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    manifest = Manifest.open(folder / name)
    try:
        manifest.check_or_set_meta({
            "format": check_format(fmt),
            "sample_rate": str(int(sample_rate)),
            "clip_samples": str(int(clip_samples)),
            "labels": ",".join(label_mids),
        })
    except BaseException:
        manifest.close()
        raise
    return manifest


class FolderLock:
    """An exclusive lock file so two runs never write the same cache part at once.

    Taken without waiting: a second writer fails at once with :class:`CacheError`. Built on
    ``filelock``: ``flock`` on POSIX and ``msvcrt`` on Windows, which end with the process that
    holds them (also after a kill -9), and a soft lock naming its owner on file systems that
    support neither.
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        self._lock = filelock.FileLock(self.path, timeout=0, thread_local=False)

    def __enter__(self) -> FolderLock:
        try:
            self._lock.acquire()
        except filelock.Timeout:
            raise CacheError(
                f"another process is writing {str(self.path.parent)!r}; wait for it to finish"
            ) from None
        return self

    def __exit__(self, *exc: object) -> None:
        self._lock.release()


class CacheWriter:
    """The single writer of one cache folder: buffers clips, publishes batches, compacts.

    Use it from one thread (its manifest connection belongs to that thread); the download
    job calls it only from the thread that collects finished clips.

    Parameters
    ----------
    folder
        Cache folder; the manifest must already be open on it.
    prefix
        File-name prefix of this writer (``""``, or ``"part-1-of-4-"`` for a job of an array),
        so several jobs can write into one folder without clashes.
    """

    def __init__(
        self,
        folder: PathLike,
        manifest: Manifest,
        *,
        fmt: str,
        sample_rate: int,
        clip_samples: int,
        label_mids: Sequence[str],
        batch_size: int = 32,
        shard_size: int = 1000,
        flush_interval: float = 30.0,
        prefix: str = "",
    ):
        if batch_size < 1 or shard_size < 1:
            raise ConfigError("batch_size and shard_size must be at least 1")
        self.folder = Path(folder)
        self.manifest = manifest
        self.layout = Layout(fmt, sample_rate, clip_samples, label_mids)
        self.batch_size = batch_size
        self.shard_size = shard_size
        self.flush_interval = flush_interval
        self.prefix = prefix
        self._buffer = ClipBlock()
        self._keys: list[str] = []
        self._attempts: list[int] = []
        self._first_buffered: float | None = None
        self.recover()

    def recover(self) -> ReconcileReport:
        """Reconcile the folder with the manifest before writing (see
        :func:`audioset_data.cache.repair.reconcile`): unfinished temp files go, files the manifest
        lost are adopted, clips of missing or damaged files go back to pending."""
        self.last_recovery = reconcile(self.folder, self.manifest, self.layout,
                                       owner(self.prefix))
        return self.last_recovery

    def add(
        self,
        key: str,
        ytid: str,
        start: float,
        end: float,
        audio: np.ndarray | bytes,
        length: int,
        target: np.ndarray,
        attempts: int = 1,
    ) -> None:
        """Buffer one clip; publish a batch when the buffer is full or old enough."""
        b = self._buffer
        b.ytid.append(ytid)
        b.start.append(float(start))
        b.end.append(float(end))
        b.length.append(int(length))
        b.target.append(np.asarray(target, dtype=bool))
        b.audio.append(audio)
        self._keys.append(key)
        self._attempts.append(int(attempts))
        if self._first_buffered is None:
            self._first_buffered = time.monotonic()
        if len(self._buffer) >= self.batch_size:
            self.flush()

    def flush_if_stale(self) -> None:
        """Publish the buffer if its oldest clip waited longer than ``flush_interval``."""
        first = self._first_buffered
        if first is not None and time.monotonic() - first >= self.flush_interval:
            self.flush()

    def flush(self, compact: bool = True) -> None:
        """Publish buffered clips as one batch file and mark them ``ok`` in the manifest, then
        (unless ``compact`` is false) compact full shards.

        Clips are marked ``ok`` only once their file is durably in place; a batch that cannot
        be written (a full disk raises :class:`~audioset_data.errors.DiskFullError`) leaves
        its clips pending, so the next run fetches them again.
        """
        if len(self._buffer):
            block, keys, attempts = self._buffer, self._keys, self._attempts
            self._buffer, self._keys, self._attempts = ClipBlock(), [], []
            self._first_buffered = None
            name = f"{self.prefix}batch-{uuid.uuid4().hex}.h5"
            encoded = None if self.layout.fmt == "pcm16" else sum(len(a) for a in block.audio)
            size = write_file(self.folder, name, self.layout, [block], len(block),
                              need=self.layout.file_bytes(len(block), encoded))
            placements = [Placement(k, name, i, block.length[i]) for i, k in enumerate(keys)]
            self.manifest.commit_batch(name, placements, attempts, size=size)
        if compact:
            self.compact(final=False)

    def _next_shard_name(self) -> str:
        pattern = re.compile(re.escape(self.prefix) + r"shard-(\d{5,})\.h5")
        used = [int(m.group(1)) for n in self.manifest.files()["name"]
                if (m := pattern.fullmatch(n))]
        used += [int(m.group(1)) for p in self.folder.iterdir() if (m := pattern.fullmatch(p.name))]
        return f"{self.prefix}shard-{max(used, default=-1) + 1:05d}.h5"

    def compact(self, final: bool) -> None:
        """Merge published batches into shards of ``shard_size`` clips (any rest if final).

        Only the rows the manifest places in a batch are copied, in row order; the rest of the
        last batch used is rewritten as a new, smaller batch. The manifest switches to the new
        files in one transaction before the old ones are removed, so a kill at any point leaves
        every clip in a file the manifest or the next reconcile accounts for.
        """
        own = owner(self.prefix)
        while True:
            files = self.manifest.files()
            batches = files[((files["kind"] == "batch") & files["name"].map(own).astype(bool))
                            .to_numpy()]
            if batches.empty:
                return
            placed = self.manifest.placements(list(batches["name"]))
            total = len(placed)
            if total < self.shard_size and not final:
                return
            take = min(total, self.shard_size)
            plan: list[tuple[str, list[str], list[int]]] = []  # file, keys and rows used
            need = take
            for name in batches["name"]:
                rows = placed[placed["file"] == name]
                if need == 0 or rows.empty:
                    continue
                used = rows.iloc[:need]
                plan.append((name, list(used["key"]), [int(r) for r in used["row"]]))
                need -= len(used)
            shard = self._next_shard_name()
            new: list[tuple[str, str, int, int | None]] = []
            if take:
                size = write_file(self.folder, shard, self.layout, self._read_plan(plan), take,
                                  need=self._need(batches, plan, take))
                new.append((shard, "shard", take, size))
            shard_keys = [k for _, keys, _ in plan for k in keys]
            moves = [(k, shard, i) for i, k in enumerate(shard_keys)]
            last, keys, rows = plan[-1] if plan else ("", [], [])
            rest = placed[(placed["file"] == last) & ~placed["key"].isin(keys)]
            if len(rest):
                with h5py.File(self.folder / last, "r") as h5:
                    block = self.layout.read(h5, [int(r) for r in rest["row"]])
                rest_name = f"{self.prefix}batch-{uuid.uuid4().hex}.h5"
                size = write_file(self.folder, rest_name, self.layout, [block], len(block))
                new.append((rest_name, "batch", len(block), size))
                moves += [(k, rest_name, i) for i, k in enumerate(rest["key"])]
            # batches none of whose clips are placed any more are dropped too
            chosen = [name for name, _, _ in plan]
            chosen += [n for n in batches["name"] if n not in set(placed["file"])]
            self.manifest.replace_files(chosen, new, moves)
            # the database file alone (a copy without -wal) must not point at files about to go
            self.manifest.checkpoint()
            for name in chosen:
                (self.folder / name).unlink(missing_ok=True)
            if take:
                logger.info("published %s (%d clips)", shard, take)
            else:
                return

    def _need(self, batches: pd.DataFrame, plan: Sequence[tuple[str, list[str], list[int]]],
              take: int) -> int | None:
        """About the bytes of a shard made of ``plan``'s rows: exact for pcm16, else the
        batches' recorded sizes in proportion to the rows taken (None when not recorded)."""
        if self.layout.fmt == "pcm16":
            return self.layout.file_bytes(take)
        size = dict(zip(batches["name"], batches["size"], strict=True))
        rows = dict(zip(batches["name"], batches["n_rows"], strict=True))
        total = 0.0
        for name, _, used in plan:
            if not rows.get(name) or size.get(name) is None or pd.isna(size[name]):
                return None
            total += float(size[name]) * len(used) / int(rows[name])
        return int(total)

    def _read_plan(self, plan: Sequence[tuple[str, list[str], list[int]]]) -> Iterator[ClipBlock]:
        for name, _, rows in plan:
            with open_h5(self.folder / name) as h5:
                yield self.layout.read(h5, rows)

    def close(self) -> None:
        """Publish everything buffered, compact the remaining batches into a last shard and
        bring the reader's index cache up to date."""
        self.flush()
        self.compact(final=True)
        write_index(self.manifest)



__all__ = ["CacheWriter", "FolderLock", "open_manifest"]
