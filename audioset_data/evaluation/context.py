"""What names and places a result, loaded quietly since a result stands without it: display
names for a label set, the ontology, and how many clips a cached split lists."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from audioset_data.cache.manifest import MANIFEST_NAME, Manifest
from audioset_data.cache.reader import cache_dir
from audioset_data.config import PathLike
from audioset_data.errors import AudioSetError
from audioset_data.ontology import Ontology
from audioset_data.segments.labels import LabelIndex

logger = logging.getLogger(__name__)


def label_index_for(mids: Sequence[str], root: PathLike | None = None) -> LabelIndex:
    """A label index of exactly ``mids``, in their order, named from the official label index
    (cached under ``root`` or fetched, from the mirror in ``$AUDIOSET_CSV_BASE_URL`` when set).

    A cache or a model may hold a subset of the 527 labels, or another order; names are
    matched by mid. Where the official index cannot be had (offline, no mirror), or does not
    know a mid, the mid is its own name.
    """
    mids = [str(m) for m in mids]
    try:
        official = LabelIndex.load(root=root)
    except (AudioSetError, OSError) as exc:
        logger.info("no label names (the official label index is not available: %s)", exc)
        return LabelIndex(mids, mids, source="mids")
    return LabelIndex(mids, [official.name(m) if m in official else m for m in mids],
                      source=official.source)


def load_ontology(root: PathLike | None = None) -> tuple[Ontology | None, str]:
    """``(ontology, "")`` from the usual loader (cached under ``root`` or fetched, from the
    mirror in ``$AUDIOSET_ONTOLOGY_BASE_URL`` when set), or ``(None, why)``."""
    try:
        return Ontology.load(root=root, progress=False), ""
    except (AudioSetError, OSError) as exc:
        return None, f"the ontology is not available ({exc}); set AUDIOSET_ONTOLOGY_BASE_URL " \
                     "to a mirror of ontology.json, or fetch it once online"


def listed_clips(split: PathLike, root: PathLike | None = None) -> int | None:
    """How many clips a cached split lists (its manifest's segments, cached or not): the
    count an evaluation reports beside the clips evaluated. None where there is no manifest."""
    folder = Path(split) if Path(split).is_dir() else cache_dir(str(split), root)
    path = folder / MANIFEST_NAME
    if not path.is_file():
        return None
    with Manifest.open(path, readonly=True) as manifest:
        return int(sum(manifest.counts().values()))


__all__ = ["label_index_for", "listed_clips", "load_ontology"]
