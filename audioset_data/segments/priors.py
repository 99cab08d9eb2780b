"""Class priors: how often each of the 527 labels is positive, and how skewed that is.

A prior is the fraction of clips carrying a label. With an ontology, *propagated* priors also
count a clip for every labelled ancestor of its labels (a "Dog" clip counts for "Animal"), which
is how the hierarchy-aware metrics see the data. Priors come from a :class:`Segments` object or
from published per-class counts (``from_counts`` / ``from_counts_csv``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from audioset_data.config import PathLike
from audioset_data.errors import SegmentsError

from .labels import LabelIndex

if TYPE_CHECKING:
    from audioset_data.ontology import Ontology

    from .load import Segments

logger = logging.getLogger(__name__)


class ClassPriors:
    """Positive counts and priors per label, optionally propagated to ontology ancestors.

    Examples
    --------
    >>> idx = LabelIndex(["/m/a", "/m/b", "/m/c"], ["A", "B", "C"])
    >>> p = ClassPriors([50, 5, 1], 100, idx)
    >>> p.priors.tolist(), p.max_prior, p.imbalance_ratio
    ([0.5, 0.05, 0.01], 0.5, 50.0)
    """

    def __init__(
        self,
        counts: Sequence[int] | np.ndarray,
        n_clips: int,
        label_index: LabelIndex,
        *,
        propagated_counts: Sequence[int] | np.ndarray | None = None,
        source: str = "<memory>",
    ):
        self.label_index = label_index
        self.counts = self._vector(counts, "counts")
        self.n_clips = int(n_clips)
        if self.n_clips <= 0:
            raise SegmentsError(f"{source}: n_clips={n_clips} must be positive")
        if (self.counts < 0).any() or (self.counts > self.n_clips).any():
            raise SegmentsError(f"{source}: counts must lie in 0..n_clips={self.n_clips}")
        self.propagated_counts = (None if propagated_counts is None
                                  else self._vector(propagated_counts, "propagated_counts"))
        if self.propagated_counts is not None and (self.propagated_counts < self.counts).any():
            raise SegmentsError(f"{source}: a propagated count is below its direct count")
        self.source = source

    def _vector(self, values: Sequence[int] | np.ndarray, what: str) -> np.ndarray:
        arr = np.asarray(values, dtype=np.int64).ravel()
        if len(arr) != len(self.label_index):
            raise SegmentsError(
                f"{what} has {len(arr)} entries; the label index has {len(self.label_index)}"
            )
        return arr

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_segments(cls, segments: Segments, ontology: Ontology | None = None) -> ClassPriors:
        """Priors of a segment list; with ``ontology`` also the propagated ones."""
        propagated = None
        if ontology is not None:
            y = segments.propagated(ontology)
            propagated = np.bincount(y.indices, minlength=len(segments.label_index))
        return cls(segments.label_counts(), len(segments), segments.label_index,
                   propagated_counts=propagated, source=segments.source)

    @classmethod
    def from_counts(
        cls,
        counts: Sequence[int] | np.ndarray | Mapping[str, int] | pd.Series,
        n_clips: int,
        label_index: LabelIndex,
        *,
        propagated_counts: Sequence[int] | np.ndarray | None = None,
        source: str = "<counts>",
    ) -> ClassPriors:
        """Priors from per-class counts: a vector in label order or a mapping mid → count
        (missing mids count 0). Propagated counts cannot be derived from marginal counts (they
        need co-occurrences), so pass them if known."""
        if isinstance(counts, Mapping | pd.Series):
            vec = np.zeros(len(label_index), dtype=np.int64)
            for mid, c in dict(counts).items():
                if mid not in label_index:
                    raise SegmentsError(f"{source}: {mid!r} is not one of the labels")
                vec[label_index.index(mid)] = int(c)
            counts = vec
        return cls(counts, n_clips, label_index, propagated_counts=propagated_counts,
                   source=source)

    @classmethod
    def from_counts_csv(cls, path: PathLike, n_clips: int,
                        label_index: LabelIndex) -> ClassPriors:
        """Priors from a CSV with columns ``mid`` and ``count`` (e.g. the published per-class
        counts of a training crawl); ``n_clips`` is the number of clips they were counted on."""
        path = Path(path)
        try:
            frame = pd.read_csv(path)
        except FileNotFoundError:
            raise SegmentsError(f"counts file {str(path)!r} does not exist") from None
        except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
            raise SegmentsError(f"{path}: not a readable CSV ({exc})") from None
        missing = {"mid", "count"} - set(frame.columns)
        if missing:
            raise SegmentsError(f"{path}: lacks the columns {sorted(missing)}")
        if frame["mid"].duplicated().any():
            dup = frame.loc[frame["mid"].duplicated(), "mid"].iloc[0]
            raise SegmentsError(f"{path}: mid {dup!r} appears twice")
        counts = pd.to_numeric(frame["count"], errors="coerce")
        if counts.isna().any():
            line = int(np.flatnonzero(counts.isna().to_numpy())[0]) + 2
            raise SegmentsError(f"{path}:{line}: count is not a number")
        return cls.from_counts(dict(zip(frame["mid"], counts.astype(np.int64), strict=True)),
                               n_clips, label_index, source=str(path))

    # ------------------------------------------------------------------ figures
    @property
    def priors(self) -> np.ndarray:
        """Fraction of clips carrying each label."""
        return self.counts / self.n_clips

    @property
    def propagated_priors(self) -> np.ndarray | None:
        """Fraction of clips carrying each label or a labelled descendant (None without an
        ontology)."""
        if self.propagated_counts is None:
            return None
        return self.propagated_counts / self.n_clips

    @property
    def n_labels(self) -> int:
        """Positive (clip, label) pairs."""
        return int(self.counts.sum())

    @property
    def mean_prior(self) -> float:
        """Mean prior over labels (= labels per clip / number of labels)."""
        return float(self.priors.mean())

    @property
    def min_prior(self) -> float:
        """Smallest prior (0 if a label never occurs)."""
        return float(self.priors.min())

    @property
    def max_prior(self) -> float:
        """Largest prior."""
        return float(self.priors.max())

    @property
    def n_absent(self) -> int:
        """Labels that no clip carries."""
        return int((self.counts == 0).sum())

    @property
    def imbalance_ratio(self) -> float:
        """Largest over smallest prior among the labels that occur (inf if none occurs)."""
        present = self.counts[self.counts > 0]
        return float(present.max() / present.min()) if len(present) else float("inf")

    def summary(self) -> dict[str, float | int]:
        """The headline figures as a dict."""
        return {
            "n_clips": self.n_clips,
            "n_labels": self.n_labels,
            "labels_per_clip": self.n_labels / self.n_clips,
            "mean_prior": self.mean_prior,
            "min_prior": self.min_prior,
            "max_prior": self.max_prior,
            "imbalance_ratio": self.imbalance_ratio,
            "n_absent": self.n_absent,
        }

    def to_frame(self) -> pd.DataFrame:
        """One row per label, most frequent first: ``index, mid, name, count, prior`` and,
        with an ontology, ``propagated_count, propagated_prior``."""
        frame = pd.DataFrame({
            "index": np.arange(len(self.label_index)),
            "mid": list(self.label_index.mids),
            "name": list(self.label_index.names),
            "count": self.counts,
            "prior": self.priors,
        })
        if self.propagated_counts is not None:
            frame["propagated_count"] = self.propagated_counts
            frame["propagated_prior"] = self.propagated_priors
        return frame.sort_values(["prior", "index"], ascending=[False, True],
                                 kind="stable").reset_index(drop=True)

    def top(self, k: int = 10) -> pd.DataFrame:
        """The ``k`` most frequent labels."""
        return self.to_frame().head(k)

    def bottom(self, k: int = 10) -> pd.DataFrame:
        """The ``k`` least frequent labels (rarest last)."""
        return self.to_frame().tail(k)

    def plot(self, path: PathLike, *, title: str | None = None, dpi: int = 120) -> Path:
        """Ranked priors on a log y axis (propagated ones too when known), saved as PNG."""
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig = Figure(figsize=(8, 4.5))
        FigureCanvasAgg(fig)
        ax = fig.add_subplot()
        rank = np.arange(1, len(self.counts) + 1)
        floor = 0.5 / self.n_clips  # absent labels drawn below the smallest possible prior
        ax.plot(rank, np.maximum(np.sort(self.priors)[::-1], floor), label="direct labels")
        if self.propagated_priors is not None:
            ax.plot(rank, np.maximum(np.sort(self.propagated_priors)[::-1], floor),
                    label="propagated to ancestors", alpha=0.8)
        ax.axhline(self.mean_prior, color="grey", linestyle=":", label="mean prior")
        ax.set_yscale("log")
        ax.set_xlabel("label rank")
        ax.set_ylabel("prior (fraction of clips)")
        ax.set_title(title or f"Class priors of {Path(self.source).name} "
                              f"({self.n_clips:,} clips, max/min {self.imbalance_ratio:,.0f})")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
        fig.tight_layout()
        fig.savefig(path, dpi=dpi)
        return path

    def __repr__(self) -> str:
        return (f"ClassPriors({self.n_clips} clips, priors {self.min_prior:.2e}.."
                f"{self.max_prior:.3f}, from {self.source})")


__all__ = ["ClassPriors"]
