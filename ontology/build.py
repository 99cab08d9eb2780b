"""Turning ``ontology.json`` entries into a validated graph, and reading the entries from
JSON text, a file or node-link data. Every check raises
:class:`~audioset_data.errors.OntologyError` naming the source, the entry and the limit."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import networkx as nx

from audioset_data.errors import OntologyError

from .records import OntologyClass, _parse_entry

#: Refuse files larger than this many bytes (the official file is 342,780 bytes).
DEFAULT_MAX_BYTES = 64 * 1024**2
#: Refuse inputs with more entries than this (the official file has 632).
DEFAULT_MAX_ENTRIES = 100_000
#: Refuse classes on a path of more than this many classes from a root (the official file's
#: longest path has 6).
DEFAULT_MAX_DEPTH = 100
#: Refuse to build ancestor/descendant sets holding more than this many (class, ancestor) pairs
#: in all (the official file has 1,682); at the limit they take about 150 MB with the matrix.
DEFAULT_MAX_CLOSURE = 1_000_000
#: ``paths_to_root`` refuses classes with more paths than this (the official file's most is 4).
DEFAULT_MAX_PATHS = 10_000


@dataclass
class Built:
    """Validated classes (file order), the parent → child graph, a topological order (roots
    first) and the shortest and longest path from a root to every class."""

    classes: dict[str, OntologyClass]
    graph: nx.DiGraph
    topo: list[str]
    shallow: dict[str, int]
    deep: dict[str, int]


def node_attrs(cls: OntologyClass) -> dict[str, Any]:
    """The attributes a class's graph node carries."""
    return {
        "name": cls.name,
        "description": cls.description,
        "citation_uri": cls.citation_uri,
        "positive_examples": cls.positive_examples,
        "child_ids": cls.child_ids,
        "restrictions": tuple(sorted(cls.restrictions)),
    }


def build_graph(records: Sequence[Any], source: str, *, max_entries: int,
                max_depth: int) -> Built:
    """Validate ``records`` and build the graph; nothing recurses, so depth alone never
    raises ``RecursionError``."""
    if not isinstance(records, list | tuple):
        raise OntologyError(
            f"{source}: the top level is a {type(records).__name__}, expected a list of "
            "class objects"
        )
    if not records:
        raise OntologyError(f"{source}: the list of classes is empty; an ontology needs "
                            "at least one class")
    if max_depth < 1:
        raise OntologyError(f"{source}: max_depth must be 1 or more, not {max_depth}")
    if len(records) > max_entries:
        raise OntologyError(
            f"{source}: {len(records)} entries is over the limit of {max_entries} "
            "(raise max_entries to accept it)"
        )
    classes: dict[str, OntologyClass] = {}
    positions: dict[str, int] = {}
    for position, entry in enumerate(records):
        cls = _parse_entry(entry, position, source)
        if cls.id in classes:
            raise OntologyError(
                f"{source}: entry {position}: duplicate id {cls.id!r} "
                f"(first defined by entry {positions[cls.id]})"
            )
        classes[cls.id] = cls
        positions[cls.id] = position

    graph = nx.DiGraph(source=source)
    for cls in classes.values():
        graph.add_node(cls.id, **node_attrs(cls))
    n_parents = dict.fromkeys(classes, 0)
    for cls in classes.values():
        for child in cls.child_ids:
            if child not in classes:
                raise OntologyError(
                    f"{source}: entry {positions[cls.id]} (id {cls.id!r}, "
                    f"{cls.name!r}): child id {child!r} is not defined in the ontology"
                )
            graph.add_edge(cls.id, child)
            n_parents[child] += 1

    # Kahn's algorithm: a topological order (roots in file order first) and the shortest
    # and longest path from a root to every class, in one pass without recursion.
    topo = [c for c, n in n_parents.items() if n == 0]
    shallow = dict.fromkeys(topo, 1)
    deep = dict.fromkeys(topo, 1)
    for node in topo:  # grows while it is walked
        below_min, below_max = shallow[node] + 1, deep[node] + 1
        for child in classes[node].child_ids:
            if below_min < shallow.get(child, below_min + 1):
                shallow[child] = below_min
            if below_max > deep.get(child, 0):
                deep[child] = below_max
            n_parents[child] -= 1
            if n_parents[child] == 0:
                if deep[child] > max_depth:
                    raise OntologyError(
                        f"{source}: entry {positions[child]} (id {child!r}, "
                        f"{classes[child].name!r}) ends a path of {deep[child]} classes "
                        f"from a root, over the depth limit of {max_depth} "
                        "(raise max_depth to accept it)"
                    )
                topo.append(child)
    if len(topo) < len(classes):
        cycle = nx.find_cycle(graph)
        ids = [u for u, _ in cycle] + [cycle[0][0]]
        raise OntologyError(
            f"{source}: the child links form a cycle: {' -> '.join(ids)} "
            f"(at id {cycle[0][0]!r})"
        )
    return Built(classes, graph, topo, shallow, deep)


def json_records(text: str | bytes, source: str, max_bytes: int) -> Any:
    """The entries of JSON text; a syntax error is reported with its line and column."""
    if len(text) > max_bytes:
        raise OntologyError(
            f"{source}: {len(text)} bytes is over the limit of {max_bytes} "
            "(raise max_bytes to accept it)"
        )
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise OntologyError(f"{source}: not UTF-8 text ({exc})") from None
    try:
        records = json.loads(text)
    except json.JSONDecodeError as exc:
        raise OntologyError(
            f"{source}: not valid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
        ) from None
    except RecursionError:
        raise OntologyError(f"{source}: JSON nested too deeply") from None
    return records


def file_bytes(path: Path, max_bytes: int) -> bytes:
    """The bytes of an ontology file, refused when missing, unreadable or too large."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise OntologyError(f"ontology file {str(path)!r} does not exist") from None
    if size > max_bytes:
        raise OntologyError(
            f"{path}: {size} bytes is over the limit of {max_bytes} "
            "(raise max_bytes to accept it)"
        )
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise OntologyError(f"{path}: cannot be read ({exc})") from None
    return data


def node_link_records(data: Mapping[str, Any] | Any) -> tuple[list[dict[str, Any]], str]:
    """``(entries, source)`` from node-link data (a dict or a JSON file path)."""
    source = "<node-link>"
    if not isinstance(data, Mapping):
        source = str(data)
        try:
            data = json.loads(Path(data).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise OntologyError(f"{source}: not a readable node-link JSON file ({exc})") \
                from None
    if not isinstance(data, Mapping) or not isinstance(data.get("nodes"), list):
        raise OntologyError(f"{source}: not node-link data (no 'nodes' list)")
    nodes = data["nodes"]
    children: dict[str, list[str]] = {}
    for link in data.get("links", []):
        if isinstance(link, Mapping):
            children.setdefault(link.get("source"), []).append(link.get("target"))
    records = []
    for node in nodes:
        if not isinstance(node, Mapping):
            raise OntologyError(f"{source}: node {node!r} is not an object")
        record = {k: node[k] for k in ("id", "name", "description", "citation_uri",
                                       "positive_examples", "restrictions") if k in node}
        record["child_ids"] = node.get("child_ids", children.get(node.get("id"), []))
        records.append(record)
    return records, source
