"""Where the data lives: the cache root and the addresses of the official files.

Resolution order for the data root: an explicit argument, then ``AUDIOSET_DATA_HOME``, then the
platform's user cache folder (``platformdirs``). Nothing here is read at import time.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Union

import platformdirs

from .errors import ConfigError

PathLike = Union[str, "os.PathLike[str]"]

#: Environment variable that overrides the data root.
DATA_HOME_ENV = "AUDIOSET_DATA_HOME"
#: Environment variable that overrides the base address of the ontology JSON.
ONTOLOGY_BASE_URL_ENV = "AUDIOSET_ONTOLOGY_BASE_URL"
#: Environment variable that overrides the base address of the official CSV files.
CSV_BASE_URL_ENV = "AUDIOSET_CSV_BASE_URL"
#: Environment variable that overrides the base address of the strong-label (2021) files.
STRONG_BASE_URL_ENV = "AUDIOSET_STRONG_BASE_URL"

#: Official base address of ``ontology.json``.
ONTOLOGY_BASE_URL = "https://raw.githubusercontent.com/audioset/ontology/master/"
#: Official base address of the segment lists and the label index.
CSV_BASE_URL = "http://storage.googleapis.com/us_audioset/youtube_corpus/v1/csv/"
#: Official base address of the temporally-strong label files (released 2021).
STRONG_BASE_URL = "http://storage.googleapis.com/us_audioset/youtube_corpus/strong/"
#: Environment variable naming a mirror of the embeddings release (a folder or the file).
FEATURES_BASE_URL_ENV = "AUDIOSET_FEATURES_URL"
#: Where Google serves the embeddings release, ``features.tar.gz``.
FEATURES_BASE_URL = "http://storage.googleapis.com/us_audioset/youtube_corpus/v1/features/"
#: Suffixes of an address that names the release archive itself rather than its folder.
ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz")
#: Environment variable that overrides the base address of the evaluation subset lists.
SUBSETS_BASE_URL_ENV = "AUDIOSET_SUBSETS_BASE_URL"
#: Where AST's list of the eval clips it evaluated lives (YuanGongND/ast at a pinned commit).
SUBSETS_BASE_URL = ("https://raw.githubusercontent.com/YuanGongND/ast/"
                    "31088be8a3f6ef96416145c4b8d43c81f99eba7a/egs/audioset/data/sanity_check/")


def data_home(root: PathLike | None = None) -> Path:
    """Return the data root, creating it if needed.

    Parameters
    ----------
    root
        Explicit folder; wins over ``AUDIOSET_DATA_HOME`` and the platform default.

    Raises
    ------
    ConfigError
        If the chosen path exists and is not a folder.
    """
    if root is not None:
        path = Path(root)
    elif os.environ.get(DATA_HOME_ENV):
        path = Path(os.environ[DATA_HOME_ENV])
    else:
        path = Path(platformdirs.user_cache_dir("audioset-data", appauthor=False))
    path = path.expanduser()
    if path.exists() and not path.is_dir():
        raise ConfigError(f"data root {str(path)!r} exists and is not a folder")
    path.mkdir(parents=True, exist_ok=True)
    return path


def _base_url(explicit: str | None, env: str, default: str) -> str:
    url = explicit or os.environ.get(env) or default
    return url if url.endswith("/") else url + "/"


def ontology_base_url(explicit: str | None = None) -> str:
    """Base address of ``ontology.json`` (argument, then env var, then the official one)."""
    return _base_url(explicit, ONTOLOGY_BASE_URL_ENV, ONTOLOGY_BASE_URL)


def csv_base_url(explicit: str | None = None) -> str:
    """Base address of the official CSV files (argument, then env var, then the official one)."""
    return _base_url(explicit, CSV_BASE_URL_ENV, CSV_BASE_URL)


def features_base_url(explicit: str | None = None) -> str:
    """Address of the embeddings release: the argument, then ``$AUDIOSET_FEATURES_URL``, then
    the official folder. An address ending in ``.tar`` / ``.tar.gz`` names the archive itself;
    any other is a folder holding ``features.tar.gz``."""
    url = explicit or os.environ.get(FEATURES_BASE_URL_ENV) or FEATURES_BASE_URL
    if url.rstrip("/").endswith(ARCHIVE_SUFFIXES):
        return url.rstrip("/")
    return url if url.endswith("/") else url + "/"


def strong_base_url(explicit: str | None = None) -> str:
    """Base address of the strong-label files (argument, then env var, then the official one)."""
    return _base_url(explicit, STRONG_BASE_URL_ENV, STRONG_BASE_URL)


def subsets_base_url(explicit: str | None = None) -> str:
    """Base address of the evaluation subset lists (argument, then env var, then the pinned
    official one)."""
    return _base_url(explicit, SUBSETS_BASE_URL_ENV, SUBSETS_BASE_URL)
