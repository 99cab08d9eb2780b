"""The reader's index cache: a cache's placements as numpy arrays, saved beside the manifest.

Reading two million placement rows out of SQLite takes seconds; the arrays saved as
``.<manifest>.index.npz`` load in a tenth of one. They are keyed by the manifest's generation
counter, which changes whenever a clip is cached, moved or released, so a stale copy is never
used. Writers call :func:`write_index` when they finish.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from audioset_data.fileio import atomic_write

from .manifest import Manifest

logger = logging.getLogger(__name__)

#: Index cache beside the manifest (``.<manifest>.index.npz``), rebuilt when the manifest changes.
_INDEX_SUFFIX = ".index.npz"
_INDEX_VERSION = 1


def _index_path(folder: Path, manifest_name: str) -> Path:
    return folder / f".{manifest_name}{_INDEX_SUFFIX}"


def load_index(folder: Path, manifest_name: str, manifest: Manifest) -> dict[str, np.ndarray]:
    """The manifest's cached clips as arrays: from the index cache when it matches the
    manifest's generation, else from SQLite (and the cache is then written for next time)."""
    generation = manifest.generation()
    path = _index_path(folder, manifest_name)
    if generation is not None and path.is_file():
        try:
            with np.load(path, allow_pickle=False) as z:
                if int(z["version"]) == _INDEX_VERSION and int(z["generation"]) == generation:
                    return {k: z[k] for k in z.files}
        except (OSError, ValueError, KeyError) as exc:
            logger.debug("index cache %s unusable: %s", path, exc)
    files = manifest.files()
    names = pd.Index(files["name"])
    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("ytid", "start", "end", "file_code",
                                                           "row", "length")}
    for rows in manifest.cached_rows():  # in chunks: no list of millions of tuples
        ytid, start, end, file, row, length = zip(*rows, strict=True)
        parts["ytid"].append(np.array(ytid, dtype="S11"))
        parts["start"].append(np.array(start, dtype=np.float64))
        parts["end"].append(np.array(end, dtype=np.float64))
        parts["file_code"].append(names.get_indexer(pd.Index(file)).astype(np.int32))
        parts["row"].append(np.array([-1 if x is None else x for x in row], dtype=np.int32))
        parts["length"].append(np.array([-1 if x is None else x for x in length],
                                        dtype=np.int32))
        del ytid, start, end, file, row, length, rows
    empty = {"ytid": "S11", "start": np.float64, "end": np.float64, "file_code": np.int32,
             "row": np.int32, "length": np.int32}
    index = {k: np.concatenate(v) if v else np.zeros(0, dtype=empty[k]) for k, v in parts.items()}
    index.update({
        "version": np.array(_INDEX_VERSION),
        "generation": np.array(-1 if generation is None else generation),
        "files": np.array(list(names), dtype=object).astype("U"),
        "file_rows": files["n_rows"].to_numpy(dtype=np.int64),
        "file_size": files["size"].fillna(-1).to_numpy(dtype=np.int64),
    })
    if generation is not None:
        _save_index(path, index)
    return index


def write_index(manifest: Manifest) -> None:
    """Bring the reader's index cache of ``manifest`` up to date (a writer calls this when it
    finishes, so the next open is quick); nothing is done when it is current."""
    generation = manifest.generation()
    path = _index_path(manifest.path.parent, manifest.path.name)
    if generation is None:
        return
    try:
        with np.load(path, allow_pickle=False) as z:
            if int(z["generation"]) == generation and int(z["version"]) == _INDEX_VERSION:
                return
    except (OSError, ValueError, KeyError):
        pass
    load_index(manifest.path.parent, manifest.path.name, manifest)


def _save_index(path: Path, index: dict[str, np.ndarray]) -> None:
    """Write the index cache atomically; a read-only folder simply goes without."""
    try:
        with atomic_write(path, durable=False) as fh:
            np.savez(fh, **index)
    except OSError as exc:
        logger.debug("cannot write index cache %s: %s", path, exc)


def pack_keys(ytid: np.ndarray, ms: np.ndarray) -> np.ndarray:
    """Sortable fixed-width bytes per key: the 11-byte id, then the start in ms big-endian."""
    n = len(ytid)
    buf = np.zeros((n, 19), dtype=np.uint8)
    if n:
        buf[:, :11] = np.frombuffer(np.ascontiguousarray(ytid, dtype="S11").tobytes(),
                                    dtype=np.uint8).reshape(n, 11)
        buf[:, 11:] = np.ascontiguousarray(ms, dtype=">u8").view(np.uint8).reshape(n, 8)
    return buf.view("S19").reshape(n)


__all__ = ["load_index", "pack_keys", "write_index"]
