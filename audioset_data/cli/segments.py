"""``audioset segments``: summary statistics and class-based subsets of the segment lists."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from audioset_data.errors import AudioSetError, SegmentsError
from audioset_data.ontology import Ontology
from audioset_data.segments.load import load_segments
from audioset_data.segments.splits import canonical_split

from .common import add_root_options, with_flags

if TYPE_CHECKING:
    from audioset_data.segments.table import Segments


#: The flag of ``audioset segments`` for each argument a library message may name.
FLAGS = {"on_bad_rows": "--skip-bad-rows", "accept_new_upstream": "--accept-new-upstream",
         "unknown_labels": "--unknown-labels", "split": "--split", "cache": "--no-cache"}


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``segments`` command and its sub-commands."""
    parser = subparsers.add_parser("segments", help="segment lists: statistics and subsets")
    sub = parser.add_subparsers(dest="segments_command", required=True)

    stats = sub.add_parser("stats", help="rows, labels, rejected rows and class priors")
    _source_options(stats)
    stats.add_argument("--plot", metavar="PNG", help="write ranked priors (log scale) here")
    stats.add_argument("--top", type=int, default=5, help="classes listed at each end")
    stats.add_argument("--propagate", action="store_true",
                       help="also show priors propagated to ontology ancestors")
    stats.set_defaults(func=with_flags(_stats, **FLAGS))

    select = sub.add_parser("select", help="write a subset in the official format")
    _source_options(select)
    select.add_argument("--class", dest="classes", action="append", metavar="CLASS",
                        help="mid or display name (repeatable)")
    select.add_argument("--all", dest="how", action="store_const", const="all", default="any",
                        help="keep rows carrying every --class (default: any of them)")
    select.add_argument("--subtree", action="store_true",
                        help="each class brings its labelled ontology descendants")
    select.add_argument("--exclude-blacklisted", action="store_true",
                        help="drop rows whose labels are all blacklisted in the ontology")
    select.add_argument("--per-class", type=int, metavar="N",
                        help="keep up to N random rows of each (selected) class")
    select.add_argument("--seed", type=int, default=0, help="seed of --per-class")
    select.add_argument("--output", "-o", required=True,
                        help="CSV to write ('-': standard output)")
    select.set_defaults(func=with_flags(_select, **FLAGS))


def _source_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--split", help="eval, balanced or unbalanced")
    group.add_argument("--file", help="a segment list CSV in the official format")
    add_root_options(parser)
    parser.add_argument("--csv-url", help="mirror address of the official CSV files")
    parser.add_argument("--ontology-url", help="mirror address of ontology.json")
    parser.add_argument("--skip-bad-rows", "--allow-truncated", dest="skip_bad_rows",
                        action="store_true",
                        help="leave malformed rows (e.g. a truncated last line) out and "
                             "report them instead of failing")
    parser.add_argument("--unknown-labels", choices=("error", "drop", "keep"), default="error",
                        help="what to do with mids outside the 527-label index")
    parser.add_argument("--no-cache", action="store_true", help="do not use the parsed cache")


def _load(args: argparse.Namespace) -> Segments:
    # --split is only ever a split name (typos get a suggestion), --file only ever a path
    return load_segments(
        canonical_split(args.split) if args.split else Path(args.file),
        root=args.root,
        base_url=args.csv_url,
        unknown_labels=args.unknown_labels,
        on_bad_rows="skip" if args.skip_bad_rows else "error",
        cache=not args.no_cache,
        accept_new_upstream=args.accept_new_upstream,
    )


def _ontology(args: argparse.Namespace):
    return Ontology.load(root=args.root, base_url=args.ontology_url)


def _optional_ontology(args: argparse.Namespace):
    """The ontology if it can be had (for hints only), else ``None``."""
    try:
        return _ontology(args)
    except (AudioSetError, OSError):
        return None


def _subtree_hints(seg: Segments, classes: list[str], onto) -> list[str]:
    """Classes selected without ``--subtree`` whose descendants carry at least as many rows
    again as the class itself."""
    hints = []
    for cls in classes:
        exact = seg.count_rows(cls, ontology=onto)
        sub = seg.count_rows(cls, ontology=onto, subtree=True)
        if sub >= 2 * exact and sub - exact >= 10:
            hints.append(f"hint: {cls!r} itself is on {exact:,} rows, its ontology subtree on "
                         f"{sub:,}: add --subtree to select the whole subtree")
    return hints


def _stats(args: argparse.Namespace) -> int:
    seg = _load(args)
    priors = seg.priors(_ontology(args) if args.propagate else None)
    s = priors.summary()
    print(f"source: {seg.source}")
    print(f"rows: {len(seg):,}")
    print(f"labels: {seg.n_labels:,} ({s['labels_per_clip']:.3f} per row)")
    print(f"rejected rows: {len(seg.rejected):,}")
    for row in seg.rejected.head(5).itertuples():
        print(f"  line {row.line}: {row.reason}")
    if len(seg.unknown):
        print(f"unknown mids ({args.unknown_labels}): {len(seg.unknown):,}")
    print(f"duplicate (ytid, start) rows: {len(seg.duplicates()):,}")
    short = int((np.rint((seg.end - seg.start) * 1000) < 10_000).sum())
    print(f"segments shorter than 10 s: {short:,}")
    print(f"classes present: {len(seg.label_index) - s['n_absent']} of {len(seg.label_index)}")
    print(f"prior: min {s['min_prior']:.3g}, max {s['max_prior']:.3g}, "
          f"mean {s['mean_prior']:.3g}, max/min {s['imbalance_ratio']:,.1f}")
    frame = priors.to_frame()
    for title, part in (("most frequent", frame.head(args.top)),
                        ("least frequent", frame.tail(args.top))):
        print(f"{title}:")
        for row in part.itertuples():
            extra = (f"  (propagated {row.propagated_prior:.4f})"
                     if "propagated_prior" in frame.columns else "")
            print(f"  {row.name:<40} {row.mid:<14} {row.count:>9,}  {row.prior:.4f}{extra}")
    if args.plot:
        print(f"plot: {priors.plot(args.plot)}")
    return 0


def _select(args: argparse.Namespace) -> int:
    seg = _load(args)
    if args.subtree or args.exclude_blacklisted:
        onto = _ontology(args)
    else:  # names are resolved with close-name suggestions, and --subtree may be hinted
        onto = _optional_ontology(args) if args.classes else None
    if not args.classes and args.per_class is None and not args.exclude_blacklisted:
        raise SegmentsError("nothing to select: give --class, --per-class or "
                            "--exclude-blacklisted")
    out = seg
    if args.exclude_blacklisted:
        out = out.exclude_blacklisted(onto)
    if args.classes:
        out = out.select(args.classes, how=args.how, ontology=onto, subtree=args.subtree)
    if args.per_class is not None:
        cols = (None if not args.classes else
                out.class_columns(args.classes, ontology=onto, subtree=args.subtree))
        out = out.sample_per_class(args.per_class, args.seed,
                                   classes=None if cols is None else cols.tolist())
    if args.output == "-":
        sys.stdout.buffer.write(out.to_csv_bytes())
        sys.stdout.flush()
        where, report = "standard output", sys.stderr
    else:
        where, report = out.to_csv(args.output), sys.stdout
    print(f"{len(out):,} of {len(seg):,} rows ({out.n_labels:,} labels) written to {where}",
          file=report)
    if args.classes and not args.subtree and onto is not None:
        for hint in _subtree_hints(seg, args.classes, onto):
            print(hint, file=sys.stderr)
    return 0
