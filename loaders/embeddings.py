"""Training batches from an embeddings store (the official 128-d release): the same role as
:class:`~audioset_data.loaders.dataset.AudioSetDataset` for audio, with the log-mel front end
replaced by the release's 1-s frames and a mask of the frames a clip really has.

A batch is a dict: ``embedding`` (batch, T, 128) uint8 as stored, ``mask`` (batch, T) bool
(``True`` = a real frame; 378 balanced-train clips have fewer than 10 and a few have none),
``target`` (batch, classes) bool, ``key`` (the clip keys) and ``index`` (row in the dataset).
:func:`dequantize` turns the bytes into the release's [-2, 2] floats on the device, so only
uint8 crosses from the workers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from torch.utils.data import Dataset

from audioset_data.config import PathLike
from audioset_data.errors import ConfigError
from audioset_data.features.release import QUANT_MAX, QUANT_MIN
from audioset_data.features.store import EmbeddingStore, open_store

__all__ = ["EmbeddingDataset", "collate_embeddings", "dequantize"]


def dequantize(q: torch.Tensor) -> torch.Tensor:
    """uint8 release bytes → float32 in [-2, 2], on the tensor's device (the torch twin of
    :func:`audioset_data.features.release.dequantize`)."""
    scale = (QUANT_MAX - QUANT_MIN) / 255.0
    return q.to(torch.float32) * scale + QUANT_MIN


class EmbeddingDataset(Dataset):
    """The clips of one embeddings store, optionally a selection of them.

    Parameters
    ----------
    source : str, path or EmbeddingStore
        A split name under the data root (``"balanced"``, ``"eval"``...), a store folder, or an
        open store.
    root : path, optional
        Data root holding ``features/<split>/`` (default: the usual data home).
    selection : array of int or bool, optional
        Rows of the store to serve (default: all of them, in key order).
    classes : array of int, optional
        Label columns to keep; the others read as negative everywhere (to train on part of
        the classes and probe the rest).
    """

    def __init__(self, source: str | PathLike | EmbeddingStore, root: PathLike | None = None,
                 selection: Sequence[int] | np.ndarray | None = None,
                 classes: Sequence[int] | np.ndarray | None = None):
        if isinstance(source, EmbeddingStore):
            self.store = source
        elif isinstance(source, str) and "/" not in source and "\\" not in source:
            self.store = open_store(source, root)
        else:
            self.store = EmbeddingStore(source)
        n = len(self.store)
        if selection is None:
            positions = np.arange(n)
        else:
            sel = np.asarray(selection)
            positions = np.flatnonzero(sel) if sel.dtype == bool else sel.astype(np.int64)
            if len(positions) and (positions.min() < 0 or positions.max() >= n):
                raise ConfigError(f"selection names rows outside the {n} of {self.store}")
        self.positions = positions
        targets = sp.csr_array(self.store.targets()[positions])
        if classes is not None:
            keep = np.zeros(targets.shape[1], bool)
            keep[np.asarray(classes, dtype=np.int64)] = True
            targets = sp.csr_array(targets.multiply(keep[None, :]).astype(bool))
        self.targets: sp.csr_array = targets
        self.keys = np.asarray(self.store.keys)[positions].astype(str)
        self.label_mids = [str(i) for i in range(self.store.n_classes)]

    @property
    def n_classes(self) -> int:
        """Number of label columns."""
        return self.store.n_classes

    def __len__(self) -> int:
        return len(self.positions)

    def __repr__(self) -> str:
        return f"EmbeddingDataset({len(self)} of {len(self.store)} clips of {self.store})"

    def __getitems__(self, indices: Sequence[int]) -> dict[str, Any]:
        """One batch, read row by row in store order (the embeddings are memory-mapped)."""
        idx = np.asarray(indices, dtype=np.int64)
        rows = self.positions[idx]
        order = np.argsort(rows, kind="stable")
        sorted_rows = rows[order]
        emb = np.empty((len(rows), *self.store.embeddings.shape[1:]), np.uint8)
        emb[order] = self.store.embeddings[sorted_rows]
        frames = np.asarray(self.store.frames)[rows]
        t = emb.shape[1]
        mask = np.arange(t)[None, :] < frames[:, None]
        target = self.targets[idx].toarray()
        return {"embedding": torch.from_numpy(emb), "mask": torch.from_numpy(mask),
                "target": torch.from_numpy(target), "key": [str(k) for k in self.keys[idx]],
                "index": torch.from_numpy(idx)}

    def __getitem__(self, i: int) -> dict[str, Any]:
        batch = self.__getitems__([i])
        return {k: v[0] for k, v in batch.items()}


def collate_embeddings(batch: dict[str, Any] | list[dict[str, Any]]) -> dict[str, Any]:
    """The DataLoader's collate: a batch from :meth:`EmbeddingDataset.__getitems__` passes
    through; a list of single items is stacked."""
    if isinstance(batch, dict):
        return batch
    out: dict[str, Any] = {}
    for name in batch[0]:
        values = [b[name] for b in batch]
        out[name] = values if name == "key" else torch.stack(values)
    return out
