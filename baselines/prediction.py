"""Inference with a trained baseline: clip (and frame) scores for a cached split or a folder.

The scores are written as ``.npz`` with ``ids`` and ``scores`` (and ``<name>.frames.npz`` for
frame models), the format ``audioset evaluate`` reads.

A folder of audio files is scored file by file: each file is decoded as it streams, in
consecutive windows of ten seconds (memory bounded by a batch of windows, whatever the file's
length), every window is scored as a clip, and the file's score pools its windows (``pool``,
max by default). Files get their name without suffix as id (the whole name where two stems
collide). Beside ``<name>.npz`` go ``<name>.windows.npz`` (``ids``: the file of each window,
``starts``: its start in seconds, ``scores``) and ``<name>.failures.csv`` (``file``,
``reason``: every file that could not be decoded, e.g. empty, corrupt or not audio, and was
skipped). A file shorter than one example of the model's front end (0.975 s for the frame
models) is zero-padded to one example and scored; a last window that short, after full ones,
is left out (it adds nothing but the padding). Nothing scored at all is an error.
"""

from __future__ import annotations

import csv
import ctypes
import ctypes.util
import logging
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from audioset_data.audio.ffmpeg import FFmpegError
from audioset_data.audio.stream import iter_windows
from audioset_data.cache.manifest import MANIFEST_NAME
from audioset_data.config import PathLike
from audioset_data.errors import CheckpointError, ConfigError
from audioset_data.evaluation.aggregate import POOL_METHODS, frames_to_clips
from audioset_data.fileio import atomic_write
from audioset_data.loaders import AudioSetDataset, EmbeddingDataset, collate, collate_embeddings

from .checkpoint import load_checkpoint, read_checkpoint
from .config import TrainConfig
from .inference import Scores, frontend_for, score_embeddings, score_loader
from .models import build_model, model_options

logger = logging.getLogger(__name__)

__all__ = ["AUDIO_SUFFIXES", "WINDOW_SECONDS", "FolderScores", "load_trained", "predict"]

AUDIO_SUFFIXES = (".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a", ".webm", ".aac")
#: Files of a folder are scored in consecutive windows of this many seconds (AudioSet's clips).
WINDOW_SECONDS = 10.0


def _glibc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc if hasattr(libc, "malloc_trim") else None  # musl has none
    except OSError:
        return None


_LIBC = _glibc()


def load_trained(checkpoint: PathLike, device: str = "cpu") -> tuple[torch.nn.Module,
                                                                       TrainConfig]:
    """The model of a training checkpoint and the configuration it was trained with.

    Raises
    ------
    CheckpointError
        The file is missing, empty, truncated, holds a pickle payload (objects other than
        tensors and plain values), or is not a training checkpoint; the message names it.
    """
    meta = read_checkpoint(checkpoint)
    if not isinstance(meta.get("config"), dict):
        raise CheckpointError(f"checkpoint {str(checkpoint)!r} is not a training checkpoint "
                              "(no configuration)")
    config = TrainConfig.from_dict(dict(meta["config"]))
    n_classes = _n_classes(meta)
    model = build_model(config.model, n_classes=n_classes, **model_options(config))
    load_checkpoint(checkpoint, model=model, map_location="cpu", restore_rng=False)
    return model.to(device).eval(), config


def _n_classes(meta: dict) -> int:
    state = meta.get("model", {})
    for key in reversed(list(state)):
        if key.endswith("weight") and getattr(state[key], "ndim", 0) == 2:
            return int(state[key].shape[0])
    raise ConfigError("cannot tell the number of classes from the checkpoint")


@dataclass
class FolderScores(Scores):
    """Scores of a folder of audio files: per file (``ids``, ``clips``: its windows pooled
    with ``pool``), per window (``window_ids``: the file id of each, ``window_starts`` in
    seconds, ``windows``), the files skipped with the reason (``failures``), and for frame
    models each example's start in its file (``frame_starts``, seconds)."""

    files: list[str] = field(default_factory=list)
    window_ids: list[str] = field(default_factory=list)
    window_starts: np.ndarray = field(default_factory=lambda: np.zeros(0))
    windows: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))
    frame_starts: np.ndarray | None = None
    failures: list[tuple[str, str]] = field(default_factory=list)
    pool: str = "max"

    def save(self, path: str) -> None:
        """``<name>.npz`` (``ids``, ``scores``, ``files``), ``<name>.windows.npz``, for frame
        models ``<name>.frames.npz`` (with ``starts``), and ``<name>.failures.csv``."""
        base = str(path)[:-4] if str(path).endswith(".npz") else str(path)
        np.savez(base + ".npz", ids=np.asarray(self.ids), scores=self.clips.astype(np.float32),
                 files=np.asarray(self.files))
        np.savez(base + ".windows.npz", ids=np.asarray(self.window_ids),
                 starts=self.window_starts, scores=self.windows.astype(np.float32))
        if self.frame_scores is not None:
            np.savez(base + ".frames.npz", ids=np.asarray(self.frame_ids), frames=self.frames,
                     starts=self.frame_starts, scores=self.frame_scores.astype(np.float32))
        _write_failures(self, base + ".npz")


def _audio_files(folder: Path) -> list[Path]:
    files = sorted(p for p in folder.iterdir()
                   if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES)
    if not files:
        raise ConfigError(f"no audio files ({', '.join(AUDIO_SUFFIXES)}) in {folder}")
    return files


def _file_ids(files: list[Path]) -> list[str]:
    """Each file's id: its stem, or its whole name where stems collide (``a.wav``, ``a.mp3``)."""
    stems = [p.stem for p in files]
    return [p.stem if stems.count(p.stem) == 1 else p.name for p in files]


def _reason(path: Path, exc: FFmpegError) -> str:
    """Why a file was skipped, in a few words."""
    if path.stat().st_size == 0:
        return "empty file (0 bytes)"
    if exc.kind == "no_audio":
        return "no audio samples in it"
    last = [ln.strip() for ln in exc.stderr.splitlines() if ln.strip()]
    said = last[-1].split("] ")[-1] if last else str(exc)
    return f"ffmpeg cannot decode it: {said}"


def _windows(files: list[Path], rate: int, min_samples: int,
             failures: dict[int, str]) -> Iterator[tuple[int, int, np.ndarray]]:
    """``(file number, window number, samples)`` of every file, streamed; a file that cannot be
    decoded is logged and entered in ``failures`` (windows it gave before breaking off are
    dropped later)."""
    for i, path in enumerate(files):
        try:
            for w, pcm in enumerate(iter_windows(path, sample_rate=rate,
                                                 seconds=WINDOW_SECONDS)):
                if w > 0 and len(pcm) < min_samples:
                    continue  # a last scrap after full windows: nothing but padding to score
                yield i, w, pcm
        except FFmpegError as exc:
            failures[i] = _reason(path, exc)
            logger.warning("skipping %s: %s", path, failures[i])


def _batches(windows: Iterator[tuple[int, int, np.ndarray]], batch_size: int, n: int,
             min_samples: int) -> Iterator[dict[str, object]]:
    """Batches of windows as the scoring loop takes them (int16, zero-padded to ``n``)."""
    items: list[tuple[int, int, np.ndarray]] = []

    def batch() -> dict[str, object]:
        wave = torch.zeros((len(items), n), dtype=torch.int16)
        for row, (_, _, pcm) in enumerate(items):
            wave[row, : len(pcm)] = torch.from_numpy(pcm)
        # a window shorter than one example counts as one example long: padded, it is scored
        lengths = torch.tensor([max(len(pcm), min_samples) for _, _, pcm in items])
        return {"waveform": wave, "length": lengths,
                "key": [f"{i}:{w}" for i, w, _ in items]}

    for item in windows:
        items.append(item)
        if len(items) == batch_size:
            yield batch()
            items = []
    if items:
        yield batch()


def _trim_heap() -> None:
    """Hand the C heap's free pages back to the system (glibc's ``malloc_trim``; elsewhere
    nothing). Scoring batch after batch leaves the heap fragmented by the small arrays that
    are kept between the large ones that are freed: without this, scoring an hour-long file
    grew the process by about 100 MB, growing with the file's length; with it, it stays
    within a batch's working memory."""
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


def _trimming(batches: Iterator[dict[str, object]]) -> Iterator[dict[str, object]]:
    for batch in batches:
        yield batch
        _trim_heap()


def _score_folder(model: torch.nn.Module, folder: Path, dev: torch.device, *,
                  frame_level: bool, batch_size: int, pool: str,
                  progress: bool) -> FolderScores:
    """Score every audio file of ``folder`` window by window (see the module's docstring)."""
    files = _audio_files(folder)
    ids = _file_ids(files)
    rate = int(frontend_for(model, 16000).config.sample_rate)
    frontend = frontend_for(model, rate).to(dev)
    n = int(round(WINDOW_SECONDS * rate))
    min_samples = min(n, int(np.ceil(frontend.example_seconds() * rate)))
    failures: dict[int, str] = {}
    batches = _batches(_windows(files, rate, min_samples, failures), batch_size, n, min_samples)
    scored = score_loader(model, frontend, _trimming(batches), dev, frame_level=frame_level,
                          progress=progress)
    where = [tuple(int(x) for x in k.split(":")) for k in scored.ids]
    keep = np.array([f not in failures for f, _ in where], dtype=bool)
    for i in range(len(files)):
        if i not in failures and not any(f == i for f, _ in where):
            failures[i] = "too short to score"
    failed = [(files[i].name, failures[i]) for i in sorted(failures)]
    if not keep.any():
        return FolderScores(ids=[], clips=np.zeros((0, scored.clips.shape[1])),
                            failures=failed, pool=pool)
    window_file = np.array([f for f, _ in where])[keep]
    windows = scored.clips[keep]
    order, pooled = frames_to_clips(windows, window_file, pool)
    result = FolderScores(
        ids=[ids[i] for i in order], clips=pooled, files=[files[i].name for i in order],
        window_ids=[ids[i] for i in window_file],
        window_starts=np.array([w for f, w in where], dtype=np.float64)[keep] * WINDOW_SECONDS,
        windows=windows, failures=failed, pool=pool)
    if scored.frame_scores is not None:
        fw = [tuple(int(x) for x in k.split(":")) for k in scored.frame_ids or []]
        fkeep = np.array([f not in failures for f, _ in fw], dtype=bool)
        hop = frontend.config.example_frames * frontend.config.hop_length / rate
        result.frame_ids = [ids[f] for (f, _), k in zip(fw, fkeep, strict=True) if k]
        result.frame_starts = (np.array([w for _, w in fw], dtype=np.float64) * WINDOW_SECONDS
                               + np.asarray(scored.frames) * hop)[fkeep]
        result.frame_scores = scored.frame_scores[fkeep]
        # frames numbered from 0 through each file, in time order
        file_of = np.array([f for f, _ in fw])[fkeep]
        result.frames = np.zeros(len(file_of), np.int64)
        for f in np.unique(file_of):
            sel = np.flatnonzero(file_of == f)
            result.frames[sel[np.argsort(result.frame_starts[sel], kind="stable")]] = \
                np.arange(len(sel))
    logger.info("scored %d files (%d windows); %d skipped", len(result.ids),
                len(result.window_ids), len(failed))
    return result


def predict(
    checkpoint: PathLike,
    source: str,
    out: PathLike,
    *,
    root: PathLike | None = None,
    batch_size: int = 32,
    device: str = "auto",
    progress: bool = True,
    pool: str = "max",
) -> Scores:
    """Score ``source`` (a cached split name or cache folder, or a folder of audio files)
    with the model of ``checkpoint`` and write the scores to ``out`` (``.npz``).

    A folder's files are scored in windows of :data:`WINDOW_SECONDS`, pooled per file with
    ``pool`` (``"max"``, ``"mean"`` or ``"linear_softmax"``), and the files that cannot be
    decoded are skipped and listed in ``<out>.failures.csv``; see the module's docstring.
    The result is then a :class:`FolderScores`.

    Raises
    ------
    CheckpointError
        ``checkpoint`` is missing, empty, truncated, holds a pickle payload or is not a
        training checkpoint.
    ConfigError
        Not one file of the folder could be scored (the failures file is written first).
    """
    if pool not in POOL_METHODS:
        raise ConfigError(f"pool {pool!r}: use one of {', '.join(POOL_METHODS)}")
    dev = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else
                       ("cpu" if device == "auto" else device))
    model, config = load_trained(checkpoint, str(dev))
    if model.frontend == "embeddings":
        # the model reads the release's embeddings: ``source`` names an embeddings store
        # (a split may exist both as an audio cache and as a store; the model decides)
        data = EmbeddingDataset(source, root=root)
        loader = torch.utils.data.DataLoader(data, batch_size=max(batch_size, 256),
                                             collate_fn=collate_embeddings)
        scores = score_embeddings(model, loader, dev, progress=progress)
        return _write(scores, out)
    frame_level = model.frontend == "vggish"
    folder = Path(source)
    audio_folder = folder.is_dir() and not (folder / MANIFEST_NAME).exists() and any(
        p.suffix.lower() in AUDIO_SUFFIXES for p in folder.iterdir())
    if audio_folder:
        result = _score_folder(model, folder, dev, frame_level=frame_level,
                               batch_size=batch_size, pool=pool, progress=progress)
        if not result.ids:
            _write_failures(result, out)
            shown = "; ".join(f"{f}: {r}" for f, r in result.failures[:5])
            more = "; ..." if len(result.failures) > 5 else ""
            raise ConfigError(f"none of the {len(result.failures)} audio files in {folder} "
                              f"could be scored ({shown}{more}); listed in "
                              f"{_out_path(out).with_suffix('.failures.csv')}")
        return _write(result, out)
    dataset = AudioSetDataset(source, root=root)
    rate = dataset.cache.sample_rate
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, collate_fn=collate)
    frontend = frontend_for(model, rate).to(dev)
    scores = score_loader(model, frontend, loader, dev, frame_level=frame_level,
                          progress=progress)
    return _write(scores, out)


def _out_path(out: PathLike) -> Path:
    """``out`` with the ``.npz`` suffix (added when missing)."""
    out = Path(out)
    return out if out.suffix == ".npz" else out.with_suffix(".npz")


def _write_failures(scores: FolderScores, out: PathLike) -> None:
    path = _out_path(out).with_suffix(".failures.csv")
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path, "w", durable=False, encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(["file", "reason"])
        writer.writerows(scores.failures)


def _write(scores: Scores, out: PathLike) -> Scores:
    """Save ``scores`` to ``out`` (``.npz``; the suffix is added when missing)."""
    out = _out_path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    scores.save(str(out))
    logger.info("wrote scores of %d clips to %s", len(scores.ids), out)
    return scores
