"""Segment lists: the official CSVs parsed into :class:`Segments`, the label index of the 527
trainable classes, class priors, training targets, split names and stratified splits.

Everything that reads, selects, counts or splits the rows of a segment list lives here; it
depends only on the ground modules and the ontology.
"""

from __future__ import annotations

from audioset_data.lazy import lazy_getattr

_LAZY = {
    "DEFAULT_URL_TEMPLATE": "audioset_data.segments.ids",
    "YTID_PATTERN": "audioset_data.segments.ids",
    "YTID_REGEX": "audioset_data.segments.ids",
    "YTID_RULE": "audioset_data.segments.ids",
    "check_url_template": "audioset_data.segments.ids",
    "is_ytid": "audioset_data.segments.ids",
    "LabelIndex": "audioset_data.segments.labels",
    "load_segments": "audioset_data.segments.load",
    "CACHE_FORMAT": "audioset_data.segments.parse_cache",
    "load_cached": "audioset_data.segments.parse_cache",
    "parsed_cache_path": "audioset_data.segments.parse_cache",
    "read_cache": "audioset_data.segments.parse_cache",
    "source_sha256": "audioset_data.segments.parse_cache",
    "write_cache": "audioset_data.segments.parse_cache",
    "BLOCK_BYTES": "audioset_data.segments.parser",
    "MAX_LINE_BYTES": "audioset_data.segments.parser",
    "ParseOptions": "audioset_data.segments.parser",
    "Parser": "audioset_data.segments.parser",
    "parse_bytes": "audioset_data.segments.parser",
    "parse_file": "audioset_data.segments.parser",
    "ClassPriors": "audioset_data.segments.priors",
    "diagnose": "audioset_data.segments.rows",
    "excerpt": "audioset_data.segments.rows",
    "MAX_SPLIT_NAME": "audioset_data.segments.splits",
    "SPLITS": "audioset_data.segments.splits",
    "SPLIT_ALIASES": "audioset_data.segments.splits",
    "SplitNameError": "audioset_data.segments.splits",
    "canonical_split": "audioset_data.segments.splits",
    "looks_like_path": "audioset_data.segments.splits",
    "normalise_split_name": "audioset_data.segments.splits",
    "split_remote": "audioset_data.segments.splits",
    "split_segments": "audioset_data.segments.stratify",
    "stratified_split": "audioset_data.segments.stratify",
    "Segment": "audioset_data.segments.table",
    "Segments": "audioset_data.segments.table",
    "SegmentsNotFoundError": "audioset_data.segments.table",
    "LabelMatrix": "audioset_data.segments.targets",
    "csr_from_columns": "audioset_data.segments.targets",
    "labels_to_matrix": "audioset_data.segments.targets",
    "HEADER_COLUMNS": "audioset_data.segments.writer",
    "format_seconds": "audioset_data.segments.writer",
    "official_csv_bytes": "audioset_data.segments.writer",
    "write_official_csv": "audioset_data.segments.writer",
}

__getattr__ = lazy_getattr(__name__, _LAZY)

__all__ = sorted(_LAZY)
