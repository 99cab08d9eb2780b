"""Reading a model's scores from a file and aligning them, by clip id, with a cached split.

Formats: ``.npz`` with arrays ``ids`` (clip ids) and ``scores`` (clips × labels); ``.npy``
(scores only, with the ids from a separate text file); ``.parquet`` and ``.csv`` with a
``clip_id`` column and one column per label (named by mid in any order, or in the label
index's order). Clip ids are segment keys, ``<ytid>_<start in ms>``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from audioset_data.cache.manifest import Manifest
from audioset_data.cache.reader import open_cache
from audioset_data.config import PathLike
from audioset_data.errors import EvaluationError
from audioset_data.segments.labels import LabelIndex

from .harness import EvaluationResult, evaluate

logger = logging.getLogger(__name__)

ID_COLUMNS = ("clip_id", "key", "segment_id")


def read_scores(path: PathLike, *, ids_file: PathLike | None = None,
                label_mids: Sequence[str] | None = None) -> tuple[list[str], np.ndarray]:
    """``(clip ids, scores)`` from a score file (see the module's formats)."""
    path = Path(path)
    if not path.is_file():
        raise EvaluationError(f"score file {str(path)!r} not found")
    suffix = path.suffix.lower()
    try:
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as z:
                if "scores" not in z.files or "ids" not in z.files:
                    raise EvaluationError(f"{path}: a .npz score file needs arrays 'ids' and "
                                          f"'scores', it has {z.files}")
                return [str(x) for x in z["ids"]], np.asarray(z["scores"])
        if suffix == ".npy":
            scores = np.load(path, allow_pickle=False)
            if ids_file is None:
                raise EvaluationError(f"{path}: a .npy file holds no clip ids; pass the ids "
                                      "(--ids FILE, one per line)")
            ids = [s.strip() for s in Path(ids_file).read_text().splitlines() if s.strip()]
            return ids, scores
        if suffix in (".parquet", ".csv"):
            import pandas as pd

            frame = pd.read_parquet(path) if suffix == ".parquet" else pd.read_csv(path)
            id_col = next((c for c in ID_COLUMNS if c in frame.columns), None)
            if id_col is None:
                raise EvaluationError(f"{path}: no clip id column (one of {ID_COLUMNS})")
            cols = [c for c in frame.columns if c != id_col]
            if label_mids is not None and set(label_mids) <= set(cols):
                cols = list(label_mids)
            return [str(x) for x in frame[id_col]], frame[cols].to_numpy(dtype=np.float64)
    except (OSError, ValueError) as exc:
        if isinstance(exc, EvaluationError):
            raise
        raise EvaluationError(f"cannot read score file {str(path)!r}: {exc}") from None
    raise EvaluationError(f"{path}: unknown score file type {suffix!r} "
                          "(.npz, .npy, .parquet or .csv)")


def read_frame_scores(path: PathLike) -> tuple[list[str], np.ndarray, np.ndarray]:
    """``(clip ids, frame numbers, scores)`` from a frame score file: ``.npz`` with arrays
    ``ids``, ``frames`` and ``scores``, or ``.parquet``/``.csv`` with ``clip_id`` and ``frame``
    columns and one column per label."""
    path = Path(path)
    if not path.is_file():
        raise EvaluationError(f"score file {str(path)!r} not found")
    if path.suffix.lower() == ".npz":
        with np.load(path, allow_pickle=False) as z:
            if not {"ids", "frames", "scores"} <= set(z.files):
                raise EvaluationError(f"{path}: a frame score file needs arrays 'ids', "
                                      f"'frames' and 'scores', it has {z.files}")
            return [str(x) for x in z["ids"]], np.asarray(z["frames"]), np.asarray(z["scores"])
    if path.suffix.lower() in (".parquet", ".csv"):
        import pandas as pd

        try:
            frame = pd.read_parquet(path) if path.suffix.lower() == ".parquet" \
                else pd.read_csv(path)
        except (OSError, ValueError) as exc:
            raise EvaluationError(f"cannot read score file {str(path)!r}: {exc}") from None
        if not {"clip_id", "frame"} <= set(frame.columns):
            raise EvaluationError(f"{path}: frame scores need 'clip_id' and 'frame' columns")
        cols = [c for c in frame.columns if c not in ("clip_id", "frame")]
        return ([str(x) for x in frame["clip_id"]], frame["frame"].to_numpy(),
                frame[cols].to_numpy(dtype=np.float64))
    raise EvaluationError(f"{path}: frame scores are read from .npz, .parquet or .csv")


def evaluate_cached(
    ids: Sequence[str],
    scores: np.ndarray,
    *,
    split: str = "eval",
    root: PathLike | None = None,
    on: Sequence[str] | None = None,
    bootstrap: int = 0,
    seed: int = 0,
    strict: bool = False,
) -> EvaluationResult:
    """Evaluate scores against the labels of a cached split, aligned by clip id.

    Clips of the cache without scores and scores for clips the cache does not hold are
    reported (logged and counted in the result), never matched by position; ``strict`` makes
    any scored clip the cache does not hold an error.
    """
    cache = open_cache(split, root=root)
    keys = cache.keys()
    pos = {k: i for i, k in enumerate(keys)}
    ids = [str(x) for x in ids]
    if len(ids) != len(scores):
        raise EvaluationError(f"{len(ids)} clip ids for {len(scores)} score rows")
    have = [i for i, k in enumerate(ids) if k in pos]
    extra = len(ids) - len(have)
    missing = len(keys) - len(have)
    if extra and strict:
        unknown = [k for k in ids if k not in pos]
        raise EvaluationError(f"{extra} scored clips are not in the {split} cache, e.g. "
                              f"{unknown[:3]}")
    if extra:
        logger.warning("%d scored clips are not in the %s cache (e.g. %s); left out", extra,
                       split, next(k for k in ids if k not in pos))
    if missing:
        logger.warning("%d cached clips have no scores; left out", missing)
    if not have:
        raise EvaluationError(f"none of the {len(ids)} scored clips is in the {split} cache "
                              "(clip ids are ytid_startms keys)")
    rows = [pos[ids[i]] for i in have]
    targets = cache.targets()[rows]
    with Manifest.open(cache.folder / cache.manifest_name, readonly=True) as m:
        listed = sum(m.counts().values())
    try:
        label_index = LabelIndex.load(root=root)
    except Exception:  # noqa: BLE001 - names are a nicety; mids are in the cache
        label_index = None
    if label_index is not None and list(label_index.mids) != cache.label_mids:
        label_index = None
    result = evaluate(np.asarray(scores)[have], targets, clip_ids=[ids[i] for i in have],
                      on=on, label_index=label_index, n_listed=listed, bootstrap=bootstrap,
                      seed=seed)
    result.unscored = missing
    result.not_in_labels = extra
    return result


__all__ = ["evaluate_cached", "read_frame_scores", "read_scores"]
