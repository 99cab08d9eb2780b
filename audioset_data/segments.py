"""Segment lists: the official CSVs as Arrow columns plus a sparse clip × label matrix.

An official segment list has three ``#`` header lines, then one row per segment::

    --4gqARaEJE, 0.000, 10.000, "/m/068hy,/m/07q6cd_,/m/0bt9lr,/m/0jbk"

:class:`Segments` holds the rows as Arrow columns ``ytid``, ``start``, ``end`` and ``labels``
(a list of mids) and a boolean ``scipy.sparse.csr_array`` of shape ``(rows, 527)`` whose columns
follow :class:`~audioset_data.labels.LabelIndex`. The parser never splits label strings row by
row in Python. The file is read in blocks of whole lines, parsed on a thread pool. A block
written exactly in the official layout takes a fast path: its fields are found with vectorised
byte comparisons, times are computed from their digits, the label lists are split and mapped to
columns with Arrow kernels, and the CSR matrix is built straight from the list offsets. Any other
block is matched line by line with one regular expression in Arrow, which accepts looser
spacing and explains bad rows; both paths give the same result where both apply. The
2,041,789-row unbalanced list goes from file to class priors in about a quarter of a second.

Every row is either kept or reported: rows that break the format are collected in
:attr:`Segments.rejected` (line, text, reason) when ``on_bad_rows="skip"``, and raise a
:class:`~audioset_data.errors.SegmentsError` naming file and line otherwise.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import io
import json
import logging
import os
import re
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Literal, NamedTuple

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.feather as feather
import scipy.sparse as sp
from tqdm.auto import tqdm

from .config import PathLike, data_home
from .errors import AudioSetError, SegmentsError
from .labels import LabelIndex
from .remote import fetch, sha256_of

if TYPE_CHECKING:
    from .ontology import Ontology
    from .priors import ClassPriors

logger = logging.getLogger(__name__)

#: Canonical split name → name of the official remote file (see :mod:`audioset_data.remote`).
SPLITS: dict[str, str] = {
    "eval": "eval_segments",
    "balanced": "balanced_train_segments",
    "unbalanced": "unbalanced_train_segments",
}
#: Other accepted spellings of the split names.
SPLIT_ALIASES: dict[str, str] = {
    "balanced_train": "balanced",
    "unbalanced_train": "unbalanced",
    "eval_segments": "eval",
    "balanced_train_segments": "balanced",
    "unbalanced_train_segments": "unbalanced",
}

UnknownLabels = Literal["error", "drop", "keep"]
OnBadRows = Literal["error", "skip"]
Duplicates = Literal["report", "error"]

HEADER_COLUMNS = "# YTID, start_seconds, end_seconds, positive_labels"
#: Bumped whenever the parsed-cache layout or the parser's output changes.
CACHE_FORMAT = 2
_BLOCK_BYTES = 4 << 20
_YTID = re.compile(r"[A-Za-z0-9_-]{11}")
_NUMBER = r"[0-9]+(?:\.[0-9]*)?"
_SEP = r"[ \t]*,[ \t]*"
_ROW_RX = (
    rf"^(?P<ytid>[A-Za-z0-9_-]{{11}}){_SEP}(?P<start>{_NUMBER}){_SEP}(?P<end>{_NUMBER}){_SEP}"
    r'"(?P<labels>[^"]*)"[ \t]*\r?\n?$'
)
_EMPTY_LINE = pa.array([], pa.string())
# The bytes a YouTube id may hold (fast path).
_ID_BYTE = np.zeros(256, dtype=bool)
for _c in b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-":
    _ID_BYTE[_c] = True
del _c
_MAX_INT_DIGITS = 9  # longer whole seconds take the regular path


def _times_at(buf: np.ndarray, at: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Times written as ``digits.ddd`` starting at ``at`` (ascending): their values and the
    positions just after them, or ``None`` if one is written otherwise.

    The value is the integer ``digits * 1000 + ddd`` divided by 1000, which IEEE division rounds
    exactly as a correctly rounded decimal parser (Arrow's) rounds the text.
    """
    if not len(at) or at[-1] + _MAX_INT_DIGITS + 4 >= len(buf):
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


def canonical_split(split: str) -> str:
    """Return the canonical name (``eval``, ``balanced``, ``unbalanced``) of a split.

    >>> canonical_split("balanced_train")
    'balanced'

    Raises
    ------
    SegmentsError
        If ``split`` is not a known split name or alias.
    """
    key = str(split).strip().lower()
    key = SPLIT_ALIASES.get(key, key)
    if key not in SPLITS:
        valid = ", ".join([*SPLITS, *SPLIT_ALIASES])
        raise SegmentsError(f"unknown split {split!r}; valid names: {valid}")
    return key


def split_remote(split: str) -> str:
    """Name of the remote file (for :func:`audioset_data.remote.fetch`) of a split.

    >>> split_remote("unbalanced_train")
    'unbalanced_train_segments'
    """
    return SPLITS[canonical_split(split)]


class Segment(NamedTuple):
    """One row of a segment list."""

    ytid: str
    start: float
    end: float
    labels: tuple[str, ...]
    line: int


@dataclass
class _Options:
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
    ytid: pa.Array
    start: np.ndarray
    end: np.ndarray
    labels: pa.ListArray
    cols: np.ndarray | None  # label columns, concatenated over rows (None once merged)
    counts: np.ndarray  # number of matrix entries per row
    lines: np.ndarray | None  # None: consecutive lines from first_line
    rejected: list[tuple[int, str, str]] = field(default_factory=list)
    unknown: list[tuple[int, str, str]] = field(default_factory=list)
    fast: bool = False  # parsed by _Parser.fast_block
    first_line: int = 0
    newlines: int = 0  # in the block

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


def _rejected_frame(rows: Iterable[tuple[int, str, str]] = ()) -> pd.DataFrame:
    frame = pd.DataFrame(list(rows), columns=["line", "text", "reason"])
    return frame.astype({"line": "int64", "text": object, "reason": object})


def _unknown_frame(rows: Iterable[tuple[int, str, str]] = ()) -> pd.DataFrame:
    frame = pd.DataFrame(list(rows), columns=["line", "ytid", "mid"])
    return frame.astype({"line": "int64", "ytid": object, "mid": object})


def _diagnose(text: str, last_without_newline: bool) -> str:
    """Say in words why one raw line does not match the official row format."""
    body = text.rstrip("\r\n")
    truncated = " (last line has no newline: the file looks truncated)" if (
        last_without_newline) else ""
    if body.count('"') % 2:
        return "unterminated quote in the label list" + truncated
    try:
        fields = next(csv.reader([body], skipinitialspace=True))
    except (csv.Error, StopIteration):
        return "not a CSV row" + truncated
    fields = [f.strip() for f in fields]
    if len(fields) < 4:
        return (f"expected 4 fields (YTID, start_seconds, end_seconds, positive_labels), "
                f"found {len(fields)}{truncated}")
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
        return "empty label list" + truncated
    if not re.search(r',[ \t]*"', body):
        return "the label list must be quoted (\"mid,mid\")"
    return "does not match the row format YTID, start, end, \"mid,mid\"" + truncated


class _Parser:
    """Turns the bytes of a segment list into columns, a label matrix and a report."""

    #: Try :meth:`fast_block` before the regular expression (switched off in tests to compare).
    fast = True

    def __init__(self, fh: BinaryIO, source: str, label_index: LabelIndex, options: _Options,
                 size: int = 0):
        self.fh = fh
        self.size = size
        self.source = source
        self.label_index = label_index
        self.options = options
        self.value_set = pa.array(label_index.mids, pa.string())
        self.fast_blocks = 0  # blocks that :meth:`fast_block` parsed, set by :meth:`run`

    def blocks(self) -> Iterator[tuple[bytes | memoryview, bool]]:
        """Blocks of whole lines: ``(bytes, is the last block)``.

        A block is a view of what was read; the part after its last newline is read again
        with the next block (or, from an unseekable stream, carried over).
        """
        seekable = self.fh.seekable()
        rest = b""
        while True:
            piece = self.fh.read(_BLOCK_BYTES)
            at_end = len(piece) < _BLOCK_BYTES
            if rest:
                piece, rest = rest + piece, b""
            if at_end:
                if piece:
                    yield piece, True
                return
            cut = piece.rfind(b"\n") + 1
            if cut == 0:  # a line longer than a block
                rest = piece
                continue
            if cut < len(piece):
                if seekable:
                    self.fh.seek(cut - len(piece), os.SEEK_CUR)
                else:
                    rest = piece[cut:]
            yield memoryview(piece)[:cut], False

    def lines(self, data: bytes, first_line: int = 1
              ) -> tuple[pa.StringArray, np.ndarray, list[str], bool]:
        """The data lines of a block (with their newline), their 1-based line numbers, the
        comment lines, and whether the block ends with a newline."""
        buf = np.frombuffer(data, dtype=np.uint8)
        newlines = [np.flatnonzero(buf[i : i + (1 << 24)] == 10) + i
                    for i in range(0, len(buf), 1 << 24)]
        nl = np.concatenate(newlines) if newlines else np.zeros(0, np.int64)
        ends_with_newline = len(data) == 0 or data.endswith(b"\n")
        starts = np.concatenate([[0], nl + 1])
        if ends_with_newline:
            starts = starts[:-1]
        offsets = np.append(starts, len(data))
        otype, atype = (np.int32, pa.string()) if len(data) < 2**31 else (np.int64,
                                                                            pa.large_string())
        arr = pa.Array.from_buffers(
            atype, len(starts), [None, pa.py_buffer(offsets.astype(otype)), pa.py_buffer(data)]
        )
        try:
            arr.validate(full=True)
        except pa.ArrowInvalid:
            for i, (s, e) in enumerate(zip(starts, offsets[1:], strict=True)):
                try:
                    data[s:e].decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise SegmentsError(
                        f"{self.source}:{first_line + i}: not UTF-8 text ({exc})") from None
            raise SegmentsError(f"{self.source}: not UTF-8 text") from None
        first = buf[starts] if len(starts) else np.zeros(0, np.uint8)
        length = np.diff(offsets)
        # comments start with '#'; blank lines hold only a newline (and maybe '\r')
        skip = (first == ord("#")) | (first == 10) | ((first == 13) & (length <= 2))
        line_no = np.arange(first_line, first_line + len(starts), dtype=np.int64)
        comments = [data[starts[i]:offsets[i + 1]].decode().rstrip("\r\n")
                    for i in np.flatnonzero(first == ord("#"))]
        if skip.any():
            keep = ~skip
            n_lead = int(np.argmin(skip)) if keep.any() else len(skip)
            if keep[n_lead:].all():
                arr, line_no = arr.slice(n_lead), line_no[n_lead:]
            else:
                arr = arr.filter(pa.array(keep))
                line_no = line_no[keep]
        return arr, line_no, comments, ends_with_newline

    def chunk(self, lines: pa.Array, line_no: np.ndarray, last_line: int | None) -> _Chunk:
        """Parse one slice of lines (runs on a worker thread)."""
        opts = self.options
        if not len(lines):
            return _Chunk(_EMPTY_LINE, np.zeros(0), np.zeros(0),
                          pa.array([], pa.list_(pa.string())), np.zeros(0, np.int32),
                          np.zeros(0, np.int64), np.zeros(0, np.int64))
        rows = pc.extract_regex(lines, _ROW_RX)
        bad = np.asarray(rows.is_null())
        reasons: dict[int, str] = {}
        if bad.any():
            for i in np.flatnonzero(bad):
                text = lines[int(i)].as_py()
                reasons[int(i)] = _diagnose(text, last_line == int(line_no[i]))
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
        if cols.null_count:  # slow path: spaces around mids, empty or unknown mids
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
            chunk.rejected = [(int(line_no[i]), lines[i].as_py().rstrip("\r\n"), reasons[i])
                              for i in sorted(reasons)]
            entry_keep = np.repeat(keep, chunk.counts)
            mask = pa.array(keep)
            chunk.ytid = ytid.filter(mask)
            chunk.start, chunk.end = start_np[keep], end_np[keep]
            chunk.labels = chunk.labels.filter(mask)
            chunk.cols, chunk.counts = cols_np[entry_keep], chunk.counts[keep]
            chunk.lines = line_no[keep]
            kept = {int(line_no[i]) for i in np.flatnonzero(keep)}
            chunk.unknown = [u for u in unknown_rows if u[0] in kept]
        return chunk

    def fast_block(self, data: bytes | memoryview) -> tuple[_Chunk, list[str]] | None:
        """Parse a block written exactly in the official layout, or return ``None``.

        Every data line must read ``YTID, start, end, "mid,mid"`` and end with ``\\n``: an
        11-character id, fields separated by ``", "``, times with three decimals (as the
        official files and :meth:`Segments.to_csv` write them), ``end > start``, and only known
        mids in the quoted list. The fields are located with a few vectorised byte comparisons
        instead of a regular expression per line. A block that breaks any of these rules gives
        ``None`` and goes through the regular-expression parser, which accepts looser spacing,
        explains every bad row and applies the ``unknown_labels`` policy; both give the same
        result on the blocks the fast path accepts. Line numbers count from the start of the
        block (:meth:`run` shifts them).
        """
        buf = np.frombuffer(data, dtype=np.uint8)
        if len(buf) >= 2**31 or len(buf) < 2 or buf[-2] != 34 or buf[-1] != 10:
            return None
        nl = np.flatnonzero(buf == 10)
        comments: list[str] = []
        pos = 0
        while pos < len(buf) and buf[pos] == 35:  # the header
            end = int(nl[len(comments)])
            try:
                comments.append(bytes(data[pos:end]).decode("utf-8").rstrip("\r"))
            except UnicodeDecodeError:
                return None
            pos = end + 1
        newlines = len(nl)
        nl = nl[len(comments):]
        n = len(nl)
        if n == 0:
            return None
        starts = np.empty(n, dtype=np.int64)
        starts[0] = pos
        starts[1:] = nl[:-1] + 1
        if (nl - starts < 22).any():
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
        if not ((buf[c1] == 44).all() and (buf[np.minimum(c1 + 1, len(buf) - 1)] == 32).all()):
            return None
        end_time = _times_at(buf, c1 + 2)
        if end_time is None:
            return None
        end, c2 = end_time
        q1, q2 = c2 + 2, nl - 1
        if not ((q1 < q2).all() and (buf[c2] == 44).all() and (buf[c2 + 1] == 32).all()
                and (buf[q1] == 34).all() and (buf[q2] == 34).all()
                and (end > start).all()):
            return None
        ytid = pa.Array.from_buffers(
            pa.string(), n, [None, pa.py_buffer(np.arange(0, 11 * n + 1, 11, dtype=np.int32)),
                             pa.py_buffer(np.ascontiguousarray(ids))])
        del ids
        # the mid lists without copying the block: pieces alternate "mid,mid" | '"\n...'
        offsets = np.empty(2 * n + 1, dtype=np.int32)
        offsets[0:-1:2] = q1 + 1
        offsets[1:-1:2] = q2
        offsets[-1] = len(buf)
        pieces = pa.Array.from_buffers(pa.string(), 2 * n,
                                       [None, pa.py_buffer(offsets), pa.py_buffer(data)])
        labels = pc.split_pattern(pieces.take(pa.array(np.arange(0, 2 * n, 2))), ",")
        del pieces
        cols = pc.index_in(labels.values, value_set=self.value_set)
        # every mid known (so no quote, space or empty mid in the lists); else the regular path
        # explains the row
        if cols.null_count:
            return None
        counts = np.diff(np.asarray(labels.offsets))
        chunk = _Chunk(ytid, start, end, labels, np.asarray(cols.to_numpy(), dtype=np.int32),
                       counts, None, fast=True, first_line=1 + len(comments), newlines=newlines)
        return chunk, comments

    def block(self, data: bytes | memoryview, first_line: Callable[[], int], last: bool
              ) -> tuple[_Chunk, list[str]]:
        """Parse one block of whole lines (runs on a worker thread).

        ``first_line()`` gives the number of the block's first line; it waits for the earlier
        blocks, so only the regular path, which names lines in its reports, calls it.
        """
        out = self.fast_block(data) if self.fast else None
        if out is None:
            if isinstance(data, memoryview):
                data = data.tobytes()
            lines, line_no, comments, ends_with_newline = self.lines(data, first_line())
            newlines = data.count(b"\n")
            del data
            last_line = (int(line_no[-1]) if last and not ends_with_newline and len(line_no)
                         else None)
            out = self.chunk(lines, line_no, last_line), comments
            out[0].newlines = newlines
        out[0].canonicalise(len(self.label_index))
        return out

    def run(self, progress: bool | None = None) -> Segments:
        show = progress if progress is not None else self.size > (64 << 20)
        workers = max(1, min(4, os.cpu_count() or 1))
        results: list[Future[tuple[_Chunk, list[str]]]] = []
        with ThreadPoolExecutor(workers) as pool, tqdm(
            total=self.size or None, unit="B", unit_scale=True, desc=Path(self.source).name,
            disable=not show, leave=False,
        ) as bar:
            pending: list[Future[tuple[_Chunk, list[str]]]] = []

            def first_line(i: int) -> int:
                return 1 + sum(results[j].result()[0].newlines for j in range(i))

            for data, last in self.blocks():
                while len(pending) >= workers:  # bound the blocks held in memory
                    pending.pop(0).result()
                fut = pool.submit(self.block, data, partial(first_line, len(results)), last)
                bar.update(len(data))
                pending.append(fut)
                results.append(fut)
            outs = [f.result() for f in results]
        if not outs:
            outs = [self.block(b"", lambda: 1, True)]
        chunks = [c for c, _ in outs]
        first = 1
        for c in chunks:  # fast blocks counted lines from their own start
            if c.lines is None:
                c.first_line += first - 1
            first += c.newlines
        self.fast_blocks = sum(c.fast for c in chunks)
        logger.debug("%s: %d of %d blocks took the fast path", self.source, self.fast_blocks,
                     len(chunks))
        comments = [line for _, cm in outs for line in cm]
        rejected = [r for c in chunks for r in c.rejected]
        unknown = [u for c in chunks for u in c.unknown]
        n_rows = sum(len(c.counts) for c in chunks)
        n_entries = sum(int(c.counts.sum()) for c in chunks)
        indptr = np.zeros(n_rows + 1, dtype=np.int32 if n_entries < 2**31 else np.int64)
        pos = 0
        for c in chunks:
            np.cumsum(c.counts, out=indptr[pos + 1 : pos + 1 + len(c.counts)])
            indptr[pos + 1 : pos + 1 + len(c.counts)] += indptr[pos]
            pos += len(c.counts)
        cols = np.concatenate([c.cols for c in chunks])
        for c in chunks:
            c.cols = None
        matrix = _csr(cols, indptr, len(self.label_index))
        del cols
        table = pa.table({  # chunked columns: no copies
            "ytid": pa.chunked_array([c.ytid for c in chunks], pa.string()),
            "start": pa.chunked_array([pa.array(c.start) for c in chunks], pa.float64()),
            "end": pa.chunked_array([pa.array(c.end) for c in chunks], pa.float64()),
            "labels": pa.chunked_array([c.labels for c in chunks], pa.list_(pa.string())),
        })
        line_parts = [c.lines if c.lines is not None else (c.first_line, len(c.counts))
                      for c in chunks]
        del chunks, outs
        results.clear()
        seg = Segments(table, matrix, self.label_index, source=self.source, header=comments)
        seg._lines_from = functools.partial(_join_line_numbers, line_parts)
        if self.options.duplicates == "error":
            dup = seg.duplicates()
            if len(dup):
                repeat = dup[dup["first_line"] != dup["line"]]
                rejected += [(int(r.line), "", f"duplicate of line {int(r.first_line)} "
                              f"({r.ytid}, start {r.start:g})")
                             for r in repeat.itertuples()]
                keep = ~np.isin(seg.lines, repeat["line"].to_numpy())
                seg = seg[keep]
                seg.source = self.source
        rejected.sort()
        if rejected and self.options.on_bad_rows == "error":
            line, text, reason = rejected[0]
            more = f"; {len(rejected)} bad rows in all" if len(rejected) > 1 else ""
            shown = f" ({text!r})" if text else ""
            raise SegmentsError(
                f"{self.source}:{line}: {reason}{shown}{more}; pass on_bad_rows='skip' "
                "(--skip-bad-rows) to keep the valid rows and list the rejected ones"
            )
        seg.rejected = _rejected_frame(rejected)
        seg.unknown = _unknown_frame(unknown)
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


def _join_line_numbers(parts: list[np.ndarray | tuple[int, int]]) -> np.ndarray:
    """Line numbers of the rows: arrays, or ``(first, count)`` runs of consecutive lines."""
    out = np.empty(sum(len(p) if isinstance(p, np.ndarray) else p[1] for p in parts), np.int64)
    pos = 0
    for p in parts:
        if isinstance(p, np.ndarray):
            out[pos:pos + len(p)] = p
            pos += len(p)
        else:
            out[pos:pos + p[1]] = np.arange(p[0], p[0] + p[1])
            pos += p[1]
    return out


def _parse_file(path: Path, index: LabelIndex, options: _Options,
                progress: bool | None) -> Segments:
    with path.open("rb") as fh:
        return _Parser(fh, str(path), index, options, path.stat().st_size).run(progress)


def _csr(cols: np.ndarray, indptr: np.ndarray, n_labels: int) -> sp.csr_array:
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


def _format_seconds(values: np.ndarray) -> pa.Array:
    """Seconds as strings with three decimals (``10.000``), vectorised."""
    ms = np.rint(np.asarray(values, dtype=np.float64) * 1000).astype(np.int64)
    whole = pc.cast(pa.array(ms // 1000), pa.string())
    frac = pc.utf8_lpad(pc.cast(pa.array(ms % 1000), pa.string()), 3, "0")
    return pc.binary_join_element_wise(whole, frac, ".")


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
        lines: np.ndarray | None = None,
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
            label_matrix = _matrix_from_labels(self._table["labels"], label_index)
        self._y = sp.csr_array(label_matrix, dtype=bool)
        if self._y.shape != (len(self._table), len(label_index)):
            raise SegmentsError(
                f"{source}: label matrix shape {self._y.shape} does not fit "
                f"{len(self._table)} rows × {len(label_index)} labels"
            )
        self.source = source
        self._lines = None if lines is None else np.asarray(lines, dtype=np.int64)
        self._lines_from: Callable[[], np.ndarray] | None = None  # makes _lines on first use
        self.header = list(header)
        self.rejected = _rejected_frame()
        self.unknown = _unknown_frame()
        self._frame: pd.DataFrame | None = None

    @property
    def lines(self) -> np.ndarray:
        """1-based source line of each row (0 for rows built in memory)."""
        if self._lines is None:
            self._lines = (self._lines_from() if self._lines_from is not None
                           else np.zeros(len(self._table), np.int64))
            self._lines_from = None
        return self._lines

    @lines.setter
    def lines(self, value: np.ndarray) -> None:
        self._lines = np.asarray(value, dtype=np.int64)
        self._lines_from = None

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

        Raises
        ------
        SegmentsError
            The text breaks the format; the message names source and line.

        Examples
        --------
        >>> idx = LabelIndex(["/m/09x0r", "/m/04rlf"], ["Speech", "Music"])
        >>> seg = Segments.from_csv_text('abcdefghijk, 0.000, 10.000, "/m/09x0r,/m/04rlf"\\n',
        ...                              label_index=idx)
        >>> len(seg), seg.n_labels, seg[0].labels
        (1, 2, ('/m/09x0r', '/m/04rlf'))
        """
        options = _Options(unknown_labels, on_bad_rows, duplicates)
        options.check()
        data = text.encode("utf-8") if isinstance(text, str) else bytes(text)
        return _Parser(io.BytesIO(data), source, label_index, options, len(data)).run(progress)

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
        cache: bool = False,
        progress: bool | None = None,
    ) -> Segments:
        """Parse a segment list file (see :meth:`from_csv_text` for the options).

        ``label_index`` may be a :class:`LabelIndex`, the path of a ``class_labels_indices.csv``,
        or ``None`` for the official one (fetched under ``root`` from ``base_url``). With
        ``cache=True`` the parsed form is stored under the data root, keyed by the file's
        SHA-256, and reused while the file is unchanged.
        """
        path = Path(path)
        if not path.is_file():
            raise SegmentsError(f"segment list {str(path)!r} does not exist")
        index = _label_index(label_index, root, base_url)
        options = _Options(unknown_labels, on_bad_rows, duplicates)
        options.check()
        if cache:
            return _load_cached(path, index, options, root, progress)
        return _parse_file(path, index, options, progress)

    @classmethod
    def load(cls, split_or_path: str | PathLike, **kwargs: Any) -> Segments:
        """Same as :func:`load_segments`."""
        return load_segments(split_or_path, **kwargs)

    @classmethod
    def concat(cls, parts: Sequence[Segments]) -> Segments:
        """Rows of several segment lists one after the other (same label index required)."""
        if not parts:
            raise SegmentsError("nothing to concatenate")
        first = parts[0]
        for p in parts[1:]:
            _same_index(first, p)
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
        """The rows as a pandas DataFrame backed by Arrow columns (no copy of the strings)."""
        if self._frame is None:
            self._frame = self._table.to_pandas(types_mapper=pd.ArrowDtype)
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
        from .priors import ClassPriors

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

    # ------------------------------------------------------------------ selection
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
                mid = index.mid_of_name(key)
            except AudioSetError:
                raise SegmentsError(
                    f"class {key!r} is neither a mid nor a name among the {len(index)} labels"
                ) from None
        if subtree:
            if ontology is None:
                raise SegmentsError(f"class {key!r}: selecting a subtree needs an ontology")
            mids = ontology.descendants(mid, with_self=True)
            cols = np.array(sorted(index.index(m) for m in mids if m in index), dtype=np.int64)
            if not len(cols):
                raise SegmentsError(f"class {key!r} ({mid}) has no label in its subtree")
            return cols
        if mid not in index:
            raise SegmentsError(
                f"class {key!r} ({mid}) is not one of the {len(index)} labels; "
                "select its subtree to use its labelled descendants"
            )
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
        _same_index(self, other)
        return Segments.concat([self, other[~other._member_of(self)]])

    def intersection(self, other: Segments) -> Segments:
        """Rows of ``self`` whose ``(ytid, start)`` also occurs in ``other``."""
        _same_index(self, other)
        return self[self._member_of(other)]

    def difference(self, other: Segments) -> Segments:
        """Rows of ``self`` whose ``(ytid, start)`` does not occur in ``other``."""
        _same_index(self, other)
        return self[~self._member_of(other)]

    __or__ = union
    __and__ = intersection
    __sub__ = difference

    # ------------------------------------------------------------------ writing
    def to_csv_text(self, *, created: str | None = None) -> str:
        """The rows in the official format (three ``#`` header lines), as text."""
        return self._csv_bytes(created).decode("utf-8")

    def _csv_bytes(self, created: str | None) -> bytes:
        labels = self._table["labels"]
        flat = pc.list_flatten(labels)
        n_unique = pc.count_distinct(self._table["ytid"]).as_py() if len(self) else 0
        header = (
            f"# Segments csv created {created or time.strftime('%a %b %e %H:%M:%S %Y')}\n"
            f"# num_ytids={n_unique}, num_segs={len(self)}, "
            f"num_unique_labels={pc.count_distinct(flat).as_py() if len(flat) else 0}, "
            f"num_positive_labels={len(flat)}\n{HEADER_COLUMNS}\n"
        ).encode()
        if not len(self):
            return header
        joined = pc.binary_join(labels, ",")
        line = pc.binary_join_element_wise(
            self._table["ytid"], _format_seconds(self.start), _format_seconds(self.end),
            pc.binary_join_element_wise('"', joined, '"', ""), ", ")
        line = pc.binary_join_element_wise(line, "\n", "")
        if isinstance(line, pa.ChunkedArray):
            line = line.combine_chunks()
        line = line.cast(pa.large_string())
        offsets = np.frombuffer(line.buffers()[1], dtype=np.int64)[line.offset:]
        body = memoryview(line.buffers()[2])[offsets[0]:offsets[len(line)]]
        return header + bytes(body)

    def to_csv(self, path: PathLike, *, created: str | None = None) -> Path:
        """Write the rows in the official format; :meth:`from_file` reads them back.

        Times are written with three decimals, as in the official files. The file is written
        under a temporary name and renamed into place.
        """
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        data = self._csv_bytes(created)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, path)
        finally:
            Path(tmp).unlink(missing_ok=True)
        return path


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


def _same_index(a: Segments, b: Segments) -> None:
    if a.label_index.mids != b.label_index.mids:
        raise SegmentsError(f"{a.source} and {b.source} use different label indexes")


def _matrix_from_labels(labels: pa.ChunkedArray | pa.ListArray,
                        label_index: LabelIndex) -> sp.csr_array:
    """Label matrix of a ``labels`` column (mids outside the index are left out)."""
    if isinstance(labels, pa.ChunkedArray):
        labels = labels.combine_chunks()
    labels = pc.if_else(labels.is_null(), pa.scalar([], labels.type), labels)
    offsets = np.asarray(labels.offsets)
    flat = labels.values.slice(offsets[0], offsets[-1] - offsets[0])
    cols = pc.index_in(flat, value_set=pa.array(label_index.mids, pa.string()))
    known = ~np.asarray(cols.is_null())
    rows = np.repeat(np.arange(len(labels)), np.diff(offsets))[known]
    indptr = np.zeros(len(labels) + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=len(labels)), out=indptr[1:])
    return _csr(np.asarray(cols.filter(pa.array(known)).to_numpy(zero_copy_only=False),
                           dtype=np.int64), indptr, len(label_index))


def _label_index(label_index: LabelIndex | PathLike | None, root: PathLike | None,
                 base_url: str | None) -> LabelIndex:
    if isinstance(label_index, LabelIndex):
        return label_index
    if label_index is not None:
        return LabelIndex.from_file(label_index)
    return LabelIndex.load(root=root, base_url=base_url)


# ---------------------------------------------------------------------- parsed cache
def parsed_cache_path(source: PathLike, sha256: str, label_index: LabelIndex,
                      root: PathLike | None = None, *, unknown_labels: str = "error",
                      on_bad_rows: str = "error", duplicates: str = "report") -> Path:
    """Where the parsed form of a segment list with this SHA-256 (and these options) lives."""
    opts = json.dumps([CACHE_FORMAT, unknown_labels, on_bad_rows, duplicates,
                       list(label_index.mids)])
    key = hashlib.sha256(opts.encode()).hexdigest()[:12]
    return data_home(root) / "segments" / f"{Path(source).stem}-{sha256[:20]}-{key}.arrow"


def _load_cached(path: Path, index: LabelIndex, options: _Options, root: PathLike | None,
                 progress: bool | None) -> Segments:
    sha256 = sha256_of(path)
    target = parsed_cache_path(path, sha256, index, root, unknown_labels=options.unknown_labels,
                               on_bad_rows=options.on_bad_rows, duplicates=options.duplicates)
    if target.is_file():
        try:
            seg = _read_cache(target, index, str(path), sha256)
            logger.debug("using parsed cache %s", target)
            return seg
        except (OSError, ValueError, KeyError, pa.ArrowException) as exc:
            logger.warning("parsed cache %s is unreadable (%s); parsing again", target, exc)
    seg = _parse_file(path, index, options, progress)
    try:
        _write_cache(seg, target, sha256)
    except OSError as exc:  # a read-only cache must not stop the load
        logger.warning("could not write the parsed cache %s: %s", target, exc)
    return seg


def _write_cache(seg: Segments, target: Path, sha256: str) -> None:
    y = seg.label_matrix
    cols = pa.ListArray.from_arrays(pa.array(y.indptr.astype(np.int32)),
                                    pa.array(y.indices.astype(np.int16)))
    table = seg.arrow.append_column("line", pa.array(seg.lines)).append_column("cols", cols)
    meta = {
        "format": CACHE_FORMAT, "sha256": sha256, "source": seg.source, "header": seg.header,
        "mids_sha256": hashlib.sha256("\n".join(seg.label_index.mids).encode()).hexdigest(),
        "rejected": [[int(a), str(b), str(c)] for a, b, c in seg.rejected.itertuples(index=False)],
        "unknown": [[int(a), str(b), str(c)] for a, b, c in seg.unknown.itertuples(index=False)],
    }
    table = table.replace_schema_metadata({"audioset_data.segments": json.dumps(meta)})
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    os.close(fd)
    try:
        feather.write_feather(table, tmp, compression="lz4")
        os.replace(tmp, target)
    finally:
        Path(tmp).unlink(missing_ok=True)


def _read_cache(target: Path, index: LabelIndex, source: str, sha256: str) -> Segments:
    table = feather.read_table(target, memory_map=True)
    meta = json.loads(table.schema.metadata[b"audioset_data.segments"])
    mids_sha = hashlib.sha256("\n".join(index.mids).encode()).hexdigest()
    if meta.get("format") != CACHE_FORMAT or meta.get("sha256") != sha256 or (
            meta.get("mids_sha256") != mids_sha):
        raise ValueError("cache was written for another source or format")
    cols = table["cols"].combine_chunks()
    if isinstance(cols, pa.ChunkedArray) or cols.null_count:
        raise ValueError("label columns are damaged")
    indptr = np.asarray(cols.offsets, dtype=np.int64)
    matrix = sp.csr_array(
        (np.ones(indptr[-1] - indptr[0], dtype=bool),
         np.asarray(cols.values.to_numpy(), dtype=np.int32)[indptr[0]:indptr[-1]],
         indptr - indptr[0]),
        shape=(len(table), len(index)),
    )
    seg = Segments(table, matrix, index, source=source,
                   lines=table["line"].to_numpy(), header=meta.get("header", []))
    seg.rejected = _rejected_frame(tuple(r) for r in meta.get("rejected", []))
    seg.unknown = _unknown_frame(tuple(r) for r in meta.get("unknown", []))
    return seg


def load_segments(
    split_or_path: str | PathLike,
    *,
    root: PathLike | None = None,
    base_url: str | None = None,
    label_index: LabelIndex | PathLike | None = None,
    unknown_labels: UnknownLabels = "error",
    on_bad_rows: OnBadRows = "error",
    duplicates: Duplicates = "report",
    cache: bool = True,
    force: bool = False,
    accept_new_upstream: bool = False,
    progress: bool | None = None,
) -> Segments:
    """Load a split (``eval``, ``balanced``, ``unbalanced``) or a segment list file.

    A split is fetched with :func:`audioset_data.remote.fetch` (verified against the pinned
    checksum, cached under ``root``, from the mirror ``base_url`` if given). The parsed form is
    cached next to it, keyed by the file's SHA-256, so a second load skips parsing and a
    changed file is parsed again.

    Parameters
    ----------
    split_or_path
        Split name or alias, or the path of a CSV in the official format.
    root, base_url
        Data root and mirror address of the official CSV files.
    label_index
        Labels to map mids to; default: the official ``class_labels_indices.csv``.
    unknown_labels, on_bad_rows, duplicates
        Validation policies, see :meth:`Segments.from_csv_text`.
    cache
        Reuse / write the parsed form under ``root``.
    force, accept_new_upstream
        Passed to :func:`~audioset_data.remote.fetch`.

    Raises
    ------
    SegmentsError
        Unknown split, missing file, or a malformed row (file and line named).
    ChecksumMismatchError
        The fetched file is not the pinned release (pass ``accept_new_upstream=True``).

    Examples
    --------
    >>> seg = load_segments("eval")  # doctest: +SKIP
    >>> len(seg), seg.n_labels  # doctest: +SKIP
    (20371, 51804)
    """
    key = str(split_or_path)
    try:
        split = canonical_split(key)
    except SegmentsError:
        split = None
    if split is not None and not Path(key).is_file():
        path = fetch(SPLITS[split], root=root, base_url=base_url, force=force,
                     accept_new_upstream=accept_new_upstream, progress=bool(progress))
    else:
        path = Path(split_or_path)
        if not path.is_file():
            valid = ", ".join([*SPLITS, *SPLIT_ALIASES])
            raise SegmentsError(
                f"{key!r} is neither a split ({valid}) nor an existing segment list file"
            )
    return Segments.from_file(path, label_index=label_index, root=root, base_url=base_url,
                              unknown_labels=unknown_labels, on_bad_rows=on_bad_rows,
                              duplicates=duplicates, cache=cache, progress=progress)


__all__ = [
    "SPLITS",
    "SPLIT_ALIASES",
    "Segment",
    "Segments",
    "canonical_split",
    "load_segments",
    "parsed_cache_path",
    "split_remote",
]
