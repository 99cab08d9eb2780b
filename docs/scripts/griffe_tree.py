"""mkdocs hook: let mkdocstrings find the subpackages that live in root folders.

The import namespace is ``audioset_data.*`` but ``ontology/``, ``loaders/`` and ``baselines/``
sit at the repository root (setuptools' ``package-dir``). Griffe reads sources statically and
only follows folder names, so this hook builds ``build/docs_api/audioset_data``: links to every
entry of ``audioset_data/`` plus the three root folders under their import names. Nothing is
imported, so no module runs at build time.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.plugins import event_priority

REPO = Path(__file__).resolve().parents[2]
TREE = REPO / "build" / "docs_api"
MAPPED = {"ontology": "ontology", "loaders": "loaders", "baselines": "baselines"}


def build_tree(tree: Path = TREE) -> Path:
    """Write the link tree under ``tree`` and return it (the search path for griffe)."""
    pkg = tree / "audioset_data"
    if tree.exists():
        shutil.rmtree(tree)
    pkg.mkdir(parents=True)
    for entry in (REPO / "audioset_data").iterdir():
        if entry.name != "__pycache__":
            os.symlink(entry, pkg / entry.name)
    for name, folder in MAPPED.items():
        os.symlink(REPO / folder, pkg / name)
    return tree


@event_priority(100)
def on_config(config: MkDocsConfig) -> MkDocsConfig:
    """Build the tree before mkdocstrings reads its search paths."""
    build_tree()
    return config
