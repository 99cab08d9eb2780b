"""Training targets: the boolean clip × label matrix of any table of label lists.

:func:`labels_to_matrix` maps per-row mid lists (Arrow lists, or comma-joined strings as a
DataFrame may hold them) to matrix columns with Arrow kernels in one pass, so turning a segment
table into targets needs no Python loop over rows.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import scipy.sparse as sp

from audioset_data.errors import SegmentsError

from .labels import LabelIndex


class LabelMatrix(NamedTuple):
    """What :func:`labels_to_matrix` returns."""

    #: Boolean clip × label matrix, columns in label-index order, rows in input order.
    matrix: sp.csr_array
    #: Mids outside the label index and how many rows carry each (left out of the matrix).
    unknown: Counter[str]


def csr_from_columns(cols: np.ndarray, indptr: np.ndarray, n_labels: int) -> sp.csr_array:
    """Boolean CSR matrix from column indices and row pointers; repeated mids merged."""
    index_dtype = np.int32 if len(cols) < 2**31 else np.int64
    matrix = sp.csr_array(
        (np.ones(len(cols), dtype=bool), cols.astype(index_dtype, copy=False),
         indptr.astype(index_dtype, copy=False)),
        shape=(len(indptr) - 1, n_labels),
    )
    if not matrix.has_canonical_format:
        matrix.sum_duplicates()
    return matrix


def _label_column(labels: Any) -> pa.Array:
    """A ``labels`` column as one Arrow array of strings or of lists of strings."""
    if isinstance(labels, pa.Table | pd.DataFrame):
        if "labels" not in list(labels.columns if isinstance(labels, pd.DataFrame)
                                else labels.column_names):
            raise SegmentsError("the table has no 'labels' column")
        labels = labels["labels"]
    if isinstance(labels, pd.Series | np.ndarray | list | tuple):
        try:  # from_pandas: NaN (a missing value in pandas) is no label
            labels = pa.array(labels, from_pandas=True)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise SegmentsError(f"labels must be lists of mids or comma-joined mids ({exc})"
                                ) from None
    if isinstance(labels, pa.ChunkedArray):
        labels = (labels.combine_chunks() if labels.num_chunks != 1 else labels.chunk(0))
    if not isinstance(labels, pa.Array):
        raise SegmentsError(f"cannot read labels from a {type(labels).__name__}")
    if pa.types.is_null(labels.type):
        labels = labels.cast(pa.string())
    if pa.types.is_large_string(labels.type) or pa.types.is_string(labels.type):
        labels = pc.split_pattern(labels.cast(pa.string()), ",")
    if not (pa.types.is_list(labels.type) or pa.types.is_large_list(labels.type)) or not (
            pa.types.is_string(labels.type.value_type)
            or pa.types.is_large_string(labels.type.value_type)):
        raise SegmentsError(f"labels of type {labels.type} are neither lists of mids nor "
                            "comma-joined mids")
    return labels


def labels_to_matrix(labels: Any, label_index: LabelIndex) -> LabelMatrix:
    """The boolean clip × label matrix of a table of label lists, in one vectorised pass.

    This is the way from any segment table to training targets: row ``i`` of the matrix holds
    the labels of row ``i`` of the input (``matrix[[i]].indices`` are its label columns, or
    ``matrix[[i]].toarray()[0]`` its dense target), with no Python loop over rows and no
    join/split round trip.

    Parameters
    ----------
    labels
        A :class:`Segments` (its matrix is returned as it is), a pandas ``DataFrame`` or Arrow
        ``Table`` with a ``labels`` column, or the column itself (Arrow array, pandas Series,
        NumPy array or list) holding per row a list of mids or a string of comma-joined mids
        (``"/m/09x0r,/m/04rlf"``). Blanks around mids are ignored; a missing or empty value
        means no labels.
    label_index
        The matrix columns.

    Returns
    -------
    LabelMatrix
        ``matrix``: ``scipy.sparse.csr_array`` of ``bool``, shape ``(rows, len(label_index))``,
        each row's columns sorted, a mid repeated in a row counted once; ``unknown``: a
        ``Counter`` of the mids outside ``label_index`` (left out of the matrix), by rows.

    Examples
    --------
    >>> idx = LabelIndex(["/m/09x0r", "/m/04rlf"], ["Speech", "Music"])
    >>> y, unknown = labels_to_matrix(["/m/04rlf,/m/09x0r", "/m/new", ""], idx)
    >>> y.toarray().astype(int).tolist(), dict(unknown)
    ([[1, 1], [0, 0], [0, 0]], {'/m/new': 1})
    """
    if hasattr(labels, "label_matrix") and hasattr(labels, "arrow"):  # a Segments
        if labels.label_index.mids == label_index.mids and not len(labels.unknown):
            return LabelMatrix(labels.label_matrix, Counter())
        labels = labels.arrow
    column = _label_column(labels)
    column = pc.if_else(column.is_null(), pa.scalar([], column.type), column)
    offsets = np.asarray(column.offsets)
    flat = column.values.slice(offsets[0], offsets[-1] - offsets[0]).cast(pa.string())
    flat = pc.utf8_trim_whitespace(flat)
    cols = pc.index_in(flat, value_set=pa.array(label_index.mids, pa.string()))
    known = ~np.asarray(cols.is_null())
    rows = np.repeat(np.arange(len(column)), np.diff(offsets))
    unknown: Counter[str] = Counter()
    if not known.all():
        missing = pa.table({"row": rows[~known], "mid": flat.filter(pa.array(~known))})
        missing = missing.filter(pc.not_equal(missing["mid"], "")).group_by(
            ["row", "mid"]).aggregate([])
        unknown.update(missing["mid"].to_pylist())
    indptr = np.zeros(len(column) + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows[known], minlength=len(column)), out=indptr[1:])
    matrix = csr_from_columns(
        np.asarray(cols.filter(pa.array(known)).to_numpy(zero_copy_only=False), np.int64),
        indptr, len(label_index))
    if not matrix.has_sorted_indices:
        matrix.sort_indices()
    return LabelMatrix(matrix, unknown)


__all__ = ["LabelMatrix", "csr_from_columns", "labels_to_matrix"]
