"""Clip names and paths of a copy: a file name to its video id, start and end, the files a
copy's path names, and the cache folder an import writes."""

from __future__ import annotations

import glob
import re
from collections.abc import Sequence
from pathlib import Path

from audioset_data.cache.reader import cache_dir
from audioset_data.config import PathLike
from audioset_data.errors import ConfigError

#: Video id with an optional ``Y`` in front, then optionally ``_start`` and ``_end`` and an
#: extension: ``Y--PJHxphWEs.wav``, ``Y--PJHxphWEs_30.000.wav``, ``--PJHxphWEs_30000``.
_NAME = re.compile(r"Y?(?P<ytid>[A-Za-z0-9_-]{11})"
                   r"(?:_(?P<start>\d+(?:\.\d*)?)(?:_(?P<end>\d+(?:\.\d*)?))?)?"
                   r"(?:\.[A-Za-z0-9]+)?")


def parse_clip_name(name: str) -> tuple[str, float | None, float | None] | None:
    """``(ytid, start, end)`` of a clip file name (start and end None when the name has none),
    or None when the name is no video id.

    Folders in front are dropped (PaSST's ``00/Y<id>.mp3``, Hugging Face's
    ``audio/bal_train/<id>.flac``); then ``Y`` and the 11-character id, optionally ``_start``
    and ``_end`` in seconds, and an extension.

    >>> parse_clip_name("00/Y--PJHxphWEs.mp3")
    ('--PJHxphWEs', None, None)
    >>> parse_clip_name("--PJHxphWEs_30.000_40.000.flac")
    ('--PJHxphWEs', 30.0, 40.0)
    """
    base = re.split(r"[/\\]", name.strip())[-1]
    m = _NAME.fullmatch(base)
    if m is None:
        return None
    start, end = m.group("start"), m.group("end")
    return (m.group("ytid"), float(start) if start is not None else None,
            float(end) if end is not None else None)

def cache_folder(split: str | None, root: PathLike | None, folder: PathLike | None,
                 who: str) -> Path:
    """The cache an import writes: ``folder``, else the cache of ``split`` under the root."""
    if folder is not None:
        return Path(folder)
    if split is None:
        raise ConfigError(f"{who} needs a split name or a cache folder")
    return cache_dir(split, root)


def expand_paths(path: PathLike, suffixes: Sequence[str], what: str) -> list[Path]:
    """The files ``path`` names: the file itself, the files ending in ``suffixes`` under a
    folder (recursively, sorted), or those a glob pattern matches (sorted)."""
    p = Path(path)
    if p.is_file():
        return [p]
    if p.is_dir():
        found = sorted(f for f in p.rglob("*") if f.is_file() and f.name.endswith(tuple(suffixes)))
    else:
        found = sorted(Path(f) for f in glob.glob(str(path), recursive=True) if Path(f).is_file())
    if not found:
        kinds = " or ".join(f"*{s}" for s in suffixes)
        raise ConfigError(f"{what}: {str(path)!r} is no file, no folder holding {kinds} files, "
                          "and no glob pattern matching any; give the path of the copy")
    return found


__all__ = ["cache_folder", "expand_paths", "parse_clip_name"]
