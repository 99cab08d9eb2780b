"""Reading a model's scores from a file and aligning them, by clip id, with a cached split.

Formats: ``.npz`` with arrays ``ids`` (clip ids) and ``scores`` (clips × labels); ``.npy``
(scores only, with the ids from a separate text file); ``.parquet`` and ``.csv`` with a
``clip_id`` column and one column per label (named by mid in any order, or in the label
index's order). Clip ids are segment keys, ``<ytid>_<start in ms>``.
"""

from __future__ import annotations

import logging
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
import scipy.sparse as sp

from audioset_data.cache.manifest import MANIFEST_NAME, Manifest, clip_key
from audioset_data.cache.reader import cache_dir, open_cache
from audioset_data.config import PathLike
from audioset_data.errors import AudioSetError, CacheError, EvaluationError
from audioset_data.features.errors import FeatureStoreNotFoundError
from audioset_data.features.store import open_store
from audioset_data.segments.labels import LabelIndex
from audioset_data.segments.load import load_segments
from audioset_data.segments.splits import SplitNameError, canonical_split

from .context import label_index_for
from .harness import EvaluationResult, evaluate
from .subsets import Subset, SubsetComparison, SubsetCoverage, resolve_subsets

logger = logging.getLogger(__name__)

ID_COLUMNS = ("clip_id", "key", "segment_id")
#: Most label columns a score file may have when the label set is not given (AudioSet has 527,
#: its ontology 632): a file announcing more is refused before anything is read.
MAX_LABELS = 10_000


def _header(fh: IO[bytes], what: str) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype from the header of the ``.npy`` stream ``fh`` (nothing else read)."""
    try:
        version = np.lib.format.read_magic(fh)
        read = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                else np.lib.format.read_array_header_2_0)
        shape, _, dtype = read(fh)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise EvaluationError(f"{what} is not a readable .npy array: {exc}") from None
    if dtype.hasobject:
        raise EvaluationError(f"{what} holds Python objects (pickled data), which are never "
                              "loaded; save plain arrays (numbers, strings)")
    return tuple(int(n) for n in shape), dtype


def _check_ids(shape: tuple[int, ...], dtype: np.dtype, what: str) -> int:
    if len(shape) != 1 or dtype.kind not in "USiu":
        raise EvaluationError(f"{what} must be a 1-D array of clip ids (ytid_startms), not "
                              f"{dtype} of shape {shape}")
    return shape[0]


def _check_scores(shape: tuple[int, ...], dtype: np.dtype, n: int,
                  label_mids: Sequence[str] | None, what: str) -> None:
    """Refuse scores whose header does not announce ``n`` rows × the label count, before a
    byte of them is read (a small compressed file can inflate to gigabytes)."""
    n_labels = None if label_mids is None else len(label_mids)
    if dtype.kind not in "fiub":
        raise EvaluationError(f"{what} must hold numbers, not {dtype}")
    want = f"({n}, {n_labels})" if n_labels is not None else f"({n}, labels)"
    if len(shape) != 2 or shape[0] != n or (n_labels is not None and shape[1] != n_labels):
        why = (f" ({n} clip ids × {n_labels} labels of the cache)" if n_labels is not None
               else f" ({n} clip ids)")
        raise EvaluationError(f"{what} has shape {shape}, expected {want}{why}; nothing was "
                              "read")
    if n_labels is None and shape[1] > MAX_LABELS:
        raise EvaluationError(f"{what} has shape {shape}: {shape[1]:,} label columns, more "
                              f"than any label set (at most {MAX_LABELS:,}); nothing was read")


def _read_npz(path: Path, names: Sequence[str], label_mids: Sequence[str] | None
              ) -> dict[str, np.ndarray]:
    """The arrays ``names`` of a ``.npz`` file (``ids`` first, ``scores`` last), each checked
    from its header before it is read, so memory stays bounded by the expected size."""
    if path.stat().st_size == 0:
        raise EvaluationError(f"score file {str(path)!r} is empty (0 bytes)")
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, EOFError, OSError) as exc:
        raise EvaluationError(f"score file {str(path)!r} is not a .npz archive (a zip of .npy "
                              f"arrays, as numpy.savez writes): {exc}") from None
    with archive:
        members = {Path(m).stem: m for m in archive.namelist() if m.endswith(".npy")}
        missing = [n for n in names if n not in members]
        if missing:
            raise EvaluationError(f"{path}: a .npz score file needs arrays "
                                  f"{', '.join(map(repr, names))}, it has {sorted(members)}")
        out: dict[str, np.ndarray] = {}
        n = 0
        for name in names:
            what = f"{path}: array {name!r}"
            try:
                with archive.open(members[name]) as fh:
                    shape, dtype = _header(fh, what)
                    if name == "ids":
                        n = _check_ids(shape, dtype, what)
                    elif name == "scores":
                        _check_scores(shape, dtype, n, label_mids, what)
                    elif len(shape) != 1 or shape[0] != n:
                        raise EvaluationError(f"{what} has shape {shape}, expected ({n},)")
                with archive.open(members[name]) as fh:
                    out[name] = np.lib.format.read_array(fh, allow_pickle=False)
            except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError) as exc:
                if isinstance(exc, EvaluationError):
                    raise
                raise EvaluationError(f"{what} cannot be read: {exc}") from None
        return out


def _read_npy(path: Path, n: int, label_mids: Sequence[str] | None) -> np.ndarray:
    """A ``.npy`` score matrix, its shape checked from the header first."""
    what = f"score file {str(path)!r}"
    try:
        with open(path, "rb") as fh:
            shape, dtype = _header(fh, what)
            _check_scores(shape, dtype, n, label_mids, what)
            fh.seek(0)
            return np.lib.format.read_array(fh, allow_pickle=False)
    except (OSError, ValueError) as exc:
        if isinstance(exc, EvaluationError):
            raise
        raise EvaluationError(f"cannot read {what}: {exc}") from None


def _check_csv_header(path: Path, id_columns: Sequence[str]) -> None:
    """A score CSV starts with a header naming its clip id column; say so plainly when the
    file is something else (a segment list is the usual mix-up)."""
    with open(path, encoding="utf-8", errors="replace") as fh:
        first = fh.readline(4096).strip()
    names = [c.strip().strip('"') for c in first.split(",")]
    if any(c in names for c in id_columns):
        return
    looks = ""
    if first.startswith("#") or first.lower().startswith(("ytid", "# ytid")):
        looks = ("; it looks like a segment list (YTID, start_seconds, end_seconds, "
                 "positive_labels), not scores")
    shown = first if len(first) <= 80 else first[:77] + "..."
    raise EvaluationError(
        f"{path}: a .csv score file needs a header row with a {id_columns[0]!r} column (the "
        f"clip ids, ytid_startms) and one column per label; its first line is "
        f"{shown!r}{looks}")


def read_scores(path: PathLike, *, ids_file: PathLike | None = None,
                label_mids: Sequence[str] | None = None) -> tuple[list[str], np.ndarray]:
    """``(clip ids, scores)`` from a score file (see the module's formats).

    ``label_mids`` (the cache's labels) sets the expected number of score columns: array
    files are checked against it from their headers before anything is read, so a small
    compressed file that would inflate to gigabytes is refused at once. Without it, files
    with more than :data:`MAX_LABELS` columns are refused.

    Raises
    ------
    EvaluationError
        The file is missing, empty, not of its type (a ``.npz`` that is no zip, a segment list
        given as a ``.csv`` of scores), or its arrays have other shapes than expected; the
        message names the file.
    """
    path = Path(path)
    if not path.is_file():
        raise EvaluationError(f"score file {str(path)!r} not found")
    suffix = path.suffix.lower()
    try:
        if suffix == ".npz":
            arrays = _read_npz(path, ("ids", "scores"), label_mids)
            return [str(x) for x in arrays["ids"]], arrays["scores"]
        if suffix == ".npy":
            if ids_file is None:
                raise EvaluationError(f"{path}: a .npy file holds no clip ids; pass the ids "
                                      "(--ids FILE, one per line)")
            ids = [s.strip() for s in Path(ids_file).read_text().splitlines() if s.strip()]
            return ids, _read_npy(path, len(ids), label_mids)
        if suffix in (".parquet", ".csv"):
            import pandas as pd

            if suffix == ".csv":
                _check_csv_header(path, ID_COLUMNS)
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


def cache_label_mids(split: str, root: PathLike | None = None) -> list[str] | None:
    """The label mids a cached split was made with (from its manifest alone), or None when
    there is no such cache: the expected score columns, known before a score file is read."""
    path = cache_dir(split, root) / MANIFEST_NAME
    if not path.is_file():
        return None
    with Manifest.open(path, readonly=True) as manifest:
        mids = manifest.get_meta("labels")
    return mids.split(",") if mids else None


def read_frame_scores(path: PathLike, *, label_mids: Sequence[str] | None = None
                      ) -> tuple[list[str], np.ndarray, np.ndarray]:
    """``(clip ids, frame numbers, scores)`` from a frame score file: ``.npz`` with arrays
    ``ids``, ``frames`` and ``scores`` (shapes checked from their headers before reading, as
    :func:`read_scores` does), or ``.parquet``/``.csv`` with ``clip_id`` and ``frame`` columns
    and one column per label."""
    path = Path(path)
    if not path.is_file():
        raise EvaluationError(f"score file {str(path)!r} not found")
    if path.suffix.lower() == ".npz":
        arrays = _read_npz(path, ("ids", "frames", "scores"), label_mids)
        return [str(x) for x in arrays["ids"]], arrays["frames"], arrays["scores"]
    if path.suffix.lower() in (".parquet", ".csv"):
        import pandas as pd

        try:
            if path.suffix.lower() == ".csv":
                _check_csv_header(path, ("clip_id",))
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


@dataclass
class _Labels:
    """The labels a score file is evaluated against: clip keys, a target matrix, how many
    clips the split lists, and (when known) its label mids / index."""

    keys: list[str]
    targets: Any
    listed: int
    label_mids: list[str] | None
    label_index: LabelIndex | None = None
    what: str = "cache"


def _labels_of(split: str, root: PathLike | None) -> _Labels:
    """The labels of ``split``: its audio cache when there is one, else its embeddings store
    (``audioset features import``), else the official segment list of that name; the error
    of the missing cache is raised when none of them exists."""
    try:
        cache = open_cache(split, root=root)
    except CacheError as missing:
        try:
            store = open_store(split, root)
        except FeatureStoreNotFoundError:
            try:
                canonical_split(split)
            except SplitNameError:
                raise missing from None
            seg = load_segments(split, root=root)
            keys = [clip_key(y, s) for y, s in zip(seg.ytids, seg.start, strict=True)]
            return _Labels(keys, sp.csr_array(seg.label_matrix), len(seg),
                           list(seg.label_index.mids), seg.label_index, "segment list")
        logger.info("no %s cache: evaluating against the embeddings store %s", split, store)
        return _Labels([str(k) for k in store.keys], store.targets(), len(store), None, None,
                       "embeddings store")
    with Manifest.open(cache.folder / cache.manifest_name, readonly=True) as m:
        listed = sum(m.counts().values())
    return _Labels(list(cache.keys()), cache.targets(), listed, list(cache.label_mids))


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
    subsets: Sequence[str | Subset] = (),
) -> EvaluationResult:
    """Evaluate scores against the labels of a split, aligned by clip id: its audio cache,
    else its embeddings store, else the official segment list of that name.

    Clips of the cache without scores and scores for clips the cache does not hold are
    reported (logged and counted in the result), never matched by position; ``strict`` makes
    any scored clip the cache does not hold an error. ``subsets`` (names such as
    ``"official"``, ``"ast"``, ``"available"``, files of ids; see
    :mod:`~audioset_data.evaluation.subsets`) also evaluates the scores on each, side by side
    in :attr:`EvaluationResult.subsets`.
    """
    source = _labels_of(split, root)
    keys = source.keys
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
    targets = source.targets[rows]
    listed = source.listed
    label_index = source.label_index
    if label_index is None and source.label_mids is not None:
        # a cache may hold a subset of the labels, or another order: named by mid
        label_index = label_index_for(source.label_mids, root)
    elif label_index is None:  # an embeddings store: the release's 527 columns, in order
        try:
            label_index = LabelIndex.load(root=root)
        except (AudioSetError, OSError):  # names are a nicety; offline they are indices
            label_index = None
        if label_index is not None and len(label_index) != source.targets.shape[1]:
            label_index = None
    scored_ids = [ids[i] for i in have]
    scored = np.asarray(scores)[have]
    result = evaluate(y_score=scored, y_true=targets, clip_ids=scored_ids,
                      on=on, label_index=label_index, n_listed=listed, bootstrap=bootstrap,
                      seed=seed)
    result.unscored = missing
    result.not_in_labels = extra
    if subsets:
        result.subsets = _compare(subsets, ids, scored, targets, scored_ids, pos, split, root,
                                  label_index)
    return result


def _compare(subsets: Sequence[str | Subset], ids: Sequence[str], scores: np.ndarray,
             targets: Any, labelled_ids: list[str], labelled: dict[str, int], split: str,
             root: PathLike | None, label_index: LabelIndex | None) -> SubsetComparison:
    """The scored, labelled clips evaluated on each subset; a subset none of whose clips is
    scored and labelled keeps its record with no metrics."""
    chosen = resolve_subsets(subsets, split=split, root=root)
    coverage, results = [], []
    for sub in chosen:
        cov = SubsetCoverage.of(sub, ids, labelled)
        r = None
        if cov.scored - cov.no_labels > 0:
            r = evaluate(y_score=scores, y_true=targets, clip_ids=labelled_ids, on=sub.keys,
                         label_index=label_index, n_listed=len(sub))
            r.subset = cov
        else:
            logger.warning("no clip of subset %s is scored and labelled", sub.name)
        coverage.append(cov)
        results.append(r)
    return SubsetComparison(split, coverage, results)


__all__ = ["MAX_LABELS", "cache_label_mids", "evaluate_cached", "read_frame_scores",
           "read_scores"]
