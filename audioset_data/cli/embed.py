"""``audioset embed train`` and ``audioset embed export``: unsupervised triplet embeddings.

They need torch (``pip install audioset-data[torch]``); it is imported only when one runs.
"""

from __future__ import annotations

import argparse
import sys

from audioset_data.errors import ConfigError

from .common import baselines_module


def _pairs(text: str) -> tuple[float, float]:
    try:
        lo, hi = (float(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a LOW,HIGH pair of numbers") \
            from None
    return lo, hi


def _weights(text: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = part.partition("=")
        try:
            out[name.strip()] = float(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{part!r}: write RULE=WEIGHT, e.g. noise=1") \
                from None
        if not sep:
            raise argparse.ArgumentTypeError(f"{part!r}: write RULE=WEIGHT, e.g. noise=1")
    return out


def _ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a list of integers") from None


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``embed`` sub-command with its ``train`` and ``export`` actions."""
    e = sub.add_parser("embed", help="unsupervised triplet-loss embeddings: train, export",
                       description="Learn an embedding without labels from the seed's four "
                                   "triplet rules (noise, mix, shift, near), then export it.")
    actions = e.add_subparsers(dest="action", required=True)

    t = actions.add_parser("train", help="train a baseline trunk on triplets from a cache",
                           description="A stopped run resumes from OUT/last.pt.")
    t.add_argument("--train", required=True, help="cached split name or cache folder")
    t.add_argument("--root", metavar="ROOT", help="data root folder")
    t.add_argument("--out", required=True, help="folder for checkpoints and metrics.jsonl")
    t.add_argument("--model", default="fc", help="fc, resnet50 or cnn14 (default fc)")
    t.add_argument("--hidden", type=_ints, default=None, metavar="N,N",
                   help="fc hidden layers (default 1000,1000,1000)")
    t.add_argument("--steps", type=int, default=10000)
    t.add_argument("--batch-size", type=int, default=64, help="triplets per step")
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--margin", type=float, default=0.1)
    t.add_argument("--rules", type=_weights, default={},
                   help="rule weights, e.g. noise=1,mix=0,near=2 (a rule not named keeps weight 1)")
    t.add_argument("--snr-db", type=_pairs, help="noise rule SNR range LOW,HIGH (default 0,20)")
    t.add_argument("--mix-db", type=_pairs,
                   help="mix partner level range LOW,HIGH in dB (default -10,0)")
    t.add_argument("--shift-frames", type=int, help="largest time shift (default 10)")
    t.add_argument("--shift-bins", type=int, help="largest mel-bin shift (default 2)")
    t.add_argument("--near-frames", type=int, help="largest near-rule distance (default 300)")
    t.add_argument("--max-clips", type=int, default=0)
    t.add_argument("--checkpoint-every", type=int, default=500)
    t.add_argument("--device", default="auto")
    t.add_argument("--seed", type=int, default=0)
    t.set_defaults(func=_train)

    x = actions.add_parser("export", help="write a cache's embeddings as .npz",
                           description="Keys, unit-norm embeddings (per frame or per clip), "
                                       "row-to-clip and frame numbers, and the model's digest.")
    x.add_argument("--checkpoint", required=True, help="a checkpoint from `embed train`")
    x.add_argument("--source", required=True, help="cached split name or cache folder")
    x.add_argument("--out", required=True, help="output .npz")
    x.add_argument("--root", metavar="ROOT", help="data root folder")
    x.add_argument("--per", choices=("frame", "clip"), default="frame")
    x.add_argument("--batch-size", type=int, default=32)
    x.add_argument("--max-clips", type=int, default=0)
    x.add_argument("--device", default="cpu")
    x.set_defaults(func=_export)


def _module():  # noqa: ANN202 - imported late so the CLI runs without torch
    return baselines_module("triplet_training")


def _train(args: argparse.Namespace) -> int:
    tt = _module()
    from audioset_data.baselines.triplets import RULES, TripletRules

    unknown = sorted(set(args.rules) - set(RULES))
    if unknown:
        raise ConfigError(f"--rules: unknown rule(s) {unknown}; known: {', '.join(RULES)}")
    limits = {k: getattr(args, k) for k in ("snr_db", "mix_db", "shift_frames", "shift_bins",
                                            "near_frames") if getattr(args, k) is not None}
    options = {"hidden": args.hidden} if args.hidden else {}
    config = tt.TripletConfig(model=args.model, train=args.train, root=args.root, out=args.out,
                              steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                              margin=args.margin, max_clips=args.max_clips,
                              checkpoint_every=args.checkpoint_every, device=args.device,
                              seed=args.seed, rules=TripletRules(**args.rules, **limits),
                              **options)
    result = tt.train_triplets(config, progress=sys.stderr.isatty())
    print(f"step {result.step}: triplet loss {result.loss:.4f}; checkpoint {result.checkpoint}")
    return 0


def _export(args: argparse.Namespace) -> int:
    tt = _module()
    path = tt.export_embeddings(args.checkpoint, args.source, args.out, root=args.root,
                                per=args.per, batch_size=args.batch_size, device=args.device,
                                max_clips=args.max_clips)
    emb = tt.load_embeddings(path)
    print(f"{len(emb.vectors)} embeddings ({emb.vectors.shape[1]}-d, per {args.per}) of "
          f"{len(set(emb.clip.tolist()))} clips -> {path}")
    return 0
