"""The segment list container: :class:`Segments`, Arrow columns plus a sparse label matrix.

:class:`Segments` holds the rows of a segment list as Arrow columns ``ytid``, ``start``, ``end``
and ``labels`` (a list of mids), and a boolean ``scipy.sparse.csr_array`` of shape
``(rows, labels)`` whose columns follow :class:`~audioset_data.segments.labels.LabelIndex`.
Selections by class (a mid, a display name or an ontology subtree, as sparse column look-ups),
set operations and writing back work on these columns and on the matrix, never row by row in
Python. Parsing lives in :mod:`audioset_data.segments.parser`, the parsed cache in
:mod:`audioset_data.segments.parse_cache`, fetching in :mod:`audioset_data.segments.load`.

The clip × label matrix of any other table of label lists comes from
:func:`audioset_data.segments.targets.labels_to_matrix`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal, NamedTuple

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import scipy.sparse as sp

from audioset_data.config import PathLike
from audioset_data.errors import AudioSetError, SegmentsError

from .labels import LabelIndex
from .parse_cache import load_cached
from .parser import ParseOptions, parse_bytes, parse_file
from .priors import ClassPriors
from .rows import rejected_frame, unknown_frame
from .targets import labels_to_matrix
from .writer import official_csv_bytes, write_official_csv

if TYPE_CHECKING:
    from audioset_data.ontology import Ontology


UnknownLabels = Literal["error", "drop", "keep"]
OnBadRows = Literal["error", "skip"]
Duplicates = Literal["report", "error"]


class Segment(NamedTuple):
    """One row of a segment list."""

    ytid: str
    start: float
    end: float
    labels: tuple[str, ...]
    line: int


class SegmentsNotFoundError(SegmentsError, FileNotFoundError):
    """A segment list file that does not exist (also a ``FileNotFoundError``)."""


class Segments:
    """A segment list: Arrow columns ``ytid, start, end, labels`` and a sparse label matrix.

    Build one with :func:`load_segments` (also :meth:`Segments.load`), :meth:`from_file` or
    :meth:`from_csv_text`. Selections return new :class:`Segments`; set operations compare
    rows by ``(ytid, start)``.

    Attributes
    ----------
    label_index
        Column order of :attr:`label_matrix`.
    source
        File (or description) the rows came from.
    lines
        1-based source line of each row (0 for rows built in memory).
    rejected
        Rows left out by ``on_bad_rows="skip"``: columns ``line, text, reason``.
    unknown
        Unknown mids dropped or kept under ``unknown_labels="drop"|"keep"``:
        columns ``line, ytid, mid``.
    header
        The ``#`` comment lines of the source file.
    """

    def __init__(
        self,
        table: pa.Table | pd.DataFrame,
        label_matrix: sp.csr_array | sp.csr_matrix | None,
        label_index: LabelIndex,
        *,
        source: str = "<memory>",
        lines: np.ndarray | Callable[[], np.ndarray] | None = None,
        header: Sequence[str] = (),
    ):
        if isinstance(table, pd.DataFrame):
            table = pa.Table.from_pandas(table, preserve_index=False)
        missing = {"ytid", "start", "end", "labels"} - set(table.column_names)
        if missing:
            raise SegmentsError(f"{source}: table lacks the columns {sorted(missing)}")
        table = table.select(["ytid", "start", "end", "labels"])
        self._table = table
        self.label_index = label_index
        if label_matrix is None:
            label_matrix = labels_to_matrix(self._table["labels"], label_index).matrix
        self._y = sp.csr_array(label_matrix, dtype=bool)
        if self._y.shape != (len(self._table), len(label_index)):
            raise SegmentsError(
                f"{source}: label matrix shape {self._y.shape} does not fit "
                f"{len(self._table)} rows × {len(label_index)} labels"
            )
        self.source = source
        self._lines = lines  # a callable makes the array on first use (the parser's runs)
        if not callable(lines):
            self.lines = np.zeros(len(table), np.int64) if lines is None else lines
        self.header = list(header)
        self.rejected = rejected_frame()
        self.unknown = unknown_frame()
        self._frame: pd.DataFrame | None = None

    @property
    def lines(self) -> np.ndarray:
        """1-based source line of each row (0 for rows built in memory)."""
        if callable(self._lines):
            self.lines = self._lines()
        return self._lines

    @lines.setter
    def lines(self, value: np.ndarray) -> None:
        value = np.asarray(value, dtype=np.int64)
        if value.shape != (len(self._table),):
            raise SegmentsError(f"{self.source}: {len(value)} line numbers for "
                                f"{len(self._table)} rows")
        self._lines = value

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_csv_text(
        cls,
        text: str | bytes,
        *,
        label_index: LabelIndex,
        source: str = "<text>",
        unknown_labels: UnknownLabels = "error",
        on_bad_rows: OnBadRows = "error",
        duplicates: Duplicates = "report",
        allow_empty: bool = False,
        progress: bool | None = False,
    ) -> Segments:
        """Parse the text of a segment list in the official format.

        Parameters
        ----------
        text
            File content (``str`` or UTF-8 ``bytes``).
        label_index
            The labels (matrix columns) that mids must belong to.
        source
            Name used in error messages.
        unknown_labels
            ``"error"``: a mid outside ``label_index`` makes the row bad; ``"drop"``: remove
            such mids (a row left with none is bad); ``"keep"``: keep them in the ``labels``
            column, but not in the matrix. Dropped and kept mids are listed in ``.unknown``.
        on_bad_rows
            ``"error"`` raises on the first bad row; ``"skip"`` leaves bad rows out and lists
            them in ``.rejected``.
        duplicates
            ``"report"`` keeps rows repeating a ``(ytid, start)`` and logs them (see
            :meth:`duplicates`); ``"error"`` treats the repeats as bad rows.
        allow_empty
            Return an empty :class:`Segments` for a list without rows (empty text, only
            comment or blank lines, or every row rejected) instead of raising.

        Raises
        ------
        SegmentsError
            The text breaks the format (the message names source and line), or holds no
            segment rows and ``allow_empty`` is false.

        Examples
        --------
        >>> idx = LabelIndex(["/m/09x0r", "/m/04rlf"], ["Speech", "Music"])
        >>> seg = Segments.from_csv_text('abcdefghijk, 0.000, 10.000, "/m/09x0r,/m/04rlf"\\n',
        ...                              label_index=idx)
        >>> len(seg), seg.n_labels, seg[0].labels
        (1, 2, ('/m/09x0r', '/m/04rlf'))
        """
        options = ParseOptions(unknown_labels, on_bad_rows, duplicates)
        options.check()
        data = text.encode("utf-8") if isinstance(text, str) else bytes(text)
        seg = parse_bytes(data, source, label_index, options, progress, into=cls)
        return seg if allow_empty else seg.check_not_empty()

    @classmethod
    def from_file(
        cls,
        path: PathLike,
        *,
        label_index: LabelIndex | PathLike | None = None,
        root: PathLike | None = None,
        base_url: str | None = None,
        unknown_labels: UnknownLabels = "error",
        on_bad_rows: OnBadRows = "error",
        duplicates: Duplicates = "report",
        allow_empty: bool = False,
        cache: bool = False,
        progress: bool | None = None,
    ) -> Segments:
        """Parse a segment list file (see :meth:`from_csv_text` for the options).

        ``label_index`` may be a :class:`LabelIndex`, the path of a ``class_labels_indices.csv``,
        or ``None`` for the official one (fetched under ``root`` from ``base_url``). With
        ``cache=True`` the parsed form is stored under the data root (see
        :mod:`audioset_data.segments.parse_cache`) and reused while the file is unchanged.

        Raises
        ------
        SegmentsNotFoundError
            No file at ``path`` (also a ``FileNotFoundError``).
        SegmentsError
            A malformed row (file and line named), or no rows and ``allow_empty`` is false.
        """
        path = Path(path)
        if not path.is_file():
            what = "is a folder, not a file" if path.is_dir() else "not found (no such file)"
            raise SegmentsNotFoundError(f"segment list {str(path)!r} {what}")
        index = _label_index(label_index, root, base_url)
        options = ParseOptions(unknown_labels, on_bad_rows, duplicates)
        options.check()
        if cache:
            seg = load_cached(path, index, options, root, progress, into=cls)
        else:
            seg = parse_file(path, index, options, progress, into=cls)
        return seg if allow_empty else seg.check_not_empty()

    def check_not_empty(self) -> Segments:
        """Return ``self`` if it has rows, else raise a :class:`SegmentsError` saying why."""
        if len(self):
            return self
        if len(self.rejected):
            first = self.rejected.iloc[0]
            why = (f"no valid segment rows: all {len(self.rejected):,} rows were rejected "
                   f"(first at line {first['line']}: {first['reason']})")
        elif self.header:
            why = f"a header of {len(self.header)} comment lines but no segment rows"
        else:
            why = "no segment rows and no header (an empty file, or only blank lines)"
        raise SegmentsError(f"{self.source}: {why}; pass allow_empty=True to accept an empty "
                            "list")

    @classmethod
    def concat(cls, parts: Sequence[Segments]) -> Segments:
        """Rows of several segment lists one after the other (same label index required)."""
        if not parts:
            raise SegmentsError("nothing to concatenate")
        first = parts[0]
        for p in parts[1:]:
            same_index(first, p)
        table = pa.concat_tables([p._table for p in parts])
        out = Segments(table, sp.vstack([p._y for p in parts], format="csr"), first.label_index,
                       source=" + ".join(dict.fromkeys(p.source for p in parts)),
                       lines=np.concatenate([p.lines for p in parts]), header=first.header)
        return out

    # ------------------------------------------------------------------ access
    def __len__(self) -> int:
        return len(self._table)

    def __repr__(self) -> str:
        return (f"Segments({len(self)} rows, {self.n_labels} labels, "
                f"{len(self.rejected)} rejected, from {self.source})")

    def __getitem__(self, key: int | slice | np.ndarray | Sequence[int] | Sequence[bool]
                    ) -> Segments | Segment:
        """An ``int`` gives one :class:`Segment`; a slice, boolean mask or index array gives
        the selected rows as :class:`Segments` (in the order given)."""
        if isinstance(key, int | np.integer):
            i = int(key)
            if not -len(self) <= i < len(self):
                raise IndexError(f"row {i} is outside 0..{len(self) - 1}")
            i %= len(self)
            row = self._table.slice(i, 1).to_pylist()[0]
            return Segment(row["ytid"], row["start"], row["end"], tuple(row["labels"] or ()),
                           int(self.lines[i]))
        if isinstance(key, slice):
            idx = np.arange(len(self))[key]
        else:
            arr = np.asarray(key)
            if arr.dtype == bool:
                if arr.shape != (len(self),):
                    raise IndexError(f"boolean mask of length {arr.shape} for {len(self)} rows")
                idx = np.flatnonzero(arr)
            elif arr.size == 0:
                idx = np.zeros(0, dtype=np.int64)
            elif np.issubdtype(arr.dtype, np.integer):
                idx = np.where(arr < 0, arr + len(self), arr).astype(np.int64)
                if idx.min() < 0 or idx.max() >= len(self):
                    raise IndexError(f"row index out of range for {len(self)} rows")
            else:
                raise TypeError(f"cannot index Segments with {arr.dtype} values")
        return self._take(idx)

    def _take(self, idx: np.ndarray) -> Segments:
        out = Segments(self._table.take(pa.array(idx, pa.int64())), self._y[idx],
                       self.label_index, source=self.source, lines=self.lines[idx],
                       header=self.header)
        out.rejected, out.unknown = self.rejected, self.unknown
        return out

    @property
    def arrow(self) -> pa.Table:
        """The rows as an Arrow table (``ytid, start, end, labels``)."""
        return self._table

    @property
    def table(self) -> pd.DataFrame:
        """The rows as a pandas DataFrame backed by Arrow columns (no copy of the strings), with
        ``names``: the display names of ``labels`` in the same order (null for a mid the label
        index lacks), made here rather than stored."""
        if self._frame is None:
            names = [_names_of(c, self.label_index) for c in self._table["labels"].chunks]
            self._frame = self._table.append_column(
                "names", pa.chunked_array(names, pa.list_(pa.string()))
            ).to_pandas(types_mapper=pd.ArrowDtype)
        return self._frame

    @property
    def label_matrix(self) -> sp.csr_array:
        """Boolean clip × label matrix (columns in :attr:`label_index` order)."""
        return self._y

    @property
    def ytids(self) -> np.ndarray:
        """YouTube ids as a NumPy array of ``str``."""
        return self._table["ytid"].to_numpy(zero_copy_only=False).astype(str)

    @property
    def start(self) -> np.ndarray:
        """Start times in seconds."""
        return self._table["start"].to_numpy()

    @property
    def end(self) -> np.ndarray:
        """End times in seconds."""
        return self._table["end"].to_numpy()

    @property
    def n_labels(self) -> int:
        """Number of positive (clip, label) pairs in the matrix."""
        return int(self._y.nnz)

    def label_counts(self) -> np.ndarray:
        """Clips carrying each label, in :attr:`label_index` order."""
        counts = np.zeros(len(self.label_index), dtype=np.int64)
        indices = self._y.indices
        step = 1 << 20  # bincount widens its input to int64: count in slices to keep that small
        for i in range(0, len(indices), step):
            counts += np.bincount(indices[i:i + step], minlength=len(counts))
        return counts

    def label_counts_frame(self) -> pd.DataFrame:
        """Counts per label as a DataFrame ``index, mid, name, count``."""
        return pd.DataFrame({
            "index": np.arange(len(self.label_index)),
            "mid": self.label_index.mids,
            "name": self.label_index.names,
            "count": self.label_counts(),
        })

    def propagated(self, ontology: Ontology) -> sp.csr_array:
        """Label matrix with every labelled ontology ancestor of each label added."""
        return self.label_index.propagate(self._y, ontology)

    def priors(self, ontology: Ontology | None = None) -> ClassPriors:
        """Class priors of these rows (propagated ones too when ``ontology`` is given)."""

        return ClassPriors.from_segments(self, ontology=ontology)

    def duplicates(self) -> pd.DataFrame:
        """Rows whose ``(ytid, start)`` occurs more than once: ``line, ytid, start,
        first_line`` (the line of the first occurrence), in row order."""
        empty = pd.DataFrame({"line": pd.Series(dtype="int64"), "ytid": pd.Series(dtype=object),
                              "start": pd.Series(dtype="float64"),
                              "first_line": pd.Series(dtype="int64")})
        if len(self) < 2 or _all_distinct(self._table["ytid"]):
            return empty
        keys = pd.DataFrame({"ytid": self._table["ytid"].to_pandas(), "start": self.start,
                             "line": self.lines})
        dup = keys.duplicated(["ytid", "start"], keep=False).to_numpy()
        if not dup.any():
            return empty
        sub = keys[dup].copy()
        sub["first_line"] = sub.groupby(["ytid", "start"], sort=False)["line"].transform("min")
        return sub[["line", "ytid", "start", "first_line"]].reset_index(drop=True)

    # ------------------------------------------------------------------ set operations
    def _member_of(self, other: Segments) -> np.ndarray:
        """Mask of rows whose ``(ytid, start)`` also occurs in ``other``."""
        mine = pa.table({"ytid": self._table["ytid"], "start": self._table["start"],
                         "_row": pa.array(np.arange(len(self), dtype=np.int64))})
        theirs = other._table.select(["ytid", "start"]).group_by(["ytid", "start"]).aggregate([])
        hit = mine.join(theirs, keys=["ytid", "start"], join_type="left semi")
        mask = np.zeros(len(self), dtype=bool)
        mask[hit["_row"].to_numpy()] = True
        return mask

    def union(self, other: Segments) -> Segments:
        """Rows of ``self``, then rows of ``other`` whose ``(ytid, start)`` is new."""
        same_index(self, other)
        return Segments.concat([self, other[~other._member_of(self)]])

    def intersection(self, other: Segments) -> Segments:
        """Rows of ``self`` whose ``(ytid, start)`` also occurs in ``other``."""
        same_index(self, other)
        return self[self._member_of(other)]

    def difference(self, other: Segments) -> Segments:
        """Rows of ``self`` whose ``(ytid, start)`` does not occur in ``other``."""
        same_index(self, other)
        return self[~self._member_of(other)]

    __or__ = union
    __and__ = intersection
    __sub__ = difference

    # ------------------------------------------------------------------ writing
    def to_csv_bytes(self, *, created: str | None = None) -> bytes:
        """The rows in the official format (three ``#`` header lines), as UTF-8 bytes."""

        return official_csv_bytes(self, created)

    def to_csv_text(self, *, created: str | None = None) -> str:
        """The rows in the official format (three ``#`` header lines), as text."""
        return self.to_csv_bytes(created=created).decode("utf-8")

    def to_csv(self, path: PathLike, *, created: str | None = None) -> Path:
        """Write the rows in the official format; :meth:`from_file` reads them back.

        Times are written with three decimals, as in the official files. The file is written
        under a temporary name and renamed into place.
        """

        return write_official_csv(self, path, created)

    # ------------------------------------------------------------------ selection by class
    def _class_columns(self, cls: str | int, ontology: Ontology | None,
                       subtree: bool) -> np.ndarray:
        index = self.label_index
        if isinstance(cls, int | np.integer):
            index.mid(int(cls))
            if subtree:
                cls = index.mid(int(cls))
            else:
                return np.array([int(cls)])
        key = str(cls)
        if key in index:
            mid = key
        elif ontology is not None:
            try:
                mid = ontology.resolve(key)
            except AudioSetError as exc:
                raise SegmentsError(f"class {key!r}: {exc}") from None
        else:
            try:
                mid = index.mid(index.index(key))
            except AudioSetError:
                close = ", ".join(f"{index.name(m)!r} ({m})" for m in index.suggest(key))
                raise SegmentsError(
                    f"class {key!r} is neither a mid nor a name among the {len(index)} labels"
                    + (f"; did you mean {close}?" if close else
                       " (pass ontology= to resolve classes outside the labels)")) from None
        if subtree:
            if ontology is None:
                raise SegmentsError(f"class {key!r}: selecting a subtree needs an ontology")
            mids = ontology.descendants(mid, with_self=True)
            cols = np.array(sorted(index.index(m) for m in mids if m in index), dtype=np.int64)
            if not len(cols):
                raise SegmentsError(f"class {key!r} ({mid}) has no label in its subtree")
            return cols
        if mid not in index:  # only the ontology resolves a class outside the index
            sub = ([m for m in ontology.descendants(mid, with_self=True) if m in index]
                   if ontology is not None else [])
            tail = (f"its ontology subtree covers {self._has_any(index.indices(sub)).sum():,} "
                    f"of these {len(self):,} rows: select the subtree (subtree=True, --subtree)"
                    if sub else "nor is any class of its ontology subtree")
            raise SegmentsError(f"class {key!r} ({mid}) is not one of the {len(index)} labels, "
                                f"so no row carries it itself; {tail}")
        return np.array([index.index(mid)])

    def class_columns(self, classes: str | int | Iterable[str | int], *,
                      ontology: Ontology | None = None, subtree: bool = False) -> np.ndarray:
        """Matrix columns of one or more classes (mids, names or column numbers); with
        ``subtree=True`` each class brings every labelled descendant in the ontology."""
        groups = self._column_groups(classes, ontology, subtree)
        return np.unique(np.concatenate(groups))

    def _column_groups(self, classes: str | int | Iterable[str | int],
                       ontology: Ontology | None, subtree: bool) -> list[np.ndarray]:
        if isinstance(classes, str | int | np.integer):
            classes = [classes]
        groups = [self._class_columns(c, ontology, subtree) for c in classes]
        if not groups:
            raise SegmentsError("no classes given")
        return groups

    def _has_any(self, cols: np.ndarray) -> np.ndarray:
        sub = self._y[:, np.asarray(cols, dtype=np.int64)]
        return np.diff(sub.indptr) > 0

    def count_rows(self, classes: str | int | Iterable[str | int], *,
                   ontology: Ontology | None = None, subtree: bool = False) -> int:
        """Number of rows carrying at least one of ``classes`` (or of their subtrees), without
        building the selection: compare ``subtree=False`` with ``True`` to see what a class's
        descendants add."""
        return int(self._has_any(self.class_columns(classes, ontology=ontology,
                                                    subtree=subtree)).sum())

    def any_of(self, classes: str | int | Iterable[str | int], *,
               ontology: Ontology | None = None, subtree: bool = False) -> Segments:
        """Rows carrying at least one of ``classes`` (or of their subtrees)."""
        return self[self._has_any(self.class_columns(classes, ontology=ontology,
                                                     subtree=subtree))]

    def all_of(self, classes: str | int | Iterable[str | int], *,
               ontology: Ontology | None = None, subtree: bool = False) -> Segments:
        """Rows carrying every one of ``classes`` (with ``subtree``: something from each
        class's subtree)."""
        mask = np.ones(len(self), dtype=bool)
        for cols in self._column_groups(classes, ontology, subtree):
            mask &= self._has_any(cols)
        return self[mask]

    def select(self, classes: str | int | Iterable[str | int], *, how: str = "any",
               ontology: Ontology | None = None, subtree: bool = False) -> Segments:
        """Rows by class: ``how="any"`` (:meth:`any_of`) or ``"all"`` (:meth:`all_of`)."""
        if how == "any":
            return self.any_of(classes, ontology=ontology, subtree=subtree)
        if how == "all":
            return self.all_of(classes, ontology=ontology, subtree=subtree)
        raise SegmentsError(f"how={how!r} is not 'any' or 'all'")

    def without_only(self, classes: str | int | Iterable[str | int], *,
                     ontology: Ontology | None = None, subtree: bool = False) -> Segments:
        """Drop rows whose labels all fall among ``classes``; keep every other row."""
        cols = self.class_columns(classes, ontology=ontology, subtree=subtree)
        rest = np.setdiff1d(np.arange(len(self.label_index)), cols)
        return self[self._has_any(rest)]

    def exclude_blacklisted(self, ontology: Ontology) -> Segments:
        """Drop rows whose labels are all blacklisted in the ontology."""
        black = [m for m in self.label_index.mids if m in ontology and ontology.is_blacklisted(m)]
        if not black:
            return self[np.ones(len(self), dtype=bool)]
        return self.without_only(black)

    def sample_per_class(self, n: int, seed: int = 0, *,
                         classes: Iterable[str | int] | None = None,
                         ontology: Ontology | None = None) -> Segments:
        """Up to ``n`` random rows of each class, united (rows keep their order).

        A row drawn for one class also counts for its other labels, so common classes may end
        up with more than ``n`` rows; every class with ``m`` rows has at least ``min(n, m)``.
        """
        if n < 0:
            raise SegmentsError(f"n={n} must be >= 0")
        rng = np.random.default_rng(seed)
        csc = self._y.tocsc()
        csc.sort_indices()
        cols = (np.arange(len(self.label_index)) if classes is None
                else self.class_columns(classes, ontology=ontology))
        picks = []
        for j in cols:
            rows = csc.indices[csc.indptr[j]:csc.indptr[j + 1]]
            if len(rows) > n:
                rows = rng.choice(rows, n, replace=False)
            picks.append(rows)
        idx = np.unique(np.concatenate(picks)) if picks else np.zeros(0, np.int64)
        return self[idx.astype(np.int64)]


def _all_distinct(ytid: pa.ChunkedArray | pa.Array) -> bool:
    """Whether no id repeats; cheap for sorted ids (as in the official lists)."""
    chunks = [c for c in (ytid.chunks if isinstance(ytid, pa.ChunkedArray) else [ytid]) if len(c)]
    ascending = all(
        pc.all(pc.less(c.slice(0, len(c) - 1), c.slice(1))).as_py() is not False
        for c in chunks
    ) and all(a[len(a) - 1].as_py() < b[0].as_py()
              for a, b in zip(chunks, chunks[1:], strict=False))
    if ascending:
        return True
    return pc.count_distinct(ytid).as_py() == len(ytid)


def _names_of(labels: pa.Array, index: LabelIndex) -> pa.Array:
    """Display names of a list column of mids, list by list, looked up in one pass."""
    flat = pc.list_flatten(labels)
    named = pa.array(index.names, pa.string()).take(pc.index_in(flat, pa.array(index.mids)))
    offsets = np.zeros(len(labels) + 1, np.int32)
    np.cumsum(pc.fill_null(pc.list_value_length(labels), 0), out=offsets[1:])
    return pa.ListArray.from_arrays(pa.array(offsets), named, mask=labels.is_null())


def same_index(a: Segments, b: Segments) -> None:
    if a.label_index.mids != b.label_index.mids:
        raise SegmentsError(f"{a.source} and {b.source} use different label indexes")




def _label_index(label_index: LabelIndex | PathLike | None, root: PathLike | None,
                 base_url: str | None) -> LabelIndex:
    if isinstance(label_index, LabelIndex):
        return label_index
    if label_index is not None:
        return LabelIndex.from_file(label_index)
    return LabelIndex.load(root=root, base_url=base_url)


__all__ = ["Segment", "Segments", "SegmentsNotFoundError"]
