"""Draw part of the ontology as an indented tree, to a PNG file, with matplotlib alone.

Each class gets its own row (depth-first, children in file order) and is joined to its parent by
an elbow line, so labels never overlap whatever their length. A class with several parents is
drawn under each of them. No graph-layout program is needed.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from audioset_data.config import PathLike
from audioset_data.errors import OntologyError

if TYPE_CHECKING:
    from .graph import Ontology

logger = logging.getLogger(__name__)

#: Refuse to draw more rows than this (a figure taller than matplotlib can render).
MAX_ROWS = 5000
#: ``tree_rows`` stops past this many rows: a class with several parents is repeated under
#: each, so a DAG's tree can be exponentially larger than the DAG (the official one has 690).
MAX_TREE_ROWS = 100_000


def tree_rows(
    ontology: Ontology,
    root: str | None = None,
    depth: int | None = None,
    *,
    max_rows: int = MAX_TREE_ROWS,
) -> list[tuple[int, str, int | None]]:
    """Depth-first rows ``(level, id, parent_row)`` of the tree under ``root``.

    ``root=None`` walks every root of the ontology. ``depth`` limits how many levels below the
    root are shown (0 = the root alone). A class with several parents appears once under each,
    so the rows can outnumber the classes by far; more than ``max_rows`` raises
    :class:`~audioset_data.errors.OntologyError`.

    Examples
    --------
    >>> from audioset_data.ontology import Ontology
    >>> onto = Ontology.from_records([
    ...     {"id": "/a", "name": "A", "child_ids": ["/b", "/c"]},
    ...     {"id": "/b", "name": "B", "child_ids": ["/c"]},
    ...     {"id": "/c", "name": "C", "child_ids": []}])
    >>> tree_rows(onto, "/a")
    [(0, '/a', None), (1, '/b', 0), (2, '/c', 1), (1, '/c', 0)]
    """
    if depth is not None and depth < 0:
        raise OntologyError(f"depth must be 0 or more, not {depth}")
    starts = ontology.roots() if root is None else [ontology.resolve(root)]
    rows: list[tuple[int, str, int | None]] = []
    stack: list[tuple[int, str, int | None]] = [(0, s, None) for s in reversed(starts)]
    while stack:
        level, cid, parent_row = stack.pop()
        if len(rows) == max_rows:
            where = "its roots" if root is None else repr(starts[0])
            raise OntologyError(
                f"{ontology.source}: the tree under {where} has more than {max_rows:,} rows "
                "(a class with several parents is repeated under each); pick a lower root or "
                "a smaller depth"
            )
        rows.append((level, cid, parent_row))
        if depth is None or level < depth:
            me = len(rows) - 1
            stack.extend((level + 1, c, me) for c in reversed(ontology[cid].child_ids))
    return rows


def plot_subtree(
    ontology: Ontology,
    root: str | None,
    path: PathLike,
    depth: int | None = None,
    *,
    dpi: int = 100,
    row_height: float = 0.22,
    title: str | None = None,
) -> Path:
    """Draw ``root`` and everything below it (to ``depth`` levels) as a PNG.

    Abstract classes are drawn hollow with italic grey names; blacklisted classes in red;
    a ``(+N)`` suffix counts the descendants hidden by ``depth``.

    Parameters
    ----------
    ontology
        The ontology to draw from.
    root
        Id or name of the top class; ``None`` draws every root.
    path
        Output file (PNG).
    depth
        Levels shown below ``root`` (``None`` = all).

    Returns
    -------
    Path
        The written file.
    """
    from matplotlib.figure import Figure

    rows = tree_rows(ontology, root, depth, max_rows=MAX_ROWS)
    n = len(rows)
    max_level = max(level for level, _, _ in rows)
    labels = []
    for level, cid, _ in rows:
        cls = ontology[cid]
        label = cls.name
        hidden = len(ontology.descendants(cid)) if depth is not None and level == depth else 0
        if hidden:
            label += f"  (+{hidden})"
        labels.append(label)
    longest = max(len(s) for s in labels)
    step = 0.35  # inches per level
    width = min(max(4.0, (max_level + 1) * step + longest * 0.075 + 0.6), 200.0)
    height = min(max(1.5, (n + 3.4) * row_height), 650.0)

    fig = Figure(figsize=(width, height), dpi=dpi)
    ax = fig.add_axes((0.0, 0.0, 1.0, 1.0))
    ax.set_xlim(-0.4, width / step - 0.4)
    ax.set_ylim(n + 0.6, -2.8)
    ax.axis("off")
    ax.text(-0.3, -2.1, title or _default_title(ontology, root, depth, n),
            fontsize=10, weight="bold", va="center")

    for i, (level, _, parent_row) in enumerate(rows):
        if parent_row is not None:
            px = rows[parent_row][0]
            ax.plot([px, px, level], [parent_row, i, i], color="0.55", lw=0.8,
                    solid_joinstyle="miter", zorder=1)
    for i, (level, cid, _) in enumerate(rows):
        cls = ontology[cid]
        color = "tab:red" if cls.blacklisted else ("0.45" if cls.abstract else "black")
        face = "white" if cls.abstract else color
        ax.plot([level], [i], marker="o", ms=4.5, mfc=face, mec=color, mew=1.0, zorder=2,
                linestyle="none")
        ax.text(level + 0.3, i, labels[i], fontsize=8, va="center", color=color,
                style="italic" if cls.abstract else "normal", zorder=3)

    keys = (("class", "black", "black"), ("abstract", "white", "0.45"),
            ("blacklist", "tab:red", "tab:red"))
    for k, (text, face, edge) in enumerate(keys):
        ax.plot([k * 3.5], [-1.1], marker="o", ms=4.5, mfc=face, mec=edge, linestyle="none")
        ax.text(k * 3.5 + 0.3, -1.1, text, fontsize=7, va="center", color=edge)

    path = Path(path)
    fig.savefig(path, format="png", dpi=dpi)
    logger.info("drew %d rows to %s", n, path)
    return path


def _default_title(ontology: Ontology, root: str | None, depth: int | None, n: int) -> str:
    what = "AudioSet ontology" if root is None else ontology[ontology.resolve(root)].name
    limit = "" if depth is None else f", {depth} level(s) below"
    return f"{what} ({n} rows{limit})"


__all__ = ["MAX_ROWS", "MAX_TREE_ROWS", "plot_subtree", "tree_rows"]
