"""``audioset features``: import the embeddings release into stores, and list the stores."""

from __future__ import annotations

import argparse
import json

from audioset_data.features import import_features, list_stores, stores_root

from .common import add_root_options


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``features`` command and its ``import`` and ``info`` sub-commands."""
    parser = subparsers.add_parser(
        "features", help="the official embeddings release (128-d per second) as stores")
    sub = parser.add_subparsers(dest="features_command", required=True)

    imp = sub.add_parser(
        "import", help="import a folder, a tar or the address of the release",
        description="Import the AudioSet embeddings release into <root>/features/<split>/. "
                    "PATH: a folder of .tfrecord files, a .tar/.tar.gz in the release layout "
                    "(streamed), or an http(s):// / file:// address; without PATH, "
                    "$AUDIOSET_FEATURES_URL or the official features.tar.gz (2.4 GB, fetched "
                    "resumably).")
    imp.add_argument("path", nargs="?", metavar="PATH", help="folder, tar or address")
    imp.add_argument("--split", help="split of .tfrecord files outside bal_train/ eval/ "
                                     "unbal_train/ folders; with them, import only this split")
    imp.add_argument("--no-coverage", action="store_true",
                     help="do not compare with the official segment list")
    imp.add_argument("--no-progress", action="store_true", help="no progress bar")
    imp.add_argument("--json", action="store_true", help="print the report as JSON")
    add_root_options(imp)
    imp.set_defaults(func=_import)

    info = sub.add_parser("info", help="list the stores under the data root")
    info.add_argument("--json", action="store_true", help="print the list as JSON")
    add_root_options(info)
    info.set_defaults(func=_info)


def _import(args: argparse.Namespace) -> int:
    report = import_features(args.path, split=args.split, root=args.root,
                             coverage=not args.no_coverage, progress=not args.no_progress,
                             accept_new_upstream=args.accept_new_upstream)
    if args.json:
        print(json.dumps({
            "source": report.source, "skipped_files": report.skipped_files,
            "elapsed_s": round(report.elapsed_s, 2),
            "splits": {name: {**s.counts(), "store": str(s.path),
                              "coverage": s.coverage.totals() if s.coverage else None,
                              "coverage_skipped": s.coverage_skipped}
                       for name, s in report.splits.items()},
        }, indent=2))
    else:
        print(report.summary())
    return 0


def _info(args: argparse.Namespace) -> int:
    stores = list_stores(args.root)
    rows = [{"split": s.split, "rows": len(s), "store": str(s.folder),
             "created": s.meta.get("created"), "source": s.meta.get("source", {}).get("path"),
             "sha256": s.meta.get("source", {}).get("sha256"), "counts": s.counts(),
             "coverage": s.meta.get("coverage")} for s in stores]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print(f"no embedding stores under {stores_root(args.root)}; import one: "
              "audioset features import PATH")
        return 0
    for r in rows:
        c = r["counts"]
        cov = r["coverage"]
        cover = (f"{cov['present']}/{cov['listed']} of the list" if cov else "not compared")
        print(f"{r['split']}: {r['rows']} segments ({c.get('frames_short', 0)} short, "
              f"{c.get('frames_zero', 0)} zero-frame, {c.get('duplicates', 0)} duplicates "
              f"dropped), coverage {cover}\n  {r['store']} (from {r['source']}, "
              f"{r['created']})")
    return 0
