"""The HDF5 cache on disk: the manifest (source of truth for resume), the shard files and
their layout, the single writer, the reader used for training, the reader's index, the compact
audio codecs, and the checks and repairs that keep folder and manifest in agreement.
"""

from __future__ import annotations

from audioset_data.lazy import lazy_getattr

_LAZY = {
    "FLAC_COMPRESSION_LEVEL": "audioset_data.cache.codec",
    "FORMATS": "audioset_data.cache.shards",
    "OPUS_BIT_RATE": "audioset_data.cache.codec",
    "decode_clip": "audioset_data.cache.codec",
    "encode_clip": "audioset_data.cache.codec",
    "load_index": "audioset_data.cache.index",
    "pack_keys": "audioset_data.cache.index",
    "write_index": "audioset_data.cache.index",
    "FILE_NAME_PATTERN": "audioset_data.cache.manifest",
    "MANIFEST_NAME": "audioset_data.cache.manifest",
    "Manifest": "audioset_data.cache.manifest",
    "Placement": "audioset_data.cache.manifest",
    "STATUSES": "audioset_data.cache.manifest",
    "check_file_name": "audioset_data.cache.manifest",
    "clip_key": "audioset_data.cache.manifest",
    "AudioSetCache": "audioset_data.cache.reader",
    "cache_dir": "audioset_data.cache.reader",
    "open_cache": "audioset_data.cache.reader",
    "ReconcileReport": "audioset_data.cache.repair",
    "VerifyReport": "audioset_data.cache.repair",
    "owner": "audioset_data.cache.repair",
    "reconcile": "audioset_data.cache.repair",
    "repair_cache": "audioset_data.cache.repair",
    "verify_cache": "audioset_data.cache.repair",
    "CACHE_FILE": "audioset_data.cache.shards",
    "ClipBlock": "audioset_data.cache.shards",
    "FORMAT_VERSION": "audioset_data.cache.shards",
    "FileIdentity": "audioset_data.cache.shards",
    "Layout": "audioset_data.cache.shards",
    "bytes_per_clip": "audioset_data.cache.shards",
    "check_format": "audioset_data.cache.shards",
    "identity": "audioset_data.cache.shards",
    "keys_of": "audioset_data.cache.shards",
    "open_h5": "audioset_data.cache.shards",
    "read_encoded": "audioset_data.cache.shards",
    "write_file": "audioset_data.cache.shards",
    "CacheWriter": "audioset_data.cache.store",
    "FolderLock": "audioset_data.cache.store",
    "open_manifest": "audioset_data.cache.store",
}

__getattr__ = lazy_getattr(__name__, _LAZY)

__all__ = sorted(_LAZY)
