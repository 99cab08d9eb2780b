"""Frame-level targets of a dataset's clips from strong labels (960 ms frames by default).

Strong labels cover a few clips and, per file, a few classes; everywhere else the answer is
unknown, not "absent". So each clip gets a target *and* a mask of the (frame, label) pairs the
labels decide, and a loss should only count masked-in pairs:

- the framed file (``PRESENT`` / ``NOT_PRESENT`` rows): known exactly where a row is listed;
- an event file (onsets and offsets): every frame of a clip the file lists is known for the
  labels the file annotates (by default the labels with at least one event in it; pass
  ``known_labels`` for the full vocabulary of an exhaustive file);
- a clip the labels do not mention: target and mask all False.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp

from audioset_data.errors import ConfigError
from audioset_data.segments.labels import LabelIndex
from audioset_data.strong.events import FramedLabels, StrongLabels
from audioset_data.strong.frames import (
    DEFAULT_HOP,
    FramedArrays,
    FrameTargets,
    frame_targets,
    framed_arrays,
)

#: What frame labels can be built from.
FrameSource = FramedArrays | FrameTargets | FramedLabels | StrongLabels


class FrameLabels:
    """Frame targets and masks for the clips of a dataset, looked up by dataset index.

    Parameters
    ----------
    source
        Loaded strong labels (:class:`~audioset_data.strong.events.FramedLabels` or
        :class:`~audioset_data.strong.events.StrongLabels`, mapped here onto ``label_mids``), or
        matrices already built from them (:class:`~audioset_data.strong.frames.FramedArrays`,
        :class:`~audioset_data.strong.frames.FrameTargets`), whose columns must then be in
        ``label_mids`` order.
    keys
        Clip key of each dataset index.
    label_mids
        The cache's label order (columns of the result).
    clip_seconds
        Clip length; matrices must not have more frames than fit in it.
    hop
        Frame hop for loaded labels (0.96 s: 10 frames of a 10-s clip).
    known_labels
        For event labels: the columns (indices or mids) the file decides. Default: the columns
        with at least one event in the file.
    """

    def __init__(
        self,
        source: FrameSource,
        keys: Sequence[str],
        label_mids: Sequence[str],
        clip_seconds: float,
        *,
        hop: float = DEFAULT_HOP,
        known_labels: Sequence[int | str] | None = None,
    ):
        mids = [str(m) for m in label_mids]
        if isinstance(source, FramedLabels | StrongLabels):
            index = source.label_index if list(source.label_index.mids) == mids else \
                LabelIndex(mids, mids, source="cache labels")
            build = framed_arrays if isinstance(source, FramedLabels) else frame_targets
            source = build(source, index, hop=hop, clip_seconds=clip_seconds)
        if not isinstance(source, FramedArrays | FrameTargets):
            raise ConfigError(f"frame labels come from strong or framed labels, not "
                              f"{type(source).__name__}")
        present = source.present if isinstance(source, FramedArrays) else source.targets
        if present.shape[1] != len(mids):
            raise ConfigError(f"frame labels have {present.shape[1]} label columns, the cache "
                              f"has {len(mids)}; build them on the cache's label index")
        if source.n_frames * source.hop > clip_seconds + 1e-6:
            raise ConfigError(f"{source.n_frames} frames of {source.hop} s do not fit in "
                              f"{clip_seconds} s clips")
        self.n_frames = source.n_frames
        self.hop = source.hop
        self.frame_starts = np.asarray(source.frame_starts)
        self._block = np.asarray(pd.Index(source.keys).get_indexer(list(keys)), dtype=np.int64)
        self._present = sp.csr_array(present, dtype=bool)
        self._known: sp.csr_array | None = None
        self._known_cols: np.ndarray | None = None
        if isinstance(source, FramedArrays):
            self._known = sp.csr_array(source.known, dtype=bool)
        else:
            self._known_cols = np.zeros(len(mids), dtype=bool)
            if known_labels is None:
                self._known_cols[np.unique(self._present.indices)] = True
            else:
                where = {m: i for i, m in enumerate(mids)}
                for label in known_labels:
                    col = where.get(label) if isinstance(label, str) else int(label)
                    if col is None or not 0 <= col < len(mids):
                        raise ConfigError(f"known label {label!r} is not a cache label")
                    self._known_cols[col] = True
            # a clip listed in the file but with no mapped event is still known (all absent)
            listed = set(source.keys) - set(source.missing)
            self._block[~pd.Index(list(keys)).isin(list(listed))] = -1

    def __repr__(self) -> str:
        return (f"FrameLabels({int((self._block >= 0).sum())} of {len(self._block)} clips "
                f"labelled, {self.n_frames} frames of {self.hop} s)")

    @property
    def labelled(self) -> np.ndarray:
        """Whether each dataset index has strong labels."""
        return self._block >= 0

    def get(self, indices: Sequence[int] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(frame_target, frame_mask)`` of dataset indices: (B, frames, labels) float32 and
        bool arrays; all False for clips without strong labels."""
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        n_labels = self._present.shape[1]
        target = np.zeros((len(idx), self.n_frames, n_labels), dtype=np.float32)
        mask = np.zeros((len(idx), self.n_frames, n_labels), dtype=bool)
        block = self._block[idx]
        have = np.flatnonzero(block >= 0)
        if len(have):
            rows = (block[have, None] * self.n_frames + np.arange(self.n_frames)).ravel()
            target[have] = self._present[rows].toarray().reshape(len(have), self.n_frames, -1)
            if self._known is not None:
                mask[have] = self._known[rows].toarray().reshape(len(have), self.n_frames, -1)
            else:
                mask[have] = self._known_cols
        return target, mask


__all__ = ["FrameLabels", "FrameSource"]
