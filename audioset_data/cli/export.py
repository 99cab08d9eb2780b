"""``audioset export``: a cached split to Hugging Face ``datasets``, lhotse or webdataset tar
shards, or a PANNs HDF5 copy into the cache.

``audioset export --split eval --to hf OUT`` writes ``OUT/data.arrow``;
``--to lhotse OUT`` writes audio files and ``recordings.jsonl.gz`` / ``supervisions.jsonl.gz``;
``--to webdataset OUT [--shard-size 256MB]`` writes ``OUT/eval-000000.tar ...`` and
``OUT/eval-shards.json``;
``audioset export --from-panns eval.h5 --split eval --segments eval`` imports a PANNs file.
"""

from __future__ import annotations

import argparse
import json
import sys

from audioset_data.cache.reader import open_cache
from audioset_data.errors import ConfigError
from audioset_data.interop.huggingface import ARROW_NAME, to_hf_dataset
from audioset_data.interop.lhotse_export import to_lhotse
from audioset_data.interop.panns import import_panns
from audioset_data.interop.webdataset_export import DEFAULT_SHARD_SIZE, to_webdataset
from audioset_data.segments.labels import LabelIndex
from audioset_data.segments.load import load_segments

from .common import command_line_flags


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``export`` sub-command."""
    e = sub.add_parser(
        "export", help="a cached split to datasets / lhotse, or a PANNs HDF5 file into the cache",
        description="With --to, write the cache of --split in another tool's format into OUT. "
                    "With --from-panns, import a split packed by PANNs (audio_name, waveform, "
                    "target) into the cache of --split; all-zero placeholder rows are skipped.")
    e.add_argument("out", nargs="?", metavar="OUT", help="output folder (with --to)")
    e.add_argument("--split", required=True, metavar="NAME", help="cache name")
    e.add_argument("--root", metavar="ROOT", help="data root folder")
    e.add_argument("--to", choices=("hf", "lhotse", "webdataset"), help="export format")
    e.add_argument("--shard-size", default=f"{DEFAULT_SHARD_SIZE // 10**6}MB", metavar="SIZE",
                   help="with --to webdataset: bytes at which a tar shard closes, e.g. 64MB, "
                        "1GB (default %(default)s: large enough that a request to object "
                        "storage costs little beside streaming the shard; smaller for a small "
                        "split read by many ranks and workers)")
    e.add_argument("--from-panns", metavar="FILE.h5", help="import this PANNs HDF5 file")
    e.add_argument("--segments", metavar="SPLIT_OR_CSV",
                   help="with --from-panns: the segment list the file was packed from (needed "
                        "when its names carry no start time; also checks its labels)")
    e.add_argument("--labels", metavar="CSV",
                   help="label index CSV (default: the official class_labels_indices.csv)")
    e.add_argument("--audio-format", choices=("flac", "wav"), default="flac",
                   help="audio files of the export (default flac)")
    e.add_argument("--format", default="pcm16", choices=("pcm16", "flac", "opus"),
                   help="with --from-panns: cache format (default pcm16)")
    e.add_argument("--overwrite", action="store_true", help="replace an earlier export")
    e.set_defaults(func=_export)


def _export(args: argparse.Namespace) -> int:
    with command_line_flags(overwrite="--overwrite", fmt="--format",
                            audio_format="--audio-format", shard_size="--shard-size"):
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    if bool(args.to) == bool(args.from_panns):
        raise ConfigError("give either --to hf|lhotse|webdataset OUT or --from-panns FILE.h5")
    index = (LabelIndex.from_file(args.labels) if args.labels
             else LabelIndex.load(root=args.root))
    if args.from_panns:
        segments = (load_segments(args.segments, root=args.root, label_index=index)
                    if args.segments else None)
        report = import_panns(args.from_panns, args.split, args.root, segments=segments,
                              label_index=index, fmt=args.format)
        print(json.dumps(report.summary(), indent=2))
        return 0
    if not args.out:
        raise ConfigError("--to needs an output folder OUT")

    cache = open_cache(args.split, args.root)
    if args.to == "webdataset":
        done = to_webdataset(cache, args.out, label_index=index, shard_size=args.shard_size,
                             overwrite=args.overwrite, progress=sys.stderr.isatty())
        print(f"{done.clips} clips in {len(done.shards)} shards -> {args.out}; index: "
              f"{done.index}", file=sys.stderr)
        return 0
    if args.to == "hf":
        ds = to_hf_dataset(cache, args.out, label_index=index, audio_format=args.audio_format,
                           overwrite=args.overwrite)
        print(f"{len(ds)} clips -> {args.out}/{ARROW_NAME}", file=sys.stderr)
    else:
        to_lhotse(cache, args.out, label_index=index, audio_format=args.audio_format,
                  overwrite=args.overwrite)
        print(f"{len(cache)} clips -> {args.out}", file=sys.stderr)
    return 0
