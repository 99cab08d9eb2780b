"""Segment lists: load a split or a file as :class:`Segments` (the entry point of this room).

An official segment list has three ``#`` header lines, then one row per segment::

    --4gqARaEJE, 0.000, 10.000, "/m/068hy,/m/07q6cd_,/m/0bt9lr,/m/0jbk"

:func:`load_segments` fetches a split (verified against its pinned checksum) or takes a file,
and returns a :class:`Segments`: Arrow columns ``ytid, start, end, labels`` plus a boolean
``scipy.sparse.csr_array`` of shape ``(rows, 527)`` whose columns follow
:class:`~audioset_data.segments.labels.LabelIndex`. The work is split by concept:

* :mod:`audioset_data.segments.splits`: split names, aliases and their normalisation;
* :mod:`audioset_data.segments.parser`: the CSV parser and its validation;
* :mod:`audioset_data.segments.table`: the :class:`Segments` container (selection, set
  operations, priors);
* :mod:`audioset_data.segments.writer`: writing the official format back;
* :mod:`audioset_data.segments.parse_cache`: the parsed cache;
* :mod:`audioset_data.segments.targets`: the clip × label matrix of any table of label lists.

Every name of those modules that callers used to import from here is still importable here.
"""

from __future__ import annotations

import os
from pathlib import Path

from audioset_data.config import PathLike
from audioset_data.remote import fetch

from .labels import LabelIndex
from .splits import (
    SPLITS,
    canonical_split,
    looks_like_path,
)
from .table import (
    Duplicates,
    OnBadRows,
    Segments,
    SegmentsNotFoundError,
    UnknownLabels,
)


def load_segments(
    split_or_path: str | PathLike,
    *,
    root: PathLike | None = None,
    base_url: str | None = None,
    label_index: LabelIndex | PathLike | None = None,
    unknown_labels: UnknownLabels = "error",
    on_bad_rows: OnBadRows = "error",
    duplicates: Duplicates = "report",
    allow_empty: bool = False,
    cache: bool = True,
    force: bool = False,
    accept_new_upstream: bool = False,
    progress: bool | None = None,
) -> Segments:
    """Load a split (``eval``, ``balanced``, ``unbalanced``) or a segment list file.

    A split is fetched with :func:`audioset_data.remote.fetch` (verified against the pinned
    checksum, cached under ``root``, from the mirror ``base_url`` if given). The parsed form is
    cached under ``root`` too (see :mod:`audioset_data.segments.parse_cache`), so a second load maps
    it instead of parsing, and a changed file is parsed again.

    Parameters
    ----------
    split_or_path
        Split name or alias (any case, e.g. ``"EVAL"``, ``"balanced_train"``), or the path of
        a CSV in the official format (a ``pathlib.Path`` is always read as a path; a string
        names a file when such a file exists or when it looks like a path).
    root, base_url
        Data root and mirror address of the official CSV files.
    label_index
        Labels to map mids to; default: the official ``class_labels_indices.csv``.
    unknown_labels, on_bad_rows, duplicates, allow_empty
        Validation policies, see :meth:`Segments.from_csv_text`.
    cache
        Reuse / write the parsed form under ``root``.
    force, accept_new_upstream
        Passed to :func:`~audioset_data.remote.fetch`.

    Raises
    ------
    SplitNameError
        An unknown split name (the message suggests the closest), or one too long to be one.
    SegmentsNotFoundError
        A path-like name with no file there.
    SegmentsError
        A malformed row (file and line named), or no rows and ``allow_empty`` is false.
    ChecksumMismatchError
        The fetched file is not the pinned release (pass ``accept_new_upstream=True``).

    Examples
    --------
    >>> seg = load_segments("eval")  # doctest: +SKIP
    >>> len(seg), seg.n_labels  # doctest: +SKIP
    (20371, 51804)
    """
    if isinstance(split_or_path, os.PathLike):
        path = Path(split_or_path)
    else:
        key = str(split_or_path)
        path = Path(key)
        if not _is_file(path):
            if looks_like_path(key):
                raise SegmentsNotFoundError(f"segment list {key!r} not found (no such file)")
            split = canonical_split(key)
            path = fetch(SPLITS[split], root=root, base_url=base_url, force=force,
                         accept_new_upstream=accept_new_upstream, progress=bool(progress))
    return Segments.from_file(path, label_index=label_index, root=root, base_url=base_url,
                              unknown_labels=unknown_labels, on_bad_rows=on_bad_rows,
                              duplicates=duplicates, allow_empty=allow_empty, cache=cache,
                              progress=progress)


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except (OSError, ValueError):  # a name too long for the file system, a NUL byte
        return False


__all__ = ["load_segments"]
