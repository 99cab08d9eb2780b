"""Frame-level matrices from strong labels: event targets for any hop, and the framed file.

Both use the same layout: a clip has ``n_frames = floor(clip_seconds / hop)`` whole frames
(frame ``f`` spans ``[f * hop, (f + 1) * hop)`` seconds from the segment start; with the default
0.96 s hop and 10 s clips that is 10 frames starting at 0, 0.96, ..., 8.64, as in the official
framed file, and the last 0.4 s belong to no frame). Row ``clip_position * n_frames + frame``
of a matrix is that frame of that clip; columns follow the label index.

Frame rule for events (:func:`frame_targets`): a frame is positive for a label when the union
of that label's events in the clip covers more than zero seconds of the frame (an event that only
touches a frame boundary does not count) or, with ``min_overlap=q > 0``, at least ``q * hop``
seconds of it. Times are compared in whole microseconds, so 3-decimal times on a 0.96 s grid
are exact.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import scipy.sparse as sp

from audioset_data.errors import StrongLabelsError
from audioset_data.segments.labels import LabelIndex

from .mapping import label_columns, unmapped_table

if TYPE_CHECKING:
    from .events import FramedLabels, StrongLabels

#: Frame hop of the official framed file, in seconds.
DEFAULT_HOP = 0.96
_US = 1_000_000


def _frame_count(hop: float, clip_seconds: float) -> tuple[int, int]:
    """``(hop in microseconds, whole frames per clip)``, refusing unusable values."""
    if not (hop > 0 and math.isfinite(hop)):
        raise StrongLabelsError(f"hop must be a positive number of seconds, got {hop!r}")
    if not (clip_seconds > 0 and math.isfinite(clip_seconds)):
        raise StrongLabelsError(f"clip_seconds must be positive, got {clip_seconds!r}")
    hop_us = round(hop * _US)
    n_frames = round(clip_seconds * _US) // hop_us
    if hop_us <= 0 or n_frames < 1:
        raise StrongLabelsError(f"hop {hop} s leaves no whole frame in {clip_seconds} s clips")
    return hop_us, int(n_frames)


def _positions(keys: np.ndarray, order: Sequence[str] | np.ndarray) -> np.ndarray:
    """Position of each of ``keys`` in ``order`` (-1 where absent)."""
    return np.asarray(pd.Index(order).get_indexer(keys), dtype=np.int64)


def _key_order(default: np.ndarray, keys: Sequence[str] | None) -> np.ndarray:
    if keys is None:
        return default
    order = np.asarray(list(keys), dtype=object)
    if len(pd.unique(order)) != len(order):
        raise StrongLabelsError("keys lists a clip more than once")
    return order


@dataclass(frozen=True)
class FrameTargets:
    """Frame targets of strong events: ``targets[clip_position * n_frames + frame, label]``.

    Attributes
    ----------
    keys
        Clip keys in row-block order.
    frame_starts
        Start of each frame in seconds from the segment start (``n_frames`` values).
    targets
        CSR bool matrix, ``len(keys) * n_frames`` rows × ``len(label_index)`` columns.
    unmapped
        Mids of the events that have no column (``mid, display_name, rows, clips``).
    missing
        Requested keys that have no event in the file (their rows are all False).
    """

    keys: np.ndarray
    frame_starts: np.ndarray
    targets: sp.csr_array
    hop: float
    min_overlap: float
    unmapped: pd.DataFrame
    missing: np.ndarray

    @property
    def n_frames(self) -> int:
        """Frames per clip."""
        return len(self.frame_starts)

    @property
    def frame(self) -> np.ndarray:
        """Frame index of each matrix row."""
        return np.tile(np.arange(self.n_frames), len(self.keys))

    def row(self, key: str, frame: int) -> int:
        """Matrix row of a clip's frame."""
        return _row(self, key, frame)


def frame_targets(
    strong: StrongLabels,
    label_index: LabelIndex | None = None,
    *,
    hop: float = DEFAULT_HOP,
    clip_seconds: float = 10.0,
    min_overlap: float = 0.0,
    keys: Sequence[str] | None = None,
) -> FrameTargets:
    """Frame-level targets from strong events, for any frame hop.

    Parameters
    ----------
    strong
        Events from :func:`audioset_data.strong.events.load_strong`.
    label_index
        Column order; default: the index the events were loaded with.
    hop
        Frame length and step in seconds (0.96 matches the official framed file).
    clip_seconds
        Clip length; ``floor(clip_seconds / hop)`` whole frames per clip.
    min_overlap
        Fraction of a frame (0 to 1) the label's events must cover; 0 means "more than zero".
    keys
        Clips (row blocks) in this order, e.g. the keys of the framed file's arrays; default:
        the clips of ``strong`` in file order. Keys with no events get all-False rows.

    Examples
    --------
    An event from 1.598 s to 2.307 s covers frames 1 (0.96-1.92) and 2 (1.92-2.88).
    """
    if not 0.0 <= min_overlap <= 1.0:
        raise StrongLabelsError(f"min_overlap must be a fraction in [0, 1], got {min_overlap}")
    index = label_index if label_index is not None else strong.label_index
    hop_us, n_frames = _frame_count(hop, clip_seconds)
    order = _key_order(strong.keys, keys)
    ev = strong.events
    labels = ev["label"].to_numpy() if index is strong.label_index else \
        label_columns(ev["mid"], index)
    pos = _positions(ev["key"].to_numpy(), order)
    on = np.round(ev["onset"].to_numpy() * _US).astype(np.int64)
    off = np.round(ev["offset"].to_numpy() * _US).astype(np.int64)
    keep = (labels >= 0) & (pos >= 0) & (off > on)
    pos, lab, on, off = pos[keep], labels[keep], on[keep], off[keep]

    # union of each label's events in a clip: merge overlapping or touching intervals
    if len(on):
        order_ix = np.lexsort((on, lab, pos))
        pos, lab, on, off = pos[order_ix], lab[order_ix], on[order_ix], off[order_ix]
        group = pos * len(index) + lab
        reach = pd.Series(off).groupby(group).cummax().to_numpy()
        prev = np.empty_like(reach)
        prev[0] = -1
        prev[1:] = reach[:-1]
        new = np.ones(len(on), dtype=bool)
        new[1:] = (group[1:] != group[:-1]) | (on[1:] > prev[1:])
        m_on = on[new]
        m_off = np.maximum.reduceat(off, np.flatnonzero(new))
        pos, lab = pos[new], lab[new]
    else:
        m_on = m_off = on

    # explode each merged interval into the frames it touches
    first = m_on // hop_us
    last = np.minimum((m_off - 1) // hop_us, n_frames - 1)
    count = np.maximum(last - first + 1, 0)
    rep = np.repeat(np.arange(len(m_on)), count)
    frame = first[rep] + (np.arange(len(rep)) - np.repeat(np.cumsum(count) - count, count))
    cover = np.minimum(m_off[rep], (frame + 1) * hop_us) - np.maximum(m_on[rep], frame * hop_us)
    rows = pos[rep] * n_frames + frame
    mat = sp.csr_array((cover.astype(np.float64), (rows, lab[rep])),
                       shape=(len(order) * n_frames, len(index)))
    mat.sum_duplicates()
    # coverage is in whole microseconds; half a microsecond absorbs rounding of q * hop
    hit = mat.data > 0 if min_overlap == 0 else mat.data >= min_overlap * hop_us - 0.5
    mat.data = hit.astype(np.float64)
    mat.eliminate_zeros()
    targets = sp.csr_array(mat.astype(bool))

    present_keys = set(pd.unique(ev["key"]))
    missing = np.array([k for k in order if k not in present_keys], dtype=object)
    unmapped = strong.unmapped if index is strong.label_index else unmapped_table(
        ev.assign(label=labels), strong.vocabulary)
    return FrameTargets(
        keys=order,
        frame_starts=np.arange(n_frames) * hop_us / _US,
        targets=targets,
        hop=float(hop),
        min_overlap=float(min_overlap),
        unmapped=unmapped,
        missing=missing,
    )


@dataclass(frozen=True)
class FramedArrays:
    """The framed file as matrices over ``clip_position * n_frames + frame`` rows × labels.

    ``known`` is True for every (frame, label) pair the file lists (``PRESENT`` or
    ``NOT_PRESENT``); ``present`` for the ``PRESENT`` ones. A pair absent from the file is
    unknown: a metric should score only where ``known`` is True.
    """

    keys: np.ndarray
    frame: np.ndarray
    frame_starts: np.ndarray
    present: sp.csr_array
    known: sp.csr_array
    hop: float
    unmapped: pd.DataFrame

    @property
    def n_frames(self) -> int:
        """Frames per clip."""
        return len(self.frame_starts)

    def row(self, key: str, frame: int) -> int:
        """Matrix row of a clip's frame."""
        return _row(self, key, frame)


def _row(arrays: FrameTargets | FramedArrays, key: str, frame: int) -> int:
    """Row ``clip_position * n_frames + frame``; a KeyError for an unknown clip or frame."""
    where = arrays.__dict__.get("_where")
    if where is None:  # built once; the dataclasses are frozen, so set it in __dict__
        where = {k: i for i, k in enumerate(arrays.keys)}
        arrays.__dict__["_where"] = where
    pos = where.get(key)
    if pos is None or not 0 <= frame < arrays.n_frames:
        raise KeyError((key, frame))
    return pos * arrays.n_frames + int(frame)


def framed_arrays(
    framed: FramedLabels,
    label_index: LabelIndex | None = None,
    *,
    hop: float = DEFAULT_HOP,
    clip_seconds: float = 10.0,
    keys: Sequence[str] | None = None,
) -> FramedArrays:
    """``present`` / ``known`` matrices of the framed file (see :class:`FramedArrays`).

    A row's frame is ``round(start_time_seconds / hop)``; a start more than a quarter hop off
    that grid, or a frame past the last whole frame of ``clip_seconds``, raises
    :class:`~audioset_data.errors.StrongLabelsError` naming the line. A pair listed twice is
    present if any of its rows says ``PRESENT``.
    """
    index = label_index if label_index is not None else framed.label_index
    hop_us, n_frames = _frame_count(hop, clip_seconds)
    order = _key_order(framed.keys, keys)
    rows = framed.rows
    labels = rows["label"].to_numpy() if index is framed.label_index else \
        label_columns(rows["mid"], index)
    start_us = np.round(rows["onset"].to_numpy() * _US).astype(np.int64)
    frame = np.rint(start_us / hop_us).astype(np.int64)
    off_grid = np.abs(start_us - frame * hop_us) > hop_us / 4
    outside = (frame < 0) | (frame >= n_frames)
    for bad, what in ((off_grid, f"frame start is not on the {hop} s grid"),
                      (outside, f"frame is past the last whole frame ({n_frames - 1}) of a "
                                f"{clip_seconds} s clip with a {hop} s hop")):
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise StrongLabelsError(f"{framed.source}:{int(rows['line'].iloc[i])}: {what} "
                                    f"(start {rows['onset'].iloc[i]} s; {int(bad.sum())} rows)")
    pos = _positions(rows["key"].to_numpy(), order)
    keep = (labels >= 0) & (pos >= 0)
    r = pos[keep] * n_frames + frame[keep]
    c = labels[keep]
    shape = (len(order) * n_frames, len(index))
    known = sp.csr_array((np.ones(len(r), dtype=np.int32), (r, c)), shape=shape)
    pres = rows["present"].to_numpy()[keep]
    present = sp.csr_array((pres.astype(np.int32), (r, c)), shape=shape)
    present.eliminate_zeros()
    unmapped = framed.unmapped if index is framed.label_index else unmapped_table(
        rows.assign(label=labels), framed.vocabulary)
    return FramedArrays(
        keys=order,
        frame=np.tile(np.arange(n_frames), len(order)),
        frame_starts=np.arange(n_frames) * hop_us / _US,
        present=sp.csr_array(present > 0),
        known=sp.csr_array(known > 0),
        hop=float(hop),
        unmapped=unmapped,
    )


__all__ = ["DEFAULT_HOP", "FrameTargets", "FramedArrays", "frame_targets", "framed_arrays"]
