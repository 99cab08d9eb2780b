"""A copy's rows as an importer describes them (:class:`Copy`): names, ids and labels read up
front, the audio on demand; with the helpers that build its label matrix and read it in blocks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp

from audioset_data.errors import CacheError, UnknownClassError
from audioset_data.segments.labels import LabelIndex

#: Length of an AudioSet clip, for the cache's clip length when the copy does not say.
CLIP_SECONDS = 10.0


def label_columns(values: Iterable[Any], label_index: LabelIndex
                  ) -> tuple[list[int], list[str]]:
    """Columns of labels given as mids, display names or column numbers; and the values that
    name no label of ``label_index``."""
    cols: list[int] = []
    unknown: list[str] = []
    for v in values:
        if isinstance(v, bool):
            unknown.append(str(v))
        elif isinstance(v, int | np.integer):
            if 0 <= int(v) < len(label_index):
                cols.append(int(v))
            else:
                unknown.append(str(v))
        else:
            try:
                cols.append(label_index.index(str(v)))
            except UnknownClassError:
                unknown.append(str(v))
    return cols, unknown


def rows_to_matrix(cols: Sequence[Sequence[int]], n_labels: int) -> sp.csr_array:
    """A boolean row-per-clip label matrix from each row's label columns (repeats ignored)."""
    rows = [sorted(set(c)) for c in cols]
    indptr = np.zeros(len(rows) + 1, dtype=np.int64)
    indptr[1:] = np.cumsum([len(c) for c in rows])
    indices = np.fromiter((c for row in rows for c in row), dtype=np.int64,
                          count=int(indptr[-1]))
    data = np.ones(len(indices), dtype=bool)
    return sp.csr_array((data, indices, indptr), shape=(len(rows), n_labels))

@dataclass
class Copy:
    """One copy's rows as an importer reads them, before any audio.

    ``ids`` holds each row's ``(ytid, start, end)`` (None where the row names no video id;
    start and end None where it gives none), ``target`` the labels it carries, ``reason`` a
    reason to skip a row found while reading (``""``: none). ``columns`` says the labels came as
    columns in label-index order (PANNs, PaSST), whose order is then checked against the list.
    ``read(rows)`` yields ``(row, audio)`` for increasing rows: the bytes of an encoded file
    (None or empty: no audio; an exception: the row could not be read), or, when ``pcm`` is
    set, int16 samples at ``sample_rate`` (``clip_samples`` then is the copy's clip length,
    and both fix the cache's). ``details`` explains skip reasons found while reading.
    """

    path: str
    names: list[str]
    ids: list[tuple[str, float | None, float | None] | None]
    target: sp.csr_array
    read: Callable[[np.ndarray], Iterator[tuple[int, Any]]]
    sources: list[str] | None = None
    reason: np.ndarray | None = None
    columns: bool = False
    sample_rate: int | None = None
    clip_samples: int | None = None
    pcm: bool = False
    unknown_labels: dict[str, int] = field(default_factory=dict)
    details: dict[int, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.names)
        if len(self.ids) != n or self.target.shape[0] != n:
            raise CacheError(f"{self.path!r}: names, ids and labels disagree on the row count")
        if self.reason is None:
            self.reason = np.full(n, "", dtype=object)
        if self.sources is None:  # one file: the report names rows without it
            self.sources = [""] * n

def blocks(rows: np.ndarray, size: int) -> Iterator[tuple[int, int, np.ndarray]]:
    """``(lo, hi, rows)`` for each run of ``size`` consecutive row numbers holding any of
    ``rows``: the blocks an importer reads at once."""
    if not len(rows):
        return
    for lo in range(int(rows[0]) - int(rows[0]) % size, int(rows[-1]) + 1, size):
        hi = lo + size
        inside = rows[(rows >= lo) & (rows < hi)]
        if len(inside):
            yield lo, hi, inside


__all__ = ["CLIP_SECONDS", "Copy", "blocks", "label_columns", "rows_to_matrix"]
