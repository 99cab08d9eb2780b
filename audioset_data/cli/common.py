"""What the sub-commands share: the data-root options and the torch-backed modules, imported
only when a command that needs them runs (torch is an optional dependency)."""

from __future__ import annotations

import argparse
import importlib
from typing import Any

from audioset_data.errors import ConfigError


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


__all__ = ["add_root_options", "baselines_module"]
