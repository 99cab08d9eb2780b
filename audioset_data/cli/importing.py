"""``audioset import``: a copy another tool made, into the cache, checked against the list.

``audioset import panns eval.h5 --split eval --segments eval``;
``audioset import passt eval_segments_mp3.hdf --split eval --segments eval``;
``audioset import hf 'data/eval/*.parquet' --split eval --segments eval``;
``audioset import wds 20k/test/ --split eval --segments eval``. The counts (imported, stored
as they were, unlisted, label mismatches, placeholders, damaged rows by name) print as JSON.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from audioset_data.errors import ConfigError
from audioset_data.interop.copies.names import expand_paths
from audioset_data.interop.hf_parquet import import_hf_parquet
from audioset_data.interop.panns import import_panns
from audioset_data.interop.passt_h5 import import_passt
from audioset_data.interop.wds_import import import_webdataset
from audioset_data.segments.labels import LabelIndex
from audioset_data.segments.load import load_segments

from .common import add_root_options, command_line_flags

#: Kind of copy -> (importer, file endings of its files, whether it takes one file at a time).
KINDS: dict[str, tuple[Any, tuple[str, ...], bool]] = {
    "panns": (import_panns, (".h5", ".hdf5", ".hdf"), True),
    "passt": (import_passt, (".hdf", ".h5", ".hdf5"), True),
    "hf": (import_hf_parquet, (".parquet",), False),
    "wds": (import_webdataset, (".tar",), False),
}


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``import`` sub-command."""
    p = sub.add_parser(
        "import", help="a copy made by PANNs, PaSST, Hugging Face or webdataset into the cache",
        description="Import the clips of a copy another tool made into the cache of --split: "
                    "PANNs' HDF5 (waveforms), PaSST's / EfficientAT's HDF5 (MP3 bytes), the "
                    "Hugging Face agkphysics/AudioSet parquet shards, or webdataset tar "
                    "shards (e.g. confit/audioset-16khz-wds). Each clip is matched to the "
                    "segment list by video id and start; unlisted clips, label mismatches, "
                    "placeholders and damaged rows are counted; clips already cached are "
                    "skipped, so a second run resumes.")
    p.add_argument("kind", choices=tuple(KINDS), help="the layout of the copy")
    p.add_argument("path", metavar="PATH",
                   help="a file, a folder of files, or a glob pattern (quote it)")
    p.add_argument("--split", required=True, metavar="NAME", help="cache name")
    p.add_argument("--segments", metavar="SPLIT_OR_CSV",
                   help="the segment list the copy was made from (a split name or a CSV); "
                        "needed when the clips carry no start time (PaSST, Hugging Face)")
    p.add_argument("--labels", metavar="CSV",
                   help="label index CSV (default: the official class_labels_indices.csv)")
    p.add_argument("--format", choices=("pcm16", "flac", "opus"),
                   help="cache format (default: the existing cache's, else pcm16 for PANNs "
                        "and flac for the others)")
    p.add_argument("--sample-rate", type=int, metavar="HZ",
                   help="cache sample rate (default: the existing cache's, else the copy's "
                        "own); clips at another rate are resampled once")
    p.add_argument("--take-labels", choices=("copy", "list"), default="copy",
                   help="keep each clip's own labels (copy, the default) or take the segment "
                        "list's (list)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_root_options(p)
    p.set_defaults(func=_import)


def _import(args: argparse.Namespace) -> int:
    with command_line_flags(segments="--segments", fmt="--format",
                            sample_rate="--sample-rate", take_labels="--take-labels",
                            accept_new_upstream="--accept-new-upstream"):
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    importer, endings, per_file = KINDS[args.kind]
    index = (LabelIndex.from_file(args.labels) if args.labels
             else LabelIndex.load(root=args.root))
    segments = (load_segments(args.segments, root=args.root, label_index=index,
                              accept_new_upstream=args.accept_new_upstream)
                if args.segments else None)
    options: dict[str, Any] = {"segments": segments, "label_index": index, "fmt": args.format,
                               "take_labels": args.take_labels,
                               "progress": False if args.no_progress else None}
    if args.kind != "panns":
        options["sample_rate"] = args.sample_rate
    elif args.sample_rate is not None:
        raise ConfigError("--sample-rate does not apply to PANNs files: their waveforms go "
                          "into the cache at the file's own rate; leave it out")
    paths = expand_paths(args.path, endings, f"{args.kind} copy") if per_file else [args.path]
    summaries = [importer(path, args.split, args.root, **options).summary() for path in paths]
    print(json.dumps(summaries[0] if len(summaries) == 1 else summaries, indent=2))
    return 0
