"""The embedding store: one imported split of the release as memory-mapped NumPy arrays.

``<root>/features/<split>/`` holds, rows ordered by segment key (``<ytid>_<start ms>``, the key
the rest of the package uses; byte order, so :meth:`EmbeddingStore.index_of` is a binary
search)::

    keys.npy            (N,)        S   segment keys, sorted, unique
    ids.npy             (N,)        S   YouTube ids
    starts_ms.npy       (N,)        int64
    ends_ms.npy         (N,)        int64
    labels_indptr.npy   (N + 1,)    int64   CSR row pointers of the label sets
    labels_indices.npy  (nnz,)      int16   label row indices (class_labels_indices.csv)
    frames.npy          (N,)        uint8   real frames per row (0..10)
    embeddings.npy      (N, 10, 128) uint8  quantised embeddings, zero past ``frames``
    meta.json           source (path, size, sha256), counts, created, format version
    anomalies.csv       zero-frame rows, dropped labels, duplicates (file and record each)
    coverage.csv        per class: listed / present / missing against the official list

A store is written in a temporary folder beside it and swapped in whole (see
:func:`publish_store`), so a reader sees the old store or the new one, never a mix. Opening
maps the arrays (``np.load(mmap_mode="r")``) and reads no data.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import logging
import os
import shutil
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from audioset_data.config import PathLike, data_home
from audioset_data.fileio import fsync_dir, temp_name
from audioset_data.segments import canonical_split

from .errors import FeaturesError, FeatureStoreError, FeatureStoreNotFoundError
from .release import (
    EMBEDDING_DIM,
    RELEASE_CLASSES,
    RELEASE_SPLITS,
    dequantize,
)

if TYPE_CHECKING:
    from audioset_data.segments import Segments

logger = logging.getLogger("audioset_data.features")

#: Version of the store layout, written in ``meta.json`` and checked on open.
FORMAT_VERSION = 1
#: Folder under the data root that holds one store per split.
STORES_FOLDER = "features"
META_NAME = "meta.json"
COVERAGE_NAME = "coverage.csv"
ANOMALIES_NAME = "anomalies.csv"
#: Array name → file name of the store.
ARRAYS = ("keys", "ids", "starts_ms", "ends_ms", "labels_indptr", "labels_indices", "frames",
          "embeddings")
_CANONICAL = ("eval", "balanced", "unbalanced")


def split_name(split: str) -> str:
    """Canonical split name of ``split`` (``bal_train`` and the package's aliases too)."""
    key = str(split).strip().lower().replace("-", "_")
    key = RELEASE_SPLITS.get(key, key)
    if key in _CANONICAL:
        return key
    return canonical_split(split)  # aliases, and the "did you mean" message


def stores_root(root: PathLike | None = None) -> Path:
    """``<root>/features``: the folder of the stores."""
    return data_home(root) / STORES_FOLDER


def store_dir(split: str, root: PathLike | None = None) -> Path:
    """``<root>/features/<split>``: where the store of ``split`` lives."""
    return stores_root(root) / split_name(split)


# ----------------------------------------------------------------------------- coverage
@dataclass
class CoverageReport:
    """How far a store is from a segment list: totals and a per-class table.

    ``listed`` rows of the list, ``present`` of them in the store, ``missing`` not in it;
    ``extra`` store rows the list does not hold; ``label_mismatches`` present rows whose label
    set differs from the list's. ``per_class`` has ``mid, index, display_name, listed,
    present, missing`` for every class the list uses.
    """

    listed: int
    present: int
    missing: int
    extra: int
    label_mismatches: int
    per_class: pd.DataFrame

    def summary(self) -> str:
        """One line for people, with the five least covered classes."""
        share = 100.0 * self.present / self.listed if self.listed else 0.0
        line = (f"{self.present}/{self.listed} listed segments present ({share:.1f} %), "
                f"{self.missing} missing, {self.extra} not in the list, "
                f"{self.label_mismatches} with other labels")
        pc = self.per_class[self.per_class["missing"] > 0]
        if len(pc):
            worst = pc.assign(cover=pc["present"] / pc["listed"]).sort_values(
                ["cover", "listed"], ascending=[True, False]).head(5)
            line += "; lowest: " + "; ".join(
                f"{r.display_name} {r.present}/{r.listed}" for r in worst.itertuples())
        return line

    def totals(self) -> dict[str, int]:
        """The totals as a dict (for JSON)."""
        return {"listed": self.listed, "present": self.present, "missing": self.missing,
                "extra": self.extra, "label_mismatches": self.label_mismatches}


def segment_keys(ytids: np.ndarray, starts_s: np.ndarray) -> np.ndarray:
    """Segment keys ``<ytid>_<start ms>`` as a bytes array (the store's key format)."""
    ms = np.round(np.asarray(starts_s, dtype=np.float64) * 1000).astype(np.int64)
    return np.array([f"{y}_{m}".encode() for y, m in zip(np.asarray(ytids).astype(str).tolist(),
                                                         ms.tolist(), strict=True)])


def coverage_of(store: EmbeddingStore, segments: Segments) -> CoverageReport:
    """Compare ``store`` with the segment list ``segments`` (see :class:`CoverageReport`)."""
    index = segments.label_index
    if len(index) != store.n_classes:
        raise FeaturesError(
            f"the segment list {segments.source} has {len(index)} labels, the store "
            f"{store.folder} {store.n_classes}: they do not index the same classes")
    list_keys = segment_keys(segments.ytids, segments.start)
    pos = store.index_of(list_keys)
    present = pos >= 0
    y = sp.csr_array(segments.label_matrix)
    parent = np.repeat(np.arange(y.shape[0]), np.diff(y.indptr))
    n = len(index)
    listed_c = np.bincount(y.indices, minlength=n)
    present_c = np.bincount(y.indices[present[parent]], minlength=n)
    mismatches = 0
    if present.any():
        mine = store.targets()[pos[present]]
        theirs = y[np.flatnonzero(present)]
        differ = (mine != theirs).tocsr()
        mismatches = int(np.count_nonzero(np.diff(differ.indptr)))
    frame = index.to_frame()
    per_class = pd.DataFrame({"mid": frame["mid"], "index": frame["index"],
                              "display_name": frame["display_name"], "listed": listed_c,
                              "present": present_c, "missing": listed_c - present_c})
    per_class = per_class[per_class["listed"] > 0].reset_index(drop=True)
    hit = np.unique(pos[present]).size
    return CoverageReport(listed=len(list_keys), present=int(present.sum()),
                          missing=int((~present).sum()), extra=len(store) - hit,
                          label_mismatches=mismatches, per_class=per_class)


# ----------------------------------------------------------------------------- the store
class EmbeddingStore:
    """One imported split: memory-mapped arrays in segment-key order.

    Open with :func:`open_store`. Arrays are read-only memory maps; nothing is read until used.
    """

    def __init__(self, folder: PathLike):
        self.folder = Path(folder)
        meta_path = self.folder / META_NAME
        if not meta_path.is_file():
            raise FeatureStoreNotFoundError(
                f"no embedding store in {str(self.folder)!r} (no {META_NAME}); import the "
                "release first: audioset features import PATH")
        try:
            self.meta: dict[str, Any] = json.loads(meta_path.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise FeatureStoreError(f"{str(meta_path)!r} is not valid JSON ({exc}); import "
                                    "the release again") from None
        version = self.meta.get("format_version")
        if version != FORMAT_VERSION:
            raise FeatureStoreError(
                f"store {str(self.folder)!r} has format version {version}, this library reads "
                f"{FORMAT_VERSION}; import the release again")
        arrays: dict[str, np.ndarray] = {}
        for name in ARRAYS:
            path = self.folder / f"{name}.npy"
            try:
                arrays[name] = np.load(path, mmap_mode="r", allow_pickle=False)
            except (OSError, ValueError) as exc:
                raise FeatureStoreError(f"store array {str(path)!r} cannot be read ({exc}); "
                                        "import the release again") from None
        n = len(arrays["keys"])
        frames = int(self.meta.get("max_frames", 10))
        shapes = {"ids": (n,), "starts_ms": (n,), "ends_ms": (n,), "labels_indptr": (n + 1,),
                  "frames": (n,), "embeddings": (n, frames, EMBEDDING_DIM)}
        for name, shape in shapes.items():
            if arrays[name].shape != shape:
                raise FeatureStoreError(
                    f"store {str(self.folder)!r}: {name}.npy has shape {arrays[name].shape}, "
                    f"expected {shape}; the store is damaged, import the release again")
        self._a = arrays

    # ------------------------------------------------------------------ arrays
    @property
    def split(self) -> str:
        """Canonical split name."""
        return str(self.meta["split"])

    @property
    def n_classes(self) -> int:
        """Number of classes the labels index."""
        return int(self.meta.get("n_classes", RELEASE_CLASSES))

    @property
    def max_frames(self) -> int:
        """Frames per row of :attr:`embeddings` (10 for the release)."""
        return int(self._a["embeddings"].shape[1])

    @property
    def key_bytes(self) -> np.ndarray:
        """Segment keys as a sorted bytes array (memory-mapped)."""
        return self._a["keys"]

    @cached_property
    def keys(self) -> np.ndarray:
        """Segment keys ``<ytid>_<start ms>`` as ``str``, sorted."""
        return self._a["keys"].astype(str)

    @cached_property
    def ids(self) -> np.ndarray:
        """YouTube ids as ``str``."""
        return self._a["ids"].astype(str)

    @property
    def starts_ms(self) -> np.ndarray:
        """Start times in milliseconds (int64)."""
        return self._a["starts_ms"]

    @property
    def ends_ms(self) -> np.ndarray:
        """End times in milliseconds (int64)."""
        return self._a["ends_ms"]

    @property
    def embeddings(self) -> np.ndarray:
        """``(N, 10, 128)`` uint8 quantised embeddings, memory-mapped; zero past ``frames``."""
        return self._a["embeddings"]

    @property
    def frames(self) -> np.ndarray:
        """Real frames (seconds) of each row, 0..10 (uint8)."""
        return self._a["frames"]

    @property
    def labels_indptr(self) -> np.ndarray:
        """CSR row pointers of the label sets."""
        return self._a["labels_indptr"]

    @property
    def labels_indices(self) -> np.ndarray:
        """Label row indices (CSR column indices), int16."""
        return self._a["labels_indices"]

    def __len__(self) -> int:
        return len(self._a["keys"])

    def __repr__(self) -> str:
        return f"EmbeddingStore({self.split!r}, {len(self)} rows, {str(self.folder)!r})"

    # ------------------------------------------------------------------ views
    def mask(self) -> np.ndarray:
        """``(N, 10)`` bool: which frames are real (the rest is padding)."""
        return np.asarray(self.frames)[:, None] > np.arange(self.max_frames)

    def targets(self, n_classes: int | None = None) -> sp.csr_array:
        """Boolean ``(N, n_classes)`` sparse label matrix (columns: class_labels_indices)."""
        n = self.n_classes if n_classes is None else int(n_classes)
        indices = np.asarray(self.labels_indices)
        if len(indices) and int(indices.max()) >= n:
            raise FeaturesError(f"store {str(self.folder)!r} holds label {int(indices.max())}, "
                                f"outside n_classes={n}")
        return sp.csr_array((np.ones(len(indices), dtype=bool), indices.astype(np.int32),
                             np.asarray(self.labels_indptr)), shape=(len(self), n))

    def labels(self, i: int) -> np.ndarray:
        """Label row indices of row ``i``."""
        lo, hi = self.labels_indptr[i], self.labels_indptr[i + 1]
        return np.asarray(self.labels_indices[lo:hi], dtype=np.int64)

    def dequantized(self, idx: int | slice | np.ndarray | Any, fill: float = 0.0
                    ) -> np.ndarray:
        """Float32 embeddings in [-2, 2] of rows ``idx`` (see :func:`dequantize`); padding
        frames (past ``frames``) are set to ``fill``, not to the -2 that a zero byte means."""
        out = dequantize(np.asarray(self.embeddings[idx]))
        real = np.asarray(self.frames[idx])[..., None] > np.arange(self.max_frames)
        out[~real] = np.float32(fill)
        return out

    def index_of(self, keys: np.ndarray | list[str] | str) -> np.ndarray:
        """Row of each key (``-1`` where absent), by binary search in the sorted keys."""
        single = isinstance(keys, str | bytes)
        arr = np.atleast_1d(np.asarray(keys))
        if arr.dtype.kind == "U":
            arr = np.char.encode(arr, "utf-8")
        stored = self.key_bytes
        pos = np.searchsorted(stored, arr)
        inside = pos < len(stored)
        found = np.zeros(len(arr), dtype=bool)
        found[inside] = stored[pos[inside]] == arr[inside]
        out = np.where(found, pos, -1).astype(np.int64)
        return out[:1] if single else out

    def coverage(self, segments: Segments) -> CoverageReport:
        """Per-class listed / present / missing counts against a segment list."""
        return coverage_of(self, segments)

    def counts(self) -> dict[str, Any]:
        """What the import counted (records, short, zero, bad labels, duplicates...)."""
        return dict(self.meta.get("counts", {}))


def open_store(split: str, root: PathLike | None = None) -> EmbeddingStore:
    """Open the store of ``split`` under the data root (memory-mapped, no data read).

    Raises
    ------
    FeatureStoreNotFoundError
        No store for that split: import the release first.
    FeatureStoreError
        The store is damaged or of another format version.
    """
    folder = store_dir(split, root)
    if not folder.is_dir():
        raise FeatureStoreNotFoundError(
            f"no embedding store for split {split!r} in {str(folder.parent)!r}; import it: "
            "audioset features import PATH [--root DIR]")
    return EmbeddingStore(folder)


def list_stores(root: PathLike | None = None) -> list[EmbeddingStore]:
    """Every readable store under the data root (damaged ones are logged and left out)."""
    base = stores_root(root)
    out = []
    for folder in sorted(p for p in base.iterdir() if p.is_dir() and not p.name.startswith(".")
                         ) if base.is_dir() else []:
        try:
            out.append(EmbeddingStore(folder))
        except FeatureStoreError as exc:
            logger.warning("%s", exc)
    return out


# ----------------------------------------------------------------------------- publishing
_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Swap two folders in one step (Linux ``renameat2(RENAME_EXCHANGE)``); False where the
    system or file system cannot."""
    if not hasattr(os, "uname") or os.uname().sysname != "Linux":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    ok = fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0
    if not ok:
        logger.debug("renameat2 exchange failed: %s", os.strerror(ctypes.get_errno()))
    return ok


def new_store_folder(split: str, root: PathLike | None = None) -> Path:
    """A fresh temporary folder beside the store of ``split`` to write a new one in."""
    dest = store_dir(split, root)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_name(dest)
    tmp.mkdir()
    return tmp


def publish_store(tmp: PathLike, dest: PathLike) -> Path:
    """Make the finished store in ``tmp`` the store at ``dest``, replacing any old one.

    Files and folder are fsynced first. An old store is swapped out in one atomic step where
    Linux allows it; elsewhere it is renamed aside, the new one renamed in, and the old one
    put back if that fails. The old one is then deleted (open memory maps keep working).
    """
    tmp, dest = Path(tmp), Path(dest)
    for f in tmp.iterdir():
        with open(f, "rb") as fh:
            os.fsync(fh.fileno())
    fsync_dir(tmp)
    if not dest.exists():
        os.replace(tmp, dest)
    elif _exchange(tmp, dest):
        shutil.rmtree(tmp, ignore_errors=True)  # tmp now holds the old store
    else:
        old = temp_name(dest).with_suffix(".old")
        os.replace(dest, old)
        try:
            os.replace(tmp, dest)
        except OSError:
            os.replace(old, dest)
            raise
        shutil.rmtree(old, ignore_errors=True)
    fsync_dir(dest.parent)
    return dest


__all__ = [
    "ANOMALIES_NAME",
    "ARRAYS",
    "COVERAGE_NAME",
    "FORMAT_VERSION",
    "META_NAME",
    "CoverageReport",
    "EmbeddingStore",
    "coverage_of",
    "list_stores",
    "new_store_folder",
    "open_store",
    "publish_store",
    "segment_keys",
    "split_name",
    "store_dir",
    "stores_root",
]
