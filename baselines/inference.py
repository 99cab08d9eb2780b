"""Scoring a model on a cached split: clip scores (and frame scores for frame models), in order.

Frame-level models (``fc``, ``resnet50``) score each 960 ms example and the clip score is the
mean over its examples, through the evaluation harness's aggregation, or for a model trained
with a clip pooling (its ``clip_pool``) that pooling of the example logits; clip-level models
(``cnn14``) score the whole log-mel. Under DDP each rank scores its share and the parts are
joined by clip id with :func:`~audioset_data.evaluation.gather_scores`.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from tqdm.auto import tqdm

from audioset_data.errors import ConfigError
from audioset_data.evaluation.aggregate import frames_to_clips
from audioset_data.evaluation.harness import gather_scores
from audioset_data.loaders.embeddings import dequantize
from audioset_data.loaders.frontend import PANNS, VGGISH, LogMel

logger = logging.getLogger(__name__)

__all__ = ["Scores", "autocast", "clip_pool", "frontend_for", "model_inputs", "score_loader"]


def frontend_for(model: nn.Module, input_rate: int) -> nn.Module:
    """The log-mel front end a model expects (its ``frontend``: ``"vggish"`` or ``"panns"``),
    reading waveforms at ``input_rate``."""
    presets = {"vggish": VGGISH, "panns": PANNS}
    name = getattr(model, "frontend", "panns")
    if name not in presets:
        raise ConfigError(f"model {type(model).__name__} wants front end {name!r}; known: "
                          f"{sorted(presets)}")
    return LogMel(presets[name], input_rate=input_rate)


@dataclass
class Scores:
    """Sigmoid scores of clips (``ids``, ``clips``) and, for frame models, of their examples
    (``frame_ids``, ``frames``: example number within its clip, ``frame_scores``)."""

    ids: list[str]
    clips: np.ndarray
    frame_ids: list[str] | None = None
    frames: np.ndarray | None = None
    frame_scores: np.ndarray | None = None

    def save(self, path: str) -> None:
        """Write the clip scores as ``.npz`` (``ids``, ``scores``), the format ``audioset
        evaluate`` reads; frame scores go beside it as ``<name>.frames.npz``."""
        np.savez(path, ids=np.asarray(self.ids), scores=self.clips.astype(np.float32))
        if self.frame_scores is not None:
            base = str(path)[:-4] if str(path).endswith(".npz") else str(path)
            np.savez(base + ".frames.npz", ids=np.asarray(self.frame_ids),
                     frames=self.frames, scores=self.frame_scores.astype(np.float32))


def autocast(device: torch.device, bf16: bool) -> contextlib.AbstractContextManager:
    """bf16 autocast on ``device`` when asked, else nothing."""
    if not bf16:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def model_inputs(frontend: nn.Module, frame_level: bool, wave: torch.Tensor,
                 lengths: torch.Tensor, *, shift: bool = False,
                 ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Log-mel input of a batch: ``(examples, clip_index)`` for frame models, ``(log-mel,
    None)`` for clip models. ``shift`` (training, frame models): examples start at a random
    point of each clip (:meth:`~audioset_data.loaders.frontend.LogMel.examples`)."""
    if frame_level:
        examples, clip_index = frontend.examples(wave, lengths, shift=shift)
        return examples, clip_index
    return frontend(wave, lengths), None


@torch.no_grad()
def score_loader(model: nn.Module, frontend: nn.Module, loader: torch.utils.data.DataLoader,
                 device: torch.device, *, frame_level: bool, bf16: bool = False,
                 progress: bool = False, distributed: bool = False) -> Scores:
    """Score every batch of ``loader`` (items with ``waveform``, ``length``, ``key``)."""
    was_training = model.training
    model.eval()
    pool = clip_pool(model)
    ids: list[str] = []
    clip_rows: list[np.ndarray] = []
    f_ids: list[str] = []
    f_num: list[np.ndarray] = []
    f_rows: list[np.ndarray] = []
    try:
        for batch in tqdm(loader, desc="scoring", disable=not progress, leave=False):
            wave = batch["waveform"].to(device, non_blocking=True)
            lengths = batch["length"].to(device)
            keys = list(batch["key"])
            with autocast(device, bf16):
                x, clip_index = model_inputs(frontend, frame_level, wave, lengths)
                logits = model(x) if len(x) else x.new_zeros((0, _n_out(model)))
                pooled_logits = (model(x, clip_index)[0]
                                 if len(x) and clip_index is not None and pool != "frame"
                                 else None)
            prob = torch.sigmoid(logits.float()).cpu().numpy()
            if clip_index is None:
                ids.extend(keys)
                clip_rows.append(prob)
                continue
            ci = clip_index.cpu().numpy()
            starts = np.searchsorted(ci, ci, side="left")
            f_ids.extend(keys[i] for i in ci)
            f_num.append(np.arange(len(ci)) - starts)
            f_rows.append(prob)
            scored = np.unique(ci)
            if len(scored) < len(keys):
                logger.warning("%d clips are shorter than one example and get no score",
                               len(keys) - len(scored))
            if len(ci):
                if pool == "frame":
                    _, pooled = frames_to_clips(prob, ci, "mean")
                else:  # the pooling the model was trained with
                    pooled = torch.sigmoid(pooled_logits.float()).cpu().numpy()
                ids.extend(keys[i] for i in scored)
                clip_rows.append(pooled)
    finally:
        model.train(was_training)
    n_out = _n_out(model)
    clips = np.concatenate(clip_rows) if clip_rows else np.zeros((0, n_out))
    frames = np.concatenate(f_num) if f_num else np.zeros(0, np.int64)
    fs = np.concatenate(f_rows) if f_rows else np.zeros((0, n_out))
    if distributed:
        ids, clips, f_ids, frames, fs = _gather(ids, clips, f_ids, frames, fs)
    if not frame_level:
        return Scores(ids, clips)
    return Scores(ids, clips, f_ids, frames, fs)


@torch.no_grad()
def score_embeddings(model: nn.Module, loader: torch.utils.data.DataLoader,
                     device: torch.device, *, bf16: bool = False, progress: bool = False,
                     distributed: bool = False) -> Scores:
    """Clip scores of a model that reads the release's embeddings, for every batch of
    ``loader`` (items of an :class:`~audioset_data.loaders.embeddings.EmbeddingDataset`).
    A clip with no frames still gets a row: every clip of the split is scored."""
    was_training = model.training
    model.eval()
    ids: list[str] = []
    rows: list[np.ndarray] = []
    try:
        for batch in tqdm(loader, desc="scoring", disable=not progress, leave=False):
            x = dequantize(batch["embedding"].to(device, non_blocking=True))
            mask = batch["mask"].to(device)
            with autocast(device, bf16):
                logits = model(x, mask)
            rows.append(torch.sigmoid(logits.float()).cpu().numpy())
            ids.extend(batch["key"])
    finally:
        model.train(was_training)
    clips = np.concatenate(rows) if rows else np.zeros((0, _n_out(model)))
    if distributed:
        ids, clips, *_ = _gather(ids, clips, [], np.zeros(0, np.int64),
                                 np.zeros((0, clips.shape[1])))
    return Scores(ids, clips)


def _n_out(model: nn.Module) -> int:
    inner = getattr(model, "module", model)
    return int(getattr(inner, "n_classes", 527))


def clip_pool(model: nn.Module) -> str:
    """How a frame model's example logits make a clip's (its ``clip_pool``; ``"frame"``, the
    mean example probability, for models without one); looks through DDP and compile."""
    inner = getattr(model, "_orig_mod", model)
    inner = getattr(inner, "module", inner)
    inner = getattr(inner, "_orig_mod", inner)
    return str(getattr(inner, "clip_pool", "frame"))


def _gather(ids: list[str], clips: np.ndarray, f_ids: list[str], frames: np.ndarray,
            fs: np.ndarray) -> tuple[list[str], np.ndarray, list[str], np.ndarray, np.ndarray]:
    """Join every rank's clip and frame scores, each clip once: the distributed sampler pads
    with repeated clips, which are recognised by clip id (never by comparing scores, which
    bf16 on different ranks need not reproduce bit for bit)."""
    parts: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(parts, (ids, clips, f_ids, frames, fs))
    ids, clips = gather_scores([(p[0], p[1]) for p in parts])
    keep_ids: list[str] = []
    keep_frames: list[np.ndarray] = []
    keep_rows: list[np.ndarray] = []
    done: set[str] = set()
    for _, _, p_ids, p_frames, p_rows in parts:
        new = [k not in done for k in p_ids]
        keep_ids.extend(k for k, n in zip(p_ids, new, strict=True) if n)
        keep_frames.append(np.asarray(p_frames)[np.asarray(new, dtype=bool)])
        keep_rows.append(np.asarray(p_rows)[np.asarray(new, dtype=bool)])
        done.update(p_ids)
    return (ids, clips, keep_ids, np.concatenate(keep_frames),
            np.concatenate(keep_rows))
