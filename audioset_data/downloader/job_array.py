"""Cluster job arrays: which part of a segment list one job downloads (:class:`ShardSpec`),
and joining the parts' manifests into one cache (:func:`merge`).

Parts are numbered ``I/N`` from 1, as the file names say (``manifest.part-2-of-8.sqlite``).
Job arrays that count from 0 (Slurm's ``--array=0-7``) say so: ``--shard 0/8
--shard-from-zero`` on the command line, ``ShardSpec.parse("0/8", from_zero=True)`` or
``ShardSpec.from_zero(0, 8)`` in Python; a bare ``0/8`` is refused with that hint.
"""

from __future__ import annotations

import contextlib
import logging
import re
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa

from audioset_data.cache.index import write_index
from audioset_data.cache.manifest import MANIFEST_NAME, Manifest
from audioset_data.cache.reader import cache_dir
from audioset_data.cache.store import FolderLock
from audioset_data.config import PathLike
from audioset_data.errors import CacheError, ConfigError

from .plan import _crc32_many

logger = logging.getLogger("audioset_data.download")

_PART_FILE = re.compile(r"manifest\.(part-(\d+)-of-(\d+))\.sqlite")


@dataclass(frozen=True)
class ShardSpec:
    """This job's part of a job array: ``index`` of ``count``, counted from 1 (``2/8``)."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if not 1 <= self.index <= self.count:
            raise ConfigError(f"part {self.index} of {self.count}: parts count from 1 to "
                              f"{self.count}")

    @classmethod
    def from_zero(cls, index: int, count: int) -> ShardSpec:
        """Part ``index`` of ``count`` counted from 0 (``0`` is the first part)."""
        if not 0 <= index < count:
            raise ConfigError(f"shard {index}/{count} counted from 0: I must be between 0 and "
                              f"{count - 1}")
        return cls(index + 1, count)

    @classmethod
    def parse(cls, text: str | tuple[int, int] | ShardSpec, *,
              from_zero: bool = False) -> ShardSpec:
        """Read ``"I/N"`` or ``(I, N)``, I counted from 1 (from 0 with ``from_zero``).

        Raises
        ------
        ConfigError
            Not ``I/N``, or I outside the range (``0/8`` without ``from_zero`` says how to
            pass an array that counts from 0).
        """
        if isinstance(text, ShardSpec):
            return text
        try:
            i, n = (int(x) for x in (text.split("/") if isinstance(text, str) else text))
        except (ValueError, TypeError):
            raise ConfigError(f"shard {text!r} must look like I/N, e.g. 2/8") from None
        if n < 1:
            raise ConfigError(f"shard {text!r}: N must be at least 1")
        if from_zero:
            return cls.from_zero(i, n)
        if i == 0:
            raise ConfigError(
                f"shard {text!r}: parts count from 1 (1/{n} to {n}/{n}); for a job array "
                f"numbered from 0 (Slurm's --array=0-{n - 1}) add --shard-from-zero "
                "(ShardSpec.parse(..., from_zero=True) in Python)")
        if not 1 <= i <= n:
            raise ConfigError(f"shard {text!r}: I must be between 1 and {n}")
        return cls(i, n)

    def owns(self, key: str) -> bool:
        """Whether segment ``key`` belongs to this part (stable, independent of list order)."""
        return zlib.crc32(key.encode()) % self.count == self.index - 1

    def owns_many(self, keys: pa.Array | pa.ChunkedArray) -> np.ndarray:
        """:meth:`owns` for a whole array of keys at once (a boolean mask)."""
        return _crc32_many(keys) % self.count == self.index - 1

    @property
    def tag(self) -> str:
        """File-name tag of this part."""
        return f"part-{self.index}-of-{self.count}"


@dataclass
class MergeReport:
    """What :func:`merge` found and joined."""

    folder: Path
    #: the joined manifest
    manifest: Path
    #: N, the number of parts of the array
    count: int
    #: part numbers (from 1) merged, and those missing
    found: list[int]
    missing: list[int]
    #: per part merged: clips ``ok``, ``failed``, ``pending`` in its own manifest
    clips: dict[int, dict[str, int]] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        """Every part of the array was there."""
        return not self.missing

    def summary(self) -> str:
        """A few lines for people."""
        lines = [f"merged {len(self.found)} of {self.count} parts into {self.manifest}"]
        for i in self.found:
            c = self.clips.get(i, {})
            lines.append(f"  part {i}/{self.count}: {c.get('ok', 0)} cached, "
                         f"{c.get('failed', 0)} failed, {c.get('pending', 0)} pending")
        if self.missing:
            lines.append(f"  missing {len(self.missing)}: "
                         + ", ".join(f"part {i}/{self.count}" for i in self.missing)
                         + " (merge again once they are done)")
        return "\n".join(lines)


def _parts(folder: Path) -> tuple[int, dict[int, Path]]:
    """N and the part manifests of ``folder`` by part number; refuses a mix of arrays."""
    found: dict[int, dict[int, Path]] = {}
    for path in sorted(folder.glob("manifest.part-*.sqlite")):
        m = _PART_FILE.fullmatch(path.name)
        if m is None or not 1 <= int(m[2]) <= int(m[3]):
            raise CacheError(f"{path.name} in {str(folder)!r} is not a part manifest "
                             "(manifest.part-I-of-N.sqlite)")
        found.setdefault(int(m[3]), {})[int(m[2])] = path
    if not found:
        raise CacheError(f"no part manifests (manifest.part-*.sqlite) in {str(folder)!r}")
    if len(found) > 1:
        sizes = ", ".join(f"{len(v)} part(s) of {n}" for n, v in sorted(found.items()))
        raise CacheError(f"{str(folder)!r} holds parts of job arrays of different sizes ({sizes})"
                         "; merge one array: move the other's manifest.part-*.sqlite away")
    (count, parts), = found.items()
    return count, parts


def merge(split: str, root: PathLike | None = None, *,
          allow_partial: bool = False) -> MergeReport:
    """Join the part manifests of a job array (``--shard I/N`` runs) into ``manifest.sqlite``.

    Part files stay where they are; the joined manifest references them. Each part is the
    source of truth for its own files, so merging again after resuming a part, or once a
    missing part is done, brings the joined manifest up to date. Parts that are still being
    written are refused.

    Raises
    ------
    CacheError
        No part manifests; parts of arrays of different sizes; a part being written; or parts
        missing (named, with what was found) unless ``allow_partial`` is True
        (``--allow-partial``).
    """
    folder = cache_dir(split, root)
    count, parts = _parts(folder)
    found = sorted(parts)
    missing = [i for i in range(1, count + 1) if i not in parts]
    if missing and not allow_partial:
        shown = ", ".join(map(str, missing[:20])) + (" ..." if len(missing) > 20 else "")
        raise CacheError(
            f"{len(found)} of {count} parts found in {str(folder)!r} "
            f"(parts {', '.join(map(str, found))}); {len(missing)} missing (parts {shown}): "
            "merge once every job of the array has run, or pass --allow-partial "
            "(allow_partial=True) to merge the parts found")
    target = folder / MANIFEST_NAME
    report = MergeReport(folder, target, count, found, missing)
    with contextlib.ExitStack() as stack:
        stack.enter_context(FolderLock(folder / ".lock"))
        for i in found:
            stack.enter_context(FolderLock(folder / f".part-{i}-of-{count}-lock"))
        with Manifest.open(target) as out:
            for i in found:
                part = parts[i]
                with Manifest.open(part, readonly=True) as src:
                    meta = {k: src.get_meta(k) or "" for k in
                            ("format", "sample_rate", "clip_samples", "labels")}
                    report.clips[i] = src.counts()
                out.check_or_set_meta(meta)
                out.merge_from(part, prefix=f"part-{i}-of-{count}-")
                logger.info("merged %s", part.name)
            out.finish()
            write_index(out)  # the joined cache opens quickly the first time too
    if missing:
        logger.warning("merged %d of %d parts; parts %s are missing", len(found), count,
                       ", ".join(map(str, missing)))
    return report


__all__ = ["MergeReport", "ShardSpec", "merge"]
