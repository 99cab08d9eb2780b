"""The HDF5 clip store: immutable files published atomically, read back as one array.

Layout of one cache folder (``<root>/cache/<split>/``)::

    manifest.sqlite          one row per segment (see :mod:`audioset_data.manifest`)
    shard-00000.h5           ``shard_size`` clips, immutable once published
    batch-....h5             a few clips written since the last compaction

Every file is written under a temporary name, flushed, fsynced and renamed into place; a
published file is never appended to. The writer first publishes small *batch* files (so a kill
loses at most the clips still in memory) and compacts them into shards of ``shard_size`` clips.
Each file holds the datasets PANNs-style code reads: ``audio_name``, ``waveform`` (int16,
N × samples, chunked per clip) or ``audio`` (encoded bytes per clip, compact formats),
``target`` (N × labels, bool), plus ``ytid``, ``start``, ``end`` and ``length`` (true samples).
"""

from __future__ import annotations

import logging
import os
import re
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from .config import PathLike, data_home
from .errors import CacheError, ConfigError
from .manifest import Manifest, Placement

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
#: ``pcm16`` stores raw int16 rows; the others store each clip re-encoded as bytes.
FORMATS = ("pcm16", "flac", "opus")
#: Typical Opus bit rate of the compact format, for disk-space estimates.
_OPUS_BYTES_PER_SECOND = 64_000 / 8
MANIFEST_NAME = "manifest.sqlite"


def check_format(fmt: str) -> str:
    """Return ``fmt`` if it is a known storage format, else raise :class:`ConfigError`."""
    if fmt not in FORMATS:
        raise ConfigError(f"unknown storage format {fmt!r}; choose one of {', '.join(FORMATS)}")
    return fmt


def bytes_per_clip(fmt: str, sample_rate: int, clip_seconds: float) -> int:
    """Estimated bytes one clip takes on disk in ``fmt`` (pcm16 exact, others typical)."""
    check_format(fmt)
    pcm = int(round(sample_rate * clip_seconds)) * 2
    if fmt == "pcm16":
        return pcm
    if fmt == "flac":
        return pcm // 2
    return int(_OPUS_BYTES_PER_SECOND * clip_seconds)


def cache_dir(split: str, root: PathLike | None = None) -> Path:
    """Folder of one split's cache under the data root (split aliases share one folder)."""
    from .segments import SPLIT_ALIASES

    split = SPLIT_ALIASES.get(split, split)
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", split) or split.startswith("."):
        raise ConfigError(f"cache name {split!r} must be letters, digits, '_', '-' or '.'")
    return data_home(root) / "cache" / split


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


@dataclass
class ClipBlock:
    """Several clips in memory, in row order, ready to be written to one file."""

    ytid: list[str] = field(default_factory=list)
    start: list[float] = field(default_factory=list)
    end: list[float] = field(default_factory=list)
    length: list[int] = field(default_factory=list)
    target: list[np.ndarray] = field(default_factory=list)
    audio: list[np.ndarray | bytes] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.ytid)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _Layout:
    """Shapes and attributes shared by every file of one cache."""

    def __init__(self, fmt: str, sample_rate: int, clip_samples: int, label_mids: Sequence[str]):
        self.fmt = check_format(fmt)
        self.sample_rate = int(sample_rate)
        self.clip_samples = int(clip_samples)
        self.label_mids = list(label_mids)

    def create(self, h5: h5py.File, n: int) -> None:
        h5.attrs["format"] = self.fmt
        h5.attrs["format_version"] = FORMAT_VERSION
        h5.attrs["sample_rate"] = self.sample_rate
        h5.attrs["clip_samples"] = self.clip_samples
        h5.attrs["labels"] = np.array(self.label_mids, dtype=h5py.string_dtype())
        h5.create_dataset("audio_name", shape=(n,), dtype="S20")
        h5.create_dataset("ytid", shape=(n,), dtype="S11")
        h5.create_dataset("start", shape=(n,), dtype=np.float64)
        h5.create_dataset("end", shape=(n,), dtype=np.float64)
        h5.create_dataset("length", shape=(n,), dtype=np.int32)
        n_labels = max(1, len(self.label_mids))
        h5.create_dataset("target", shape=(n, n_labels), dtype=bool,
                          chunks=(max(1, min(n, 1024)), n_labels) if n else None)
        if self.fmt == "pcm16":
            h5.create_dataset("waveform", shape=(n, self.clip_samples), dtype=np.int16,
                              chunks=(1, self.clip_samples) if n else None)
        else:
            h5.create_dataset("audio", shape=(n,), dtype=h5py.vlen_dtype(np.uint8))

    def write(self, h5: h5py.File, offset: int, block: ClipBlock) -> None:
        n = len(block)
        sl = slice(offset, offset + n)
        h5["ytid"][sl] = np.array(block.ytid, dtype="S11")
        h5["audio_name"][sl] = np.array([f"Y{y}.wav" for y in block.ytid], dtype="S20")
        h5["start"][sl] = np.asarray(block.start, dtype=np.float64)
        h5["end"][sl] = np.asarray(block.end, dtype=np.float64)
        h5["length"][sl] = np.asarray(block.length, dtype=np.int32)
        h5["target"][sl] = np.asarray(block.target, dtype=bool).reshape(n, -1)
        if self.fmt == "pcm16":
            rows = np.zeros((n, self.clip_samples), dtype=np.int16)
            for i, pcm in enumerate(block.audio):
                pcm = np.asarray(pcm, dtype=np.int16)[: self.clip_samples]
                rows[i, : len(pcm)] = pcm
            h5["waveform"][sl] = rows
        else:
            ds = h5["audio"]
            for i, data in enumerate(block.audio):
                ds[offset + i] = np.frombuffer(bytes(data), dtype=np.uint8)

    def read(self, h5: h5py.File, rows: slice) -> ClipBlock:
        block = ClipBlock(
            ytid=[y.decode() for y in h5["ytid"][rows]],
            start=list(h5["start"][rows]),
            end=list(h5["end"][rows]),
            length=list(h5["length"][rows]),
            target=list(h5["target"][rows]),
        )
        if self.fmt == "pcm16":
            block.audio = list(h5["waveform"][rows])
        else:
            block.audio = [bytes(a) for a in h5["audio"][rows]]
        return block


def _write_file(
    folder: Path, name: str, layout: _Layout, blocks: Iterable[ClipBlock], n: int
) -> None:
    """Write ``n`` rows from ``blocks`` into ``folder/name`` atomically (temp file, fsync,
    rename); blocks are consumed one at a time so a shard never sits in memory whole."""
    final = folder / name
    tmp = folder / f".{name}.{uuid.uuid4().hex[:8]}.part"
    try:
        with h5py.File(tmp, "w") as h5:
            layout.create(h5, n)
            offset = 0
            for block in blocks:
                layout.write(h5, offset, block)
                offset += len(block)
            if offset != n:
                raise CacheError(f"{name}: wrote {offset} rows, expected {n}")
            h5.flush()
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        if final.exists():
            raise CacheError(f"refusing to overwrite published file {str(final)!r}")
        os.replace(tmp, final)
        _fsync_dir(folder)
    finally:
        tmp.unlink(missing_ok=True)


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
        self.layout = _Layout(fmt, sample_rate, clip_samples, label_mids)
        self.batch_size = batch_size
        self.shard_size = shard_size
        self.flush_interval = flush_interval
        self.prefix = prefix
        self._buffer = ClipBlock()
        self._keys: list[str] = []
        self._attempts: list[int] = []
        self._first_buffered: float | None = None
        self.recover()

    def _own(self, name: str) -> bool:
        pattern = re.escape(self.prefix) + r"(shard|batch)-[0-9a-f]+\.h5"
        return re.fullmatch(pattern, name) is not None

    def recover(self) -> None:
        """Delete this writer's files that the manifest does not reference (left by a kill)."""
        known = set(self.manifest.files()["name"])
        for path in self.folder.iterdir():
            m = re.fullmatch(r"\.(.+)\.[0-9a-f]{8}\.part", path.name)
            orphan_part = m is not None and self._own(m.group(1))
            if orphan_part or (self._own(path.name) and path.name not in known):
                logger.info("removing unreferenced file %s left by an interrupted run", path)
                path.unlink()

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

    def flush(self) -> None:
        """Publish buffered clips as one batch file and mark them ``ok`` in the manifest."""
        if len(self._buffer):
            block, keys, attempts = self._buffer, self._keys, self._attempts
            self._buffer, self._keys, self._attempts = ClipBlock(), [], []
            self._first_buffered = None
            name = f"{self.prefix}batch-{uuid.uuid4().hex}.h5"
            _write_file(self.folder, name, self.layout, [block], len(block))
            placements = [Placement(k, name, i, block.length[i]) for i, k in enumerate(keys)]
            self.manifest.commit_batch(name, placements, attempts)
        self.compact(final=False)

    def _next_shard_name(self) -> str:
        pattern = re.compile(re.escape(self.prefix) + r"shard-(\d{5,})\.h5")
        used = [int(m.group(1)) for n in self.manifest.files()["name"]
                if (m := pattern.fullmatch(n))]
        used += [int(m.group(1)) for p in self.folder.iterdir() if (m := pattern.fullmatch(p.name))]
        return f"{self.prefix}shard-{max(used, default=-1) + 1:05d}.h5"

    def compact(self, final: bool) -> None:
        """Merge published batches into shards of ``shard_size`` clips (any rest if final)."""
        while True:
            files = self.manifest.files()
            batches = files[(files["kind"] == "batch") & files["name"].map(self._own)]
            total = int(batches["n_rows"].sum())
            if total == 0 or (total < self.shard_size and not final):
                return
            take = min(total, self.shard_size)
            placed = self.manifest.placements(list(batches["name"]))
            plan: list[tuple[str, int, list[str]]] = []  # file, rows used, keys in row order
            need = take
            for name, n_rows in zip(batches["name"], batches["n_rows"], strict=True):
                if need == 0:
                    break
                keys = list(placed[placed["file"] == name].sort_values("row")["key"])
                if len(keys) != n_rows:
                    raise CacheError(
                        f"{name}: manifest places {len(keys)} clips in it, expected {n_rows}"
                    )
                plan.append((name, min(need, n_rows), keys))
                need -= plan[-1][1]

            shard = self._next_shard_name()
            _write_file(self.folder, shard, self.layout, self._read_plan(plan), take)
            new = [(shard, "shard", take)]
            shard_keys = [k for _, used, keys in plan for k in keys[:used]]
            placements = [Placement(k, shard, i, 0) for i, k in enumerate(shard_keys)]
            last, used, keys = plan[-1]
            if used < len(keys):
                with h5py.File(self.folder / last, "r") as h5:
                    rest = self.layout.read(h5, slice(used, len(keys)))
                rest_name = f"{self.prefix}batch-{uuid.uuid4().hex}.h5"
                _write_file(self.folder, rest_name, self.layout, [rest], len(rest))
                new.append((rest_name, "batch", len(rest)))
                placements += [Placement(k, rest_name, i, 0) for i, k in enumerate(keys[used:])]
            chosen = [name for name, _, _ in plan]
            self.manifest.replace_files(chosen, new, placements)
            for name in chosen:
                (self.folder / name).unlink(missing_ok=True)
            logger.info("published %s (%d clips)", shard, take)

    def _read_plan(self, plan: Sequence[tuple[str, int, list[str]]]) -> Iterator[ClipBlock]:
        for name, used, _ in plan:
            with h5py.File(self.folder / name, "r") as h5:
                yield self.layout.read(h5, slice(0, used))

    def close(self) -> None:
        """Publish everything buffered and compact the remaining batches into a last shard."""
        self.flush()
        self.compact(final=True)


class AudioSetCache:
    """All cached clips of one cache folder presented as one indexable collection.

    Opening checks that every file the manifest references exists with the recorded number of
    rows and fails loudly otherwise. HDF5 handles are opened lazily and per process, so an
    instance can be handed to forked DataLoader workers.

    Items are dicts with ``waveform`` (int16, padded to the clip length), ``length``,
    ``target`` (bool), ``ytid``, ``start`` and ``end``.
    """

    def __init__(self, folder: PathLike, manifest_name: str = MANIFEST_NAME):
        self.folder = Path(folder)
        path = self.folder / manifest_name
        if not path.is_file():
            parts = sorted(self.folder.glob("manifest.part-*.sqlite"))
            hint = " (run `audioset merge` to join the part manifests)" if parts else ""
            raise CacheError(f"no cache at {str(self.folder)!r}: {manifest_name} is missing{hint}")
        with Manifest.open(path, readonly=True) as manifest, manifest.snapshot():
            self.index = manifest.placements()
            files = manifest.files()
            self.sample_rate = int(manifest.get_meta("sample_rate") or 0)
            self.format = manifest.get_meta("format") or "pcm16"
            self.clip_samples = int(manifest.get_meta("clip_samples") or 0)
            mids = manifest.get_meta("labels")
        self.label_mids = mids.split(",") if mids else []
        self._check_files(files)
        self._pid: int | None = None
        self._handles: dict[str, h5py.File] = {}

    def _check_files(self, files: pd.DataFrame) -> None:
        counts = self.index.groupby("file").size()
        for name, n_rows in zip(files["name"], files["n_rows"], strict=True):
            path = self.folder / name
            if not path.is_file():
                raise CacheError(f"cache file {str(path)!r} is missing ({n_rows} clips)")
            try:
                with h5py.File(path, "r") as h5:
                    shape = h5["target"].shape
                    audio = "waveform" if "waveform" in h5 else "audio"
                    audio_rows = h5[audio].shape[0]
            except (OSError, KeyError) as exc:
                raise CacheError(f"cache file {str(path)!r} cannot be read: {exc}") from exc
            if shape[0] != n_rows or audio_rows != n_rows:
                raise CacheError(
                    f"cache file {str(path)!r} holds {shape[0]} rows, the manifest expects {n_rows}"
                )
        unknown = set(counts.index) - set(files["name"])
        if unknown:
            raise CacheError(f"manifest places clips in unregistered files: {sorted(unknown)[:5]}")

    def __len__(self) -> int:
        return len(self.index)

    def __repr__(self) -> str:
        return f"AudioSetCache({str(self.folder)!r}, {len(self)} clips, {self.format})"

    def _h5(self, name: str) -> h5py.File:
        if self._pid != os.getpid():
            self._handles = {}
            self._pid = os.getpid()
        h5 = self._handles.get(name)
        if h5 is None:
            h5 = self._handles[name] = h5py.File(self.folder / name, "r")
        return h5

    def __getitem__(self, i: int) -> dict[str, object]:
        if not -len(self) <= i < len(self):
            raise IndexError(f"clip {i} out of range for {len(self)} clips")
        rec = self.index.iloc[i]
        h5 = self._h5(rec["file"])
        row = int(rec["row"])
        length = int(h5["length"][row])
        if "waveform" in h5:
            waveform = h5["waveform"][row]
        else:
            from .audio import decode_audio

            pcm, _ = decode_audio(bytes(h5["audio"][row]), sample_rate=self.sample_rate,
                                  num_samples=length)
            waveform = np.zeros(self.clip_samples, dtype=np.int16)
            waveform[: min(len(pcm), self.clip_samples)] = pcm[: self.clip_samples]
        return {
            "waveform": waveform,
            "length": length,
            "target": h5["target"][row],
            "ytid": rec["ytid"],
            "start": float(rec["start"]),
            "end": float(rec["end"]),
        }

    def targets(self) -> np.ndarray:
        """Clips × labels boolean matrix, in the order of this cache's index."""
        out = np.zeros((len(self), len(self.label_mids)), dtype=bool)
        for name, rows in self.index.groupby("file").indices.items():
            file_rows = self.index["row"].to_numpy()[rows]
            out[rows] = self._h5(name)["target"][()][file_rows]
        return out

    def close(self) -> None:
        """Close open HDF5 handles."""
        for h5 in self._handles.values():
            h5.close()
        self._handles = {}

    def __getstate__(self) -> dict[str, object]:
        state = self.__dict__.copy()
        state["_handles"] = {}
        state["_pid"] = None
        return state


def open_cache(split: str | None = None, root: PathLike | None = None,
               folder: PathLike | None = None) -> AudioSetCache:
    """Open the cache of ``split`` under the data root (or an explicit ``folder``)."""
    if folder is None:
        if split is None:
            raise ConfigError("open_cache needs a split name or a folder")
        folder = cache_dir(split, root)
    return AudioSetCache(folder)


__all__ = [
    "FORMATS",
    "AudioSetCache",
    "CacheWriter",
    "ClipBlock",
    "bytes_per_clip",
    "cache_dir",
    "check_format",
    "open_cache",
    "open_manifest",
]
