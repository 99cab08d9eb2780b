"""Read a split from a local copy of the Hugging Face dataset ``agkphysics/AudioSet`` into the
cache.

The dataset's card describes parquet shards (``data/bal_train/*.parquet``,
``data/unbal_train/*.parquet``, ``data/eval/*.parquet``; the ``balanced``, ``unbalanced`` and
``full`` configs) with the columns

``video_id``
    the YouTube id (no start time: the segment list the split comes from gives it);
``audio``
    a struct of ``bytes`` (the whole FLAC file) and ``path`` (``audio/bal_train/<id>.flac``);
``labels``
    the clip's labels as mids (``["/m/09x0r", "/t/dd00088"]``);
``human_labels``
    the same labels as display names (``["Speech", "Gush"]``).

Most clips are 48 kHz, 24-bit FLAC, about 10 % 44.1 kHz. A clip is stored as it is when the
cache can hold it so (a FLAC cache at its rate, one channel: see :mod:`.copies.decoding`); the
rest is decoded and resampled once. The cache's rate defaults to the first clip's (48 kHz); pass
``sample_rate=32000`` (``--sample-rate``) for a cache at PANNs' rate. Labels come from
``labels``, else from ``human_labels`` (names are looked up in the label index).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from audioset_data.config import PathLike
from audioset_data.errors import CacheError
from audioset_data.segments.labels import LabelIndex

from .copies.importer import import_copy
from .copies.names import cache_folder, expand_paths, parse_clip_name
from .copies.report import ImportReport
from .copies.rows import Copy, label_columns, rows_to_matrix

if TYPE_CHECKING:
    from audioset_data.segments.table import Segments

logger = logging.getLogger(__name__)

#: Columns that may hold a clip's labels, in the order they are looked for.
LABEL_COLUMNS = ("labels", "human_labels")


def import_hf_parquet(
    path: PathLike,
    split: str | None = None,
    root: PathLike | None = None,
    *,
    folder: PathLike | None = None,
    segments: Segments | None = None,
    label_index: LabelIndex | None = None,
    fmt: str | None = None,
    sample_rate: int | None = None,
    take_labels: str = "copy",
    batch_size: int = 64,
    shard_size: int = 1000,
    progress: bool | None = None,
) -> ImportReport:
    """Import the clips of ``agkphysics/AudioSet`` parquet shards into the cache of ``split``.

    Parameters
    ----------
    path
        One parquet file, a folder of them (searched recursively), or a glob pattern
        (``data/eval/*.parquet``).
    split, root, folder
        Cache to write: the cache of ``split`` under the data root, or an explicit folder.
    segments
        The segment list of the split: it gives each clip's start and end (the shards carry
        the video id only); rows it does not name are skipped as unlisted, and each row's
        labels are checked against the list's.
    label_index
        The index the labels are looked up in (default: the official one).
    fmt
        Cache format (None: the existing cache's, else FLAC, which lets clips go in as they
        are).
    sample_rate
        Cache sample rate (None: the existing cache's, else the first clip's).
    take_labels
        ``"copy"`` keeps each row's own labels, ``"list"`` takes the segment list's.
    batch_size, shard_size
        Clips written at a time; clips per cache shard.
    progress
        Show a progress bar (None: when writing to a terminal).

    Returns
    -------
    ImportReport
        Counts, the rows skipped with their reasons, damaged rows named.

    Raises
    ------
    CacheError
        A shard cannot be read or lacks the ``video_id`` or ``audio`` column, or the cache was
        made with other settings.
    ConfigError
        No cache, no shards, or no segment list given.
    """
    target_folder = cache_folder(split, root, folder, "import_hf_parquet")
    if label_index is None:
        label_index = LabelIndex.load(root=root)
    files = expand_paths(path, (".parquet",), "Hugging Face copy")
    copy = _copy(files, str(path), label_index, take_labels)
    return import_copy(copy, target_folder, segments=segments, label_index=label_index,
                       fmt=fmt, default_fmt="flac", sample_rate=sample_rate,
                       take_labels=take_labels, batch_size=batch_size, shard_size=shard_size,
                       progress=progress)


def _open(file: Path) -> pq.ParquetFile:
    try:
        return pq.ParquetFile(file)
    except (OSError, pa.ArrowException) as exc:
        raise CacheError(f"parquet file {str(file)!r} cannot be read: {exc}") from None


def _copy(files: list[Path], what: str, label_index: LabelIndex, take_labels: str) -> Copy:
    """The rows of every shard, in file order: ids, names, labels; audio read on demand."""
    names: list[str] = []
    ids: list[tuple[str, float | None, float | None] | None] = []
    sources: list[str] = []
    cols: list[list[int]] = []
    unknown: Counter[str] = Counter()
    spans: list[tuple[Path, int, list[int]]] = []  # file, first row, rows per row group
    for file in files:
        pf = _open(file)
        schema = pf.schema_arrow
        if "video_id" not in schema.names or "audio" not in schema.names:
            missing = "video_id" if "video_id" not in schema.names else "audio"
            raise CacheError(f"{str(file)!r} is not in the layout of agkphysics/AudioSet: no "
                             f"column {missing!r} (it has {', '.join(schema.names)})")
        label_col = next((c for c in LABEL_COLUMNS if c in schema.names), None)
        if label_col is None and take_labels != "list":
            raise CacheError(f"{str(file)!r} has no labels or human_labels column; import it "
                             "with the segment list's labels (take_labels='list', "
                             "--take-labels list)")
        wanted = ["video_id"] + ([label_col] if label_col else [])
        audio_type = schema.field("audio").type
        has_path = pa.types.is_struct(audio_type) and audio_type.get_field_index("path") >= 0
        if has_path:
            wanted.append("audio.path")
        try:
            table = pf.read(columns=wanted)
        except (OSError, pa.ArrowException) as exc:
            raise CacheError(f"parquet file {str(file)!r} cannot be read: {exc}") from None
        spans.append((file, len(names), [pf.metadata.row_group(g).num_rows
                                          for g in range(pf.num_row_groups)]))
        vids = table.column("video_id").to_pylist()
        paths = (table.column("audio").combine_chunks().field("path").to_pylist()
                 if has_path else [None] * len(vids))
        labels = table.column(label_col).to_pylist() if label_col else [[]] * len(vids)
        for vid, audio_path, row_labels in zip(vids, paths, labels, strict=True):
            vid = str(vid or "").strip()
            names.append(str(audio_path) if audio_path else vid)
            parsed = parse_clip_name(vid) if vid else None
            if parsed is None and audio_path:
                parsed = parse_clip_name(str(audio_path))
            ids.append(parsed)
            found, bad = label_columns(row_labels or [], label_index)
            cols.append(found)
            unknown.update(bad)
            sources.append(file.name)
    return Copy(what, names, ids, rows_to_matrix(cols, len(label_index)),
                lambda rows: _read(spans, rows), sources=sources, unknown_labels=dict(unknown))


def _audio_bytes(column: Any) -> list[bytes | None]:
    """The encoded bytes of each row of an ``audio`` column (a struct with ``bytes``, or plain
    binary)."""
    column = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if pa.types.is_struct(column.type):
        if column.type.get_field_index("bytes") < 0:
            return [None] * len(column)
        column = column.field("bytes")
    return column.to_pylist()


def _read(spans: list[tuple[Path, int, list[int]]], rows: np.ndarray
          ) -> Iterator[tuple[int, bytes | None]]:
    """The audio bytes of ``rows`` (increasing), one row group read at a time."""
    for file, first, groups in spans:
        end = first + sum(groups)
        inside = rows[(rows >= first) & (rows < end)]
        if not len(inside):
            continue
        pf = _open(file)
        lo = first
        for g, size in enumerate(groups):
            hi = lo + size
            want = inside[(inside >= lo) & (inside < hi)]
            if len(want):
                try:
                    group = pf.read_row_group(g, columns=["audio"])
                except (OSError, pa.ArrowException) as exc:
                    raise CacheError(f"parquet file {str(file)!r}, row group {g} cannot be "
                                     f"read: {exc}") from None
                data = _audio_bytes(group.column("audio"))
                for r in want.tolist():
                    yield r, data[r - lo]
            lo = hi


__all__ = ["LABEL_COLUMNS", "import_hf_parquet"]
