"""Inference with a trained baseline: clip (and frame) scores for a cached split or a folder.

The scores are written as ``.npz`` with ``ids`` and ``scores`` (and ``<name>.frames.npz`` for
frame models), the format ``audioset evaluate`` reads. Files in a folder get their file name
(without suffix) as id and are scored as one clip of up to ten seconds each.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from audioset_data.audio.memory import decode_audio
from audioset_data.cache.manifest import MANIFEST_NAME
from audioset_data.config import PathLike
from audioset_data.errors import ConfigError
from audioset_data.loaders import AudioSetDataset, EmbeddingDataset, collate, collate_embeddings

from .checkpoint import load_checkpoint
from .config import TrainConfig
from .inference import Scores, frontend_for, score_embeddings, score_loader
from .models import build_model

logger = logging.getLogger(__name__)

__all__ = ["AUDIO_SUFFIXES", "load_trained", "predict"]

AUDIO_SUFFIXES = (".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a", ".webm", ".aac")


def load_trained(checkpoint: PathLike, device: str = "cpu") -> tuple[torch.nn.Module,
                                                                       TrainConfig]:
    """The model of a training checkpoint and the configuration it was trained with."""
    meta = torch.load(Path(checkpoint), map_location="cpu", weights_only=True)
    if not isinstance(meta, dict) or "config" not in meta:
        raise ConfigError(f"{checkpoint}: not a training checkpoint (no configuration)")
    config = TrainConfig.from_dict(dict(meta["config"]))
    n_classes = _n_classes(meta)
    options = {"hidden": config.hidden} if config.model == "fc" else {}
    model = build_model(config.model, n_classes=n_classes, **options)
    load_checkpoint(checkpoint, model=model, map_location="cpu", restore_rng=False)
    return model.to(device).eval(), config


def _n_classes(meta: dict) -> int:
    state = meta.get("model", {})
    for key in reversed(list(state)):
        if key.endswith("weight") and getattr(state[key], "ndim", 0) == 2:
            return int(state[key].shape[0])
    raise ConfigError("cannot tell the number of classes from the checkpoint")


class _Folder(torch.utils.data.Dataset):
    """Audio files of a folder as clips at ``rate`` Hz, zero-padded to ten seconds."""

    def __init__(self, folder: Path, rate: int, seconds: float = 10.0):
        self.files = sorted(p for p in folder.iterdir()
                            if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES)
        if not self.files:
            raise ConfigError(f"no audio files ({', '.join(AUDIO_SUFFIXES)}) in {folder}")
        self.rate = rate
        self.samples = int(round(seconds * rate))

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> dict[str, object]:
        pcm, _ = decode_audio(self.files[i].read_bytes(), sample_rate=self.rate)
        length = min(len(pcm), self.samples)
        wave = np.zeros(self.samples, np.float32)
        wave[:length] = pcm[:length] / 32768.0
        return {"waveform": torch.from_numpy(wave), "length": length, "key": self.files[i].stem}


def predict(
    checkpoint: PathLike,
    source: str,
    out: PathLike,
    *,
    root: PathLike | None = None,
    batch_size: int = 32,
    device: str = "auto",
    progress: bool = True,
) -> Scores:
    """Score ``source`` (a cached split name or cache folder, or a folder of audio files)
    with the model of ``checkpoint`` and write the scores to ``out`` (``.npz``)."""
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
        rate = int(frontend_for(model, 16000).config.sample_rate)
        dataset: torch.utils.data.Dataset = _Folder(folder, rate)
        loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size)
    else:
        dataset = AudioSetDataset(source, root=root)
        rate = dataset.cache.sample_rate
        loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, collate_fn=collate)
    frontend = frontend_for(model, rate).to(dev)
    scores = score_loader(model, frontend, loader, dev, frame_level=frame_level,
                          progress=progress)
    return _write(scores, out)


def _write(scores: Scores, out: PathLike) -> Scores:
    """Save ``scores`` to ``out`` (``.npz``; the suffix is added when missing)."""
    out = Path(out)
    if out.suffix != ".npz":
        out = out.with_suffix(".npz")
    out.parent.mkdir(parents=True, exist_ok=True)
    scores.save(str(out))
    logger.info("wrote scores of %d clips to %s", len(scores.ids), out)
    return scores
