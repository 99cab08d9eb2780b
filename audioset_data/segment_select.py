"""Selecting segment-list rows by class: by mid, display name or column, optionally with each
class's ontology subtree, as sparse column look-ups on the label matrix (never row by row).

:class:`ClassSelection` is a mixin of :class:`~audioset_data.segment_list.Segments`; it needs
the list's ``label_index``, its label matrix ``_y`` and row indexing.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import numpy as np

from .errors import AudioSetError, SegmentsError

if TYPE_CHECKING:
    import scipy.sparse as sp

    from .labels import LabelIndex
    from .ontology import Ontology
    from .segment_list import Segments


class ClassSelection:
    """Row selection by class for a segment list (see the module doc)."""

    label_index: LabelIndex
    _y: sp.csr_array

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
                mid = index.mid(index.index(key))
            except AudioSetError:
                close = ", ".join(f"{index.name(m)!r} ({m})" for m in index.suggest(key))
                raise SegmentsError(
                    f"class {key!r} is neither a mid nor a name among the {len(index)} labels"
                    + (f"; did you mean {close}?" if close else
                       " (pass ontology= to resolve classes outside the labels)")) from None
        if subtree:
            if ontology is None:
                raise SegmentsError(f"class {key!r}: selecting a subtree needs an ontology")
            mids = ontology.descendants(mid, with_self=True)
            cols = np.array(sorted(index.index(m) for m in mids if m in index), dtype=np.int64)
            if not len(cols):
                raise SegmentsError(f"class {key!r} ({mid}) has no label in its subtree")
            return cols
        if mid not in index:  # only the ontology resolves a class outside the index
            sub = ([m for m in ontology.descendants(mid, with_self=True) if m in index]
                   if ontology is not None else [])
            tail = (f"its ontology subtree covers {self._has_any(index.indices(sub)).sum():,} "
                    f"of these {len(self):,} rows: select the subtree (subtree=True, --subtree)"
                    if sub else "nor is any class of its ontology subtree")
            raise SegmentsError(f"class {key!r} ({mid}) is not one of the {len(index)} labels, "
                                f"so no row carries it itself; {tail}")
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

    def count_rows(self, classes: str | int | Iterable[str | int], *,
                   ontology: Ontology | None = None, subtree: bool = False) -> int:
        """Number of rows carrying at least one of ``classes`` (or of their subtrees), without
        building the selection: compare ``subtree=False`` with ``True`` to see what a class's
        descendants add."""
        return int(self._has_any(self.class_columns(classes, ontology=ontology,
                                                    subtree=subtree)).sum())

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
