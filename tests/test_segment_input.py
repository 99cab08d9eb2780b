"""Input the parser must survive: empty lists, CR-only and CRLF line endings, a byte order
mark, non-UTF-8 rows, a separator byte, and lines long enough to be no segment list at all."""

from __future__ import annotations

import time
import tracemalloc

import numpy as np
import pytest

from audioset_data.errors import SegmentsError
from audioset_data.segments.labels import LabelIndex
from audioset_data.segments.load import load_segments
from audioset_data.segments.parser import MAX_LINE_BYTES
from audioset_data.segments.table import Segments

HEADER = "# Segments csv\n# num_ytids=2\n# YTID, start_seconds, end_seconds, positive_labels\n"
GOOD = 'aaaaaaaaaaa, 0.000, 10.000, "/m/a,/m/b"\n-bbbbbbbbbb, 30.000, 40.000, "/m/c"\n'


@pytest.fixture
def tiny() -> LabelIndex:
    return LabelIndex(["/m/a", "/m/b", "/m/c"], ["Alpha", "Beta", "Gamma"])


def same(a: Segments, b: Segments) -> None:
    assert a.arrow.combine_chunks().equals(b.arrow.combine_chunks())
    assert (a.label_matrix != b.label_matrix).nnz == 0
    assert a.lines.tolist() == b.lines.tolist() and a.header == b.header


# ---------------------------------------------------------------------- empty lists
@pytest.mark.parametrize(("data", "why"), [
    (b"", "no segment rows and no header"),
    (b"\r\r\r", "no segment rows and no header"),
    (b"\n\n", "no segment rows and no header"),
    (b"\xef\xbb\xbf", "no segment rows and no header"),
    (HEADER.encode(), "a header of 3 comment lines but no segment rows"),
    (HEADER.replace("\n", "\r").encode(), "a header of 3 comment lines but no segment rows"),
])
def test_empty_list_is_a_clear_error_unless_allowed(tmp_path, tiny, data, why):
    path = tmp_path / "empty.csv"
    path.write_bytes(data)
    for load in (lambda **kw: Segments.from_file(path, label_index=tiny, **kw),
                 lambda **kw: Segments.from_csv_text(data, label_index=tiny, **kw),
                 lambda **kw: load_segments(path, label_index=tiny, **kw)):
        with pytest.raises(SegmentsError, match=why) as err:
            load()
        assert "allow_empty=True" in str(err.value)
        empty = load(allow_empty=True)
        assert len(empty) == 0 and empty.label_matrix.shape == (0, 3)


def test_all_rows_rejected_is_an_error_naming_the_first(tiny):
    text = HEADER + "x, 1\ny, 2\n"
    with pytest.raises(SegmentsError, match=r"all 2 rows were rejected \(first at line 4: "):
        Segments.from_csv_text(text, label_index=tiny, on_bad_rows="skip")
    seg = Segments.from_csv_text(text, label_index=tiny, on_bad_rows="skip", allow_empty=True)
    assert seg.rejected["line"].tolist() == [4, 5]


def test_cli_stats_of_an_empty_file_is_one_line(tmp_path, mirror, capsys):
    from audioset_data.cli import main

    path = tmp_path / "empty.csv"
    path.write_bytes(b"")
    assert main(["segments", "stats", "--file", str(path)]) == 2
    err = capsys.readouterr().err
    assert "no segment rows" in err and err.count("\n") == 1


# ---------------------------------------------------------------------- line endings, BOM
@pytest.mark.parametrize("ending", ["\r", "\r\n"])
def test_cr_only_and_crlf_files_read_like_lf(tmp_path, shared_data, index, eval_seg, ending):
    text = (shared_data / "segments" / "eval_segments.csv").read_bytes()
    path = tmp_path / "eval.csv"
    path.write_bytes(text.replace(b"\n", ending.encode()))
    seg = Segments.from_file(path, label_index=index)
    assert len(seg) == 20371
    same(seg, eval_seg)


def test_cr_only_small_list_with_header(tiny):
    seg = Segments.from_csv_text((HEADER + GOOD).replace("\n", "\r"), label_index=tiny)
    assert len(seg) == 2 and seg.lines.tolist() == [4, 5] and len(seg.header) == 3


def test_byte_order_mark_is_accepted(tmp_path, shared_data, index, eval_seg, tiny):
    text = (shared_data / "segments" / "eval_segments.csv").read_bytes()
    path = tmp_path / "eval.csv"
    path.write_bytes(b"\xef\xbb\xbf" + text)
    same(Segments.from_file(path, label_index=index), eval_seg)
    seg = Segments.from_csv_text("\ufeff" + HEADER + GOOD, label_index=tiny)
    assert seg.header[0] == "# Segments csv" and len(seg) == 2
    without_header = Segments.from_csv_text("\ufeff" + GOOD, label_index=tiny)
    assert without_header[0].ytid == "aaaaaaaaaaa" and without_header.lines.tolist() == [1, 2]


# ---------------------------------------------------------------------- bytes that are not rows
def test_non_utf8_row_is_a_bad_row(tiny):
    data = (HEADER + GOOD).encode() + b'\xff\xfeaaaaaaaaa, 0, 10, "/m/a"\n' + \
        b'ccccccccccc, 0.000, 10.000, "/m/c"\n'
    with pytest.raises(SegmentsError, match="<text>:6: not UTF-8"):
        Segments.from_csv_text(data, label_index=tiny)
    seg = Segments.from_csv_text(data, label_index=tiny, on_bad_rows="skip")
    assert seg.lines.tolist() == [4, 5, 7]
    assert seg.rejected["line"].tolist() == [6] and "not UTF-8" in seg.rejected["reason"][0]


def test_control_characters_are_ordinary_bad_rows(tmp_path, tiny):
    path = tmp_path / "x.csv"
    path.write_bytes((HEADER + GOOD).encode() + b'ccccccccccc, 0.000, 10.000, "/m/\x1fc"\n'
                     + b'ddddddddddd,\x00 0.000, 10.000, "/m/c"\n')
    with pytest.raises(SegmentsError, match=r"x\.csv:6: unknown label mid '/m/\\x1fc'"):
        Segments.from_file(path, label_index=tiny)
    seg = Segments.from_file(path, label_index=tiny, on_bad_rows="skip")
    assert len(seg) == 2 and seg.rejected["line"].tolist() == [6, 7]


def test_line_over_the_limit_is_refused_with_an_excerpt(tiny):
    long_row = "ccccccccccc, 0.000, 10.000, \"" + "/m/a," * (MAX_LINE_BYTES // 5) + '/m/a"\n'
    with pytest.raises(SegmentsError, match=r"<text>:6: line longer than 16,384 bytes") as err:
        Segments.from_csv_text(HEADER + GOOD + long_row, label_index=tiny, on_bad_rows="skip")
    assert len(str(err.value)) < 300
    assert "it starts 'ccccccccccc, 0.000, 10.000, \"/m/a,/m/a,/...'" in str(err.value)


def test_64_mib_line_fails_fast_with_a_short_message(tmp_path, tiny):
    path = tmp_path / "huge.csv"
    with path.open("wb") as fh:
        fh.write((HEADER + GOOD).encode())
        fh.write(b"x" * (64 << 20))
        fh.write(b"\n" + GOOD.encode())
    tracemalloc.start()
    t0 = time.perf_counter()
    with pytest.raises(SegmentsError) as err:
        Segments.from_file(path, label_index=tiny)
    seconds = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    msg = str(err.value)
    assert f"{path}:6: line longer than 16,384 bytes" in msg
    assert "it starts 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx...'" in msg
    assert len(msg) < 300 + len(str(path))
    assert seconds < 2.0  # it stops in the line's first block: no 64 MiB read or copy
    assert peak < 16 << 20  # Python-side allocations stay small


def test_64_mib_text_line_without_newline(tiny):
    data = (HEADER + GOOD).encode() + b"y" * (64 << 20)
    with pytest.raises(SegmentsError, match=r"<text>:6: line longer than") as err:
        Segments.from_csv_text(data, label_index=tiny)
    assert len(str(err.value)) < 300


def test_longest_real_row_fits(tiny, index):
    every = ",".join(index.mids)  # a row carrying all 527 labels
    seg = Segments.from_csv_text(f'aaaaaaaaaaa, 0.000, 10.000, "{every}"\n', label_index=index)
    assert seg.n_labels == 527 and len(every) < MAX_LINE_BYTES // 2
    assert np.array_equal(seg.label_matrix.indices, np.arange(527))


def test_download_of_an_empty_list_says_so(tmp_path, mirror):
    from audioset_data.downloader.job import download

    path = tmp_path / "empty.csv"
    path.write_text(HEADER)
    with pytest.raises(SegmentsError, match="a header of 3 comment lines but no segment rows"):
        download(segments=path, split="empty", root=tmp_path / "root")
