"""The reference benchmark: train each baseline on a cached split, evaluate on another, one table.

The table has the shape of the seed paper's (feature, model, EER, mAP) plus AUC, d-prime and
how many clips were available against how many the split lists, with the hashes of the clip
lists so two runs can be compared. Each run also leaves the harness's report (markdown, JSON,
plots) in its own folder. ``smoke=True`` shrinks everything so the whole pipeline runs on a
small cache on a CPU in a few minutes.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from audioset_data.cache.manifest import MANIFEST_NAME, Manifest
from audioset_data.cache.reader import cache_dir
from audioset_data.config import PathLike
from audioset_data.errors import ConfigError
from audioset_data.evaluation.harness import id_list_hash
from audioset_data.fileio import atomic_write

from .config import TrainConfig
from .models import MODELS
from .training import TrainResult, train

logger = logging.getLogger(__name__)

__all__ = ["BenchmarkReport", "run_benchmark", "SEED_BETAS"]

#: The loss-balancing exponents of the seed's sweep.
SEED_BETAS = (0.0, 0.1, 0.25, 1.0)

FEATURES = {"vggish": "log-mel 96×64 patches, 16 kHz", "panns": "log-mel 64 bands, 32 kHz"}

SMOKE = {"epochs": 2.0, "batch_size": 8, "num_workers": 0, "checkpoint_every": 0,
         "eval_every": 0, "log_every": 5, "hidden": (64, 64), "lr": 3e-3, "warmup": 0.1}


@dataclass
class BenchmarkReport:
    """One row per (model, beta) run, and where the table was written."""

    rows: list[dict[str, Any]]
    markdown: Path
    json: Path

    def to_markdown(self) -> str:
        """The table."""
        return self.markdown.read_text()


def _row(model: str, beta: float, result: TrainResult, n_listed: int) -> dict[str, Any]:
    ev = result.evaluation
    frontend = getattr(MODELS[model], "frontend", "panns")
    row: dict[str, Any] = {"feature": FEATURES.get(frontend, frontend), "model": model,
                           "beta": beta, "steps": result.step, "final loss": result.loss}
    if ev is not None:
        m = ev.metrics
        row.update({"EER": float(m.mean_eer), "mAP": float(m.mean_ap),
                    "AUC": float(m.mean_auc), "d-prime": float(m.dprime_of_mean_auc),
                    "eval clips": ev.n_clips if ev.clip_ids is None else len(ev.clip_ids),
                    "eval listed": n_listed,
                    "eval clip list sha256": id_list_hash(ev.clip_ids or [])})
    row["run"] = str(result.out)
    return row


def _table(rows: list[dict[str, Any]], header: dict[str, Any]) -> str:
    lines = ["# Reference benchmark", ""]
    lines += [f"- {k}: {v}" for k, v in header.items()]
    lines += ["", "| feature | model | beta | EER | mAP | AUC | d-prime | eval clips / listed |",
              "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "mAP" in r:
            lines.append(f"| {r['feature']} | {r['model']} | {r['beta']:g} | {r['EER']:.3f} | "
                         f"{r['mAP']:.3f} | {r['AUC']:.3f} | {r['d-prime']:.3f} | "
                         f"{r['eval clips']} / {r['eval listed']} |")
        else:
            lines.append(f"| {r['feature']} | {r['model']} | {r['beta']:g} | – | – | – | – | "
                         f"not evaluated |")
    return "\n".join(lines) + "\n"


def run_benchmark(
    train_split: str = "balanced",
    eval_split: str = "eval",
    models: Sequence[str] = ("fc", "resnet50", "cnn14"),
    betas: Sequence[float] = (0.0,),
    *,
    root: PathLike | None = None,
    out: PathLike = "runs/benchmark",
    smoke: bool = False,
    base: TrainConfig | None = None,
    progress: bool = True,
) -> BenchmarkReport:
    """Train and evaluate every model for every beta; write ``benchmark.md`` and
    ``benchmark.json`` to ``out`` and each run's report under ``out/<model>-beta<b>/``."""
    unknown = [m for m in models if m not in MODELS]
    if unknown:
        raise ConfigError(f"unknown models {unknown}; known: {sorted(MODELS)}")
    if not models:
        raise ConfigError("no models to benchmark")
    out = Path(out)
    base = base or TrainConfig()
    base = base.replace(train=train_split, eval=eval_split,
                        root=None if root is None else str(root))
    if smoke:
        base = base.replace(**SMOKE)
    rows: list[dict[str, Any]] = []
    for model in models:
        for beta in betas:
            run_dir = out / f"{model}-beta{beta:g}"
            config = base.replace(model=model, beta=float(beta), out=str(run_dir))
            logger.info("benchmark: training %s with beta %g into %s", model, beta, run_dir)
            result = train(config, progress=progress)
            n_listed = _listed(eval_split, root)
            if result.evaluation is not None:
                (run_dir / "report.md").write_text(result.evaluation.to_markdown())
                result.evaluation.plot(run_dir / "plots")
            rows.append(_row(model, float(beta), result, n_listed))
    header = {"train": train_split, "eval": eval_split, "smoke": smoke,
              "config": json.dumps({k: v for k, v in base.to_dict().items()
                                    if k not in ("model", "beta", "out")})}
    out.mkdir(parents=True, exist_ok=True)
    md, js = out / "benchmark.md", out / "benchmark.json"
    with atomic_write(md, "w", encoding="utf-8") as fh:
        fh.write(_table(rows, header))
    with atomic_write(js, "w", encoding="utf-8") as fh:
        fh.write(json.dumps({"header": header, "rows": rows}, indent=1))
    return BenchmarkReport(rows, md, js)


def _listed(split: str, root: PathLike | None) -> int:
    """Clips the evaluation split lists (its manifest's segment count)."""
    folder = Path(split) if Path(split).is_dir() else cache_dir(split, root)
    try:
        with Manifest.open(folder / MANIFEST_NAME, readonly=True) as manifest:
            return int(sum(manifest.counts().values()))
    except Exception:  # noqa: BLE001 - a count for the table, never worth failing the run
        logger.debug("cannot count the segments listed for %s", split, exc_info=True)
        return -1
