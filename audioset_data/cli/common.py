"""What the sub-commands share: the data-root options and the torch-backed modules, imported
only when a command that needs them runs (torch is an optional dependency)."""

from __future__ import annotations

import argparse
import functools
import importlib
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from audioset_data.errors import AudioSetError, ConfigError

#: A library message's suggestion of a Python argument: ``pass name=value``, with the flag that
#: does the same on some command in parentheses after it (``(--flag ...)``), if any.
_SUGGESTION = re.compile(
    r"pass (?P<arg>\w+)=(?P<value>'[^']*'|\"[^\"]*\"|[\w.\[\]]*)"
    r"(?: \((?P<flag>--[\w-]+)[^)]*\))?")
_DROP = "\x00"


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


def reword(message: str, flags: dict[str, str | None]) -> str:
    """``message`` for the command line: each ``pass name=value`` it suggests becomes
    ``pass --flag`` with the flag ``flags`` gives for ``name`` on this command; a suggestion
    no flag of this command can follow (``name`` not in ``flags``, or None) is left out.

    >>> reword("x.csv: empty; pass allow_empty=True to accept an empty list", {})
    'x.csv: empty'
    >>> reword("exists; pass overwrite=True to replace it", {"overwrite": "--overwrite"})
    'exists; pass --overwrite to replace it'
    """

    def flag(m: re.Match) -> str:
        chosen = flags.get(m["arg"])
        return f"pass {chosen}" if chosen else _DROP

    text = _SUGGESTION.sub(flag, message)
    text = re.sub(r"\s*\(" + _DROP + r"[^)]*\)", "", text)
    text = re.sub(r"(?:[;,]\s*|\s+)(?:or\s+)?" + _DROP + r"[^;.)]*", "", text)
    return text.replace(_DROP, "")


@contextmanager
def command_line_flags(**flags: str | None) -> Iterator[None]:
    """Errors raised inside name this command's flags, never Python arguments: ``name=`` the
    flag that does what the library's ``name=`` argument does (see :func:`reword`)."""
    try:
        yield
    except AudioSetError as exc:
        exc.args = (reword(str(exc), flags), *exc.args[1:])
        raise


def with_flags(func: Callable[[argparse.Namespace], int], **flags: str | None
               ) -> Callable[[argparse.Namespace], int]:
    """``func`` (a sub-command) with :func:`command_line_flags` around it."""

    @functools.wraps(func)
    def run(args: argparse.Namespace) -> int:
        with command_line_flags(**flags):
            return func(args)

    return run


def add_root_options(parser: argparse.ArgumentParser) -> None:
    """Options every data-touching command shares: data root and mirror addresses."""
    parser.add_argument("--root", metavar="ROOT",
                        help="data root folder (default: $AUDIOSET_DATA_HOME or user cache)")
    parser.add_argument(
        "--accept-new-upstream",
        action="store_true",
        help="accept official files whose checksum differs from the pinned release",
    )


__all__ = ["add_root_options", "baselines_module", "command_line_flags", "reword",
           "with_flags"]
