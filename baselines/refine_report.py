"""Reports on refined targets: the per-label kept-fraction table and the comparison of kept
frames against real strong labels (precision and recall, refined against keep-all)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from audioset_data.segments.labels import LabelIndex
from audioset_data.strong.events import StrongLabels
from audioset_data.strong.frames import DEFAULT_HOP, frame_targets

if TYPE_CHECKING:
    from .refine import RefinedTargets

__all__ = ["format_comparison", "format_kept", "strong_comparison"]


def strong_comparison(refined: RefinedTargets, strong: StrongLabels, *,
                      names: Mapping[str, str] | LabelIndex | None = None,
                      hop: float = DEFAULT_HOP) -> pd.DataFrame:
    """Precision and recall of the kept frames against the frames strong labels mark present.

    Counted over the (clip, label) pairs that the weak labels mark positive, whose clip the
    strong file lists and whose label it annotates (has at least one event of): every frame of
    such a pair is either kept or not and either strong-present or not. The trivial baseline
    keeps every frame (its recall is 1 and its precision the share of present frames).

    Returns
    -------
    pandas.DataFrame
        One row per label and a last ``overall`` row (``label = -1``): ``mid, name, clips,
        frames, present, kept, precision, recall, f1, keep_all_precision, keep_all_recall,
        keep_all_f1``.
    """
    if isinstance(names, LabelIndex):
        names = dict(zip(names.mids, names.names, strict=True))
    names = names or {}
    index = LabelIndex(refined.label_mids, refined.label_mids, source="refined labels")
    truth = frame_targets(strong, index, hop=hop, clip_seconds=(refined.n_frames + 0.5) * hop,
                          keys=refined.keys)
    listed = ~pd.Index(refined.keys).isin(list(truth.missing))
    annotated = np.zeros(len(refined.label_mids), dtype=bool)
    columns = pd.Index(refined.label_mids).get_indexer(strong.events["mid"])
    annotated[np.unique(columns[columns >= 0])] = True
    use = listed[refined.pair_clip] & annotated[refined.pair_label]
    clip, label = refined.pair_clip[use], refined.pair_label[use]
    rows = clip[:, None] * refined.n_frames + np.arange(refined.n_frames)
    present = truth.targets[rows.ravel(), np.repeat(label, refined.n_frames)]
    present = np.asarray(present).reshape(len(clip), refined.n_frames).astype(bool)
    valid = refined.valid[clip]
    kept = refined.kept[use]
    present &= valid
    groups = [(int(c), label == c) for c in np.unique(label)] + [(-1, np.ones(len(label), bool))]
    records = []
    for c, sel in groups:
        k, p, v = kept[sel], present[sel], valid[sel]
        hit, all_hit = int((k & p).sum()), int((v & p).sum())
        n_k, n_p, n_v = int(k.sum()), int(p.sum()), int(v.sum())
        prec, rec = _ratio(hit, n_k), _ratio(hit, n_p)
        base_p, base_r = _ratio(all_hit, n_v), _ratio(all_hit, n_p)
        mid = refined.label_mids[c] if c >= 0 else "overall"
        records.append({"label": c, "mid": mid, "name": names.get(mid, ""),
                        "clips": int(sel.sum()), "frames": n_v, "present": n_p, "kept": n_k,
                        "precision": prec, "recall": rec, "f1": _f1(prec, rec),
                        "keep_all_precision": base_p, "keep_all_recall": base_r,
                        "keep_all_f1": _f1(base_p, base_r)})
    return pd.DataFrame.from_records(records)


def _ratio(a: int, b: int) -> float:
    return a / b if b else float("nan")


def _f1(p: float, r: float) -> float:
    return 2 * p * r / (p + r) if p + r > 0 else float("nan")


def format_comparison(table: pd.DataFrame) -> str:
    """The comparison of :func:`strong_comparison` as a Markdown table (refined | keep-all)."""
    head = ("| label | clips | frames | present | kept | precision | recall | F1 "
            "| keep-all precision | keep-all recall | keep-all F1 |")
    lines = [head, "|" + "---|" * 11]
    for r in table.itertuples(index=False):
        who = "**overall**" if r.label < 0 else f"{r.name or r.mid} ({r.mid})"
        nums = " | ".join(_cell(x) for x in (r.precision, r.recall, r.f1,
                                             r.keep_all_precision, r.keep_all_recall,
                                             r.keep_all_f1))
        lines.append(f"| {who} | {r.clips} | {r.frames} | {r.present} | {r.kept} | {nums} |")
    return "\n".join(lines) + "\n"


def _cell(x: float) -> str:
    return "–" if x != x else f"{x:.3f}"


def format_kept(table: pd.DataFrame) -> str:
    """The per-label kept fractions of :meth:`RefinedTargets.kept_fractions` as plain text."""
    if not len(table):
        return "no labelled clips\n"
    view = table.assign(fraction=[_cell(x) for x in table["fraction"]])
    return view.to_string(index=False) + "\n"


# --------------------------------------------------------------------------------------------
# refining a cached split with a trained model
