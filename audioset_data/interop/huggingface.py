"""A cached split as a Hugging Face ``datasets.Dataset``.

The rows are written batch by batch into one Arrow stream file in the layout ``datasets``
memory-maps, with the features in the schema's metadata, and opened with
``datasets.Dataset.from_file``: the split never has to fit in memory, and nothing goes through
``datasets``' per-example encoders (which need torchcodec for audio since ``datasets`` 4).

Columns: ``audio`` (an ``Audio`` feature holding each clip as a whole FLAC or WAV file of its
true length; decoded it gives ``array`` and ``sampling_rate``), ``key``, ``ytid``, ``start``,
``end``, ``length`` (samples), ``labels`` (label indices, a list of ``ClassLabel`` whose names
are the cache's mids, in label-index order), ``mids`` and ``names`` (display names).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from audioset_data.config import PathLike
from audioset_data.errors import AudioSetError, ConfigError

from . import (
    audio_bytes,
    check_audio_format,
    clip_batches,
    clip_table,
    label_names,
    positions_of,
    require,
    target_folder,
    unwritable,
)

if TYPE_CHECKING:
    from audioset_data.cache.reader import AudioSetCache
    from audioset_data.segments.labels import LabelIndex

logger = logging.getLogger(__name__)

#: Name of the Arrow file written into the output folder.
ARROW_NAME = "data.arrow"


def hf_features(label_mids: Sequence[str], sample_rate: int) -> Any:
    """The ``datasets.Features`` of an exported split."""
    datasets = require("datasets", "hf")
    seq = getattr(datasets, "List", None) or datasets.Sequence
    return datasets.Features({
        "audio": datasets.Audio(sampling_rate=int(sample_rate)),
        "key": datasets.Value("string"),
        "ytid": datasets.Value("string"),
        "start": datasets.Value("float64"),
        "end": datasets.Value("float64"),
        "length": datasets.Value("int64"),
        "labels": seq(datasets.ClassLabel(names=list(label_mids))),
        "mids": seq(datasets.Value("string")),
        "names": seq(datasets.Value("string")),
    })


def to_hf_dataset(
    cache: AudioSetCache,
    out: PathLike,
    *,
    label_index: LabelIndex | None = None,
    positions: Sequence[int] | np.ndarray | None = None,
    audio_format: str = "flac",
    batch_size: int = 64,
    overwrite: bool = False,
) -> Any:
    """Write a cached split as a ``datasets.Dataset`` in ``out`` and open it.

    Parameters
    ----------
    cache
        The split, from :func:`~audioset_data.cache.reader.open_cache`.
    out
        Folder for the Arrow file (``data.arrow``); reopen it later with
        ``datasets.Dataset.from_file(out / "data.arrow")``.
    label_index
        Source of the display names (the ``names`` column is null without one).
    positions
        Cache positions to export, in this order (all clips when None), e.g. one part of
        :func:`~audioset_data.segments.stratify.stratified_split`.
    audio_format
        ``"flac"`` or ``"wav"``: both lossless, FLAC about half the size.
    batch_size
        Clips read and written at a time.
    overwrite
        Replace an existing ``data.arrow``.

    Returns
    -------
    datasets.Dataset
        Memory-mapped from ``out / "data.arrow"``.

    Raises
    ------
    ConfigError
        ``datasets`` is not installed, or a setting is invalid, or the file exists.
    ExportError
        ``out`` is a file, lies under one, or cannot be written.
    """
    datasets = require("datasets", "hf")
    fmt = check_audio_format(audio_format)
    pos = positions_of(cache, positions)
    out = Path(out)
    path = out / ARROW_NAME
    if path.exists() and not overwrite:
        raise ConfigError(f"{str(path)!r} exists; pass overwrite=True to replace it")
    out = target_folder(out)
    mids = list(cache.label_mids)
    names = np.array(label_names(mids, label_index), dtype=object)
    features = hf_features(mids, cache.sample_rate)
    schema = features.arrow_schema
    meta = clip_table(cache, pos)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_stream(sink, schema) as writer:
            done = 0
            for _, clips in clip_batches(cache, pos, batch_size):
                rows = meta.slice(done, len(clips["length"])).combine_chunks()
                done += rows.num_rows
                writer.write_batch(_record_batch(rows, clips, cache.sample_rate, mids, names,
                                                 fmt, schema))
        tmp.replace(path)
    except OSError as exc:
        if isinstance(exc, AudioSetError):
            raise
        raise unwritable(out, exc) from None
    finally:
        tmp.unlink(missing_ok=True)
    logger.info("wrote %d clips of %s to %s", len(pos), cache.folder, path)
    return datasets.Dataset.from_file(str(path))


def _record_batch(rows: pa.Table, clips: dict[str, np.ndarray], sample_rate: int,
                  mids: list[str], names: np.ndarray, fmt: str,
                  schema: pa.Schema) -> pa.RecordBatch:
    keys = rows["key"].to_pylist()
    lengths = clips["length"]
    audio = [{"bytes": audio_bytes(w[:n], sample_rate, fmt), "path": f"{k}.{fmt}"}
             for w, n, k in zip(clips["waveform"], lengths, keys, strict=True)]
    label_ids = [np.flatnonzero(t) for t in clips["target"]]
    return pa.RecordBatch.from_pydict({
        "audio": audio,
        "key": keys,
        "ytid": rows["ytid"].chunk(0),
        "start": rows["start"].chunk(0),
        "end": rows["end"].chunk(0),
        "length": lengths.astype(np.int64),
        "labels": [ids.tolist() for ids in label_ids],
        "mids": [[mids[i] for i in ids] for ids in label_ids],
        "names": [names[ids].tolist() for ids in label_ids],
    }, schema=schema)


__all__ = ["ARROW_NAME", "hf_features", "to_hf_dataset"]
