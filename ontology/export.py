"""The ontology in other forms: a table, GraphML and node-link JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import networkx as nx

from audioset_data.config import PathLike

if TYPE_CHECKING:
    import pandas as pd

    from .graph import Ontology


def ontology_frame(onto: Ontology, labels: Any = None) -> pd.DataFrame:
    """One row per class: id, name, depths, parents, children, restrictions, counts.

    ``labels`` (anything with ``__contains__`` and ``index(mid)``, such as
    :class:`audioset_data.segments.labels.LabelIndex`) adds a nullable ``label_index`` column.
    """
    import pandas as pd

    shallow, deep = onto._depths
    rows = []
    for cid, cls in onto._classes.items():
        parents = onto.parents(cid)
        rows.append({
            "id": cid,
            "name": cls.name,
            "depth": shallow[cid],
            "max_depth": deep[cid],
            "parents": parents,
            "n_parents": len(parents),
            "children": list(cls.child_ids),
            "n_children": len(cls.child_ids),
            "n_descendants": len(onto._descendants[cid]),
            "restrictions": sorted(cls.restrictions),
            "abstract": cls.abstract,
            "blacklist": cls.blacklisted,
            "n_positive_examples": len(cls.positive_examples),
            "description": cls.description,
            "citation_uri": cls.citation_uri,
        })
    frame = pd.DataFrame(rows)
    if labels is not None:
        frame["label_index"] = pd.array(
            [labels.index(c) if c in labels else None for c in frame["id"]], dtype="Int64"
        )
    return frame


def _flat_graph(onto: Ontology) -> nx.DiGraph:
    """Copy with list attributes joined by spaces (ids, urls and restrictions have none)."""
    flat = nx.DiGraph(source=onto.source)
    for cid, attrs in onto._graph.nodes(data=True):
        flat.add_node(cid, **{
            k: " ".join(v) if isinstance(v, tuple) else v for k, v in attrs.items()
        })
    flat.add_edges_from(onto._graph.edges)
    return flat


def write_graphml(onto: Ontology, path: PathLike) -> Path:
    """Write GraphML (edges parent → child; list fields joined by single spaces)."""
    path = Path(path)
    nx.write_graphml(_flat_graph(onto), path)
    return path


def node_link(onto: Ontology, path: PathLike | None = None) -> dict[str, Any] | Path:
    """Node-link data (``nodes`` and ``links``); written to ``path`` when given."""
    data = nx.node_link_data(onto._graph, edges="links")
    for node in data["nodes"]:
        for key, value in node.items():
            if isinstance(value, tuple):
                node[key] = list(value)
    if path is None:
        return data
    path = Path(path)
    path.write_text(json.dumps(data, indent=1, ensure_ascii=False), encoding="utf-8")
    return path


__all__ = ["node_link", "ontology_frame", "write_graphml"]
