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

from .common import add_root_options, command_line_flags

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
    p = sub.add_parser(
        "download", help="download clips into the resumable HDF5 cache",
        description="Download the 10-s clips of a split (or of any segment list in the "
                    "official CSV format) into the resumable HDF5 cache under ROOT/cache/NAME. "
                    "Stop it at any time and run the same command again to resume; failures "
                    "are listed by reason in failures.csv and per class in report.csv. Exits "
                    "1 when no clip of the list is cached.")
    add_root_options(p)
    p.add_argument("--split", metavar="NAME",
                   help="eval, balanced (default) or unbalanced; with --segments, the cache "
                        "name (default: the file's name)")
    p.add_argument("--segments", metavar="FILE.csv",
                   help="a CSV in the official format instead of the whole split")
    p.add_argument("--skip-bad-rows", dest="on_bad_rows", action="store_const", const="skip",
                   default=DEFAULTS["on_bad_rows"],
                   help="keep the valid rows of a --segments file with malformed rows (they "
                        "are logged) instead of refusing it")
    p.add_argument("--csv-url", dest="csv_base_url", metavar="URL",
                   help="mirror address of the official CSV files")
    p.add_argument("--url-template", default=DEFAULTS["url_template"], metavar="URL",
                   help="video address, http(s):// with {ytid} (default: the YouTube watch "
                        "page)")
    p.add_argument("--format", dest="fmt", default=DEFAULTS["fmt"],
                   choices=("pcm16", "flac", "opus"),
                   help="pcm16 (raw, PANNs-compatible) or a compact encoded format")
    p.add_argument("--sample-rate", type=int, default=DEFAULTS["sample_rate"], metavar="HZ",
                   help="Hz (default %(default)s)")
    p.add_argument("--workers", type=_positive_int, default=4, metavar="N",
                   help="parallel downloads (default 4)")
    _shard_options(p)
    p.add_argument("--retry-failed", action="store_true",
                   help="retry every failed clip, permanent failures included")
    p.add_argument("--max-attempts", type=int, default=DEFAULTS["max_attempts"], metavar="N",
                   help="attempts per clip per run (default %(default)s)")
    p.add_argument("--rate-limit", type=float, metavar="PER_S",
                   help="at most this many clip requests per second")
    p.add_argument("--cookies", dest="cookiefile", metavar="FILE",
                   help="cookies.txt (Netscape format) for 'Sign in to confirm you're not a "
                        "bot'; it never reaches a command line")
    p.add_argument("--cookies-from-browser", metavar="BROWSER",
                   help="read cookies from this browser (e.g. firefox)")
    p.add_argument("--shard-size", type=int, default=DEFAULTS["shard_size"], metavar="N",
                   help="clips per HDF5 shard (default %(default)s)")
    p.add_argument("--batch-size", type=int, default=DEFAULTS["batch_size"], metavar="N",
                   help="publish finished clips every N clips (default %(default)s): a kill -9 "
                        "loses at most these and the clips in flight")
    p.add_argument("--flush-interval", type=float, default=DEFAULTS["flush_interval"],
                   metavar="SECONDS",
                   help="... or when the oldest finished clip has waited this many seconds "
                        "(default %(default)s)")
    p.add_argument("--task-timeout", type=float, metavar="SECONDS",
                   help="hard limit in seconds for one clip attempt; its worker is killed "
                        "(default: 220 s)")
    p.add_argument("--stall-timeout", type=float, metavar="SECONDS",
                   default=DEFAULTS["stall_timeout"],
                   help="stop a clip attempt that receives almost nothing (under 1 KiB) for "
                        "this long, e.g. from a server trickling a byte a second "
                        "(default %(default)s s; the attempt is retried)")
    p.add_argument("--dry-run", action="store_true",
                   help="register the list and say what is left to fetch, fetch nothing")
    p.add_argument("--limit", type=int, metavar="N",
                   help="only the first N segments of the list (N >= 1)")
    p.add_argument("--no-space-check", dest="check_space", action="store_false",
                   help="skip the free-space check")
    p.add_argument("--no-progress", dest="progress", action="store_false",
                   help="no progress bar")
    p.set_defaults(func=_download)

    m = sub.add_parser(
        "merge", help="join the part manifests of --shard I/N runs",
        description="Join the part manifests of a job array into the cache's manifest. "
                    "Refused while parts are missing, unless --allow-partial.")
    m.add_argument("--root", metavar="ROOT", help="data root folder")
    m.add_argument("--split", required=True, metavar="NAME", help="cache name")
    m.add_argument("--allow-partial", action="store_true",
                   help="merge the parts found even when some are missing (merge again once "
                        "they are done)")
    m.set_defaults(func=_merge)

    d = sub.add_parser(
        "demo", help="run the whole download offline on generated audio",
        description="Run the whole download offline: real eval segments, fetched from a "
                    "loopback server that serves generated tones, into the cache named "
                    "'demo' (read it with `audioset cache --split demo` or "
                    "audioset_data.open_cache('demo')). Needs the official CSV files once "
                    "(or --csv-url to a mirror).")
    add_root_options(d)
    d.add_argument("--csv-url", metavar="URL", help="mirror address of the official CSV files")
    d.add_argument("--clips", type=_positive_int, default=24, metavar="N",
                   help="how many eval segments (default 24)")
    d.add_argument("--workers", type=_positive_int, default=4, metavar="N",
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


#: The flag of ``audioset download`` for each download option a library message may name.
FLAGS = {"on_bad_rows": "--skip-bad-rows", "check_space": "--no-space-check",
         "accept_new_upstream": "--accept-new-upstream", "retry_failed": "--retry-failed",
         "split": "--split", "limit": "--limit", "fmt": "--format",
         "task_timeout": "--task-timeout", "stall_timeout": "--stall-timeout"}


def _download(args: argparse.Namespace) -> int:
    with command_line_flags(**FLAGS):
        options = options_from_args(args)
        split = args.split or (None if args.segments else "balanced")
        try:
            report = job.download(split, segments=args.segments, root=args.root,
                                  workers=args.workers, shard=_shard(args), options=options)
        except KeyboardInterrupt:
            print(INTERRUPTED, file=sys.stderr)
            return 130
    if options.dry_run:
        print(f"cache {report.folder}: {report.requested} segments, {report.ok} cached, "
              f"{report.failed} failed, {report.pending} pending; {report.to_fetch} to fetch")
        return 0
    print(report.summary())
    print(f"per-class report: {report.report_path}")
    if report.nothing_cached:
        why = ("every failure is a failed name lookup: offline?" if report.offline
               else f"see {report.folder / 'failures.csv'} for why")
        print(f"audioset: error: none of the {report.requested} clips is cached; {why}",
              file=sys.stderr)
        return 1
    return 0


def _merge(args: argparse.Namespace) -> int:
    with command_line_flags(allow_partial="--allow-partial"):
        print(merge(args.split, root=args.root, allow_partial=args.allow_partial).summary())
    return 0


def _demo(args: argparse.Namespace) -> int:
    with command_line_flags(accept_new_upstream="--accept-new-upstream",
                            csv_base_url="--csv-url"):
        report = run_demo(root=args.root, csv_base_url=args.csv_url, n_clips=args.clips,
                          workers=args.workers, shard=_shard(args))
    print(report.summary())
    print(f"per-class report: {report.report_path}; read the clips with "
          "audioset_data.open_cache('demo') or `audioset cache --split demo`")
    return 0
