"""``audioset cache``: what a cache holds, and checking or repairing it."""

from __future__ import annotations

import argparse
import json

from audioset_data.cache.manifest import MANIFEST_NAME, Manifest
from audioset_data.cache.reader import cache_dir, missing_cache_fix, open_cache
from audioset_data.cache.repair import repair_cache, verify_cache
from audioset_data.cache.store import FolderLock
from audioset_data.errors import CacheError

from .common import with_flags


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``cache`` sub-command."""
    c = sub.add_parser(
        "cache", help="what a cache holds; --verify checks every byte, --repair rebuilds",
        description="Summarise a cache. Exits 1 when clips the manifest lists cannot be read "
                    "(or --verify finds damage).")
    c.add_argument("--root", metavar="ROOT", help="data root folder")
    c.add_argument("--split", required=True, metavar="NAME",
                   help="cache name: eval, balanced, unbalanced, demo, or a --segments "
                        "file's name")
    c.add_argument("--json", action="store_true", help="print the summary as JSON")
    c.add_argument("--verify", action="store_true",
                   help="read every clip and check its checksums")
    c.add_argument("--repair", action="store_true",
                   help="rebuild the manifest from the files (adopt lost clips, set aside "
                        "damaged files, send unreadable clips back to be fetched again)")
    c.add_argument("--no-progress", action="store_true", help="no progress bar")
    c.set_defaults(func=with_flags(_cache_info))


def _cache_info(args: argparse.Namespace) -> int:
    folder = cache_dir(args.split, args.root)
    if not folder.is_dir():
        raise CacheError(f"no cache at {str(folder)!r} (check --split and --root); "
                         f"{missing_cache_fix(folder)}")
    out: dict[str, object] = {"folder": str(folder)}
    if args.repair:
        with FolderLock(folder / ".lock"):
            report = repair_cache(folder)
            if args.verify:
                verified = verify_cache(folder, repair=True, progress=not args.no_progress)
                out["verify_problems"] = len(verified.problems)
        out["repair"] = report.summary()
    elif args.verify:
        verified = verify_cache(folder, progress=not args.no_progress)
        out["verify_problems"] = len(verified.problems)
        out["problems"] = verified.problems.head(50).to_dict("records")
    cache = open_cache(folder=folder)
    cache.check_files()  # readable means it opens: a zeroed header keeps the file's size
    with Manifest.open(folder / MANIFEST_NAME, readonly=True) as manifest:
        counts = manifest.counts()
        files = manifest.files()
        reasons = manifest.table().query("status == 'failed'")["reason"].value_counts()
    out.update({
        "clips": len(cache), "format": cache.format, "sample_rate": cache.sample_rate,
        "files": len(files), "status": counts,
        "failed_by_reason": {str(k): int(v) for k, v in reasons.items()},
        "unavailable": len(cache.unavailable),
        "unavailable_by_problem": {str(k): int(v) for k, v in
                                   cache.unavailable["problem"].value_counts().items()},
    })
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print(_human(out))
    damaged = int(out.get("verify_problems", 0)) if not args.repair else 0
    return 1 if out["unavailable"] or damaged else 0


def _human(out: dict) -> str:
    status = out["status"]
    lines = [
        f"cache {out['folder']}",
        f"  {out['clips']} clips readable ({out['format']}, {out['sample_rate']} Hz) in "
        f"{out['files']} files",
        f"  manifest: {status['ok']} cached, {status['failed']} failed, "
        f"{status['pending']} pending",
    ]
    for reason, n in out["failed_by_reason"].items():
        lines.append(f"    failed {reason}: {n}")
    if out["unavailable"]:
        lines.append(f"  {out['unavailable']} cached clips cannot be read:")
        for problem, n in out["unavailable_by_problem"].items():
            lines.append(f"    {problem}: {n}")
        lines.append("  run `audioset cache --repair` so the next download fetches them again")
    if "repair" in out:
        lines.append("  repair: " + str(out["repair"]).replace("\n", "\n          "))
    if "verify_problems" in out:
        n = out["verify_problems"]
        lines.append(f"  verify: {n} problems" if n else "  verify: every byte checks out")
        for p in out.get("problems", [])[:10]:
            lines.append(f"    {p['file']} row {p['row']}: {p['problem']}")
    return "\n".join(lines)
