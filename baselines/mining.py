"""Exemplar-based mining (query by example): candidate clips of a rare class from a few examples.

The steps, as in the AudioSet work: embed the frames of every cached clip (kept and updated in a
:class:`~audioset_data.baselines.embedding_index.FrameIndex` beside the cache), keep the
example frames the examples share (:func:`shared_frames`), measure from each kept frame the
distance to the nearest frame of every clip, rank clips by the mean of those distances, and
write the best ``k`` (other than the examples) as 10-s segments in the official segment format
for a person to verify.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.spatial.distance import pdist

from audioset_data.cache.reader import AudioSetCache
from audioset_data.cache.shards import keys_of
from audioset_data.config import PathLike
from audioset_data.errors import ConfigError, SegmentsError
from audioset_data.loaders.batches import open_source
from audioset_data.segments.labels import LabelIndex
from audioset_data.segments.table import Segments
from audioset_data.segments.writer import write_official_csv

from .embedding_index import FrameIndex, embedder_for

logger = logging.getLogger(__name__)

SEGMENT_SECONDS = 10.0
#: Hop between the frames of a frame model (VGGish examples); clip models have one frame.
EXAMPLE_SECONDS = 0.96


@dataclass
class MiningResult:
    """The mined candidates, best first.

    Attributes
    ----------
    segments
        Candidate 10-s segments with the mined labels, ready for :meth:`Segments.to_csv`.
    candidates
        One row per candidate: ``key``, ``distance`` (mean over query frames of the distance
        to the clip's nearest frame; lower is closer), ``best_second`` (start of the clip's
        frame nearest to the queries, in seconds from the clip start).
    queries
        The example frames searched with (after :func:`shared_frames`).
    examples
        Keys of the example clips.
    """

    segments: Segments
    candidates: pd.DataFrame
    queries: np.ndarray
    examples: list[str]


def read_examples(path: PathLike, cache: AudioSetCache) -> list[str]:
    """Clip keys of an examples file: one ``ytid_startms`` key per line (``#`` comments and
    blank lines skipped), or a segment list in the official format. Every key must be cached.

    Raises
    ------
    ConfigError
        The file is missing or empty, or names a clip the cache does not hold.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"examples file {str(path)!r} not found")
    text = path.read_text(encoding="utf-8")
    lines = [x.strip() for x in text.splitlines() if x.strip() and not x.startswith("#")]
    if not lines:
        raise ConfigError(f"examples file {str(path)!r} names no example segments")
    if any("," in x for x in lines):
        index = LabelIndex(cache.label_mids, cache.label_mids)
        try:
            seg = Segments.from_csv_text(text, label_index=index, source=str(path),
                                         unknown_labels="keep")
        except SegmentsError as exc:
            raise ConfigError(f"examples file {str(path)!r}: {exc}") from exc
        keys = keys_of(seg.ytids, seg.start)
    else:
        keys = lines
    keys = list(dict.fromkeys(keys))
    held = set(cache.keys())
    unknown = [k for k in keys if k not in held]
    if unknown:
        raise ConfigError(f"examples file {str(path)!r}: {len(unknown)} example(s) not in the "
                          f"cache {str(cache.folder)!r}, e.g. {unknown[0]!r}")
    return keys


def shared_frames(frames: np.ndarray, owner: np.ndarray) -> np.ndarray:
    """Which example frames the examples share (boolean mask over ``frames``).

    Pass frames with the corpus mean removed (as the search compares them).
    Rule: average-linkage agglomerative clustering of the frames on cosine distance, cut at the
    widest gap between successive merge heights (the natural number of groups, at least two);
    a cluster's coverage is the number of distinct examples (``owner``) with a frame in it, and
    the frames of the clusters with the widest coverage are kept. With one example, or fewer
    than three frames, every frame is kept.
    """
    frames = np.asarray(frames, dtype=np.float64)
    owner = np.asarray(owner)
    if len(frames) != len(owner):
        raise ConfigError(f"{len(frames)} frames but {len(owner)} owners")
    if len(np.unique(owner)) < 2 or len(frames) < 3:
        return np.ones(len(frames), dtype=bool)
    # a frame equal to the corpus mean has no direction: call it unlike every other
    tree = linkage(np.nan_to_num(pdist(frames, "cosine"), nan=1.0), method="average")
    heights = tree[:, 2]
    gaps = np.diff(heights)
    # cutting after merge i leaves len(frames) - 1 - i clusters; keep at least two
    cut = int(np.argmax(gaps)) if len(gaps) else 0
    labels = fcluster(tree, t=len(frames) - 1 - cut, criterion="maxclust")
    coverage = {c: len(np.unique(owner[labels == c])) for c in np.unique(labels)}
    widest = max(coverage.values())
    return np.isin(labels, [c for c, n in coverage.items() if n == widest])


def rank_clips(index: FrameIndex, queries: np.ndarray, *, exclude: set[str] | None = None,
               device: str = "cpu") -> pd.DataFrame:
    """Every clip of ``index`` with frames, ranked by its mean over ``queries`` of the distance
    to the clip's nearest frame (closest first); clips in ``exclude`` are left out."""
    near = index.clip_distances(queries, device=device)
    score = near.mean(axis=0)
    keys = np.asarray(index.keys, dtype=object)
    keep = np.isfinite(score)
    if exclude:
        keep &= ~np.isin(keys, list(exclude))
    order = np.flatnonzero(keep)[np.argsort(score[keep], kind="stable")]
    return pd.DataFrame({"key": keys[order].astype(str), "distance": score[order],
                         "position": order})


def mine(
    source: AudioSetCache | PathLike,
    examples: PathLike | list[str],
    k: int,
    *,
    root: PathLike | None = None,
    checkpoint: PathLike | None = None,
    labels: list[str] | None = None,
    out: PathLike | None = None,
    cluster: bool = True,
    batch_size: int = 32,
    device: str = "cpu",
    progress: bool = False,
) -> MiningResult:
    """Mine the ``k`` clips of ``source`` closest to the example segments.

    Parameters
    ----------
    source
        A cache, a cache folder, or a split name under ``root``.
    examples
        A file for :func:`read_examples`, or a list of clip keys.
    k
        How many candidates to return (fewer if the cache holds fewer other clips).
    checkpoint
        A training checkpoint whose model embeds the frames; ``None`` uses the untrained
        :class:`~audioset_data.baselines.embedding_index.LogMelStats`.
    labels
        Label mids the candidates get in the CSV; by default the cache labels every example
        carries.
    out
        Where to write the candidates as an official segment CSV.
    cluster
        Search with the shared example frames only (:func:`shared_frames`); ``False`` uses
        every example frame.

    Raises
    ------
    ConfigError
        ``k`` below 1, an unknown or empty example list, examples without frames, or no
        label to give the candidates.
    """
    if not isinstance(k, int | np.integer) or isinstance(k, bool) or k < 1:
        raise ConfigError(f"k (the number of candidates) must be a positive integer; got {k!r}")
    cache = open_source(source, root)
    held = set(cache.keys())
    if isinstance(examples, list | tuple):
        keys = list(dict.fromkeys(str(x) for x in examples))
        missing = [x for x in keys if x not in held]
        if not keys:
            raise ConfigError("examples: no example segments given")
        if missing:
            raise ConfigError(f"examples: {len(missing)} not in the cache "
                              f"{str(cache.folder)!r}, e.g. {missing[0]!r}")
    else:
        keys = read_examples(examples, cache)
    mids = _labels_of(cache, keys, labels)
    embed = embedder_for(checkpoint, cache.sample_rate, device)
    index = FrameIndex.beside(cache, embed.digest)
    index.update(cache, embed, batch_size=batch_size, progress=progress)
    parts = [index.frames(x) for x in keys]
    owner = np.concatenate([np.full(len(p), i) for i, p in enumerate(parts)])
    if not len(owner):
        raise ConfigError(f"the examples {keys[:3]} are shorter than one frame each")
    frames = np.concatenate(parts)
    queries = frames[shared_frames(frames - index.mean(), owner)] if cluster else frames
    logger.info("searching with %d of %d example frames", len(queries), len(frames))
    gone = {x for x in index.keys if x not in held}  # indexed, since dropped from the cache
    ranked = rank_clips(index, queries, exclude=set(keys) | gone, device=device).head(int(k))
    ranked["best_second"] = [_best_second(index, x, queries) for x in ranked["key"]]
    segments = _segments(cache, ranked["key"].tolist(), mids)
    if out is not None:
        write_official_csv(segments, out)
        logger.info("wrote %d candidates to %s", len(segments), out)
    return MiningResult(segments, ranked.drop(columns="position").reset_index(drop=True),
                        queries, keys)


def _labels_of(cache: AudioSetCache, keys: list[str], labels: list[str] | None) -> list[str]:
    if labels:
        unknown = [m for m in labels if m not in cache.label_mids]
        if unknown:
            raise ConfigError(f"label {unknown[0]!r} is not one of the cache's labels")
        return list(labels)
    rows = np.stack([np.asarray(cache[int(p)]["target"], dtype=bool)
                     for p in cache.positions(keys)])
    common = rows.all(axis=0)
    mids = [cache.label_mids[i] for i in np.flatnonzero(common)]
    if not mids:
        raise ConfigError("the examples share no label in the cache; name the mined class "
                          "with --label")
    return mids


def _best_second(index: FrameIndex, key: str, queries: np.ndarray) -> float:
    near = index.frame_distances(queries, key)
    return float(np.argmin(near.mean(axis=0)) * EXAMPLE_SECONDS)


def _segments(cache: AudioSetCache, keys: list[str], mids: list[str]) -> Segments:
    """The clips of ``keys`` as 10-s segments (a shorter clip is padded to 10 s)."""
    pos = cache.positions(keys) if keys else np.zeros(0, np.int64)
    start = np.asarray(cache.starts, dtype=np.float64)[pos]
    table = pa.table({
        "ytid": pa.array(cache.ytids[pos].astype(str).tolist(), pa.string()),
        "start": pa.array(start, pa.float64()),
        "end": pa.array(start + SEGMENT_SECONDS, pa.float64()),
        "labels": pa.array([list(mids) for _ in keys], pa.list_(pa.string())),
    })
    index = LabelIndex(cache.label_mids, cache.label_mids)
    return Segments(table, None, index, source="mined candidates")


__all__ = ["MiningResult", "mine", "rank_clips", "read_examples", "shared_frames"]
