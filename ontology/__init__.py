"""The AudioSet ontology: 632 sound classes in a directed acyclic graph.

>>> from audioset_data.ontology import Ontology
>>> onto = Ontology.from_records([{"id": "/d", "name": "Dog", "child_ids": []}])
>>> onto["/d"].name
'Dog'

Use :meth:`Ontology.load` for the verified official file (cached, offline afterwards).
"""

from __future__ import annotations

from .graph import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_ENTRIES,
    KNOWN_RESTRICTIONS,
    Ontology,
    OntologyClass,
    PositiveExample,
    parse_example,
)
from .plot import plot_subtree, tree_rows

__all__ = [
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_ENTRIES",
    "KNOWN_RESTRICTIONS",
    "Ontology",
    "OntologyClass",
    "PositiveExample",
    "parse_example",
    "plot_subtree",
    "tree_rows",
]
