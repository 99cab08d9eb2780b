"""Baseline models, one training loop and the reference benchmark (needs torch).

Names are imported on first use, so ``import audioset_data.baselines.config`` (the training
options) works without loading torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "TrainConfig": "audioset_data.baselines.config",
    "train": "audioset_data.baselines.training",
    "Trainer": "audioset_data.baselines.training",
    "TrainResult": "audioset_data.baselines.training",
    "run_benchmark": "audioset_data.baselines.benchmark",
    "BenchmarkReport": "audioset_data.baselines.benchmark",
    "SEED_BETAS": "audioset_data.baselines.benchmark",
    "predict": "audioset_data.baselines.prediction",
    "load_trained": "audioset_data.baselines.prediction",
    "MODELS": "audioset_data.baselines.models",
    "build_model": "audioset_data.baselines.models",
    "clip_logits": "audioset_data.baselines.models",
    "FullyConnected": "audioset_data.baselines.fc",
    "ResNet50": "audioset_data.baselines.resnet",
    "Cnn14": "audioset_data.baselines.cnn14",
    "file_digest": "audioset_data.baselines.checkpoint",
    "save_checkpoint": "audioset_data.baselines.checkpoint",
    "load_checkpoint": "audioset_data.baselines.checkpoint",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'audioset_data.baselines' has no attribute {name!r}")


__all__ = list(_LAZY)
