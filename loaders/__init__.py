"""Training batches from the download cache or an embeddings store: datasets, samplers, the
loss, mixup, log-mel.

Names are imported on first use. The samplers and :class:`NumpyBatches` need only NumPy (for
JAX or TensorFlow users); the datasets, the loss, the front end and SpecAugment need torch.
"""

from __future__ import annotations

from audioset_data.lazy import lazy_getattr

_LAZY = {
    "AudioSetDataset": "audioset_data.loaders.dataset",
    "collate": "audioset_data.loaders.dataset",
    "ClipBatch": "audioset_data.loaders.dataset",
    "seed_worker": "audioset_data.loaders.dataset",
    "select_positions": "audioset_data.loaders.batches",
    "NumpyBatches": "audioset_data.loaders.batches",
    "EpochShuffle": "audioset_data.loaders.batches",
    "FrameLabels": "audioset_data.loaders.frame_labels",
    "ShuffleSampler": "audioset_data.loaders.samplers",
    "BalancedSampler": "audioset_data.loaders.samplers",
    "WeightedSampler": "audioset_data.loaders.samplers",
    "DistributedShuffleSampler": "audioset_data.loaders.samplers",
    "DistributedBalancedSampler": "audioset_data.loaders.samplers",
    "DistributedWeightedSampler": "audioset_data.loaders.samplers",
    "label_weights": "audioset_data.loaders.samplers",
    "PriorBalancedBCE": "audioset_data.loaders.losses",
    "positive_weights": "audioset_data.loaders.losses",
    "prior_balanced_bce": "audioset_data.loaders.losses",
    "ShardDataset": "audioset_data.loaders.shards",
    "ShardIndex": "audioset_data.loaders.shards",
    "is_shard_source": "audioset_data.loaders.shards",
    "EmbeddingDataset": "audioset_data.loaders.embeddings",
    "collate_embeddings": "audioset_data.loaders.embeddings",
    "Mixup": "audioset_data.loaders.mixup",
    "FrontEndConfig": "audioset_data.loaders.frontend",
    "VGGISH": "audioset_data.loaders.frontend",
    "PANNS": "audioset_data.loaders.frontend",
    "LogMel": "audioset_data.loaders.frontend",
    "mel_matrix": "audioset_data.loaders.frontend",
    "Resampler": "audioset_data.loaders.resample",
    "resample_waveform": "audioset_data.loaders.resample",
    "SpecAugment": "audioset_data.loaders.specaugment",
}


__getattr__ = lazy_getattr(__name__, _LAZY)


__all__ = list(_LAZY)
