"""Temporally-strong labels (AudioSet 2021): event files, the framed eval file, the vocabulary.

The strong release annotates where each sound happens inside a 10 s segment:

* ``audioset_train_strong.tsv`` / ``audioset_eval_strong.tsv``: one event per row,
  ``segment_id, start_time_seconds, end_time_seconds, label`` (times relative to the segment
  start; events of one clip may overlap, and all of them are kept);
* ``audioset_eval_strong_framed_posneg.tsv``: 960 ms frames with ``PRESENT`` / ``NOT_PRESENT``
  per label (a frame/label pair absent from the file is *unknown*, not negative);
* ``mid_to_display_name.tsv``: the 456-label strong vocabulary, no header.

``segment_id`` is ``<YTID>_<segment start in ms>``; YouTube ids contain ``_`` and may start with
``-``, so it is split at the last underscore. Each row gets ``ytid``, ``segment_start`` (s) and
the package's clip ``key`` (``ytid_startms``, see :func:`audioset_data.cache.manifest.clip_key`).

The vocabulary is not the 527-label index: 74 of its 456 mids are not label columns (32 are not
even in ``ontology.json``). Rows of those mids are kept in the tables and counted in
``unmapped``; they never reach a label matrix and are never dropped silently.

Frame targets and the frame arrays of the framed file live in :mod:`audioset_data.strong.frames`.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from audioset_data.config import PathLike
from audioset_data.errors import StrongLabelsError
from audioset_data.remote import fetch
from audioset_data.segments.ids import YTID_REGEX, YTID_RULE
from audioset_data.segments.labels import LabelIndex

from .frames import framed_arrays
from .mapping import label_columns, unmapped_table

if TYPE_CHECKING:
    from audioset_data.ontology import Ontology


#: Official sources by short name, and the remote that serves each.
STRONG_SOURCES = {"train": "train_strong", "eval": "eval_strong"}
FRAMED_SOURCES = {"eval": "eval_strong_framed_posneg"}
VOCABULARY_REMOTE = "strong_mid_to_display_name"

EVENT_COLUMNS = ("segment_id", "start_time_seconds", "end_time_seconds", "label")
FRAMED_COLUMNS = (*EVENT_COLUMNS, "present")
PRESENT_VALUES = {"PRESENT": True, "NOT_PRESENT": False}


# --------------------------------------------------------------------------------------------
# reading


def _resolve(source: str | PathLike, official: Mapping[str, str], what: str, *,
             root: PathLike | None, base_url: str | None, force: bool,
             accept_new_upstream: bool) -> Path:
    """An official name is fetched (verified, cached); anything else is a path."""
    if isinstance(source, str) and source.lower() in official:
        return fetch(official[source.lower()], root=root, base_url=base_url, force=force,
                     accept_new_upstream=accept_new_upstream)
    path = Path(source)
    if not path.is_file():
        names = ", ".join(repr(k) for k in official)
        raise StrongLabelsError(
            f"{what} source {str(source)!r} is neither one of {names} nor an existing file")
    return path


def _read_table(path: Path, columns: tuple[str, ...], *, header: bool) -> pd.DataFrame:
    """Read a tab-separated file as strings, checking the header and the field count."""
    source = str(path)
    first_line = 1
    if header:
        with path.open("r", encoding="utf-8", newline="") as fh:
            head = fh.readline().rstrip("\r\n").split("\t")
        if tuple(h.strip() for h in head) != columns:
            raise StrongLabelsError(
                f"{source}:1: header is {head!r}, expected {list(columns)!r} (tab-separated)")
        first_line = 2
    try:
        table = pd.read_csv(
            path, sep="\t", header=None, names=list(columns), skiprows=1 if header else 0,
            dtype=str, keep_default_na=False, na_values=[], quoting=csv.QUOTE_NONE,
            skip_blank_lines=False, encoding="utf-8", engine="c",
        )
    except pd.errors.ParserError as exc:
        # pandas counts lines from the top of the file, header included
        m = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", str(exc))
        if m is None:
            raise StrongLabelsError(f"{source}: {str(exc).strip()}") from None
        raise StrongLabelsError(f"{source}:{m.group(2)}: expected {len(columns)} tab-separated "
                                f"fields, saw {m.group(3)}") from None
    except UnicodeDecodeError as exc:
        raise StrongLabelsError(f"{source}: not UTF-8 text ({exc})") from None
    table["line"] = np.arange(first_line, first_line + len(table), dtype=np.int64)
    # a missing trailing field reads as "", like an empty one: both are refused
    fields = table[list(columns)]
    short = (fields.isna() | (fields == "")).any(axis=1).to_numpy()
    if short.any():
        _bad(source, table, short, f"expected {len(columns)} non-empty tab-separated fields")
    return table


def _bad(source: str, table: pd.DataFrame, mask: np.ndarray, what: str) -> None:
    """Raise naming the first offending line (and how many lines are affected)."""
    rows = np.flatnonzero(mask)
    first = table.iloc[rows[0]]
    shown = "\t".join("" if pd.isna(first[c]) else str(first[c])
                      for c in table.columns if c != "line")
    more = f" ({len(rows)} lines in all)" if len(rows) > 1 else ""
    raise StrongLabelsError(f"{source}:{int(first['line'])}: {what}: {shown!r}{more}")


def _parse_common(table: pd.DataFrame, source: str) -> pd.DataFrame:
    """Split segment ids, parse times, check mids; return the common columns."""
    seg = table["segment_id"].str.strip()
    parts = seg.str.rpartition("_")
    ytid, sep, ms = parts[0], parts[1], parts[2]
    ok_id = (sep == "_") & ytid.str.fullmatch(YTID_REGEX) & ms.str.fullmatch(r"\d+")
    if not ok_id.all():
        _bad(source, table, ~ok_id.to_numpy(),
             f"segment_id is not <YouTube id ({YTID_RULE})>_<start in ms>")
    start_ms = ms.astype(np.int64)
    onset = pd.to_numeric(table["start_time_seconds"].str.strip(), errors="coerce")
    offset = pd.to_numeric(table["end_time_seconds"].str.strip(), errors="coerce")
    for col, values in (("start_time_seconds", onset), ("end_time_seconds", offset)):
        bad = (values.isna() | ~np.isfinite(values) | (values < 0)).to_numpy()
        if bad.any():
            _bad(source, table, bad, f"{col} is not a number of seconds >= 0")
    reversed_ = (offset < onset).to_numpy()
    if reversed_.any():
        _bad(source, table, reversed_, "end_time_seconds is before start_time_seconds")
    mid = table["label"].str.strip()
    empty = (mid == "").to_numpy()
    if empty.any():
        _bad(source, table, empty, "label (mid) is empty")
    return pd.DataFrame({
        "key": ytid + "_" + start_ms.astype(str),
        "ytid": ytid,
        "segment_start": start_ms.to_numpy() / 1000.0,
        "onset": onset.to_numpy(np.float64),
        "offset": offset.to_numpy(np.float64),
        "mid": mid,
        "line": table["line"],
    })


def _label_index(label_index: LabelIndex | PathLike | None, root: PathLike | None) -> LabelIndex:
    if isinstance(label_index, LabelIndex):
        return label_index
    if label_index is None:
        return LabelIndex.load(root=root)
    return LabelIndex.from_file(label_index)


def _vocabulary(vocabulary: Mapping[str, str] | PathLike | None, *, root: PathLike | None,
                base_url: str | None) -> dict[str, str]:
    if isinstance(vocabulary, Mapping):
        return dict(vocabulary)
    return load_vocabulary(vocabulary, root=root, base_url=base_url)


# --------------------------------------------------------------------------------------------
# the vocabulary


def load_vocabulary(
    source: PathLike | None = None,
    *,
    root: PathLike | None = None,
    base_url: str | None = None,
    force: bool = False,
    accept_new_upstream: bool = False,
) -> dict[str, str]:
    """Read ``mid_to_display_name.tsv`` (``mid<TAB>display name``, no header) into a dict.

    Parameters
    ----------
    source
        A path, or ``None`` for the official file (fetched, verified and cached under ``root``
        from ``base_url`` / ``$AUDIOSET_STRONG_BASE_URL`` / the official address).

    Raises
    ------
    StrongLabelsError
        A line without exactly two fields, an empty mid, or a mid listed twice.
    """
    if source is None:
        path = fetch(VOCABULARY_REMOTE, root=root, base_url=base_url, force=force,
                     accept_new_upstream=accept_new_upstream)
    else:
        path = Path(source)
        if not path.is_file():
            raise StrongLabelsError(f"vocabulary file {str(path)!r} does not exist")
    table = _read_table(path, ("mid", "display_name"), header=False)
    mid = table["mid"].str.strip()
    if (mid == "").any():
        _bad(str(path), table, (mid == "").to_numpy(), "empty mid")
    dup = mid.duplicated().to_numpy()
    if dup.any():
        _bad(str(path), table, dup, "mid listed twice")
    return dict(zip(mid, table["display_name"].str.strip(), strict=True))


def vocabulary_mapping(vocabulary: Mapping[str, str], label_index: LabelIndex,
                       ontology: Ontology | None = None) -> pd.DataFrame:
    """How each vocabulary mid maps: ``mid, display_name, column, in_ontology``.

    ``column`` is the label-index column (-1 when the mid is not a label); ``in_ontology`` is
    whether ``ontology`` knows the mid (missing values without an ontology). With the official
    files, 74 of the 456 mids have no column and 32 are not in ``ontology.json``.
    """
    mids = pd.Series(list(vocabulary), dtype=object)
    out = pd.DataFrame({
        "mid": mids,
        "display_name": [vocabulary[m] for m in mids],
        "column": label_columns(mids, label_index),
    })
    out["in_ontology"] = pd.array(
        [m in ontology for m in mids] if ontology is not None else [None] * len(mids),
        dtype="boolean")
    return out


# --------------------------------------------------------------------------------------------
# event files


class _ClipTable:
    """What the event and framed files share: a table with one clip key per row, the label
    index it was mapped to, and the vocabulary for the names of unmapped mids."""

    def __init__(self, table: pd.DataFrame, label_index: LabelIndex,
                 vocabulary: Mapping[str, str], source: str = "<memory>"):
        self._table = table
        self.label_index = label_index
        self.vocabulary = dict(vocabulary)
        self.source = source
        self._keys: np.ndarray | None = None
        self._unmapped: pd.DataFrame | None = None

    def __len__(self) -> int:
        return len(self._table)

    @property
    def keys(self) -> np.ndarray:
        """Clip keys (``ytid_startms``) in order of first appearance."""
        if self._keys is None:
            self._keys = pd.unique(self._table["key"]).astype(object)
        return self._keys

    @property
    def n_clips(self) -> int:
        """Number of distinct clips."""
        return len(self.keys)

    @property
    def unmapped(self) -> pd.DataFrame:
        """Mids that are not label-index columns: ``mid, display_name, rows, clips``."""
        if self._unmapped is None:
            self._unmapped = unmapped_table(self._table, self.vocabulary)
        return self._unmapped


class StrongLabels(_ClipTable):
    """The events of a strong-label file, one row per event, in file order.

    ``events`` has the columns ``key, ytid, segment_start, onset, offset, mid, label, line``:
    ``onset``/``offset`` in seconds from the segment start, ``label`` the column of ``mid`` in
    :attr:`label_index` (``-1`` when the mid is not one of its labels) and ``line`` the line of
    the file. Build it with :func:`load_strong`.
    """

    def __init__(self, events: pd.DataFrame, label_index: LabelIndex,
                 vocabulary: Mapping[str, str], source: str = "<memory>"):
        super().__init__(events, label_index, vocabulary, source)
        self.events = events

    def __repr__(self) -> str:
        return (f"StrongLabels({len(self)} events in {self.n_clips} clips, "
                f"{int((self.events['label'] < 0).sum())} unmapped, from {self.source})")

    @property
    def mapped(self) -> pd.DataFrame:
        """The events whose mid is a label-index column."""
        return self.events[self.events["label"] >= 0]

    def clip(self, key: str) -> pd.DataFrame:
        """The events of one clip (all of them, overlapping ones included)."""
        return self.events[self.events["key"] == key]


def load_strong(
    source: str | PathLike = "eval",
    *,
    label_index: LabelIndex | PathLike | None = None,
    vocabulary: Mapping[str, str] | PathLike | None = None,
    root: PathLike | None = None,
    base_url: str | None = None,
    force: bool = False,
    accept_new_upstream: bool = False,
) -> StrongLabels:
    """Load a strong-label event file: ``"eval"``, ``"train"`` or the path of a TSV.

    Parameters
    ----------
    source
        ``"eval"`` / ``"train"`` fetch the official file (verified against its pinned git blob
        SHA-1, cached under ``root``, from ``base_url`` or ``$AUDIOSET_STRONG_BASE_URL`` when
        set); anything else is read as a path.
    label_index
        Labels whose columns the mids map to; default: the official 527-label index.
    vocabulary
        Display names for the report of unmapped mids: a mapping, a path of
        ``mid_to_display_name.tsv``, or ``None`` for the official file.
    force, accept_new_upstream
        Passed to :func:`~audioset_data.remote.fetch`.

    Raises
    ------
    StrongLabelsError
        A malformed header or row (the message names file and line), or an unknown source.

    Examples
    --------
    >>> strong = load_strong("audioset_eval_strong.tsv", label_index=idx,
    ...                      vocabulary="mid_to_display_name.tsv")  # doctest: +SKIP
    >>> strong.unmapped.head()  # doctest: +SKIP
    """
    path = _resolve(source, STRONG_SOURCES, "strong-label", root=root, base_url=base_url,
                    force=force, accept_new_upstream=accept_new_upstream)
    table = _read_table(path, EVENT_COLUMNS, header=True)
    events = _parse_common(table, str(path))
    index = _label_index(label_index, root)
    events["label"] = label_columns(events["mid"], index)
    events = events[["key", "ytid", "segment_start", "onset", "offset", "mid", "label", "line"]]
    return StrongLabels(events, index, _vocabulary(vocabulary, root=root, base_url=base_url),
                        source=str(path))


# --------------------------------------------------------------------------------------------
# the framed eval file


class FramedLabels(_ClipTable):
    """The rows of the framed file: one (clip, frame, label) judgement per row.

    ``rows`` has the columns ``key, ytid, segment_start, onset, offset, mid, present, label,
    line`` (``onset``/``offset`` bound the frame; ``present`` is True for ``PRESENT``). A pair not
    listed is unknown. Build it with :func:`load_framed`; turn it into sparse matrices with
    :meth:`to_arrays`.
    """

    def __init__(self, rows: pd.DataFrame, label_index: LabelIndex,
                 vocabulary: Mapping[str, str], source: str = "<memory>"):
        super().__init__(rows, label_index, vocabulary, source)
        self.rows = rows

    def __repr__(self) -> str:
        n_pos = int(self.rows["present"].sum())
        return (f"FramedLabels({len(self)} rows ({n_pos} PRESENT) in {self.n_clips} clips, "
                f"from {self.source})")

    def to_arrays(self, label_index: LabelIndex | None = None, hop: float = 0.96, *,
                  clip_seconds: float = 10.0, keys=None):
        """Sparse ``present`` / ``known`` matrices over (clip × frame) rows × label columns.

        See :func:`audioset_data.strong.frames.framed_arrays`, which this calls.
        """
        return framed_arrays(self, label_index, hop=hop, clip_seconds=clip_seconds, keys=keys)


def load_framed(
    source: str | PathLike = "eval",
    *,
    label_index: LabelIndex | PathLike | None = None,
    vocabulary: Mapping[str, str] | PathLike | None = None,
    root: PathLike | None = None,
    base_url: str | None = None,
    force: bool = False,
    accept_new_upstream: bool = False,
) -> FramedLabels:
    """Load the framed eval file (``"eval"``, fetched like :func:`load_strong`) or a path.

    The parameters are those of :func:`load_strong`. The fifth column must be ``PRESENT`` or
    ``NOT_PRESENT``.

    Raises
    ------
    StrongLabelsError
        A malformed header or row (the message names file and line), or an unknown source.
    """
    path = _resolve(source, FRAMED_SOURCES, "framed-label", root=root, base_url=base_url,
                    force=force, accept_new_upstream=accept_new_upstream)
    table = _read_table(path, FRAMED_COLUMNS, header=True)
    rows = _parse_common(table, str(path))
    flag = table["present"].str.strip()
    known = flag.isin(list(PRESENT_VALUES)).to_numpy()
    if not known.all():
        _bad(str(path), table, ~known, "present is neither PRESENT nor NOT_PRESENT")
    rows["present"] = (flag == "PRESENT").to_numpy()
    index = _label_index(label_index, root)
    rows["label"] = label_columns(rows["mid"], index)
    rows = rows[["key", "ytid", "segment_start", "onset", "offset", "mid", "present", "label",
                 "line"]]
    return FramedLabels(rows, index, _vocabulary(vocabulary, root=root, base_url=base_url),
                        source=str(path))


__all__ = [
    "EVENT_COLUMNS",
    "FRAMED_COLUMNS",
    "FramedLabels",
    "StrongLabels",
    "load_framed",
    "load_strong",
    "load_vocabulary",
    "vocabulary_mapping",
]
