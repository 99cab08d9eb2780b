"""Temporally-strong labels (AudioSet 2021): the event files, the framed eval file, the
vocabulary, and frame-level target matrices built from them.
"""

from __future__ import annotations

from audioset_data.lazy import lazy_getattr

_LAZY = {
    "EVENT_COLUMNS": "audioset_data.strong.events",
    "FRAMED_COLUMNS": "audioset_data.strong.events",
    "FramedLabels": "audioset_data.strong.events",
    "StrongLabels": "audioset_data.strong.events",
    "load_framed": "audioset_data.strong.events",
    "load_strong": "audioset_data.strong.events",
    "load_vocabulary": "audioset_data.strong.events",
    "vocabulary_mapping": "audioset_data.strong.events",
    "DEFAULT_HOP": "audioset_data.strong.frames",
    "FrameTargets": "audioset_data.strong.frames",
    "FramedArrays": "audioset_data.strong.frames",
    "frame_targets": "audioset_data.strong.frames",
    "framed_arrays": "audioset_data.strong.frames",
}

__getattr__ = lazy_getattr(__name__, _LAZY)

__all__ = sorted(_LAZY)
