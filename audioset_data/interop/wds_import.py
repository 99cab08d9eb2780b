"""Read a split from local webdataset tar shards (such as ``confit/audioset-16khz-wds``) into
the cache.

A webdataset shard is a plain tar whose members are grouped into samples by their *key*: the
member name up to the first dot of its file name, the rest being the field
(``shard-00000/sample-000000001.wav`` + ``...json``). ``confit/audioset-16khz-wds`` keeps its
configs in folders of shards (``20k/train/*.tar``, ``500k/...``, ``2m/...``, ``*/test/*.tar``),
its audio resampled to 16 kHz, and beside each clip a JSON with the YouTube ``id`` and the
``label`` names (and their ``label_id`` numbers). Other packers name the key after the clip
(``Y<ytid>_<start>_<end>``) or put mids in ``labels``; all of these are read:

audio
    the first of ``flac``, ``wav``, ``mp3``, ``ogg``, ``opus`` or ``m4a`` in the sample;
video id and times
    from the JSON (``ytid``, ``youtube_id``, ``video_id``, ``id``; ``start`` / ``start_time`` /
    ``start_seconds``; ``end``...), else parsed from the key; without a start time the
    segment list gives it;
labels
    from the JSON's ``labels``, ``label``, ``mids``, ``human_labels``, ``label_ids`` or
    ``label_id``: mids, display names or label-index columns, a list or one value.

Members are only read, never extracted: their names never become paths, links and other
non-file members are ignored, and an oversized member counts as damaged. A FLAC (or Opus)
clip at the cache's rate and in its format goes in as it is; the rest is decoded once (see
:mod:`.copies.decoding`). The cache's rate defaults to the first clip's (16 kHz for confit).
"""

from __future__ import annotations

import json
import logging
import tarfile
import zlib
from collections import Counter
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm.auto import tqdm

from audioset_data.config import PathLike
from audioset_data.errors import CacheError
from audioset_data.segments.labels import LabelIndex

from .copies.importer import import_copy
from .copies.names import cache_folder, expand_paths, parse_clip_name
from .copies.report import DAMAGED, ImportReport
from .copies.rows import Copy, label_columns, rows_to_matrix

if TYPE_CHECKING:
    from audioset_data.segments.table import Segments

logger = logging.getLogger(__name__)

#: Audio fields of a sample, the first present is imported.
AUDIO_FIELDS = ("flac", "wav", "mp3", "ogg", "opus", "m4a")
_ID_FIELDS = ("ytid", "youtube_id", "video_id", "yt_id", "id")
_START_FIELDS = ("start", "start_time", "start_seconds")
_END_FIELDS = ("end", "end_time", "end_seconds")
_LABEL_FIELDS = ("labels", "label", "mids", "human_labels", "label_ids", "label_id")
#: Largest JSON member read (a clip's metadata is a few hundred bytes).
MAX_JSON_BYTES = 1 << 20
#: Largest audio member read (a 10 s clip is well under 10 MB in any codec).
MAX_AUDIO_BYTES = 64 << 20
#: Why a sample is skipped when its JSON cannot be used.
BAD_METADATA = "metadata unreadable (the JSON member does not parse)"


def import_webdataset(
    path: PathLike,
    split: str | None = None,
    root: PathLike | None = None,
    *,
    folder: PathLike | None = None,
    segments: Segments | None = None,
    label_index: LabelIndex | None = None,
    fmt: str | None = None,
    sample_rate: int | None = None,
    take_labels: str = "copy",
    batch_size: int = 64,
    shard_size: int = 1000,
    progress: bool | None = None,
) -> ImportReport:
    """Import the clips of webdataset tar shards into the cache of ``split``.

    Parameters
    ----------
    path
        One ``.tar`` shard, a folder of them (searched recursively), or a glob pattern
        (``20k/test/*.tar``).
    split, root, folder
        Cache to write: the cache of ``split`` under the data root, or an explicit folder.
    segments
        The segment list of the split: rows it does not name are skipped as unlisted, each
        row's labels are checked against it, and it gives the start of clips whose key and
        metadata name none. Needed when any sample lacks a start time.
    label_index
        The index the labels are looked up in (default: the official one).
    fmt
        Cache format (None: the existing cache's, else FLAC).
    sample_rate
        Cache sample rate (None: the existing cache's, else the first clip's).
    take_labels
        ``"copy"`` keeps each row's own labels, ``"list"`` takes the segment list's.
    batch_size, shard_size
        Clips written at a time; clips per cache shard.
    progress
        Show progress bars (None: when writing to a terminal).

    Returns
    -------
    ImportReport
        Counts, the rows skipped with their reasons, damaged rows named (``shard: key``).

    Raises
    ------
    CacheError
        A shard is not a readable tar, or the cache was made with other settings.
    ConfigError
        No cache or no shards given, or clips without start time and no segment list.
    """
    target_folder = cache_folder(split, root, folder, "import_webdataset")
    if label_index is None:
        label_index = LabelIndex.load(root=root)
    shards = expand_paths(path, (".tar",), "webdataset copy")
    copy = _copy(shards, str(path), label_index, progress)
    return import_copy(copy, target_folder, segments=segments, label_index=label_index,
                       fmt=fmt, default_fmt="flac", sample_rate=sample_rate,
                       take_labels=take_labels, batch_size=batch_size, shard_size=shard_size,
                       progress=progress)


def split_member(name: str) -> tuple[str, str]:
    """``(key, field)`` of a member name as webdataset groups them: the key is the name up to
    the first dot of its file name, folders included; the field the rest, lower-cased.

    >>> split_member("shard-00000/sample-000000001.json")
    ('shard-00000/sample-000000001', 'json')
    >>> split_member("Y--PJHxphWEs_30.000_40.000.flac")
    ('Y--PJHxphWEs_30', '000_40.000.flac')
    """
    folder, _, base = name.rpartition("/")
    stem, dot, rest = base.partition(".")
    return (f"{folder}/{stem}" if folder else stem), rest.lower() if dot else ""


def _key_and_field(name: str) -> tuple[str, str]:
    """Key and field of a member, reading a start time with decimals (``<id>_30.000.flac``)
    as part of the key rather than the first dot of the name."""
    key, fld = split_member(name)
    if fld and fld not in AUDIO_FIELDS and fld != "json":
        for known in (*AUDIO_FIELDS, "json"):
            if fld.endswith("." + known):
                return f"{key}.{name[len(key) + 1:len(name) - len(known) - 1]}", known
    return key, fld


def _first(meta: dict[str, Any], fields: tuple[str, ...]) -> Any:
    return next((meta[f] for f in fields if meta.get(f) not in (None, "", [])), None)


def _labels(value: Any, label_index: LabelIndex) -> tuple[list[int], list[str]]:
    """Label columns of a JSON label value: a list, one mid / name / column, or a
    comma-separated string of them (a name holding a comma counts whole when it is one)."""
    if value is None:
        return [], []
    if isinstance(value, str):
        found, bad = label_columns([value], label_index)
        if found:
            return found, []
        value = [v.strip() for v in value.split(",") if v.strip()]
    elif not isinstance(value, list):
        value = [value]
    return label_columns(value, label_index)


def _ids(key: str, meta: dict[str, Any]) -> tuple[str, float | None, float | None] | None:
    """Video id, start and end of a sample: from its metadata, else from its key."""
    vid = _first(meta, _ID_FIELDS)
    parsed = parse_clip_name(str(vid)) if vid is not None else None
    if parsed is None:
        parsed = parse_clip_name(PurePosixPath(key).name)
    if parsed is None:
        return None
    ytid, start, end = parsed
    try:
        s, e = _first(meta, _START_FIELDS), _first(meta, _END_FIELDS)
        start = float(s) if s is not None else start
        end = float(e) if e is not None else end
    except (TypeError, ValueError):
        return None
    return ytid, start, end


def _copy(shards: list[Path], what: str, label_index: LabelIndex,
          progress: bool | None) -> Copy:
    """Index every shard: one row per sample, its metadata read now, its audio member kept
    for reading later."""
    names: list[str] = []
    ids: list[tuple[str, float | None, float | None] | None] = []
    sources: list[str] = []
    cols: list[list[int]] = []
    reasons: list[str] = []
    # where each sample's audio member lies: shard, offset of its data, size (-1: none);
    # numbers rather than TarInfo objects, which would take a kilobyte a sample
    members: list[tuple[int, int, int]] = []
    details: dict[int, str] = {}
    unknown: Counter[str] = Counter()
    for s, shard in enumerate(tqdm(shards, unit="shard", desc="index", dynamic_ncols=True,
                                   disable=None if progress is None else not progress)):
        samples, broken = _index(shard)
        if broken:  # what was indexed before the damage is still imported
            logger.warning("%s: %s", shard, broken)
            details[len(names)] = broken
            names.append(shard.name)
            ids.append(None)
            sources.append(shard.name)
            members.append((s, 0, -1))
            cols.append([])
            reasons.append(DAMAGED)
        for key, sample in samples.items():
            if "json" not in sample and "audio" not in sample:
                continue
            meta = sample.get("json", {})
            audio = sample.get("audio", {})
            info = next((audio[f] for f in AUDIO_FIELDS if f in audio), None)
            names.append(key if info is None else info.name)
            sources.append(shard.name)
            members.append((s, 0, -1) if info is None else (s, info.offset_data, info.size))
            if meta is None:
                ids.append(None)
                cols.append([])
                reasons.append(BAD_METADATA)
                continue
            ids.append(_ids(key, meta))
            found, bad = _labels(_first(meta, _LABEL_FIELDS), label_index)
            cols.append(found)
            unknown.update(bad)
            reasons.append("")
    copy = Copy(what, names, ids, rows_to_matrix(cols, len(label_index)),
                lambda rows: _read(shards, members, names, rows), sources=sources,
                reason=np.array(reasons, dtype=object), unknown_labels=dict(unknown),
                details=details)
    return copy


def _index(shard: Path) -> tuple[dict[str, dict[str, Any]], str]:
    """The samples of a shard (metadata read, audio members noted), and what broke the
    reading of it (``""``: nothing)."""
    samples: dict[str, dict[str, Any]] = {}
    try:
        with tarfile.open(shard, "r:*") as tar:
            for info in tar:
                if not info.isfile():  # links, folders, devices: never followed
                    continue
                key, fld = _key_and_field(info.name)
                if fld == "json":
                    samples.setdefault(key, {})["json"] = _read_json(tar, info)
                elif fld in AUDIO_FIELDS:
                    samples.setdefault(key, {}).setdefault("audio", {})[fld] = info
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        return samples, f"not a readable tar past {len(samples)} samples ({exc})"
    return samples, ""


def _read_json(tar: tarfile.TarFile, info: tarfile.TarInfo) -> dict[str, Any] | None:
    """A sample's metadata, or None when it is too large or does not parse as an object."""
    if info.size > MAX_JSON_BYTES:
        return None
    fh = tar.extractfile(info)
    if fh is None:
        return None
    try:
        meta = json.loads(fh.read().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    return meta if isinstance(meta, dict) else None


def _read(shards: list[Path], members: list[tuple[int, int, int]], names: list[str],
          rows: np.ndarray) -> Iterator[tuple[int, bytes | CacheError | None]]:
    """The audio bytes of ``rows`` (increasing), each shard opened once; a member that cannot
    be read comes as the error, so its row counts as damaged."""
    tar: tarfile.TarFile | None = None
    opened, failed = -1, ""
    try:
        for r in rows.tolist():
            s, offset, size = members[r]
            if size < 0:
                yield r, None
                continue
            if size > MAX_AUDIO_BYTES:
                yield r, CacheError(f"member {names[r]!r} holds {size} bytes, more than a clip "
                                    f"({MAX_AUDIO_BYTES} at most)")
                continue
            if s != opened:
                if tar is not None:
                    tar.close()
                tar, opened, failed = None, s, ""
                try:
                    tar = tarfile.open(shards[s], "r:*")
                except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
                    failed = str(exc)
            try:
                if tar is None:
                    raise tarfile.ReadError(failed)
                info = tarfile.TarInfo(names[r])  # a regular member at the offset indexed
                info.offset_data, info.size = offset, size
                fh = tar.extractfile(info)
                data = fh.read() if fh is not None else b""
                if len(data) != size:
                    raise EOFError(f"{len(data)} of its {size} bytes are there")
                yield r, data
            except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
                yield r, CacheError(f"member {names[r]!r} of {shards[s].name} cannot be "
                                    f"read: {exc}")
    finally:
        if tar is not None:
            tar.close()


__all__ = ["AUDIO_FIELDS", "BAD_METADATA", "import_webdataset", "split_member"]
