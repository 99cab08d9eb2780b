"""The AudioSet ontology as a read-only mapping over a directed acyclic graph.

``ontology.json`` lists 632 sound classes; each names its children, so the hierarchy is a DAG
(some classes have up to four parents), not a tree. :class:`Ontology` validates the file, keeps
both edge directions in a private :class:`networkx.DiGraph` (parent → child) and answers the
usual questions (ancestors, descendants, paths to a root, lowest common ancestors) from
precomputed closures, so queries in training loops cost a dictionary look-up.

A crafted file can be small and still make those closures huge (a long chain makes them
quadratic, a ladder of diamonds makes the number of paths exponential), so besides the size caps
there are limits on depth (checked on load), on the closures' total size (checked when they are
first built) and on the number of paths one class may have; going over any of them raises
:class:`~audioset_data.errors.OntologyError` naming the source and the limit. Nothing in this
module recurses, so depth alone never raises ``RecursionError``.

Examples
--------
>>> onto = Ontology.from_records([
...     {"id": "/a", "name": "Animal", "child_ids": ["/d", "/p"], "restrictions": ["abstract"]},
...     {"id": "/p", "name": "Domestic animals, pets", "child_ids": ["/d"]},
...     {"id": "/d", "name": "Dog", "child_ids": []},
... ])
>>> len(onto), onto.roots(), sorted(onto.ancestors("Dog"))
(3, ['/a'], ['/a', '/p'])
>>> onto.paths_to_root("/d")
[['/a', '/d'], ['/a', '/p', '/d']]
>>> onto.depth("Dog"), onto.depth("Dog", how="max")
(2, 3)
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import networkx as nx
import numpy as np
import scipy.sparse as sp

from audioset_data.config import PathLike
from audioset_data.errors import OntologyError, UnknownClassError
from audioset_data.remote import fetch

from .build import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_CLOSURE,
    DEFAULT_MAX_DEPTH,
    DEFAULT_MAX_ENTRIES,
    DEFAULT_MAX_PATHS,
    build_graph,
    file_bytes,
    json_records,
    node_link_records,
)
from .closure import COUNT_CAP, closure_matrix, closure_sets, path_counts, upward_paths
from .export import node_link, ontology_frame, write_graphml
from .plot import plot_subtree
from .records import KNOWN_RESTRICTIONS, OntologyClass, PositiveExample, parse_example

logger = logging.getLogger(__name__)




class Ontology(Mapping[str, OntologyClass]):
    """The AudioSet ontology: a read-only mapping ``id -> OntologyClass`` over a DAG.

    Build one with :meth:`load` (verified official file, cached), :meth:`from_file`,
    :meth:`from_json_text` or :meth:`from_records`. Every query that takes a class accepts an
    id or a display name (see :meth:`resolve`). The object is immutable once built.

    Parameters
    ----------
    records
        Entries in the ``ontology.json`` format (``id``, ``name`` and ``child_ids`` are
        required; ``description``, ``citation_uri``, ``positive_examples`` and
        ``restrictions`` default to empty).
    source
        Where the records came from; error messages and ``repr`` name it.
    max_entries
        Refuse inputs with more entries than this.
    max_depth
        Refuse inputs where a path from a root to a class holds more classes than this.
    max_closure
        Largest number of (class, ancestor) pairs the ontology may hold in all; checked when
        the ancestor and descendant sets are first built (the first query that needs them).

    Raises
    ------
    OntologyError
        The records are malformed, empty or over a limit: the message names the source, the
        entry and the problem.
    """

    def __init__(
        self,
        records: Sequence[Any],
        source: str = "<records>",
        *,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        max_depth: int = DEFAULT_MAX_DEPTH,
        max_closure: int = DEFAULT_MAX_CLOSURE,
    ) -> None:
        built = build_graph(records, source, max_entries=max_entries, max_depth=max_depth)
        classes, graph, topo = built.classes, built.graph, built.topo
        shallow, deep = built.shallow, built.deep

        by_name: dict[str, str] = {}
        by_folded: dict[str, str] = {}
        for cls in classes.values():
            if cls.name in by_name:
                logger.warning("%s: name %r is used by %s and %s; look-ups by name return %s",
                               source, cls.name, by_name[cls.name], cls.id, by_name[cls.name])
            by_name.setdefault(cls.name, cls.id)
            by_folded.setdefault(cls.name.casefold(), cls.id)

        # everything validated: assign at once, so a failed build leaves nothing half-loaded
        self.source = source
        self._classes = classes
        self._graph = graph
        self._by_name = by_name
        self._by_folded = by_folded
        self._order = {cid: i for i, cid in enumerate(classes)}
        self._ids = tuple(classes)
        self._topo = topo
        self._depths = (shallow, deep)
        self._limits = {"max_entries": max_entries, "max_depth": max_depth,
                        "max_closure": max_closure}
        self._closure_error: str | None = None

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_records(
        cls,
        records: Sequence[Any],
        source: str = "<records>",
        *,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        max_depth: int = DEFAULT_MAX_DEPTH,
        max_closure: int = DEFAULT_MAX_CLOSURE,
    ) -> Ontology:
        """Build from a list of dicts in the ``ontology.json`` format."""
        return cls(records, source, max_entries=max_entries, max_depth=max_depth,
                   max_closure=max_closure)

    @classmethod
    def from_json_text(
        cls,
        text: str | bytes,
        source: str = "<text>",
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        max_depth: int = DEFAULT_MAX_DEPTH,
        max_closure: int = DEFAULT_MAX_CLOSURE,
    ) -> Ontology:
        """Parse JSON text; a syntax error is reported with its line and column."""
        records = json_records(text, source, max_bytes)
        return cls(records, source, max_entries=max_entries, max_depth=max_depth,
                   max_closure=max_closure)

    @classmethod
    def from_file(
        cls,
        path: PathLike,
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        max_depth: int = DEFAULT_MAX_DEPTH,
        max_closure: int = DEFAULT_MAX_CLOSURE,
    ) -> Ontology:
        """Read and validate an ``ontology.json`` file.

        Raises
        ------
        OntologyError
            The file is missing, too large, not UTF-8 JSON, not a valid ontology, or over a
            limit (see :class:`Ontology`).
        """
        path = Path(path)
        data = file_bytes(path, max_bytes)
        return cls.from_json_text(data, source=str(path), max_bytes=max_bytes,
                                  max_entries=max_entries, max_depth=max_depth,
                                  max_closure=max_closure)

    @classmethod
    def load(
        cls,
        root: PathLike | None = None,
        base_url: str | None = None,
        force: bool = False,
        accept_new_upstream: bool = False,
        *,
        progress: bool = True,
    ) -> Ontology:
        """Fetch (or reuse the verified cached) official ``ontology.json`` and load it.

        After the first call the file comes from the cache under the data root, so this works
        offline; a corrupted cached copy is detected by its checksum and fetched again.

        Parameters
        ----------
        root
            Data root (default ``$AUDIOSET_DATA_HOME`` or the user cache folder).
        base_url
            Mirror address replacing the official one (also ``$AUDIOSET_ONTOLOGY_BASE_URL``).
        force
            Fetch again even when a verified copy is cached.
        accept_new_upstream
            Accept a file whose checksum differs from the pinned release.
        progress
            Show a download progress bar.
        """
        path = fetch("ontology", root=root, base_url=base_url, force=force,
                     accept_new_upstream=accept_new_upstream, progress=progress)
        return cls.from_file(path)

    @classmethod
    def from_node_link(
        cls,
        data: Mapping[str, Any] | PathLike,
        *,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        max_depth: int = DEFAULT_MAX_DEPTH,
        max_closure: int = DEFAULT_MAX_CLOSURE,
    ) -> Ontology:
        """Rebuild from the output of :meth:`to_node_link` (a dict or a JSON file path)."""
        records, source = node_link_records(data)
        return cls(records, source, max_entries=max_entries, max_depth=max_depth,
                   max_closure=max_closure)

    # ------------------------------------------------------------------ mapping protocol
    def __getitem__(self, key: str) -> OntologyClass:
        try:
            return self._classes[key]
        except (KeyError, TypeError):
            raise UnknownClassError(self._unknown_message(key)) from None

    def __contains__(self, key: object) -> bool:
        try:
            return key in self._classes
        except TypeError:
            return False

    def __iter__(self) -> Iterator[str]:
        return iter(self._ids)

    def __len__(self) -> int:
        return len(self._classes)

    def __repr__(self) -> str:
        return f"Ontology({len(self)} classes, {len(self.roots())} roots, from {self.source})"

    # ------------------------------------------------------------------ look-ups
    def resolve(self, key: str) -> str:
        """Return the id for an id, an exact display name, or a case-insensitive name.

        Raises
        ------
        UnknownClassError
            Nothing matches; the message lists close names.

        Examples
        --------
        >>> onto = Ontology.from_records([{"id": "/d", "name": "Dog", "child_ids": []}])
        >>> onto.resolve("/d"), onto.resolve("Dog"), onto.resolve("dOG")
        ('/d', '/d', '/d')
        >>> onto.resolve("Dgo")
        Traceback (most recent call last):
        ...
        audioset_data.errors.UnknownClassError: unknown class 'Dgo'; close names: 'Dog' (/d)
        """
        if isinstance(key, str):
            if key in self._classes:
                return key
            found = self._by_name.get(key) or self._by_folded.get(key.strip().casefold())
            if found is not None:
                return found
        raise UnknownClassError(self._unknown_message(key))

    def _unknown_message(self, key: object) -> str:
        msg = f"unknown class {key!r}"
        if isinstance(key, str) and key:
            folded = {n.casefold(): n for n in self._by_name}
            close = difflib.get_close_matches(key.casefold(), list(folded), n=5, cutoff=0.6)
            ids = [self._by_name[folded[c]] for c in close]
            for word in sorted(set(key.casefold().replace(",", " ").split()), key=len,
                               reverse=True):
                if len(word) >= 3:
                    for hit in self.search(word):
                        if len(ids) == 5:  # a word can match every class: stop at five
                            break
                        if hit not in ids:
                            ids.append(hit)
            if ids:
                names = ", ".join(f"{self._classes[h].name!r} ({h})" for h in ids)
                return f"{msg}; close names: {names}"
        return f"{msg}; no close names (try a search)"

    def get(self, key: str, default: Any = None) -> Any:
        """The class for an id, else ``default`` (no close-name search for a miss)."""
        try:
            return self._classes[key]
        except (KeyError, TypeError):
            return default

    def by_name(self, name: str) -> OntologyClass:
        """The class with this display name (exact, else case-insensitive)."""
        found = self._by_name.get(name) if isinstance(name, str) else None
        if found is None and isinstance(name, str):
            found = self._by_folded.get(name.strip().casefold())
        if found is None:
            raise UnknownClassError(self._unknown_message(name))
        return self._classes[found]

    def search(self, text: str) -> list[str]:
        """Ids whose name contains ``text`` (case-insensitive).

        Exact matches come first, then names starting with ``text``, then the rest, each in
        file order.

        Examples
        --------
        >>> onto = Ontology.from_records([
        ...     {"id": "/c", "name": "Chewing, mastication", "child_ids": []},
        ...     {"id": "/x", "name": "Mastication", "child_ids": []}])
        >>> onto.search("MASTICATION")
        ['/x', '/c']
        """
        needle = text.strip().casefold()
        if not needle:
            return []
        ranked = []
        for cid, cls in self._classes.items():
            name = cls.name.casefold()
            if needle in name:
                rank = 0 if name == needle else 1 if name.startswith(needle) else 2
                ranked.append((rank, self._order[cid], cid))
        return [cid for *_, cid in sorted(ranked)]

    # ------------------------------------------------------------------ graph queries
    @property
    def graph(self) -> nx.DiGraph:
        """A frozen copy of the graph (edges parent → child, JSON fields as node attributes).

        Lists are stored as tuples and ``restrictions`` as a sorted tuple. Each access makes a
        fresh copy (about a millisecond); keep it in a variable for repeated use.
        """
        return nx.freeze(self._graph.copy())

    def parents(self, key: str) -> list[str]:
        """Direct parents, in file order."""
        cid = self.resolve(key)
        return sorted(self._graph.predecessors(cid), key=self._order.__getitem__)

    def children(self, key: str) -> list[str]:
        """Direct children, in the order the file lists them."""
        return list(self._classes[self.resolve(key)].child_ids)

    def ancestors(self, key: str, with_self: bool = False) -> set[str]:
        """All classes above ``key`` (through every parent)."""
        cid = self.resolve(key)
        out = set(self._ancestors[cid])
        if with_self:
            out.add(cid)
        return out

    def descendants(self, key: str, with_self: bool = False) -> set[str]:
        """All classes below ``key``."""
        cid = self.resolve(key)
        out = set(self._descendants[cid])
        if with_self:
            out.add(cid)
        return out

    def roots(self) -> list[str]:
        """Classes with no parent, in file order."""
        return [c for c in self._ids if self._graph.in_degree(c) == 0]

    def leaves(self, under: str | None = None) -> list[str]:
        """Classes with no child, in file order; only those at or below ``under`` if given."""
        pool: Iterable[str] = self._ids
        if under is not None:
            below = self.descendants(under, with_self=True)
            pool = (c for c in self._ids if c in below)
        return [c for c in pool if not self._classes[c].child_ids]

    def depth(self, key: str, how: Literal["min", "max"] = "min") -> int:
        """Level of a class, a root being 1.

        A class with several parents can sit at several levels; ``how="min"`` (the default)
        counts the shortest path from a root, ``how="max"`` the longest.
        """
        cid = self.resolve(key)
        if how == "min":
            return self._depths[0][cid]
        if how == "max":
            return self._depths[1][cid]
        raise ValueError(f"how must be 'min' or 'max', not {how!r}")

    def paths_to_root(
        self, key: str, *, max_paths: int = DEFAULT_MAX_PATHS
    ) -> list[list[str]]:
        """Every path from a root down to ``key`` (root first, ``key`` last), shortest first.

        Paths with the same length follow file order. The number of paths can grow
        exponentially with depth in a DAG (each diamond doubles it), so it is counted first and
        a class with more than ``max_paths`` is refused rather than enumerated.

        Parameters
        ----------
        key
            Id or name of the class.
        max_paths
            Refuse classes with more paths to a root than this.

        Returns
        -------
        list of list of str
            Ids along each path.

        Raises
        ------
        OntologyError
            The class has more than ``max_paths`` paths to a root.
        """
        cid = self.resolve(key)
        count = self._path_counts[cid]
        if count > max_paths:
            many = f"{count:,}" if count < COUNT_CAP else f"more than {COUNT_CAP:,}"
            raise OntologyError(
                f"{self.source}: class {cid!r} ({self._classes[cid].name!r}) has {many} paths "
                f"to a root, over the limit of max_paths={max_paths:,} (raise max_paths to "
                "list them, or use depth() or ancestors())"
            )
        return upward_paths(cid, self._graph.pred, self._order)

    def lowest_common_ancestors(self, a: str, b: str) -> set[str]:
        """Deepest classes that are ancestors (or self) of both; empty if none are shared.

        In a DAG there can be several; none of the returned classes is an ancestor of another.
        """
        common = self.ancestors(a, with_self=True) & self.ancestors(b, with_self=True)
        return {c for c in common if not (self._descendants[c] & common)}

    def is_abstract(self, key: str) -> bool:
        """True when the class carries the ``abstract`` restriction."""
        return self._classes[self.resolve(key)].abstract

    def is_blacklisted(self, key: str) -> bool:
        """True when the class carries the ``blacklist`` restriction."""
        return self._classes[self.resolve(key)].blacklisted

    def filter(self, abstract: bool | None = None, blacklist: bool | None = None) -> list[str]:
        """Ids (file order) matching the restriction flags; ``None`` means either."""
        return [
            c for c, cls in self._classes.items()
            if (abstract is None or cls.abstract == abstract)
            and (blacklist is None or cls.blacklisted == blacklist)
        ]

    def subtree(self, key: str) -> Ontology:
        """A new ontology holding ``key`` and everything below it (``key`` is its only root)."""
        cid = self.resolve(key)
        keep = self._descendants[cid] | {cid}
        records = [self._classes[c].to_record() for c in self._ids if c in keep]
        return type(self)(records, f"{self.source} [subtree {cid}]", **self._limits)

    # ------------------------------------------------------------------ matrices
    def _closure_sets(self, order: Iterable[str], links: Mapping[str, Any]
                      ) -> dict[str, frozenset[str]]:
        """Ancestor (or descendant) sets, refused past the closure limit (remembered, so a
        crafted file is refused once and then fast)."""
        if self._closure_error is not None:
            raise OntologyError(self._closure_error)
        try:
            return closure_sets(order, links, self._limits["max_closure"], self.source)
        except OntologyError as exc:
            self._closure_error = str(exc)
            raise

    @cached_property
    def _ancestors(self) -> dict[str, frozenset[str]]:
        return self._closure_sets(self._topo, self._graph.pred)

    @cached_property
    def _descendants(self) -> dict[str, frozenset[str]]:
        return self._closure_sets(reversed(self._topo), self._graph.succ)

    @cached_property
    def _path_counts(self) -> dict[str, int]:
        """Number of paths from a root to each class (saturating)."""
        return path_counts(self._topo, self._graph.pred)

    @cached_property
    def _closure(self) -> sp.csr_array:
        """``C[i, j]`` true when class j is an ancestor of class i (file order), or i == j."""
        return closure_matrix(self._ancestors, self._order)

    def _positions(self, keys: Iterable[str]) -> np.ndarray:
        order = self._order
        return np.fromiter(
            (order[k] if k in order else order[self.resolve(k)] for k in keys), dtype=np.int64
        )

    def ancestor_matrix(
        self,
        row_ids: Iterable[str],
        col_ids: Iterable[str] | None = None,
        with_self: bool = True,
    ) -> sp.csr_array:
        """Boolean matrix ``M`` with ``M[i, j]`` true when ``col_ids[j]`` is an ancestor of
        ``row_ids[i]`` (or the same class, when ``with_self``).

        With a clip × label matrix ``Y`` whose columns follow ``col_ids`` = ``row_ids``,
        ``Y @ M`` marks every labelled ancestor too (label propagation in one sparse product).

        Examples
        --------
        >>> onto = Ontology.from_records([
        ...     {"id": "/a", "name": "Animal", "child_ids": ["/d"]},
        ...     {"id": "/d", "name": "Dog", "child_ids": []}])
        >>> onto.ancestor_matrix(["/a", "Dog"]).toarray()
        array([[ True, False],
               [ True,  True]])
        """
        rows = self._positions(row_ids)
        cols = rows if col_ids is None else self._positions(col_ids)
        closure = self._closure
        if not with_self:
            closure = closure - sp.eye_array(len(self), dtype=bool, format="csr")
        out = closure[rows][:, cols]
        return sp.csr_array(out, dtype=bool)

    # ------------------------------------------------------------------ export
    def to_records(self) -> list[dict[str, Any]]:
        """The ontology as ``ontology.json`` entries (``from_records`` reads them back)."""
        return [cls.to_record() for cls in self._classes.values()]

    def to_frame(self, labels: Any = None):  # -> pandas.DataFrame
        """One row per class: id, name, depths, parents, children, restrictions, counts;
        ``labels`` (a label index) adds a nullable ``label_index`` column."""
        return ontology_frame(self, labels)

    def to_graphml(self, path: PathLike) -> Path:
        """Write GraphML (edges parent → child; list fields joined by single spaces)."""
        return write_graphml(self, path)

    def to_node_link(self, path: PathLike | None = None) -> dict[str, Any] | Path:
        """Node-link data (``nodes`` and ``links``), JSON-serialisable; written to ``path``
        and the path returned when given, else the dict returned."""
        return node_link(self, path)

    def plot_subtree(self, root: str | None, path: PathLike, depth: int | None = None,
                     **kwargs: Any) -> Path:
        """Draw ``root`` and its descendants (all roots when ``None``) to a PNG file.

        See :func:`audioset_data.ontology.plot.plot_subtree` for the options.
        """
        return plot_subtree(self, root, path, depth=depth, **kwargs)


__all__ = [
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_CLOSURE",
    "DEFAULT_MAX_DEPTH",
    "DEFAULT_MAX_ENTRIES",
    "DEFAULT_MAX_PATHS",
    "KNOWN_RESTRICTIONS",
    "Ontology",
    "OntologyClass",
    "PositiveExample",
    "parse_example",
]
