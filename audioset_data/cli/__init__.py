"""The ``audioset`` command: a thin argparse layer over the library functions.

Each sub-command lives in its own module with a ``register(subparsers)`` function; errors the
library raises on purpose are printed as one line and exit with status 2, and Ctrl-C prints one
line and exits with status 130.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence
from typing import Any

from .. import __version__
from ..errors import AudioSetError, ConfigError

#: Modules under ``audioset_data.cli`` that each add one sub-command.
COMMANDS = ("ontology", "segments", "download", "cache", "evaluate", "train", "mine", "refine",
            "embed", "export")


def build_parser() -> argparse.ArgumentParser:
    """The full parser, with every available sub-command registered."""
    parser = argparse.ArgumentParser(
        prog="audioset", description="AudioSet ontology, segment lists and download cache."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="more logging (-vv: debug); also accepted after the sub-command")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{name}":
                raise
            continue
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


def baselines_module(name: str) -> Any:
    """``audioset_data.baselines.<name>``, imported when a command runs; a missing torch
    becomes a :class:`ConfigError` that says how to install it."""
    try:
        return importlib.import_module(f"audioset_data.baselines.{name}")
    except ModuleNotFoundError as exc:
        if exc.name == "torch":
            raise ConfigError("this command needs torch: pip install torch "
                              "(or audioset-data[torch])") from None
        raise


def add_root_options(parser: argparse.ArgumentParser) -> None:
    """Options every data-touching command shares: data root and mirror addresses."""
    parser.add_argument("--root", metavar="DIR",
                        help="data root folder (default: $AUDIOSET_DATA_HOME or user cache)")
    parser.add_argument(
        "--accept-new-upstream",
        action="store_true",
        help="accept official files whose checksum differs from the pinned release",
    )


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
