"""Label quality: Google's per-class rating counts (``qa_true_counts.csv``) set beside AP.

Google had raters check a sample of each class's labels; ``qa_true_counts.csv`` has one row
per rated class, ``label_id,num_rated,num_true`` (``label_id`` the class index of
``class_labels_indices.csv``, 0..526). A class's quality is ``num_true / num_rated``, the
share of its checked labels the raters confirmed; classes not in the file are unrated (NaN).
"""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from audioset_data.config import PathLike, data_home
from audioset_data.errors import AudioSetError, EvaluationError
from audioset_data.segments.labels import LabelIndex

logger = logging.getLogger(__name__)

#: The file's official name; it is read from the data root's folder of official files.
QUALITY_FILE = "qa_true_counts.csv"
#: Its columns.
QUALITY_COLUMNS = ("label_id", "num_rated", "num_true")
#: Fewest classes with both an AP and a quality for a Spearman correlation.
MIN_CLASSES = 3


class LabelQualityError(EvaluationError):
    """A label-quality file is malformed (the message names the file and line), or cannot be
    matched with a result's classes."""


@dataclass(frozen=True)
class LabelQuality:
    """Rating counts per class: ``num_rated[i]`` labels of class ``i`` checked, ``num_true[i]``
    confirmed (0 and 0 for a class never rated)."""

    num_rated: np.ndarray
    num_true: np.ndarray
    #: mid of each entry, where the label index the ids count in is known
    mids: tuple[str, ...] | None = None
    source: str = ""

    def __len__(self) -> int:
        return len(self.num_rated)

    @property
    def quality(self) -> np.ndarray:
        """``num_true / num_rated`` per class; NaN for a class never rated."""
        rated = self.num_rated.astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(rated > 0, self.num_true / np.where(rated > 0, rated, 1.0), np.nan)

    def aligned(self, mids: Sequence[str]) -> LabelQuality:
        """The counts of the classes ``mids`` (a result's columns), in their order: matched by
        mid where this file's mids are known, else by class number for a result whose columns
        are numbered (``"0"``, ``"1"``, ...). A class the file does not rate counts 0 of 0.

        Raises
        ------
        LabelQualityError
            Neither match is possible (the label index is unknown and the columns are mids).
        """
        mids = [str(m) for m in mids]
        if self.mids is not None:
            where = {m: i for i, m in enumerate(self.mids)}
            rows = [where.get(m, -1) for m in mids]
        elif all(m.isdigit() for m in mids):
            rows = [int(m) if int(m) < len(self) else -1 for m in mids]
        else:
            raise LabelQualityError(
                f"label quality{self._from()} counts classes by index, and the label index "
                "they count in is not known: read it with read_quality(path, label_index=...) "
                "(the official class_labels_indices.csv; mirrors via AUDIOSET_CSV_BASE_URL)")
        take = np.asarray(rows, dtype=np.int64)
        ok = take >= 0
        rated = np.where(ok, self.num_rated[np.where(ok, take, 0)], 0)
        true = np.where(ok, self.num_true[np.where(ok, take, 0)], 0)
        return LabelQuality(rated, true, tuple(mids), self.source)

    def _from(self) -> str:
        return f" from {self.source}" if self.source else ""


def read_quality(path: PathLike, label_index: LabelIndex | None = None) -> LabelQuality:
    """Read a ``qa_true_counts.csv`` (header ``label_id,num_rated,num_true``).

    With ``label_index`` (the index its ``label_id`` count in) each entry gets its mid and an
    id past the index's end is an error.

    Raises
    ------
    LabelQualityError
        Missing file, another header, a row that is not three whole numbers, ``num_true``
        over ``num_rated``, a repeated or out-of-range ``label_id``; file and line named.
    """
    p = Path(path)
    if not p.is_file():
        raise LabelQualityError(f"label quality file {str(p)!r} not found")
    try:
        text = p.read_text(encoding="utf-8-sig")
    except (UnicodeDecodeError, OSError) as exc:
        raise LabelQualityError(f"cannot read label quality file {str(p)!r}: {exc}") from None
    rows = [(n, r) for n, r in enumerate(csv.reader(io.StringIO(text)), 1)
            if r and any(c.strip() for c in r) and not r[0].lstrip().startswith("#")]
    if not rows:
        raise LabelQualityError(f"label quality file {str(p)!r} is empty")
    header_line, header = rows[0]
    names = [c.strip().lower() for c in header]
    missing = [c for c in QUALITY_COLUMNS if c not in names]
    if missing:
        raise LabelQualityError(f"{p}, line {header_line}: a label quality file starts with the "
                                f"header {','.join(QUALITY_COLUMNS)}; its first line is "
                                f"{','.join(header)[:80]!r}")
    col = [names.index(c) for c in QUALITY_COLUMNS]
    limit = len(label_index) if label_index is not None else None
    seen: dict[int, int] = {}
    values: list[tuple[int, int, int]] = []
    for number, row in rows[1:]:
        try:
            label, rated, true = (int(row[c].strip()) for c in col)
        except (ValueError, IndexError):
            raise LabelQualityError(f"{p}, line {number}: {','.join(row)[:80]!r} is not three "
                                    "whole numbers (label_id,num_rated,num_true)") from None
        if label < 0 or rated < 0 or true < 0:
            raise LabelQualityError(f"{p}, line {number}: negative count or label_id")
        if true > rated:
            raise LabelQualityError(f"{p}, line {number}: num_true {true} is over num_rated "
                                    f"{rated}")
        if limit is not None and label >= limit:
            raise LabelQualityError(f"{p}, line {number}: label_id {label} is past the label "
                                    f"index's {limit} classes (0..{limit - 1})")
        if label in seen:
            raise LabelQualityError(f"{p}, line {number}: label_id {label} repeats line "
                                    f"{seen[label]}")
        seen[label] = number
        values.append((label, rated, true))
    if not values:
        raise LabelQualityError(f"label quality file {str(p)!r} has a header and no rows")
    n = limit if limit is not None else max(v[0] for v in values) + 1
    num_rated = np.zeros(n, dtype=np.int64)
    num_true = np.zeros(n, dtype=np.int64)
    for label, rated, true in values:
        num_rated[label], num_true[label] = rated, true
    mids = tuple(label_index.mids) if label_index is not None else None
    return LabelQuality(num_rated, num_true, mids, str(p))


def quality_path(root: PathLike | None = None) -> Path:
    """Where ``qa_true_counts.csv`` is looked for: beside the fetched official files, in the
    data root's ``remote`` folder."""
    return data_home(root) / "remote" / QUALITY_FILE


def load_quality(path: PathLike | None = None, root: PathLike | None = None
                 ) -> LabelQuality | None:
    """The label quality of ``path``, else of :func:`quality_path` when that file exists, else
    None; ids are given their mids from the official label index when it can be had (cached
    under ``root`` or fetched), else kept as class numbers."""
    if path is None:
        found = quality_path(root)
        if not found.is_file():
            return None
        logger.info("label quality from %s", found)
        path = found
    try:
        index = LabelIndex.load(root=root)
    except (AudioSetError, OSError) as exc:
        logger.info("label quality matched by class number (no label index: %s)", exc)
        index = None
    return read_quality(path, label_index=index)


def quality_correlation(ap: np.ndarray, quality: np.ndarray) -> tuple[float, int]:
    """``(rho, n)``: Spearman's rank correlation of AP with label quality over the ``n``
    classes that have both (ties get their mean rank); NaN under :data:`MIN_CLASSES`."""
    ap = np.asarray(ap, dtype=np.float64)
    quality = np.asarray(quality, dtype=np.float64)
    ok = np.isfinite(ap) & np.isfinite(quality)
    n = int(ok.sum())
    if n < MIN_CLASSES or np.ptp(ap[ok]) == 0 or np.ptp(quality[ok]) == 0:
        return float("nan"), n
    return float(stats.spearmanr(ap[ok], quality[ok]).statistic), n


def as_quality(value: Any, label_index: LabelIndex | None = None) -> LabelQuality:
    """A :class:`LabelQuality` from itself or a path to a ``qa_true_counts.csv``."""
    if isinstance(value, LabelQuality):
        return value
    return read_quality(value, label_index=label_index)


__all__ = ["MIN_CLASSES", "QUALITY_COLUMNS", "QUALITY_FILE", "LabelQuality",
           "LabelQualityError", "as_quality", "load_quality", "quality_correlation",
           "quality_path", "read_quality"]
