"""Batches of NumPy arrays from a cache, for JAX, TensorFlow or plain NumPy training loops.

No torch here: :class:`NumpyBatches` reads each batch with one
:meth:`~audioset_data.cache.reader.AudioSetCache.read` (each file once, rows in order),
optionally in a background thread so that reading overlaps the consumer's step. The selection
helpers (:func:`open_source`, :func:`select_positions`) are shared with the torch dataset.

A selection that names clips the cache does not serve is an error by default: silently filling
their rows with zeros (as some AudioSet packers do for failed downloads) trains on silence
labelled "nothing". ``missing="skip"`` drops them and logs how many.
"""

from __future__ import annotations

import logging
import os
import queue
import sys
import threading
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd

from audioset_data.cache.reader import AudioSetCache, open_cache
from audioset_data.cache.shards import keys_of
from audioset_data.config import PathLike
from audioset_data.errors import CacheError, ConfigError
from audioset_data.segments.splits import looks_like_path
from audioset_data.segments.table import Segments

logger = logging.getLogger(__name__)

#: What a selection may be: segments, clip keys, a boolean mask or positions over the cache.
Selection = Segments | Sequence[str] | Sequence[int] | Sequence[bool] | np.ndarray
Missing = Literal["error", "skip"]

#: int16 full scale: waveforms become ``pcm / 32768``, in [-1, 1).
PCM_SCALE = 1.0 / 32768.0


def open_source(source: AudioSetCache | PathLike, root: PathLike | None = None) -> AudioSetCache:
    """An open cache from a cache object, a cache folder or a split name (under ``root``)."""
    if isinstance(source, AudioSetCache):
        return source
    if isinstance(source, str) and not looks_like_path(source) and not os.path.isdir(source):
        return open_cache(source, root=root)
    if isinstance(source, str | os.PathLike):
        return open_cache(folder=source)
    raise ConfigError(f"a dataset source is a cache, a folder or a split name, "
                      f"not {type(source).__name__}")


def _keys_of_selection(selection: Segments) -> list[str]:
    return keys_of(selection.ytids, selection.start)


def select_positions(
    cache: AudioSetCache, selection: Selection | None = None, missing: Missing = "error"
) -> tuple[np.ndarray, list[str]]:
    """Cache positions of a selection, in the selection's order, and the keys it skipped.

    Parameters
    ----------
    cache
        The cache the positions index.
    selection
        ``None`` (every clip the cache serves), a :class:`~audioset_data.segments.table.Segments`
        or a sequence of clip keys (``ytid_startms``), a boolean mask with one value per cached
        clip, or an array of cache positions.
    missing
        What to do with keys the cache does not serve (never downloaded, failed, or in a
        damaged file): ``"error"`` raises, ``"skip"`` drops them and logs the count.

    Raises
    ------
    CacheError
        Keys are missing and ``missing="error"``; the message counts them and names some.
    ConfigError
        A mask of the wrong length, or an unknown ``missing``.
    IndexError
        A position outside the cache.
    """
    if missing not in ("error", "skip"):
        raise ConfigError(f"missing={missing!r} must be 'error' or 'skip'")
    n = len(cache)
    if selection is None:
        return np.arange(n, dtype=np.int64), []
    if isinstance(selection, Segments):
        return _positions_of_keys(cache, _keys_of_selection(selection), missing)
    arr = np.asarray(selection)
    if arr.dtype.kind in "USO" and arr.size:
        return _positions_of_keys(cache, [str(k) for k in arr.ravel()], missing)
    if arr.dtype == bool:
        if arr.shape != (n,):
            raise ConfigError(f"a boolean mask selects over the cache's {n} clips, "
                              f"got shape {arr.shape}")
        return np.flatnonzero(arr).astype(np.int64), []
    if arr.size == 0:
        return np.zeros(0, dtype=np.int64), []
    if arr.dtype.kind not in "iu" or arr.ndim != 1:
        raise ConfigError(f"a selection of positions is a 1-D integer array, got {arr.dtype} "
                          f"of shape {arr.shape}")
    if arr.min() < 0 or arr.max() >= n:
        bad = arr[(arr < 0) | (arr >= n)]
        raise IndexError(f"{len(bad)} positions lie outside the cache's {n} clips, "
                         f"e.g. {int(bad[0])}")
    return arr.astype(np.int64), []


def _positions_of_keys(cache: AudioSetCache, keys: list[str],
                       missing: Missing) -> tuple[np.ndarray, list[str]]:
    at = pd.Index(cache.keys()).get_indexer(keys)
    lost = at < 0
    if not lost.any():
        return at.astype(np.int64), []
    lost_keys = [k for k, bad in zip(keys, lost, strict=True) if bad]
    unreadable = set(cache.unavailable["key"]) & set(lost_keys)
    why = (f"{len(lost_keys)} of the {len(keys)} selected clips are not served by the cache "
           f"at {str(cache.folder)!r} ({len(unreadable)} of them are in damaged or missing "
           f"files, see cache.unavailable; the rest were never downloaded or failed), "
           f"e.g. {lost_keys[0]!r}")
    if missing == "error":
        raise CacheError(f"{why}; pass missing='skip' to leave them out")
    logger.warning("%s; left out (missing='skip')", why)
    return at[~lost].astype(np.int64), lost_keys


#: Rows read and scaled at a time by :func:`read_scaled`: the int16 rows are still in the CPU
#: cache when they are converted (measured: about 12% faster than converting whole batches).
SCALE_ROWS = 8


def read_scaled(cache: AudioSetCache, positions: np.ndarray, out: np.ndarray,
                buffer: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Read clips into the float32 array ``out`` (len × clip samples), scaled to [-1, 1).

    Rows are read :data:`SCALE_ROWS` at a time into ``buffer`` (int16, at least that many rows)
    and converted while still in the CPU cache. Returns ``length``, ``target`` and
    ``position`` as :meth:`~audioset_data.cache.reader.AudioSetCache.read` does.
    """
    if buffer is None or buffer.shape[0] < SCALE_ROWS:
        buffer = np.empty((SCALE_ROWS, cache.clip_samples), dtype=np.int16)
    lengths, targets, where = [], [], []
    for lo in range(0, len(positions), SCALE_ROWS):
        got = cache.read(positions[lo : lo + SCALE_ROWS], out=buffer)
        np.multiply(got["waveform"], np.float32(PCM_SCALE), out=out[lo : lo + SCALE_ROWS],
                    dtype=np.float32)
        lengths.append(got["length"])
        targets.append(got["target"])
        where.append(got["position"])
    if not lengths:
        return cache.read(positions[:0])
    return {"length": np.concatenate(lengths), "target": np.concatenate(targets),
            "position": np.concatenate(where)}


class ArrayPool:
    """Batch arrays reused once nothing outside the pool refers to them.

    A consumer that keeps a batch, a view of it, or a torch tensor made from it with
    ``torch.from_numpy``, holds a reference to the array, so an array whose only references
    are the pool's is free to be written again. Reuse saves a fresh allocation of a whole
    batch (40 MB of float32 for 32 clips of 10 s at 32 kHz) and its page faults per batch.
    Use one pool per thread, in the process that consumes the batches.
    """

    def __init__(self, size: int = 4):
        self.size = size
        self.arrays: list[np.ndarray] = []

    def take(self, shape: tuple[int, ...], dtype: np.dtype | type) -> np.ndarray:
        """A free array of ``shape`` and ``dtype`` (contents undefined)."""
        for a in self.arrays:
            # references: the list, the loop variable and getrefcount's argument
            if a.shape == shape and a.dtype == dtype and sys.getrefcount(a) <= 3:
                return a
        a = np.empty(shape, dtype=dtype)  # numpy asks for huge pages: fewer faults
        self.arrays = [x for x in self.arrays if sys.getrefcount(x) > 3][-(self.size - 1):]
        self.arrays.append(a)
        return a


class EpochShuffle:
    """A seeded permutation of ``range(n)``, new each epoch, resumable mid-epoch.

    The permutation of epoch ``e`` depends only on ``(seed, e)``. ``state_dict`` records the
    epoch and how many positions were drawn, so a restored sampler continues the same epoch.
    """

    def __init__(self, n: int, seed: int = 0):
        self.n = int(n)
        self.seed = int(seed)
        self.epoch = 0
        self._offset = 0

    def __len__(self) -> int:
        return self.n

    def set_epoch(self, epoch: int) -> None:
        """Select epoch ``epoch``; a new epoch starts from its beginning, the current one keeps
        its place (so a resumed run may call it as usual)."""
        if int(epoch) != self.epoch:
            self._offset = 0
        self.epoch = int(epoch)

    def __iter__(self) -> Iterator[int]:
        order = np.random.default_rng((self.seed, self.epoch)).permutation(self.n)
        start, self._offset = self._offset, 0
        for j in range(start, self.n):
            self._offset = j + 1
            yield int(order[j])
        self._offset = 0

    def state_dict(self) -> dict[str, int]:
        """Seed, epoch and positions drawn so far in the epoch."""
        return {"seed": self.seed, "epoch": self.epoch, "offset": self._offset}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Continue from a :meth:`state_dict`."""
        self.seed, self.epoch, self._offset = (int(state["seed"]), int(state["epoch"]),
                                               int(state["offset"]))


class NumpyBatches:
    """Iterate batches of NumPy arrays over a cache (or a selection of it).

    Each batch is a dict: ``waveform`` (B × clip samples; float32 in [-1, 1) or the cached
    int16), ``length`` (true samples), ``target`` (B × labels, bool, cache label order),
    ``key`` (list of str), ``index`` (position in the selection) and ``position`` (in the
    cache). A consumer may keep any batch: float32 waveform arrays are recycled only once
    nothing refers to them any more (see :class:`ArrayPool`). A complete pass
    moves on to the next epoch (as :meth:`set_epoch` does), so the default shuffle differs
    between epochs; breaking off mid-epoch does not.

    Parameters
    ----------
    source
        An :class:`~audioset_data.cache.reader.AudioSetCache`, a cache folder or a split name.
    batch_size, drop_last
        As in a torch DataLoader.
    sampler
        Any iterable of selection indices (``0 .. len(selection) - 1``), e.g. a balanced
        sampler built on :attr:`targets`; default: :class:`EpochShuffle` seeded with ``seed``.
    dtype
        ``"float32"`` (scaled to [-1, 1)) or ``"int16"`` (as stored, half the memory).
    prefetch
        Batches read ahead by a background thread (0: read in the caller's thread).
    selection, missing, root
        See :func:`select_positions` and :func:`open_source`.
    """

    def __init__(
        self,
        source: AudioSetCache | PathLike,
        *,
        batch_size: int = 32,
        sampler: Iterable[int] | None = None,
        selection: Selection | None = None,
        missing: Missing = "error",
        drop_last: bool = False,
        dtype: Literal["float32", "int16"] = "float32",
        prefetch: int = 0,
        seed: int = 0,
        root: PathLike | None = None,
    ):
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"batch_size={batch_size!r} must be a whole number, at least 1")
        if dtype not in ("float32", "int16"):
            raise ConfigError(f"dtype={dtype!r} must be 'float32' or 'int16'")
        if isinstance(prefetch, bool) or not isinstance(prefetch, int) or prefetch < 0:
            raise ConfigError(f"prefetch={prefetch!r} must be a whole number, at least 0")
        self.cache = open_source(source, root)
        self.positions, self.skipped = select_positions(self.cache, selection, missing)
        self.batch_size = batch_size
        self.drop_last = drop_last
        self.dtype = dtype
        self.prefetch = prefetch
        self.sampler = sampler if sampler is not None else EpochShuffle(len(self.positions),
                                                                        seed)
        self.epoch = 0
        self._served = 0
        self._resume: dict[str, Any] | None = None
        self._next_state: Any = None
        self._local = threading.local()

    def __len__(self) -> int:
        n = len(self.sampler) if hasattr(self.sampler, "__len__") else len(self.positions)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    @property
    def targets(self) -> Any:
        """Labels of the selection as a CSR matrix (selection order × labels), for samplers."""
        return self.cache.targets()[self.positions]

    def set_epoch(self, epoch: int) -> None:
        """Select epoch ``epoch`` (forwarded to the sampler when it has ``set_epoch``); the
        current epoch keeps its place, as after :meth:`load_state_dict`."""
        if int(epoch) != self.epoch:
            self._served = 0
            self._resume = None
            self._next_state = None
        self.epoch = int(epoch)
        if hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(self.epoch)

    def state_dict(self) -> dict[str, Any]:
        """Where the consumer is: epoch, indices served this epoch, and the sampler's state
        as of the last batch handed out (when the sampler has ``state_dict``), not as of the
        batches a prefetch thread has read ahead."""
        state: dict[str, Any] = {"epoch": self.epoch, "served": self._served}
        if hasattr(self.sampler, "state_dict"):
            state["sampler"] = (self._next_state if self._next_state is not None
                                else self.sampler.state_dict())
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume from :meth:`state_dict`: the next iteration continues that epoch."""
        self.epoch = int(state["epoch"])
        self._served = int(state["served"])
        if "sampler" in state and hasattr(self.sampler, "load_state_dict"):
            self.sampler.load_state_dict(state["sampler"])
            self._resume = None
        else:
            if hasattr(self.sampler, "set_epoch"):
                self.sampler.set_epoch(self.epoch)
            self._resume = {"skip": self._served}
        self._next_state = None

    # -- reading ----------------------------------------------------------------------------
    def _plans(self) -> Iterator[tuple[np.ndarray, Any]]:
        """Selection indices of each batch, with the sampler's state once it was drawn."""
        stateful = hasattr(self.sampler, "state_dict")
        skip = self._resume["skip"] if self._resume else 0
        self._resume = None
        it = iter(self.sampler)
        for _ in range(skip):
            if next(it, None) is None:
                return
        while True:
            # range first: zip stops before drawing one index too many from the sampler
            chunk = [int(i) for _, i in zip(range(self.batch_size), it, strict=False)]
            if not chunk or (self.drop_last and len(chunk) < self.batch_size):
                return
            yield np.asarray(chunk, dtype=np.int64), (
                self.sampler.state_dict() if stateful else None)

    def read_batch(self, indices: np.ndarray) -> dict[str, Any]:
        """One batch of the selection indices ``indices``."""
        idx = np.asarray(indices, dtype=np.int64)
        if len(idx) and (idx.min() < 0 or idx.max() >= len(self.positions)):
            raise IndexError(f"indices out of range for a selection of {len(self.positions)}")
        pos = self.positions[idx]
        if self.dtype == "int16":
            got = self.cache.read(pos)
            wave = got["waveform"]
        else:  # through this thread's int16 buffer into a recycled float32 array
            if getattr(self._local, "pool", None) is None:
                self._local.buf = np.empty((SCALE_ROWS, self.cache.clip_samples), np.int16)
                self._local.pool = ArrayPool(self.prefetch + 4)
            wave = self._local.pool.take((len(pos), self.cache.clip_samples), np.float32)
            got = read_scaled(self.cache, pos, wave, self._local.buf)
        return {"waveform": wave, "length": got["length"], "target": got["target"],
                "key": [self.cache.key(int(p)) for p in pos], "index": idx, "position": pos}

    def __iter__(self) -> Iterator[dict[str, Any]]:
        if self.prefetch == 0:
            for idx, after in self._plans():
                batch = self.read_batch(idx)
                self._next_state = after
                self._served += len(idx)
                yield batch
        else:
            yield from self._threaded()
        self.set_epoch(self.epoch + 1)

    def _threaded(self) -> Iterator[dict[str, Any]]:
        q: queue.Queue = queue.Queue(maxsize=self.prefetch)
        stop = threading.Event()
        done = object()

        def produce() -> None:
            try:
                for idx, after in self._plans():
                    item = (idx, after, self.read_batch(idx))
                    while not stop.is_set():
                        try:
                            q.put(item, timeout=0.1)
                            break
                        except queue.Full:
                            continue
                    if stop.is_set():
                        return
                q.put((done, None, None))
            except BaseException as exc:  # handed to the consumer, raised there
                q.put((exc, None, None))

        worker = threading.Thread(target=produce, name="NumpyBatches-prefetch", daemon=True)
        worker.start()
        try:
            while True:
                idx, after, batch = q.get()
                if idx is done:
                    return
                if isinstance(idx, BaseException):
                    raise idx
                self._next_state = after
                self._served += len(idx)
                yield batch
        finally:
            stop.set()
            while worker.is_alive():
                try:
                    q.get_nowait()
                except queue.Empty:
                    worker.join(timeout=0.05)


__all__ = ["PCM_SCALE", "SCALE_ROWS", "ArrayPool", "EpochShuffle", "NumpyBatches",
           "open_source", "read_scaled", "select_positions"]
