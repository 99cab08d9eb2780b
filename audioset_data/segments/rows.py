"""Why a segment-list row does not parse, in words, and how error messages quote a line."""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable

import pandas as pd

from .ids import YTID_REGEX

#: A non-negative time as the official lists write it.
NUMBER = r"[0-9]+(?:\.[0-9]*)?"
#: Added to a row's problem when the file's last line has no newline.
TRUNCATED = " (last line has no newline: the file looks truncated)"
_YTID = re.compile(YTID_REGEX)


def diagnose(text: str, truncated: bool = False) -> str:
    """Say in words why one line does not match the official row format."""
    note = TRUNCATED if truncated else ""
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
        if not re.fullmatch(NUMBER, value):
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


def rejected_frame(rows: Iterable[tuple[int, str, str]] = ()) -> pd.DataFrame:
    """The ``rejected`` report: columns ``line, text, reason``."""
    frame = pd.DataFrame(list(rows), columns=["line", "text", "reason"])
    return frame.astype({"line": "int64", "text": object, "reason": object})


def unknown_frame(rows: Iterable[tuple[int, str, str]] = ()) -> pd.DataFrame:
    """The ``unknown`` report: columns ``line, ytid, mid``."""
    frame = pd.DataFrame(list(rows), columns=["line", "ytid", "mid"])
    return frame.astype({"line": "int64", "ytid": object, "mid": object})
