"""``audioset download``, ``audioset merge`` and ``audioset demo``."""

from __future__ import annotations

import argparse
import sys

from . import add_root_options

#: The flush policy's defaults, as :mod:`audioset_data.download` sets them (not imported here,
#: so that building the parser stays quick for every command).
FLUSH_DEFAULTS = {"batch_size": 8, "flush_interval": 2.0}

#: What Ctrl-C during a download prints (and exit status 130).
INTERRUPTED = ("audioset: interrupted: the clips finished so far are kept; run the same "
               "command again to resume")


def register(sub: argparse._SubParsersAction) -> None:
    """Add the download-related sub-commands."""
    p = sub.add_parser("download", help="download clips into the resumable HDF5 cache")
    add_root_options(p)
    p.add_argument("--split",
                   help="eval, balanced (default) or unbalanced; with --segments, the cache "
                        "name (default: the file's name)")
    p.add_argument("--segments", help="a CSV in the official format instead of the whole split")
    p.add_argument("--csv-url", help="mirror address of the official CSV files")
    p.add_argument("--url-template", default="https://www.youtube.com/watch?v={ytid}",
                   help="video address with {ytid} (default: the YouTube watch page)")
    p.add_argument("--format", dest="fmt", default="pcm16", choices=("pcm16", "flac", "opus"),
                   help="pcm16 (raw, PANNs-compatible) or a compact encoded format")
    p.add_argument("--sample-rate", type=int, default=32000, help="Hz (default 32000)")
    p.add_argument("--workers", type=int, default=4, help="parallel downloads (default 4)")
    p.add_argument("--shard", help="I/N: only this job's part of the list (job arrays)")
    p.add_argument("--retry-failed", action="store_true",
                   help="retry every failed clip, permanent failures included")
    p.add_argument("--max-attempts", type=int, default=3, help="attempts per clip per run")
    p.add_argument("--rate-limit", type=float, help="at most this many clip requests per second")
    p.add_argument("--cookies", help="cookies.txt for 'Sign in to confirm you're not a bot'")
    p.add_argument("--cookies-from-browser", help="read cookies from this browser (e.g. firefox)")
    p.add_argument("--shard-size", type=int, default=1000, help="clips per HDF5 shard")
    p.add_argument("--batch-size", type=int, default=FLUSH_DEFAULTS["batch_size"],
                   help="publish finished clips every N clips (default %(default)s): a kill -9 "
                        "loses at most these and the clips in flight")
    p.add_argument("--flush-interval", type=float, default=FLUSH_DEFAULTS["flush_interval"],
                   help="... or when the oldest finished clip has waited this many seconds "
                        "(default %(default)s)")
    p.add_argument("--task-timeout", type=float,
                   help="hard limit in seconds for one clip attempt; its worker is killed "
                        "(default: 220 s)")
    p.add_argument("--dry-run", action="store_true",
                   help="register the list and say what is left to fetch, fetch nothing")
    p.add_argument("--limit", type=int, help="only the first N segments of the list")
    p.add_argument("--no-space-check", action="store_true", help="skip the free-space check")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_download)

    m = sub.add_parser("merge", help="join the part manifests of --shard I/N runs")
    m.add_argument("--root", help="data root")
    m.add_argument("--split", required=True, help="cache name")
    m.set_defaults(func=_merge)

    d = sub.add_parser("demo", help="run the whole download offline on generated audio")
    add_root_options(d)
    d.add_argument("--csv-url", help="mirror address of the official CSV files")
    d.add_argument("--clips", type=int, default=24, help="how many eval segments (default 24)")
    d.add_argument("--workers", type=int, default=4, help="parallel downloads (default 4)")
    d.add_argument("--shard", help="I/N: only this job's part (then `audioset merge --split demo`)")
    d.set_defaults(func=_demo)


def _download(args: argparse.Namespace) -> int:
    from ..download import download

    split = args.split or (None if args.segments else "balanced")
    try:
        report = download(
            split, segments=args.segments, root=args.root, csv_base_url=args.csv_url,
            url_template=args.url_template, sample_rate=args.sample_rate, fmt=args.fmt,
            workers=args.workers, shard=args.shard, retry_failed=args.retry_failed,
            max_attempts=args.max_attempts, rate_limit=args.rate_limit, cookiefile=args.cookies,
            cookies_from_browser=args.cookies_from_browser, shard_size=args.shard_size,
            batch_size=args.batch_size, flush_interval=args.flush_interval,
            task_timeout=args.task_timeout, limit=args.limit,
            check_space=not args.no_space_check, accept_new_upstream=args.accept_new_upstream,
            progress=not args.no_progress, dry_run=args.dry_run,
        )
    except KeyboardInterrupt:
        print(INTERRUPTED, file=sys.stderr)
        return 130
    if args.dry_run:
        print(f"cache {report.folder}: {report.requested} segments, {report.ok} cached, "
              f"{report.failed} failed, {report.pending} pending; {report.to_fetch} to fetch")
        return 0
    print(report.summary())
    print(f"per-class report: {report.report_path}")
    return 0


def _merge(args: argparse.Namespace) -> int:
    from ..download import merge

    print(f"merged into {merge(args.split, root=args.root)}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from ..demo import run_demo

    report = run_demo(root=args.root, csv_base_url=args.csv_url, n_clips=args.clips,
                      workers=args.workers, shard=args.shard)
    print(report.summary())
    print(f"per-class report: {report.report_path}; read the clips with "
          "audioset_data.open_cache('demo') or `audioset cache --split demo`")
    return 0
