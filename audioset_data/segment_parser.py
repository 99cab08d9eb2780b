"""The segment-list parser: the bytes of an official CSV → columns, a label matrix and a report.

``pyarrow.csv`` splits the input into physical lines (``\\n``, ``\\r\\n`` or ``\\r`` endings; a
UTF-8 byte order mark is skipped) on its own threads, in batches of about a megabyte, and keeps
their line numbers exact. Each batch is then parsed on a thread pool, in one of two ways:

* the **fast path**, for batches written exactly as the official files are (``YTID, start,
  end, "mid,mid"``, ``", "`` between fields, times with three decimals, only known mids): the
  fields are found with a few vectorised byte comparisons, times are computed from their digits
  and the label lists are split and mapped to matrix columns with Arrow kernels;
* the **regular path** for any other batch: one regular expression per line in Arrow, which
  accepts looser spacing and explains every bad row.

Both give the same result where both apply. Every row is either kept or reported: a bad row
raises :class:`~audioset_data.errors.SegmentsError` naming file and line, or with
``on_bad_rows="skip"`` is left out and listed in ``Segments.rejected``. Two faults stop the
parse whatever the policy, because they mean the input is not a segment list at all: a line
longer than :data:`MAX_LINE_BYTES`, and the control character 0x1F (the line splitter's
field separator); the error names the line and quotes its start.
"""

from __future__ import annotations

import csv
import functools
import io
import logging
import os
import re
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import scipy.sparse as sp
from tqdm.auto import tqdm

from .errors import SegmentsError
from .labels import LabelIndex
from .targets import csr_from_columns

if TYPE_CHECKING:
    from .segment_list import Segments

logger = logging.getLogger(__name__)

#: Longest line accepted, in bytes. A real row is about 100 bytes; one carrying all 527 mids
#: would be about 5,600. A longer line means the input is not a segment list (or lost its line
#: breaks), and the parse stops at once with a short excerpt instead of buffering it.
MAX_LINE_BYTES = 16 << 10
#: Bytes per batch of lines (``pyarrow.csv`` block size; a line may not exceed it).
BLOCK_BYTES = 1 << 20
_FIELD_SEPARATOR = "\x1f"  # never in a valid row: each line comes back as one field
_NUMBER = r"[0-9]+(?:\.[0-9]*)?"
_SEP = r"[ \t]*,[ \t]*"
_ROW_RX = (
    rf"^(?P<ytid>[A-Za-z0-9_-]{{11}}){_SEP}(?P<start>{_NUMBER}){_SEP}(?P<end>{_NUMBER}){_SEP}"
    r'"(?P<labels>[^"]*)"[ \t]*$'
)
_YTID = re.compile(r"[A-Za-z0-9_-]{11}")
_ID_BYTE = np.zeros(256, dtype=bool)  # the bytes a YouTube id may hold
_ID_BYTE[np.frombuffer(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-",
                       np.uint8)] = True
_MAX_INT_DIGITS = 9  # longer whole seconds take the regular path
_PAD = 32  # zero bytes after a batch, so the fast path may look past the last line
_TRUNCATED = " (last line has no newline: the file looks truncated)"


@dataclass
class ParseOptions:
    """Validation policies (see :meth:`Segments.from_csv_text`)."""

    unknown_labels: str = "error"
    on_bad_rows: str = "error"
    duplicates: str = "report"

    def check(self) -> None:
        for name, value, allowed in (
            ("unknown_labels", self.unknown_labels, ("error", "drop", "keep")),
            ("on_bad_rows", self.on_bad_rows, ("error", "skip")),
            ("duplicates", self.duplicates, ("report", "error")),
        ):
            if value not in allowed:
                raise SegmentsError(f"{name}={value!r} is not one of {', '.join(allowed)}")


@dataclass
class _Chunk:
    """The parsed rows of one batch."""

    ytid: pa.Array
    start: np.ndarray
    end: np.ndarray
    labels: pa.ListArray
    cols: np.ndarray  # label columns, concatenated over rows
    counts: np.ndarray  # matrix entries per row
    lines: np.ndarray | tuple[int, int]  # line numbers, or (first, count) of consecutive ones
    rejected: list[tuple[int, str, str]] = field(default_factory=list)
    unknown: list[tuple[int, str, str]] = field(default_factory=list)
    fast: bool = False

    @classmethod
    def empty(cls) -> _Chunk:
        return cls(pa.array([], pa.string()), np.zeros(0), np.zeros(0),
                   pa.array([], pa.list_(pa.string())), np.zeros(0, np.int32),
                   np.zeros(0, np.int64), np.zeros(0, np.int64))

    def canonicalise(self, n_labels: int) -> None:
        """Sort each row's columns and merge repeated mids, as the matrix stores them."""
        indptr = np.zeros(len(self.counts) + 1, dtype=np.int64)
        np.cumsum(self.counts, out=indptr[1:])
        rows = sp.csr_array((np.ones(len(self.cols), dtype=bool), self.cols, indptr),
                            shape=(len(self.counts), n_labels))
        if not rows.has_canonical_format:
            rows = rows.tocsc().tocsr()  # sorts each row's columns in linear time
            if not rows.has_canonical_format:
                rows.sum_duplicates()
            self.cols = rows.indices.astype(np.int32, copy=False)
            self.counts = np.diff(rows.indptr)


def _times_at(buf: np.ndarray, at: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Times written as ``digits.ddd`` starting at ``at`` (ascending): their values and the
    positions just after them, or ``None`` if one is written otherwise.

    The value is the integer ``digits * 1000 + ddd`` divided by 1000, which IEEE division rounds
    exactly as a correctly rounded decimal parser (Arrow's) rounds the text.
    """
    if not len(at) or at[-1] + _MAX_INT_DIGITS + 4 >= len(buf):  # ``at`` ascends
        return None
    idx = at.copy()
    d = buf[idx] - np.uint8(48)
    going = d < 10
    if not going.all():
        return None
    milli = d.astype(np.int64)
    length = np.ones(len(at), dtype=np.int64)
    step = np.empty_like(milli)
    for _ in range(_MAX_INT_DIGITS):
        idx += 1
        d = buf[idx] - np.uint8(48)
        going &= d < 10
        if not going.any():
            break
        np.multiply(milli, 10, out=step)
        step += d
        np.copyto(milli, step, where=going)
        length += going
    else:
        return None
    dot = at + length
    if not (buf[dot] == 46).all():
        return None
    for _ in range(3):
        dot += 1
        d = buf[dot] - np.uint8(48)
        if not (d < 10).all():
            return None
        milli *= 10
        milli += d
    dot += 1
    return milli / 1000.0, dot


def diagnose(text: str, truncated: bool = False) -> str:
    """Say in words why one line does not match the official row format."""
    note = _TRUNCATED if truncated else ""
    if text.count('"') % 2:
        return "unterminated quote in the label list" + note
    try:
        fields = next(csv.reader([text], skipinitialspace=True))
    except (csv.Error, StopIteration):
        return "not a CSV row" + note
    fields = [f.strip() for f in fields]
    if len(fields) < 4:
        return (f"expected 4 fields (YTID, start_seconds, end_seconds, positive_labels), "
                f"found {len(fields)}{note}")
    if len(fields) > 4:
        return (f"expected 4 fields (YTID, start_seconds, end_seconds, positive_labels), "
                f"found {len(fields)} (is the label list quoted?)")
    ytid, start, end, labels = fields
    if not _YTID.fullmatch(ytid):
        return f"YouTube id {ytid!r} is not 11 characters of [A-Za-z0-9_-]"
    for what, value in (("start", start), ("end", end)):
        if not re.fullmatch(_NUMBER, value):
            return f"{what} time {value!r} is not a non-negative number"
    if not labels:
        return "empty label list" + note
    if not re.search(r',[ \t]*"', text):
        return "the label list must be quoted (\"mid,mid\")"
    return "does not match the row format YTID, start, end, \"mid,mid\"" + note


def excerpt(text: str | bytes, limit: int = 40) -> str:
    """The start of a line, quoted, for error messages."""
    if isinstance(text, bytes):
        text = text[: limit * 4].decode("utf-8", "replace")
    return repr(text[:limit] + ("..." if len(text) > limit else ""))


def _drop(lines: pa.Array, line_no: np.ndarray, skip: np.ndarray
          ) -> tuple[pa.Array, np.ndarray]:
    """The lines (and their numbers) not marked in ``skip``; a slice when only leading lines
    (a header) are skipped."""
    if not skip.any():
        return lines, line_no
    n_lead = int(np.argmin(skip)) if not skip.all() else len(skip)
    if skip[n_lead:].any():
        return lines.filter(pa.array(~skip)), line_no[~skip]
    return lines.slice(n_lead), line_no[n_lead:]


def _string_view(lines: pa.Array) -> tuple[np.ndarray, pa.Buffer]:
    """Offsets (``len + 1``, into the data buffer) and data buffer of a binary/string array."""
    offsets = np.frombuffer(lines.buffers()[1], np.int32, count=len(lines) + 1,
                            offset=4 * lines.offset)
    return offsets, lines.buffers()[2]


class Parser:
    """Parses one segment list; :meth:`run` gives the :class:`Segments`."""

    #: Try :meth:`fast_rows` before the regular expression (switched off in tests to compare).
    fast = True

    def __init__(self, source: str, label_index: LabelIndex, options: ParseOptions, *,
                 open_binary: Callable[[], BinaryIO], arrow_input: str | pa.Buffer,
                 size: int, ends_with_newline: bool):
        self.source = source
        self.label_index = label_index
        self.options = options
        self.open_binary = open_binary
        self.arrow_input = arrow_input
        self.size = size
        self.ends_with_newline = ends_with_newline
        self.value_set = pa.array(label_index.mids, pa.string())
        self.fast_batches = 0  # batches that :meth:`fast_rows` parsed, set by :meth:`run`

    # ------------------------------------------------------------------ lines
    def batches(self) -> Iterator[tuple[int, pa.Array]]:
        """``(number of the first line, lines)`` per batch; lines hold no line endings."""
        if not self.size:
            return
        # a stream, not a path: pyarrow would decompress a path ending in .gz behind our back
        source = (pa.OSFile(self.arrow_input) if isinstance(self.arrow_input, str)
                  else pa.BufferReader(self.arrow_input))
        first = 1
        try:
            reader = pcsv.open_csv(
                source,
                read_options=pcsv.ReadOptions(column_names=["line"], block_size=BLOCK_BYTES),
                parse_options=pcsv.ParseOptions(delimiter=_FIELD_SEPARATOR, quote_char=False,
                                                escape_char=False, ignore_empty_lines=False),
                convert_options=pcsv.ConvertOptions(column_types={"line": pa.binary()},
                                                    strings_can_be_null=False))
            for batch in reader:
                lines = batch.column(0)
                yield first, lines
                first += len(lines)
        except pa.ArrowInvalid as exc:
            if "Empty CSV" in str(exc):
                return
            raise self._unreadable(exc) from None
        finally:
            source.close()

    def _unreadable(self, exc: Exception) -> SegmentsError:
        """The error for input that ``pyarrow.csv`` refused: find the line that caused it."""
        with self.open_binary() as raw:
            text = io.TextIOWrapper(raw, encoding="latin-1", newline=None)  # 1 char per byte
            line_no = 0
            while piece := text.readline(MAX_LINE_BYTES + 2):
                line_no += 1
                body = piece[:-1] if piece.endswith("\n") else piece
                head = body[:200].encode("latin-1")
                if len(body) > MAX_LINE_BYTES:
                    return self.long_line(line_no, head)
                if _FIELD_SEPARATOR in body:
                    return SegmentsError(f"{self.source}:{line_no}: control character 0x1F in "
                                         f"{excerpt(head)}: not a segment list")
        return SegmentsError(f"{self.source}: cannot be read as lines of text ({exc})")

    def long_line(self, line_no: int, head: bytes) -> SegmentsError:
        return SegmentsError(
            f"{self.source}:{line_no}: line longer than {MAX_LINE_BYTES:,} bytes (a segment row "
            f"has about 100): not a segment list, or its line breaks are lost; it starts "
            f"{excerpt(head)}")

    # ------------------------------------------------------------------ one batch
    def batch(self, first_line: int, raw: pa.Array) -> tuple[_Chunk, list[str]]:
        """Parse one batch of lines (runs on a worker thread)."""
        offsets, _ = _string_view(raw)
        length = np.diff(offsets)
        if len(length) and length.max() > MAX_LINE_BYTES:
            i = int(np.argmax(length > MAX_LINE_BYTES))
            raise self.long_line(first_line + i, raw[i].as_py()[:200])
        line_no = np.arange(first_line, first_line + len(raw), dtype=np.int64)
        out = self.fast_rows(raw, line_no) if self.fast else None
        if out is not None:
            chunk, comments = out
        else:
            rejected: list[tuple[int, str, str]] = []
            try:
                lines = raw.cast(pa.string())
            except pa.ArrowInvalid:
                lines, line_no, rejected = self._utf8_rows(raw, line_no)
            skip, is_comment = self._skipped(lines)
            comments = [lines[int(i)].as_py() for i in np.flatnonzero(is_comment)]
            chunk = self.regex_rows(*_drop(lines, line_no, skip))
            chunk.rejected = sorted(rejected + chunk.rejected)
        chunk.canonicalise(len(self.label_index))
        return chunk, comments

    @staticmethod
    def _skipped(lines: pa.Array) -> tuple[np.ndarray, np.ndarray]:
        """Masks of the lines to skip (blank or comment) and of the comment lines."""
        offsets, data = _string_view(lines)
        length = np.diff(offsets)
        filled = length > 0
        is_comment = np.zeros(len(lines), dtype=bool)
        if filled.any():
            is_comment[filled] = np.frombuffer(data, np.uint8)[offsets[:-1][filled]] == 35
        return is_comment | ~filled, is_comment

    def _utf8_rows(self, raw: pa.Array, line_no: np.ndarray
                   ) -> tuple[pa.Array, np.ndarray, list[tuple[int, str, str]]]:
        """Leave out the lines that are not UTF-8, as bad rows."""
        keep = np.ones(len(raw), dtype=bool)
        rejected = []
        for i, value in enumerate(raw.to_pylist()):
            try:
                value.decode("utf-8")
            except UnicodeDecodeError as exc:
                keep[i] = False
                rejected.append((int(line_no[i]), value.decode("utf-8", "replace"),
                                 f"not UTF-8 text ({exc})"))
        return raw.filter(pa.array(keep)).cast(pa.string()), line_no[keep], rejected

    def fast_rows(self, lines: pa.Array, line_no: np.ndarray
                  ) -> tuple[_Chunk, list[str]] | None:
        """Parse lines written exactly in the official layout, or return ``None``.

        Blank and ``#`` comment lines are skipped (the comments are returned). Every other
        line must read ``YTID, start, end, "mid,mid"``: an 11-character id, fields
        separated by ``", "``, times with three decimals (as the official files and
        :meth:`Segments.to_csv` write them), ``end > start``, and only known mids in the quoted
        list. Lines that break any of these rules make the batch go through
        :meth:`regex_rows`, which accepts looser spacing, explains every bad row and applies the
        ``unknown_labels`` policy; both give the same result on the lines this path accepts.
        The rows it accepts are ASCII by construction, so only comments are checked for UTF-8.
        """
        offsets, data = _string_view(lines)
        lo, hi = int(offsets[0]), int(offsets[-1])
        if hi == lo:
            return None
        buf = np.zeros(hi - lo + _PAD, dtype=np.uint8)  # zeros after the end: safe look-ahead
        buf[: hi - lo] = np.frombuffer(data, np.uint8, count=hi - lo, offset=lo)
        starts = offsets[:-1].astype(np.int64) - lo
        ends = offsets[1:].astype(np.int64) - lo
        is_comment = buf[starts] == 35  # "#"
        skip = is_comment | (ends == starts)
        try:
            comments = [bytes(buf[a:b]).decode("utf-8")
                        for a, b in zip(starts[is_comment], ends[is_comment], strict=True)]
        except UnicodeDecodeError:
            return None
        if skip.any():
            starts, ends, line_no = starts[~skip], ends[~skip], line_no[~skip]
        n = len(starts)
        lines: np.ndarray | tuple[int, int] = line_no
        if n and line_no[-1] - line_no[0] == n - 1:  # consecutive: no array kept (8 B a row)
            lines = (int(line_no[0]), n)
        if n == 0 or (ends - starts < 30).any():  # the shortest row: id, x.xxx, y.yyy, "m"
            return None
        # id: 11 bytes of [A-Za-z0-9_-]; then ", " start ", " end ', "' mids '"'
        ids = np.lib.stride_tricks.sliding_window_view(buf, 11)[starts]
        if not (_ID_BYTE[ids].all() and (buf[starts + 11] == 44).all()
                and (buf[starts + 12] == 32).all()):
            return None
        start_time = _times_at(buf, starts + 13)
        if start_time is None:
            return None
        start, c1 = start_time
        if not ((buf[c1] == 44).all() and (buf[c1 + 1] == 32).all()):
            return None
        end_time = _times_at(buf, c1 + 2)
        if end_time is None:
            return None
        end, c2 = end_time
        q1, q2 = c2 + 2, ends - 1  # q1 < q2 keeps every position read inside its own line
        if not ((q1 < q2).all() and (buf[c2] == 44).all() and (buf[c2 + 1] == 32).all()
                and (buf[q1] == 34).all() and (buf[q2] == 34).all()
                and (end > start).all()):
            return None
        ytid = pa.Array.from_buffers(
            pa.string(), n, [None, pa.py_buffer(np.arange(0, 11 * n + 1, 11, dtype=np.int32)),
                             pa.py_buffer(np.ascontiguousarray(ids))])
        del ids
        # the mid lists without copying the batch: pieces alternate "mid,mid" | '"..."'
        bounds = np.empty(2 * n + 1, dtype=np.int32)
        bounds[0:-1:2] = q1 + 1
        bounds[1:-1:2] = q2
        bounds[-1] = len(buf)
        pieces = pa.Array.from_buffers(pa.string(), 2 * n,
                                       [None, pa.py_buffer(bounds), pa.py_buffer(buf)])
        labels = pc.split_pattern(pieces.take(pa.array(np.arange(0, 2 * n, 2))), ",")
        del pieces
        cols = pc.index_in(labels.values, value_set=self.value_set)
        if cols.null_count:  # an unknown, empty or spaced mid: the regular path explains it
            return None
        counts = np.diff(np.asarray(labels.offsets))
        return _Chunk(ytid, start, end, labels, np.asarray(cols.to_numpy(), dtype=np.int32),
                      counts, lines, fast=True), comments

    def regex_rows(self, lines: pa.Array, line_no: np.ndarray) -> _Chunk:
        """Parse any lines with one regular expression each; explain the bad ones."""
        opts = self.options
        if not len(lines):
            return _Chunk.empty()
        rows = pc.extract_regex(lines, _ROW_RX)
        bad = np.asarray(rows.is_null())
        reasons: dict[int, str] = {int(i): diagnose(lines[int(i)].as_py())
                                   for i in np.flatnonzero(bad)}
        ytid = rows.field("ytid")
        start = pc.cast(pc.if_else(rows.is_null(), "0", rows.field("start")), pa.float64())
        end = pc.cast(pc.if_else(rows.is_null(), "0", rows.field("end")), pa.float64())
        start_np = start.to_numpy(zero_copy_only=False)
        end_np = end.to_numpy(zero_copy_only=False)
        for i in np.flatnonzero((end_np <= start_np) & ~bad):
            reasons[int(i)] = f"end {end_np[i]:g} is not after start {start_np[i]:g}"

        labels = pc.split_pattern(rows.field("labels"), ",")
        if labels.null_count:
            labels = pc.if_else(labels.is_null(), pa.scalar([""], labels.type), labels)
        offsets = np.asarray(labels.offsets)
        counts = np.diff(offsets)
        flat = labels.values.slice(offsets[0], offsets[-1] - offsets[0])
        cols = pc.index_in(flat, value_set=self.value_set)
        unknown_rows: list[tuple[int, str, str]] = []
        if cols.null_count:  # spaces around mids, empty or unknown mids
            flat = pc.utf8_trim_whitespace(flat)
            cols = pc.index_in(flat, value_set=self.value_set)
            labels = pa.ListArray.from_arrays(pa.array((offsets - offsets[0]).astype(np.int32)),
                                              flat)
        if cols.null_count:
            n = len(lines)
            known = ~np.asarray(cols.is_null())
            flat_rows = np.repeat(np.arange(n), counts)
            empty = np.asarray(pc.equal(flat, "").fill_null(True))
            for j in np.flatnonzero(~known):
                r = int(flat_rows[j])
                if r in reasons:
                    continue
                mid = flat[int(j)].as_py()
                if empty[j]:
                    reasons[r] = ("empty label list" if counts[r] == 1
                                  else "empty mid in the label list")
                elif opts.unknown_labels == "error":
                    reasons[r] = (f"unknown label mid {mid!r} (not in the "
                                  f"{len(self.label_index)}-label index; pass "
                                  "unknown_labels='drop' or 'keep' to accept it)")
                else:
                    unknown_rows.append((int(line_no[r]), ytid[r].as_py(), mid))
            known_counts = np.bincount(flat_rows[known], minlength=n)
            if opts.unknown_labels == "drop":
                kept_offsets = np.zeros(n + 1, dtype=np.int32)
                np.cumsum(known_counts, out=kept_offsets[1:])
                labels = pa.ListArray.from_arrays(pa.array(kept_offsets),
                                                  flat.filter(pa.array(known)))
                for r in np.flatnonzero(known_counts == 0):
                    reasons.setdefault(int(r), "no known label mid left after dropping "
                                               "unknown ones")
            counts = known_counts
            cols = cols.filter(pa.array(known))
        cols_np = np.asarray(cols.to_numpy(zero_copy_only=False), dtype=np.int32)

        chunk = _Chunk(ytid, start_np, end_np, labels, cols_np, counts.astype(np.int64),
                       line_no, unknown=unknown_rows)
        if reasons:
            keep = np.ones(len(lines), dtype=bool)
            keep[list(reasons)] = False
            chunk.rejected = [(int(line_no[i]), lines[i].as_py(), reasons[i])
                              for i in sorted(reasons)]
            mask = pa.array(keep)
            chunk.ytid = ytid.filter(mask)
            chunk.start, chunk.end = start_np[keep], end_np[keep]
            chunk.labels = chunk.labels.filter(mask)
            chunk.cols, chunk.counts = cols_np[np.repeat(keep, chunk.counts)], chunk.counts[keep]
            chunk.lines = line_no[keep]
            kept = set(chunk.lines.tolist())
            chunk.unknown = [u for u in unknown_rows if u[0] in kept]
        return chunk

    # ------------------------------------------------------------------ the whole list
    def run(self, progress: bool | None = None) -> Segments:
        from .segment_list import Segments, rejected_frame, unknown_frame

        show = progress if progress is not None else self.size > (64 << 20)
        workers = max(1, min(4, os.cpu_count() or 1))
        futures: list[Future[tuple[_Chunk, list[str]]]] = []
        n_lines = 0
        with ThreadPoolExecutor(workers) as pool, tqdm(
            total=self.size or None, unit="B", unit_scale=True, desc=Path(self.source).name,
            disable=not show, leave=False,
        ) as bar:
            pending: deque[Future[tuple[_Chunk, list[str]]]] = deque()
            for first_line, lines in self.batches():
                while len(pending) >= 2 * workers:  # bound the batches held in memory
                    pending.popleft().result()
                fut = pool.submit(self.batch, first_line, lines)
                pending.append(fut)
                futures.append(fut)
                n_lines = first_line + len(lines) - 1
                bar.update(lines.nbytes)
            outs = [f.result() for f in futures]
        chunks = [c for c, _ in outs] or [_Chunk.empty()]
        self.fast_batches = sum(c.fast for c in chunks)
        logger.debug("%s: %d of %d batches took the fast path", self.source, self.fast_batches,
                     len(outs))
        comments = [line for _, cm in outs for line in cm]
        rejected = [r for c in chunks for r in c.rejected]
        unknown = [u for c in chunks for u in c.unknown]
        if rejected and not self.ends_with_newline and rejected[-1][0] == n_lines:
            line, text, reason = rejected[-1]
            if reason == diagnose(text):
                rejected[-1] = (line, text, diagnose(text, truncated=True))
        n_rows = sum(len(c.counts) for c in chunks)
        n_entries = sum(int(c.counts.sum()) for c in chunks)
        indptr = np.zeros(n_rows + 1, dtype=np.int32 if n_entries < 2**31 else np.int64)
        np.cumsum(np.concatenate([c.counts for c in chunks]), out=indptr[1:])
        matrix = csr_from_columns(np.concatenate([c.cols for c in chunks]), indptr,
                                  len(self.label_index))
        table = pa.table({  # chunked columns: no copies
            "ytid": pa.chunked_array([c.ytid for c in chunks], pa.string()),
            "start": pa.chunked_array([pa.array(c.start) for c in chunks], pa.float64()),
            "end": pa.chunked_array([pa.array(c.end) for c in chunks], pa.float64()),
            "labels": pa.chunked_array([c.labels for c in chunks], pa.list_(pa.string())),
        })
        lines = functools.partial(join_line_numbers, [c.lines for c in chunks])
        del chunks, outs, futures
        seg = Segments(table, matrix, self.label_index, source=self.source, lines=lines,
                       header=comments)
        if self.options.duplicates == "error":
            dup = seg.duplicates()
            if len(dup):
                repeat = dup[dup["first_line"] != dup["line"]]
                rejected += [(int(r.line), "", f"duplicate of line {int(r.first_line)} "
                              f"({r.ytid}, start {r.start:g})")
                             for r in repeat.itertuples()]
                seg = seg[~np.isin(seg.lines, repeat["line"].to_numpy())]
        rejected.sort()
        if rejected and self.options.on_bad_rows == "error":
            line, text, reason = rejected[0]
            more = f"; {len(rejected)} bad rows in all" if len(rejected) > 1 else ""
            shown = f" ({excerpt(text, 200)})" if text else ""
            raise SegmentsError(
                f"{self.source}:{line}: {reason}{shown}{more}; pass on_bad_rows='skip' "
                "(--skip-bad-rows) to keep the valid rows and list the rejected ones"
            )
        seg.rejected = rejected_frame(rejected)
        seg.unknown = unknown_frame(unknown)
        if rejected:
            logger.warning("%s: rejected %d bad rows (first at line %d: %s); see .rejected",
                           self.source, len(rejected), rejected[0][0], rejected[0][2])
        if unknown:
            logger.warning("%s: %d unknown label mids %s (first at line %d: %s); see .unknown",
                           self.source, len(unknown),
                           "dropped" if self.options.unknown_labels == "drop" else "kept",
                           unknown[0][0], unknown[0][2])
        if self.options.duplicates == "report":
            dup = seg.duplicates()
            if len(dup):
                logger.warning("%s: %d rows share a (ytid, start) with another row; "
                               "see .duplicates()", self.source, len(dup))
        return seg


def join_line_numbers(parts: list[np.ndarray | tuple[int, int]]) -> np.ndarray:
    """Line numbers of the rows: arrays, or ``(first, count)`` runs of consecutive lines."""
    sizes = [len(p) if isinstance(p, np.ndarray) else p[1] for p in parts]
    out = np.empty(sum(sizes), np.int64)
    pos = 0
    for part, size in zip(parts, sizes, strict=True):
        out[pos:pos + size] = part if isinstance(part, np.ndarray) else np.arange(
            part[0], part[0] + size)
        pos += size
    return out


def parse_file(path: Path, label_index: LabelIndex, options: ParseOptions,
               progress: bool | None = None) -> Segments:
    """Parse a segment list file (no cache)."""
    size = path.stat().st_size
    last = b""
    if size:
        with path.open("rb") as fh:
            fh.seek(-1, os.SEEK_END)
            last = fh.read(1)
    return Parser(str(path), label_index, options, open_binary=lambda: path.open("rb"),
                  arrow_input=str(path), size=size,
                  ends_with_newline=last in (b"\n", b"\r")).run(progress)


def parse_bytes(data: bytes, source: str, label_index: LabelIndex, options: ParseOptions,
                progress: bool | None = None) -> Segments:
    """Parse the content of a segment list held in memory."""
    return Parser(source, label_index, options, open_binary=lambda: io.BytesIO(data),
                  arrow_input=pa.py_buffer(data), size=len(data),
                  ends_with_newline=data[-1:] in (b"\n", b"\r")).run(progress)


__all__ = ["BLOCK_BYTES", "MAX_LINE_BYTES", "ParseOptions", "Parser", "diagnose",
           "parse_bytes", "parse_file"]
