"""What every import of an existing copy shares: clip names and paths (:mod:`.names`), the
copy's rows (:mod:`.rows`), the match to the segment list (:mod:`.matching`), decoding
(:mod:`.decoding`), the writes into the cache (:mod:`.importer`) and the report of what was
skipped and why (:mod:`.report`).
"""

from __future__ import annotations

from audioset_data.lazy import lazy_getattr

_LAZY = {
    "Decoded": "audioset_data.interop.copies.decoding",
    "decode_any": "audioset_data.interop.copies.decoding",
    "import_copy": "audioset_data.interop.copies.importer",
    "SegmentMatcher": "audioset_data.interop.copies.matching",
    "cache_folder": "audioset_data.interop.copies.names",
    "expand_paths": "audioset_data.interop.copies.names",
    "parse_clip_name": "audioset_data.interop.copies.names",
    "CACHED": "audioset_data.interop.copies.report",
    "DAMAGED": "audioset_data.interop.copies.report",
    "DUPLICATE": "audioset_data.interop.copies.report",
    "EMPTY": "audioset_data.interop.copies.report",
    "ImportReport": "audioset_data.interop.copies.report",
    "NOT_AN_ID": "audioset_data.interop.copies.report",
    "NO_NAME": "audioset_data.interop.copies.report",
    "PLACEHOLDER": "audioset_data.interop.copies.report",
    "REPEATED_ID": "audioset_data.interop.copies.report",
    "UNLISTED": "audioset_data.interop.copies.report",
    "UNLISTED_ID": "audioset_data.interop.copies.report",
    "UNLISTED_START": "audioset_data.interop.copies.report",
    "CLIP_SECONDS": "audioset_data.interop.copies.rows",
    "Copy": "audioset_data.interop.copies.rows",
    "blocks": "audioset_data.interop.copies.rows",
    "label_columns": "audioset_data.interop.copies.rows",
    "rows_to_matrix": "audioset_data.interop.copies.rows",
}

__getattr__ = lazy_getattr(__name__, _LAZY)

__all__ = sorted(_LAZY)
