"""A torch map-style dataset over the HDF5 cache, with a batched fetch for the DataLoader.

torch's DataLoader calls ``dataset.__getitems__(indices)`` for a whole batch when the dataset
has one. :class:`AudioSetDataset` answers with batch reads of the cache
(:meth:`AudioSetCache.read <audioset_data.cache.reader.AudioSetCache.read>`, a few rows at a
time into a reused int16 buffer) converted to float32 while the rows are still in the CPU cache,
straight into shared memory when it runs in a worker (so the batch crosses to the main process
without another copy) and into a recycled array otherwise.
:func:`collate` turns that batch into stacked tensors; it also stacks plain lists of items
(after a per-item ``transform``, or from ``Subset`` / ``ConcatDataset``).

HDF5 handles open lazily in the process that reads (the reader drops handles it inherited
across a fork), and :meth:`AudioSetDataset.loader` closes the parent's before workers start.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, RandomSampler, default_collate, get_worker_info

from audioset_data.cache.reader import AudioSetCache
from audioset_data.config import PathLike
from audioset_data.errors import ConfigError

from .batches import (
    PCM_SCALE,
    SCALE_ROWS,
    ArrayPool,
    Missing,
    Selection,
    open_source,
    read_scaled,
    select_positions,
)
from .frame_labels import FrameLabels, FrameSource

Item = dict[str, Any]


def _shared(shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    """An uninitialised tensor in shared memory, as torch's own collate makes in a worker, so
    sending it to the main process copies nothing."""
    elem = torch.empty(0, dtype=dtype)
    try:
        storage = elem._typed_storage()._new_shared(math.prod(shape), device="cpu")
    except AttributeError:  # a torch without the helper its collate uses: one copy more
        return torch.empty(shape, dtype=dtype).share_memory_()
    return elem.new(storage).view(shape)


def _to_float(pcm: np.ndarray, out: torch.Tensor) -> torch.Tensor:
    np.multiply(pcm, np.float32(PCM_SCALE), out=out.numpy(), dtype=np.float32)
    return out


class ClipBatch(Sequence):
    """The result of :meth:`AudioSetDataset.__getitems__`: a batch already stacked.

    It is a sequence of per-item dicts (views into the stacked tensors), as torch expects of
    ``__getitems__``; :func:`collate` hands the stacked tensors on without copying them.
    """

    def __init__(self, data: dict[str, Any]):
        self.data = data

    def __len__(self) -> int:
        return len(self.data["key"])

    def __getitem__(self, j: int) -> Item:  # type: ignore[override]
        if not -len(self) <= j < len(self):
            raise IndexError(f"item {j} out of range for a batch of {len(self)}")
        item = {k: v[j] for k, v in self.data.items()}
        item["length"] = int(item["length"])
        item["index"] = int(item["index"])
        return item

    def __repr__(self) -> str:
        return f"ClipBatch({len(self)} clips, waveform {tuple(self.data['waveform'].shape)})"


def collate(items: ClipBatch | Sequence[Item]) -> dict[str, Any]:
    """Stack items into a batch: ``waveform`` (B, samples), ``length`` (B,), ``target``
    (B, labels), ``key`` (list), ``index`` (B,), and ``frame_target`` / ``frame_mask``
    (B, frames, labels) when present. Other fields (from a transform) go through torch's
    ``default_collate``. Pass it as a DataLoader's ``collate_fn``."""
    if isinstance(items, ClipBatch):
        return dict(items.data)
    if not len(items):
        raise ConfigError("cannot collate an empty batch")
    out: dict[str, Any] = {}
    for name in items[0]:
        values = [item[name] for item in items]
        if name == "key":
            out[name] = list(values)
        elif isinstance(values[0], torch.Tensor):
            out[name] = torch.stack(values)
        elif name in ("length", "index"):
            out[name] = torch.as_tensor(values, dtype=torch.int64)
        else:
            out[name] = default_collate(values)
    return out


def seed_worker(worker_id: int) -> None:
    """Seed NumPy's global generator in each DataLoader worker from torch's per-worker seed
    (forked workers would otherwise share one NumPy state and draw the same augmentations)."""
    np.random.seed(torch.initial_seed() % 2**32)


class AudioSetDataset(Dataset):
    """Clips of a cache as a torch map-style dataset.

    Items are dicts: ``waveform`` (float32 tensor in [-1, 1), or the stored int16 with
    ``dtype="int16"``, padded to the clip length),
    ``length`` (true samples), ``target`` (float32, one value per cache label), ``key``
    (``ytid_startms``) and ``index`` (position in this dataset), plus ``frame_target`` and
    ``frame_mask`` (frames × labels) when ``frames`` is given. Clips the cache cannot serve are
    never items.

    Parameters
    ----------
    source
        An :class:`~audioset_data.cache.reader.AudioSetCache`, a cache folder, or a split name
        looked up under ``root``.
    selection
        Restrict to some clips, in the selection's order: a
        :class:`~audioset_data.segments.table.Segments`, a sequence of clip keys, a boolean mask
        over the cache, or an array of cache positions.
    missing
        Selected clips the cache does not serve: ``"error"`` (default) raises
        :class:`~audioset_data.errors.CacheError`; ``"skip"`` leaves them out, logs the count
        and lists them in :attr:`skipped`.
    transform
        Called on each item dict; returns the item to serve.
    dtype
        ``"float32"`` (default): waveforms scaled to [-1, 1). ``"int16"``: as stored; half the
        bytes between workers and the main process, to be scaled by 1/32768 on the device.
    frames
        Strong labels for frame targets: loaded framed or event labels, their matrices, or a
        ready :class:`~audioset_data.loaders.frame_labels.FrameLabels`.
    known_labels
        For event-file ``frames``: the label columns they decide.

    Examples
    --------
    >>> ds = AudioSetDataset("balanced_train")  # doctest: +SKIP
    >>> for batch in ds.loader(batch_size=32, num_workers=4):  # doctest: +SKIP
    ...     batch["waveform"].shape, batch["target"].shape
    """

    def __init__(
        self,
        source: AudioSetCache | PathLike,
        *,
        selection: Selection | None = None,
        missing: Missing = "error",
        transform: Callable[[Item], Item] | None = None,
        frames: FrameSource | FrameLabels | None = None,
        known_labels: Sequence[int | str] | None = None,
        dtype: Literal["float32", "int16"] = "float32",
        root: PathLike | None = None,
    ):
        if dtype not in ("float32", "int16"):
            raise ConfigError(f"dtype={dtype!r} must be 'float32' or 'int16'")
        self.dtype = dtype
        self.cache = open_source(source, root)
        self.positions, self.skipped = select_positions(self.cache, selection, missing)
        self.transform = transform
        self._keys: list[str] | None = None
        self._targets: Any = None
        self._local: threading.local | None = None
        if frames is None or isinstance(frames, FrameLabels):
            self.frames = frames
        else:
            self.frames = FrameLabels(frames, self.keys, self.cache.label_mids,
                                      self.cache.clip_samples / self.cache.sample_rate,
                                      known_labels=known_labels)
        if self.frames is not None and len(self.frames.labelled) != len(self.positions):
            raise ConfigError(f"frame labels cover {len(self.frames.labelled)} clips, the "
                              f"dataset has {len(self.positions)}")

    def __len__(self) -> int:
        return len(self.positions)

    def __repr__(self) -> str:
        return (f"AudioSetDataset({len(self)} of {len(self.cache)} clips of "
                f"{str(self.cache.folder)!r}{', frame labels' if self.frames else ''})")

    @property
    def keys(self) -> list[str]:
        """Clip key of each index."""
        if self._keys is None:
            every = self.cache.keys()
            self._keys = [every[int(p)] for p in self.positions]
        return self._keys

    @property
    def targets(self) -> Any:
        """Labels of every index as a ``scipy.sparse.csr_matrix`` (len × labels, bool), for
        samplers. Read once; the parent's HDF5 handles are closed again afterwards."""
        if self._targets is None:
            self._targets = self.cache.targets()[self.positions]
            self.cache.close()
        return self._targets

    def _index(self, i: int) -> int:
        n = len(self)
        if not isinstance(i, int | np.integer) or isinstance(i, bool):
            raise TypeError(f"dataset indices are integers, not {type(i).__name__}")
        if not -n <= i < n:
            raise IndexError(f"index {i} out of range for a dataset of {n}")
        return int(i) % n

    def __getitem__(self, i: int) -> Item:
        i = self._index(i)
        clip = self.cache[int(self.positions[i])]
        wave = torch.from_numpy(clip["waveform"]) if self.dtype == "int16" else \
            _to_float(clip["waveform"], torch.empty(self.cache.clip_samples,
                                                    dtype=torch.float32))
        item: Item = {"waveform": wave, "length": int(clip["length"]),
                      "target": torch.from_numpy(clip["target"].astype(np.float32)),
                      "key": clip["key"], "index": i}
        if self.frames is not None:
            ft, fm = self.frames.get([i])
            item["frame_target"], item["frame_mask"] = (torch.from_numpy(ft[0]),
                                                        torch.from_numpy(fm[0]))
        return self.transform(item) if self.transform is not None else item

    def _local_state(self, name: str, make: Callable[[], Any]) -> Any:
        """This thread's own ``name`` (buffers are not shared between threads)."""
        if self._local is None:
            self._local = threading.local()
        value = getattr(self._local, name, None)
        if value is None:
            value = make()
            setattr(self._local, name, value)
        return value

    def _buffer(self, n: int) -> np.ndarray:
        """This thread's reusable int16 read buffer of at least ``n`` rows."""
        buf = self._local_state("buf", lambda: np.empty((n, self.cache.clip_samples),
                                                        dtype=np.int16))
        if buf.shape[0] < n:
            buf = np.empty((n, self.cache.clip_samples), dtype=np.int16)
            self._local.buf = buf
        return buf

    def __getitems__(self, indices: Sequence[int]) -> ClipBatch | list[Item]:
        """A batch of items read at once (torch's DataLoader calls this for each batch)."""
        idx = np.fromiter((self._index(int(i)) for i in indices), dtype=np.int64,
                          count=len(indices))
        pos = self.positions[idx]
        shape = (len(pos), self.cache.clip_samples)
        dtype = torch.int16 if self.dtype == "int16" else torch.float32
        wave = _shared(shape, dtype) if get_worker_info() is not None else torch.from_numpy(
            self._local_state("pool", ArrayPool).take(shape, np.dtype(self.dtype)))
        if self.dtype == "int16":  # straight into the batch
            got = self.cache.read(pos, out=wave.numpy())
        else:
            got = read_scaled(self.cache, pos, wave.numpy(), self._buffer(SCALE_ROWS))
        data: dict[str, Any] = {
            "waveform": wave,
            "length": torch.from_numpy(got["length"].astype(np.int64)),
            "target": torch.from_numpy(got["target"].astype(np.float32)),
            "key": [self.cache.key(int(p)) for p in pos],
            "index": torch.from_numpy(idx),
        }
        if self.frames is not None:
            ft, fm = self.frames.get(idx)
            data["frame_target"], data["frame_mask"] = torch.from_numpy(ft), \
                torch.from_numpy(fm)
        batch = ClipBatch(data)
        if self.transform is None:
            return batch
        return [self.transform(batch[j]) for j in range(len(batch))]

    def loader(
        self,
        batch_size: int = 32,
        sampler: Iterable[int] | None = None,
        *,
        shuffle: bool = True,
        num_workers: int = 0,
        pin_memory: bool = False,
        drop_last: bool = False,
        seed: int = 0,
        multiprocessing_context: str | None = None,
        persistent_workers: bool | None = None,
        prefetch_factor: int | None = None,
        **kwargs: Any,
    ) -> DataLoader:
        """A DataLoader set up for this dataset: batched reads, :func:`collate`, seeded workers.

        Parameters
        ----------
        sampler
            Any iterable of dataset indices with ``__len__`` (e.g. a balanced sampler built on
            :attr:`targets`); default: a seeded shuffle (or the plain order with
            ``shuffle=False``).
        num_workers, multiprocessing_context
            Worker processes and how they start (``"fork"``, ``"spawn"``, ...). Workers
            persist between epochs unless ``persistent_workers=False``.
        kwargs
            Passed on to :class:`torch.utils.data.DataLoader`.
        """
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"batch_size={batch_size!r} must be a whole number, at least 1")
        if sampler is None and shuffle:
            sampler = RandomSampler(self, generator=torch.Generator().manual_seed(seed))
        workers = {}
        if num_workers > 0:
            self.cache.close()  # no HDF5 handle of the parent crosses a fork
            workers = {"multiprocessing_context": multiprocessing_context,
                       "persistent_workers": True if persistent_workers is None
                       else persistent_workers,
                       "prefetch_factor": prefetch_factor,
                       "worker_init_fn": kwargs.pop("worker_init_fn", seed_worker)}
        return DataLoader(self, batch_size=batch_size, sampler=sampler, num_workers=num_workers,
                          collate_fn=kwargs.pop("collate_fn", collate), pin_memory=pin_memory,
                          drop_last=drop_last, **workers, **kwargs)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_local"] = None
        return state


__all__ = ["AudioSetDataset", "ClipBatch", "collate", "seed_worker"]
