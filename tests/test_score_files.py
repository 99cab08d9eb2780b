"""Score files that are not what they claim (issue 20, defect 4): a named error naming the file,
and shapes checked from the array headers before anything is read."""

from __future__ import annotations

import io
import struct
import tracemalloc
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest

from audioset_data.cli import main
from audioset_data.errors import EvaluationError
from audioset_data.evaluation.scores_io import read_frame_scores, read_scores

MIDS = [f"/m/{i:03d}" for i in range(527)]


def _zip(path: Path, members: list[tuple[str, int, bytes, int, int]]) -> None:
    """A zip of ``(name, method, data, crc32, uncompressed size)`` members, with ``data``
    already compressed as ``method`` says (written by hand: zipfile cannot take it so)."""
    with open(path, "wb") as fh:
        central = b""
        for name, method, data, crc, size in members:
            offset = fh.tell()
            raw = name.encode()
            fh.write(struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, method, 0, 0x21, crc,
                                 len(data), size, len(raw), 0) + raw)
            fh.write(data)
            central += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, method, 0,
                                   0x21, crc, len(data), size, len(raw), 0, 0, 0, 0, 0,
                                   offset) + raw
        start = fh.tell()
        fh.write(central)
        fh.write(struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(members), len(members),
                             len(central), start, 0))


def _stored(name: str, array: np.ndarray) -> tuple[str, int, bytes, int, int]:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, array)
    data = buf.getvalue()
    return name, 0, data, zlib.crc32(data), len(data)


def _inflating_scores(shape: tuple[int, int]) -> tuple[str, int, bytes, int, int]:
    """``scores.npy`` of float64 zeros in ``shape``, deflated: about 1/1000 of its size."""
    head = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        head, {"descr": "<f8", "fortran_order": False, "shape": shape})
    header = head.getvalue()
    total = shape[0] * shape[1] * 8
    block = 1 << 24
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    parts = [comp.compress(header) + comp.flush(zlib.Z_FULL_FLUSH)]
    zeros = bytes(block)
    # after a full flush the compressor starts afresh: every block of zeros compresses alike
    full, rest = divmod(total, block)
    zero_block = comp.compress(zeros) + comp.flush(zlib.Z_FULL_FLUSH)
    parts += [zero_block] * full
    parts.append(comp.compress(bytes(rest)) + comp.flush())
    crc = zlib.crc32(header)
    for _ in range(full):
        crc = zlib.crc32(zeros, crc)
    crc = zlib.crc32(bytes(rest), crc)
    return "scores.npy", 8, b"".join(parts), crc, len(header) + total


@pytest.fixture(scope="module")
def inflating_npz(tmp_path_factory) -> Path:
    """The probe's file: 40 clip ids and a (40, 6000000) float64 score matrix, 1.9 MB on disk
    and 1.9 GB inflated."""
    path = tmp_path_factory.mktemp("scores") / "bomb.npz"
    ids = np.array([f"{'a' * 10}{i % 10}_{i * 1000}" for i in range(40)])
    _zip(path, [_stored("ids.npy", ids), _inflating_scores((40, 6_000_000))])
    return path


def test_inflating_npz_is_refused_from_its_header_with_bounded_memory(inflating_npz):
    assert 1_500_000 < inflating_npz.stat().st_size < 2_500_000
    with zipfile.ZipFile(inflating_npz) as z:  # a well-formed archive announcing 1.9 GB
        assert z.getinfo("scores.npy").file_size > 1_900_000_000
    tracemalloc.start()
    try:
        with pytest.raises(EvaluationError) as err:
            read_scores(inflating_npz, label_mids=MIDS)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    text = str(err.value)
    assert str(inflating_npz) in text and "'scores'" in text
    assert "(40, 6000000)" in text and "expected (40, 527)" in text and "nothing was read" in text
    assert peak < 16 << 20  # bounded by what is expected, not by what the file inflates to
    # without the label set, a column count no label set has is refused the same way
    with pytest.raises(EvaluationError, match="6,000,000 label columns"):
        read_scores(inflating_npz)


def test_empty_npz_names_the_file(tmp_path):
    path = tmp_path / "empty.npz"
    path.write_bytes(b"")
    with pytest.raises(EvaluationError, match=r"empty\.npz.* is empty"):
        read_scores(path)


def test_npz_that_is_not_a_zip_names_the_file(tmp_path):
    path = tmp_path / "text.npz"
    path.write_text("clip_id,/m/09x0r\nabc,0.5\n")
    with pytest.raises(EvaluationError) as err:
        read_scores(path)
    assert str(path) in str(err.value) and "not a .npz archive" in str(err.value)
    with pytest.raises(EvaluationError, match="not a .npz archive"):
        read_frame_scores(path)


def test_truncated_npz_names_the_file(tmp_path):
    path = tmp_path / "cut.npz"
    np.savez_compressed(path, ids=np.array(["a" * 11 + "_0"] * 3), scores=np.ones((3, 527)))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(EvaluationError, match=r"cut\.npz"):
        read_scores(path, label_mids=MIDS)


def test_npz_with_pickled_ids_is_refused(tmp_path):
    path = tmp_path / "pickled.npz"
    np.savez(path, ids=np.array(["a", None], dtype=object), scores=np.ones((2, 527)))
    with pytest.raises(EvaluationError, match="Python objects"):
        read_scores(path, label_mids=MIDS)


def test_npy_scores_are_checked_against_the_ids_before_reading(tmp_path):
    path = tmp_path / "s.npy"
    np.save(path, np.ones((3, 527)))
    ids = tmp_path / "ids.txt"
    ids.write_text("a\nb\n")
    with pytest.raises(EvaluationError, match=r"shape \(3, 527\), expected \(2, 527\)"):
        read_scores(path, ids_file=ids, label_mids=MIDS)


def test_good_npz_still_reads(tmp_path):
    path = tmp_path / "ok.npz"
    ids = np.array([f"{'b' * 11}_{i}" for i in range(5)])
    scores = np.random.default_rng(0).random((5, 527)).astype(np.float32)
    np.savez_compressed(path, ids=ids, scores=scores)
    got_ids, got = read_scores(path, label_mids=MIDS)
    assert got_ids == list(ids) and np.array_equal(got, scores)


def test_segment_csv_passed_as_scores_says_a_clip_id_column_is_expected(shared_data, capsys):
    segments = shared_data / "segments" / "eval_segments.csv"
    with pytest.raises(EvaluationError) as err:
        read_scores(segments)
    text = str(err.value)
    assert str(segments) in text and "'clip_id' column" in text
    assert "segment list" in text and "okenizing" not in text
    assert main(["evaluate", "--scores", str(segments)]) == 2
    out = capsys.readouterr().err
    assert "'clip_id' column" in out and "segment list" in out
