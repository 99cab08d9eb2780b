"""Closures of the ontology graph: ancestor and descendant sets (refused past a size limit
as they grow), path counts and the ancestor matrix used for label propagation."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import scipy.sparse as sp

from audioset_data.errors import OntologyError

#: Path counts saturate here, so counting never grows into huge integers.
COUNT_CAP = 1 << 62


def closure_sets(order: Iterable[str], links: Mapping[str, Any], limit: int,
                 source: str) -> dict[str, frozenset[str]]:
    """Ancestor (or descendant) sets: ``order`` lists every class after those that ``links``
    gives for it (its parents, or its children).

    Both directions hold the same number of pairs, so one limit serves both; it is checked as
    the sets grow, so a crafted file costs at most the limit before it is refused.
    """
    sets: dict[str, frozenset[str]] = {}
    total = 0
    for node in order:
        near = links[node]
        sets[node] = frozenset().union(*(sets[p] | {p} for p in near))
        total += len(sets[node])
        if total > limit:
            raise OntologyError(
                f"{source}: the classes have more than {limit:,} (class, ancestor) "
                f"pairs in all (the count passed the limit at id {node!r}), over the "
                "closure limit (raise max_closure when loading to accept it)"
            )
    return sets


def path_counts(topo: Iterable[str], pred: Mapping[str, Any]) -> dict[str, int]:
    """Number of paths from a root to each class (saturating at :data:`COUNT_CAP`)."""
    counts: dict[str, int] = {}
    for node in topo:
        ups = pred[node]
        counts[node] = min(sum(counts[p] for p in ups), COUNT_CAP) if ups else 1
    return counts


def closure_matrix(ancestors: Mapping[str, frozenset[str]],
                   order: Mapping[str, int]) -> sp.csr_array:
    """``C[i, j]`` true when class j is an ancestor of class i (positions in ``order``), or
    i == j."""
    rows: list[int] = []
    cols: list[int] = []
    for cid, ups in ancestors.items():
        i = order[cid]
        rows.append(i)
        cols.append(i)
        rows.extend([i] * len(ups))
        cols.extend(order[u] for u in ups)
    n = len(order)
    data = np.ones(len(rows), dtype=bool)
    return sp.csr_array((data, (np.asarray(rows), np.asarray(cols))), shape=(n, n))


def upward_paths(cid: str, pred: Mapping[str, Any], order: Mapping[str, int]) -> list[list[str]]:
    """Every path from a root down to ``cid``, shortest first, then in file order.

    Depth-first up the parent links with an explicit stack: one path under construction,
    copied (reversed) at each root, so the work is the size of the answer and nothing recurses.
    """
    paths: list[list[str]] = []
    walk = [cid]
    stack = [iter(pred[cid])]
    if not pred[cid]:
        paths.append([cid])
    while stack:
        up = next(stack[-1], None)
        if up is None:
            stack.pop()
            walk.pop()
        elif pred[up]:
            walk.append(up)
            stack.append(iter(pred[up]))
        else:
            walk.append(up)
            paths.append(walk[::-1])
            walk.pop()
    return sorted(paths, key=lambda p: (len(p), [order[c] for c in p]))
