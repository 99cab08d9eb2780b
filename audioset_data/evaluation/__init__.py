"""Evaluation of AudioSet taggers: per-class metrics, bootstrap intervals, frame pooling, named
evaluation subsets, label quality, and the harness that records what a result was computed on
(see ``docs/evaluation.md``)."""

from __future__ import annotations

from audioset_data.lazy import lazy_getattr

_LAZY = {
    "POOL_METHODS": "audioset_data.evaluation.aggregate",
    "PoolMethod": "audioset_data.evaluation.aggregate",
    "frames_to_clips": "audioset_data.evaluation.aggregate",
    "BootstrapResult": "audioset_data.evaluation.bootstrap",
    "bootstrap_map": "audioset_data.evaluation.bootstrap",
    "EvaluationResult": "audioset_data.evaluation.harness",
    "evaluate": "audioset_data.evaluation.harness",
    "evaluate_frames": "audioset_data.evaluation.harness",
    "gather_scores": "audioset_data.evaluation.harness",
    "ClassMetrics": "audioset_data.evaluation.metrics",
    "class_metrics": "audioset_data.evaluation.metrics",
    "dprime": "audioset_data.evaluation.metrics",
    "micro_average_precision": "audioset_data.evaluation.metrics",
    "LabelQuality": "audioset_data.evaluation.quality",
    "LabelQualityError": "audioset_data.evaluation.quality",
    "load_quality": "audioset_data.evaluation.quality",
    "read_quality": "audioset_data.evaluation.quality",
    "evaluate_cached": "audioset_data.evaluation.scores_io",
    "read_scores": "audioset_data.evaluation.scores_io",
    "SUBSET_NAMES": "audioset_data.evaluation.subsets",
    "Subset": "audioset_data.evaluation.subsets",
    "SubsetComparison": "audioset_data.evaluation.subsets",
    "SubsetCoverage": "audioset_data.evaluation.subsets",
    "SubsetError": "audioset_data.evaluation.subsets",
    "id_list_hash": "audioset_data.evaluation.subsets",
    "read_id_file": "audioset_data.evaluation.subsets",
    "resolve_subset": "audioset_data.evaluation.subsets",
}

__getattr__ = lazy_getattr(__name__, _LAZY)

__all__ = sorted(_LAZY)
