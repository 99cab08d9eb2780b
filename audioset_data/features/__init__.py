"""The official AudioSet embeddings release ("features": 128-d uint8 VGGish frames per second)
as a data source: read its TFRecords without TensorFlow, every CRC checked, import a folder, a
tar or the official address into memory-mapped stores, and compare them with the segment lists.

>>> from audioset_data.features import import_features, open_store  # doctest: +SKIP
>>> import_features("audioset_v1_embeddings_bal_train.tar.gz")  # doctest: +SKIP
>>> store = open_store("balanced")  # doctest: +SKIP
>>> store.embeddings.shape, store.mask().sum(axis=1)[:3]  # doctest: +SKIP
((22160, 10, 128), array([10, 10, 10]))

Modules: :mod:`.tfrecord` (framing, CRCs), :mod:`.proto` (the SequenceExample classes),
:mod:`.release` (record format, writer, dequantisation, fetching), :mod:`.sources` (folder and
tar inputs), :mod:`.importer` (the streamed import), :mod:`.store` (the store and coverage).
"""

from __future__ import annotations

from .errors import (
    CorruptRecordError,
    FeaturesError,
    FeatureStoreError,
    FeatureStoreNotFoundError,
    TruncatedRecordError,
)
from .importer import ImportReport, SplitImport, import_features
from .release import (
    FEATURES_URL,
    FEATURES_URL_ENV,
    RELEASE_SPLITS,
    FeatureRecord,
    decode_record,
    dequantize,
    encode_record,
    features_url,
    fetch_release,
    quantize,
    read_feature_file,
    write_feature_file,
    write_release,
    write_release_tar,
)
from .store import (
    CoverageReport,
    EmbeddingStore,
    list_stores,
    open_store,
    segment_keys,
    store_dir,
    stores_root,
)
from .tfrecord import iter_payloads, masked_crc32c, read_payloads, write_tfrecord

__all__ = [
    "FEATURES_URL",
    "FEATURES_URL_ENV",
    "RELEASE_SPLITS",
    "CorruptRecordError",
    "CoverageReport",
    "EmbeddingStore",
    "FeatureRecord",
    "FeatureStoreError",
    "FeatureStoreNotFoundError",
    "FeaturesError",
    "ImportReport",
    "SplitImport",
    "TruncatedRecordError",
    "decode_record",
    "dequantize",
    "encode_record",
    "features_url",
    "fetch_release",
    "import_features",
    "iter_payloads",
    "list_stores",
    "masked_crc32c",
    "open_store",
    "quantize",
    "read_feature_file",
    "read_payloads",
    "segment_keys",
    "store_dir",
    "stores_root",
    "write_feature_file",
    "write_release",
    "write_release_tar",
    "write_tfrecord",
]
