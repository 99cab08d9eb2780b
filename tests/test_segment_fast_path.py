"""The segment parser's fast path against its regex path: the same rows, line numbers, errors
and reports on the real files, on truncated and dirty text, and across block boundaries."""

from __future__ import annotations

import numpy as np
import pytest

from audioset_data.errors import SegmentsError
from audioset_data.segments import parser as segment_parser
from audioset_data.segments.labels import LabelIndex
from audioset_data.segments.parser import Parser
from audioset_data.segments.table import Segments

from .test_segments import BAD_ROWS, GOOD, HEADER, reference_rows


@pytest.fixture
def tiny() -> LabelIndex:
    return LabelIndex(["/m/a", "/m/b", "/m/c"], ["Alpha", "Beta", "Gamma"])


def test_small_blocks_keep_line_numbers(shared_data, index, eval_seg, monkeypatch):
    monkeypatch.setattr(segment_parser, "BLOCK_BYTES", 4096)
    seg = Segments.from_file(shared_data / "segments" / "eval_segments.csv", label_index=index)
    assert seg.lines.tolist() == eval_seg.lines.tolist()
    assert (seg.label_matrix != eval_seg.label_matrix).nnz == 0


# ---------------------------------------------------------------------- fast path vs regex
def _outcome(parse):
    """What a parse gives: the Segments, or the error message."""
    try:
        return parse()
    except SegmentsError as exc:
        return str(exc)


def _both(monkeypatch, parse):
    """Parse once with the vectorised fast path allowed and once with the regex parser only."""
    fast = _outcome(parse)
    monkeypatch.setattr(Parser, "fast", False)
    slow = _outcome(parse)
    monkeypatch.setattr(Parser, "fast", True)
    return fast, slow


def assert_same_segments(a, b):
    if isinstance(a, str) or isinstance(b, str):
        assert a == b
        return
    assert a.arrow.combine_chunks().equals(b.arrow.combine_chunks())
    ya, yb = a.label_matrix, b.label_matrix
    assert ya.shape == yb.shape
    assert np.array_equal(ya.indptr, yb.indptr) and np.array_equal(ya.indices, yb.indices)
    assert a.lines.tolist() == b.lines.tolist()
    assert a.header == b.header
    assert a.rejected.equals(b.rejected) and a.unknown.equals(b.unknown)


def _fast_blocks(caplog) -> tuple[int, int]:
    for rec in caplog.records:
        if "took the fast path" in rec.getMessage():
            fast, total = rec.args[1], rec.args[2]
            return fast, total
    raise AssertionError("no parser summary logged")


def _all_fast(caplog) -> bool:
    fast, total = _fast_blocks(caplog)
    return fast == total >= 1


@pytest.mark.parametrize("name", ["eval_segments.csv", "balanced_train_segments.csv"])
def test_fast_path_taken_and_same_as_regex_on_real_files(shared_data, index, name, monkeypatch,
                                                         caplog):
    path = shared_data / "segments" / name
    with caplog.at_level("DEBUG", logger="audioset_data.segments.parser"):
        fast, slow = _both(monkeypatch, lambda: Segments.from_file(path, label_index=index))
    assert _all_fast(caplog)
    assert len(fast) == len(reference_rows(path))
    assert fast.header[0].startswith("# Segments csv created")
    assert_same_segments(fast, slow)
    caplog.clear()
    with caplog.at_level("DEBUG", logger="audioset_data.segments.parser"):
        dropping = Segments.from_file(path, label_index=index, unknown_labels="drop")
    assert _all_fast(caplog)  # no unknown mid: the policy changes nothing
    assert_same_segments(dropping, fast)


def test_fast_and_regex_agree_on_truncated_head(shared_data, index, monkeypatch):
    path = shared_data / "segments" / "unbalanced_train_segments.TRUNCATED_HEAD.csv"
    for bad_rows in ("error", "skip"):
        fast, slow = _both(monkeypatch, lambda b=bad_rows: Segments.from_file(
            path, label_index=index, on_bad_rows=b))
        assert_same_segments(fast, slow)


def test_small_blocks_mix_fast_and_regex_blocks(shared_data, index, eval_seg, monkeypatch,
                                                caplog):
    text = (shared_data / "segments" / "eval_segments.csv").read_text().splitlines(True)
    text[5000] = text[5000].replace(", ", " , ", 1)  # looser spacing: regex path, still valid
    text[9000] = text[9000].replace('"', "", 2)  # unquoted labels: a bad row
    text.insert(12000, "\n")  # a blank line: skipped by the fast path too
    monkeypatch.setattr(segment_parser, "BLOCK_BYTES", 64 << 10)
    with caplog.at_level("DEBUG", logger="audioset_data.segments.parser"):
        fast, slow = _both(monkeypatch, lambda: Segments.from_csv_text(
            "".join(text), label_index=index, on_bad_rows="skip"))
    n_fast, n_blocks = _fast_blocks(caplog)
    assert n_fast == n_blocks - 2  # the batches with the loose row and the bad row
    assert_same_segments(fast, slow)
    assert fast.rejected["line"].tolist() == [9001]
    assert len(fast) == len(eval_seg) - 1
    assert fast.lines[-1] == eval_seg.lines[-1] + 1


DIRTY = [
    HEADER + GOOD,
    GOOD,
    HEADER,
    "",
    HEADER + GOOD.rstrip("\n"),
    HEADER + GOOD.replace("\n", "\r\n"),
    HEADER + GOOD + "\n" + GOOD.replace("aaaa", "dddd").replace("-bbb", "eeee"),
    HEADER + GOOD + "# a comment in the middle\n" + GOOD.replace("aaaa", "ffff"),
    HEADER + GOOD.replace("0.000", "0.5"),
    HEADER + GOOD.replace("10.000", "1e1"),
    HEADER + GOOD.replace("30.000", "1234567890.000"),
    HEADER + GOOD.replace("30.000", "123456789.125"),
    HEADER + GOOD.replace("10.000", "10.0001"),
    HEADER + GOOD.replace("10.000", "10..00"),
    HEADER + GOOD.replace("/m/a,/m/b", "/m/b,/m/a,/m/b"),
    HEADER + GOOD.replace("/m/a,/m/b", "/m/a, /m/b"),
    HEADER + GOOD.replace("/m/a,/m/b", '/m/a,"/m/b'),
    HEADER + GOOD.replace("/m/a,/m/b", "/m/a,/m/zzz"),
    HEADER + GOOD + GOOD,
    HEADER + GOOD.replace("aaaaaaaaaaa", "aaaaaaaaaa\u00e9"),
    HEADER.replace("num_ytids", "num_\u00e9") + GOOD,
    *(HEADER + GOOD + bad for bad, _ in BAD_ROWS),
    (HEADER + GOOD).encode() + b'ccccccccccc, 0.000, 10.000, "/m/a,/m/\xff"\n',
]


@pytest.mark.parametrize("text", DIRTY)
@pytest.mark.parametrize(("unknown", "bad_rows", "dups"), [
    ("error", "error", "report"), ("drop", "skip", "error"), ("keep", "skip", "report"),
])
def test_fast_and_regex_agree_on_dirty_text(tiny, monkeypatch, text, unknown, bad_rows, dups):
    fast, slow = _both(monkeypatch, lambda: Segments.from_csv_text(
        text, label_index=tiny, unknown_labels=unknown, on_bad_rows=bad_rows, duplicates=dups))
    assert_same_segments(fast, slow)


def test_fast_path_times_round_like_arrow(tiny, monkeypatch, caplog):
    rng = np.random.default_rng(0)
    ms = np.sort(rng.integers(0, 10**12, 3000))
    rows = [f"{'abcdefghij'[i % 10] * 10}{i % 10}, {m // 1000}.{m % 1000:03d}, "
            f"{m // 1000 + 10}.{m % 1000:03d}, \"/m/a\"\n" for i, m in enumerate(ms)]
    text = HEADER + "".join(rows)
    with caplog.at_level("DEBUG", logger="audioset_data.segments.parser"):
        fast, slow = _both(monkeypatch, lambda: Segments.from_csv_text(text, label_index=tiny))
    assert _all_fast(caplog)
    assert_same_segments(fast, slow)
    assert np.array_equal(fast.start, [float(r.split(", ")[1]) for r in rows])


# ---------------------------------------------------------------------- typos and look-ups
