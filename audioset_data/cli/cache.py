"""``audioset cache``: what a cache holds."""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``cache`` sub-command."""
    c = sub.add_parser("cache", help="what a cache holds")
    c.add_argument("--root", help="data root")
    c.add_argument("--split", required=True, help="cache name")
    c.set_defaults(func=_cache_info)


def _cache_info(args: argparse.Namespace) -> int:
    from ..manifest import Manifest
    from ..store import MANIFEST_NAME, cache_dir, open_cache

    folder = cache_dir(args.split, args.root)
    cache = open_cache(folder=folder)
    with Manifest.open(folder / MANIFEST_NAME, readonly=True) as manifest:
        counts = manifest.counts()
        files = manifest.files()
        reasons = manifest.table().query("status == 'failed'")["reason"].value_counts()
    print(json.dumps({
        "folder": str(folder), "clips": len(cache), "format": cache.format,
        "sample_rate": cache.sample_rate, "files": len(files), "status": counts,
        "failed_by_reason": {str(k): int(v) for k, v in reasons.items()},
    }, indent=2))
    return 0
