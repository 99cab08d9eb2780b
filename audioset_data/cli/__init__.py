"""The ``audioset`` command: a thin argparse layer over the library functions.

Each sub-command lives in its own module with a ``register(subparsers)`` function; errors the
library raises on purpose are printed as one line and exit with status 2, and Ctrl-C prints one
line and exits with status 130.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from audioset_data import __version__
from audioset_data.errors import AudioSetError

from . import (
    cache,
    download,
    embed,
    evaluate,
    export,
    features,
    importing,
    mine,
    ontology,
    refine,
    segments,
    train,
)

#: The modules that each add one sub-command, in the order ``--help`` lists them.
COMMANDS = (ontology, segments, download, cache, evaluate, features, train, mine, refine, embed,
            export, importing)


def build_parser() -> argparse.ArgumentParser:
    """The full parser, with every available sub-command registered."""
    parser = argparse.ArgumentParser(
        prog="audioset", description="AudioSet ontology, segment lists and download cache."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="more logging (-vv: debug); also accepted after the sub-command")
    sub = parser.add_subparsers(dest="command", required=True)
    for module in COMMANDS:
        module.register(sub)
    _verbose_everywhere(parser)
    return parser


def _verbose_everywhere(parser: argparse.ArgumentParser, depth: int = 1) -> None:
    """Accept ``-v`` after every sub-command too (``audioset download ... -vv``). Each level
    counts into a name of its own that is only set when given, so a sub-command never resets
    the count given before it."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in dict.fromkeys(action.choices.values()):
                if "-v" not in child._option_string_actions:
                    child.add_argument("-v", "--verbose", dest=f"verbose_{depth}",
                                       action="count", default=argparse.SUPPRESS,
                                       help="more logging (-vv: debug)")
                _verbose_everywhere(child, depth + 1)


def verbosity(args: argparse.Namespace) -> int:
    """How many ``-v`` were given, before and after the sub-commands."""
    return sum(int(v) for k, v in vars(args).items()
               if k == "verbose" or k.startswith("verbose_"))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``audioset`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING - 10 * min(verbosity(args), 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args) or 0)
    except AudioSetError as exc:
        print(f"audioset: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("audioset: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
