"""``audioset ontology``: show, tree, search and export the sound-class ontology."""

from __future__ import annotations

import argparse
import logging
import sys
import textwrap
from pathlib import Path

from audioset_data.errors import AudioSetError, OntologyError
from audioset_data.ontology import Ontology, tree_rows
from audioset_data.remote import fetch
from audioset_data.segments.labels import LabelIndex

from .common import add_root_options, with_flags

logger = logging.getLogger(__name__)

EXPORT_FORMATS = ("csv", "graphml", "json", "png")


#: The flag of ``audioset ontology`` for each argument a library message may name.
FLAGS = {"accept_new_upstream": "--accept-new-upstream"}


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``ontology`` command and its sub-commands."""
    common = argparse.ArgumentParser(add_help=False)
    add_root_options(common)
    common.add_argument(
        "--ontology-url",
        help="base address of a mirror holding ontology.json (http(s)://, file:// or a folder; "
        "default: $AUDIOSET_ONTOLOGY_BASE_URL or the official one)",
    )

    parser = subparsers.add_parser(
        "ontology", help="browse the sound-class ontology",
        description="Browse the AudioSet ontology (fetched once, verified, then used offline).",
    )
    sub = parser.add_subparsers(dest="ontology_command", required=True)

    show = sub.add_parser("show", parents=[common], help="one class: fields, parents, paths")
    show.add_argument("cls", metavar="ID|NAME", help="class id (/m/0bt9lr) or name (Dog)")
    show.add_argument("--labels-url",
                      help="base address of a mirror holding class_labels_indices.csv "
                      "(default: $AUDIOSET_CSV_BASE_URL or the official one)")
    show.add_argument("--no-labels", action="store_true",
                      help="do not look the class up in the 527-label index")
    show.set_defaults(func=with_flags(cmd_show, **FLAGS))

    tree = sub.add_parser("tree", parents=[common], help="indented tree under a class")
    tree.add_argument("cls", metavar="CLASS", nargs="?",
                      help="class at the top of the tree, id or name (default: every top-level "
                           "class of the ontology); not the data root, which is --root")
    tree.add_argument("--depth", type=int, default=None,
                      help="levels shown below CLASS (0 = CLASS alone; default: all)")
    tree.set_defaults(func=with_flags(cmd_tree, **FLAGS))

    search = sub.add_parser("search", parents=[common], help="classes whose name contains TEXT")
    search.add_argument("text", metavar="TEXT")
    search.set_defaults(func=with_flags(cmd_search, **FLAGS))

    export = sub.add_parser("export", parents=[common], help="write csv, graphml, json or png")
    export.add_argument("--format", required=True, choices=EXPORT_FORMATS)
    export.add_argument("--output", required=True, type=Path, help="file to write")
    export.add_argument("--root-class", help="export only this class and what lies below it")
    export.add_argument("--depth", type=int, default=None,
                        help="png only: levels drawn below the root class")
    export.set_defaults(func=with_flags(cmd_export, **FLAGS))


def _load(args: argparse.Namespace):
    return Ontology.load(root=args.root, base_url=args.ontology_url,
                         accept_new_upstream=args.accept_new_upstream)


def _flags(onto, cid: str) -> str:
    cls = onto[cid]
    marks = sorted(cls.restrictions)
    return f" [{', '.join(marks)}]" if marks else ""


def _trainable(args: argparse.Namespace, onto, cid: str) -> str:
    """Where the class sits in the 527-label index, or why that is unknown."""
    if args.no_labels:
        return "not checked (--no-labels)"

    try:
        path = fetch("class_labels_indices", root=args.root, base_url=args.labels_url,
                     accept_new_upstream=args.accept_new_upstream, timeout=10.0, retries=0,
                     progress=False)
        labels = LabelIndex.from_file(path, ontology=onto)
    except (AudioSetError, OSError) as exc:
        return f"unknown (label index not available: {exc})"
    if cid in labels:
        return f"yes, label index {labels.index(cid)} of {len(labels)}"
    return f"no, not among the {len(labels)} labels"


def cmd_show(args: argparse.Namespace) -> int:
    onto = _load(args)
    cid = onto.resolve(args.cls)
    cls = onto[cid]
    name = lambda c: f"{onto[c].name} ({c})"  # noqa: E731
    lines = [
        f"id:            {cid}",
        f"name:          {cls.name}",
        f"restrictions:  {', '.join(sorted(cls.restrictions)) or '-'}",
        f"depth:         {onto.depth(cid)} (longest path: {onto.depth(cid, how='max')})",
        f"trainable:     {_trainable(args, onto, cid)}",
        f"citation:      {cls.citation_uri or '-'}",
        "description:",
        *textwrap.wrap(cls.description or "-", width=96, initial_indent="  ",
                       subsequent_indent="  "),
        f"parents ({len(onto.parents(cid))}):",
        *(f"  {name(p)}" for p in onto.parents(cid)),
        f"children ({len(cls.child_ids)}):",
        *(f"  {name(c)}{_flags(onto, c)}" for c in cls.child_ids),
        f"paths to root ({len(onto.paths_to_root(cid))}):",
        *("  " + " > ".join(onto[c].name for c in path) for path in onto.paths_to_root(cid)),
        f"positive examples ({len(cls.positive_examples)}):",
        *(f"  https://youtu.be/{ex.youtube_id}?start={ex.start_s:g}&end={ex.end_s:g}"
          for ex in cls.examples),
    ]
    print("\n".join(lines))
    return 0


def cmd_tree(args: argparse.Namespace) -> int:
    onto = _load(args)
    if args.depth is not None and args.depth < 0:
        raise OntologyError(f"--depth must be 0 or more, not {args.depth}")
    for level, cid, _ in tree_rows(onto, args.cls, args.depth):
        hidden = ""
        if args.depth is not None and level == args.depth and onto[cid].child_ids:
            hidden = f" (+{len(onto.descendants(cid))})"
        print(f"{'  ' * level}{onto[cid].name} ({cid}){_flags(onto, cid)}{hidden}")
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    onto = _load(args)
    hits = onto.search(args.text)
    if not hits:
        print(f"audioset: no class name contains {args.text!r}", file=sys.stderr)
        return 1
    for cid in hits:
        print(f"{cid}\t{onto[cid].name}{_flags(onto, cid)}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    onto = _load(args)
    top = onto.resolve(args.root_class) if args.root_class else None
    part = onto.subtree(top) if top else onto
    out: Path = args.output
    if out.parent and not out.parent.exists():
        raise OntologyError(f"output folder {str(out.parent)!r} does not exist")
    if args.format == "csv":
        frame = onto.to_frame()  # depths and parents as in the whole ontology
        frame = frame[frame["id"].isin(set(part))]
        for column in ("parents", "children", "restrictions"):
            frame[column] = frame[column].map(" ".join)
        frame.to_csv(out, index=False)
    elif args.format == "graphml":
        part.to_graphml(out)
    elif args.format == "json":
        part.to_node_link(out)
    else:
        part.plot_subtree(top, out, depth=args.depth)
    print(f"wrote {out} ({args.format}, {len(part)} classes)")
    return 0
