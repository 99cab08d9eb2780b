"""Keep a cache folder and its manifest in agreement, and check every stored byte.

The manifest is the source of truth for resuming, but the files are the truth of what is
stored. :func:`reconcile` runs before every download writes (quick: names, sizes, and each
file opened and its clip list read) and from ``audioset cache --repair`` (deep: every file's
own ``ytid``/``start`` placed):

- a file the manifest does not reference (left by a kill between publishing it and the manifest
  commit, or by a lost manifest) is adopted when it holds clips the manifest cannot account for,
  and removed only when every clip in it is cached in another file; a referenced file that
  holds more rows than the manifest places in it (the clips table emptied) gives back the
  clips the manifest lost;
- a referenced file that is missing or damaged (wrong size, does not open, clip list
  unreadable, other row count) is set aside as ``<name>.damaged`` (never deleted) and its
  clips go back to ``pending`` so they are fetched again;
- (deep) clips are re-pointed at the file and row that really hold them (e.g. two shards
  swapped), and clips no file holds go back to ``pending``.

:func:`verify_cache` reads every chunk of every file, so HDF5's Fletcher-32 checksums and the
per-clip CRC-32 of encoded audio catch flipped bytes; with ``repair=True`` the damaged clips go
back to ``pending``.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from audioset_data.config import PathLike
from audioset_data.errors import CacheError

from .index import write_index
from .manifest import MANIFEST_NAME, Manifest
from .shards import CACHE_FILE, PART_FILE, Layout, identity, keys_of, open_h5, read_encoded

logger = logging.getLogger(__name__)



@dataclass
class ReconcileReport:
    """What :func:`reconcile` changed."""

    adopted: dict[str, int] = field(default_factory=dict)  # file -> clips taken from it
    removed: list[str] = field(default_factory=list)  # orphans whose clips live elsewhere
    set_aside: dict[str, str] = field(default_factory=dict)  # file -> why
    released: int = 0  # clips sent back to pending
    repointed: int = 0  # clips whose file or row changed (deep)
    foreign: list[str] = field(default_factory=list)  # files of another layout, left alone

    @property
    def changed(self) -> bool:
        """Whether anything was done."""
        return bool(self.adopted or self.removed or self.set_aside or self.released
                    or self.repointed)

    def summary(self) -> str:
        """One line per kind of change."""
        lines = []
        if self.adopted:
            lines.append(f"adopted {sum(self.adopted.values())} clips the manifest had lost, "
                         f"from {len(self.adopted)} files")
        if self.removed:
            lines.append(f"removed {len(self.removed)} unreferenced files whose clips are "
                         "cached in other files")
        for name, why in self.set_aside.items():
            lines.append(f"set aside {name} ({why})")
        if self.repointed:
            lines.append(f"re-pointed {self.repointed} clips at the file and row holding them")
        if self.released:
            lines.append(f"{self.released} clips go back to pending (fetched again by the "
                         "next download)")
        if self.foreign:
            lines.append(f"left alone {len(self.foreign)} files written with other settings")
        return "\n".join(lines) or "nothing to repair"


def owner(prefix: str | None) -> Callable[[str], bool]:
    """Which published file names belong to a manifest: those of ``prefix`` (``""`` for a
    single-job cache, ``"part-2-of-8-"`` for a job of an array), or any name when None."""

    def own(name: str) -> bool:
        m = CACHE_FILE.fullmatch(name)
        return m is not None and (prefix is None or m.group("prefix") == prefix)

    return own


def _set_aside(folder: Path, name: str) -> None:
    path = folder / name
    if path.exists():
        target = folder / f"{name}.damaged"
        if target.exists():
            target = folder / f"{name}.{int(time.time())}.damaged"
        os.replace(path, target)
        logger.warning("set aside damaged cache file %s as %s", path, target.name)


def _labels_of(target: np.ndarray, mids: list[str]) -> list[str]:
    return [",".join(mids[j] for j in np.flatnonzero(row)) for row in target]


def reconcile(
    folder: PathLike,
    manifest: Manifest,
    layout: Layout,
    own: Callable[[str], bool],
    *,
    deep: bool = False,
) -> ReconcileReport:
    """Make ``manifest`` agree with the files of ``folder`` that ``own`` selects.

    The quick pass (``deep=False``) compares names and sizes, opens every referenced file and
    reads its clip list (damage that keeps the size, such as a zeroed header, is found here),
    and places only the clips of files the manifest does not reference; the deep pass also
    points the manifest at what every referenced file holds.
    """
    folder = Path(folder)
    report = ReconcileReport()
    for path in folder.iterdir():
        m = PART_FILE.fullmatch(path.name)
        if m is not None and own(m.group("name")):  # never published: nothing refers to it
            logger.info("removing unfinished file %s left by an interrupted run", path)
            path.unlink(missing_ok=True)
    on_disk = {p.name: p for p in folder.iterdir() if own(p.name) and p.is_file()}
    files = manifest.files()
    files = files[files["name"].map(own).astype(bool).to_numpy()]
    referenced = set(files["name"])

    bad: dict[str, str] = {}
    for name, size, n_rows in zip(files["name"], files["size"], files["n_rows"], strict=True):
        path = on_disk.get(name)
        if path is None:
            bad[name] = "file missing"
        elif pd.notna(size) and path.stat().st_size != int(size):
            bad[name] = f"size {path.stat().st_size} bytes, the manifest recorded {int(size)}"
        elif not deep:  # damage that keeps the size: open the file and read its clip list
            why = _unusable(path, layout, int(n_rows))
            if why:
                bad[name] = why
    for name, why in bad.items():
        if why != "file missing":
            _set_aside(folder, name)
            report.set_aside[name] = why
        else:
            logger.warning("cache file %s is missing; its clips will be fetched again",
                           folder / name)
    report.released += manifest.release_files(sorted(bad), "cache file missing or damaged")

    to_read = sorted(set(on_disk) - referenced)
    fill: set[str] = set()
    if deep:
        to_read += sorted(referenced - set(bad))
    else:
        # a referenced file holding more rows than the manifest places in it lost its clip
        # rows (an emptied or rolled-back clips table): it gives back the clips nothing else
        # caches and that were never sent back on purpose
        counts = manifest.placed_counts()
        fill = {name for name, n in zip(files["name"], files["n_rows"], strict=True)
                if name not in bad and counts.get(name, 0) < int(n)}
        to_read += sorted(fill)
    placed = _read_and_place(folder, manifest, layout, to_read, referenced, report, fill)
    if deep:
        stale = manifest.placements()
        stale = stale[(stale["file"].map(own).astype(bool) & ~stale["key"].isin(placed))
                      .to_numpy()]
        if len(stale):
            manifest.release_clips(list(stale["key"]), "no cache file holds this clip")
            report.released += len(stale)
    if report.changed:
        logger.warning("cache %s repaired: %s", folder, report.summary().replace("\n", "; "))
    return report


def _unusable(path: Path, layout: Layout, n_rows: int) -> str:
    """Why a referenced file cannot serve its clips ("" when it can): it does not open, its
    clip list does not read, or it holds another row count or layout than recorded."""
    try:
        ident = identity(path)
    except CacheError as exc:
        return str(exc).replace(f"cache file {str(path)!r} ", "")
    if ident.n_rows != n_rows:
        return f"holds {ident.n_rows} rows, the manifest recorded {n_rows}"
    if not layout.same_as(ident.layout):
        return "written with other settings than the manifest's"
    return ""


def _read_and_place(
    folder: Path,
    manifest: Manifest,
    layout: Layout,
    names: list[str],
    referenced: set[str],
    report: ReconcileReport,
    fill: set[str] | None = None,
) -> set[str]:
    """Read each file's own clip list and point the manifest at it; returns the keys placed.
    Files in ``fill`` are referenced ones that only give the clips the manifest lost."""
    fill = fill or set()
    placed: set[str] = set()
    for name in names:
        path = folder / name
        try:
            ident = identity(path)
        except CacheError as exc:
            if name in referenced:
                _set_aside(folder, name)
                report.set_aside[name] = str(exc)
                report.released += manifest.release_files([name], "cache file damaged")
            else:
                logger.warning("unreferenced file %s cannot be read (%s); left in place",
                               path, exc)
            continue
        if not layout.same_as(ident.layout):
            logger.warning("%s was written with other settings; left alone", path)
            report.foreign.append(name)
            continue
        keys = keys_of(ident.ytid, ident.start)
        where = manifest.locate(keys)
        # a referenced file holds what it holds; an unreferenced one gives only the clips
        # that no intact file caches (and the first file read keeps a clip found twice)
        if name in fill:
            lost = manifest.never_tried([k for k in keys if k not in where])
            take = [i for i, k in enumerate(keys) if k not in placed and k in lost]
            if not take:
                continue
        elif name in referenced:
            take = [i for i, k in enumerate(keys) if k not in placed]
        else:
            take = [i for i, k in enumerate(keys) if k not in placed and k not in where]
        if not take and name not in referenced:
            logger.info("removing %s: every clip in it is cached in another file", path)
            path.unlink(missing_ok=True)
            report.removed.append(name)
            continue
        try:
            with open_h5(path) as h5:
                labels = _labels_of(h5["target"][()][take], layout.label_mids)
        except OSError as exc:  # labels failing their checksum: the manifest keeps its own
            logger.warning("%s: labels unreadable (%s)", path, exc)
            labels = [""] * len(take)
        rows = [(keys[i], str(ident.ytid[i]), float(ident.start[i]), float(ident.end[i]),
                 labels[j], i, int(ident.length[i])) for j, i in enumerate(take)]
        kind = CACHE_FILE.fullmatch(name).group("kind")  # type: ignore[union-attr]
        manifest.adopt((name, kind, ident.n_rows, path.stat().st_size), rows)
        moved = sum(1 for i in take if where.get(keys[i]) != (name, i))
        if name in fill:
            report.adopted[name] = len(take)
        elif name in referenced:
            report.repointed += moved
        else:
            report.adopted[name] = len(take)
        placed.update(keys[i] for i in take)
    return placed


@dataclass
class VerifyReport:
    """Result of :func:`verify_cache`: files read, and every problem found."""

    folder: Path
    files: int = 0
    clips: int = 0
    problems: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(
        columns=["file", "row", "key", "problem"]))

    @property
    def ok(self) -> bool:
        """Whether nothing was wrong."""
        return self.problems.empty


def verify_cache(
    folder: PathLike,
    manifest_name: str = MANIFEST_NAME,
    *,
    repair: bool = False,
    progress: bool = True,
) -> VerifyReport:
    """Read every byte of every file the manifest references and check it.

    Checks each chunk's Fletcher-32 checksum (format 2 files), each encoded clip's CRC-32, that
    each file holds the rows and clips the manifest says. With ``repair=True`` the clips found
    damaged go back to ``pending`` and unreadable files are set aside, so the next download
    fetches them again.
    """
    from tqdm.auto import tqdm

    folder = Path(folder)
    problems: list[tuple[str, int, str, str]] = []
    with Manifest.open(folder / manifest_name, readonly=not repair) as manifest:
        files = manifest.files()
        placed = manifest.placements()
        report = VerifyReport(folder, files=len(files), clips=len(placed))
        by_file = dict(tuple(placed.groupby("file")))
        for name in tqdm(list(files["name"]), desc="verify", unit="file", disable=not progress):
            rows = by_file.get(name, placed.iloc[:0])
            problems += _verify_file(folder / name, rows)
        report.problems = pd.DataFrame(problems, columns=["file", "row", "key", "problem"])
        if repair and problems:
            whole = sorted({f for f, r, _, _ in problems if r < 0})
            manifest.release_files(whole, "cache file damaged (verify)")
            for name in whole:
                _set_aside(folder, name)
            keys = sorted({k for f, r, k, _ in problems if r >= 0 and k and f not in whole})
            manifest.release_clips(keys, "damaged bytes (verify)")
    return report


def _verify_file(path: Path, placed: pd.DataFrame) -> list[tuple[str, int, str, str]]:
    name = path.name
    try:
        h5 = open_h5(path)
    except CacheError as exc:
        return [(name, -1, "", str(exc))]
    out: list[tuple[str, int, str, str]] = []
    key_at = dict(zip(placed["row"].astype(int), placed["key"], strict=True))
    with h5:
        try:
            n = h5["ytid"].shape[0]
            if int(placed["row"].to_numpy().max(initial=-1)) >= n:
                return [(name, -1, "", f"the manifest places clips past the file's {n} rows")]
            if h5.attrs.get("format_version", 1) < 2:
                out.append((name, -1, "", "written before checksums (format 1): bytes unchecked"))
            for ds in ("ytid", "start", "end", "length"):
                h5[ds][()]
        except (OSError, KeyError) as exc:
            return [(name, -1, "", f"cannot read the clip list: {exc}")]
        keys = keys_of(h5["ytid"][()].astype("U11"), h5["start"][()])
        for row, key in key_at.items():
            if keys[row] != key:
                out.append((name, row, key, f"holds {keys[row]} where the manifest expects {key}"))
        out += _verify_rows(h5, name, key_at)
    return out


def _verify_rows(h5, name: str, key_at: dict[int, str]) -> list[tuple[str, int, str, str]]:  # noqa: ANN001
    """Read every row (chunk by chunk) and report those whose checksum fails."""
    out: list[tuple[str, int, str, str]] = []
    n = h5["ytid"].shape[0]
    target = h5["target"]
    step = target.chunks[0] if target.chunks else n
    for lo in range(0, n, max(1, step)):
        try:
            target[lo : lo + step]
        except OSError:
            out += [(name, r, key_at.get(r, ""), "labels fail their checksum")
                    for r in range(lo, min(n, lo + step))]
    if "waveform" in h5:
        ds = h5["waveform"]
        for r in range(n):
            try:
                ds[r]
            except OSError:
                out.append((name, r, key_at.get(r, ""), "audio fails its checksum"))
    else:
        for r in range(n):
            try:
                read_encoded(h5, r)
            except (CacheError, OSError) as exc:
                out.append((name, r, key_at.get(r, ""), f"audio damaged: {exc}"))
    return out


def repair_cache(folder: PathLike, manifest_name: str = MANIFEST_NAME) -> ReconcileReport:
    """Rebuild a cache folder's manifest from its files (``audioset cache --repair``).

    A missing manifest is created from the files' own settings; an unreadable one is set aside
    as ``<name>.damaged`` and rebuilt. Every file is then read and the manifest pointed at what
    it really holds (see :func:`reconcile` with ``deep=True``). Failure records kept in a
    readable manifest stay; those of a lost one are gone, so failed clips are tried again.
    """
    folder = Path(folder)
    path = folder / manifest_name
    prefix = None if manifest_name == MANIFEST_NAME else _part_prefix(manifest_name)
    own = owner(prefix)
    try:
        manifest = Manifest.open(path)
        manifest.counts()
    except (CacheError, Exception) as exc:  # noqa: BLE001 - any unreadable manifest is set aside
        if "manifest" in locals():
            manifest.close()
        if not path.exists():
            raise
        logger.warning("manifest %s cannot be read (%s); rebuilding it from the files", path, exc)
        for suffix in ("", "-wal", "-shm"):
            side = Path(f"{path}{suffix}")
            if side.exists():
                os.replace(side, folder / f"{side.name}.damaged")
        manifest = Manifest.open(path)
    with manifest:
        layout = _layout_for(folder, manifest, own)
        if layout is None:
            return ReconcileReport()
        report = reconcile(folder, manifest, layout, own, deep=True)
        manifest.finish()
        write_index(manifest)
    return report


def _part_prefix(manifest_name: str) -> str:
    tag = manifest_name[len("manifest."):-len(".sqlite")]
    return f"{tag}-"


def _layout_for(folder: Path, manifest: Manifest, own: Callable[[str], bool]) -> Layout | None:
    """The manifest's settings, or (for a new manifest) those of the first readable file."""
    fmt = manifest.get_meta("format")
    if fmt:
        labels = manifest.get_meta("labels") or ""
        return Layout(fmt, int(manifest.get_meta("sample_rate") or 0),
                      int(manifest.get_meta("clip_samples") or 0),
                      labels.split(",") if labels else [])
    for path in sorted(p for p in folder.iterdir() if own(p.name)):
        try:
            with open_h5(path) as h5:
                layout = Layout.of_file(h5)
        except (CacheError, KeyError):
            continue
        manifest.set_meta({"format": layout.fmt, "sample_rate": str(layout.sample_rate),
                           "clip_samples": str(layout.clip_samples),
                           "labels": ",".join(layout.label_mids)})
        return layout
    logger.warning("no readable cache file in %s: nothing to rebuild", folder)
    return None


__all__ = ["ReconcileReport", "VerifyReport", "owner", "reconcile", "repair_cache",
           "verify_cache"]
