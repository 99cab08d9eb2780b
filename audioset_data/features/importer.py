"""Import the embeddings release into stores, streamed: one pass over the input, bounded memory.

Records go straight to disk: embeddings are appended to a raw file in arrival order, the small
columns (keys, times, frame counts, labels) to compact arrays (``array.array`` and per-chunk
NumPy arrays, never one Python object per record for long). At the end the rows are ordered by
segment key, duplicates dropped (the first by file name and record index is kept, so a folder
and a tar of it give the same store), and the embeddings gathered into ``embeddings.npy`` chunk
by chunk through short-lived memory maps. Measured: see ``benchmarks/results/features.md``.

Nothing is dropped silently: zero-frame records are kept (frame count 0), labels outside the
class range are dropped from the label set and counted, duplicate ``(id, start)`` keys are
counted; each case is listed with its file and record in ``anomalies.csv``.
"""

from __future__ import annotations

import json
import logging
import shutil
import tarfile
import time
import zlib
from array import array
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from audioset_data.config import PathLike
from audioset_data.errors import AudioSetError
from audioset_data.fileio import atomic_write
from audioset_data.segments import load_segments

from .errors import FeaturesError
from .proto import sequence_example_class
from .release import (
    CHECKSUM_NOTE,
    EMBEDDING_DIM,
    QUANT_MAX,
    QUANT_MIN,
    RELEASE_CLASSES,
    RELEASE_FRAMES,
    features_url,
    fetch_release,
    parse_fields,
)
from .sources import ReleaseSource, SourceFile
from .store import (
    ANOMALIES_NAME,
    COVERAGE_NAME,
    FORMAT_VERSION,
    META_NAME,
    CoverageReport,
    EmbeddingStore,
    new_store_folder,
    publish_store,
    split_name,
    store_dir,
)
from .tfrecord import iter_payloads

if TYPE_CHECKING:
    from audioset_data.segments import Segments

logger = logging.getLogger("audioset_data.features")

#: Rows per chunk of the small columns.
CHUNK_ROWS = 1 << 16
#: Rows per gather step of the embeddings (the pages it maps stay resident until it ends).
GATHER_ROWS = 1 << 14
#: Bytes of embeddings buffered before a write.
WRITE_BYTES = 8 << 20
ANOMALY_COLUMNS = ("kind", "key", "file", "record", "detail")


@dataclass
class SplitImport:
    """What the import of one split read, kept and reported.

    ``records`` were read, ``stored`` kept (``records - duplicates``); ``frames_short`` have
    1 to 9 frames, ``frames_zero`` none, ``frames_over`` more than the store holds (cut);
    ``bad_labels`` label values outside the class range were dropped from
    ``records_with_bad_labels`` records.
    """

    split: str
    path: Path
    files: int = 0
    records: int = 0
    stored: int = 0
    frames_short: int = 0
    frames_zero: int = 0
    frames_over: int = 0
    bad_labels: int = 0
    records_with_bad_labels: int = 0
    duplicates: int = 0
    frames_histogram: list[int] = field(default_factory=list)
    coverage: CoverageReport | None = None
    coverage_skipped: str | None = None

    def counts(self) -> dict[str, int]:
        """The counts as a dict (as written to ``meta.json``)."""
        return {k: int(getattr(self, k)) for k in (
            "files", "records", "stored", "frames_short", "frames_zero", "frames_over",
            "bad_labels", "records_with_bad_labels", "duplicates")}

    def summary(self) -> str:
        """A few lines for people."""
        lines = [
            f"{self.split}: {self.stored} segments stored from {self.records} records in "
            f"{self.files} files",
            f"  frames: {self.frames_short} short (1-9), {self.frames_zero} zero, "
            f"{self.frames_over} over-long (cut)",
            f"  labels outside 0..{RELEASE_CLASSES - 1}: {self.bad_labels} dropped from "
            f"{self.records_with_bad_labels} records; duplicate keys: {self.duplicates}",
        ]
        if self.coverage is not None:
            lines.append(f"  coverage: {self.coverage.summary()}")
        else:
            lines.append(f"  coverage: skipped ({self.coverage_skipped})")
        lines.append(f"  store: {self.path}")
        return "\n".join(lines)


@dataclass
class ImportReport:
    """The import of one source: what it was, and a :class:`SplitImport` per split."""

    source: dict[str, Any]
    splits: dict[str, SplitImport]
    skipped_files: dict[str, int]
    elapsed_s: float

    def summary(self) -> str:
        """Per-split summaries, the source and its size / sha256."""
        src = self.source
        head = f"imported {src.get('kind')} {src.get('path')} ({src.get('size')} bytes"
        head += f", sha256 {src['sha256']})" if src.get("sha256") else ")"
        head += f" in {self.elapsed_s:.1f} s"
        lines = [head]
        for reason, n in self.skipped_files.items():
            lines.append(f"  skipped {n} files: {reason}")
        lines += [s.summary() for s in self.splits.values()]
        return "\n".join(lines)


class _SplitWriter:
    """Accumulates one split's records on disk and in compact arrays; :meth:`finish` writes
    the store into its temporary folder."""

    def __init__(self, split: str, root: PathLike | None, n_classes: int, max_frames: int):
        self.split = split
        self.root = root
        self.n_classes = n_classes
        self.max_frames = max_frames
        self.tmp = new_store_folder(split, root)
        self.raw_path = self.tmp / ".embeddings.raw"
        self.raw = open(self.raw_path, "wb")  # noqa: SIM115 - closed in finish/abort
        self.buf = bytearray()
        self.key_list: list[bytes] = []
        self.id_list: list[bytes] = []
        self.key_chunks: list[np.ndarray] = []
        self.id_chunks: list[np.ndarray] = []
        self.starts = array("q")
        self.ends = array("q")
        self.frames = array("B")
        self.file_idx = array("i")
        self.rec_idx = array("i")
        self.n_labels = array("H")
        self.labels = array("h")
        self.file_names: list[str] = []
        self.bad: list[tuple[int, list[int]]] = []
        self.over: list[tuple[int, int]] = []
        self.n = 0

    def add_file(self, src: SourceFile) -> int:
        """Read every record of ``src`` (CRCs checked); return how many."""
        fidx = len(self.file_names)
        self.file_names.append(src.name)
        frame_bytes = EMBEDDING_DIM
        row_bytes = self.max_frames * frame_bytes
        zeros = bytes(row_bytes)
        n_classes, max_frames = self.n_classes, self.max_frames
        buf, keys, ids = self.buf, self.key_list, self.id_list
        starts, ends, frames_col = self.starts, self.ends, self.frames
        n_labels, labels_col = self.n_labels, self.labels
        message_class = sequence_example_class()
        count = 0
        for rec, payload in enumerate(iter_payloads(src.stream, src.display)):
            # a fresh message per record: upb keeps what a reused one parsed in its arena
            # (measured: 400 MB per 110,000 records), and a fresh one is faster too
            vid, start, end, labels, frames = parse_fields(payload, message_class(), src.display,
                                                           rec)
            k = len(frames)
            if k > max_frames:
                self.over.append((self.n, k))
                frames = frames[:max_frames]
                k = max_frames
            buf += b"".join(frames)
            if k < max_frames:
                buf += zeros[: row_bytes - k * frame_bytes]
            start_ms = round(start * 1000)
            keys.append(b"%s_%d" % (vid, start_ms))
            ids.append(vid)
            starts.append(start_ms)
            ends.append(round(end * 1000))
            frames_col.append(k)
            if labels:
                if min(labels) < 0 or max(labels) >= n_classes:
                    bad = [int(x) for x in labels if not 0 <= x < n_classes]
                    self.bad.append((self.n, bad))
                    labels = [x for x in labels if 0 <= x < n_classes]
                labels = sorted(set(labels))
                labels_col.extend(labels)
            n_labels.append(len(labels))
            self.n += 1
            count += 1
            if len(keys) >= CHUNK_ROWS:
                self._flush_columns()
            if len(buf) >= WRITE_BYTES:
                self.raw.write(buf)
                buf.clear()
        self.file_idx.extend([fidx] * count)
        self.rec_idx.extend(range(count))
        return count

    def _flush_columns(self) -> None:
        self.key_chunks.append(np.array(self.key_list, dtype=bytes))
        self.id_chunks.append(np.array(self.id_list, dtype=bytes))
        self.key_list.clear()
        self.id_list.clear()

    def abort(self) -> None:
        """Close and delete the temporary folder."""
        if not self.raw.closed:
            self.raw.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def finish(self, report: SplitImport, source_info: dict[str, Any]) -> None:
        """Order, de-duplicate and write the arrays, ``anomalies.csv`` and ``meta.json`` into
        the temporary folder; fill ``report``'s counts."""
        self.raw.write(self.buf)
        self.buf.clear()
        self.raw.close()
        self._flush_columns()
        n, t = self.n, self.max_frames
        keys = _concat(self.key_chunks)
        ids = _concat(self.id_chunks)
        self.key_chunks.clear()
        self.id_chunks.clear()
        file_idx = np.frombuffer(self.file_idx, np.int32)
        rec_idx = np.frombuffer(self.rec_idx, np.int32)
        name_rank = np.argsort(np.argsort(np.array(self.file_names, dtype=object), kind="stable"))
        by_file = np.lexsort((rec_idx, name_rank[file_idx] if n else file_idx))
        order = by_file[np.argsort(keys[by_file], kind="stable")]
        sorted_keys = keys[order]
        dup = np.zeros(n, dtype=bool)
        dup[1:] = sorted_keys[1:] == sorted_keys[:-1]
        sel = order[~dup]
        first = order[np.maximum.accumulate(np.where(~dup, np.arange(n), 0))] if n else order

        frames = np.frombuffer(self.frames, np.uint8)
        hist = np.bincount(frames, minlength=t + 1)
        report.records, report.stored = n, len(sel)
        report.files = len(self.file_names)
        report.frames_zero = int(hist[0])
        report.frames_short = int(hist[1:t].sum())
        report.frames_over = len(self.over)
        report.bad_labels = sum(len(b) for _, b in self.bad)
        report.records_with_bad_labels = len(self.bad)
        report.duplicates = int(dup.sum())
        report.frames_histogram = [int(x) for x in hist]

        def where(i: int) -> tuple[str, int]:
            return self.file_names[file_idx[i]], int(rec_idx[i])

        rows: list[tuple[str, str, str, int, str]] = []
        for i in np.flatnonzero(frames == 0).tolist():
            rows.append(("zero_frames", keys[i].decode(), *where(i), "kept with frames = 0"))
        for i, k in self.over:
            rows.append(("over_long", keys[i].decode(), *where(i), f"{k} frames, kept {t}"))
        for i, bad in self.bad:
            rows.append(("bad_label", keys[i].decode(), *where(i),
                         f"labels {bad} outside 0..{self.n_classes - 1} dropped"))
        for j in np.flatnonzero(dup).tolist():
            i, f = int(order[j]), int(first[j])
            ff, fr = where(f)
            rows.append(("duplicate", keys[i].decode(), *where(i),
                         f"same key as {ff} record {fr}, which is kept"))
        pd.DataFrame(rows, columns=list(ANOMALY_COLUMNS)).to_csv(self.tmp / ANOMALIES_NAME,
                                                                 index=False)

        np.save(self.tmp / "keys.npy", keys[sel])
        np.save(self.tmp / "ids.npy", ids[sel])
        del keys, ids, sorted_keys
        np.save(self.tmp / "starts_ms.npy", np.frombuffer(self.starts, np.int64)[sel])
        np.save(self.tmp / "ends_ms.npy", np.frombuffer(self.ends, np.int64)[sel])
        np.save(self.tmp / "frames.npy", frames[sel])
        counts_all = np.frombuffer(self.n_labels, np.uint16).astype(np.int64)
        indptr_all = np.zeros(n + 1, np.int64)
        np.cumsum(counts_all, out=indptr_all[1:])
        counts = counts_all[sel]
        indptr = np.zeros(len(sel) + 1, np.int64)
        np.cumsum(counts, out=indptr[1:])
        gather = np.repeat(indptr_all[:-1][sel] - indptr[:-1], counts) + np.arange(indptr[-1])
        np.save(self.tmp / "labels_indptr.npy", indptr)
        np.save(self.tmp / "labels_indices.npy", np.frombuffer(self.labels, np.int16)[gather])
        del gather, counts_all, indptr_all
        _gather_embeddings(self.raw_path, self.tmp / "embeddings.npy", sel, n, t)
        self.raw_path.unlink()
        _write_meta(self.tmp, self._meta(report, source_info))

    def _meta(self, report: SplitImport, source_info: dict[str, Any]) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "split": self.split,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "source": {**source_info, "note": CHECKSUM_NOTE},
            "counts": report.counts(),
            "frames_histogram": report.frames_histogram,
            "n_classes": self.n_classes,
            "max_frames": self.max_frames,
            "embedding_dim": EMBEDDING_DIM,
            "quantization": {"min": QUANT_MIN, "max": QUANT_MAX,
                             "dequantize": "x = q * 4 / 255 - 2"},
            "order": "segment key <ytid>_<start ms>, bytes order",
            "coverage": None,
            "coverage_skipped": None,
        }


def _concat(chunks: list[np.ndarray]) -> np.ndarray:
    chunks = [c for c in chunks if len(c)]
    return np.concatenate(chunks) if chunks else np.zeros(0, dtype="S1")


def _gather_embeddings(raw: Path, dest: Path, sel: np.ndarray, n: int, frames: int) -> None:
    """Write ``embeddings.npy`` with rows ``sel`` of the raw arrival-order file, chunk by chunk
    through short-lived memory maps (so resident memory stays one chunk, not the file)."""
    shape = (len(sel), frames, EMBEDDING_DIM)
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype(np.uint8)),
              "fortran_order": False, "shape": shape}
    with open(dest, "wb") as fh:
        np.lib.format.write_array_header_1_0(fh, header)
        for lo in range(0, len(sel), GATHER_ROWS):
            src = np.memmap(raw, np.uint8, "r", shape=(n, frames, EMBEDDING_DIM))
            block = src[sel[lo:lo + GATHER_ROWS]]
            del src  # unmapped: its pages leave this process's resident set
            fh.write(memoryview(block))


def _write_meta(folder: Path, meta: dict[str, Any]) -> None:
    with atomic_write(folder / META_NAME, "w", durable=False, encoding="utf-8") as fh:
        json.dump(meta, fh, indent=1)


def _coverage(split: str, tmp: Path, report: SplitImport, root: PathLike | None,
              segments: Mapping[str, Segments] | None, accept_new_upstream: bool) -> None:
    """Compare the new store with the official list of its split; write ``coverage.csv``.
    A list that cannot be loaded skips the comparison, with the reason recorded."""
    try:
        if segments is not None:
            if split not in segments:
                raise FeaturesError(f"no segment list given for split {split!r}")
            seg = segments[split]
        else:
            seg = load_segments(split, root=root, progress=False,
                                accept_new_upstream=accept_new_upstream)
        cov = EmbeddingStore(tmp).coverage(seg)
    except (AudioSetError, OSError) as exc:
        report.coverage_skipped = f"the {split} segment list could not be loaded: {exc}"
        logger.warning("coverage of %s skipped: %s", split, report.coverage_skipped)
        return
    cov.per_class.to_csv(tmp / COVERAGE_NAME, index=False)
    report.coverage = cov


def import_features(
    source: PathLike | str | None = None,
    *,
    split: str | None = None,
    root: PathLike | None = None,
    coverage: bool = True,
    segments: Mapping[str, Segments] | None = None,
    n_classes: int = RELEASE_CLASSES,
    max_frames: int = RELEASE_FRAMES,
    accept_new_upstream: bool = False,
    progress: bool = True,
) -> ImportReport:
    """Import the embeddings release into ``<root>/features/<split>/`` stores.

    Parameters
    ----------
    source
        A folder of ``.tfrecord`` files (a split folder, or one holding ``bal_train/ eval/
        unbal_train/``), one ``.tfrecord`` file, a ``.tar``/``.tar.gz`` in the release layout
        (streamed, never extracted), an ``http(s)://`` or ``file://`` address of
        ``features.tar.gz``, or None for ``$AUDIOSET_FEATURES_URL`` / the official address
        (fetched resumably, see :func:`~audioset_data.features.release.fetch_release`).
    split
        Split of files outside the release folders; with release folders, import only this
        split. Any spelling the package accepts (``balanced``, ``bal_train``...).
    root
        Data root (see :func:`audioset_data.config.data_home`).
    coverage
        Compare each store with its official segment list and write ``coverage.csv``; a list
        that cannot be loaded (offline, no mirror) skips this and says so.
    segments
        Segment lists to compare with, by canonical split name, instead of the official ones.
    n_classes, max_frames
        Label range and frames per row of the release (527 and 10).
    accept_new_upstream
        Passed to :func:`~audioset_data.segments.load_segments` for the coverage lists.

    Raises
    ------
    CorruptRecordError
        A CRC mismatch or an unparsable record (file and record named); ``TruncatedRecordError``
        for a file that ends inside a record. Nothing is published then.
    FeaturesError
        The input is not a release (no ``.tfrecord`` files, a damaged archive).
    ConfigError
        A file's split cannot be told and ``split`` is not given.
    """
    t0 = time.perf_counter()
    forced = split_name(split) if split is not None else None
    fetched: dict[str, Any] = {}
    if source is None or (isinstance(source, str) and "://" in source):
        url = features_url(None if source is None else str(source))
        path = fetch_release(url, root=root, progress=progress)
        fetched = {"url": url}
    else:
        path = Path(source)
    src = ReleaseSource(path, forced)
    writers: dict[str, _SplitWriter] = {}
    records = 0
    bar = tqdm(total=src.total_bytes, unit="B", unit_scale=True, desc="features",
               disable=not progress)
    try:
        done = 0
        files = src.files()
        while True:
            try:
                f = next(files)
            except StopIteration:
                break
            w = writers.get(f.split)
            if w is None:
                w = writers[f.split] = _SplitWriter(f.split, root, n_classes, max_frames)
            try:
                records += w.add_file(f)
            except AudioSetError:
                raise
            except (tarfile.TarError, EOFError, zlib.error) as exc:  # reading a tar stream
                raise FeaturesError(f"{f.display}: the archive is damaged or truncated "
                                    f"({exc}); fetch it again") from None
            bar.update(src.bytes_done - done)
            done = src.bytes_done
            bar.set_postfix(records=records, refresh=False)
        bar.update(src.total_bytes - done)
        if not writers:
            raise FeaturesError(f"no records of split {forced!r} in {str(path)!r}"
                                if forced else f"no records in {str(path)!r}")
        info = {**src.info, **fetched}
        reports: dict[str, SplitImport] = {}
        for name, w in sorted(writers.items()):
            rep = reports[name] = SplitImport(name, store_dir(name, root))
            w.finish(rep, info)
            if coverage:
                _coverage(name, w.tmp, rep, root, segments, accept_new_upstream)
            else:
                rep.coverage_skipped = "not asked for"
            meta = json.loads((w.tmp / META_NAME).read_text(encoding="utf-8"))
            meta["coverage"] = rep.coverage.totals() if rep.coverage else None
            meta["coverage_skipped"] = rep.coverage_skipped
            _write_meta(w.tmp, meta)
        for name, w in sorted(writers.items()):
            publish_store(w.tmp, reports[name].path)
            logger.info("%s", reports[name].summary())
    except BaseException:
        for w in writers.values():
            w.abort()
        raise
    finally:
        bar.close()
    return ImportReport(info, reports, dict(src.skipped), time.perf_counter() - t0)


__all__ = ["ANOMALY_COLUMNS", "ImportReport", "SplitImport", "import_features"]
