"""The baseline models by name, and clip scores from a patch model's example scores.

``MODELS`` maps a name to its class; each class says which front end feeds it (``frontend``:
``"vggish"`` 96 x 64 patches or ``"panns"`` clip log-mel), its ``input_shape`` (``None`` for a
free axis) and ``embedding_dim``. Every model has ``forward(x) -> logits`` and
``embedding(x) -> (batch, embedding_dim)``.

A frame model's ``clip_pool`` says how its examples make a clip's score (see
:mod:`~audioset_data.baselines.pooling`): ``"frame"`` (each example trains on its clip's
labels; a clip scores the mean example probability) or a pooling that the loop trains and
scores at clip level (multiple-instance learning: a 5-s event in a 10-s clip is not diluted by
the noise around it); such a model's ``forward(x, clip_index)`` returns the pooled clip logits.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

import torch
from torch import nn

from audioset_data.errors import ConfigError

from .cnn14 import Cnn14
from .embedding import EmbeddingAttention, EmbeddingFC
from .fc import FullyConnected
from .pooling import CLIP_POOLS, pool_clips
from .resnet import ResNet50

MODELS: dict[str, type[nn.Module]] = {
    "fc": FullyConnected,
    "resnet50": ResNet50,
    "cnn14": Cnn14,
    "embedding-fc": EmbeddingFC,
    "embedding-attention": EmbeddingAttention,
}

if TYPE_CHECKING:
    from .config import TrainConfig

ClipPool = Literal["mean", "max", "lse", "linsoft"]


def native_cpu_bf16() -> bool:
    """Whether this CPU computes bf16 matrix products natively (AVX512-BF16 or AMX): there
    bf16 autocast speeds small dense layers up instead of emulating them."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def trains_in_bf16(name: str, precision: str, device: torch.device) -> bool:
    """Whether training runs under bf16 autocast: ``precision="bf16"``, or ``"auto"`` on a GPU,
    or ``"auto"`` on a CPU with native bf16 for a model whose class says it trains as well
    there (``cpu_bf16``; measured for the embedding models, not for the log-mel front end)."""
    if precision != "auto":
        return precision == "bf16"
    if device.type == "cuda":
        return True
    cls = MODELS.get(name)
    return (device.type == "cpu" and bool(getattr(cls, "cpu_bf16", False))
            and native_cpu_bf16())


def reads_embeddings(name: str) -> bool:
    """Whether the model ``name`` reads the release's 128-d embeddings (an embeddings store)
    rather than audio through a log-mel front end.

    Raises
    ------
    ConfigError
        ``name`` is not registered.
    """
    if name not in MODELS:
        raise ConfigError(f"unknown model {name!r}; known models: {', '.join(sorted(MODELS))}")
    return getattr(MODELS[name], "frontend", "") == "embeddings"


def model_defaults(name: str) -> dict[str, Any]:
    """The training settings that work for model ``name`` where they differ from
    :class:`~audioset_data.baselines.config.TrainConfig`'s (a class's ``train_defaults``):
    ``audioset train --model NAME`` starts from them, and flags given override them."""
    reads_embeddings(name)  # checks the name
    return dict(getattr(MODELS[name], "train_defaults", {}))


def model_options(config: TrainConfig) -> dict[str, Any]:
    """The :func:`build_model` options a training configuration sets for its model (the fc's
    widths, dropout, clip pooling and input normalisation); training and :func:`predict` build
    the same model from them."""
    if config.model != "fc":
        return {}
    return {"hidden": config.hidden, "dropout": config.dropout, "pool": config.pool,
            "input_norm": config.input_norm, "band_mask": config.band_mask}


#: Models that train at about one clip a second on a CPU.
SLOW_ON_CPU = ("cnn14", "resnet50")


def cpu_note(name: str, device: str = "auto") -> str | None:
    """What to tell someone about to train ``name`` on ``device`` without a GPU, when the model
    is too slow for a CPU (``None`` otherwise): that, and the fast model to use instead."""
    if name not in SLOW_ON_CPU or device not in ("auto", "cpu") or torch.cuda.is_available():
        return None
    return (f"no GPU here: {name} trains at about one clip a second on a CPU (hours for a "
            f"small split); --model fc trains in minutes on a CPU")


def build_model(name: str, n_classes: int = 527, **kwargs: object) -> nn.Module:
    """A fresh model of the registered ``name`` (``"fc"``, ``"resnet50"``, ``"cnn14"``,
    ``"embedding-fc"``, ``"embedding-attention"``).

    Raises
    ------
    ConfigError
        ``name`` is not registered, or an option is unknown to that model.
    """
    try:
        cls = MODELS[name]
    except KeyError:
        raise ConfigError(f"unknown model {name!r}; known models: "
                          f"{', '.join(sorted(MODELS))}") from None
    try:
        return cls(n_classes=n_classes, **kwargs)
    except TypeError as exc:
        raise ConfigError(f"model {name!r}: bad options {sorted(kwargs)}: {exc}") from exc


def clip_logits(model: nn.Module, examples: torch.Tensor, clip_index: torch.Tensor,
                n_clips: int, pool: ClipPool = "mean",
                batch_size: int | None = None) -> torch.Tensor:
    """Run a patch model over ``examples`` and pool its logits per clip.

    Parameters
    ----------
    model : nn.Module
        A frame-level model (``"vggish"`` front end); used in its current train/eval mode, and
        gradients flow unless the caller disables them.
    examples : Tensor, shape (N, 96, 64)
        The patches of several clips, as ``LogMel.examples`` returns them.
    clip_index : Tensor of int, shape (N,)
        Clip (0 .. n_clips-1) of each patch.
    n_clips : int
        Number of clips; every clip must have at least one patch.
    pool : {"mean", "max", "lse", "linsoft"}
        See :func:`pool_clips`. ``"max"`` of logits equals the logit of the max probability;
        ``"mean"`` averages logits (a geometric mean of odds), which is not the mean
        probability the evaluation harness's ``frames_to_clips`` computes from ``sigmoid``
        scores.
    batch_size : int, optional
        Patches per forward pass (all at once by default).

    Returns
    -------
    Tensor, shape (n_clips, n_classes)
    """
    if pool not in CLIP_POOLS:
        raise ConfigError(f"unknown clip pooling {pool!r}; use one of {CLIP_POOLS}")
    clip_index = torch.as_tensor(clip_index, device=examples.device)
    if clip_index.dim() != 1 or clip_index.shape[0] != examples.shape[0]:
        raise ConfigError(f"clip_index must be 1-D with one entry per example "
                          f"({examples.shape[0]}); got shape {tuple(clip_index.shape)}")
    if clip_index.numel() and (int(clip_index.min()) < 0 or int(clip_index.max()) >= n_clips):
        raise ConfigError(f"clip_index must lie in [0, {n_clips}); got "
                          f"[{int(clip_index.min())}, {int(clip_index.max())}]")
    counts = torch.bincount(clip_index.long(), minlength=n_clips)
    empty = torch.nonzero(counts == 0).flatten()
    if empty.numel():
        raise ConfigError(f"{empty.numel()} clip(s) have no examples, e.g. clip "
                          f"{empty[:5].tolist()}; every clip needs at least one patch")
    step = batch_size or max(1, examples.shape[0])
    logits = torch.cat([model(examples[i:i + step]) for i in range(0, examples.shape[0], step)])
    return pool_clips(logits, clip_index, pool)[0]


__all__ = ["MODELS", "ClipPool", "Cnn14", "FullyConnected", "ResNet50", "build_model",
           "clip_logits", "model_options"]
