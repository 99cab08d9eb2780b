"""Reading a cache for training: a compact index, a stable order, checked reads, batch reads.

:class:`AudioSetCache` presents every cached clip of a folder as one indexable collection:

- **Order.** Positions follow the manifest's order of registration (the segment list's), which
  compaction and later downloads never change for the clips already cached.
- **Index.** A few numpy arrays (id, start, end, file code, row, length): about 40 bytes a clip.
  The arrays are cached beside the manifest, keyed by the manifest's generation counter, so a
  2M-clip cache opens in well under a second.
- **Checks.** Opening checks names, presence and sizes of files and that no row lies past its
  file's end; :meth:`AudioSetCache.check_files` also opens every file (a zeroed header keeps
  the size); clips that cannot be read are left out and listed in :attr:`unavailable` with the
  reason. The first read of each file checks that it holds the clips the manifest says (a
  swapped or foreign file raises :class:`CacheError`), and HDF5 verifies each chunk's checksum.
- **Snapshot.** A file removed by a running download's compaction is looked up again in the
  manifest; the reader keeps its clips and positions.
- **Workers.** HDF5 handles open lazily per process; the object pickles without them, for
  spawn-started DataLoader workers and Dask.
"""

from __future__ import annotations

import difflib
import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd
from h5py import h5s

from audioset_data.config import PathLike, data_home
from audioset_data.errors import CacheError, ConfigError
from audioset_data.segments.splits import SPLIT_ALIASES, SPLITS, normalise_split_name

from .codec import decode_clip
from .index import load_index as _load_index
from .index import pack_keys
from .manifest import FILE_NAME_PATTERN, MANIFEST_NAME, Manifest
from .shards import keys_of, read_encoded

logger = logging.getLogger(__name__)

#: Largest label slab read at once by a batch read (rows between the first and last wanted).
_SLAB_BYTES = 32 << 20


@dataclass
class _Handle:
    """One open file with its datasets looked up once."""

    h5: h5py.File
    audio: h5py.Dataset
    target: h5py.Dataset
    pcm: bool

    def read_row(self, ds: h5py.Dataset, row: int, out: np.ndarray) -> None:
        """Read one row of a 2-D dataset into the contiguous 1-D array ``out`` through the
        low-level API (h5py's indexing costs more than the read of a cached chunk)."""
        space = ds.id.get_space()
        space.select_hyperslab((row, 0), (1, out.shape[0]))
        ds.id.read(h5s.create_simple(out.shape), space, out)


class AudioSetCache:
    """All cached clips of one cache folder presented as one indexable collection.

    Items are dicts with ``waveform`` (int16, padded to the clip length), ``length`` (true
    samples), ``target`` (bool, label-index order), ``ytid``, ``start``, ``end`` and ``key``.
    :meth:`read` reads many positions at once; :meth:`targets` gives all labels as a sparse
    matrix. Clips that cannot be read are not served: :attr:`unavailable` lists them and why.
    """

    def __init__(self, folder: PathLike, manifest_name: str = MANIFEST_NAME):
        self.folder = Path(folder)
        self.manifest_name = manifest_name
        path = self.folder / manifest_name
        if not path.is_file():
            raise CacheError(f"no cache at {str(self.folder)!r}: {manifest_name} is missing"
                             f"{_missing_hint(self.folder)}")
        for attempt in range(3):
            with Manifest.open(path, readonly=True) as manifest, manifest.snapshot():
                self.sample_rate = int(manifest.get_meta("sample_rate") or 0)
                self.format = manifest.get_meta("format") or "pcm16"
                self.clip_samples = int(manifest.get_meta("clip_samples") or 0)
                mids = manifest.get_meta("labels")
                generation = manifest.generation()
                index = _load_index(self.folder, manifest_name, manifest)
            self.label_mids = mids.split(",") if mids else []
            self._files = [str(x) for x in index["files"]]
            self._file_rows = index["file_rows"]
            self._file_size = index["file_size"]
            self._ytid = index["ytid"]
            self._start = index["start"]
            self._end = index["end"]
            self._file = index["file_code"]
            self._row = index["row"]
            self._length = index["length"]
            self._check()
            # a file that vanished after the snapshot was compacted by a running download:
            # read the manifest again rather than report its clips as lost
            if "file missing" not in set(self.unavailable["problem"]) or attempt == 2:
                break
            with Manifest.open(path, readonly=True) as manifest:
                if manifest.generation() == generation:
                    break
        self._pid: int | None = None
        self._handles: dict[int, _Handle] = {}
        self._checked: set[int] = set()
        self._by_file: tuple[np.ndarray, np.ndarray] | None = None
        self._sorted_keys: tuple[np.ndarray, np.ndarray] | None = None
        self._targets: Any = None

    # -- opening ----------------------------------------------------------------------------
    def _check(self) -> None:
        """Leave out clips whose file is missing, damaged or misnamed, or whose row lies past
        its file's end; list them in :attr:`unavailable`."""
        n_files = len(self._files)
        problem = np.full(n_files, "", dtype=object)
        present = {e.name: e for e in os.scandir(self.folder)} if n_files else {}
        for code, name in enumerate(self._files):
            if not FILE_NAME_PATTERN.fullmatch(name):
                problem[code] = f"file name {name!r} is not a plain cache file name"
            elif name not in present:
                problem[code] = "file missing"
            elif 0 <= self._file_size[code] != present[name].stat().st_size:
                problem[code] = (f"file damaged: {present[name].stat().st_size} bytes, "
                                 f"the manifest recorded {self._file_size[code]}")
        problem = np.append(problem, "file not registered in the manifest")
        code = np.where((self._file >= 0) & (self._file < n_files), self._file, n_files)
        why = problem[code]
        past = self._row >= np.append(self._file_rows, 0)[code]
        why[past & (why == "")] = "row past the end of its file"
        why[(self._row < 0) & (why == "")] = "negative row"
        bad = why != ""
        self.unavailable = pd.DataFrame({
            "key": keys_of(self._ytid[bad], self._start[bad]),
            "ytid": self._ytid[bad].astype(str),
            "start": self._start[bad],
            "file": [self._files[c] if c >= 0 else "" for c in self._file[bad]],
            "problem": why[bad].astype(str),
        })
        if bad.any():
            logger.warning("%s: %d cached clips cannot be read and are left out (%s); "
                           "`audioset cache --repair` sends them back to be fetched again",
                           self.folder, int(bad.sum()), self.unavailable["problem"].iloc[0])
            keep = ~bad
            for name in ("_ytid", "_start", "_end", "_file", "_row", "_length"):
                setattr(self, name, getattr(self, name)[keep])

    def check_files(self) -> int:
        """Open every file that holds clips and check that it holds them; the clips of a file
        that does not open or holds other clips (damage that keeps its size, such as a zeroed
        header) are left out and listed in :attr:`unavailable`. Returns the clips left out.

        Opening the cache checks only names and sizes, which costs nothing per file; this
        reads each file's header and clip list (what ``audioset cache`` counts as readable).
        """
        bad: dict[int, str] = {}
        for code in np.unique(self._file):
            try:
                self._handle(int(code))
            except CacheError as exc:
                bad[int(code)] = str(exc).replace(
                    f"cache file {str(self.folder / self._files[int(code)])!r} ", "")
            except _Moved:  # compacted away while we looked: its clips were found elsewhere
                continue
        if not bad:
            return 0
        out = np.isin(self._file, list(bad))
        lost = pd.DataFrame({
            "key": keys_of(self._ytid[out], self._start[out]),
            "ytid": self._ytid[out].astype(str),
            "start": self._start[out],
            "file": [self._files[c] for c in self._file[out]],
            "problem": [f"file unreadable: {bad[c]}" for c in self._file[out]],
        })
        self.unavailable = pd.concat([self.unavailable, lost], ignore_index=True)
        logger.warning("%s: %d cached clips are in files that cannot be read and are left out "
                       "(%s); `audioset cache --repair` sends them back to be fetched again",
                       self.folder, int(out.sum()), lost["problem"].iloc[0])
        keep = ~out
        for name in ("_ytid", "_start", "_end", "_file", "_row", "_length"):
            setattr(self, name, getattr(self, name)[keep])
        self._by_file = self._sorted_keys = self._targets = None
        return int(out.sum())

    # -- basics -----------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._file)

    def __repr__(self) -> str:
        return f"AudioSetCache({str(self.folder)!r}, {len(self)} clips, {self.format})"

    def __enter__(self) -> AudioSetCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _position(self, i: int) -> int:
        n = len(self)
        if not isinstance(i, int | np.integer):
            raise TypeError(f"clip positions are integers, not {type(i).__name__}")
        if not -n <= i < n:
            raise IndexError(f"clip {i} out of range for {n} clips")
        return int(i) % n

    @property
    def ytids(self) -> np.ndarray:
        """Video id of every clip, in position order."""
        return self._ytid.astype(str)

    @property
    def starts(self) -> np.ndarray:
        """Start time (s) of every clip, in position order."""
        return self._start

    @property
    def lengths(self) -> np.ndarray:
        """True length in samples of every clip (shorter than the clip when a video ends)."""
        return self._length

    def key(self, i: int) -> str:
        """Segment key (``ytid_startms``) of position ``i``."""
        i = self._position(i)
        return keys_of(self._ytid[i : i + 1], self._start[i : i + 1])[0]

    def keys(self) -> list[str]:
        """Segment keys of every clip, in position order."""
        return keys_of(self._ytid, self._start)

    def positions(self, keys: Sequence[str]) -> np.ndarray:
        """Positions of segment keys (``ytid_startms``); raises KeyError for one not here."""
        if self._sorted_keys is None:
            packed = pack_keys(self._ytid, np.round(self._start * 1000).astype(np.int64))
            order = np.argsort(packed, kind="stable")
            self._sorted_keys = (packed[order], order)
        packed_sorted, order = self._sorted_keys
        ytid, ms = [], []
        for k in keys:
            y, _, m = str(k).rpartition("_")
            if len(y) != 11 or not m.lstrip("-").isdigit():
                raise KeyError(f"{k!r} is not a segment key (ytid_startms)")
            ytid.append(y)
            ms.append(int(m))
        want = pack_keys(np.array(ytid, dtype="S11"), np.array(ms, dtype=np.int64))
        at = np.searchsorted(packed_sorted, want)
        at = np.minimum(at, max(len(packed_sorted) - 1, 0))
        found = (packed_sorted[at] == want) if len(packed_sorted) else np.zeros(len(want), bool)
        if not found.all():
            missing = [k for k, f in zip(keys, found, strict=True) if not f]
            raise KeyError(f"{len(missing)} keys are not in this cache, e.g. {missing[0]!r}")
        return order[at]

    def position(self, key: str) -> int:
        """Position of one segment key."""
        return int(self.positions([key])[0])

    # -- files ------------------------------------------------------------------------------
    def _handle(self, code: int) -> _Handle:
        if self._pid != os.getpid():
            self._handles = {}
            self._pid = os.getpid()
        handle = self._handles.get(code)
        if handle is None:
            handle = self._open(code)
            self._handles[code] = handle
        return handle

    def _open(self, code: int) -> _Handle:
        name = self._files[code]
        path = self.folder / name
        if not path.exists() and self._relocate(code):
            raise _Moved
        try:
            h5 = h5py.File(path, "r")
        except OSError as exc:
            raise CacheError(f"cache file {str(path)!r} cannot be read: {exc}") from None
        try:
            pcm = "waveform" in h5
            handle = _Handle(h5, h5["waveform" if pcm else "audio"], h5["target"], pcm)
            if code not in self._checked:
                self._check_identity(code, h5)
                self._checked.add(code)
        except BaseException:
            h5.close()
            raise
        return handle

    def _check_identity(self, code: int, h5: h5py.File) -> None:
        """The file must hold, at each row, the clip the manifest places there."""
        path = self.folder / self._files[code]
        try:
            n = h5["ytid"].shape[0]
            ytid = h5["ytid"][()]
            start = h5["start"][()]
            rows_ok = h5["target"].shape[0] == n and h5["waveform" if "waveform" in h5
                                                        else "audio"].shape[0] == n
        except (OSError, KeyError) as exc:
            raise CacheError(f"cache file {str(path)!r} cannot be read: {exc}") from None
        if not rows_ok or n != self._file_rows[code]:
            raise CacheError(f"cache file {str(path)!r} holds {n} rows, the manifest expects "
                             f"{self._file_rows[code]}; run `audioset cache --repair`")
        pos = self._positions_in(code)
        rows = self._row[pos]
        wrong = (ytid[rows] != self._ytid[pos]) | (
            np.round(start[rows] * 1000) != np.round(self._start[pos] * 1000))
        if wrong.any():
            j = int(np.flatnonzero(wrong)[0])
            raise CacheError(
                f"cache file {str(path)!r} row {rows[j]} holds {ytid[rows[j]].decode()} at "
                f"{start[rows[j]]:.3f}s, the manifest expects {self._ytid[pos[j]].decode()} at "
                f"{self._start[pos[j]]:.3f}s ({int(wrong.sum())} rows differ: the file was "
                "replaced or swapped); run `audioset cache --repair`")

    def _positions_in(self, code: int) -> np.ndarray:
        if self._by_file is None:
            order = np.argsort(self._file, kind="stable")
            bounds = np.searchsorted(self._file[order], np.arange(len(self._files) + 1))
            self._by_file = (order, bounds)
        order, bounds = self._by_file
        return order[bounds[code] : bounds[code + 1]]

    def _relocate(self, code: int) -> bool:
        """A file vanished (compacted by a running download): find its clips' new places.

        Returns True when every clip was found (the caller reads again), raises
        :class:`CacheError` when some are no longer cached.
        """
        pos = self._positions_in(code)
        keys = keys_of(self._ytid[pos], self._start[pos])
        with Manifest.open(self.folder / self.manifest_name, readonly=True) as manifest, \
                manifest.snapshot():
            where = manifest.locate(keys)
            files = manifest.files()
        lost = [k for k in keys if k not in where]
        if lost:
            raise CacheError(
                f"cache file {str(self.folder / self._files[code])!r} is gone and "
                f"{len(lost)} of its clips are no longer cached (e.g. {lost[0]}); reopen the "
                "cache")
        rows_of = dict(zip(files["name"], files["n_rows"], strict=True))
        for p, k in zip(pos, keys, strict=True):
            name, row = where[k]
            if name not in self._files:
                if not FILE_NAME_PATTERN.fullmatch(name):
                    raise CacheError(f"manifest names a bad file {name!r}; reopen the cache")
                self._files.append(name)
                self._file_rows = np.append(self._file_rows, rows_of.get(name, 0))
                self._file_size = np.append(self._file_size, -1)
            self._file[p] = self._files.index(name)
            self._row[p] = row
        self._by_file = None
        logger.info("%s was compacted away; %d clips found in their new files",
                    self._files[code], len(pos))
        return True

    # -- reading ----------------------------------------------------------------------------
    def _decode(self, data: bytes, length: int) -> np.ndarray:
        pcm = decode_clip(data, self.format, sample_rate=self.sample_rate,
                          num_samples=min(max(length, 0), self.clip_samples))
        out = np.zeros(self.clip_samples, dtype=np.int16)
        out[: len(pcm)] = pcm
        return out

    def _read_one(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        for _ in range(2):
            code, row = int(self._file[i]), int(self._row[i])
            try:
                h = self._handle(code)
            except _Moved:
                continue
            try:
                target = np.empty(len(self.label_mids), dtype=bool)
                h.read_row(h.target, row, target)
                if h.pcm:
                    audio = np.empty(self.clip_samples, dtype=np.int16)
                    h.read_row(h.audio, row, audio)
                else:
                    audio = self._decode(read_encoded(h.h5, row), int(self._length[i]))
                return audio, target
            except OSError as exc:
                raise self._read_error(code, row, i, exc) from None
        raise CacheError(f"cache {str(self.folder)!r} keeps changing while read; reopen it")

    def _read_error(self, code: int, row: int, i: int, exc: BaseException) -> CacheError:
        return CacheError(
            f"cache file {str(self.folder / self._files[code])!r} row {row} ({self.key(i)}) "
            f"cannot be read: {exc}; `audioset cache --verify` checks every clip")

    def __getitem__(self, i: int) -> dict[str, object]:
        i = self._position(i)
        waveform, target = self._read_one(i)
        return {
            "waveform": waveform,
            "length": int(self._length[i]),
            "target": target,
            "ytid": self._ytid[i].decode(),
            "start": float(self._start[i]),
            "end": float(self._end[i]),
            "key": self.key(i),
        }

    def read(
        self, positions: Sequence[int] | np.ndarray, out: np.ndarray | None = None
    ) -> dict[str, np.ndarray]:
        """Read many clips at once: each file is opened once and read in row order.

        Returns arrays in the order of ``positions``: ``waveform`` (n × clip samples, int16),
        ``length``, ``target`` (n × labels, bool) and ``position``. ``out`` (an int16 array of
        at least n × clip samples) receives the waveforms instead of a new array: a loader that
        reuses one buffer saves the page faults of a fresh 40 MB allocation per batch.
        """
        pos = np.asarray(positions, dtype=np.int64).reshape(-1)
        n = len(self)
        if len(pos) and (pos.min() < -n or pos.max() >= n):
            raise IndexError(f"positions out of range for {n} clips")
        pos = pos % max(n, 1)
        if out is None:
            wave = np.empty((len(pos), self.clip_samples), dtype=np.int16)
        else:
            if (out.dtype != np.int16 or out.ndim != 2 or out.shape[0] < len(pos)
                    or out.shape[1] != self.clip_samples or not out.flags.c_contiguous):
                raise ValueError(f"out must be a C-contiguous int16 array of at least "
                                 f"({len(pos)}, {self.clip_samples}), not {out.dtype} "
                                 f"{out.shape}")
            wave = out[: len(pos)]
        target = np.zeros((len(pos), len(self.label_mids)), dtype=bool)
        for _ in range(3):
            try:
                self._read_into(pos, wave, target)
                break
            except _Moved:
                continue
        else:
            raise CacheError(f"cache {str(self.folder)!r} keeps changing while read; reopen it")
        return {"waveform": wave, "length": self._length[pos].copy(), "target": target,
                "position": pos}

    def encoded(self, i: int) -> bytes:
        """The bytes of clip ``i`` of a compact-format cache (FLAC / Opus) exactly as stored,
        for exports that copy clips without decoding them; a clip whose file a running download
        compacted away is re-located."""
        if self.format == "pcm16":
            raise CacheError(f"cache {str(self.folder)!r} stores raw pcm16 samples, not encoded "
                             "clips: read them with read()")
        for _ in range(3):
            code, row = int(self._file[i]), int(self._row[i])
            try:
                handle = self._handle(code)
            except _Moved:
                continue
            try:
                return read_encoded(handle.h5, row)
            except OSError as exc:
                if isinstance(exc, CacheError):
                    raise
                raise self._read_error(code, row, i, exc) from None
        raise CacheError(f"cache {str(self.folder)!r} keeps changing while read; read it once "
                         "its download has finished")

    def _read_into(self, pos: np.ndarray, wave: np.ndarray, target: np.ndarray) -> None:
        codes = self._file[pos]
        order = np.lexsort((self._row[pos], codes))
        bounds = np.flatnonzero(np.diff(codes[order])) + 1
        for group in np.split(order, bounds):
            if not len(group):
                continue
            code = int(codes[group[0]])
            h = self._handle(code)
            rows = self._row[pos[group]]
            uniq, inverse = np.unique(rows, return_inverse=True)
            try:
                lo, hi = int(uniq[0]), int(uniq[-1]) + 1
                if (hi - lo) * target.shape[1] <= _SLAB_BYTES:  # labels are small: one slab
                    tg = h.target[lo:hi][uniq - lo]
                else:
                    tg = np.stack([h.target[int(r)] for r in uniq])
                target[group] = tg[inverse]
                if h.pcm:
                    for g in group:  # sorted by row: each chunk read once, straight into place
                        at = int(self._row[pos[g]])
                        try:
                            h.read_row(h.audio, at, wave[g])
                        except OSError as exc:
                            raise _RowError(at, exc) from None
                else:
                    for j, g in enumerate(group):
                        i = int(pos[g])
                        wave[g] = self._decode(read_encoded(h.h5, int(uniq[inverse[j]])),
                                               int(self._length[i]))
            except OSError as exc:
                row = exc.row if isinstance(exc, _RowError) else int(uniq[0])
                at = group[int(np.flatnonzero(rows == row)[0])] if (rows == row).any() \
                    else group[0]
                raise self._read_error(code, row, int(pos[at]), exc) from None

    def targets(self) -> Any:
        """All labels as a ``scipy.sparse.csr_matrix`` (clips × labels, bool), rows in position
        order, columns in the label index's order; read once per file and kept."""
        if self._targets is None:
            from scipy import sparse

            rows, cols = [], []
            for code in np.unique(self._file):
                pos = self._positions_in(int(code))
                h = self._handle(int(code))
                try:
                    dense = h.target[()][self._row[pos]]
                except OSError as exc:
                    raise self._read_error(int(code), -1, int(pos[0]), exc) from None
                r, c = np.nonzero(dense)
                rows.append(pos[r])
                cols.append(c)
            r = np.concatenate(rows) if rows else np.zeros(0, np.int64)
            c = np.concatenate(cols) if cols else np.zeros(0, np.int64)
            self._targets = sparse.csr_matrix(
                (np.ones(len(r), dtype=bool), (r, c)), shape=(len(self), len(self.label_mids)))
        return self._targets

    def close(self) -> None:
        """Close open HDF5 handles."""
        for h in self._handles.values():
            h.h5.close()
        self._handles = {}

    def __getstate__(self) -> dict[str, object]:
        state = self.__dict__.copy()
        state.update(_handles={}, _pid=None, _sorted_keys=None, _by_file=None)
        return state


class _RowError(OSError):
    """One row failed its read (its checksum): carries the row for the message."""

    def __init__(self, row: int, exc: BaseException):
        super().__init__(str(exc))
        self.row = row


class _Moved(Exception):
    """A file was compacted away and its clips re-located: read again."""


def _missing_hint(folder: Path) -> str:
    if folder.is_dir():
        if any(folder.glob("manifest.part-*.sqlite")):
            return " (run `audioset merge` to join the part manifests)"
        n = sum(1 for p in folder.glob("*.h5"))
        if n:
            return (f"; {n} cache files are here: `audioset cache --repair` rebuilds the "
                    "manifest from them")
    return "; " + missing_cache_fix(folder)


def missing_cache_fix(folder: Path) -> str:
    """What to do about a cache folder that holds no cache: the closest cache name that does
    exist (or official split), and the command that makes this one."""
    name = folder.name
    caches = sorted(p.name for p in folder.parent.glob("*") if (p / MANIFEST_NAME).is_file()) \
        if folder.parent.is_dir() else []
    close = difflib.get_close_matches(name, [*caches, *SPLITS, *SPLIT_ALIASES], n=1,
                                      cutoff=0.6)
    close = [SPLIT_ALIASES.get(c, c) for c in close if c != name]
    have = f" (caches here: {', '.join(caches)})" if caches else ""
    if close:
        other = close[0]
        make = "" if other in caches else f" (`audioset download --split {other}` makes it)"
        return f"did you mean {other!r}?{make}{have}"
    if name in SPLITS:
        make = f"`audioset download --split {name}`"
    else:
        make = f"`audioset download --segments FILE.csv --split {name}`"
    return (f"download it with {make}, or try `audioset demo` (a small offline cache named "
            f"'demo'){have}")


def cache_dir(split: str, root: PathLike | None = None) -> Path:
    """Folder of one split's cache under the data root (split aliases share one folder)."""
    split = {**{s: s for s in SPLITS}, **SPLIT_ALIASES}.get(normalise_split_name(split), split)
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", split) or split.startswith("."):
        raise ConfigError(f"cache name {split!r} must be letters, digits, '_', '-' or '.'")
    return data_home(root) / "cache" / split


def open_cache(split: str | None = None, root: PathLike | None = None,
               folder: PathLike | None = None) -> AudioSetCache:
    """Open the cache of ``split`` under the data root (or an explicit ``folder``)."""
    if folder is None:
        if split is None:
            raise ConfigError("open_cache needs a split name or a folder")
        folder = cache_dir(split, root)
    return AudioSetCache(folder)


__all__ = ["AudioSetCache", "cache_dir", "missing_cache_fix", "open_cache"]
