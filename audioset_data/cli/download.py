"""``audioset download``, ``audioset merge`` and ``audioset demo``."""

from __future__ import annotations

import argparse
import dataclasses
import sys

from audioset_data.downloader import job
from audioset_data.downloader.demo import run_demo
from audioset_data.downloader.job_array import ShardSpec, merge
from audioset_data.downloader.options import DownloadOptions
from audioset_data.errors import ConfigError

from .common import add_root_options

#: Defaults of the download options, read from the dataclass (nothing is imported or checked
#: to build the parser).
DEFAULTS = {f.name: f.default for f in dataclasses.fields(DownloadOptions)}

#: What Ctrl-C during a download prints (and exit status 130).
INTERRUPTED = ("audioset: interrupted: the clips finished so far are kept; run the same "
               "command again to resume")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _shard_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--shard", metavar="I/N",
                   help="only this job's part of the list, for job arrays: part I of N, "
                        "counted from 1 (1/8 ... 8/8); join the parts with `audioset merge`")
    p.add_argument("--shard-from-zero", action="store_true",
                   help="I of --shard counts from 0 (0/8 ... 7/8), as Slurm's "
                        "--array=0-7 numbers its tasks")


def register(sub: argparse._SubParsersAction) -> None:
    """Add the download-related sub-commands."""
    p = sub.add_parser("download", help="download clips into the resumable HDF5 cache")
    add_root_options(p)
    p.add_argument("--split",
                   help="eval, balanced (default) or unbalanced; with --segments, the cache "
                        "name (default: the file's name)")
    p.add_argument("--segments", help="a CSV in the official format instead of the whole split")
    p.add_argument("--csv-url", dest="csv_base_url", help="mirror address of the official CSV "
                   "files")
    p.add_argument("--url-template", default=DEFAULTS["url_template"],
                   help="video address, http(s):// with {ytid} (default: the YouTube watch "
                        "page)")
    p.add_argument("--format", dest="fmt", default=DEFAULTS["fmt"],
                   choices=("pcm16", "flac", "opus"),
                   help="pcm16 (raw, PANNs-compatible) or a compact encoded format")
    p.add_argument("--sample-rate", type=int, default=DEFAULTS["sample_rate"],
                   help="Hz (default %(default)s)")
    p.add_argument("--workers", type=_positive_int, default=4,
                   help="parallel downloads (default 4)")
    _shard_options(p)
    p.add_argument("--retry-failed", action="store_true",
                   help="retry every failed clip, permanent failures included")
    p.add_argument("--max-attempts", type=int, default=DEFAULTS["max_attempts"],
                   help="attempts per clip per run (default %(default)s)")
    p.add_argument("--rate-limit", type=float, help="at most this many clip requests per second")
    p.add_argument("--cookies", dest="cookiefile", metavar="FILE",
                   help="cookies.txt (Netscape format) for 'Sign in to confirm you're not a "
                        "bot'; it never reaches a command line")
    p.add_argument("--cookies-from-browser", help="read cookies from this browser (e.g. firefox)")
    p.add_argument("--shard-size", type=int, default=DEFAULTS["shard_size"],
                   help="clips per HDF5 shard (default %(default)s)")
    p.add_argument("--batch-size", type=int, default=DEFAULTS["batch_size"],
                   help="publish finished clips every N clips (default %(default)s): a kill -9 "
                        "loses at most these and the clips in flight")
    p.add_argument("--flush-interval", type=float, default=DEFAULTS["flush_interval"],
                   help="... or when the oldest finished clip has waited this many seconds "
                        "(default %(default)s)")
    p.add_argument("--task-timeout", type=float,
                   help="hard limit in seconds for one clip attempt; its worker is killed "
                        "(default: 220 s)")
    p.add_argument("--dry-run", action="store_true",
                   help="register the list and say what is left to fetch, fetch nothing")
    p.add_argument("--limit", type=int, help="only the first N segments of the list (N >= 1)")
    p.add_argument("--no-space-check", dest="check_space", action="store_false",
                   help="skip the free-space check")
    p.add_argument("--no-progress", dest="progress", action="store_false",
                   help="no progress bar")
    p.set_defaults(func=_download)

    m = sub.add_parser(
        "merge", help="join the part manifests of --shard I/N runs",
        description="Join the part manifests of a job array into the cache's manifest. "
                    "Refused while parts are missing, unless --allow-partial.")
    m.add_argument("--root", metavar="DIR", help="data root folder")
    m.add_argument("--split", required=True, help="cache name")
    m.add_argument("--allow-partial", action="store_true",
                   help="merge the parts found even when some are missing (merge again once "
                        "they are done)")
    m.set_defaults(func=_merge)

    d = sub.add_parser("demo", help="run the whole download offline on generated audio")
    add_root_options(d)
    d.add_argument("--csv-url", help="mirror address of the official CSV files")
    d.add_argument("--clips", type=_positive_int, default=24,
                   help="how many eval segments (default 24)")
    d.add_argument("--workers", type=_positive_int, default=4,
                   help="parallel downloads (default 4)")
    _shard_options(d)
    d.set_defaults(func=_demo)


def options_from_args(args: argparse.Namespace) -> DownloadOptions:
    """The :class:`DownloadOptions` of parsed ``audioset download`` arguments (the argument
    names are the option names)."""
    return DownloadOptions(**{k: getattr(args, k) for k in DEFAULTS if hasattr(args, k)})


def _shard(args: argparse.Namespace):  # noqa: ANN202 - ShardSpec | None
    if args.shard is None:
        if args.shard_from_zero:
            raise ConfigError("--shard-from-zero needs --shard I/N")
        return None

    return ShardSpec.parse(args.shard, from_zero=args.shard_from_zero)


def _download(args: argparse.Namespace) -> int:
    options = options_from_args(args)
    split = args.split or (None if args.segments else "balanced")
    try:
        report = job.download(split, segments=args.segments, root=args.root, workers=args.workers,
                          shard=_shard(args), options=options)
    except KeyboardInterrupt:
        print(INTERRUPTED, file=sys.stderr)
        return 130
    if options.dry_run:
        print(f"cache {report.folder}: {report.requested} segments, {report.ok} cached, "
              f"{report.failed} failed, {report.pending} pending; {report.to_fetch} to fetch")
        return 0
    print(report.summary())
    print(f"per-class report: {report.report_path}")
    return 0


def _merge(args: argparse.Namespace) -> int:
    print(merge(args.split, root=args.root, allow_partial=args.allow_partial).summary())
    return 0


def _demo(args: argparse.Namespace) -> int:
    report = run_demo(root=args.root, csv_base_url=args.csv_url, n_clips=args.clips,
                      workers=args.workers, shard=_shard(args))
    print(report.summary())
    print(f"per-class report: {report.report_path}; read the clips with "
          "audioset_data.open_cache('demo') or `audioset cache --split demo`")
    return 0
