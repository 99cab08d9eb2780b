"""Evaluation of AudioSet taggers: per-class metrics, bootstrap intervals, frame pooling."""

from __future__ import annotations

from .aggregate import POOL_METHODS, PoolMethod, frames_to_clips
from .bootstrap import BootstrapResult, bootstrap_map
from .metrics import ClassMetrics, class_metrics, dprime, micro_average_precision

__all__ = [
    "POOL_METHODS",
    "BootstrapResult",
    "ClassMetrics",
    "PoolMethod",
    "bootstrap_map",
    "class_metrics",
    "dprime",
    "frames_to_clips",
    "micro_average_precision",
]
