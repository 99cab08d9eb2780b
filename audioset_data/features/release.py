"""The AudioSet embeddings ("features") release: its record format, its layout, a writer, and
where to get it.

Each TFRecord record is a ``tf.train.SequenceExample``: context ``video_id`` (bytes),
``start_time_seconds`` and ``end_time_seconds`` (float), ``labels`` (int64 row indices of
``class_labels_indices.csv``), and the feature list ``audio_embedding``: one 128-byte value per
second (uint8 VGGish embeddings, PCA'd, clipped to [-2, 2] and quantised). The official
``features.tar.gz`` holds ``audioset_v1_embeddings/{bal_train,eval,unbal_train}/XX.tfrecord``.

The writer (:func:`write_feature_file`, :func:`write_release`) produces byte-compatible files;
tests and benchmarks build their fixtures with it.
"""

from __future__ import annotations

import logging
import tarfile
from collections import defaultdict
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import unquote, urlparse

import numpy as np

from audioset_data.config import FEATURES_BASE_URL, FEATURES_BASE_URL_ENV, PathLike
from audioset_data.errors import RemoteError
from audioset_data.fileio import atomic_write
from audioset_data.remote import fetch, get_remote

from .errors import CorruptRecordError
from .proto import sequence_example_class
from .tfrecord import read_payloads, write_tfrecord

logger = logging.getLogger("audioset_data.features")

#: Release folder name → canonical split name of the package.
RELEASE_SPLITS: dict[str, str] = {"bal_train": "balanced", "eval": "eval",
                                  "unbal_train": "unbalanced"}
#: Canonical split name → release folder name.
RELEASE_FOLDERS: dict[str, str] = {v: k for k, v in RELEASE_SPLITS.items()}
#: Top folder of the release archive.
RELEASE_TOP = "audioset_v1_embeddings"
#: Classes the release's ``labels`` index (rows of the v1 ``class_labels_indices.csv``).
RELEASE_CLASSES = 527
#: Seconds (frames) per segment in the release.
RELEASE_FRAMES = 10
#: Bytes (uint8 values) per frame embedding.
EMBEDDING_DIM = 128
#: Range the release's postprocessor clipped embeddings to before quantising to uint8.
QUANT_MIN, QUANT_MAX = -2.0, 2.0

#: Official address of the release (Google publishes no checksum for it).
FEATURES_URL = FEATURES_BASE_URL + "features.tar.gz"
#: Environment variable: address of a mirror of ``features.tar.gz`` (a file, a folder
#: holding it, ``file://`` or ``http(s)://``).
FEATURES_URL_ENV = FEATURES_BASE_URL_ENV
#: Said wherever the size and sha256 of an imported release are recorded.
CHECKSUM_NOTE = ("Google publishes no checksum for features.tar.gz; size and sha256 are those "
                 "of the copy imported")


class FeatureRecord(NamedTuple):
    """One segment of the release: id, times (s), label row indices, ``(frames, 128)`` uint8."""

    video_id: str
    start: float
    end: float
    labels: tuple[int, ...]
    embedding: np.ndarray


def dequantize(q: np.ndarray | Any) -> np.ndarray:
    """Map release uint8 values back to floats in [-2, 2]: ``x = q * 4 / 255 - 2`` (float32).

    The inverse of the release's ``uint8 = round((clip(x, -2, 2) + 2) * 255 / 4)``, exact up
    to the quantisation step of 4/255.
    """
    scale = np.float32((QUANT_MAX - QUANT_MIN) / 255.0)
    return np.asarray(q, dtype=np.float32) * scale + np.float32(QUANT_MIN)


def quantize(x: np.ndarray | Any) -> np.ndarray:
    """What the release's postprocessor did: clip to [-2, 2], ``round((x + 2) * 255 / 4)``."""
    clipped = np.clip(np.asarray(x, dtype=np.float64), QUANT_MIN, QUANT_MAX)
    return np.round((clipped - QUANT_MIN) * (255.0 / (QUANT_MAX - QUANT_MIN))).astype(np.uint8)


# ----------------------------------------------------------------------------- records
def encode_record(record: FeatureRecord) -> bytes:
    """Serialise one record as the release's SequenceExample bytes."""
    msg = sequence_example_class()()
    ctx = msg.context.feature
    ctx["video_id"].bytes_list.value.append(str(record.video_id).encode())
    ctx["start_time_seconds"].float_list.value.append(float(record.start))
    ctx["end_time_seconds"].float_list.value.append(float(record.end))
    ctx["labels"].int64_list.value.extend(int(x) for x in record.labels)
    frames = msg.feature_lists.feature_list["audio_embedding"].feature
    emb = np.ascontiguousarray(record.embedding, dtype=np.uint8).reshape(-1, EMBEDDING_DIM)
    for row in emb:
        frames.add().bytes_list.value.append(row.tobytes())
    return msg.SerializeToString()


def parse_fields(payload: bytes, message: Any, name: str, index: int
                 ) -> tuple[bytes, float, float, Any, list[bytes]]:
    """Decode one SequenceExample into ``(video_id, start, end, labels, frames)``.

    ``message`` is a new, empty SequenceExample (do not reuse one: upb keeps everything a
    message ever parsed in its arena); ``labels`` is the message's repeated int64 container
    and ``frames`` the list of per-second byte strings (128 bytes each).

    Raises
    ------
    CorruptRecordError
        The bytes do not parse, a context field is missing, or a frame is not 128 bytes.
    """
    try:
        message.ParseFromString(payload)
        ctx = message.context.feature
        vid = ctx["video_id"].bytes_list.value[0]
        start = ctx["start_time_seconds"].float_list.value[0]
        end = ctx["end_time_seconds"].float_list.value[0]
        labels = ctx["labels"].int64_list.value
        frames = [f.bytes_list.value[0] for f in
                  message.feature_lists.feature_list["audio_embedding"].feature]
    except Exception as exc:  # noqa: BLE001 - DecodeError, IndexError: one answer for both
        what = ("a context field (video_id, start_time_seconds, end_time_seconds) or a frame "
                "is missing" if isinstance(exc, IndexError) else f"not a SequenceExample ({exc})")
        raise CorruptRecordError(f"{name}: record {index}: {what}; the file is not an AudioSet "
                                 "embeddings file or is damaged", path=name,
                                 record=index) from None
    for f in frames:
        if len(f) != EMBEDDING_DIM:
            raise CorruptRecordError(
                f"{name}: record {index}: a frame of {len(f)} bytes, not {EMBEDDING_DIM}; not "
                "an AudioSet embeddings file", path=name, record=index)
    return vid, start, end, labels, frames


def decode_record(payload: bytes, *, name: str = "<bytes>", index: int = 0) -> FeatureRecord:
    """Decode one record's SequenceExample bytes as a :class:`FeatureRecord`."""
    vid, start, end, labels, frames = parse_fields(payload, sequence_example_class()(), name,
                                                   index)
    emb = np.frombuffer(b"".join(frames), np.uint8).reshape(len(frames), EMBEDDING_DIM)
    return FeatureRecord(vid.decode("utf-8", "replace"), float(start), float(end),
                         tuple(int(x) for x in labels), emb)


def read_feature_file(path: PathLike) -> list[FeatureRecord]:
    """Every record of one ``.tfrecord`` file of the release, CRCs checked (small files)."""
    return [decode_record(p, name=str(path), index=i) for i, p in enumerate(read_payloads(path))]


# ----------------------------------------------------------------------------- writing
def write_feature_file(path: PathLike, records: Iterable[FeatureRecord]) -> Path:
    """Write ``records`` as one release ``.tfrecord`` file (atomically); return the path."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return write_tfrecord(path, (encode_record(r) for r in records))


def write_release(folder: PathLike, records: Iterable[FeatureRecord], *,
                  split: str = "balanced",
                  shard: Callable[[FeatureRecord], str] = lambda r: r.video_id[:2]) -> Path:
    """Write ``records`` in the release layout ``<folder>/audioset_v1_embeddings/<bal_train|
    eval|unbal_train>/<shard>.tfrecord`` (shard: the id's first two characters, as the
    release); return the split folder. Records are grouped in memory: for small fixtures."""
    split_folder = Path(folder) / RELEASE_TOP / RELEASE_FOLDERS[split]
    groups: dict[str, list[FeatureRecord]] = defaultdict(list)
    for rec in records:
        groups[shard(rec)].append(rec)
    split_folder.mkdir(parents=True, exist_ok=True)
    for name, recs in sorted(groups.items()):
        write_feature_file(split_folder / f"{name}.tfrecord", recs)
    return split_folder


def write_release_tar(folder: PathLike, dest: PathLike) -> Path:
    """Pack the release folder ``folder`` (holding ``audioset_v1_embeddings/``) as a tar,
    gzip'd when ``dest`` ends in ``.gz``, members in name order; return ``dest``."""
    folder, dest = Path(folder), Path(dest)
    mode = "w:gz" if dest.name.endswith((".gz", ".tgz")) else "w"
    with atomic_write(dest, durable=False) as fh, tarfile.open(fileobj=fh, mode=mode) as tar:
        for path in sorted(folder.rglob("*")):
            tar.add(path, arcname=path.relative_to(folder).as_posix(), recursive=False)
    return dest


# ----------------------------------------------------------------------------- fetching
def features_url(explicit: str | None = None) -> str:
    """Address of ``features.tar.gz``: the argument, ``$AUDIOSET_FEATURES_URL``, or the
    official one. An address that does not name a ``.tar``/``.tar.gz`` file is a folder
    holding ``features.tar.gz``."""
    return get_remote("features").url(explicit)


def local_source(url: str) -> Path | None:
    """The local file a ``file://`` address or a plain path names (``None`` for http)."""
    parsed = urlparse(url)
    if parsed.scheme == "file":
        return Path(unquote(parsed.path))
    if parsed.scheme in ("http", "https"):
        return None
    return Path(url)


def fetch_release(url: str | None = None, *, root: PathLike | None = None,
                  force: bool = False, retries: int = 5, timeout: float = 60.0,
                  progress: bool = True) -> Path:
    """Return a local copy of ``features.tar.gz`` (2.4 GB), fetching it resumably if needed.

    A local mirror (path or ``file://``) is used in place, never copied. An ``http(s)``
    address goes through the official-file code (:func:`audioset_data.remote.fetch`, remote
    ``"features"``): downloaded to ``<root>/remote/features.tar.gz``, an interrupted download
    resuming from its ``.part`` file with a Range request. Google publishes no checksum, so
    the size and sha256 of the copy are recorded in ``features.tar.gz.meta.json`` (and in each
    store's metadata at import).

    Raises
    ------
    RemoteError
        The address cannot be reached, or the download did not complete after ``retries``.
    """
    url = features_url(url)
    local = local_source(url)
    if local is not None:
        if not local.is_file():
            raise RemoteError(f"features release {str(local)!r} (from {url!r}) does not exist; "
                              f"set {FEATURES_URL_ENV} to the file or a folder holding it")
        return local
    return fetch("features", root=root, base_url=url, force=force, retries=retries,
                 timeout=timeout, progress=progress)


__all__ = [
    "CHECKSUM_NOTE",
    "EMBEDDING_DIM",
    "FEATURES_URL",
    "FEATURES_URL_ENV",
    "QUANT_MAX",
    "QUANT_MIN",
    "RELEASE_CLASSES",
    "RELEASE_FOLDERS",
    "RELEASE_FRAMES",
    "RELEASE_SPLITS",
    "RELEASE_TOP",
    "FeatureRecord",
    "decode_record",
    "dequantize",
    "encode_record",
    "features_url",
    "fetch_release",
    "local_source",
    "parse_fields",
    "quantize",
    "read_feature_file",
    "write_feature_file",
    "write_release",
    "write_release_tar",
]
