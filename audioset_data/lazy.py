"""Names a package exports without importing their modules until first use, and the module
paths of earlier releases, still importable.

Every room's ``__init__`` uses :func:`lazy_getattr` so ``import audioset_data`` stays fast and
never imports torch. :data:`MOVED` maps each module path of the flat layout of earlier releases
to its place in the rooms; :func:`install_moved_modules` makes the old path import the very
module of the new one (with a ``DeprecationWarning``), so code written against it keeps working.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import warnings
from collections.abc import Callable, Mapping, Sequence
from types import ModuleType
from typing import Any


def lazy_getattr(package: str, names: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` that imports ``names[name]`` (a module path) on first use."""

    def __getattr__(name: str) -> Any:
        if name in names:
            return getattr(importlib.import_module(names[name]), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__


#: Module paths of the flat layout (before the rooms) -> where that code lives now.
MOVED: dict[str, str] = {
    "audioset_data.cache_index": "audioset_data.cache.index",
    "audioset_data.clip": "audioset_data.downloader",
    "audioset_data.clip_failures": "audioset_data.downloader.failures",
    "audioset_data.clip_fetcher": "audioset_data.downloader.fetcher",
    "audioset_data.codec": "audioset_data.cache.codec",
    "audioset_data.demo": "audioset_data.downloader.demo",
    "audioset_data.download_job": "audioset_data.downloader.job",
    "audioset_data.download_loop": "audioset_data.downloader.loop",
    "audioset_data.download_options": "audioset_data.downloader.options",
    "audioset_data.download_plan": "audioset_data.downloader.plan",
    "audioset_data.download_report": "audioset_data.downloader.report",
    "audioset_data.ffmpeg_codecs": "audioset_data.audio.memory",
    "audioset_data.job_array": "audioset_data.downloader.job_array",
    "audioset_data.labels": "audioset_data.segments.labels",
    "audioset_data.manifest": "audioset_data.cache.manifest",
    "audioset_data.media_proxy": "audioset_data.downloader.media_proxy",
    "audioset_data.priors": "audioset_data.segments.priors",
    "audioset_data.reader": "audioset_data.cache.reader",
    "audioset_data.repair": "audioset_data.cache.repair",
    "audioset_data.segment_cache": "audioset_data.segments.parse_cache",
    "audioset_data.segment_list": "audioset_data.segments.table",
    "audioset_data.segment_parser": "audioset_data.segments.parser",
    "audioset_data.segment_rows": "audioset_data.segments.rows",
    "audioset_data.segment_select": "audioset_data.segments.table",
    "audioset_data.segment_writer": "audioset_data.segments.writer",
    "audioset_data.shards": "audioset_data.cache.shards",
    "audioset_data.splits": "audioset_data.segments.splits",
    "audioset_data.store": "audioset_data.cache.store",
    "audioset_data.stratify": "audioset_data.segments.stratify",
    "audioset_data.strong_frames": "audioset_data.strong.frames",
    "audioset_data.targets": "audioset_data.segments.targets",
    "audioset_data.throttle": "audioset_data.downloader.throttle",
    "audioset_data.video_ids": "audioset_data.segments.ids",
    "audioset_data.worker_pool": "audioset_data.downloader.worker_pool",
}


class _MovedModuleFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports an old module path as the module that now holds its code."""

    def find_spec(self, fullname: str, path: Sequence[str] | None,
                  target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        if fullname not in MOVED:
            return None
        return importlib.machinery.ModuleSpec(fullname, self)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> None:
        return None

    def exec_module(self, module: ModuleType) -> None:
        new = MOVED[module.__name__]
        warnings.warn(f"{module.__name__} moved to {new}; import it from there",
                      DeprecationWarning, stacklevel=2)
        # the import system returns whatever sys.modules holds under the name after exec
        sys.modules[module.__name__] = importlib.import_module(new)


def install_moved_modules() -> None:
    """Let the module paths in :data:`MOVED` import (once per process)."""
    if not any(isinstance(f, _MovedModuleFinder) for f in sys.meta_path):
        sys.meta_path.append(_MovedModuleFinder())
