"""Files a reader never sees half-written: write under a temporary name beside the target,
flush and fsync, then rename into place.

Temporary names are ``.<name>.<8 hex>.part`` in the target's folder (one file system, so the
rename is atomic). They are created with ``open(..., "x")``, so the final file gets the
permissions the umask allows, like any other file the user writes: a data root shared by a
group stays readable by it.
"""

from __future__ import annotations

import errno
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from .config import PathLike
from .errors import CacheError, DiskFullError

#: ``errno`` values of a write that found no room: the disk is full or the quota spent.
_FULL = (errno.ENOSPC, errno.EDQUOT)


def format_bytes(n: float) -> str:
    """``n`` bytes in the unit that fits (powers of 1000): ``512 B``, ``3.1 KB``, ``2.40 MB``.

    >>> format_bytes(512), format_bytes(3100), format_bytes(2_400_000), format_bytes(1.2e9)
    ('512 B', '3.1 KB', '2.40 MB', '1.20 GB')
    """
    n = float(n)
    text = f"{n:.0f} B"
    for unit, scale, digits in (("KB", 1e3, 1), ("MB", 1e6, 2), ("GB", 1e9, 2),
                                ("TB", 1e12, 2)):
        if abs(float(text.split()[0])) < 1000:
            break
        text = f"{n / scale:.{digits}f} {unit}"
    return text


def is_disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` says a write found no space (``ENOSPC``/``EDQUOT``, also as HDF5 and
    SQLite word it)."""
    if isinstance(exc, DiskFullError):
        return True
    if isinstance(exc, OSError) and exc.errno in _FULL:
        return True
    text = str(exc)
    return "errno = 28" in text or "database or disk is full" in text


def free_bytes(folder: PathLike) -> int | None:
    """Bytes free for this user on the disk holding ``folder`` (None when unknown)."""
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None


def disk_full(folder: PathLike, *, need: int | None = None, what: str = "a write",
              more: str = "") -> DiskFullError:
    """The :class:`DiskFullError` of a write into ``folder`` that needed ``need`` bytes;
    ``more`` adds a sentence (what the rest of the run needs)."""
    free = free_bytes(folder)
    needs = f" needs about {format_bytes(need)}" if need else " found no space"
    has = f", {format_bytes(free)} free" if free is not None else ""
    more = f". {more[0].upper()}{more[1:]}" if more else ""
    return DiskFullError(
        f"the disk holding {str(folder)!r} is full: {what}{needs}{has}{more}. Nothing "
        "half-written was kept: free space and run the same command again to resume",
        folder=str(folder), need=need, free=free, what=what)


def check_free_space(folder: PathLike, need: int, what: str = "a write") -> None:
    """Raise :class:`DiskFullError` before a write of ``need`` bytes that cannot fit."""
    free = free_bytes(folder)
    if free is not None and need > free:
        raise disk_full(folder, need=need, what=what)


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
    file); ``overwrite=False`` refuses to replace an existing ``dest``. A write that finds the
    disk full raises :class:`~audioset_data.errors.DiskFullError` naming the folder; ``dest``
    is then left as it was.
    """
    dest = Path(dest)
    tmp = temp_name(dest)
    try:
        yield tmp
        _publish(tmp, dest, durable=durable, overwrite=overwrite)
    except OSError as exc:
        if isinstance(exc, DiskFullError) or not is_disk_full(exc):
            raise
        tmp.unlink(missing_ok=True)  # the free space reported counts without it
        raise disk_full(dest.parent, what=f"writing {dest.name}") from exc
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


__all__ = [
    "atomic_path",
    "atomic_write",
    "check_free_space",
    "disk_full",
    "format_bytes",
    "free_bytes",
    "fsync_dir",
    "is_disk_full",
    "temp_name",
]
