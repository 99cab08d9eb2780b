"""HDF5 cache files: their layout, checksums, atomic publication and what each says it holds.

Each file holds the datasets PANNs-style code reads: ``audio_name``, ``waveform`` (int16,
N × samples, one chunk per clip) or ``audio`` (the encoded bytes of each clip, compact formats),
``target`` (N × labels, bool), plus ``ytid``, ``start``, ``end`` and ``length`` (true samples).
From format version 2 every dataset carries HDF5's Fletcher-32 checksum per chunk, and encoded
clips a CRC-32 each (``audio_crc32``), so flipped bytes fail the read instead of returning wrong
audio or labels. A file also names its own clips (``ytid``, ``start``), so a reader can tell a
file that holds other clips than the manifest says, and a lost manifest can be rebuilt.
"""

from __future__ import annotations

import io
import re
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from audioset_data.errors import CacheError, ConfigError
from audioset_data.fileio import atomic_path, check_free_space, disk_full, is_disk_full

FORMAT_VERSION = 2
#: ``pcm16`` stores raw int16 rows; the others store each clip re-encoded as bytes.
FORMATS = ("pcm16", "flac", "opus")
#: Typical Opus bit rate of the compact format, for disk-space estimates.
_OPUS_BYTES_PER_SECOND = 64_000 / 8
#: Names of published files: an optional job-array prefix, then ``shard-NNNNN`` or ``batch-HEX``.
CACHE_FILE = re.compile(r"(?P<prefix>(?:part-\d+-of-\d+-)?)(?P<kind>shard|batch)-[0-9a-f]+\.h5")
#: Temporary names of files being written (``.<name>.<8 hex>.part``).
PART_FILE = re.compile(r"\.(?P<name>.+)\.[0-9a-f]{8}\.part")
_TARGET_CHUNK_ROWS = 64
#: Bytes of a cache file besides its rows (superblock, object headers, chunk indexes).
_FILE_OVERHEAD = 64 * 1024
#: Bytes per row besides audio and labels (name, id, times, length, checksums).
_ROW_OVERHEAD = 64


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


def open_h5(path: Path) -> h5py.File:
    """Open a cache file read-only; any failure becomes a :class:`CacheError` naming it."""
    try:
        return h5py.File(path, "r")
    except FileNotFoundError:
        raise CacheError(f"cache file {str(path)!r} is missing") from None
    except OSError as exc:
        raise CacheError(f"cache file {str(path)!r} cannot be read: {exc}") from None


class Layout:
    """Shapes and attributes shared by every file of one cache."""

    def __init__(self, fmt: str, sample_rate: int, clip_samples: int, label_mids: Sequence[str]):
        self.fmt = check_format(fmt)
        self.sample_rate = int(sample_rate)
        self.clip_samples = int(clip_samples)
        self.label_mids = list(label_mids)

    @classmethod
    def of_file(cls, h5: h5py.File) -> Layout:
        """The layout a file was written with (from its attributes)."""
        labels = [x.decode() if isinstance(x, bytes) else str(x) for x in h5.attrs["labels"]]
        return cls(str(h5.attrs["format"]), int(h5.attrs["sample_rate"]),
                   int(h5.attrs["clip_samples"]), labels)

    def same_as(self, other: Layout) -> bool:
        """Whether files of ``other`` can live in a cache of this layout."""
        return (self.fmt, self.sample_rate, self.clip_samples, self.label_mids) == (
            other.fmt, other.sample_rate, other.clip_samples, other.label_mids)

    def file_bytes(self, n: int, audio_bytes: int | None = None) -> int:
        """About how many bytes an ``n``-row file takes: exact audio for pcm16, else
        ``audio_bytes`` (the encoded clips' total), plus labels and HDF5's own overhead."""
        audio = n * self.clip_samples * 2 if self.fmt == "pcm16" else int(audio_bytes or 0)
        return audio + n * (max(1, len(self.label_mids)) + _ROW_OVERHEAD) + _FILE_OVERHEAD

    def create(self, h5: h5py.File, n: int) -> None:
        """Create the datasets of an ``n``-clip file, checksummed per chunk."""
        h5.attrs["format"] = self.fmt
        h5.attrs["format_version"] = FORMAT_VERSION
        h5.attrs["sample_rate"] = self.sample_rate
        h5.attrs["clip_samples"] = self.clip_samples
        h5.attrs["labels"] = np.array(self.label_mids, dtype=h5py.string_dtype())
        check = {"fletcher32": True} if n else {}
        for name, dtype in (("audio_name", "S20"), ("ytid", "S11"), ("start", np.float64),
                            ("end", np.float64), ("length", np.int32)):
            h5.create_dataset(name, shape=(n,), dtype=dtype, **check)
        n_labels = max(1, len(self.label_mids))
        h5.create_dataset("target", shape=(n, n_labels), dtype=bool,
                          chunks=(max(1, min(n, _TARGET_CHUNK_ROWS)), n_labels) if n else None,
                          **check)
        if self.fmt == "pcm16":
            h5.create_dataset("waveform", shape=(n, self.clip_samples), dtype=np.int16,
                              chunks=(1, self.clip_samples) if n else None, **check)
        else:
            h5.create_dataset("audio", shape=(n,), dtype=h5py.vlen_dtype(np.uint8))
            h5.create_dataset("audio_crc32", shape=(n,), dtype=np.uint32, **check)

    def write(self, h5: h5py.File, offset: int, block: ClipBlock) -> None:
        """Write ``block`` at rows ``offset...``."""
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
            crcs = np.zeros(n, dtype=np.uint32)
            for i, data in enumerate(block.audio):
                data = bytes(data)
                ds[offset + i] = np.frombuffer(data, dtype=np.uint8)
                crcs[i] = zlib.crc32(data)
            h5["audio_crc32"][sl] = crcs

    def read(self, h5: h5py.File, rows: Sequence[int] | np.ndarray) -> ClipBlock:
        """Read the clips at ``rows`` (increasing) into memory, checksums verified."""
        rows = np.asarray(rows, dtype=np.int64)
        if len(rows) == 0:
            return ClipBlock()
        lo, hi = int(rows[0]), int(rows[-1]) + 1
        sel = rows - lo

        def take(name: str) -> np.ndarray:
            return h5[name][lo:hi][sel]

        block = ClipBlock(
            ytid=[y.decode() for y in take("ytid")],
            start=list(take("start")),
            end=list(take("end")),
            length=list(take("length")),
            target=list(take("target")),
        )
        if self.fmt == "pcm16":
            ds = h5["waveform"]
            block.audio = [ds[int(r)] for r in rows]
        else:
            block.audio = [read_encoded(h5, int(r)) for r in rows]
        return block


def read_encoded(h5: h5py.File, row: int) -> bytes:
    """The encoded bytes of one clip of a compact-format file, CRC-checked when stored."""
    data = bytes(h5["audio"][row])
    if "audio_crc32" in h5:
        want = int(h5["audio_crc32"][row])
        if zlib.crc32(data) != want:
            raise CacheError(f"cache file {h5.filename!r} row {row}: the encoded clip fails its "
                             "CRC-32 check (damaged bytes); run `audioset cache --repair`")
    return data


class _FullDiskGuard(io.RawIOBase):
    """The file HDF5 writes through: a write that finds the disk full is remembered and the
    rest of the file discarded, never reported to HDF5.

    HDF5 does not recover from a failed write: closing the file then fails again and again,
    and a later garbage collection of its objects can crash the process. Behind this guard
    HDF5 always sees success; the writer checks :attr:`error` once the file is closed and
    throws the file away.
    """

    def __init__(self, fh: io.FileIO):
        super().__init__()
        self._fh = fh
        self.error: OSError | None = None
        #: the end of the furthest write HDF5 asked for: the size the file would have had
        self.end = 0

    def readable(self) -> bool:
        return True

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # noqa: ANN001 - any writable buffer
        return self._fh.readinto(buffer)

    def write(self, data) -> int:  # noqa: ANN001 - any bytes-like object
        view = memoryview(data).cast("B")
        self.end = max(self.end, self._fh.tell() + len(view))
        done = 0
        while self.error is None and done < len(view):
            try:
                done += self._fh.write(view[done:]) or 0
            except OSError as exc:
                if not is_disk_full(exc):
                    raise
                self.error = exc
        return len(view)

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._fh.seek(offset, whence)

    def tell(self) -> int:
        return self._fh.tell()

    def truncate(self, size: int | None = None) -> int:
        try:
            return self._fh.truncate(size)
        except OSError as exc:
            if not is_disk_full(exc):
                raise
            self.error = self.error or exc
            return self._fh.tell() if size is None else size

    def flush(self) -> None:
        return None


class _Discarded(Exception):
    """The file being written was thrown away (its disk filled up)."""


def write_file(
    folder: Path, name: str, layout: Layout, blocks: Iterable[ClipBlock], n: int,
    *, need: int | None = None,
) -> int:
    """Write ``n`` rows from ``blocks`` into ``folder/name`` atomically (temp file, fsync,
    rename) and return its size; blocks are consumed one at a time so a shard never sits in
    memory whole. The file is made readable as the umask allows (not only by its owner).

    ``need`` is the size the file will about have (known exactly for pcm16): a file that
    cannot fit is refused before anything is written. A disk that fills up while writing
    raises :class:`~audioset_data.errors.DiskFullError` too; no part of the file is kept.
    """
    final = folder / name
    if need is None and layout.fmt == "pcm16":
        need = layout.file_bytes(n)
    what = f"writing {name} ({n} clips)"
    if need:
        check_free_space(folder, need, what)
    guard: _FullDiskGuard | None = None
    try:
        with atomic_path(final, overwrite=False) as tmp:
            with open(tmp, "xb+", buffering=0) as fh:
                guard = _FullDiskGuard(fh)
                with h5py.File(guard, "w") as h5:
                    layout.create(h5, n)
                    offset = 0
                    for block in blocks:
                        layout.write(h5, offset, block)
                        offset += len(block)
                        if guard.error is not None:  # the rest would be thrown away
                            break
                    if offset != n and guard.error is None:
                        raise CacheError(f"{name}: wrote {offset} rows, expected {n}")
                    h5.flush()
            if guard.error is not None:
                raise _Discarded
    except _Discarded:  # reported once the temporary file is gone, with the space it held
        raise disk_full(folder, need=max(need or 0, guard.end if guard else 0),
                        what=what) from guard.error if guard else None
    return final.stat().st_size


@dataclass
class FileIdentity:
    """What a cache file says it holds: one entry per row."""

    n_rows: int
    ytid: np.ndarray
    start: np.ndarray
    end: np.ndarray
    length: np.ndarray
    layout: Layout


def identity(path: Path) -> FileIdentity:
    """Read the clip names, times and lengths a file holds (raises :class:`CacheError`)."""
    with open_h5(path) as h5:
        try:
            layout = Layout.of_file(h5)
            ytid = h5["ytid"][()].astype("U11")
            n = len(ytid)
            out = FileIdentity(n, ytid, h5["start"][()], h5["end"][()], h5["length"][()], layout)
            audio = "waveform" if "waveform" in h5 else "audio"
            if h5["target"].shape[0] != n or h5[audio].shape[0] != n:
                raise CacheError(f"cache file {str(path)!r}: datasets disagree on the row count")
            return out
        except (OSError, KeyError, ValueError, TypeError) as exc:
            raise CacheError(f"cache file {str(path)!r} cannot be read: {exc}") from None


def keys_of(ytid: np.ndarray, start: np.ndarray) -> list[str]:
    """Segment keys (see :func:`audioset_data.cache.manifest.clip_key`) of parallel arrays."""
    ms = np.round(np.asarray(start, dtype=np.float64) * 1000).astype(np.int64)
    return [f"{y}_{m}" for y, m in zip(np.asarray(ytid).astype(str), ms.tolist(), strict=True)]


__all__ = [
    "CACHE_FILE",
    "FORMATS",
    "FORMAT_VERSION",
    "ClipBlock",
    "FileIdentity",
    "Layout",
    "bytes_per_clip",
    "check_format",
    "identity",
    "keys_of",
    "open_h5",
    "read_encoded",
    "write_file",
]
