"""The seed paper's benchmark on real AudioSet, on any CPU: the official embeddings release.

:func:`run_features_benchmark` trains the embedding models with their default recipes and a
linear anchor, and writes the seed-style table (mAP, AUC, d′, EER per model), the seed's two
figures on real data (mAP against the number of training clips, over nested stratified subsets;
per-class d′ against the class prior) and the seed's "useful embeddings" check (train on half of
the classes, then probe the other half with a linear classifier on the learned clip embedding
and on the raw release embeddings).

When an ``eval`` store exists the table trains on the whole training store and scores it; the
figures and the probe always train on a stratified part of the training store and score its
held-out rest (the eval store is never tuned on).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from audioset_data.config import PathLike
from audioset_data.errors import ConfigError
from audioset_data.evaluation.metrics import class_metrics
from audioset_data.features.errors import FeatureStoreNotFoundError
from audioset_data.features.store import EmbeddingStore, open_store
from audioset_data.fileio import atomic_write
from audioset_data.loaders.embeddings import EmbeddingDataset, collate_embeddings, dequantize
from audioset_data.segments.stratify import stratified_split

from .config import TrainConfig
from .inference import score_embeddings
from .models import model_defaults
from .training import Trainer

logger = logging.getLogger(__name__)

__all__ = ["FeaturesBenchmark", "linear_anchor", "plot_dprime", "plot_sizes", "pooled",
           "run_features_benchmark"]

#: Training-set sizes of the "mAP against training clips" figure (0: the whole part).
DEFAULT_SIZES = (1000, 2000, 5000, 10000, 0)


@dataclass
class FeaturesBenchmark:
    """What :func:`run_features_benchmark` measured; ``rows`` are the table's rows."""

    rows: list[dict[str, Any]]
    sizes: list[dict[str, Any]] = field(default_factory=list)
    probe: dict[str, Any] = field(default_factory=dict)
    #: per-class prior, d′ and whether defined, of the table's attention model (figure 2)
    per_class: dict[str, list[Any]] = field(default_factory=dict)
    out: Path | None = None

    def table(self) -> str:
        """The seed-style table in markdown."""
        head = ("| model | recipe | train clips | eval clips | mAP | AUC | d′ | EER | "
                "train s |\n|---|---|---|---|---|---|---|---|---|\n")
        return head + "".join(
            f"| {r['model']} | {r['recipe']} | {r['train clips']} | {r['eval clips']} | "
            f"{r['mAP']:.3f} | {r['AUC']:.3f} | {r['dprime']:.3f} | {r['EER']:.3f} | "
            f"{r['train s']:.0f} |\n" for r in self.rows)


def pooled(store: EmbeddingStore, rows: np.ndarray) -> np.ndarray:
    """Mean and max over a clip's real frames of the dequantised release embeddings, (n, 256)
    float32; a clip with no frames gives zeros."""
    q = np.asarray(store.embeddings[np.sort(rows)])[np.argsort(np.argsort(rows))]
    x = dequantize(torch.from_numpy(q)).numpy()
    mask = np.arange(x.shape[1])[None, :] < np.asarray(store.frames)[rows][:, None]
    n = mask.sum(axis=1, keepdims=True)
    mean = (x * mask[..., None]).sum(axis=1) / np.maximum(n, 1)
    mx = np.where(mask[..., None], x, -np.inf).max(axis=1)
    mx[n[:, 0] == 0] = 0.0
    return np.concatenate([mean, mx], axis=1).astype(np.float32)


def linear_anchor(x_train: np.ndarray, y_train: Any, x_test: np.ndarray, *,
                  weight_decay: float = 1e-4, epochs: int = 200, seed: int = 0) -> np.ndarray:
    """Scores of a multi-label logistic regression (one linear layer, full-batch Adam on
    standardised inputs): the floor every embedding model must clear."""
    g = torch.Generator().manual_seed(seed)
    mu, sd = x_train.mean(axis=0), x_train.std(axis=0) + 1e-6
    xt = torch.from_numpy((x_train - mu) / sd)
    yt = torch.from_numpy(np.asarray(sp.csr_array(y_train).toarray(), np.float32))
    layer = torch.nn.Linear(xt.shape[1], yt.shape[1])
    with torch.no_grad():
        layer.weight.normal_(0, 0.01, generator=g)
        layer.bias.zero_()
    opt = torch.optim.Adam(layer.parameters(), lr=0.01, weight_decay=weight_decay)
    for _ in range(epochs):
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(layer(xt), yt)
        loss.backward()
        opt.step()
    with torch.no_grad():
        return torch.sigmoid(layer(torch.from_numpy((x_test - mu) / sd))).numpy()


def _metrics(targets: Any, scores: np.ndarray) -> dict[str, float]:
    m = class_metrics(sp.csr_array(targets).toarray().astype(bool), scores)
    return {"mAP": m.mean_ap, "AUC": m.mean_auc, "dprime": m.dprime_of_mean_auc,
            "EER": m.mean_eer}


def _train(model: str, train: EmbeddingDataset, out: Path, *, steps_cap: int = 0,
           seed: int = 0, progress: bool = False) -> tuple[Trainer, float]:
    config = TrainConfig(**{**model_defaults(model), "model": model, "eval": None,
                            "out": str(out), "resume": False, "checkpoint_every": 0,
                            "seed": seed, "device": "cpu"})
    trainer = Trainer(config, progress=progress, train_data=train)
    if steps_cap and trainer.total_steps > steps_cap:  # the quick smoke: same recipe, fewer
        trainer.config = config.replace(stop_after=steps_cap)
    t0 = time.perf_counter()
    trainer.fit()
    return trainer, time.perf_counter() - t0


def _scores(trainer: Trainer, data: EmbeddingDataset) -> np.ndarray:
    loader = torch.utils.data.DataLoader(data, batch_size=1024, collate_fn=collate_embeddings)
    s = score_embeddings(trainer.model, loader, trainer.device)
    where = {k: i for i, k in enumerate(s.ids)}
    return s.clips[[where[str(k)] for k in data.keys]]


@torch.no_grad()
def _clip_embeddings(trainer: Trainer, data: EmbeddingDataset) -> np.ndarray:
    model = trainer.model.eval()
    out = []
    for start in range(0, len(data), 1024):
        b = data.__getitems__(list(range(start, min(len(data), start + 1024))))
        out.append(model.embedding(dequantize(b["embedding"]), b["mask"]).numpy())
    return np.concatenate(out).astype(np.float32)


def run_features_benchmark(
    *,
    root: PathLike | None = None,
    train: str = "balanced",
    eval_split: str | None = "eval",
    out: PathLike = "runs/features-benchmark",
    models: tuple[str, ...] = ("linear", "embedding-fc", "embedding-attention"),
    sizes: tuple[int, ...] = DEFAULT_SIZES,
    held_out: float = 0.2,
    quick: bool = False,
    seed: int = 0,
    progress: bool = True,
) -> FeaturesBenchmark:
    """Run the benchmark on the stores under ``root`` and write ``out/features.md``,
    ``out/features.json`` and the figures ``out/map_vs_clips.png``, ``out/dprime_vs_prior.png``.

    ``quick`` keeps every step but caps each training at 30 optimiser steps and the figure
    at two sizes (a smoke run in about a minute; its figures mean little).
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    store = open_store(train, root)
    try:
        evaluation = open_store(eval_split, root) if eval_split else None
    except FeatureStoreNotFoundError:
        logger.warning("no %r embeddings store: the table scores a held-out part of %r",
                       eval_split, train)
        evaluation = None
    cap = 30 if quick else 0
    targets = store.targets()
    part, rest = stratified_split(targets, (1 - held_out, held_out), seed=seed)
    part_set = EmbeddingDataset(store, selection=part)
    rest_set = EmbeddingDataset(store, selection=rest)
    table_train = EmbeddingDataset(store) if evaluation is not None else part_set
    table_eval = EmbeddingDataset(evaluation) if evaluation is not None else rest_set
    where = "eval store" if evaluation is not None else f"held-out {held_out:.0%} of {train}"

    rows: list[dict[str, Any]] = []
    attention: Trainer | None = None
    for name in models:
        if name == "linear":
            t0 = time.perf_counter()
            s = linear_anchor(pooled(store, table_train.positions), table_train.targets,
                              pooled(table_eval.store, table_eval.positions),
                              epochs=20 if quick else 200)
            secs, recipe = time.perf_counter() - t0, "mean+max pooled, logistic regression"
        else:
            trainer, secs = _train(name, table_train, out / name, steps_cap=cap, seed=seed,
                                   progress=progress)
            s = _scores(trainer, table_eval)
            recipe = "defaults"
            if name == "embedding-attention":
                attention = trainer
        rows.append({"model": name, "recipe": recipe, "train clips": len(table_train),
                     "eval clips": len(table_eval), "train s": secs,
                     **_metrics(table_eval.targets, s), "scored on": where})
        logger.info("%s: mAP %.3f", name, rows[-1]["mAP"])
    result = FeaturesBenchmark(rows, out=out)

    # the seed's figure 1: mAP against training clips, nested stratified subsets of the part
    n_part = len(part)
    wanted = sorted({min(n_part, s) if s else n_part for s in (sizes[:1] + sizes[-1:]
                                                                 if quick else sizes)})
    order = _nested_order(part_set.targets, seed)
    for n in wanted:
        if n == n_part and evaluation is None and attention is not None:
            # the table's attention model trained on exactly this part with this seed
            trainer = attention
            secs = next(r["train s"] for r in rows if r["model"] == "embedding-attention")
        else:
            sub = EmbeddingDataset(store, selection=part[order[:n]])
            trainer, secs = _train("embedding-attention", sub, out / f"size-{n}",
                                   steps_cap=cap, seed=seed, progress=progress)
        m = _metrics(rest_set.targets, _scores(trainer, rest_set))
        result.sizes.append({"train clips": n, **m, "train s": secs})
        logger.info("%d training clips: mAP %.3f", n, m["mAP"])

    # the seed's figure 2 (d′ against prior) from the attention model of the table
    if attention is not None:
        scores = _scores(attention, table_eval)
        per_class = class_metrics(sp.csr_array(table_eval.targets).toarray().astype(bool),
                                  scores)
        prior = np.asarray(table_train.targets.sum(axis=0)).ravel() / len(table_train)
        plot_dprime(out / "dprime_vs_prior.png", prior, per_class.dprime, per_class.defined)
        result.per_class = {"prior": prior.tolist(),
                            "dprime": [float(d) if np.isfinite(d) else None
                                       for d in per_class.dprime],
                            "defined": per_class.defined.astype(bool).tolist()}
    plot_sizes(out / "map_vs_clips.png", result.sizes)

    # the seed's "useful embeddings": train on half of the classes, probe the other half
    result.probe = _probe(store, part, rest, out, cap=cap, seed=seed, progress=progress)

    text = (f"# Embeddings benchmark\n\nTable scored on the {where} ({len(table_eval)} clips)."
            f"\n\n{result.table()}\n## mAP against training clips (held-out {held_out:.0%} "
            f"of {train})\n\n| train clips | mAP | AUC | d′ |\n|---|---|---|---|\n"
            + "".join(f"| {r['train clips']} | {r['mAP']:.3f} | {r['AUC']:.3f} | "
                      f"{r['dprime']:.3f} |\n" for r in result.sizes)
            + "\n## Useful embeddings (linear probe of held-out classes)\n\n"
            f"{_probe_text(result.probe)}\n")
    with atomic_write(out / "features.md", "w", encoding="utf-8") as fh:
        fh.write(text)
    with atomic_write(out / "features.json", "w", encoding="utf-8") as fh:
        json.dump({"rows": rows, "sizes": result.sizes, "probe": result.probe,
                   "per_class": result.per_class}, fh, indent=1)
    return result


def _nested_order(targets: Any, seed: int) -> np.ndarray:
    """A permutation whose every prefix is a stratified sample: the rows of 20 stratified
    folds, dealt round-robin."""
    folds = stratified_split(targets, [1 / 20] * 20, seed=seed)
    longest = max(len(f) for f in folds)
    dealt = [f[i] for i in range(longest) for f in folds if i < len(f)]
    return np.asarray(dealt, dtype=np.int64)


def _probe(store: EmbeddingStore, part: np.ndarray, rest: np.ndarray, out: Path, *, cap: int,
           seed: int, progress: bool) -> dict[str, Any]:
    present = np.flatnonzero(np.asarray(store.targets()[part].sum(axis=0)).ravel() > 0)
    seen, unseen = present[0::2], present[1::2]
    train = EmbeddingDataset(store, selection=part, classes=seen)
    trainer, _ = _train("embedding-attention", train, out / "probe", steps_cap=cap, seed=seed,
                        progress=progress)
    y_part = sp.csr_array(store.targets()[part])[:, unseen]
    y_rest = sp.csr_array(store.targets()[rest])[:, unseen]
    learned = linear_anchor(_clip_embeddings(trainer, EmbeddingDataset(store, selection=part)),
                            y_part,
                            _clip_embeddings(trainer, EmbeddingDataset(store, selection=rest)),
                            epochs=20 if cap else 200)
    raw = linear_anchor(pooled(store, part), y_part, pooled(store, rest),
                        epochs=20 if cap else 200)
    return {"trained on classes": len(seen), "probed classes": len(unseen),
            "learned embedding": _metrics(y_rest, learned),
            "raw release embeddings (mean+max)": _metrics(y_rest, raw)}


def _probe_text(probe: dict[str, Any]) -> str:
    if not probe:
        return "not run\n"
    rows = [k for k in probe if isinstance(probe[k], dict)]
    return (f"Trained on {probe['trained on classes']} classes; a linear classifier probes the "
            f"other {probe['probed classes']}.\n\n| features | mAP | AUC |\n|---|---|---|\n"
            + "".join(f"| {k} | {probe[k]['mAP']:.3f} | {probe[k]['AUC']:.3f} |\n"
                      for k in rows))


def plot_sizes(path: PathLike, sizes: list[dict[str, Any]]) -> None:
    """The seed's figure 1 on real data: held-out mAP against the number of training clips."""
    import matplotlib  # optional plotting dependency, imported only to draw

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot([r["train clips"] for r in sizes], [r["mAP"] for r in sizes], "o-")
    ax.set_xscale("log")
    ax.set_xlabel("training clips (stratified subsets of the balanced part)")
    ax.set_ylabel("mAP on the held-out part")
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_dprime(path: PathLike, prior: np.ndarray, dprime: np.ndarray,
                defined: np.ndarray) -> None:
    """The seed's figure 2 on real data: each class's d′ against its prior in training."""
    import matplotlib  # optional plotting dependency, imported only to draw

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = defined & (prior > 0) & np.isfinite(dprime)
    if not ok.any():
        raise ConfigError("no class with a defined d′ and a positive prior to plot")
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.scatter(prior[ok], dprime[ok], s=6, alpha=0.6)
    ax.set_xscale("log")
    ax.set_xlabel("class prior in the training clips")
    ax.set_ylabel("d′ on the evaluation clips")
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
