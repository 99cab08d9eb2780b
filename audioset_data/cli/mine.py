"""``audioset mine``: candidate clips of a rare class from a few example segments.

It needs torch (``pip install audioset-data[torch]``); it is imported only when the command
runs. The candidates are printed (key, distance, best second) and, with ``--out``, written as a
segment list in the official format for a person to verify.
"""

from __future__ import annotations

import argparse
import sys

from audioset_data.errors import ConfigError

from .common import baselines_module


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``mine`` sub-command."""
    m = sub.add_parser(
        "mine", help="query by example: clips most like a few example segments",
        description="Embeds every clip of the cache (once; later runs embed only new clips), "
                    "keeps the frames the examples share and ranks the other clips by their "
                    "mean distance to those frames.")
    m.add_argument("--examples", required=True, metavar="FILE",
                   help="example segments: one ytid_startms key per line, or a segment CSV "
                        "in the official format")
    m.add_argument("--k", type=int, required=True, help="how many candidates to return")
    m.add_argument("--split", default="balanced_train",
                   help="cached split name or cache folder to search (default balanced_train)")
    m.add_argument("--root", metavar="ROOT", help="data root folder")
    m.add_argument("--checkpoint", metavar="PT",
                   help="a trained model's checkpoint to embed frames with (default: the "
                        "untrained log-mel statistics)")
    m.add_argument("--label", action="append", metavar="MID",
                   help="label of the candidates in the CSV (repeatable; default: the labels "
                        "every example carries)")
    m.add_argument("--out", metavar="CSV", help="write the candidates here")
    m.add_argument("--all-frames", action="store_true",
                   help="search with every example frame, not only the shared ones")
    m.add_argument("--batch-size", type=int, default=32)
    m.add_argument("--device", default="cpu")
    m.set_defaults(func=_mine)


def _mine(args: argparse.Namespace) -> int:
    if args.k < 1:
        raise ConfigError(f"--k {args.k}: the number of candidates must be at least 1")
    mine = baselines_module("mining").mine
    result = mine(args.split, args.examples, args.k, root=args.root,
                  checkpoint=args.checkpoint, labels=args.label, out=args.out,
                  cluster=not args.all_frames, batch_size=args.batch_size, device=args.device,
                  progress=sys.stderr.isatty())
    print(result.candidates.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    if args.out:
        print(f"{len(result.segments)} candidates -> {args.out}", file=sys.stderr)
    return 0
