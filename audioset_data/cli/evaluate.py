"""``audioset evaluate``: score a model's clip scores against a cached split's labels."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from audioset_data.errors import EvaluationError
from audioset_data.evaluation.context import label_index_for, load_ontology
from audioset_data.evaluation.harness import evaluate_frames
from audioset_data.evaluation.quality import load_quality
from audioset_data.evaluation.scores_io import (
    cache_label_mids,
    evaluate_cached,
    read_frame_scores,
    read_scores,
)
from audioset_data.segments.labels import LabelIndex
from audioset_data.strong.events import load_framed

from .common import with_flags


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``evaluate`` sub-command."""
    e = sub.add_parser(
        "evaluate", help="evaluate clip scores against a cached split's labels",
        description="Scores are aligned with the cached split's clips by clip id "
                    "(ytid_startms); ids missing on either side are reported, never guessed.")
    e.add_argument("--scores", required=True, metavar="FILE",
                   help=".npz (arrays 'ids' and 'scores'), .npy (with --ids), .parquet or .csv "
                        "(a 'clip_id' column and one column per label)")
    e.add_argument("--ids", metavar="FILE",
                   help="text file of clip ids, one per line, for a .npy score file")
    e.add_argument("--split", default="eval", metavar="NAME",
                   help="cached split holding the labels (eval)")
    e.add_argument("--root", metavar="ROOT", help="data root folder")
    e.add_argument("--on", metavar="FILE",
                   help="evaluate only these clip ids (text file, one per line)")
    e.add_argument("--subset", action="append", metavar="NAME",
                   help="also evaluate on these clips, side by side (repeat or comma-separate): "
                        "official (the split's segment list), ast (the eval clips AST "
                        "evaluated, fetched and verified; mirrors via AUDIOSET_SUBSETS_BASE_URL), "
                        "available (the clips the split's cache or embeddings store holds), or "
                        "a FILE of YouTube ids or ytid_startms keys, one per line")
    e.add_argument("--quality", metavar="FILE",
                   help="Google's label quality file (qa_true_counts.csv: label_id,num_rated,"
                        "num_true) shown beside each class's AP (default: the file of that name "
                        "in the data root's remote/ folder, when there)")
    e.add_argument("--bootstrap", type=int, default=0, metavar="N",
                   help="resamples for a confidence interval of the mAP (e.g. 1000)")
    e.add_argument("--seed", type=int, default=0, metavar="N", help="seed of the bootstrap")
    e.add_argument("--strict", action="store_true",
                   help="fail when a scored clip is not in the cache (default: report it)")
    e.add_argument("--frames", action="store_true",
                   help="frame-level scores (ids, frames, scores) against the framed strong "
                        "labels (960 ms frames; unlisted pairs are unknown, not negative)")
    e.add_argument("--framed", metavar="FILE",
                   help="framed strong-label file (default: the official eval file, fetched "
                        "and verified)")
    e.add_argument("--json", dest="json_out", metavar="FILE", help="write the result as JSON here")
    e.add_argument("--markdown", metavar="FILE", help="write the markdown report here")
    e.add_argument("--plots", metavar="FOLDER",
                   help="write plots into this folder: AP against each label's prior (its share "
                        "of the evaluated clips) and mAP per top-level ontology branch (the "
                        "ontology as `audioset ontology` loads it; mirrors via "
                        "AUDIOSET_ONTOLOGY_BASE_URL)")
    e.set_defaults(func=with_flags(_evaluate, strict="--strict", split="--split"))


def _evaluate(args: argparse.Namespace) -> int:
    on = _read_ids(args.on) if args.on else None
    if args.frames and args.subset:
        raise EvaluationError("--subset names clips; with --frames evaluate the frame scores "
                              "without it")
    if args.frames:
        result = _evaluate_frames(args)
    else:
        # the cache's label count bounds what a score file may announce before it is read
        mids = cache_label_mids(args.split, args.root)
        ids, scores = read_scores(args.scores, ids_file=args.ids, label_mids=mids)
        result = evaluate_cached(ids, scores, split=args.split, root=args.root, on=on,
                                 bootstrap=args.bootstrap, seed=args.seed, strict=args.strict,
                                 subsets=args.subset or ())
        if result.names == result.mids:
            # a cache of a subset of the labels, or in another order, is evaluated without the
            # official index: name its labels (and give them their mids) from it by mid
            result = result.with_context(
                label_index=label_index_for(mids or result.mids, args.root))
    quality = load_quality(args.quality, args.root)
    if quality is not None:
        result = result.with_context(quality=quality)
        print(f"label quality from {quality.source}", file=sys.stderr)
    why = ""
    if args.plots:
        ontology, why = load_ontology(args.root)
        result = result.with_context(ontology=ontology, priors="evaluated")
    text = result.to_markdown()
    if args.markdown:
        Path(args.markdown).write_text(text)
    if args.json_out:
        result.to_json(args.json_out)
    if args.plots:
        for p in result.plot(args.plots):
            print(f"wrote {p}", file=sys.stderr)
        if why:
            print(f"no mAP-per-branch plot: {why}", file=sys.stderr)
    print(text)
    return 0


def _evaluate_frames(args: argparse.Namespace):  # noqa: ANN202 - EvaluationResult

    label_index = LabelIndex.load(root=args.root)
    ids, frames, scores = read_frame_scores(args.scores, label_mids=label_index.mids)
    framed = load_framed(args.framed or "eval", label_index=label_index, root=args.root)
    return evaluate_frames(scores, ids, frames, framed.to_arrays(label_index),
                           label_index=label_index, bootstrap=args.bootstrap, seed=args.seed)


def _read_ids(path: str) -> list[str]:
    p = Path(path)
    if not p.is_file():
        raise EvaluationError(f"clip id file {path!r} not found")
    return [line.strip() for line in p.read_text().splitlines() if line.strip()
            and not line.startswith("#")]
