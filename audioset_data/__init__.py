"""audioset-data: the AudioSet ontology, segment lists and a resumable download cache.

Heavy sub-modules are imported on first use, so ``import audioset_data`` stays fast and never
imports torch.
"""

from __future__ import annotations

from . import errors as _errors
from .config import data_home
from .errors import *  # noqa: F403 - the exception hierarchy is part of the top-level API
from .lazy import install_moved_modules, lazy_getattr

__version__ = "0.1.0"

_LAZY = {
    "Ontology": "audioset_data.ontology",
    "LabelIndex": "audioset_data.segments.labels",
    "Segments": "audioset_data.segments.table",
    "ClassPriors": "audioset_data.segments.priors",
    "load_segments": "audioset_data.segments.load",
    "download": "audioset_data.downloader.job",
    "DownloadOptions": "audioset_data.downloader.options",
    "merge": "audioset_data.downloader.job_array",
    "open_cache": "audioset_data.cache.reader",
    "evaluate": "audioset_data.evaluation.harness",
}


__getattr__ = lazy_getattr(__name__, _LAZY)
install_moved_modules()


__all__ = [
    *_errors.__all__,
    "__version__",
    "data_home",
    *_LAZY,
]
