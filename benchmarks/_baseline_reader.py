"""The cache reader as it was before the training-scale rewrite: the named baseline of
``bench_reader.py`` (a pandas index of every placement, every file opened at start, four HDF5
name look-ups and a pandas ``.iloc`` per item, one ffmpeg process per compact-format clip)."""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from audioset_data.cache.manifest import Manifest
from audioset_data.config import PathLike
from audioset_data.errors import CacheError

MANIFEST_NAME = "manifest.sqlite"


class BaselineCache:
    """All cached clips of one cache folder presented as one indexable collection.

    Opening checks that every file the manifest references exists with the recorded number of
    rows and fails loudly otherwise. HDF5 handles are opened lazily and per process, so an
    instance can be handed to forked DataLoader workers.

    Items are dicts with ``waveform`` (int16, padded to the clip length), ``length``,
    ``target`` (bool), ``ytid``, ``start`` and ``end``.
    """

    def __init__(self, folder: PathLike, manifest_name: str = MANIFEST_NAME):
        self.folder = Path(folder)
        path = self.folder / manifest_name
        if not path.is_file():
            parts = sorted(self.folder.glob("manifest.part-*.sqlite"))
            hint = " (run `audioset merge` to join the part manifests)" if parts else ""
            raise CacheError(f"no cache at {str(self.folder)!r}: {manifest_name} is missing{hint}")
        with Manifest.open(path, readonly=True) as manifest, manifest.snapshot():
            self.index = manifest.placements()
            files = manifest.files()
            self.sample_rate = int(manifest.get_meta("sample_rate") or 0)
            self.format = manifest.get_meta("format") or "pcm16"
            self.clip_samples = int(manifest.get_meta("clip_samples") or 0)
            mids = manifest.get_meta("labels")
        self.label_mids = mids.split(",") if mids else []
        self._check_files(files)
        self._pid: int | None = None
        self._handles: dict[str, h5py.File] = {}

    def _check_files(self, files: pd.DataFrame) -> None:
        counts = self.index.groupby("file").size()
        for name, n_rows in zip(files["name"], files["n_rows"], strict=True):
            path = self.folder / name
            if not path.is_file():
                raise CacheError(f"cache file {str(path)!r} is missing ({n_rows} clips)")
            try:
                with h5py.File(path, "r") as h5:
                    shape = h5["target"].shape
                    audio = "waveform" if "waveform" in h5 else "audio"
                    audio_rows = h5[audio].shape[0]
            except (OSError, KeyError) as exc:
                raise CacheError(f"cache file {str(path)!r} cannot be read: {exc}") from exc
            if shape[0] != n_rows or audio_rows != n_rows:
                raise CacheError(
                    f"cache file {str(path)!r} holds {shape[0]} rows, the manifest expects {n_rows}"
                )
        unknown = set(counts.index) - set(files["name"])
        if unknown:
            raise CacheError(f"manifest places clips in unregistered files: {sorted(unknown)[:5]}")

    def __len__(self) -> int:
        return len(self.index)

    def __repr__(self) -> str:
        return f"AudioSetCache({str(self.folder)!r}, {len(self)} clips, {self.format})"

    def _h5(self, name: str) -> h5py.File:
        if self._pid != os.getpid():
            self._handles = {}
            self._pid = os.getpid()
        h5 = self._handles.get(name)
        if h5 is None:
            h5 = self._handles[name] = h5py.File(self.folder / name, "r")
        return h5

    def __getitem__(self, i: int) -> dict[str, object]:
        if not -len(self) <= i < len(self):
            raise IndexError(f"clip {i} out of range for {len(self)} clips")
        rec = self.index.iloc[i]
        h5 = self._h5(rec["file"])
        row = int(rec["row"])
        length = int(h5["length"][row])
        if "waveform" in h5:
            waveform = h5["waveform"][row]
        else:
            from audioset_data.audio.memory import decode_audio

            pcm, _ = decode_audio(bytes(h5["audio"][row]), sample_rate=self.sample_rate,
                                  num_samples=length)
            waveform = np.zeros(self.clip_samples, dtype=np.int16)
            waveform[: min(len(pcm), self.clip_samples)] = pcm[: self.clip_samples]
        return {
            "waveform": waveform,
            "length": length,
            "target": h5["target"][row],
            "ytid": rec["ytid"],
            "start": float(rec["start"]),
            "end": float(rec["end"]),
        }

    def targets(self) -> np.ndarray:
        """Clips × labels boolean matrix, in the order of this cache's index."""
        out = np.zeros((len(self), len(self.label_mids)), dtype=bool)
        for name, rows in self.index.groupby("file").indices.items():
            file_rows = self.index["row"].to_numpy()[rows]
            out[rows] = self._h5(name)["target"][()][file_rows]
        return out

    def close(self) -> None:
        """Close open HDF5 handles."""
        for h5 in self._handles.values():
            h5.close()
        self._handles = {}

    def __getstate__(self) -> dict[str, object]:
        state = self.__dict__.copy()
        state["_handles"] = {}
        state["_pid"] = None
        return state



