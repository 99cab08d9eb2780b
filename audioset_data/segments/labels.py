"""The label index of the released data: the 527 trainable classes and their column order.

Trainability comes from this index (``class_labels_indices.csv``), not from ontology
restrictions: 12 of the 527 are blacklisted in the ontology and 28 unrestricted classes are
absent. Columns of every label matrix in this package follow this order.
"""

from __future__ import annotations

import csv
import difflib
import io
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import scipy.sparse as sp

from audioset_data.config import PathLike
from audioset_data.errors import LabelIndexError, UnknownClassError
from audioset_data.remote import fetch

if TYPE_CHECKING:
    from audioset_data.ontology import Ontology

_COLUMNS = ["index", "mid", "display_name"]


class LabelIndex:
    """Index ↔ mid ↔ display name for the trainable labels, in column order.

    Examples
    --------
    >>> idx = LabelIndex(["/m/09x0r", "/m/05zppz"], ["Speech", "Male speech, man speaking"])
    >>> idx.index("/m/05zppz"), idx.mid(0), idx.name("/m/09x0r")
    (1, '/m/09x0r', 'Speech')
    """

    def __init__(self, mids: Sequence[str], names: Sequence[str], source: str = "<memory>"):
        if len(mids) != len(names):
            raise LabelIndexError(f"{source}: {len(mids)} mids but {len(names)} names")
        self._mids = tuple(str(m) for m in mids)
        self._names = tuple(str(n) for n in names)
        self.source = source
        self._pos: dict[str, int] = {}
        for i, mid in enumerate(self._mids):
            if mid in self._pos:
                raise LabelIndexError(
                    f"{source}: mid {mid!r} appears at index {self._pos[mid]} and again at {i}"
                )
            self._pos[mid] = i
        self._by_name: dict[str, int] = {}
        for i, name in enumerate(self._names):
            self._by_name.setdefault(name.strip().casefold(), i)
        self._propagation: tuple[Ontology, sp.csr_array] | None = None

    @classmethod
    def load(
        cls,
        *,
        root: PathLike | None = None,
        base_url: str | None = None,
        ontology: Ontology | None = None,
        force: bool = False,
        accept_new_upstream: bool = False,
    ) -> LabelIndex:
        """Fetch (or reuse the verified cached) official ``class_labels_indices.csv``."""
        path = fetch(
            "class_labels_indices",
            root=root,
            base_url=base_url,
            force=force,
            accept_new_upstream=accept_new_upstream,
        )
        return cls.from_file(path, ontology=ontology)

    @classmethod
    def from_file(cls, path: PathLike, ontology: Ontology | None = None) -> LabelIndex:
        """Read a CSV with the columns ``index,mid,display_name`` and validate it."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise LabelIndexError(f"label index file {str(path)!r} does not exist") from None
        except UnicodeDecodeError as exc:
            raise LabelIndexError(f"{path}: not UTF-8 text ({exc})") from None
        return cls.from_csv_text(text, source=str(path), ontology=ontology)

    @classmethod
    def from_csv_text(
        cls, text: str, source: str = "<text>", ontology: Ontology | None = None
    ) -> LabelIndex:
        """Parse the CSV text of a label index; errors name the source and line."""
        rows = list(csv.reader(io.StringIO(text)))
        if not rows or [c.strip() for c in rows[0]] != _COLUMNS:
            raise LabelIndexError(f"{source}: line 1 must be the header {','.join(_COLUMNS)}")
        mids: list[str] = []
        names: list[str] = []
        for lineno, row in enumerate(rows[1:], start=2):
            if not row:
                continue
            if len(row) != 3:
                raise LabelIndexError(f"{source}:{lineno}: expected 3 fields, got {len(row)}")
            try:
                index = int(row[0])
            except ValueError:
                raise LabelIndexError(
                    f"{source}:{lineno}: index {row[0]!r} is not an integer"
                ) from None
            if index != len(mids):
                raise LabelIndexError(
                    f"{source}:{lineno}: index {index} out of order (expected {len(mids)})"
                )
            mids.append(row[1].strip())
            names.append(row[2].strip())
        if not mids:
            raise LabelIndexError(f"{source}: no labels")
        index_ = cls(mids, names, source=source)
        if ontology is not None:
            index_.validate(ontology)
        return index_

    def validate(self, ontology: Ontology) -> None:
        """Check every mid is an ontology class with the same name; raise naming the first bad."""
        for i, (mid, name) in enumerate(zip(self._mids, self._names, strict=True)):
            if mid not in ontology:
                raise LabelIndexError(f"{self.source}: index {i}: mid {mid!r} not in the ontology")
            if ontology[mid].name != name:
                raise LabelIndexError(
                    f"{self.source}: index {i}: name {name!r} differs from the ontology's "
                    f"{ontology[mid].name!r} for {mid}"
                )

    def __len__(self) -> int:
        return len(self._mids)

    def __contains__(self, mid: object) -> bool:
        return mid in self._pos

    def __iter__(self):
        return iter(self._mids)

    def __repr__(self) -> str:
        return f"LabelIndex({len(self)} labels from {self.source})"

    @property
    def mids(self) -> tuple[str, ...]:
        """Mids in column order."""
        return self._mids

    @property
    def names(self) -> tuple[str, ...]:
        """Display names in column order."""
        return self._names

    def index(self, key: str) -> int:
        """Column of a mid or of a display name (case-insensitive, blanks around ignored).

        >>> idx = LabelIndex(["/m/09x0r", "/m/0bt9lr"], ["Speech", "Dog"])
        >>> idx.index("/m/0bt9lr"), idx.index("dog")
        (1, 1)
        >>> idx.index("Dgo")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        audioset_data.errors.UnknownClassError: 'Dgo' is not one of ...: 'Dog' (/m/0bt9lr)

        Raises
        ------
        UnknownClassError
            Neither a mid nor a name of a label; the message lists close names. It is also a
            ``KeyError``.
        """
        found = self._pos.get(key) if isinstance(key, str) else None
        if found is None and isinstance(key, str):
            found = self._by_name.get(key.strip().casefold())
        if found is None:
            raise UnknownClassError(
                f"{key!r} is not one of the {len(self)} labels (neither a mid nor a display "
                f"name){self._close_names(key)}")
        return found

    def suggest(self, key: str, n: int = 3) -> list[str]:
        """Mids of up to ``n`` labels whose display name (or mid) is close to ``key``."""
        if not isinstance(key, str) or not key.strip():
            return []
        hits = [self._by_name[m] for m in difflib.get_close_matches(
            key.strip().casefold(), list(self._by_name), n=n, cutoff=0.6)]
        hits += [self._pos[m] for m in difflib.get_close_matches(
            key.strip(), self._mids, n=n, cutoff=0.8) if self._pos[m] not in hits]
        return [self._mids[i] for i in hits[:n]]

    def _close_names(self, key: object) -> str:
        """``"; close names: 'Dog' (/m/0bt9lr), ..."``, or ``""`` when nothing is close."""
        close = self.suggest(key) if isinstance(key, str) else []
        if not close:
            return ""
        return "; close names: " + ", ".join(f"{self.name(m)!r} ({m})" for m in close)

    def indices(self, mids: Iterable[str]) -> np.ndarray:
        """Columns of several mids (or display names), as an int array."""
        return np.fromiter((self.index(m) for m in mids), dtype=np.int64)

    def mid(self, index: int) -> str:
        """Mid at column ``index``."""
        if not 0 <= index < len(self):
            raise UnknownClassError(f"label index {index} is outside 0..{len(self) - 1}")
        return self._mids[index]

    def name(self, key: int | str) -> str:
        """Display name of a column index or a mid."""
        i = int(key) if isinstance(key, int | np.integer) else self.index(key)
        self.mid(i)
        return self._names[i]

    def mid_of_name(self, name: str) -> str:
        """Mid of a display name (case-insensitive)."""
        found = self._by_name.get(name.strip().casefold()) if isinstance(name, str) else None
        if found is None:
            raise UnknownClassError(f"no label is named {name!r}{self._close_names(name)}")
        return self._mids[found]

    def to_frame(self) -> pd.DataFrame:
        """The index as a DataFrame with columns ``index, mid, display_name``."""
        return pd.DataFrame(
            {"index": np.arange(len(self)), "mid": self._mids, "display_name": self._names}
        )

    def propagation_matrix(self, ontology: Ontology) -> sp.csr_array:
        """Square boolean matrix ``P`` with ``P[i, j]`` true when label j is label i or one of
        its ontology ancestors; ``Y @ P`` adds every labelled ancestor to a label matrix."""
        if self._propagation is None or self._propagation[0] is not ontology:
            self._propagation = (ontology, ontology.ancestor_matrix(self._mids))
        return self._propagation[1]

    def propagate(self, labels: sp.sparray | sp.spmatrix | np.ndarray,
                  ontology: Ontology) -> sp.csr_array:
        """Return ``labels`` (clips × labels, boolean) plus all ancestors that are labels."""
        if labels.shape[1] != len(self):
            raise LabelIndexError(
                f"label matrix has {labels.shape[1]} columns, the index has {len(self)}"
            )
        y = sp.csr_array(labels, dtype=np.float32)
        out = y @ self.propagation_matrix(ontology).astype(np.float32)
        return sp.csr_array(out > 0)


__all__ = ["LabelIndex"]
