"""Files a reader never sees half-written: write under a temporary name beside the target,
flush and fsync, then rename into place.

Temporary names are ``.<name>.<8 hex>.part`` in the target's folder (one file system, so the
rename is atomic). They are created with ``open(..., "x")``, so the final file gets the
permissions the umask allows, like any other file the user writes: a data root shared by a
group stays readable by it.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from .config import PathLike


def temp_name(dest: PathLike) -> Path:
    """A fresh temporary path beside ``dest``."""
    dest = Path(dest)
    return dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:8]}.part")


def fsync_dir(folder: PathLike) -> None:
    """Make a rename in ``folder`` durable."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _publish(tmp: Path, dest: Path, *, durable: bool, overwrite: bool) -> None:
    if durable:
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
    if not overwrite and dest.exists():
        from .errors import CacheError

        raise CacheError(f"refusing to overwrite {str(dest)!r}")
    os.replace(tmp, dest)
    if durable:
        fsync_dir(dest.parent)


@contextmanager
def atomic_path(
    dest: PathLike, *, durable: bool = True, overwrite: bool = True
) -> Iterator[Path]:
    """Yield a temporary path for a writer that opens files by name (h5py, numpy, copies);
    when the block ends without error, the file there replaces ``dest``.

    ``durable`` fsyncs the file and its folder (a power cut keeps either the old or the new
    file); ``overwrite=False`` refuses to replace an existing ``dest``.
    """
    dest = Path(dest)
    tmp = temp_name(dest)
    try:
        yield tmp
        _publish(tmp, dest, durable=durable, overwrite=overwrite)
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def atomic_write(
    dest: PathLike, mode: str = "wb", *, durable: bool = True, encoding: str | None = None
) -> Iterator[IO]:
    """Yield a file open for writing (``"wb"`` or ``"w"``); it replaces ``dest`` when the block
    ends without error, and vanishes otherwise."""
    if mode not in ("wb", "w"):
        raise ValueError(f"atomic_write writes new files: mode {mode!r} is not 'wb' or 'w'")
    with atomic_path(dest, durable=durable) as tmp:
        xmode = "xb" if mode == "wb" else "x"
        with open(tmp, xmode, encoding=encoding if mode == "w" else None) as fh:
            yield fh


__all__ = ["atomic_path", "atomic_write", "fsync_dir", "temp_name"]
