"""The reference benchmark: train each baseline on a cached split, evaluate on another, one table.

The table has the shape of the seed paper's (feature, model, EER, mAP) plus AUC, d-prime and
how many clips were available against how many the split lists, with the hashes of the clip
lists so two runs can be compared. Every row names its recipe (``defaults``: the model's own
training defaults; ``seed`` and ``panns``: the published setups of
:data:`~audioset_data.baselines.config.RECIPES`), its sampler, beta and mixup, so no row
hides two imbalance corrections stacked. The ``anchor`` row is a logistic regression on pooled
log-mel statistics (:mod:`~audioset_data.baselines.anchor`): a learned model below it has not
learnt what a linear model on pooled features does. Each run also leaves the harness's report
(markdown, JSON, plots) in its own folder. ``smoke=True`` shrinks everything so the whole
pipeline runs on a small cache on a CPU in well under a minute.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from audioset_data.cache.manifest import MANIFEST_NAME, Manifest
from audioset_data.cache.reader import cache_dir
from audioset_data.config import PathLike
from audioset_data.downloader.demo import DEMO_CACHE, run_demo
from audioset_data.errors import ConfigError
from audioset_data.evaluation.harness import EvaluationResult, id_list_hash
from audioset_data.fileio import atomic_write

from .anchor import FEATURE as ANCHOR_FEATURE
from .anchor import run_anchor
from .config import RECIPES, TrainConfig
from .models import MODELS, model_defaults
from .training import train

logger = logging.getLogger(__name__)

__all__ = ["ANCHOR", "DEFAULT_MODELS", "BenchmarkReport", "demo_split", "run_benchmark",
           "SEED_BETAS"]

#: The loss-balancing exponents of the seed's sweep.
SEED_BETAS = RECIPES["seed"].betas
#: The name of the linear anchor's row in ``models``.
ANCHOR = "anchor"
DEFAULT_MODELS = (ANCHOR, "fc", "resnet50", "cnn14")
#: The recipe name of a row trained with the model's own defaults.
DEFAULTS = "defaults"

FEATURES = {"vggish": "log-mel 96×64 patches, 16 kHz", "panns": "log-mel 64 bands, 32 kHz",
            "embeddings": "release embeddings 128-d, 1 s"}

#: What ``smoke=True`` changes: one short epoch in small batches, a small fc, no workers.
SMOKE = {"epochs": 1.0, "steps": 0, "batch_size": 8, "num_workers": 0, "checkpoint_every": 0,
         "eval_every": 0, "log_every": 5, "hidden": (64, 64), "lr": 3e-3, "warmup": 0.1}


@dataclass
class BenchmarkReport:
    """One row per run (model, recipe, beta) and the anchor's, and where the table was
    written."""

    rows: list[dict[str, Any]]
    markdown: Path
    json: Path

    def to_markdown(self) -> str:
        """The table."""
        return self.markdown.read_text()


def _metrics(row: dict[str, Any], ev: EvaluationResult | None, n_listed: int) -> None:
    if ev is None:
        return
    m = ev.metrics
    row.update({"EER": float(m.mean_eer), "mAP": float(m.mean_ap),
                "AUC": float(m.mean_auc), "d-prime": float(m.dprime_of_mean_auc),
                "eval clips": ev.n_clips if ev.clip_ids is None else len(ev.clip_ids),
                "eval listed": n_listed,
                "eval clip list sha256": id_list_hash(ev.clip_ids or [])})


def _table(rows: list[dict[str, Any]], header: dict[str, Any]) -> str:
    lines = ["# Reference benchmark", ""]
    lines += [f"- {k}: {v}" for k, v in header.items()]
    lines += ["", "| feature | model | recipe | sampler | beta | mixup | EER | mAP | AUC | "
                  "d-prime | eval clips / listed |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        head = (f"| {r['feature']} | {r['model']} | {r['recipe']} | {r.get('sampler', '–')} | "
                f"{_num(r.get('beta'))} | {_num(r.get('mixup'))} |")
        if "mAP" in r:
            lines.append(f"{head} {r['EER']:.3f} | {r['mAP']:.3f} | {r['AUC']:.3f} | "
                         f"{r['d-prime']:.3f} | {r['eval clips']} / {r['eval listed']} |")
        else:
            lines.append(f"{head} – | – | – | – | not evaluated |")
    return "\n".join(lines) + "\n"


def _num(value: Any) -> str:
    return "–" if value is None else f"{value:g}"


def _runs(model: str, recipes: Sequence[str], betas: Sequence[float] | None,
          overrides: Mapping[str, Any], base: TrainConfig | None,
          smoke: bool) -> list[tuple[str, TrainConfig]]:
    """(recipe, configuration) of every run of ``model``: its defaults (or ``base``), the
    recipe's fields, the flags given, then the smoke settings."""
    start = base or TrainConfig(**model_defaults(model))
    start = start.replace(**overrides, model=model) if overrides else start.replace(model=model)
    if smoke:
        start = start.replace(**{k: v for k, v in SMOKE.items() if k not in overrides})
    runs = []
    for recipe in recipes:
        if recipe == DEFAULTS:
            for beta in betas if betas is not None else (start.beta,):
                if beta and start.sampler == "balanced":
                    logger.warning("benchmark: %s with the balanced sampler and beta %g "
                                   "stacks two imbalance corrections (the seed recipe "
                                   "samples uniformly: --recipes seed)", model, beta)
                runs.append((DEFAULTS, start.replace(beta=float(beta))))
            continue
        if recipe not in RECIPES:
            raise ConfigError(f"unknown recipe {recipe!r}; known: "
                              f"{', '.join([DEFAULTS, *sorted(RECIPES)])}")
        for beta in betas if betas is not None else RECIPES[recipe].betas:
            runs.append((recipe, TrainConfig.from_recipe(recipe, start, beta=float(beta))))
    return runs


def run_benchmark(
    train_split: str = "balanced",
    eval_split: str = "eval",
    models: Sequence[str] = DEFAULT_MODELS,
    betas: Sequence[float] | None = None,
    *,
    recipes: Sequence[str] = (DEFAULTS,),
    root: PathLike | None = None,
    out: PathLike = "runs/benchmark",
    smoke: bool = False,
    base: TrainConfig | None = None,
    overrides: Mapping[str, Any] | None = None,
    progress: bool = True,
) -> BenchmarkReport:
    """Train and evaluate every model under every recipe (and beta); write ``benchmark.md``
    and ``benchmark.json`` to ``out`` and each run's report under
    ``out/<model>-<recipe>-beta<b>/``.

    Parameters
    ----------
    models
        Model names, and ``"anchor"`` for the linear anchor's row.
    betas
        Loss-balancing exponents to run; ``None``: each recipe's own (the seed's sweep
        0 / 0.1 / 0.25 / 1 for ``seed``, 0 for ``panns``, the configuration's for
        ``defaults``).
    recipes
        ``"defaults"`` (each model's own training defaults), ``"seed"``, ``"panns"``.
    base
        The configuration every run starts from instead of each model's defaults.
    overrides
        Fields set for every run (the command line's flags), over the model's defaults and
        under the recipe's fixed fields (a conflict is refused).
    """
    unknown = [m for m in models if m not in MODELS and m != ANCHOR]
    if unknown:
        raise ConfigError(f"unknown models {unknown}; known: {[ANCHOR, *sorted(MODELS)]}")
    if not models:
        raise ConfigError("no models to benchmark")
    if not recipes:
        raise ConfigError("no recipes to benchmark")
    out = Path(out)
    overrides = {**(overrides or {}), "train": train_split, "eval": eval_split,
                 "root": None if root is None else str(root)}
    plans = {m: _runs(m, recipes, betas, overrides, base, smoke) for m in models if m != ANCHOR}
    n_listed = _listed(eval_split, root)
    rows: list[dict[str, Any]] = []
    for model in models:
        if model == ANCHOR:
            max_clips = int(overrides.get("max_clips") or (base.max_clips if base else 0))
            logger.info("benchmark: the linear anchor on %s", train_split)
            result = run_anchor(train_split, eval_split, root=root, max_clips=max_clips,
                                out=out / ANCHOR, progress=progress)
            (out / ANCHOR / "report.md").write_text(result.evaluation.to_markdown())
            row: dict[str, Any] = {"feature": ANCHOR_FEATURE, "model": ANCHOR,
                                   "recipe": f"logistic regression ({result.solver})",
                                   "train clips": result.n_train}
            _metrics(row, result.evaluation, n_listed)
            row["run"] = str(out / ANCHOR)
            rows.append(row)
            continue
        for recipe, config in plans[model]:
            name = model if recipe == DEFAULTS else f"{model}-{recipe}"
            run_dir = out / f"{name}-beta{config.beta:g}"
            config = config.replace(out=str(run_dir))
            logger.info("benchmark: training %s (%s, beta %g) into %s", model, recipe,
                        config.beta, run_dir)
            result = train(config, progress=progress)
            if result.evaluation is not None:
                (run_dir / "report.md").write_text(result.evaluation.to_markdown())
                result.evaluation.plot(run_dir / "plots")
            frontend = getattr(MODELS[model], "frontend", "panns")
            row = {"feature": FEATURES.get(frontend, frontend), "model": model,
                   "recipe": recipe, "sampler": config.sampler, "beta": config.beta,
                   "mixup": config.mixup, "steps": result.step, "final loss": result.loss,
                   "config": config.to_dict()}
            _metrics(row, result.evaluation, n_listed)
            row["run"] = str(run_dir)
            rows.append(row)
    header = {"train": train_split, "eval": eval_split, "smoke": smoke,
              "recipes": ", ".join(recipes),
              "flags": json.dumps({k: v for k, v in overrides.items()
                                   if k not in ("train", "eval", "root")})}
    out.mkdir(parents=True, exist_ok=True)
    md, js = out / "benchmark.md", out / "benchmark.json"
    with atomic_write(md, "w", encoding="utf-8") as fh:
        fh.write(_table(rows, header))
    with atomic_write(js, "w", encoding="utf-8") as fh:
        fh.write(json.dumps({"header": header, "rows": rows}, indent=1))
    return BenchmarkReport(rows, md, js)


def demo_split(root: PathLike | None = None, *, progress: bool = False) -> str:
    """The name of the demo cache (``audioset demo``), built first when it holds no clip: the
    bare ``audioset benchmark --smoke`` runs on it. Building it reads the ``eval`` segment
    list (``AUDIOSET_CSV_BASE_URL`` points at a mirror) and generates the audio offline."""
    if _cached_clips(DEMO_CACHE, root) <= 0:
        logger.info("benchmark: no demo cache yet; building it (audioset demo)")
        report = run_demo(root=root, progress=progress)
        logger.info("benchmark: demo cache built: %s", report)
    if _cached_clips(DEMO_CACHE, root) <= 0:
        raise ConfigError(f"the demo cache {cache_dir(DEMO_CACHE, root)} holds no clip after "
                          f"`audioset demo`; run it and read its report")
    return DEMO_CACHE


def _cached_clips(split: str, root: PathLike | None) -> int:
    """Clips stored in a cache (0 when there is none)."""
    path = cache_dir(split, root) / MANIFEST_NAME
    if not path.is_file():
        return 0
    try:
        with Manifest.open(path, readonly=True) as manifest:
            return int(manifest.counts().get("ok", 0))
    except Exception:  # noqa: BLE001 - an unreadable cache is rebuilt by the demo
        logger.debug("cannot read %s", path, exc_info=True)
        return 0


def _listed(split: str, root: PathLike | None) -> int:
    """Clips the evaluation split lists (its manifest's segment count)."""
    folder = Path(split) if Path(split).is_dir() else cache_dir(split, root)
    try:
        with Manifest.open(folder / MANIFEST_NAME, readonly=True) as manifest:
            return int(sum(manifest.counts().values()))
    except Exception:  # noqa: BLE001 - a count for the table, never worth failing the run
        logger.debug("cannot count the segments listed for %s", split, exc_info=True)
        return -1
