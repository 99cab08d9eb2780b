"""The AudioSet ontology: 632 sound classes in a directed acyclic graph.

>>> from audioset_data.ontology import Ontology
>>> onto = Ontology.from_records([{"id": "/d", "name": "Dog", "child_ids": []}])
>>> onto["/d"].name
'Dog'

Use :meth:`Ontology.load` for the verified official file (cached, offline afterwards).
"""

from __future__ import annotations

from . import graph as _graph
from .graph import *  # noqa: F403 - the graph module's public names are this package's API
from .plot import plot_subtree, tree_rows

__all__ = [*_graph.__all__, "plot_subtree", "tree_rows"]
