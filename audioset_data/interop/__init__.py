"""Interop with the tools people already use: Hugging Face ``datasets``, lhotse and PANNs.

- :func:`to_hf_dataset` writes a cached split as a ``datasets.Dataset`` (an ``Audio`` column
  plus labels, key, ytid and start), memory-mapped from one Arrow file.
- :func:`to_lhotse` writes a cached split as lhotse manifests (recordings referencing FLAC or
  WAV files, one supervision per clip carrying its labels).
- :func:`to_webdataset` writes a cached split as tar shards ``webdataset`` reads as they are
  (the stored audio bytes and a JSON of labels per clip), with an index for multi-machine
  training.
- :func:`import_panns` reads a split from a local copy in PANNs' HDF5 layout into the
  project's cache, so the audio need not be crawled again; :func:`import_passt` (PaSST's and
  EfficientAT's MP3 HDF5), :func:`import_hf_parquet` (``agkphysics/AudioSet`` parquet shards)
  and :func:`import_webdataset` (tar shards such as ``confit/audioset-16khz-wds``) do the same
  for the other copies people keep, each checked against the segment list
  (:class:`ImportReport`).

``datasets`` and ``lhotse`` are optional extras (``pip install audioset-data[hf]`` /
``[lhotse]``), imported only inside the functions that need them: importing this package
imports neither, nor torch.
"""

from __future__ import annotations

import importlib
import io
import os
import wave
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from audioset_data.cache.codec import encode_clip
from audioset_data.config import PathLike
from audioset_data.errors import ConfigError, ExportError

if TYPE_CHECKING:
    from audioset_data.cache.reader import AudioSetCache
    from audioset_data.segments.labels import LabelIndex

#: Audio formats the exports write: lossless both, FLAC about half the size of WAV.
AUDIO_FORMATS = ("flac", "wav")

_EXPORTS = {
    "to_hf_dataset": ".huggingface",
    "to_lhotse": ".lhotse_export",
    "to_webdataset": ".webdataset_export",
    "import_panns": ".panns",
    "PannsImport": ".panns",
    "import_passt": ".passt_h5",
    "import_hf_parquet": ".hf_parquet",
    "import_webdataset": ".wds_import",
    "ImportReport": ".copies",
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def require(module: str, extra: str) -> Any:
    """Import an optional dependency or raise :class:`ConfigError` naming the extra."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ConfigError(f"{module} is not installed ({exc}); install it with "
                          f"`pip install audioset-data[{extra}]`") from None


def target_folder(out: PathLike) -> Path:
    """The export folder ``out``, created if needed; an unusable one (a file, under a file,
    not writable) raises :class:`~audioset_data.errors.ExportError` naming the path."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ExportError(f"export target {str(out)!r} is a file, not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        above = next((p for p in out.parents if p.exists() and not p.is_dir()), None)
        where = f"{str(above)!r} is a file, not a folder" if above else "a part of it is a file"
        raise ExportError(f"cannot create the export folder {str(out)!r}: {where}") from None
    except OSError as exc:
        raise unwritable(out, exc) from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise ExportError(f"export folder {str(out)!r} is not writable; choose a folder you "
                          "can write to")
    return out


def unwritable(path: PathLike, exc: OSError) -> ExportError:
    """The :class:`~audioset_data.errors.ExportError` of a write under ``path`` that failed."""
    what = exc.strerror or str(exc)
    where = exc.filename if getattr(exc, "filename", None) else path
    return ExportError(f"cannot write the export at {str(where)!r}: {what}; choose a folder "
                       "you can write to")


def check_audio_format(fmt: str) -> str:
    """``fmt`` if it is one of :data:`AUDIO_FORMATS`, else :class:`ConfigError`."""
    if fmt not in AUDIO_FORMATS:
        raise ConfigError(f"audio_format={fmt!r}: choose one of {', '.join(AUDIO_FORMATS)}")
    return fmt


def audio_bytes(pcm: np.ndarray, sample_rate: int, fmt: str) -> bytes:
    """One clip's int16 samples as a whole WAV or FLAC file."""
    if fmt == "flac" and len(pcm):
        return encode_clip(pcm, sample_rate, "flac")
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(int(sample_rate))
        w.writeframes(np.ascontiguousarray(pcm, dtype="<i2").tobytes())
    return buf.getvalue()


def label_names(mids: Sequence[str], label_index: LabelIndex | None) -> list[str | None]:
    """Display name of each mid (None where the index lacks it or no index is given)."""
    if label_index is None:
        return [None] * len(mids)
    return [label_index.name(m) if m in label_index else None for m in mids]


def positions_of(cache: AudioSetCache, positions: Sequence[int] | np.ndarray | None
                 ) -> np.ndarray:
    """The positions to export (all clips when None), checked against the cache."""
    if positions is None:
        return np.arange(len(cache), dtype=np.int64)
    pos = np.asarray(positions, dtype=np.int64).reshape(-1)
    if len(pos) and (pos.min() < 0 or pos.max() >= len(cache)):
        raise ConfigError(f"positions must lie in 0..{len(cache) - 1} for {cache.folder}")
    return pos


def clip_table(cache: AudioSetCache, positions: np.ndarray) -> pa.Table:
    """Key, ytid, start and end of the clips at ``positions``, in that order."""
    keys = np.asarray(cache.keys(), dtype=object)
    return pa.table({
        "key": pa.array(keys[positions], pa.string()),
        "ytid": pa.array(cache.ytids[positions], pa.string()),
        "start": pa.array(cache.starts[positions], pa.float64()),
        "end": pa.array(cache._end[positions], pa.float64()),  # the reader has no public ends
    })


def clip_batches(cache: AudioSetCache, positions: np.ndarray, batch_size: int
                 ) -> Iterator[tuple[np.ndarray, dict[str, np.ndarray]]]:
    """Read the clips at ``positions`` in batches (one batch read each): yields the batch's
    positions and :meth:`AudioSetCache.read`'s arrays."""
    if batch_size < 1:
        raise ConfigError(f"batch_size={batch_size!r} must be at least 1")
    for i in range(0, len(positions), batch_size):
        pos = positions[i:i + batch_size]
        yield pos, cache.read(pos)


__all__ = ["AUDIO_FORMATS", "ImportReport", "PannsImport", "import_hf_parquet", "import_panns",
           "import_passt", "import_webdataset", "to_hf_dataset", "to_lhotse",
           "to_webdataset"]
