"""One evaluation, explicit about what it was computed on.

:func:`evaluate` takes scores and targets (clips × labels), optionally the clip ids, and returns
an :class:`EvaluationResult`: per-class metrics with names, priors and ontology branches, the
headline averages (each clearly named), and a record of what was evaluated: the clips
evaluated against the clips listed, a hash of the evaluated clip-id list and of the label set.
``on=ids`` restricts the evaluation to another paper's clip list so two numbers compare, and
``subset=`` to a named one (``official``, ``ast``, ``available`` or a file of ids; see
:mod:`~audioset_data.evaluation.subsets`). The micro AP is computed when first asked for.

:func:`gather_scores` joins the scores of several ranks (distributed evaluation), dropping
the repeated clips that a distributed sampler pads with, by clip id.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from audioset_data.config import PathLike
from audioset_data.errors import EvaluationError
from audioset_data.segments.labels import LabelIndex

from .bootstrap import BootstrapResult, bootstrap_map
from .metrics import ClassMetrics, _truth_and_scores, class_metrics, micro_average_precision
from .quality import LabelQuality, as_quality, quality_correlation
from .subsets import (
    SUBSET_LABELS,
    Subset,
    SubsetComparison,
    SubsetCoverage,
    id_list_hash,
    resolve_subset,
)

logger = logging.getLogger(__name__)


#: What each key of :meth:`EvaluationResult.summary` stands for (the markdown report's words).
SUMMARY_LABELS = {
    "level": "level",
    "mAP": "mAP (macro over defined classes)",
    "mean_auc": "mean AUC",
    "dprime": "d-prime of the mean AUC (AST/PANNs headline)",
    "mean_dprime": "mean of per-class d-primes",
    "micro_ap": "micro AP (all pairs pooled)",
    "classes_defined": "classes defined",
    "classes_undefined": "classes undefined (no positives or no negatives, excluded)",
    "labels": "labels",
    "labels_sha256": "label set sha256",
    "prior_weighted_ap": "prior-weighted AP",
    "clips_evaluated": "clips evaluated",
    "clips_sha256": "clip list sha256",
    "clips_listed": "clips listed",
    "requested_without_scores": "requested clips without scores",
    "unscored": "clips with labels but no scores (left out)",
    "not_in_labels": "scored clips without labels (left out)",
    "mAP_propagated": "mAP, labels propagated to ancestors",
    "mAP_interval": "mAP {level} bootstrap interval",
    "mAP_by_branch": "mAP per top-level branch",
    "ap_quality_spearman": "Spearman correlation of AP with label quality",
    "ap_quality_classes": "classes with an AP and a label quality",
    **SUBSET_LABELS,
}


@dataclass
class EvaluationResult:
    """Per-class metrics plus what they were computed on; see :func:`evaluate`."""

    metrics: ClassMetrics
    mids: list[str]
    names: list[str]
    clip_ids: list[str] | None
    n_listed: int | None
    level: str = "clip"
    priors: np.ndarray | None = None
    branches: list[list[str]] | None = None
    propagated: ClassMetrics | None = None
    bootstrap: BootstrapResult | None = None
    not_evaluated: list[str] = field(default_factory=list)
    unscored: int = 0  # clips with labels but no scores (left out)
    not_in_labels: int = 0  # scored clips without labels (left out)
    #: the named subset this result was restricted to, and how the scores covered it
    subset: SubsetCoverage | None = None
    #: the same scores on other subsets, side by side (``evaluate_cached(subsets=...)``)
    subsets: SubsetComparison | None = None
    #: label quality of each class (Google's rating counts), aligned with ``mids``
    quality: LabelQuality | None = None
    _curves: tuple[Any, Any] | None = field(default=None, repr=False)
    _known: Any = field(default=None, repr=False)
    _micro_ap: float | None = field(default=None, repr=False)

    @property
    def micro_ap(self) -> float:
        """Micro AP, all (clip, class) pairs pooled: computed on first use (it costs more than
        every per-class metric together), then kept."""
        if self._micro_ap is None:
            if self._curves is None:
                return float("nan")
            targets, scores = self._curves
            self._micro_ap = float(micro_average_precision(y_true=targets, y_score=scores,
                                                           known=self._known))
        return self._micro_ap

    def quality_correlation(self) -> tuple[float, int]:
        """``(rho, n)``: Spearman's correlation of AP with label quality over the ``n`` defined
        classes that were rated (NaN without label quality)."""
        if self.quality is None:
            return float("nan"), 0
        ap = np.where(self.metrics.defined, self.metrics.ap, np.nan)
        return quality_correlation(ap, self.quality.quality)

    @property
    def n_clips(self) -> int:
        """Clips (or frames) evaluated."""
        return int(self.metrics.n_pos[0] + self.metrics.n_neg[0]) if len(self.mids) else 0

    def summary(self) -> dict[str, Any]:
        """The headline numbers and the record of what they were computed on, under short
        stable keys (``mAP``, ``mean_auc``, ``dprime``...; :data:`SUMMARY_LABELS` has the
        sentence each stands for, which the markdown report shows)."""
        m = self.metrics
        out: dict[str, Any] = {
            "level": self.level,
            "mAP": _num(m.mean_ap),
            "mean_auc": _num(m.mean_auc),
            "dprime": _num(m.dprime_of_mean_auc),
            "mean_dprime": _num(m.mean_dprime),
            "micro_ap": _num(self.micro_ap),
            "classes_defined": int(m.defined.sum()),
            "classes_undefined": int(m.n_undefined),
            "labels": len(self.mids),
            "labels_sha256": id_list_hash(self.mids),
        }
        if self.priors is not None:
            out["prior_weighted_ap"] = _num(m.weighted_ap(self.priors))
        if self.clip_ids is not None:
            out["clips_evaluated"] = len(self.clip_ids)
            out["clips_sha256"] = id_list_hash(self.clip_ids)
        if self.n_listed is not None:
            out["clips_listed"] = self.n_listed
        if self.subset is not None:
            out.update(self.subset.fields())
        if self.not_evaluated:
            out["requested_without_scores"] = len(self.not_evaluated)
        if self.unscored:
            out["unscored"] = self.unscored
        if self.not_in_labels:
            out["not_in_labels"] = self.not_in_labels
        if self.propagated is not None:
            out["mAP_propagated"] = _num(self.propagated.mean_ap)
        if self.bootstrap is not None:
            b = self.bootstrap
            out["mAP_interval"] = [_num(b.low), _num(b.high)]
            out["mAP_interval_level"] = float(getattr(b, "confidence", 0.95))
        if self.branches is not None:
            out["mAP_by_branch"] = {k: _num(v) for k, v in self.branch_means().items()}
        if self.quality is not None:
            rho, n = self.quality_correlation()
            out["ap_quality_spearman"] = _num(rho)
            out["ap_quality_classes"] = n
        return out

    def with_context(self, *, label_index: Any = None, ontology: Any = None,
                     priors: Any = None, quality: Any = None) -> EvaluationResult:
        """A copy of this result with what it was computed without. The plots of
        :meth:`plot` need priors (AP against prior) and an ontology (mAP per branch).

        Parameters
        ----------
        label_index
            Display names, matched by mid where it knows every mid of the result (it may hold
            other labels too, in any order); else, for a result computed without one (its
            mids are column numbers), the labels column for column, mids and names.
        ontology
            Adds the top-level branch of every label and the mAP with labels and scores
            propagated to ancestors, as :func:`evaluate` with an ontology does.
        priors
            Per-class priors (an array or a ``ClassPriors``), or ``"evaluated"``: each label's
            share of the evaluated clips (known pairs only, where some are unknown).
        quality
            Label quality (a :class:`~audioset_data.evaluation.quality.LabelQuality` or the
            path of a ``qa_true_counts.csv`` whose ``label_id`` count in ``label_index``),
            matched with the labels by mid (or by class number for a result whose labels are
            numbered): shown beside each class's AP.
        """
        mids, names = list(self.mids), list(self.names)
        if label_index is not None:
            if all(m in label_index for m in mids):
                names = [label_index.name(m) for m in mids]
            elif len(label_index) == len(mids):
                mids, names = list(label_index.mids), list(label_index.names)
            else:
                raise EvaluationError(f"the label index ({len(label_index)} labels) holds "
                                      f"neither the {len(mids)} mids of the result nor as "
                                      "many labels")
        targets, scores = self._curves if self._curves is not None else (None, None)
        prior = self.priors
        if isinstance(priors, str):
            if priors != "evaluated" or targets is None:
                raise EvaluationError(f"priors={priors!r}: an array, a ClassPriors or "
                                      "'evaluated' (for a result that holds its targets)")
            known = (self.metrics.n_pos + self.metrics.n_neg).astype(np.float64)
            prior = self.metrics.n_pos / np.maximum(known, 1.0)
        elif priors is not None:
            prior = _priors(priors, len(self.mids))
        branches, propagated = self.branches, self.propagated
        if ontology is not None:
            if targets is None:
                raise EvaluationError("this result holds no targets and scores to propagate")
            branches, propagated = _ontology_parts(LabelIndex(mids, names), ontology,
                                                   targets, scores)
        aligned = self.quality
        if quality is not None:
            aligned = as_quality(quality, label_index).aligned(mids)
        return replace(self, mids=mids, names=names, priors=prior, branches=branches,
                       propagated=propagated, quality=aligned)

    def to_frame(self) -> pd.DataFrame:
        """One row per class: mid, name, AP, AUC, d-prime, EER, counts, prior, branch."""
        m = self.metrics
        frame = pd.DataFrame({
            "mid": self.mids, "name": self.names, "ap": m.ap, "auc": m.auc,
            "dprime": m.dprime, "eer": m.eer, "n_pos": m.n_pos, "n_neg": m.n_neg,
            "defined": m.defined,
        })
        if self.priors is not None:
            frame["prior"] = self.priors
        if self.branches is not None:
            frame["branch"] = [", ".join(b) for b in self.branches]
        if self.propagated is not None:
            frame["ap_propagated"] = self.propagated.ap
        if self.quality is not None:
            frame["quality"] = self.quality.quality
            frame["num_rated"] = self.quality.num_rated
        return frame

    def branch_means(self) -> dict[str, float]:
        """Mean AP of the defined classes under each top-level branch (a class under two
        branches counts in both)."""
        if self.branches is None:
            return {}
        out: dict[str, list[float]] = {}
        for ap, ok, names in zip(self.metrics.ap, self.metrics.defined, self.branches,
                                 strict=True):
            for b in names:
                if ok:
                    out.setdefault(b, []).append(float(ap))
        return {b: float(np.mean(v)) for b, v in sorted(out.items())}

    def to_json(self, path: PathLike | None = None) -> str:
        """Summary and per-class table as JSON (written to ``path`` when given)."""
        frame = self.to_frame().replace({np.nan: None})
        data: dict[str, Any] = {"summary": self.summary(), "classes": frame.to_dict("records")}
        if self.subsets is not None:
            data["subsets"] = self.subsets.to_dict()
        text = json.dumps(data, indent=1, default=_num)
        if path is not None:
            Path(path).write_text(text)
        return text

    def to_markdown(self, top: int = 20) -> str:
        """A markdown report: the summary, then the best and worst classes by AP."""
        lines = ["| measure | value |", "|---|---|"]
        summary = self.summary()
        level = summary.pop("mAP_interval_level", 0.95)
        for k, v in summary.items():
            if isinstance(v, dict):
                v = "; ".join(f"{a} {b:.3f}" for a, b in v.items() if b is not None)
            elif isinstance(v, list) and k == "subset_unknown_examples":
                v = ", ".join(v)
            elif isinstance(v, float):
                v = f"{v:.4f}"
            label = SUMMARY_LABELS.get(k, k).replace("{level}", f"{level:.0%}")
            lines.append(f"| {label} | {v} |")
        frame = self.to_frame()
        frame = frame[frame["defined"]].sort_values("ap", ascending=False)
        cols = ["name", "ap", "auc", "dprime", "n_pos"]
        if self.quality is not None:
            cols.append("quality")
        for title, part in (("best", frame.head(top)), ("worst", frame.tail(top)[::-1])):
            lines += ["", f"{title} {len(part)} classes by AP:", "",
                      "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
            for r in part.itertuples():
                row = (f"| {r.name} | {r.ap:.3f} | {r.auc:.3f} | {r.dprime:.3f} | "
                       f"{r.n_pos} |")
                if self.quality is not None:
                    q = r.quality
                    row += f" {q:.2f} ({r.num_rated}) |" if np.isfinite(q) else " — |"
                lines.append(row)
        if self.subsets is not None:
            lines += ["", f"the same scores on each subset of {self.subsets.split}:", "",
                      self.subsets.to_markdown().rstrip("\n")]
        return "\n".join(lines) + "\n"

    def plot(self, folder: PathLike, classes: Sequence[str] = ()) -> list[Path]:
        """Write the plots to ``folder``: AP against prior (log axis), mAP per branch, AP
        against label quality, and precision-recall curves of ``classes`` (mids or names), each
        where the result holds what it needs. Returns the files."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        out = []
        frame = self.to_frame()
        if self.priors is not None:
            fig, ax = plt.subplots(figsize=(6, 4))
            d = frame[frame["defined"]]
            ax.scatter(d["prior"], d["ap"], s=6)
            ax.set_xscale("log")
            ax.set_xlabel("class prior")
            ax.set_ylabel("average precision")
            ax.set_title(f"AP against prior ({self.level} level)")
            fig.tight_layout()
            out.append(folder / "ap_vs_prior.png")
            fig.savefig(out[-1], dpi=120)
            plt.close(fig)
        if self.branches is not None:
            means = self.branch_means()
            fig, ax = plt.subplots(figsize=(6, 3 + 0.2 * len(means)))
            ax.barh(list(means), list(means.values()))
            ax.set_xlabel("mAP")
            fig.tight_layout()
            out.append(folder / "map_per_branch.png")
            fig.savefig(out[-1], dpi=120)
            plt.close(fig)
        if self.quality is not None:
            rho, n = self.quality_correlation()
            fig, ax = plt.subplots(figsize=(6, 4))
            q = np.where(frame["defined"], frame["quality"], np.nan)
            ax.scatter(q, frame["ap"], s=6)
            ax.set_xlabel("label quality (share of rated labels confirmed)")
            ax.set_ylabel("average precision")
            rho_text = f"{rho:.2f}" if np.isfinite(rho) else "undefined"
            ax.set_title(f"AP against label quality: Spearman ρ = {rho_text} ({n} classes)")
            fig.tight_layout()
            out.append(folder / "ap_vs_quality.png")
            fig.savefig(out[-1], dpi=120)
            plt.close(fig)
        if classes and self._curves is not None:
            targets, scores = self._curves
            fig, ax = plt.subplots(figsize=(5, 5))
            for c in classes:
                j = self._column(c)
                p, r = _pr_curve(_dense_col(targets, j), np.asarray(scores[:, j]))
                ax.step(r, p, where="post", label=f"{self.names[j]} (AP {self.metrics.ap[j]:.2f})")
            ax.set_xlabel("recall")
            ax.set_ylabel("precision")
            ax.legend(fontsize=7)
            fig.tight_layout()
            out.append(folder / "precision_recall.png")
            fig.savefig(out[-1], dpi=120)
            plt.close(fig)
        return out

    def _column(self, key: str) -> int:
        if key in self.mids:
            return self.mids.index(key)
        lowered = [n.lower() for n in self.names]
        if key.lower() in lowered:
            return lowered.index(key.lower())
        raise EvaluationError(f"class {key!r} is not among the evaluated labels")


def _num(x: Any) -> Any:
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float) and not np.isfinite(x):
        return None
    return x


def _dense_col(targets: Any, j: int) -> np.ndarray:
    col = targets[:, [j]] if sp.issparse(targets) else targets[:, j]
    return np.asarray(col.toarray() if sp.issparse(col) else col).reshape(-1).astype(bool)


def _pr_curve(y: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(-s, kind="stable")
    tp = np.cumsum(y[order])
    k = np.arange(1, len(y) + 1)
    return tp / k, tp / max(1, int(y.sum()))


def _check(scores: Any, targets: Any, n_labels: int | None) -> tuple[np.ndarray, Any]:
    scores = np.asarray(scores)
    if scores.ndim != 2:
        raise EvaluationError(f"scores must be clips × labels (2-D), not shape {scores.shape}")
    if not np.issubdtype(scores.dtype, np.number) or np.issubdtype(scores.dtype, np.bool_):
        raise EvaluationError(f"scores must be numbers, not {scores.dtype}")
    if targets.shape != scores.shape:
        raise EvaluationError(f"scores have shape {scores.shape}, targets {targets.shape}")
    if n_labels is not None and scores.shape[1] != n_labels:
        raise EvaluationError(f"the label axis has {scores.shape[1]} columns, the label index "
                              f"{n_labels}")
    bad = ~np.isfinite(scores)
    if bad.any():
        i, j = np.argwhere(bad)[0]
        raise EvaluationError(f"{int(bad.sum())} scores are NaN or infinite (first at clip row "
                              f"{i}, label column {j})")
    return scores, targets


def evaluate(
    scores: Any = None,
    targets: Any = None,
    *,
    y_true: Any = None,
    y_score: Any = None,
    clip_ids: Sequence[str] | None = None,
    on: Iterable[str] | None = None,
    label_index: Any = None,
    ontology: Any = None,
    priors: Any = None,
    n_listed: int | None = None,
    known: Any = None,
    bootstrap: int = 0,
    seed: int = 0,
    level: str = "clip",
    subset: str | Subset | None = None,
    split: str = "eval",
    root: PathLike | None = None,
    quality: Any = None,
) -> EvaluationResult:
    """Evaluate scores against targets (clips × labels) and record what on.

    Parameters
    ----------
    y_true, y_score
        The targets (bool, dense or sparse) and the scores, by keyword: scikit-learn's names
        and the truth-first order of :func:`~audioset_data.evaluation.metrics.class_metrics`
        and the rest of the harness, so no call depends on which function takes which order.
        The older form ``evaluate(scores, targets)`` (positional, scores first, or
        ``scores=``/``targets=``) still works.
    clip_ids
        Id of each row (``ytid_startms`` keys); needed for ``on`` and for the clip-list hash.
    on
        Restrict to these clip ids (e.g. another paper's list). Ids without a row are listed
        in ``not_evaluated``, never guessed.
    label_index, ontology
        Names, and (with the ontology) top-level branches and a second mAP with labels and
        scores propagated to ancestors (an ancestor's score is the highest of its own and its
        descendants' scores).
    priors
        Per-class priors (a ``ClassPriors`` or an array) for the table and the prior-weighted AP.
    n_listed
        How many clips the split lists, recorded beside the clips evaluated.
    known
        Pairs whose truth is known (frame level: pairs absent from the framed file are unknown
        and excluded).
    bootstrap
        Resamples for a confidence interval of the mAP over clips (0: none).
    subset, split, root
        Restrict to a named subset of ``split``'s clips (needs ``clip_ids``): ``"official"``
        (its segment list), ``"ast"`` (the eval clips AST evaluated), ``"available"`` (the
        clips its cache or embeddings store under ``root`` holds), a file of ids, or a
        :class:`~audioset_data.evaluation.subsets.Subset`. The result records the subset and
        how many of its clips have scores (:attr:`EvaluationResult.subset`).
    quality
        Label quality (a ``LabelQuality`` or the path of a ``qa_true_counts.csv``) shown beside
        each class's AP; see :meth:`EvaluationResult.with_context`.

    Raises
    ------
    EvaluationError
        Shapes, values or ids that cannot be evaluated; no clip of ``subset`` scored.
    """
    targets, scores = _truth_and_scores(y_true, y_score, targets, scores, "evaluate")
    n_labels = len(label_index) if label_index is not None else None
    scores, targets = _check(scores, targets, n_labels)
    not_evaluated: list[str] = []
    ids = None if clip_ids is None else [str(x) for x in clip_ids]
    if ids is not None and len(ids) != scores.shape[0]:
        raise EvaluationError(f"{len(ids)} clip ids for {scores.shape[0]} score rows")
    if ids is not None and len(set(ids)) != len(ids):
        raise EvaluationError("clip ids repeat: join ranks with gather_scores first")
    coverage = None
    if subset is not None:
        if ids is None:
            raise EvaluationError("subset= needs clip_ids to know which row is which clip")
        if on is not None:
            raise EvaluationError("pass on= or subset=, not both (a file of ids is a subset)")
        chosen = resolve_subset(subset, split=split, root=root)
        coverage = SubsetCoverage.of(chosen, ids)
        if not coverage.scored:
            raise EvaluationError(f"none of the {len(chosen):,} clips of subset "
                                  f"{chosen.name!r} has scores (clip ids are ytid_startms "
                                  "keys)")
        on = chosen.keys
        n_listed = len(chosen) if n_listed is None else n_listed
    if on is not None:
        if ids is None:
            raise EvaluationError("on= needs clip_ids to know which row is which clip")
        wanted = [str(x) for x in on]
        pos = {k: i for i, k in enumerate(ids)}
        rows = [pos[k] for k in wanted if k in pos]
        not_evaluated = [k for k in wanted if k not in pos]
        if not_evaluated:
            logger.warning("%d of the %d requested clips have no scores (e.g. %s)",
                           len(not_evaluated), len(wanted), not_evaluated[0])
        scores = scores[rows]
        targets = targets[rows]
        known = None if known is None else known[rows]
        ids = [ids[i] for i in rows]
    metrics = class_metrics(y_true=targets, y_score=scores, known=known)
    mids = list(label_index.mids) if label_index is not None else [
        str(j) for j in range(scores.shape[1])]
    names = list(label_index.names) if label_index is not None else list(mids)
    prior = _priors(priors, scores.shape[1])
    branches = propagated = None
    if ontology is not None and label_index is not None:
        branches, propagated = _ontology_parts(label_index, ontology, targets, scores)
    boot = None
    if bootstrap:
        boot = bootstrap_map(y_true=targets, y_score=scores, n_resamples=bootstrap, seed=seed,
                             known=known)
    result = EvaluationResult(
        metrics=metrics, mids=mids, names=names, clip_ids=ids, n_listed=n_listed,
        level=level, priors=prior, branches=branches, propagated=propagated, bootstrap=boot,
        not_evaluated=not_evaluated, subset=coverage, _curves=(targets, scores), _known=known,
    )
    if quality is not None:
        result = result.with_context(quality=as_quality(quality, label_index))
    return result


def _priors(priors: Any, n_labels: int) -> np.ndarray | None:
    """Per-class priors as a float vector (from a ``ClassPriors`` or an array), or None."""
    if priors is None:
        return None
    prior = np.asarray(getattr(priors, "priors", priors), dtype=np.float64).reshape(-1)
    if len(prior) != n_labels:
        raise EvaluationError(f"{len(prior)} priors for {n_labels} labels")
    return prior


def _ontology_parts(label_index: Any, ontology: Any, targets: Any, scores: np.ndarray
                    ) -> tuple[list[list[str]], ClassMetrics]:
    """Top-level branches of each label, and the metrics with labels and scores propagated
    to ancestors (an ancestor's score is the highest of its own and its descendants')."""
    P = label_index.propagation_matrix(ontology)  # noqa: N806
    propagated = class_metrics(y_true=label_index.propagate(sp.csr_array(targets), ontology),
                               y_score=_propagate_scores(np.asarray(scores), P))
    return _branches(ontology, list(label_index.mids)), propagated


def evaluate_frames(
    frame_scores: Any,
    clip_ids: Sequence[str],
    frames: Sequence[int],
    framed: Any,
    *,
    label_index: Any = None,
    **kwargs: Any,
) -> EvaluationResult:
    """Frame-level evaluation against the framed strong labels (960 ms frames).

    ``frame_scores`` has one row per ``(clip_ids[i], frames[i])``; ``framed`` is the framed
    file as arrays (:meth:`audioset_data.strong.events.FramedLabels.to_arrays`). A (frame, label)
    pair the framed file does not list is unknown and excluded, not negative; scored frames the file
    does not list are left out and counted. Other keywords go to :func:`evaluate`.
    """
    scores = np.asarray(frame_scores)
    if scores.ndim != 2 or len(scores) != len(clip_ids) or len(clip_ids) != len(frames):
        raise EvaluationError(f"frame scores {scores.shape}, {len(clip_ids)} clip ids and "
                              f"{len(frames)} frame numbers must agree")
    rows, take = [], []
    for i, (k, f) in enumerate(zip(clip_ids, frames, strict=True)):
        try:
            rows.append(framed.row(str(k), int(f)))
            take.append(i)
        except KeyError:
            continue
    if not rows:
        raise EvaluationError("no scored frame is listed in the framed labels (clip ids are "
                              "ytid_startms keys, frames count from 0)")
    known = framed.known[rows]
    listed_rows = np.flatnonzero(np.diff(framed.known.indptr) > 0)
    ids = [f"{clip_ids[i]}#{int(frames[i])}" for i in take]
    result = evaluate(y_true=framed.present[rows], y_score=scores[take], clip_ids=ids,
                      known=known, label_index=label_index, level="frame",
                      n_listed=len(listed_rows), **kwargs)
    result.not_in_labels = len(clip_ids) - len(take)
    result.unscored = len(set(listed_rows) - set(rows))
    return result


def _branches(ontology: Any, mids: Sequence[str]) -> list[list[str]]:
    roots = set(ontology.roots())
    out = []
    for m in mids:
        if m in ontology:
            tops = sorted(ontology[r].name for r in ontology.ancestors(m, with_self=True)
                          if r in roots)
        else:
            tops = []
        out.append(tops or ["(not in the ontology)"])
    return out


def _propagate_scores(scores: np.ndarray, P: Any) -> np.ndarray:  # noqa: N803
    """Ancestor j gets the highest score of the labels i with ``P[i, j]`` (itself included)."""
    P = sp.csc_array(P)  # noqa: N806
    out = np.empty_like(scores, dtype=np.float64)
    for j in range(P.shape[1]):
        rows = P.indices[P.indptr[j] : P.indptr[j + 1]]
        out[:, j] = scores[:, rows].max(axis=1) if len(rows) else scores[:, j]
    return out


def gather_scores(
    parts: Iterable[tuple[Sequence[str], Any]]
) -> tuple[list[str], np.ndarray]:
    """Join ``(clip_ids, scores)`` of several ranks, keeping each clip once.

    A distributed sampler pads the evaluation set with repeated clips so every rank gets as
    many; the repeats are recognised by clip id and the first row of each clip is kept. Scores
    are never compared: a repeat scored in bf16 on another rank, in another batch, need not
    match bit for bit.
    """
    ids: list[str] = []
    rows: list[np.ndarray] = []
    seen: dict[str, int] = {}
    for part_ids, part_scores in parts:
        part_scores = np.asarray(part_scores)
        if len(part_ids) != len(part_scores):
            raise EvaluationError(f"{len(part_ids)} ids for {len(part_scores)} score rows")
        for k, row in zip(part_ids, part_scores, strict=True):
            k = str(k)
            if k in seen:
                continue
            seen[k] = len(ids)
            ids.append(k)
            rows.append(row)
    if not rows:
        raise EvaluationError("no scores to gather")
    return ids, np.stack(rows)


__all__ = ["SUMMARY_LABELS", "EvaluationResult", "evaluate", "evaluate_frames", "gather_scores",
           "id_list_hash"]
