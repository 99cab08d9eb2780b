"""Where release files come from: a folder of ``.tfrecord`` files, one file, or a tar streamed
member by member (never extracted to disk), each file tagged with its split.

A file's split is the release folder it sits in (``bal_train`` → ``balanced``, ``eval``,
``unbal_train`` → ``unbalanced``), looked up from the nearest folder upward. With ``split``
given, the ``.tfrecord`` files directly in a folder named as the input belong to ``split`` (so
``import bal_train/ --split eval`` imports them as ``eval``), files in a release folder of another
split below the input are skipped, and files outside any release folder belong to ``split``;
without it such files are an error that names the flag.
"""

from __future__ import annotations

import hashlib
import io
import logging
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, Any

from audioset_data.config import PathLike
from audioset_data.errors import ConfigError

from .errors import FeaturesError
from .release import RELEASE_SPLITS

logger = logging.getLogger("audioset_data.features")

#: Tar members up to this size are read in one go (release files are under 2 MB).
WHOLE_MEMBER_BYTES = 64 << 20
_TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")


@dataclass
class SourceFile:
    """One ``.tfrecord`` file of a source, open for reading.

    ``display`` names it in messages (a path, or ``archive:member``); ``name`` is its path
    inside its split folder (the same for a folder and a tar of it), which orders files and
    names them in reports.
    """

    display: str
    name: str
    split: str
    stream: IO[bytes]
    size: int


class _HashingReader:
    """A read-only stream that hashes (sha256) and counts what passes through it."""

    def __init__(self, raw: IO[bytes]):
        self.raw = raw
        self.sha256 = hashlib.sha256()
        self.size = 0

    def read(self, n: int = -1) -> bytes:
        block = self.raw.read(n)
        self.sha256.update(block)
        self.size += len(block)
        return block

    def drain(self) -> None:
        """Read (and hash) what the tar reader left after its end-of-archive marker."""
        while self.read(1 << 20):
            pass


@dataclass
class ReleaseSource:
    """An input of the importer; iterate :meth:`files` once.

    ``info`` describes it for the store's metadata: ``kind`` (``tar``, ``folder``, ``file``),
    ``path``, ``size`` (bytes), and for a tar its ``sha256`` once :meth:`files` is exhausted.
    ``skipped`` counts files left out (other splits, non-``.tfrecord`` members) by reason.
    """

    path: Path
    split: str | None = None
    info: dict[str, Any] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)
    bytes_done: int = 0

    def __post_init__(self) -> None:
        self.path = Path(self.path)
        if not self.path.exists():
            raise FeaturesError(f"features input {str(self.path)!r} does not exist; pass a "
                                "folder of .tfrecord files, a .tar/.tar.gz of the release or "
                                "its address")
        if self.path.is_dir():
            kind = "folder"
            self._files = sorted(p for p in self.path.rglob("*.tfrecord") if p.is_file())
            size = sum(p.stat().st_size for p in self._files)
            if not self._files:
                raise FeaturesError(f"no .tfrecord files under {str(self.path)!r}")
        elif self.path.name.endswith(_TAR_SUFFIXES):
            kind, size = "tar", self.path.stat().st_size
        elif self.path.suffix == ".tfrecord":
            kind, size = "file", self.path.stat().st_size
            self._files = [self.path]
        else:
            raise FeaturesError(f"features input {str(self.path)!r} is neither a folder, a "
                                ".tfrecord file nor a .tar/.tar.gz archive")
        self.info = {"kind": kind, "path": str(self.path.resolve()), "size": size}

    @property
    def total_bytes(self) -> int:
        """Bytes :meth:`files` reads in all (the compressed size for a tar)."""
        return int(self.info["size"])

    def _skip(self, reason: str) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1

    def _assign(self, parts: tuple[str, ...], where: str, skip: int = 0
                ) -> tuple[str, str] | None:
        """``(split, name within split)`` of a file from its path parts (``skip``: leading
        parts that are not below the input, left out of the name); None to skip it."""
        for i in range(len(parts) - 2, -1, -1):
            release = RELEASE_SPLITS.get(parts[i])
            if release is not None:
                if self.split is not None and release != self.split:
                    self._skip(f"split {release} (not {self.split})")
                    return None
                return release, "/".join(parts[i + 1:])
        if self.split is None:
            raise ConfigError(
                f"cannot tell the split of {where}: it is not in a bal_train, eval or "
                "unbal_train folder; pass split= (--split NAME on the command line)")
        return self.split, "/".join(parts[skip:])

    def files(self) -> Iterator[SourceFile]:
        """Yield each ``.tfrecord`` file, open, in the source's order (name order for a
        folder, archive order for a tar); a file is valid until the next one is yielded."""
        if self.info["kind"] == "tar":
            yield from self._tar_files()
            return
        base = self.path if self.info["kind"] == "folder" else self.path.parent
        for p in self._files:
            rel = p.relative_to(base).parts
            if self.info["kind"] == "folder" and self.split is not None and len(rel) == 1:
                # files directly in the folder named on the command line belong to the split
                # named with it, whatever the folder is called
                got = (self.split, rel[0])
            elif self.info["kind"] == "folder":  # the input may be the split folder itself
                got = self._assign((base.name, *rel), repr(str(p)), skip=1)
            else:
                got = self._assign(rel, repr(str(p)))
            size = p.stat().st_size
            if got is not None:
                with open(p, "rb", buffering=1 << 20) as fh:
                    yield SourceFile(str(p), got[1], got[0], fh, size)
            self.bytes_done += size

    def _tar_files(self) -> Iterator[SourceFile]:
        with open(self.path, "rb") as raw:
            reader = _HashingReader(raw)
            try:
                # tarfile's default 10 kB buffer: its stream copies what it buffers on each
                # read, so a larger one is slower (measured: 1 MiB takes 4x as long)
                tar = tarfile.open(fileobj=reader, mode="r|*")  # type: ignore[call-overload]
            except tarfile.TarError as exc:
                raise FeaturesError(f"{str(self.path)!r} is not a readable tar archive ({exc})"
                                    ) from None
            found = 0
            try:
                with tar:
                    for member in tar:
                        self.bytes_done = reader.size
                        if not member.isfile():
                            continue
                        if not member.name.endswith(".tfrecord"):
                            self._skip("not a .tfrecord file")
                            continue
                        parts = PurePosixPath(member.name).parts
                        where = f"{str(self.path)!r} member {member.name!r}"
                        got = self._assign(parts, where)
                        if got is None:
                            continue
                        stream = tar.extractfile(member)
                        if stream is None:  # pragma: no cover - isfile() members have data
                            continue
                        if member.size <= WHOLE_MEMBER_BYTES:  # one read, not two per record
                            stream = io.BytesIO(stream.read())
                        found += 1
                        yield SourceFile(f"{self.path}:{member.name}", got[1], got[0], stream,
                                         member.size)
            except (tarfile.TarError, EOFError, OSError) as exc:
                raise FeaturesError(
                    f"{str(self.path)!r} is damaged or truncated ({exc}); fetch it again"
                ) from None
            reader.drain()
            self.bytes_done = reader.size
            self.info["sha256"] = reader.sha256.hexdigest()
            if not found and not self.skipped:
                raise FeaturesError(f"no .tfrecord files in {str(self.path)!r}")


def open_source(path: PathLike, split: str | None = None) -> ReleaseSource:
    """A :class:`ReleaseSource` for a folder, a ``.tfrecord`` file or a tar (``split``: a
    canonical split name, or None to read it from the release folders)."""
    return ReleaseSource(Path(path), split)


__all__ = ["ReleaseSource", "SourceFile", "open_source"]
