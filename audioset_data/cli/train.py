"""``audioset train``, ``audioset benchmark`` and ``audioset predict``: the baselines' commands.

They need torch (``pip install audioset-data[torch]``); it is imported only when one runs.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from audioset_data.errors import ConfigError

from .common import baselines_module

logger = logging.getLogger(__name__)


def _baselines():  # noqa: ANN202 - the package, imported late so the CLI runs without torch
    for name in ("training", "benchmark", "prediction"):
        baselines_module(name)
    from audioset_data import baselines

    return baselines


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``train``, ``benchmark`` and ``predict`` sub-commands."""
    from audioset_data.baselines.config import add_config_arguments

    t = sub.add_parser("train", help="train one baseline on a cached split",
                       description="Every training option is a flag; a stopped run resumes "
                                   "from OUT/last.pt. Under torchrun each process trains "
                                   "its share (DDP).")
    add_config_arguments(t)
    t.add_argument("--train-shards", metavar="INDEX",
                   help="train from the tar shards of `audioset export --to webdataset` instead "
                        "of a cache: their index (OUT/NAME-shards.json, a folder holding it, or "
                        "its address, e.g. 'pipe:aws s3 cp s3://bucket/as/NAME-shards.json -'); "
                        "the shards are read from where the index is, each rank its own")
    t.set_defaults(func=_train)

    b = sub.add_parser("benchmark", help="the reference benchmark: train, evaluate, one table",
                       description="Trains each model on --train, evaluates on --eval and "
                                   "writes benchmark.md / benchmark.json (and each run's "
                                   "report and plots) to --out.")
    b.add_argument("--models", default="anchor,fc,resnet50,cnn14",
                   help="comma-separated models; 'anchor' is the logistic regression on "
                        "pooled log-mel statistics (default anchor,fc,resnet50,cnn14)")
    b.add_argument("--recipes", default="defaults",
                   help="comma-separated recipes: 'defaults' (each model's own), 'seed' "
                        "(uniform sampling, prior-balanced loss, beta 0/0.1/0.25/1), 'panns' "
                        "(balanced sampler, beta 0, mixup, SpecAugment); default defaults")
    b.add_argument("--betas", default=None,
                   help="loss-balancing exponents instead of each recipe's own; 'seed' runs "
                        "the seed recipe's sweep 0,0.1,0.25,1")
    b.add_argument("--smoke", action="store_true",
                   help="a tiny run of the whole pipeline; without --train and --eval on the "
                        "demo cache (built by `audioset demo` when absent), 4 clips")
    b.add_argument("--features", action="store_true",
                   help="the seed-style table on the official embeddings release instead "
                        "(stores from `audioset features import`; --train, default balanced, "
                        "and --eval, default eval, name them): models embedding-fc, "
                        "embedding-attention and a linear anchor, the mAP-vs-training-clips "
                        "and d′-vs-prior figures and the held-out-classes probe")
    add_config_arguments(b, skip=("model", "beta", "recipe"))
    b.set_defaults(func=_benchmark)

    p = sub.add_parser("predict", help="scores of a trained model, in the format `audioset "
                                       "evaluate` reads")
    p.add_argument("--checkpoint", required=True, help="a checkpoint written by training")
    p.add_argument("--source", required=True,
                   help="cached split name, cache folder, or a folder of audio files")
    p.add_argument("--scores", required=True, help="output .npz (frame scores beside it)")
    p.add_argument("--root", help="data root")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--device", default="auto")
    p.add_argument("--pool", default="max", choices=("max", "mean", "linear_softmax"),
                   help="how a file's 10-s windows make its score, for a folder of audio files "
                        "(default max); every window's scores go to SCORES.windows.npz")
    p.set_defaults(func=_predict)


def _train(args: argparse.Namespace) -> int:
    baselines = _baselines()
    from audioset_data.baselines.config import TrainConfig, config_from_args
    from audioset_data.baselines.models import model_defaults

    # the model's own recipe where it has one (the embedding models), then the flags given
    base = TrainConfig(**model_defaults(args.cfg_model or TrainConfig.model))
    if args.train_shards:
        from audioset_data.loaders.shards import is_shard_source

        if args.cfg_train:
            raise ConfigError("give --train (a cache) or --train-shards (a shard index), not both")
        if not is_shard_source(args.train_shards):
            raise ConfigError(f"--train-shards {args.train_shards!r} names no shard index: give "
                              "NAME-shards.json, a folder holding it, or a pipe:/http(s):// "
                              "address of it")
        args.cfg_train = args.train_shards
    config = config_from_args(args, base)
    _note_cpu(config.model, config.device)
    result = baselines.train(config)
    if result.evaluation is not None:
        print(result.evaluation.to_markdown())
    print(f"checkpoint: {result.checkpoint}", file=sys.stderr)
    return 0


def _note_cpu(model: str, device: str) -> None:
    """Say so when a model this slow on a CPU is about to train without a GPU."""
    message = baselines_module("models").cpu_note(model, device)
    if message:
        logger.warning(message)
        print(f"note: {message}", file=sys.stderr)


def _benchmark(args: argparse.Namespace) -> int:
    baselines = _baselines()

    if args.features:
        return _features_benchmark(args)
    # the flags given, over each model's own defaults (the benchmark applies them per model)
    given = {k[4:]: v for k, v in vars(args).items() if k.startswith("cfg_") and v is not None}
    if str(given.get("eval", "")).lower() == "none":
        raise ConfigError("--eval none: the benchmark evaluates every model; name a split")
    if args.smoke and "train" not in given and "eval" not in given:
        # bare smoke: the demo cache, built offline when absent (README: runs on the demo)
        given["train"] = given["eval"] = baselines.demo_split(given.get("root"))
        given.setdefault("max_clips", 4)
    recipes = tuple(r.strip() for r in args.recipes.split(",") if r.strip())
    betas = None
    if args.betas is not None and args.betas.strip().lower() == "seed":
        recipes = ("seed",)
    elif args.betas is not None:
        try:
            betas = tuple(float(x) for x in args.betas.split(",") if x.strip())
        except ValueError:
            raise ConfigError(f"--betas {args.betas!r}: comma-separated numbers or 'seed'") \
                from None
    models = tuple(m.strip() for m in args.models.split(",") if m.strip())
    train_split = given.pop("train", "balanced")
    eval_split = given.pop("eval", "eval")
    root = given.pop("root", None)
    out = given.pop("out", "runs/benchmark")
    report = baselines.run_benchmark(train_split, eval_split, models, betas, recipes=recipes,
                                     root=root, out=out, smoke=args.smoke, overrides=given,
                                     progress=sys.stderr.isatty())
    print(report.to_markdown())
    return 0


def _features_benchmark(args: argparse.Namespace) -> int:
    """``audioset benchmark --features``: the embeddings release's table and figures."""
    bench = baselines_module("features_benchmark")
    given = {k[4:]: v for k, v in vars(args).items() if k.startswith("cfg_") and v is not None}
    evaluation = given.get("eval", "eval")
    out = given.get("out", "runs/features-benchmark")
    result = bench.run_features_benchmark(
        root=given.get("root"), train=given.get("train", "balanced"),
        eval_split=None if str(evaluation).lower() in ("none", "") else evaluation,
        out=out, quick=args.smoke, progress=sys.stderr.isatty())
    print(result.table())
    print(f"table, figures and probe: {Path(out) / 'features.md'}", file=sys.stderr)
    return 0


def _predict(args: argparse.Namespace) -> int:
    baselines = _baselines()
    scores = baselines.predict(args.checkpoint, args.source, args.scores, root=args.root,
                               batch_size=args.batch_size, device=args.device, pool=args.pool)
    failures = getattr(scores, "failures", None)
    if failures is None:
        print(f"scored {len(scores.ids)} clips -> {args.scores}", file=sys.stderr)
        return 0
    base = str(args.scores)[:-4] if str(args.scores).endswith(".npz") else str(args.scores)
    print(f"scored {len(scores.ids)} files ({len(scores.window_ids)} windows of 10 s, "
          f"pooled by {scores.pool}) -> {base}.npz, windows: {base}.windows.npz",
          file=sys.stderr)
    if failures:
        shown = "; ".join(f"{f} ({r})" for f, r in failures[:5])
        more = f"; and {len(failures) - 5} more" if len(failures) > 5 else ""
        print(f"skipped {len(failures)} files that could not be decoded, listed in "
              f"{base}.failures.csv: {shown}{more}", file=sys.stderr)
    return 0
