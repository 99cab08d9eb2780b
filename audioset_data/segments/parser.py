"""The segment-list parser: the bytes of an official CSV → columns, a label matrix and a report.

The input is read in blocks of about a megabyte, cut after their last whole line; line endings
may be ``\n``, ``\r\n`` or a lone ``\r``, and a UTF-8 byte order mark is skipped. Each block is
parsed on a thread pool, in one of two ways:

* the **fast path**, for blocks written exactly as the official files are (``YTID, start,
  end, "mid,mid"``, ``", "`` between fields, times with three decimals, only known mids): the
  fields are found with a few vectorised byte comparisons, times are computed from their digits
  and the label lists are split and mapped to matrix columns with Arrow kernels;
* the **regular path** for any other block: one regular expression per line in Arrow, which
  accepts looser spacing and explains every bad row.

Both give the same result where both apply. Every row is either kept or reported: a bad row
raises :class:`~audioset_data.errors.SegmentsError` naming file and line, or with
``on_bad_rows="skip"`` is left out and listed in ``Segments.rejected``. A line longer than
:data:`MAX_LINE_BYTES` stops the parse whatever the policy, because it means the input is not a
segment list at all (or lost its line breaks): the error names the line and quotes its start,
and no more than a block of it is ever read.
"""

from __future__ import annotations

import functools
import io
import logging
import os
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import scipy.sparse as sp
from tqdm.auto import tqdm

from audioset_data.errors import SegmentsError

from .ids import YTID_REGEX
from .labels import LabelIndex
from .rows import NUMBER as _NUMBER
from .rows import diagnose, excerpt, rejected_frame, unknown_frame
from .targets import csr_from_columns

if TYPE_CHECKING:
    from .table import Segments

logger = logging.getLogger(__name__)

#: Longest line accepted, in bytes. A real row is about 100 bytes; one carrying all 527 mids
#: would be about 5,600. A longer line means the input is not a segment list (or lost its line
#: breaks), and the parse stops at once with a short excerpt instead of buffering it.
MAX_LINE_BYTES = 16 << 10
#: Bytes read per block (each block is cut after its last whole line).
BLOCK_BYTES = 1 << 20
_BOM = b"\xef\xbb\xbf"
_SEP = r"[ \t]*,[ \t]*"
_ROW_RX = (
    rf"^(?P<ytid>{YTID_REGEX}){_SEP}(?P<start>{_NUMBER}){_SEP}(?P<end>{_NUMBER}){_SEP}"
    r'"(?P<labels>[^"]*)"[ \t]*$'
)
_ID_BYTE = np.zeros(256, dtype=bool)  # the bytes a YouTube id may hold
_ID_BYTE[np.frombuffer(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-",
                       np.uint8)] = True
_MAX_INT_DIGITS = 9  # longer whole seconds take the regular path
_PAD = 32  # zero bytes after a block, so the fast path may look past the last line


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
    """The parsed rows of one block."""

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


@dataclass
class _Lines:
    """One block of whole lines: ``data[starts[i]:ends[i]]`` is line ``first + i`` without its
    line ending; ``data`` holds :data:`_PAD` zero bytes after the block."""

    data: bytearray
    starts: np.ndarray
    ends: np.ndarray
    first: int

    def __len__(self) -> int:
        return len(self.starts)

    def rows(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[tuple[int, bytes]]]:
        """Starts, ends and numbers of the lines that are neither blank nor ``#`` comments,
        and the comments as ``(line number, bytes)``."""
        is_comment = np.frombuffer(self.data, np.uint8)[self.starts] == 35  # "#"
        keep = ~is_comment & (self.ends > self.starts)
        line_no = np.arange(self.first, self.first + len(self), dtype=np.int64)
        comments = [(int(line_no[i]), bytes(self.data[self.starts[i]:self.ends[i]]))
                    for i in np.flatnonzero(is_comment)]
        if keep.all():
            return self.starts, self.ends, line_no, comments
        return self.starts[keep], self.ends[keep], line_no[keep], comments


def _line_array(data: bytearray, starts: np.ndarray, ends: np.ndarray) -> pa.Array:
    """Lines ``data[starts[i]:ends[i]]`` as an Arrow binary array (one copy of their bytes)."""
    n = len(starts)
    bounds = np.empty(2 * n + 1, dtype=np.int32)  # pieces alternate line | what follows it
    bounds[0:-1:2] = starts
    bounds[1:-1:2] = ends
    bounds[-1] = len(data)
    pieces = pa.Array.from_buffers(pa.binary(), 2 * n,
                                   [None, pa.py_buffer(bounds), pa.py_buffer(data)])
    return pieces.take(pa.array(np.arange(0, 2 * n, 2)))


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


class Parser:
    """Parses one segment list; :meth:`run` gives the :class:`Segments`."""

    #: Try :meth:`fast_rows` before the regular expression (switched off in tests to compare).
    fast = True

    def __init__(self, source: str, label_index: LabelIndex, options: ParseOptions, *,
                 open_binary: Callable[[], BinaryIO], size: int, into: type[Segments]):
        self.into = into  # the class to build: the parser knows rows, not the container
        self.source = source
        self.label_index = label_index
        self.options = options
        self.open_binary = open_binary
        self.size = size
        self.ends_with_newline = True  # set by :meth:`blocks` at the end of the input
        self.value_set = pa.array(label_index.mids, pa.string())
        self.fast_blocks = 0  # blocks that :meth:`fast_rows` parsed, set by :meth:`run`

    # ------------------------------------------------------------------ lines
    def blocks(self) -> Iterator[_Lines]:
        """Blocks of whole lines, in order. Only the unfinished last line of a block is carried
        to the next one, and it may not exceed :data:`MAX_LINE_BYTES`: no line is ever
        buffered whole, however long."""
        first, carry, at_start = 1, b"", True
        with self.open_binary() as fh:
            while True:
                data = bytearray(len(carry) + BLOCK_BYTES + _PAD)
                data[: len(carry)] = carry
                view = memoryview(data)[len(carry): len(carry) + BLOCK_BYTES]
                got = 0
                while got < BLOCK_BYTES and (n := fh.readinto(view[got:])):
                    got += n
                size, at_end = len(carry) + got, got < BLOCK_BYTES
                skip = 3 if at_start and data.startswith(_BOM) else 0
                at_start = False
                buf = np.frombuffer(data, np.uint8, count=size)
                if data.find(b"\r", 0, size) < 0:
                    term = np.flatnonzero(buf == 10)
                    ends = term
                else:  # "\r\n" ends a line at the "\n", a lone "\r" ends one too
                    nl, cr = buf == 10, buf == 13
                    cr[:-1] &= ~nl[1:]
                    if not at_end and size:
                        cr[-1] = False  # maybe the "\r" of a "\r\n" cut by the block
                    term = np.flatnonzero(nl | cr)
                    ends = term - ((buf[term] == 10) & (buf[term - 1] == 13) & (term > 0))
                starts = np.empty(len(term), dtype=np.int64)
                starts[:1] = skip
                starts[1:] = term[:-1] + 1
                cut = int(term[-1]) + 1 if len(term) else skip
                if at_end and size > cut:  # a last line without a line ending
                    starts, ends = np.append(starts, cut), np.append(ends, size)
                    cut = size
                lines = _Lines(data, starts, ends.astype(np.int64), first)
                if len(lines) and (ends - starts).max() > MAX_LINE_BYTES:
                    i = int(np.argmax(ends - starts > MAX_LINE_BYTES))
                    raise self.long_line(first + i, bytes(data[starts[i]: starts[i] + 200]))
                if size - cut > MAX_LINE_BYTES:
                    raise self.long_line(first + len(lines), bytes(data[cut: cut + 200]))
                carry = bytes(data[cut:size])
                if at_end:
                    self.ends_with_newline = size == 0 or buf[size - 1] in (10, 13)
                if len(lines):
                    yield lines
                first += len(lines)
                if at_end:
                    return

    def long_line(self, line_no: int, head: bytes) -> SegmentsError:
        return SegmentsError(
            f"{self.source}:{line_no}: line longer than {MAX_LINE_BYTES:,} bytes (a segment row "
            f"has about 100): not a segment list, or its line breaks are lost; it starts "
            f"{excerpt(head)}")

    # ------------------------------------------------------------------ one block
    def parse_block(self, block: _Lines) -> tuple[_Chunk, list[str]]:
        """Parse one block of lines (runs on a worker thread)."""
        starts, ends, line_no, raw_comments = block.rows()
        comments: list[str] = []
        rejected: list[tuple[int, str, str]] = []
        for line, text in raw_comments:
            try:
                comments.append(text.decode("utf-8"))
            except UnicodeDecodeError as exc:
                rejected.append((line, text.decode("utf-8", "replace"), f"not UTF-8 text ({exc})"))
        chunk = (self.fast_rows(block.data, starts, ends, line_no)
                 if self.fast and not rejected else None)
        if chunk is None:
            raw = _line_array(block.data, starts, ends)
            try:
                lines = raw.cast(pa.string())
            except pa.ArrowInvalid:
                lines, line_no, bad = self._utf8_rows(raw, line_no)
                rejected += bad
            chunk = self.regex_rows(lines, line_no)
            chunk.rejected = sorted(rejected + chunk.rejected)
        chunk.canonicalise(len(self.label_index))
        return chunk, comments

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

    def fast_rows(self, data: bytearray, starts: np.ndarray, ends: np.ndarray,
                  line_no: np.ndarray) -> _Chunk | None:
        """Parse lines written exactly in the official layout, or return ``None``.

        Every line ``data[starts[i]:ends[i]]`` must read ``YTID, start, end, "mid,mid"``: an
        11-character id, fields separated by ``", "``, times with three decimals (as the
        official files and :meth:`Segments.to_csv` write them), ``end > start``, and only known
        mids in the quoted list. Lines that break any of these rules make the block go through
        :meth:`regex_rows`, which accepts looser spacing, explains every bad row and applies the
        ``unknown_labels`` policy; both give the same result on the lines this path accepts,
        which are ASCII by construction.
        """
        buf = np.frombuffer(data, np.uint8)  # zeros after the block: safe look-ahead
        n = len(starts)
        if n == 0 or (ends - starts < 30).any():  # the shortest row: id, x.xxx, y.yyy, "m"
            return None
        lines: np.ndarray | tuple[int, int] = line_no
        if line_no[-1] - line_no[0] == n - 1:  # consecutive: no array kept (8 bytes a row)
            lines = (int(line_no[0]), n)
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
        # the mid lists without copying the block: pieces alternate "mid,mid" | '"..."'
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
                      counts, lines, fast=True)

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
        show = progress if progress is not None else self.size > (64 << 20)
        workers = max(1, min(4, os.cpu_count() or 1))
        futures: list[Future[tuple[_Chunk, list[str]]]] = []
        n_lines = 0
        with ThreadPoolExecutor(workers) as pool, tqdm(
            total=self.size or None, unit="B", unit_scale=True, desc=Path(self.source).name,
            disable=not show, leave=False,
        ) as bar:
            pending: deque[Future[tuple[_Chunk, list[str]]]] = deque()
            for block in self.blocks():
                while len(pending) >= 2 * workers:  # bound the blocks held in memory
                    pending.popleft().result()
                fut = pool.submit(self.parse_block, block)
                pending.append(fut)
                futures.append(fut)
                n_lines = block.first + len(block) - 1
                bar.update(int(block.ends[-1] - block.starts[0]))
            outs = [f.result() for f in futures]
        chunks = [c for c, _ in outs] or [_Chunk.empty()]
        self.fast_blocks = sum(c.fast for c in chunks)
        logger.debug("%s: %d of %d blocks took the fast path", self.source, self.fast_blocks,
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
        seg = self.into(table, matrix, self.label_index, source=self.source, lines=lines,
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
               progress: bool | None = None, *, into: type[Segments]) -> Segments:
    """Parse a segment list file (no cache) into an ``into`` (the :class:`Segments` class)."""
    return Parser(str(path), label_index, options, open_binary=lambda: path.open("rb"),
                  size=path.stat().st_size, into=into).run(progress)


def parse_bytes(data: bytes, source: str, label_index: LabelIndex, options: ParseOptions,
                progress: bool | None = None, *, into: type[Segments]) -> Segments:
    """Parse the content of a segment list held in memory into an ``into``."""
    return Parser(source, label_index, options, open_binary=lambda: io.BytesIO(data),
                  size=len(data), into=into).run(progress)


__all__ = [
    "BLOCK_BYTES",
    "MAX_LINE_BYTES",
    "ParseOptions",
    "Parser",
    "parse_bytes",
    "parse_file",
]
