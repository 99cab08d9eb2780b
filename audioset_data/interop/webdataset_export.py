"""A cached split as tar shards that ``webdataset`` reads as they are, and an index of them.

``to_webdataset(cache, out)`` writes ``out/<split>-000000.tar``, ``-000001.tar``, ... and
``out/<split>-shards.json``. Each clip is two members named by its key (``<ytid>_<start ms>``,
never a dot in it: webdataset cuts a member's name at its first dot into key and field):

- ``<key>.flac`` / ``<key>.opus``: the clip's encoded bytes exactly as the cache stores them
  (no decode, no re-encode); a ``pcm16`` cache's samples become ``<key>.wav`` (the same int16
  samples behind a 44-byte WAV header);
- ``<key>.json``: ``key``, ``ytid``, ``start``, ``end``, ``length`` (true samples),
  ``sample_rate``, ``clip_samples``, ``codec`` (the cache's format), ``labels`` (mids),
  ``label_indices`` (columns of the cache's label order) and ``names``.

The index (``format`` ``audioset-webdataset``, ``version`` 1) lists every shard with its clip
count, size and sha256, beside the split's sample rate, codec, label mids and the number of
clips carrying each label, so a job of many processes can assign shards to ranks, know its
epoch length and check what it reads (:class:`audioset_data.loaders.shards.ShardDataset`).

Shards close at ``shard_size`` bytes (default 256 MB; see :data:`DEFAULT_SHARD_SIZE`). Each is
written under a temporary name and renamed into place, and a progress file records finished
shards, so an interrupted export resumes after the last finished shard; the index appears last,
once every shard is in place. Shards are byte-for-byte reproducible (fixed member times and
owners), so a shard written again has the same sha256.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
import tarfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import numpy as np
from tqdm.auto import tqdm

from audioset_data.config import PathLike
from audioset_data.errors import AudioSetError, ConfigError, ExportError
from audioset_data.fileio import atomic_path, atomic_write

from . import (
    audio_bytes,
    clip_batches,
    clip_table,
    label_names,
    positions_of,
    target_folder,
    unwritable,
)

if TYPE_CHECKING:
    from audioset_data.cache.reader import AudioSetCache
    from audioset_data.segments.labels import LabelIndex

logger = logging.getLogger(__name__)

#: ``format`` and ``version`` of the index file.
INDEX_FORMAT = "audioset-webdataset"
INDEX_VERSION = 1
#: The index of split ``s`` is ``<s>-shards.json`` beside its shards.
INDEX_SUFFIX = "-shards.json"
#: Default shard size, 256 MB. Object stores answer each GET after tens of milliseconds and
#: then stream at about 50-200 MB/s per connection: a 256 MB shard takes seconds, so the
#: request costs well under 5 % of it, while one shard still fits a worker's buffer, is cheap to
#: redo when an export or an upload is cut off, and the full unbalanced split (about 2 M clips,
#: some 640 GB as 32 kHz FLAC) makes some 2,500 shards, plenty for hundreds of readers.
#: webdataset's authors recommend 100 MB to 1 GB; use a smaller size for a small split that
#: many ranks × DataLoader workers read (the balanced split, ~7 GB, makes only ~28 shards).
DEFAULT_SHARD_SIZE = 256_000_000
#: Member extension of each cache format.
EXTENSIONS = {"pcm16": "wav", "flac": "flac", "opus": "opus"}
#: Units ``shard_size`` takes: powers of 1000 (``MB``) and of 1024 (``MiB``).
_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
          "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}
_TAR_BLOCK = 512
#: Clips read at a time from a pcm16 cache.
_BATCH = 64


@dataclass(frozen=True)
class Shard:
    """One written shard: its file name, clips, bytes and sha256."""

    name: str
    clips: int
    bytes: int
    sha256: str

    def to_dict(self) -> dict[str, Any]:
        """The shard's entry in the index."""
        return {"name": self.name, "clips": self.clips, "bytes": self.bytes,
                "sha256": self.sha256}


@dataclass(frozen=True)
class WebDatasetExport:
    """What :func:`to_webdataset` wrote: the index file and its shards."""

    index: Path
    shards: list[Shard]

    @property
    def clips(self) -> int:
        """Clips in all shards."""
        return sum(s.clips for s in self.shards)

    @property
    def paths(self) -> list[Path]:
        """The shard files, in index order (what ``webdataset.WebDataset`` takes)."""
        return [self.index.parent / s.name for s in self.shards]


def parse_size(size: int | str) -> int:
    """Bytes of ``size``: an integer, or text such as ``256MB``, ``1.5GB``, ``512MiB``.

    >>> parse_size("256MB"), parse_size("1GiB"), parse_size(4096)
    (256000000, 1073741824, 4096)
    """
    if isinstance(size, int | np.integer) and not isinstance(size, bool):
        value = int(size)
    else:
        m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*", str(size))
        unit = m.group(2).upper() if m else ""
        if not m or unit not in _UNITS:
            raise ConfigError(f"shard size {size!r} is not a size: give bytes or a number with "
                              "KB, MB, GB (or KiB, MiB, GiB), such as 256MB")
        value = int(float(m.group(1)) * _UNITS[unit])
    if value < 1:
        raise ConfigError(f"shard size {size!r} must be at least one byte")
    return value


def shard_name(split: str, number: int) -> str:
    """File name of shard ``number`` of ``split``."""
    return f"{split}-{number:06d}.tar"


def index_name(split: str) -> str:
    """File name of the index of ``split``."""
    return f"{split}{INDEX_SUFFIX}"


def to_webdataset(
    cache: AudioSetCache,
    out: PathLike,
    *,
    split: str | None = None,
    label_index: LabelIndex | None = None,
    positions: Sequence[int] | np.ndarray | None = None,
    shard_size: int | str = DEFAULT_SHARD_SIZE,
    overwrite: bool = False,
    progress: bool = True,
) -> WebDatasetExport:
    """Write a cached split as webdataset tar shards and their index in ``out``.

    Parameters
    ----------
    cache
        The split, from :func:`~audioset_data.cache.reader.open_cache`.
    out
        Folder for the shards and the index (several splits may share one).
    split
        Prefix of the file names (default: the cache folder's name).
    label_index
        Source of the display names (``names`` holds nulls without one).
    positions
        Cache positions to export, in this order (all clips when None).
    shard_size
        Bytes at which a shard closes (an int, or text such as ``"256MB"``); a shard holds at
        least one clip.
    overwrite
        Replace an earlier export of ``split`` in ``out``, finished or not, made from other
        clips or settings.
    progress
        Show a progress bar.

    Returns
    -------
    WebDatasetExport
        The index path and the shards. When ``out`` already holds this very export (same clips,
        settings and shards), it is returned as it is.

    Raises
    ------
    ConfigError
        A setting is invalid.
    ExportError
        ``out`` cannot be used, or holds another export of ``split`` (``overwrite=True``
        replaces it) or shard files no progress record accounts for.
    CacheError
        A clip cannot be read from the cache.
    """
    split = split or cache.folder.name
    if not re.fullmatch(r"[A-Za-z0-9_-][A-Za-z0-9_.-]*", split):
        raise ConfigError(f"split={split!r}: shard names need letters, digits, '_', '-', '.'")
    size = parse_size(shard_size)
    pos = positions_of(cache, positions)
    out = target_folder(out)
    meta = clip_table(cache, pos)
    keys = meta["key"].to_pylist()
    bad = next((k for k in keys if "." in k or "/" in k), None)
    if bad is not None:  # ytids are [A-Za-z0-9_-]; a key with a dot would split in webdataset
        raise ExportError(f"clip key {bad!r} holds a '.' or '/': webdataset would cut it "
                          "there; such a key is not a YouTube segment key")
    settings = {
        "split": split, "codec": cache.format, "sample_rate": int(cache.sample_rate),
        "clip_samples": int(cache.clip_samples), "label_mids": list(cache.label_mids),
        "shard_size": size,
        "clips_sha256": hashlib.sha256("\n".join(keys).encode()).hexdigest(),
    }
    index_path = out / index_name(split)
    progress_path = out / f".{index_name(split)}.progress"
    try:
        if overwrite:
            _remove_export(out, split)
        elif index_path.exists():
            return _existing(index_path, settings)
        done = _resume(out, split, progress_path, settings)
        shards = _write_shards(cache, out, split, pos, meta, label_index, size, settings,
                               progress_path, done, progress)
        counts = np.asarray(cache.targets()[pos].sum(axis=0)).ravel() if len(pos) \
            else np.zeros(len(cache.label_mids), dtype=np.int64)
        index = {"format": INDEX_FORMAT, "version": INDEX_VERSION, **settings,
                 "extension": EXTENSIONS[cache.format], "clips": int(len(pos)),
                 "label_counts": [int(c) for c in counts],
                 "shards": [s.to_dict() for s in shards]}
        with atomic_write(index_path, "w", encoding="utf-8") as fh:
            json.dump(index, fh, indent=1)
        progress_path.unlink(missing_ok=True)
    except OSError as exc:
        if isinstance(exc, AudioSetError):
            raise
        raise unwritable(out, exc) from None
    logger.info("wrote %d clips of %s in %d shards to %s", len(pos), cache.folder,
                len(shards), out)
    return WebDatasetExport(index_path, shards)


def _shard_pattern(split: str) -> re.Pattern[str]:
    return re.compile(re.escape(split) + r"-\d{6}\.tar")


def _remove_export(out: Path, split: str) -> None:
    """Remove every file of an earlier export of ``split`` in ``out`` (and nothing else)."""
    ours = _shard_pattern(split)
    for p in out.iterdir():
        if (ours.fullmatch(p.name) or p.name in (index_name(split),
                                                 f".{index_name(split)}.progress")):
            p.unlink()


def _existing(index_path: Path, settings: dict[str, Any]) -> WebDatasetExport:
    """The finished export in ``index_path`` when it is this one, else :class:`ExportError`."""
    try:
        index = json.loads(index_path.read_text(encoding="utf-8"))
        same = all(index.get(k) == v for k, v in settings.items())
        shards = [Shard(s["name"], int(s["clips"]), int(s["bytes"]), s["sha256"])
                  for s in index["shards"]]
    except (ValueError, KeyError, TypeError):
        same, shards = False, []
    lost = [s.name for s in shards
            if not (index_path.parent / s.name).is_file()
            or (index_path.parent / s.name).stat().st_size != s.bytes]
    if not same or lost:
        why = (f"its shard {lost[0]} is missing or changed" if same
               else "it was made from other clips or settings")
        raise ExportError(f"{str(index_path)!r} holds an export of {settings['split']!r} and "
                          f"{why}; pass overwrite=True to write it again")
    logger.info("%s is up to date", index_path)
    return WebDatasetExport(index_path, shards)


def _resume(out: Path, split: str, progress_path: Path, settings: dict[str, Any]
            ) -> list[Shard]:
    """Finished shards of an interrupted export (checked by size), or none for a new one."""
    ours = _shard_pattern(split)
    if not progress_path.exists():
        found = sorted(p.name for p in out.iterdir() if ours.fullmatch(p.name))
        if found:
            raise ExportError(f"{str(out)!r} holds {len(found)} shard files of {split!r} "
                              f"(e.g. {found[0]}) that no export in progress recorded; pass "
                              "overwrite=True to replace them")
        with atomic_write(progress_path, "w", encoding="utf-8") as fh:
            fh.write(json.dumps({"settings": settings}) + "\n")
        return []
    lines = progress_path.read_text(encoding="utf-8").splitlines()
    try:
        header = json.loads(lines[0]) if lines else {}
    except ValueError:
        header = {}
    if header.get("settings") != settings:
        raise ExportError(f"{str(out)!r} holds an unfinished export of {split!r} made from "
                          "other clips or settings; pass overwrite=True to start it again")
    done: list[Shard] = []
    for line in lines[1:]:
        try:
            shard = Shard(**json.loads(line))
        except (ValueError, TypeError):
            break  # a record cut off by the interruption: its shard is written again
        path = out / shard.name
        if (shard.name != shard_name(split, len(done)) or not path.is_file()
                or path.stat().st_size != shard.bytes):
            break
        done.append(shard)
    if len(done) != len(lines) - 1:  # keep the records that still hold
        with atomic_write(progress_path, "w", encoding="utf-8") as fh:
            fh.write("\n".join([lines[0], *(json.dumps(s.to_dict()) for s in done)]) + "\n")
    if done:
        logger.info("resuming the export of %s after %d finished shards", split, len(done))
    return done


@dataclass
class _Clip:
    key: str
    audio: bytes
    info: bytes

    @property
    def tar_bytes(self) -> int:
        """Bytes the clip's two members take in a tar file."""
        blocks = sum(-(-len(b) // _TAR_BLOCK) for b in (self.audio, self.info))
        return (2 + blocks) * _TAR_BLOCK


def _clips(cache: AudioSetCache, pos: np.ndarray, meta: Any,
           label_index: LabelIndex | None) -> Iterator[_Clip]:
    """The export's clips from position ``pos[0]`` on, encoded as they go into the shards."""
    mids = list(cache.label_mids)
    names = np.array(label_names(mids, label_index), dtype=object)
    targets = cache.targets()
    rate, fmt = int(cache.sample_rate), cache.format
    cols = {k: meta[k].to_pylist() for k in ("key", "ytid", "start", "end")}

    def info(j: int, p: int) -> bytes:
        labels = targets[int(p)].indices
        labels = np.sort(labels)
        return json.dumps({
            "key": cols["key"][j], "ytid": cols["ytid"][j], "start": cols["start"][j],
            "end": cols["end"][j], "length": int(cache.lengths[p]), "sample_rate": rate,
            "clip_samples": int(cache.clip_samples), "codec": fmt,
            "labels": [mids[i] for i in labels], "label_indices": labels.tolist(),
            "names": names[labels].tolist(),
        }).encode()

    if fmt == "pcm16":
        done = 0
        for batch_pos, clips in clip_batches(cache, pos, _BATCH):
            for w, n, p in zip(clips["waveform"], clips["length"], batch_pos, strict=True):
                yield _Clip(cols["key"][done], audio_bytes(w[:n], rate, "wav"), info(done, p))
                done += 1
        return
    for j, p in enumerate(pos):
        yield _Clip(cols["key"][j], cache.encoded(int(p)), info(j, p))


class _HashingWriter(io.RawIOBase):
    """A write-only file that hashes and counts what passes through it."""

    def __init__(self, fh: IO[bytes]):
        super().__init__()
        self._fh = fh
        self.sha256 = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        self._fh.write(view)
        self.sha256.update(view)
        self.size += len(view)
        return len(view)


def _padded(n: int) -> int:
    """Bytes of a tar file whose blocks take ``n`` bytes: whole records of 10240 bytes."""
    return -(-n // tarfile.RECORDSIZE) * tarfile.RECORDSIZE


def _member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    info.mtime = 0  # fixed times and owners: the same clips always give the same bytes
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    tar.addfile(info, io.BytesIO(data))


def _write_shards(cache: AudioSetCache, out: Path, split: str, pos: np.ndarray, meta: Any,
                  label_index: LabelIndex | None, size: int, settings: dict[str, Any],
                  progress_path: Path, done: list[Shard], progress: bool) -> list[Shard]:
    """Write the shards after ``done``, recording each in the progress file once in place."""
    shards = list(done)
    start = sum(s.clips for s in done)
    ext = EXTENSIONS[cache.format]
    clips = _clips(cache, pos[start:], meta.slice(start), label_index)
    pending = next(clips, None)
    bar = tqdm(total=len(pos), initial=start, unit="clip", desc=f"export {split}",
               disable=not progress)
    try:
        while pending is not None:
            name = shard_name(split, len(shards))
            with atomic_path(out / name) as tmp, open(tmp, "xb") as fh:
                sink = _HashingWriter(fh)
                n, used = 0, 2 * _TAR_BLOCK  # the end-of-archive blocks
                with tarfile.open(fileobj=sink, mode="w|", format=tarfile.USTAR_FORMAT) as tar:
                    while pending is not None and (n == 0 or _padded(used + pending.tar_bytes)
                                                   <= size):
                        _member(tar, f"{pending.key}.{ext}", pending.audio)
                        _member(tar, f"{pending.key}.json", pending.info)
                        used += pending.tar_bytes
                        n += 1
                        bar.update(1)
                        pending = next(clips, None)
                fh.flush()
            shard = Shard(name, n, sink.size, sink.sha256.hexdigest())
            shards.append(shard)
            with open(progress_path, "a", encoding="utf-8") as log:
                log.write(json.dumps(shard.to_dict()) + "\n")
                log.flush()
                os.fsync(log.fileno())
            logger.debug("wrote %s (%d clips)", name, n)
    finally:
        bar.close()
    return shards


__all__ = [
    "DEFAULT_SHARD_SIZE",
    "EXTENSIONS",
    "INDEX_FORMAT",
    "INDEX_SUFFIX",
    "INDEX_VERSION",
    "Shard",
    "WebDatasetExport",
    "index_name",
    "parse_size",
    "shard_name",
    "to_webdataset",
]
