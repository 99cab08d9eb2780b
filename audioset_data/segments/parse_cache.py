"""The parsed-segment cache: a parsed list stored so that loading it again skips the parser.

A parsed list is stored under ``<data root>/segments/`` as an uncompressed Arrow IPC file of
one record batch, read back memory-mapped, so a load maps the file instead of decoding it:
the columns ``ytid, start, end, labels`` and ``line``, and the label matrix as its raw CSR
arrays (a ``cols`` list column whose offsets are the row pointers and whose values are the
column indices). The reports (header, rejected rows, unknown mids) travel in the schema
metadata.

Entries are keyed by the SHA-256 of the source file, so a changed file is parsed again. The
SHA-256 itself is remembered with the file's size, modification and change times, inode and
device (a *stat marker* under ``<data root>/segments/sources/``): while those are unchanged the
file is not read again to hash it. A marker is only written for a file last modified more than
two seconds earlier, so a file rewritten within one timestamp tick is hashed again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import scipy.sparse as sp

from audioset_data.config import PathLike, data_home
from audioset_data.fileio import atomic_path, atomic_write
from audioset_data.remote import sha256_of

from .labels import LabelIndex
from .parser import ParseOptions, parse_file

if TYPE_CHECKING:
    from .table import Segments
from .rows import rejected_frame, unknown_frame

logger = logging.getLogger(__name__)

#: Bumped whenever the cache layout or the parser's output changes.
CACHE_FORMAT = 3
_META_KEY = b"audioset_data.segments.load"
_RACY_NS = 2_000_000_000  # a file modified this recently may change again within its mtime


def _mids_digest(index: LabelIndex) -> str:
    return hashlib.sha256("\n".join(index.mids).encode()).hexdigest()


def parsed_cache_path(source: PathLike, sha256: str, label_index: LabelIndex,
                      root: PathLike | None = None, *, unknown_labels: str = "error",
                      on_bad_rows: str = "error", duplicates: str = "report") -> Path:
    """Where the parsed form of a segment list with this SHA-256 (and these options) lives."""
    opts = json.dumps([CACHE_FORMAT, unknown_labels, on_bad_rows, duplicates,
                       _mids_digest(label_index)])
    key = hashlib.sha256(opts.encode()).hexdigest()[:12]
    return data_home(root) / "segments" / f"{Path(source).stem}-{sha256[:20]}-{key}.arrow"


def _stat_key(path: Path) -> dict[str, int | str]:
    st = path.stat()
    return {"path": str(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns,
            "ctime_ns": st.st_ctime_ns, "ino": st.st_ino, "dev": st.st_dev}


def source_sha256(path: PathLike, root: PathLike | None = None) -> str:
    """SHA-256 of a segment list file, hashed only when its stat marker is missing or stale."""
    path = Path(path).resolve()
    marker = (data_home(root) / "segments" / "sources"
              / f"{hashlib.sha256(str(path).encode()).hexdigest()[:24]}.json")
    key = _stat_key(path)
    try:
        recorded = json.loads(marker.read_text())
        if recorded.get("stat") == key and isinstance(recorded.get("sha256"), str):
            return recorded["sha256"]
    except (OSError, ValueError):
        pass
    sha256 = sha256_of(path)  # a fetched file's recorded digest if it is unchanged, else read
    if time.time_ns() - int(key["mtime_ns"]) > _RACY_NS and _stat_key(path) == key:
        try:
            marker.parent.mkdir(parents=True, exist_ok=True)
            with atomic_write(marker, "w", durable=False, encoding="utf-8") as fh:
                json.dump({"stat": key, "sha256": sha256}, fh)
        except OSError as exc:
            logger.debug("could not write the stat marker %s: %s", marker, exc)
    return sha256


def write_cache(seg: Segments, target: Path, sha256: str) -> None:
    """Store a parsed list as one uncompressed Arrow IPC record batch."""
    y = seg.label_matrix
    if y.nnz < 2**31:
        cols = pa.ListArray.from_arrays(pa.array(y.indptr.astype(np.int32, copy=False)),
                                        pa.array(y.indices.astype(np.int32, copy=False)))
    else:
        cols = pa.LargeListArray.from_arrays(pa.array(y.indptr.astype(np.int64, copy=False)),
                                             pa.array(y.indices.astype(np.int32, copy=False)))
    table = (seg.arrow.combine_chunks().append_column("line", pa.array(seg.lines))
             .append_column("cols", cols))
    meta = {
        "format": CACHE_FORMAT, "sha256": sha256, "source": seg.source, "header": seg.header,
        "mids_sha256": _mids_digest(seg.label_index),
        "rejected": [[int(a), str(b), str(c)] for a, b, c in seg.rejected.itertuples(index=False)],
        "unknown": [[int(a), str(b), str(c)] for a, b, c in seg.unknown.itertuples(index=False)],
    }
    table = table.replace_schema_metadata({_META_KEY: json.dumps(meta)})
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(target, durable=False) as tmp:
        with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
            for batch in table.to_batches(max_chunksize=max(1, len(table))):
                writer.write_batch(batch)


def read_cache(target: Path, index: LabelIndex, source: str, sha256: str, *,
               into: type[Segments]) -> Segments:
    """Map a stored parsed list as an ``into`` (the :class:`Segments` class); raise
    ``ValueError`` if it does not fit ``sha256``/``index``."""
    reader = pa.ipc.open_file(pa.memory_map(str(target)))
    meta = json.loads(reader.schema.metadata[_META_KEY])
    if meta.get("format") != CACHE_FORMAT or meta.get("sha256") != sha256 or (
            meta.get("mids_sha256") != _mids_digest(index)):
        raise ValueError("cache was written for another source, format or label index")
    table = reader.read_all()
    cols = table["cols"]
    if cols.num_chunks > 1 or cols.null_count:
        raise ValueError("label columns are damaged")
    cols = cols.chunk(0) if cols.num_chunks else pa.array([], pa.list_(pa.int32()))
    indptr = np.array(cols.offsets)  # copies: the matrix must not point into the mapped file
    indices = np.array(cols.values.to_numpy())
    if (len(indptr) != len(table) + 1 or indptr[0] != 0 or indptr[-1] != len(indices)
            or (len(indices) and not 0 <= indices.min() <= indices.max() < len(index))):
        raise ValueError("label columns are damaged")
    matrix = sp.csr_array((np.ones(len(indices), dtype=bool), indices, indptr),
                          shape=(len(table), len(index)))
    seg = into(table, matrix, index, source=source, lines=table["line"].to_numpy(),
                   header=meta.get("header", []))
    seg.rejected = rejected_frame(tuple(r) for r in meta.get("rejected", []))
    seg.unknown = unknown_frame(tuple(r) for r in meta.get("unknown", []))
    return seg


def load_cached(path: Path, index: LabelIndex, options: ParseOptions, root: PathLike | None,
                progress: bool | None, *, into: type[Segments]) -> Segments:
    """The parsed list of ``path``: from the cache when it holds this file, else parsed (and
    then stored)."""
    sha256 = source_sha256(path, root)
    target = parsed_cache_path(path, sha256, index, root, unknown_labels=options.unknown_labels,
                               on_bad_rows=options.on_bad_rows, duplicates=options.duplicates)
    if target.is_file():
        try:
            seg = read_cache(target, index, str(path), sha256, into=into)
            logger.debug("using parsed cache %s", target)
            return seg
        except (OSError, ValueError, KeyError, TypeError, pa.ArrowException) as exc:
            logger.warning("parsed cache %s is unreadable (%s); parsing again", target, exc)
    seg = parse_file(path, index, options, progress, into=into)
    try:
        write_cache(seg, target, sha256)
    except OSError as exc:  # a read-only cache must not stop the load
        logger.warning("could not write the parsed cache %s: %s", target, exc)
    return seg


__all__ = ["CACHE_FORMAT", "load_cached", "parsed_cache_path", "read_cache", "source_sha256",
           "write_cache"]
