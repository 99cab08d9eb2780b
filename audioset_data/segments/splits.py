"""Split names: the three official segment lists, their aliases, and how a name is normalised.

This module imports nothing heavy, so the cache layer can fold split aliases into folder names
without loading the segment parser.

>>> canonical_split(" EVAL ")
'eval'
>>> canonical_split("balanced_train")
'balanced'
>>> split_remote("unbalanced_train")
'unbalanced_train_segments'
"""

from __future__ import annotations

import difflib
import os

from audioset_data.errors import ConfigError, SegmentsError

#: Canonical split name → name of the official remote file (see :mod:`audioset_data.remote`).
SPLITS: dict[str, str] = {
    "eval": "eval_segments",
    "balanced": "balanced_train_segments",
    "unbalanced": "unbalanced_train_segments",
}
#: Other accepted spellings of the split names (after :func:`normalise_split_name`).
SPLIT_ALIASES: dict[str, str] = {
    "balanced_train": "balanced",
    "unbalanced_train": "unbalanced",
    "eval_segments": "eval",
    "balanced_train_segments": "balanced",
    "unbalanced_train_segments": "unbalanced",
}
#: Longer names are refused outright (the longest valid one has 25 characters).
MAX_SPLIT_NAME = 64


class SplitNameError(ConfigError, SegmentsError):
    """A split name that is not one of the official splits or their aliases.

    Both a :class:`~audioset_data.errors.ConfigError` (a bad setting) and a
    :class:`~audioset_data.errors.SegmentsError` (what loading a segment list raises).
    """


def _valid_names() -> str:
    return f"{', '.join(SPLITS)} (aliases: {', '.join(SPLIT_ALIASES)})"


def looks_like_path(name: str) -> bool:
    """Whether ``name`` reads as a file path rather than a split name (a folder separator, a
    leading ``~`` or ``.``, or a file suffix such as ``.csv``)."""
    name = name.strip()
    seps = {"/", "\\", os.sep} | ({os.altsep} if os.altsep else set())
    return (any(s in name for s in seps) or name.startswith(("~", "."))
            or os.path.splitext(name)[1].lower() in {".csv", ".tsv", ".txt", ".gz", ".zip"})


def normalise_split_name(name: str) -> str:
    """Lower case, surrounding blanks removed, ``-`` read as ``_``: ``' Balanced-Train'`` →
    ``'balanced_train'``. Unknown names come back normalised, not checked."""
    return str(name).strip().lower().replace("-", "_")


def canonical_split(split: str) -> str:
    """Return the canonical name (``eval``, ``balanced``, ``unbalanced``) of a split.

    Case, surrounding blanks and ``-`` for ``_`` do not matter; aliases such as
    ``balanced_train`` or ``eval_segments`` are folded.

    >>> canonical_split("balanced_train")
    'balanced'
    >>> canonical_split("evl")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    audioset_data.segments.splits.SplitNameError: unknown split 'evl'; did you mean 'eval'? ...

    Raises
    ------
    SplitNameError
        ``split`` is not a split name or alias (the message suggests the closest one), is
        empty, longer than :data:`MAX_SPLIT_NAME` characters, or looks like a file path.
        It is both a ``ConfigError`` and a ``SegmentsError``.
    """
    raw = str(split)
    if len(raw) > MAX_SPLIT_NAME:
        raise SplitNameError(
            f"a split name of {len(raw):,} characters ({raw[:30]!r}...) is not a split; "
            f"valid names: {', '.join(SPLITS)}")
    key = normalise_split_name(raw)
    if not key:
        raise SplitNameError(f"empty split name; valid names: {_valid_names()}")
    key = SPLIT_ALIASES.get(key, key)
    if key in SPLITS:
        return key
    if looks_like_path(raw):
        raise SplitNameError(
            f"{raw!r} looks like a file path, not a split name; pass it as a file "
            "(--file PATH on the command line, a pathlib.Path in Python)")
    close = difflib.get_close_matches(key, [*SPLITS, *SPLIT_ALIASES], n=1, cutoff=0.6)
    hint = f"did you mean {SPLIT_ALIASES.get(close[0], close[0])!r}? " if close else ""
    raise SplitNameError(f"unknown split {raw!r}; {hint}valid names: {_valid_names()}")


def split_remote(split: str) -> str:
    """Name of the remote file (for :func:`audioset_data.remote.fetch`) of a split.

    >>> split_remote("unbalanced_train")
    'unbalanced_train_segments'
    """
    return SPLITS[canonical_split(split)]


__all__ = [
    "MAX_SPLIT_NAME",
    "SPLITS",
    "SPLIT_ALIASES",
    "SplitNameError",
    "canonical_split",
    "looks_like_path",
    "normalise_split_name",
    "split_remote",
]
