"""``audioset refine``: frame-level targets from weak labels and a trained frame model.

It needs torch (``pip install audioset-data[torch]``); it is imported only when the command
runs. Prints the fraction of frames each label keeps and the path of the stored targets.
"""

from __future__ import annotations

import argparse
import sys

from audioset_data.errors import ConfigError

from .common import baselines_module


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``refine`` sub-command."""
    r = sub.add_parser(
        "refine", help="refine weak labels to frame targets with a trained frame model",
        description="Scores every 960 ms example of every clip of a cached split with a frame "
                    "model (fc, resnet50); for each label a clip carries, the frames whose "
                    "score divided by the clip's best score for that label falls below the "
                    "threshold lose the label. The targets are stored beside the cache.")
    r.add_argument("--checkpoint", required=True, metavar="PT",
                   help="training checkpoint of a frame-level model")
    r.add_argument("--split", required=True,
                   help="cached split name or cache folder whose labels to refine")
    r.add_argument("--threshold", type=float, default=0.66,
                   help="keep frames scoring at least this share of the clip's best, in (0, 1] "
                        "(default 0.66)")
    how = r.add_mutually_exclusive_group()
    how.add_argument("--drop", dest="mode", action="store_const", const="drop",
                     help="dropped frames are left out of the loss for the label (default)")
    how.add_argument("--zero", dest="mode", action="store_const", const="zero",
                     help="dropped frames get target 0 for the label")
    r.add_argument("--out", metavar="NPZ",
                   help="where to write (default: <cache>/refined/<checkpoint>-t<threshold>.npz)")
    r.add_argument("--root", metavar="ROOT", help="data root folder")
    r.add_argument("--batch-size", type=int, default=32)
    r.add_argument("--workers", type=int, default=0, help="data-loading worker processes")
    r.add_argument("--device", default="cpu")
    r.set_defaults(func=_refine, mode="drop")


def _refine(args: argparse.Namespace) -> int:
    refine = baselines_module("refine")
    format_kept = baselines_module("refine_report").format_kept
    check_threshold, refine_split = refine.check_threshold, refine.refine_split
    check_threshold(args.threshold)
    if args.batch_size < 1:
        raise ConfigError(f"--batch-size {args.batch_size}: must be at least 1")
    if args.workers < 0:
        raise ConfigError(f"--workers {args.workers}: must be 0 or more")
    refined = refine_split(args.checkpoint, args.split, root=args.root,
                           threshold=args.threshold, mode=args.mode, out=args.out,
                           batch_size=args.batch_size, num_workers=args.workers,
                           device=args.device,
                           progress=sys.stderr.isatty())
    sys.stdout.write(format_kept(refined.kept_fractions()))
    print(f"refined targets of {len(refined)} clips -> {refined.path}")
    return 0
