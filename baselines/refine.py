"""Weak-label refinement: frame-level targets from clip labels and a trained frame model.

AudioSet labels say that an event occurs somewhere in a 10-s clip, not when. A frame-level
model (``fc``, ``resnet50``: one score per 960 ms example) trained on those weak labels still
scores the frames that hold the event higher than the rest. For each clip ``S`` with label
``L`` the frame scores are max-normalised,

    ``n_i = P(L | x_i) / max_{x in S} P(L | x)``,

and the frames with ``n_i < threshold`` (0.66 in the seed work) lose the label: in ``"drop"``
mode they are left out of the loss for ``L``, in ``"zero"`` mode their target for ``L`` is 0.
Labels a clip does not carry stay negative on every frame.

The refined targets of a cached split are stored beside the cache as
``<cache folder>/refined/<checkpoint sha256[:16]>-t<threshold>.npz`` with what made them
(checkpoint digest, threshold, cache generation and a digest of its keys), and read back with
:meth:`RefinedTargets.load` for training. :func:`strong_comparison` measures the kept frames
against strong (onset/offset) labels, beside the trivial "keep every frame" rule.

A model that has memorised the clips it refines scores all their frames near 1 and keeps
almost every frame; refine each fold with a model trained on the others and join them with
:meth:`RefinedTargets.concat` (``benchmarks/results/refine.md``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from audioset_data.cache.manifest import MANIFEST_NAME, Manifest
from audioset_data.config import PathLike
from audioset_data.errors import ConfigError
from audioset_data.fileio import atomic_write
from audioset_data.loaders import AudioSetDataset, collate
from audioset_data.segments.labels import LabelIndex

from .checkpoint import file_digest
from .inference import frontend_for, model_inputs
from .prediction import load_trained

logger = logging.getLogger(__name__)

Mode = Literal["drop", "zero"]
MODES = ("drop", "zero")
#: The seed work's threshold on max-normalised frame scores.
DEFAULT_THRESHOLD = 0.66
#: Version of the stored file's layout.
FORMAT_VERSION = 1
REFINED_FOLDER = "refined"


def check_threshold(threshold: float) -> float:
    """``threshold`` as a float, refusing values outside (0, 1].

    A threshold of 0 or below would keep every frame (no refinement); above 1 it would keep
    none, not even the clip's best frame.
    """
    value = float(threshold)
    if not (math.isfinite(value) and 0.0 < value <= 1.0):
        raise ConfigError(f"refinement threshold {threshold!r} must lie in (0, 1]")
    return value


def normalised_scores(scores: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """Max-normalised frame scores ``n_i = s_i / max_j s_j`` over the frames of each row.

    Parameters
    ----------
    scores
        Frame scores in [0, 1], shape ``(..., frames)``: the last axis is the frames of one
        clip for one label.
    valid
        Which frames exist (same shape; default all). Missing frames (past the end of a short
        clip) get ``n = 0`` and do not count towards the maximum.

    Returns
    -------
    numpy.ndarray
        float32, same shape. A row whose maximum is 0 (the model puts no mass on the label
        anywhere, so it cannot say where the event is) gets ``n = 1`` on every valid frame:
        the weak label then stands on every frame rather than vanishing.

    Raises
    ------
    ConfigError
        Scores that are not finite or lie outside [0, 1], or a ``valid`` of another shape.
    """
    s = np.asarray(scores, dtype=np.float32)
    if valid is None:
        ok = np.ones(s.shape, dtype=bool)
    else:
        ok = np.asarray(valid, dtype=bool)
        if ok.shape != s.shape:
            raise ConfigError(f"valid mask of shape {ok.shape} does not match scores of "
                              f"shape {s.shape}")
    if s.size and not (np.isfinite(s[ok]).all() and (s[ok] >= 0).all() and (s[ok] <= 1).all()):
        raise ConfigError("frame scores must be finite probabilities in [0, 1]")
    s = np.where(ok, s, 0.0).astype(np.float32)
    top = s.max(axis=-1, keepdims=True) if s.shape[-1] else np.zeros(s.shape[:-1] + (1,),
                                                                      np.float32)
    with np.errstate(invalid="ignore", divide="ignore"):
        n = np.where(top > 0, s / np.where(top > 0, top, 1.0), 1.0)
    return np.where(ok, n, 0.0).astype(np.float32)


def keys_digest(keys: Sequence[str]) -> str:
    """SHA-256 of the clip keys in order: the refined file fits a cache only with these keys."""
    h = hashlib.sha256()
    for key in keys:
        h.update(str(key).encode("utf-8"))
        h.update(b"\n")
    return h.hexdigest()


def refined_path(cache_folder: PathLike, checkpoint_digest: str, threshold: float) -> Path:
    """Where the refined targets of a cache, model and threshold are stored."""
    return (Path(cache_folder) / REFINED_FOLDER /
            f"{checkpoint_digest[:16]}-t{check_threshold(threshold):g}.npz")


@dataclass(eq=False)
class RefinedTargets:
    """Refined frame targets of a set of clips, looked up by position.

    Only the (clip, label) pairs the weak labels mark positive are stored: ``pair_clip`` and
    ``pair_label`` name them, ``scores`` holds their max-normalised frame scores
    (pairs × frames), ``valid`` the frames each clip has (clips × frames).

    Attributes
    ----------
    keys, label_mids
        Clip keys (positions) and label columns.
    threshold, mode
        Frames with ``n < threshold`` lose their label: left out (``"drop"``) or set to 0
        (``"zero"``).
    meta
        What made them: ``checkpoint_sha256``, ``model``, ``cache``, ``generation``,
        ``keys_sha256``, ``hop``, ``created``.
    """

    keys: list[str]
    label_mids: list[str]
    pair_clip: np.ndarray
    pair_label: np.ndarray
    scores: np.ndarray
    valid: np.ndarray
    threshold: float = DEFAULT_THRESHOLD
    mode: Mode = "drop"
    meta: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    def __post_init__(self) -> None:
        self.threshold = check_threshold(self.threshold)
        if self.mode not in MODES:
            raise ConfigError(f"refinement mode {self.mode!r} must be one of {MODES}")
        self.pair_clip = np.asarray(self.pair_clip, dtype=np.int64)
        self.pair_label = np.asarray(self.pair_label, dtype=np.int64)
        self.scores = np.asarray(self.scores, dtype=np.float32)
        self.valid = np.asarray(self.valid, dtype=bool)
        n_clips, n_frames = self.valid.shape
        if n_clips != len(self.keys):
            raise ConfigError(f"refined targets: {len(self.keys)} keys but {n_clips} rows of "
                              f"frames")
        if self.scores.shape != (len(self.pair_clip), n_frames) or \
                len(self.pair_label) != len(self.pair_clip):
            raise ConfigError(f"refined targets: scores of shape {self.scores.shape} do not fit "
                              f"{len(self.pair_clip)} pairs of {n_frames} frames")
        if len(self.pair_clip) and (self.pair_clip.min() < 0 or self.pair_clip.max() >= n_clips
                                    or self.pair_label.min() < 0
                                    or self.pair_label.max() >= len(self.label_mids)):
            raise ConfigError("refined targets: a pair names a clip or label out of range")
        self._row: dict[str, int] | None = None
        self._order = np.argsort(self.pair_clip, kind="stable")
        self._starts = np.searchsorted(self.pair_clip[self._order], np.arange(n_clips + 1))

    @classmethod
    def from_scores(cls, keys: Sequence[str], label_mids: Sequence[str], weak: Any,
                    frame_scores: np.ndarray, *, valid: np.ndarray | None = None,
                    threshold: float = DEFAULT_THRESHOLD, mode: Mode = "drop",
                    meta: Mapping[str, Any] | None = None) -> RefinedTargets:
        """Refine from frame scores ``(clips, frames, labels)`` and weak labels
        ``(clips, labels)`` (bool array or scipy sparse)."""
        fs = np.asarray(frame_scores, dtype=np.float32)
        if fs.ndim != 3 or fs.shape[0] != len(keys) or fs.shape[2] != len(label_mids):
            raise ConfigError(f"frame scores of shape {fs.shape} do not fit {len(keys)} clips "
                              f"× frames × {len(label_mids)} labels")
        clip, label = _weak_pairs(weak, len(keys), len(label_mids))
        ok = np.ones(fs.shape[:2], bool) if valid is None else np.asarray(valid, dtype=bool)
        n = normalised_scores(fs[clip, :, label], ok[clip])
        return cls(list(keys), list(label_mids), clip, label, n, ok, threshold, mode,
                   dict(meta or {}))

    # -- lookup -----------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.keys)

    def __repr__(self) -> str:
        return (f"RefinedTargets({len(self)} clips, {len(self.pair_clip)} labelled pairs, "
                f"threshold {self.threshold:g}, {self.mode}, "
                f"{self.kept.sum() / max(1, self._pair_valid.sum()):.1%} of frames kept)")

    @property
    def n_frames(self) -> int:
        """Frames per clip."""
        return int(self.valid.shape[1])

    @property
    def _pair_valid(self) -> np.ndarray:
        return self.valid[self.pair_clip]

    @property
    def kept(self) -> np.ndarray:
        """Whether each frame of each labelled pair keeps its label (pairs × frames)."""
        return (self.scores >= self.threshold) & self._pair_valid

    def position(self, key: str) -> int:
        """Position of a clip key."""
        if self._row is None:
            self._row = {k: i for i, k in enumerate(self.keys)}
        if key not in self._row:
            raise ConfigError(f"clip {key!r} has no refined targets")
        return self._row[key]

    def get(self, positions: Sequence[int] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(frame_target, frame_mask)`` of clip positions: (B, frames, labels) float32 and
        bool arrays. Example ``e`` of clip ``b`` trains on ``frame_target[b, e]`` where
        ``frame_mask[b, e]`` is True; frames past a short clip's end are masked out."""
        pos = np.asarray(positions, dtype=np.int64).reshape(-1)
        if len(pos) and (pos.min() < -len(self) or pos.max() >= len(self)):
            raise ConfigError(f"positions out of range for {len(self)} refined clips")
        pos = pos % max(1, len(self))
        n_labels = len(self.label_mids)
        target = np.zeros((len(pos), self.n_frames, n_labels), dtype=np.float32)
        mask = np.repeat(self.valid[pos][:, :, None], n_labels, axis=2)
        for b, p in enumerate(pos):
            pairs = self._order[self._starts[p]:self._starts[p + 1]]
            if not len(pairs):
                continue
            labels = self.pair_label[pairs]
            keep = (self.scores[pairs] >= self.threshold) & self.valid[p]
            target[b][:, labels] = keep.T
            if self.mode == "drop":
                mask[b][:, labels] = keep.T
        return target, mask

    def for_examples(self, positions: Sequence[int] | np.ndarray,
                     clip_index: Sequence[int] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(target, mask)`` per example, (examples, labels), for a batch of clip
        ``positions`` whose examples come clip by clip as ``clip_index`` (the order of
        :meth:`~audioset_data.loaders.frontend.LogMel.examples`): example ``e`` of batch clip
        ``b`` gets frame ``e`` of clip ``positions[b]``."""
        ci = np.asarray(clip_index, dtype=np.int64).reshape(-1)
        example = np.arange(len(ci)) - np.searchsorted(ci, ci, side="left")
        if len(ci) and (np.any(np.diff(ci) < 0) or example.max() >= self.n_frames):
            raise ConfigError(f"clip_index must list each clip's examples together, at most "
                              f"{self.n_frames} per clip")
        target, mask = self.get(positions)
        return target[ci, example], mask[ci, example]

    @classmethod
    def concat(cls, parts: Sequence[RefinedTargets]) -> RefinedTargets:
        """Join targets of disjoint clip sets (e.g. folds each refined by a model trained on
        the other folds); threshold and mode of the first part, every part's meta kept."""
        if not parts:
            raise ConfigError("concat needs at least one set of refined targets")
        first = parts[0]
        for p in parts[1:]:
            if p.label_mids != first.label_mids or p.n_frames != first.n_frames:
                raise ConfigError("refined targets to join must share labels and frame count")
        keys = [k for p in parts for k in p.keys]
        if len(set(keys)) != len(keys):
            raise ConfigError("refined targets to join share clips")
        offsets = np.cumsum([0] + [len(p) for p in parts[:-1]])
        return cls(keys, first.label_mids,
                   np.concatenate([p.pair_clip + o for p, o in zip(parts, offsets, strict=True)]),
                   np.concatenate([p.pair_label for p in parts]),
                   np.concatenate([p.scores for p in parts]),
                   np.concatenate([p.valid for p in parts]), first.threshold, first.mode,
                   {"parts": [dict(p.meta) for p in parts]})

    def with_keys(self, keys: Sequence[str]) -> RefinedTargets:
        """The same targets re-ordered to ``keys`` (e.g. a dataset's), every key required."""
        if len(set(keys)) != len(keys):
            raise ConfigError("keys lists a clip more than once")
        where = np.array([self.position(k) for k in keys], dtype=np.int64)
        back = np.full(len(self), -1, dtype=np.int64)
        back[where] = np.arange(len(where))
        take = back[self.pair_clip] >= 0
        return RefinedTargets(list(keys), self.label_mids, back[self.pair_clip][take],
                              self.pair_label[take], self.scores[take], self.valid[where],
                              self.threshold, self.mode, dict(self.meta), self.path)

    # -- reports ----------------------------------------------------------------------------
    def kept_fractions(self, names: Mapping[str, str] | LabelIndex | None = None
                       ) -> pd.DataFrame:
        """Per label: ``label, mid, name, clips, frames, kept, fraction`` (frames of the clips
        carrying the label, how many keep it), labels with no clip left out, most kept first."""
        if isinstance(names, LabelIndex):
            names = dict(zip(names.mids, names.names, strict=True))
        names = names or {}
        kept = self.kept.sum(axis=1)
        frames = self._pair_valid.sum(axis=1)
        n_labels = len(self.label_mids)
        clips = np.bincount(self.pair_label, minlength=n_labels)
        f = np.bincount(self.pair_label, weights=frames, minlength=n_labels).astype(np.int64)
        k = np.bincount(self.pair_label, weights=kept, minlength=n_labels).astype(np.int64)
        rows = np.flatnonzero(clips)
        table = pd.DataFrame({
            "label": rows, "mid": [self.label_mids[i] for i in rows],
            "name": [names.get(self.label_mids[i], "") for i in rows],
            "clips": clips[rows], "frames": f[rows], "kept": k[rows],
            "fraction": np.where(f[rows] > 0, k[rows] / np.maximum(f[rows], 1), np.nan)})
        return table.sort_values(["fraction", "label"], ascending=[False, True],
                                 ignore_index=True)

    # -- storage ----------------------------------------------------------------------------
    def save(self, path: PathLike) -> Path:
        """Write the targets atomically as ``.npz`` (the meta as JSON inside)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = dict(self.meta, threshold=self.threshold, mode=self.mode,
                    format=FORMAT_VERSION, keys_sha256=keys_digest(self.keys))
        with atomic_write(path) as fh:
            np.savez(fh, keys=np.asarray(self.keys, dtype=str),
                     label_mids=np.asarray(self.label_mids, dtype=str),
                     pair_clip=self.pair_clip.astype(np.int32),
                     pair_label=self.pair_label.astype(np.int32),
                     scores=self.scores, valid=self.valid,
                     meta=np.asarray(json.dumps(meta, sort_keys=True)))
        self.meta, self.path = meta, path
        logger.info("wrote refined targets of %d clips to %s", len(self), path)
        return path

    @classmethod
    def load(cls, path: PathLike, keys: Sequence[str] | None = None, *,
             label_mids: Sequence[str] | None = None, mode: Mode | None = None,
             threshold: float | None = None) -> RefinedTargets:
        """Read targets written by :meth:`save`; with ``keys`` (a dataset's), re-ordered to
        them. ``mode`` / ``threshold`` override the stored ones (the normalised scores are
        stored, so any threshold can be applied).

        Raises
        ------
        ConfigError
            The file is missing or not refined targets, ``keys`` names a clip it lacks, or its
            labels differ from ``label_mids`` (a dataset's cache labels).
        """
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"refined targets {str(path)!r} not found")
        try:
            with np.load(path, allow_pickle=False) as z:
                meta = json.loads(str(z["meta"]))
                arrays = {k: z[k] for k in ("keys", "label_mids", "pair_clip", "pair_label",
                                            "scores", "valid")}
        except (OSError, ValueError, KeyError) as exc:
            raise ConfigError(f"{str(path)!r} is not a refined-targets file: {exc}") from exc
        if meta.get("format") != FORMAT_VERSION:
            raise ConfigError(f"{str(path)!r}: refined-targets format {meta.get('format')!r}, "
                              f"this version reads {FORMAT_VERSION}")
        out = cls([str(k) for k in arrays["keys"]], [str(m) for m in arrays["label_mids"]],
                  arrays["pair_clip"], arrays["pair_label"], arrays["scores"], arrays["valid"],
                  meta["threshold"] if threshold is None else threshold,
                  meta["mode"] if mode is None else mode, meta, path)
        if label_mids is not None and list(label_mids) != out.label_mids:
            raise ConfigError(f"refined targets {str(path)!r} have {len(out.label_mids)} "
                              f"labels that differ from the {len(label_mids)} given")
        return out if keys is None else out.with_keys(keys)


def _weak_pairs(weak: Any, n_clips: int, n_labels: int) -> tuple[np.ndarray, np.ndarray]:
    """(clip, label) of the positive entries of a weak-label matrix, clip-major."""
    if hasattr(weak, "tocoo"):
        coo = weak.tocoo()
        shape = coo.shape
        clip, label = np.asarray(coo.row), np.asarray(coo.col)
        good = np.asarray(coo.data).astype(bool)
        clip, label = clip[good], label[good]
    else:
        w = np.asarray(weak, dtype=bool)
        shape = w.shape
        clip, label = np.nonzero(w)
    if tuple(shape) != (n_clips, n_labels):
        raise ConfigError(f"weak labels of shape {tuple(shape)} do not fit {n_clips} clips × "
                          f"{n_labels} labels")
    order = np.lexsort((label, clip))
    return clip[order].astype(np.int64), label[order].astype(np.int64)


# --------------------------------------------------------------------------------------------
# measured against strong labels


def refine_split(checkpoint: PathLike, split: PathLike, *, root: PathLike | None = None,
                 threshold: float = DEFAULT_THRESHOLD, mode: Mode = "drop",
                 out: PathLike | None = None, batch_size: int = 32, num_workers: int = 0,
                 device: str = "cpu", progress: bool = False) -> RefinedTargets:
    """Refine the weak labels of a cached split with a trained frame model and store them.

    Parameters
    ----------
    checkpoint
        A training checkpoint of a frame-level model (``fc`` or ``resnet50``).
    batch_size, num_workers, device
        How the clips are read and scored (in cache order, never shuffled).
    split
        Cached split name (under ``root``) or cache folder.
    threshold, mode
        See :class:`RefinedTargets`.
    out
        Where to write; default :func:`refined_path` beside the cache.

    Raises
    ------
    ConfigError
        A clip-level model (``cnn14``), a model with another number of labels than the cache,
        a threshold outside (0, 1] or an unknown mode.
    CheckpointError
        The checkpoint is empty, truncated, holds a pickle payload or is not a training
        checkpoint (the message names the file).
    """
    threshold = check_threshold(threshold)
    if mode not in MODES:
        raise ConfigError(f"refinement mode {mode!r} must be one of {MODES}")
    began = time.perf_counter()
    scored = _score_split(checkpoint, split, root=root, batch_size=batch_size,
                          num_workers=num_workers, device=device, progress=progress)
    refined = RefinedTargets(scored.keys, scored.label_mids, scored.pair_clip,
                             scored.pair_label, normalised_scores(scored.scores,
                                                                  scored.valid[scored.pair_clip]),
                             scored.valid, threshold, mode, scored.meta)
    path = Path(out) if out is not None else refined_path(scored.folder,
                                                          scored.meta["checkpoint_sha256"],
                                                          threshold)
    refined.save(path)
    logger.info("refined %d clips in %.1f s", len(refined), time.perf_counter() - began)
    return refined



@dataclass
class _Scored:
    """Frame scores of the weak-positive pairs of a cache."""

    folder: Path
    keys: list[str]
    label_mids: list[str]
    pair_clip: np.ndarray
    pair_label: np.ndarray
    scores: np.ndarray
    valid: np.ndarray
    meta: dict[str, Any]


def _score_split(checkpoint: PathLike, split: PathLike, *, root: PathLike | None,
                 batch_size: int, num_workers: int, device: str, progress: bool) -> _Scored:
    """Score every example of every clip with a frame model, keeping the scores of the labels
    each clip carries."""
    import torch
    from tqdm.auto import tqdm



    if not Path(checkpoint).is_file():
        raise ConfigError(f"checkpoint {str(checkpoint)!r} not found")
    dev = torch.device(device)
    model, config = load_trained(checkpoint, str(dev))
    if getattr(model, "frontend", "panns") != "vggish":
        raise ConfigError(f"refinement needs a frame-level model (fc, resnet50) that scores "
                          f"each 960 ms example; {config.model!r} in {str(checkpoint)!r} scores "
                          f"whole clips")
    dataset = AudioSetDataset(split, root=root, dtype="int16")
    cache = dataset.cache
    mids = list(cache.label_mids)
    if int(getattr(model, "n_classes", -1)) != len(mids):
        raise ConfigError(f"model {str(checkpoint)!r} has {getattr(model, 'n_classes', '?')} "
                          f"outputs, cache {str(cache.folder)!r} has {len(mids)} labels")
    clip, label = _weak_pairs(dataset.targets, len(dataset), len(mids))
    frontend = frontend_for(model, cache.sample_rate).to(dev)
    per_clip = int(frontend.frame_counts([cache.clip_samples])[0]) // \
        int(frontend.config.example_frames)
    scores = np.zeros((len(clip), per_clip), dtype=np.float32)
    valid = np.zeros((len(dataset), per_clip), dtype=bool)
    bounds = np.searchsorted(clip, np.arange(len(dataset) + 1))
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, collate_fn=collate,
                                         num_workers=num_workers)
    start = 0
    with torch.no_grad():
        for batch in tqdm(loader, desc="refining", disable=not progress, leave=False):
            wave = batch["waveform"].to(dev)
            lengths = batch["length"].to(dev)
            n = len(wave)
            x, ci = model_inputs(frontend, True, wave, lengths)
            prob = torch.sigmoid(model(x).float()).cpu().numpy() if len(x) else \
                np.zeros((0, len(mids)), np.float32)
            ci = ci.cpu().numpy()
            example = np.arange(len(ci)) - np.searchsorted(ci, ci, side="left")
            dense = np.zeros((n, per_clip, len(mids)), dtype=np.float32)
            dense[ci, example] = prob
            valid[start + ci, example] = True
            lo, hi = bounds[start], bounds[start + n]
            scores[lo:hi] = dense[clip[lo:hi] - start, :, label[lo:hi]]
            start += n
    with Manifest.open(cache.folder / MANIFEST_NAME, readonly=True) as manifest:
        generation = manifest.generation()
    meta = {"checkpoint": str(checkpoint), "checkpoint_sha256": file_digest(checkpoint),
            "model": config.model, "cache": str(cache.folder), "generation": generation,
            "hop": frontend.config.example_frames * frontend.config.hop_length /
            frontend.config.sample_rate,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    return _Scored(cache.folder, list(dataset.keys), mids, clip, label, scores, valid, meta)


__all__ = ["DEFAULT_THRESHOLD", "MODES", "RefinedTargets", "check_threshold", "keys_digest",
           "normalised_scores", "refine_split", "refined_path"]
