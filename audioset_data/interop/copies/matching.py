"""Matching a copy's rows to the segment list by video id and start: each row's cache key,
the rows the list does not name or that repeat one, and the rows whose labels differ from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from audioset_data.cache.manifest import clip_key
from audioset_data.errors import CacheError, ConfigError
from audioset_data.segments.table import Segments

from .report import DUPLICATE, NO_NAME, NOT_AN_ID, REPEATED_ID, UNLISTED_ID, UNLISTED_START
from .rows import CLIP_SECONDS, Copy

#: Seconds within which a start read from a name equals a listed start (names round to ms).
_START_TOLERANCE = 5e-4
#: Share of rows whose label columns may differ from the segment list before the columns are
#: taken to be in another order (a list updated since packing changes a few rows, not most).
_MAX_LABEL_MISMATCH = 0.5


class SegmentMatcher:
    """Finds the row of the segment list that holds a clip, by video id and start."""

    def __init__(self, segments: Segments):
        self.segments = segments
        self._start = np.asarray(segments.start, dtype=np.float64)
        self._end = np.asarray(segments.end, dtype=np.float64)
        self._rows: dict[str, list[int]] = {}
        for i, y in enumerate(segments.ytids.tolist()):
            self._rows.setdefault(str(y), []).append(i)

    def find(self, ytid: str, start: float | None) -> tuple[int, str]:
        """``(list row, "")``, or ``(-1, reason)`` when the list does not name the clip.

        A start matches a listed one within half a millisecond; one that matches none in
        seconds but one in milliseconds (the project's own ``<ytid>_<ms>`` keys) is read so.
        """
        rows = self._rows.get(ytid)
        if not rows:
            return -1, UNLISTED_ID
        if start is None:
            return (rows[0], "") if len(rows) == 1 else (-1, REPEATED_ID)
        for guess in (start, start / 1000.0):
            for i in rows:
                if abs(self._start[i] - guess) < _START_TOLERANCE:
                    return i, ""
        return -1, UNLISTED_START

    def start_end(self, row: int) -> tuple[float, float]:
        """Start and end of a list row."""
        return float(self._start[row]), float(self._end[row])


@dataclass
class _Plan:
    key: list[str]
    ytid: list[str]
    start: np.ndarray
    end: np.ndarray
    list_row: np.ndarray


def _plan(copy: Copy, segments: Segments | None) -> _Plan:
    """Keys of every row, from the names (and the segment list where they lack a start)."""
    n = len(copy.names)
    reason = copy.reason
    plan = _Plan([""] * n, [""] * n, np.zeros(n), np.zeros(n), np.full(n, -1, np.int64))
    matcher = SegmentMatcher(segments) if segments is not None else None
    for r, parsed in enumerate(copy.ids):
        if reason[r]:
            continue
        if parsed is None:
            reason[r] = NO_NAME if not copy.names[r] else NOT_AN_ID
            continue
        ytid, start, end = parsed
        plan.ytid[r] = ytid
        if matcher is None:
            if start is None:
                raise ConfigError(
                    f"{copy.path!r}: clips such as {copy.names[r]!r} carry no start time; pass "
                    "the segment list the copy was made from (segments=, --segments)")
        else:
            row, why = matcher.find(ytid, start)
            if why:
                reason[r] = why
                continue
            plan.list_row[r] = row
            start, listed_end = matcher.start_end(row)
            end = listed_end
        plan.start[r] = start
        plan.end[r] = end if end is not None else start + CLIP_SECONDS
        plan.key[r] = clip_key(ytid, start)
    seen: set[str] = set()
    for r, key in enumerate(plan.key):
        if key and not reason[r]:
            if key in seen:
                reason[r] = DUPLICATE
            seen.add(key)
    return plan


def _check_column_order(copy: Copy, segments: Segments, plan: _Plan) -> None:
    """Rows found in the list must mostly carry the list's labels: otherwise the label
    columns are in another order than the label index."""
    rows = np.flatnonzero(plan.list_row >= 0)
    if not len(rows):
        return
    got = copy.target[rows]
    want = segments.label_matrix[plan.list_row[rows]].astype(bool)
    labelled = _row_counts(got) > 0  # placeholders carry no labels: judged later
    differ = (_row_counts(got != want) > 0) & labelled
    if differ.sum() > _MAX_LABEL_MISMATCH * max(int(labelled.sum()), 1):
        raise CacheError(
            f"{copy.path!r}: {int(differ.sum())} of {int(labelled.sum())} rows carry other "
            "labels than the segment list: the target columns are not in the label index's "
            "order (class_labels_indices.csv), or the list is not the one the copy was made "
            "from")


def _row_counts(m: Any) -> np.ndarray:
    """True entries of each row of a sparse boolean matrix."""
    return np.asarray(sp.csr_array(m).astype(np.int64).sum(axis=1)).reshape(-1)


def _mismatches(copy: Copy, segments: Segments, plan: _Plan, rows: np.ndarray,
                mids: np.ndarray) -> pd.DataFrame:
    """The imported rows whose labels differ from the list's, with the labels that differ."""
    rows = rows[plan.list_row[rows] >= 0]
    got = copy.target[rows].astype(bool)
    want = segments.label_matrix[plan.list_row[rows]].astype(bool)
    differ = np.flatnonzero(_row_counts(got != want) > 0)
    out = {"row": [], "name": [], "key": [], "only_in_copy": [], "only_in_list": []}
    for i in differ.tolist():
        a = set(got[[i]].indices.tolist())
        b = set(want[[i]].indices.tolist())
        r = int(rows[i])
        out["row"].append(r)
        out["name"].append(copy.names[r])
        out["key"].append(plan.key[r])
        out["only_in_copy"].append(",".join(mids[sorted(a - b)]))
        out["only_in_list"].append(",".join(mids[sorted(b - a)]))
    return pd.DataFrame(out)


__all__ = ["SegmentMatcher"]
