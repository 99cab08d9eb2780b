"""What an import did (:class:`ImportReport`), and the reasons a row is not imported."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

# -- why a row is not imported ------------------------------------------------------------------
PLACEHOLDER = "placeholder (all-zero waveform and target: a clip PANNs did not have)"
EMPTY = "empty (no audio bytes)"
DAMAGED = "damaged (the audio does not decode)"
NO_NAME = "no name"
NOT_AN_ID = "name is not a video id"
UNLISTED_ID = "video id not in the segment list"
UNLISTED_START = "start time not in the segment list"
REPEATED_ID = "video id listed more than once in the segment list"
DUPLICATE = "duplicate of an earlier row"
CACHED = "already cached"
#: The reasons that mean "the segment list does not name this clip".
UNLISTED = (UNLISTED_ID, UNLISTED_START)


def _frame(rows: Sequence[int], sources: Sequence[str], names: Sequence[str],
           reasons: Sequence[str], details: Sequence[str]) -> pd.DataFrame:
    return pd.DataFrame({"row": np.asarray(rows, dtype=np.int64),
                         "source": pd.Series(list(sources), dtype=object),
                         "name": pd.Series(list(names), dtype=object),
                         "reason": pd.Series(list(reasons), dtype=object),
                         "detail": pd.Series(list(details), dtype=object)})


@dataclass
class ImportReport:
    """What an import did.

    Attributes
    ----------
    folder
        The cache folder written.
    path
        The copy read.
    rows
        Rows in the copy.
    imported
        Clips written to the cache.
    stored_as_is
        Of those, clips whose bytes went in unchanged (the rest were decoded and re-encoded).
    skipped
        Rows not imported: ``row``, ``source`` (the file, in a copy of several), ``name``,
        ``reason`` (unlisted, placeholder, empty, damaged, duplicate, already cached...) and
        ``detail`` (the decoder's message for a damaged row).
    label_mismatches
        Rows whose labels differ from the segment list's: ``row``, ``name``, ``key``,
        ``only_in_copy`` and ``only_in_list`` (mids, comma-separated). Only rows the list names.
    listed_not_in_copy
        Segments of the list the copy holds no usable clip of (neither imported now nor
        cached by an earlier import of it); 0 without a list.
    unknown_labels
        Label values that name no label of the index, with how many rows carry each.
    """

    folder: Path
    path: str
    rows: int
    imported: int = 0
    stored_as_is: int = 0
    skipped: pd.DataFrame = field(default_factory=lambda: _frame([], [], [], [], []))
    label_mismatches: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(
        {"row": [], "name": [], "key": [], "only_in_copy": [], "only_in_list": []}))
    listed_not_in_copy: int = 0
    unknown_labels: dict[str, int] = field(default_factory=dict)

    @property
    def damaged(self) -> pd.DataFrame:
        """The rows whose audio did not decode, with the decoder's message."""
        return self.skipped[self.skipped["reason"] == DAMAGED].reset_index(drop=True)

    def count(self, *reasons: str) -> int:
        """Rows skipped for any of ``reasons``."""
        return int(self.skipped["reason"].isin(reasons).sum())

    def summary(self) -> dict[str, Any]:
        """Counts for printing: rows, imported, label mismatches, unlisted, damaged (named),
        and the rows skipped by reason."""
        damaged = self.damaged
        return {"folder": str(self.folder), "copy": self.path, "rows": self.rows,
                "imported": self.imported, "stored_as_is": self.stored_as_is,
                "label_mismatches": len(self.label_mismatches),
                "unlisted": self.count(*UNLISTED),
                "placeholders": self.count(PLACEHOLDER, EMPTY),
                "damaged": [f"{s}: {n}" if s else n for s, n in
                            zip(damaged["source"], damaged["name"], strict=True)],
                "already_cached": self.count(CACHED),
                "listed_not_in_copy": self.listed_not_in_copy,
                "unknown_labels": dict(self.unknown_labels),
                "skipped": {str(k): int(v) for k, v in
                            self.skipped["reason"].value_counts().items()}}


__all__ = [
    "CACHED",
    "DAMAGED",
    "DUPLICATE",
    "EMPTY",
    "NOT_AN_ID",
    "NO_NAME",
    "PLACEHOLDER",
    "REPEATED_ID",
    "UNLISTED",
    "UNLISTED_ID",
    "UNLISTED_START",
    "ImportReport",
]
