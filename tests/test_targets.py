"""labels_to_matrix: the clip × label matrix of any segment table, without a per-row loop."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from audioset_data.errors import SegmentsError
from audioset_data.segments.labels import LabelIndex
from audioset_data.segments.targets import labels_to_matrix


@pytest.fixture
def tiny() -> LabelIndex:
    return LabelIndex(["/m/a", "/m/b", "/m/c"], ["Alpha", "Beta", "Gamma"])


def dense(y) -> list[list[int]]:
    return y.toarray().astype(int).tolist()


def test_comma_joined_strings_as_the_download_table_holds_them(tiny):
    frame = pd.DataFrame({"ytid": ["a", "b", "c", "d", "e"],
                          "labels": ["/m/b,/m/a", "/m/c", "/m/x,/m/a,/m/x", "", None]})
    y, unknown = labels_to_matrix(frame, tiny)
    assert y.dtype == bool and y.shape == (5, 3) and y.has_canonical_format
    assert dense(y) == [[1, 1, 0], [0, 0, 1], [1, 0, 0], [0, 0, 0], [0, 0, 0]]
    assert dict(unknown) == {"/m/x": 1}  # counted once per row that carries it


@pytest.mark.parametrize("column", [
    ["/m/a, /m/c", "/m/b,/m/b"],
    [["/m/a", " /m/c"], ["/m/b", "/m/b"]],
    pa.array([["/m/a", "/m/c"], ["/m/b"]]),
    pa.chunked_array([pa.array(["/m/a,/m/c"]), pa.array(["/m/b"])]),
    pd.Series(["/m/a,/m/c", "/m/b"]),
    pd.Series(["/m/a,/m/c", "/m/b"], dtype=pd.ArrowDtype(pa.string())),
    np.array(["/m/a,/m/c", "/m/b"], dtype=object),
    pa.table({"labels": [["/m/a", "/m/c"], ["/m/b"]]}),
])
def test_every_column_form(tiny, column):
    y, unknown = labels_to_matrix(column, tiny)
    assert dense(y) == [[1, 0, 1], [0, 1, 0]] and not unknown


def test_real_list_through_joined_strings_equals_the_parsed_matrix(eval_seg, index):
    joined = pc.binary_join(eval_seg.arrow["labels"], ",").to_numpy(zero_copy_only=False)
    y, unknown = labels_to_matrix(pd.DataFrame({"labels": joined}), index)
    ref = eval_seg.label_matrix
    assert not unknown and y.shape == ref.shape == (20371, 527)
    assert np.array_equal(y.indptr, ref.indptr) and np.array_equal(y.indices, ref.indices)
    same = labels_to_matrix(eval_seg, index)
    assert same.matrix is ref  # a Segments brings its matrix along


def test_segments_with_kept_unknown_mids(tiny):
    from audioset_data.segments.table import Segments

    seg = Segments.from_csv_text('aaaaaaaaaaa, 0.000, 10.000, "/m/a,/m/new"\n',
                                 label_index=tiny, unknown_labels="keep")
    y, unknown = labels_to_matrix(seg, tiny)
    assert dense(y) == [[1, 0, 0]] and dict(unknown) == {"/m/new": 1}
    other = LabelIndex(["/m/new"], ["New"])
    assert dense(labels_to_matrix(seg, other).matrix) == [[1]]


def test_bad_inputs(tiny):
    with pytest.raises(SegmentsError, match="no 'labels' column"):
        labels_to_matrix(pd.DataFrame({"mids": ["/m/a"]}), tiny)
    with pytest.raises(SegmentsError, match="neither lists of mids"):
        labels_to_matrix(pa.array([1, 2]), tiny)
    assert labels_to_matrix([], tiny).matrix.shape == (0, 3)
