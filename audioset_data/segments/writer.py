"""Writing a segment list back in the official format (the parser's counterpart).

Three ``#`` header lines (creation date, counts, column names), then one row per segment with
times written with three decimals, as in the official files; the text is built column-wise
with Arrow kernels.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from audioset_data.config import PathLike
from audioset_data.fileio import atomic_write

if TYPE_CHECKING:
    from .table import Segments

HEADER_COLUMNS = "# YTID, start_seconds, end_seconds, positive_labels"


def format_seconds(values: np.ndarray) -> pa.Array:
    """Seconds as strings with three decimals (``10.000``), vectorised."""
    ms = np.rint(np.asarray(values, dtype=np.float64) * 1000).astype(np.int64)
    whole = pc.cast(pa.array(ms // 1000), pa.string())
    frac = pc.utf8_lpad(pc.cast(pa.array(ms % 1000), pa.string()), 3, "0")
    return pc.binary_join_element_wise(whole, frac, ".")


def official_csv_bytes(seg: Segments, created: str | None = None) -> bytes:
    """The rows of ``seg`` in the official format, as UTF-8 bytes."""
    table = seg.arrow
    labels = table["labels"]
    flat = pc.list_flatten(labels)
    n_unique = pc.count_distinct(table["ytid"]).as_py() if len(seg) else 0
    header = (
        f"# Segments csv created {created or time.strftime('%a %b %e %H:%M:%S %Y')}\n"
        f"# num_ytids={n_unique}, num_segs={len(seg)}, "
        f"num_unique_labels={pc.count_distinct(flat).as_py() if len(flat) else 0}, "
        f"num_positive_labels={len(flat)}\n{HEADER_COLUMNS}\n"
    ).encode()
    if not len(seg):
        return header
    joined = pc.binary_join(labels, ",")
    line = pc.binary_join_element_wise(
        table["ytid"], format_seconds(seg.start), format_seconds(seg.end),
        pc.binary_join_element_wise('"', joined, '"', ""), ", ")
    line = pc.binary_join_element_wise(line, "\n", "")
    if isinstance(line, pa.ChunkedArray):
        line = line.combine_chunks()
    line = line.cast(pa.large_string())
    offsets = np.frombuffer(line.buffers()[1], dtype=np.int64)[line.offset:]
    body = memoryview(line.buffers()[2])[offsets[0]:offsets[len(line)]]
    return header + bytes(body)


def write_official_csv(seg: Segments, path: PathLike, created: str | None = None) -> Path:
    """Write ``seg`` to ``path`` in the official format, under a temporary name renamed into
    place (so a reader never sees half a file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = official_csv_bytes(seg, created)
    with atomic_write(path, "wb", durable=False) as fh:
        fh.write(data)
    return path


__all__ = ["HEADER_COLUMNS", "format_seconds", "official_csv_bytes", "write_official_csv"]
