"""Evaluation of AudioSet taggers: per-class metrics, bootstrap intervals, frame pooling, and
the harness that records what a result was computed on (see ``docs/evaluation.md``)."""

from __future__ import annotations

from .aggregate import POOL_METHODS, PoolMethod, frames_to_clips
from .bootstrap import BootstrapResult, bootstrap_map
from .harness import EvaluationResult, evaluate, evaluate_frames, gather_scores, id_list_hash
from .metrics import ClassMetrics, class_metrics, dprime, micro_average_precision

__all__ = [
    "POOL_METHODS",
    "BootstrapResult",
    "ClassMetrics",
    "EvaluationResult",
    "PoolMethod",
    "bootstrap_map",
    "class_metrics",
    "dprime",
    "evaluate",
    "evaluate_frames",
    "frames_to_clips",
    "gather_scores",
    "id_list_hash",
    "micro_average_precision",
]
