"""Baseline models, training, the reference benchmark and the seed's methods (needs torch).

Names are imported on first use, so ``import audioset_data.baselines.config`` (the training
options) works without loading torch.
"""

from __future__ import annotations

from audioset_data.lazy import lazy_getattr

_LAZY = {
    "TrainConfig": "audioset_data.baselines.config",
    "train": "audioset_data.baselines.training",
    "Trainer": "audioset_data.baselines.training",
    "TrainResult": "audioset_data.baselines.training",
    "run_benchmark": "audioset_data.baselines.benchmark",
    "BenchmarkReport": "audioset_data.baselines.benchmark",
    "SEED_BETAS": "audioset_data.baselines.benchmark",
    "demo_split": "audioset_data.baselines.benchmark",
    "RECIPES": "audioset_data.baselines.config",
    "Recipe": "audioset_data.baselines.config",
    "run_anchor": "audioset_data.baselines.anchor",
    "LinearAnchor": "audioset_data.baselines.anchor",
    "pooled_logmel": "audioset_data.baselines.anchor",
    "pool_clips": "audioset_data.baselines.pooling",
    "predict": "audioset_data.baselines.prediction",
    "load_trained": "audioset_data.baselines.prediction",
    "MODELS": "audioset_data.baselines.models",
    "build_model": "audioset_data.baselines.models",
    "clip_logits": "audioset_data.baselines.models",
    "FullyConnected": "audioset_data.baselines.fc",
    "ResNet50": "audioset_data.baselines.resnet",
    "Cnn14": "audioset_data.baselines.cnn14",
    "file_digest": "audioset_data.baselines.checkpoint",
    "RefinedTargets": "audioset_data.baselines.refine",
    "refine_split": "audioset_data.baselines.refine",
    "strong_comparison": "audioset_data.baselines.refine_report",
    "format_comparison": "audioset_data.baselines.refine_report",
    "normalised_scores": "audioset_data.baselines.refine",
    "TripletRules": "audioset_data.baselines.triplets",
    "TripletSampler": "audioset_data.baselines.triplets",
    "TripletBatch": "audioset_data.baselines.triplets",
    "triplet_loss": "audioset_data.baselines.triplets",
    "shift_mel_bins": "audioset_data.baselines.triplets",
    "RULES": "audioset_data.baselines.triplets",
    "TripletConfig": "audioset_data.baselines.triplet_training",
    "TripletTrainer": "audioset_data.baselines.triplet_training",
    "TripletResult": "audioset_data.baselines.triplet_training",
    "train_triplets": "audioset_data.baselines.triplet_training",
    "export_embeddings": "audioset_data.baselines.triplet_training",
    "load_embeddings": "audioset_data.baselines.triplet_training",
    "Embeddings": "audioset_data.baselines.triplet_training",
    "neighbour_agreement": "audioset_data.baselines.triplet_training",
    "labelled_subset": "audioset_data.baselines.triplet_training",
    "linear_probe": "audioset_data.baselines.triplet_training",
    "semi_supervised": "audioset_data.baselines.triplet_training",
    "mine": "audioset_data.baselines.mining",
    "MiningResult": "audioset_data.baselines.mining",
    "read_examples": "audioset_data.baselines.mining",
    "shared_frames": "audioset_data.baselines.mining",
    "rank_clips": "audioset_data.baselines.mining",
    "FrameIndex": "audioset_data.baselines.embedding_index",
    "LogMelStats": "audioset_data.baselines.embedding_index",
    "ModelEmbedder": "audioset_data.baselines.embedding_index",
    "embedder_for": "audioset_data.baselines.embedding_index",
    "save_checkpoint": "audioset_data.baselines.checkpoint",
    "load_checkpoint": "audioset_data.baselines.checkpoint",
}


__getattr__ = lazy_getattr(__name__, _LAZY)


__all__ = list(_LAZY)
