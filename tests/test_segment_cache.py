"""The parsed cache: uncompressed memory-mapped Arrow IPC with the raw CSR arrays, keyed by the
file's SHA-256, which a stat marker spares recomputing for an unchanged file."""

from __future__ import annotations

import os
import time

import numpy as np
import pyarrow as pa
import pytest

from audioset_data import remote
from audioset_data.segments import parse_cache as segment_cache
from audioset_data.segments.labels import LabelIndex
from audioset_data.segments.load import load_segments
from audioset_data.segments.parser import Parser
from audioset_data.segments.table import Segments

HEADER = "# Segments csv\n# num_ytids=2\n# YTID, start_seconds, end_seconds, positive_labels\n"
GOOD = 'aaaaaaaaaaa, 0.000, 10.000, "/m/a,/m/b"\n-bbbbbbbbbb, 30.000, 40.000, "/m/c"\n'
OLD = time.time() - 3600  # an mtime well before the marker is written


@pytest.fixture
def tiny() -> LabelIndex:
    return LabelIndex(["/m/a", "/m/b", "/m/c"], ["Alpha", "Beta", "Gamma"])


@pytest.fixture
def hashes(monkeypatch) -> list[str]:
    """Files whose content gets hashed (the parsed cache's slow step to avoid)."""
    seen: list[str] = []
    real = remote.file_digests

    def counting(path):
        seen.append(str(path))
        return real(path)

    monkeypatch.setattr(remote, "file_digests", counting)
    return seen


@pytest.fixture
def no_parse(monkeypatch):
    def refuse(self, progress=None):
        raise AssertionError("parsed again although the cache is valid")

    return lambda: monkeypatch.setattr(Parser, "run", refuse)


def write_old(path, text: str) -> None:
    path.write_text(text)
    os.utime(path, (OLD, OLD))


def test_cached_load_equals_a_parse_of_the_real_list(tmp_path, shared_data, index, eval_seg,
                                                     no_parse):
    path = tmp_path / "eval_segments.csv"
    path.write_bytes((shared_data / "segments" / "eval_segments.csv").read_bytes())
    load_segments(path, label_index=index)
    no_parse()
    cached = load_segments(path, label_index=index)
    assert cached.arrow.equals(eval_seg.arrow.combine_chunks())
    y, ref = cached.label_matrix, eval_seg.label_matrix
    assert y.dtype == bool and y.shape == ref.shape and y.has_canonical_format
    assert np.array_equal(y.indptr, ref.indptr) and np.array_equal(y.indices, ref.indices)
    assert cached.lines.tolist() == eval_seg.lines.tolist()
    assert cached.header == eval_seg.header
    assert (cached.priors().counts == eval_seg.priors().counts).all()
    y.sort_indices()  # the matrix owns its arrays: in-place scipy calls work
    y.indices[0] = y.indices[0]


def test_cache_file_is_uncompressed_ipc_with_raw_csr_arrays(tmp_path, tiny, data_root):
    path = tmp_path / "list.csv"
    path.write_text(HEADER + GOOD)
    load_segments(path, label_index=tiny)
    (entry,) = (data_root / "segments").glob("list-*.arrow")
    reader = pa.ipc.open_file(pa.memory_map(str(entry)))
    assert reader.num_record_batches == 1
    table = reader.read_all()
    assert table.column_names == ["ytid", "start", "end", "labels", "line", "cols"]
    assert table["cols"].type == pa.list_(pa.int32())
    assert table["cols"].to_pylist() == [[0, 1], [2]]
    raw = entry.read_bytes()
    assert b"aaaaaaaaaaa" in raw and b"-bbbbbbbbbb" in raw  # stored as is, not compressed


def test_unchanged_file_is_not_hashed_again(tmp_path, tiny, hashes, no_parse):
    path = tmp_path / "list.csv"
    write_old(path, HEADER + GOOD)
    load_segments(path, label_index=tiny)
    assert hashes == [str(path)]
    no_parse()
    for _ in range(3):
        assert len(load_segments(path, label_index=tiny)) == 2
    assert hashes == [str(path)]  # the stat marker stood in for the hash


def test_changed_file_is_hashed_and_parsed_again(tmp_path, tiny, hashes, data_root):
    path = tmp_path / "list.csv"
    write_old(path, HEADER + GOOD)
    load_segments(path, label_index=tiny)
    same_size = HEADER + GOOD.replace("/m/c", "/m/b")  # same size, other content
    write_old(path, same_size)
    os.utime(path, (OLD + 10, OLD + 10))
    seg = load_segments(path, label_index=tiny)
    assert seg[1].labels == ("/m/b",) and len(hashes) == 2
    assert len(list((data_root / "segments").glob("list-*.arrow"))) == 2


def test_fresh_file_gets_no_marker(tmp_path, tiny, hashes, data_root):
    path = tmp_path / "list.csv"
    path.write_text(HEADER + GOOD)  # modified just now: may change again within its mtime tick
    load_segments(path, label_index=tiny)
    load_segments(path, label_index=tiny)
    assert len(hashes) == 2
    assert not (data_root / "segments" / "sources").exists()


def test_touched_but_identical_file_reuses_the_entry(tmp_path, tiny, hashes, no_parse):
    path = tmp_path / "list.csv"
    write_old(path, HEADER + GOOD)
    load_segments(path, label_index=tiny)
    os.utime(path, (OLD + 60, OLD + 60))
    no_parse()
    assert len(load_segments(path, label_index=tiny)) == 2
    assert len(hashes) == 2  # hashed again (the stat changed), but not parsed again


def test_entry_for_another_label_index_is_not_used(tmp_path, tiny, data_root):
    path = tmp_path / "list.csv"
    write_old(path, HEADER + GOOD)
    load_segments(path, label_index=tiny)
    other = LabelIndex(["/m/c", "/m/b", "/m/a"], ["Gamma", "Beta", "Alpha"])
    seg = load_segments(path, label_index=other)
    assert seg.label_matrix[[0]].indices.tolist() == [1, 2]
    (entry, *_) = (data_root / "segments").glob("list-*.arrow")
    with pytest.raises(ValueError, match="another source"):
        segment_cache.read_cache(entry, LabelIndex(["/m/x"], ["X"]), str(path),
                                 segment_cache.source_sha256(path), into=Segments)


def test_damaged_matrix_columns_are_parsed_again(tmp_path, tiny, data_root):
    path = tmp_path / "list.csv"
    write_old(path, HEADER + GOOD)
    seg = load_segments(path, label_index=tiny)
    (entry,) = (data_root / "segments").glob("list-*.arrow")
    table = pa.ipc.open_file(pa.memory_map(str(entry))).read_all()
    bad = table.set_column(5, "cols", pa.array([[0, 1], [7]], pa.list_(pa.int32())))
    with pa.OSFile(str(entry), "wb") as sink, pa.ipc.new_file(sink, bad.schema) as writer:
        writer.write_table(bad)
    again = load_segments(path, label_index=tiny)
    assert (again.label_matrix != seg.label_matrix).nnz == 0


def test_read_only_cache_folder_still_loads(tmp_path, tiny, data_root):
    path = tmp_path / "list.csv"
    write_old(path, HEADER + GOOD)
    (data_root / "segments").mkdir()
    (data_root / "segments").chmod(0o500)
    try:
        if os.access(data_root / "segments", os.W_OK):
            pytest.skip("running as a user who writes anywhere")
        assert len(load_segments(path, label_index=tiny)) == 2
    finally:
        (data_root / "segments").chmod(0o700)


def test_cached_empty_list_still_needs_allow_empty(tmp_path, tiny):
    path = tmp_path / "list.csv"
    write_old(path, HEADER)
    assert len(load_segments(path, label_index=tiny, allow_empty=True)) == 0
    with pytest.raises(Exception, match="no segment rows"):
        load_segments(path, label_index=tiny)
    assert len(Segments.from_file(path, label_index=tiny, cache=True, allow_empty=True)) == 0
