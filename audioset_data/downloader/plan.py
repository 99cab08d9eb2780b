"""Planning a download: which segments a run registers, and which clips it fetches.

Everything here works on whole Arrow and NumPy arrays (ids, keys, duplicates, job-array parts,
statuses), and the manifest keeps a fingerprint of the list it registered last, so a resumed
run over an unchanged list of millions of segments does not register it again.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import scipy.sparse as sp

from audioset_data.cache.manifest import Manifest
from audioset_data.config import PathLike
from audioset_data.errors import ConfigError, SegmentsError
from audioset_data.segments.ids import YTID_REGEX, YTID_RULE
from audioset_data.segments.labels import LabelIndex
from audioset_data.segments.load import load_segments
from audioset_data.segments.targets import labels_to_matrix

from .failures import InvalidIdError
from .options import DownloadOptions, cache_name

if TYPE_CHECKING:
    from .job_array import ShardSpec

logger = logging.getLogger("audioset_data.download")

#: Statuses as small integers, for whole-list arrays.
_PENDING, _OK, _FAILED = 0, 1, 2
_COLUMNS = ("key", "ytid", "start", "end", "labels")


@dataclass
class _Item:
    """One clip of a run: where it is in the plan, and how its attempts went so far."""

    key: str
    ytid: str
    start: float
    end: float
    #: its row in the plan's table (and in the plan's target matrix)
    pos: int
    attempts: int = 0
    failures: int = 0
    throttled: int = 0
    reason: str | None = None
    detail: str | None = None
    #: other clips arrived between two throttling answers of this video: it refuses alone
    refuses: bool = False
    #: the breaker's success count at this video's last throttling answer
    success_mark: int = 0


@dataclass
class Plan:
    """The segments of one run, one row per segment key: ``key, ytid, start, end, labels``
    (labels comma-joined, as the manifest keeps them), in list order, and the fingerprint of
    exactly these rows."""

    table: pa.Table
    fingerprint: str
    _targets: sp.csr_array | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return self.table.num_rows

    def targets(self, index: LabelIndex) -> sp.csr_array:
        """The boolean segment × label matrix of the plan's rows (built once, vectorised by
        :func:`audioset_data.segments.targets.labels_to_matrix`); mids outside ``index`` are left
        out with one warning."""
        if self._targets is None:
            matrix, unknown = labels_to_matrix(self.table["labels"], index)
            if unknown:
                logger.warning("labels not in the label index are ignored: %s",
                               dict(unknown.most_common(5)))
            self._targets = matrix
        return self._targets

    def target(self, index: LabelIndex, pos: int) -> np.ndarray:
        """The dense boolean target of row ``pos``."""
        m = self.targets(index)
        out = np.zeros(m.shape[1], dtype=bool)
        out[m.indices[m.indptr[pos]: m.indptr[pos + 1]]] = True
        return out


def _segment_table(segments: Any) -> pa.Table:
    """ytid, start, end, labels (comma-joined mids) from a Segments object or a DataFrame."""
    if hasattr(segments, "arrow"):  # a Segments object: stays in Arrow, no Python objects
        t = segments.arrow
        labels = t["labels"]
        if pa.types.is_list(labels.type) or pa.types.is_large_list(labels.type):
            labels = pc.binary_join(labels, ",")
        return pa.table({
            "ytid": t["ytid"].cast(pa.string()),
            "start": t["start"].cast(pa.float64()),
            "end": t["end"].cast(pa.float64()),
            "labels": labels.cast(pa.string()),
        })
    if not isinstance(segments, pd.DataFrame):
        raise ConfigError(f"cannot read segments from {type(segments).__name__}")
    missing = {"ytid", "start", "end", "labels"} - set(segments.columns)
    if missing:
        raise ConfigError(f"segment table lacks columns {sorted(missing)}")
    try:
        start = segments["start"].astype(float).to_numpy()
        end = segments["end"].astype(float).to_numpy()
    except (TypeError, ValueError) as exc:
        raise SegmentsError(f"segment table: start/end are not numbers ({exc})") from None
    bad = ~(np.isfinite(start) & np.isfinite(end) & (start >= 0) & (end > start))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise SegmentsError(
            f"segment table row {i}: start={start[i]!r}, end={end[i]!r} is not a time range "
            f"({int(bad.sum())} such rows)")

    def joined(v: Any) -> str:
        if isinstance(v, str):
            return v
        if isinstance(v, list | tuple | np.ndarray):
            return ",".join(map(str, v))
        raise SegmentsError(f"segment table: labels {v!r} are neither text nor a list of mids")

    return pa.table({
        "ytid": pa.array(segments["ytid"].astype(str).tolist(), pa.string()),
        "start": pa.array(start, pa.float64()),
        "end": pa.array(end, pa.float64()),
        "labels": pa.array(segments["labels"].map(joined).tolist(), pa.string()),
    })


def _resolve_segments(split: str | None, segments: Any, root: PathLike | None,
                      options: DownloadOptions, label_index: LabelIndex) -> tuple[str, pa.Table]:
    """The cache name and the segment table of what the caller asked for."""
    if segments is not None and not isinstance(segments, str | Path):
        if split is None:
            raise ConfigError("give split= (the cache name) together with a segments object")
        return cache_name(split), _segment_table(segments)

    if segments is None:
        if split is None:
            raise ConfigError("download needs a split or segments")
        name = cache_name(split)
        seg = load_segments(name, root=root, base_url=options.csv_base_url,
                            label_index=label_index,
                            accept_new_upstream=options.accept_new_upstream,
                            on_bad_rows=options.on_bad_rows)
        return name, _segment_table(seg)
    name = cache_name(split) if split else Path(segments).stem
    seg = load_segments(Path(segments), root=root, label_index=label_index,
                        on_bad_rows=options.on_bad_rows)
    return name, _segment_table(seg)


def _check_ids(ytid: pa.Array) -> None:
    """Raise :class:`InvalidIdError` naming the first row whose id is not a YouTube id."""
    ok = pc.fill_null(pc.match_substring_regex(ytid, f"^{YTID_REGEX}$"), False)
    if pc.all(ok).as_py() is not False:
        return
    bad = np.flatnonzero(~ok.to_numpy(zero_copy_only=False))
    value = ytid[int(bad[0])].as_py()
    raise InvalidIdError(value, f"segment row {int(bad[0])}: {value!r} is not a YouTube id "
                                f"({YTID_RULE}); {len(bad)} such rows")


def _millis(start: pa.Array) -> pa.Array:
    """``round(start * 1000)`` as int64, rounding half to even like Python's ``round``."""
    return pc.cast(pc.round(pc.multiply(start, 1000.0), round_mode="half_to_even"), pa.int64())


def _clip_keys(ytid: pa.Array, start: pa.Array) -> pa.Array:
    """:func:`audioset_data.cache.manifest.clip_key` of every row at once."""
    return pc.binary_join_element_wise(ytid, pc.cast(_millis(start), pa.string()), "_")


def _string_parts(arr: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """Offsets (from 0) and bytes of a string array without copying it."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    width = np.int64 if pa.types.is_large_string(arr.type) else np.int32
    offsets = np.frombuffer(arr.buffers()[1], dtype=width)[arr.offset: arr.offset + len(arr) + 1]
    data = arr.buffers()[2]
    raw = (np.frombuffer(data, dtype=np.uint8) if data is not None
           else np.zeros(0, np.uint8))[offsets[0]: offsets[-1]]
    return (offsets - offsets[0]).astype(np.int64), raw


def _has_duplicates(ytid: pa.Array, start: pa.Array) -> bool:
    """Whether two rows share a key (id and start in ms): a 64-bit hash per row, sorted;
    only equal hashes are checked exactly, so a list without repeats costs one sort."""
    n = len(ytid)
    if n < 2:
        return False
    offsets, raw = _string_parts(ytid)
    if not (np.diff(offsets) == 11).all():  # ids are checked first; be safe anyway
        return bool(pd.Series(_clip_keys(ytid, start).to_pylist()).duplicated().any())
    words = np.zeros((n, 16), np.uint8)
    words[:, :11] = raw.reshape(n, 11)
    w = words.view(np.uint64)
    ms = _millis(start).to_numpy(zero_copy_only=False).astype(np.uint64)
    with np.errstate(over="ignore"):
        h = (w[:, 0] * np.uint64(0x9E3779B97F4A7C15)) ^ (w[:, 1] * np.uint64(0xC2B2AE3D27D4EB4F))
        h ^= (ms + np.uint64(0x165667B19E3779F9)) * np.uint64(0xD6E8FEB86659FD93)
    h.sort()
    if not (h[1:] == h[:-1]).any():
        return False
    return bool(pd.Series(_clip_keys(ytid, start).to_pylist()).duplicated().any())


def _merge_duplicates(table: pd.DataFrame) -> pd.DataFrame:
    """One row per segment key; rows listed twice get the union of their labels.

    Keys keep the start to the millisecond, so starts closer than that (30.0001 and 30.0004)
    are one clip: such rows are named in a warning (1-based rows of the list, from the
    ``row`` column when there is one).
    """
    dup = table["key"].duplicated(keep=False)
    if not dup.any():
        return table
    _warn_duplicates(table[dup])
    joined = (table[dup].groupby("key", sort=False)["labels"]
              .agg(lambda ls: ",".join(dict.fromkeys(m for x in ls for m in x.split(",") if m))))
    table = table.drop_duplicates("key").copy()
    table.loc[table["key"].isin(joined.index), "labels"] = (
        table.loc[table["key"].isin(joined.index), "key"].map(joined))
    return table


def _warn_duplicates(rows: pd.DataFrame, show: int = 5) -> None:
    """Say how many segments are listed twice, and which rows differ only below a ms."""
    groups = rows.groupby("key", sort=False)
    if "start" in rows.columns:
        near = groups["start"].nunique()
        near = list(near.index[near.to_numpy() > 1])
    else:
        near = []
    exact = groups.ngroups - len(near)
    if exact:
        logger.warning("%d segments are listed more than once; their labels are joined", exact)
    if not near:
        return
    examples = []
    for key in near[:show]:
        g = groups.get_group(key)
        where = g["row"] + 1 if "row" in g.columns else g.index.to_series() + 1
        examples.append(
            f"rows {', '.join(map(str, where))} ({g['ytid'].iloc[0] if 'ytid' in g else key}, "
            f"starts {', '.join(repr(float(s)) for s in g['start'])} s -> clip {key})")
    more = f"; and {len(near) - show} more" if len(near) > show else ""
    logger.warning(
        "%d groups of segments start less than a millisecond apart and share one clip key "
        "(keys keep the start in ms): each group is merged into one clip with the first row's "
        "times and the labels of all: %s%s", len(near), "; ".join(examples), more)


_CRC_TABLE: np.ndarray | None = None


def _crc32_many(keys: pa.Array | pa.ChunkedArray, chunk: int = 1 << 18) -> np.ndarray:
    """``zlib.crc32`` of each string's UTF-8 bytes, vectorised over the array."""
    global _CRC_TABLE
    if _CRC_TABLE is None:
        c = np.arange(256, dtype=np.uint32)
        for _ in range(8):
            c = np.where(c & 1, np.uint32(0xEDB88320) ^ (c >> 1), c >> 1).astype(np.uint32)
        _CRC_TABLE = c
    offsets, raw = _string_parts(keys)
    n = len(offsets) - 1
    out = np.empty(n, np.uint32)
    for lo in range(0, n, chunk):
        hi = min(n, lo + chunk)
        first, length = offsets[lo:hi], np.diff(offsets[lo: hi + 1])
        crc = np.full(hi - lo, 0xFFFFFFFF, np.uint32)
        for j in range(int(length.max(initial=0))):
            live = np.flatnonzero(length > j)
            byte = raw[first[live] + j]
            crc[live] = _CRC_TABLE[(crc[live] ^ byte) & 0xFF] ^ (crc[live] >> 8)
        out[lo:hi] = crc ^ np.uint32(0xFFFFFFFF)
    return out


def _fingerprint(table: pa.Table) -> str:
    """A digest of exactly the rows a run registers (keys, labels, times, in order)."""
    h = hashlib.blake2b(digest_size=20, person=b"audioset-list-1")
    h.update(str(table.num_rows).encode())
    for name in ("key", "labels"):
        offsets, raw = _string_parts(table[name])
        h.update(offsets.tobytes())
        h.update(raw.tobytes() if not raw.flags.c_contiguous else memoryview(raw))
    for name in ("start", "end"):
        h.update(np.ascontiguousarray(table[name].to_numpy(), dtype=np.float64).tobytes())
    return h.hexdigest()


def _plan(table: pa.Table, part: ShardSpec | None, limit: int | None,
          clip_seconds: float | None = None) -> Plan:
    """Check ids, make keys, join repeated segments, keep this job's part and the first
    ``limit`` rows, and cut segments longer than ``clip_seconds`` to the end actually fetched
    (with one warning): the rows this run registers and fetches."""
    if limit is not None and limit < 1:
        raise ConfigError(f"limit={limit!r} must be at least 1")
    table = table.combine_chunks()
    _check_ids(table["ytid"])
    keys = _clip_keys(table["ytid"], table["start"])
    table = table.add_column(0, "key", keys).select(list(_COLUMNS))
    if _has_duplicates(table["ytid"], table["start"]):
        frame = table.to_pandas()
        frame["row"] = np.arange(len(frame))
        frame = _merge_duplicates(frame)
        table = pa.Table.from_pandas(frame, preserve_index=False).select(list(_COLUMNS))
    if part is not None:
        table = table.filter(pa.array(part.owns_many(table["key"])))
    if limit is not None:
        table = table.slice(0, limit)
    if clip_seconds is not None:
        table = _cut_long_segments(table, clip_seconds)
    table = table.combine_chunks()
    return Plan(table, _fingerprint(table))


def _rows(table: pa.Table) -> Iterator[tuple[str, str, float, float, str]]:
    """``(key, ytid, start, end, labels)`` tuples, converted a batch at a time."""
    for batch in table.select(list(_COLUMNS)).to_batches(max_chunksize=1 << 16):
        yield from zip(*(col.to_pylist() for col in batch.columns), strict=True)


def _register(manifest: Manifest, plan: Plan) -> None:
    """Record every segment of the plan in the manifest, unless the manifest already holds
    exactly this list (same fingerprint, nothing changed since)."""
    if manifest.segments_fingerprint() == plan.fingerprint:
        logger.info("%d segments already registered in %s", len(plan), manifest.path.name)
        return
    new, relabelled = manifest.add_segments(_rows(plan.table), fingerprint=plan.fingerprint)
    if relabelled:
        logger.warning(
            "%d cached clips carry other labels in this list than when they were fetched; "
            "their stored targets keep the old labels", relabelled)
    # fold the registration into the database file now, not at the end of a long run
    manifest.checkpoint(truncate=True)
    logger.info("%d segments registered (%d new in the manifest)", len(plan), new)


def _statuses(manifest: Manifest, keys: pa.Array) -> tuple[np.ndarray, pd.DataFrame]:
    """The status of each key (``_PENDING``, ``_OK``, ``_FAILED``) and the failed rows among
    them (``key, reason, permanent, attempts`` and ``pos``, the row in ``keys``).

    Reads the smaller of the ``ok`` and ``pending`` key sets (as one text, not a Python
    object per key) and the failed rows, and finds them all in ``keys`` with one hash lookup.
    Every key must be registered.
    """
    counts = manifest.counts()
    failed = manifest.failed()
    read_ok = counts["ok"] <= counts["pending"]
    if (counts["ok"] if read_ok else counts["pending"]) == 0 and failed.empty:
        return np.full(len(keys), _OK if counts["ok"] else _PENDING, np.int8), failed.assign(
            pos=np.zeros(0, np.int64))
    some = manifest.keys_with_status("ok" if read_ok else "pending")
    probe = pa.concat_arrays([some, pa.array(failed["key"], pa.string())])
    pos = pc.index_in(probe, value_set=keys).to_numpy(zero_copy_only=False)
    pos_some, pos_failed = pos[: len(some)], pos[len(some):]
    codes = np.full(len(keys), _PENDING if read_ok else _OK, np.int8)
    pos_some = pos_some[~np.isnan(pos_some)].astype(np.int64)
    codes[pos_some] = _OK if read_ok else _PENDING
    inside = ~np.isnan(pos_failed)
    failed = failed[inside].assign(pos=pos_failed[inside].astype(np.int64))
    codes[failed["pos"].to_numpy()] = _FAILED
    return codes, failed.sort_values("pos").reset_index(drop=True)


def _items(table: pa.Table, rows: np.ndarray, chunk: int = 4096) -> Iterator[_Item]:
    """The work items of ``rows``, made a chunk at a time as the run needs them."""
    for lo in range(0, len(rows), chunk):
        pos = rows[lo: lo + chunk]
        part = table.take(pa.array(pos))
        cols = [part[c].to_pylist() for c in ("key", "ytid", "start", "end")]
        for k, y, s, e, p in zip(*cols, pos.tolist(), strict=True):
            yield _Item(k, y, s, e, p)


def _cut_long_segments(table: pa.Table, clip_seconds: float) -> pa.Table:
    """Segments longer than ``clip_seconds`` end at ``start + clip_seconds``: only that much is
    fetched, and the manifest and the cache keep the end actually fetched. Warns once."""
    start = table["start"].to_numpy()
    end = table["end"].to_numpy()
    cut = start + clip_seconds
    long = np.flatnonzero(end > cut + 1e-6)
    if not len(long):
        return table
    i = int(long[0])
    logger.warning(
        "%d segment(s) last longer than clip_seconds=%g s: only their first %g s are fetched, "
        "and the cache stores the end actually fetched (e.g. %s: %g-%g s is stored as %g-%g s)",
        len(long), clip_seconds, clip_seconds, table["key"][i].as_py(), start[i], end[i],
        start[i], cut[i])
    return table.set_column(table.column_names.index("end"), "end",
                            pa.array(np.minimum(end, cut), pa.float64()))
