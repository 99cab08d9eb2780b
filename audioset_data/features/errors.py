"""Errors of the features room, in the package's one hierarchy.

A damaged or malformed input of the embeddings release is a :class:`FeaturesError` (also a
``ValueError``); a store that is missing or incomplete is a :class:`FeatureStoreError`, a
:class:`~audioset_data.errors.CacheError` like every other on-disk cache problem.
"""

from __future__ import annotations

from audioset_data.errors import AudioSetError, CacheError


class FeaturesError(AudioSetError, ValueError):
    """An input of the embeddings ("features") release cannot be read as one."""


class CorruptRecordError(FeaturesError):
    """A TFRecord record fails its CRC or does not parse as an AudioSet SequenceExample.

    ``path`` names the file (for a tar: ``archive:member``) and ``record`` is the 0-based
    index of the record in that file.
    """

    def __init__(self, message: str, *, path: str = "", record: int = -1):
        super().__init__(message)
        self.path = path
        self.record = record


class TruncatedRecordError(CorruptRecordError):
    """A TFRecord file ends in the middle of a record (an interrupted copy or download)."""


class FeatureStoreError(CacheError):
    """An embedding store under the data root is missing, incomplete or inconsistent."""


class FeatureStoreNotFoundError(FeatureStoreError, FileNotFoundError):
    """No embedding store for the split asked for (also a ``FileNotFoundError``)."""


__all__ = [
    "CorruptRecordError",
    "FeatureStoreError",
    "FeatureStoreNotFoundError",
    "FeaturesError",
    "TruncatedRecordError",
]
