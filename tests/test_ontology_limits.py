"""Crafted ontologies inside the size caps: depth, closure and path limits keep every query bounded.

Each crafted input is small on disk yet used to cost gigabytes or minutes (a chain makes the
closures quadratic, a ladder of diamonds makes the paths exponential). The tests run each call
under ``tracemalloc`` and check its peak, which does not depend on how loaded the machine is;
the wall-clock bound is only a generous backstop (the calls take well under a second).
"""

from __future__ import annotations

import json
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

import networkx as nx
import pytest

from audioset_data.errors import OntologyError
from audioset_data.ontology import (
    DEFAULT_MAX_CLOSURE,
    DEFAULT_MAX_DEPTH,
    DEFAULT_MAX_PATHS,
    Ontology,
    plot_subtree,
    tree_rows,
)
from audioset_data.ontology.plot import MAX_TREE_ROWS

MB = 1024**2
BACKSTOP_S = 60.0


def chain(n: int) -> list[dict]:
    """``/c0 -> /c1 -> ... -> /c{n-1}``: one class per level."""
    return [{"id": f"/c{i}", "name": f"C{i}", "child_ids": [f"/c{i + 1}"] if i + 1 < n else []}
            for i in range(n)]


def diamond_ladder(levels: int) -> list[dict]:
    """Two classes per level, each a child of both classes of the level above: the classes of
    level ``k`` (from 0) have ``2**k`` paths to a root."""
    records = []
    for k in range(levels):
        below = [f"/l{k + 1}a", f"/l{k + 1}b"] if k + 1 < levels else []
        records += [{"id": f"/l{k}a", "name": f"L{k}a", "child_ids": below},
                    {"id": f"/l{k}b", "name": f"L{k}b", "child_ids": list(below)}]
    return records


def bounded(fn: Callable[[], Any]) -> tuple[Any, float]:
    """Run ``fn`` and return its result (or the OntologyError it raised) and its peak MiB."""
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        result = fn()
    except OntologyError as exc:
        result = exc
    finally:
        peak = tracemalloc.get_traced_memory()[1] / MB
        tracemalloc.stop()
    assert time.perf_counter() - t0 < BACKSTOP_S
    return result, peak


# ---------------------------------------------------------------------- chain of 10,001
def test_chain_of_10001_is_refused_on_load_by_depth():
    records = chain(10_001)
    err, peak = bounded(lambda: Ontology.from_records(records, "chain.json"))
    assert isinstance(err, OntologyError)
    assert str(err) == (
        "chain.json: entry 100 (id '/c100', 'C100') ends a path of 101 classes from a root, "
        "over the depth limit of 100 (raise max_depth to accept it)")
    assert peak < 64
    # the same file through JSON text is refused the same way
    with pytest.raises(OntologyError, match=r"^chain.json: entry 100 .*max_depth"):
        Ontology.from_json_text(json.dumps(records), "chain.json")


def test_chain_of_10001_closures_stop_at_the_closure_limit():
    # accepted with a raised depth limit, its closures (50 million pairs, 2.35 GB before the
    # limit) are refused as soon as they pass max_closure
    onto = Ontology.from_records(chain(10_001), "chain.json", max_depth=20_000)
    err, peak = bounded(lambda: onto.ancestors("/c10000"))
    assert isinstance(err, OntologyError)
    assert str(err).startswith(
        "chain.json: the classes have more than 1,000,000 (class, ancestor) pairs in all")
    assert "max_closure" in str(err)
    assert peak < 150  # about 45 MiB: the sets built before the count passed the limit
    # the refusal is remembered: later closure queries fail at once, allocating nothing
    for query in (lambda: onto.ancestors("/c1"), lambda: onto.descendants("/c0"),
                  lambda: onto.ancestor_matrix(["/c0"]),
                  lambda: onto.lowest_common_ancestors("/c1", "/c2"),
                  lambda: onto.subtree("/c9999")):
        again, peak = bounded(query)
        assert isinstance(again, OntologyError) and str(again) == str(err)
        assert peak < 1
    # queries that need no closure still answer, iteratively and in linear memory
    (depth, paths), peak = bounded(lambda: (onto.depth("/c10000", how="max"),
                                            onto.paths_to_root("/c10000")))
    assert depth == 10_001 and paths == [[f"/c{i}" for i in range(10_001)]]
    assert peak < 16


@pytest.mark.parametrize("limit", [1225, 1224])
def test_closure_limit_is_exact(limit):
    onto = Ontology.from_records(chain(50), max_closure=limit)  # 50 * 49 / 2 = 1225 pairs
    if limit >= 1225:
        assert len(onto.ancestors("/c49")) == 49 and len(onto.descendants("/c0")) == 49
    else:
        with pytest.raises(OntologyError, match="more than 1,224 .*max_closure"):
            onto.descendants("/c0")


# ---------------------------------------------------------------------- 45-level diamond ladder
@pytest.fixture(scope="module")
def ladder() -> Ontology:
    return Ontology.from_records(diamond_ladder(45), "ladder.json")


def test_diamond_ladder_of_45_levels_refuses_its_paths(ladder):
    assert len(ladder) == 90 and ladder.roots() == ["/l0a", "/l0b"]
    # 2**44 paths (4.2 million built in 52 s and 4.5 GB before the limit): counted, not listed
    err, peak = bounded(lambda: ladder.paths_to_root("/l44a"))
    assert isinstance(err, OntologyError)
    assert str(err) == (
        "ladder.json: class '/l44a' ('L44a') has 17,592,186,044,416 paths to a root, over the "
        "limit of max_paths=10,000 (raise max_paths to list them, or use depth() or "
        "ancestors())")
    assert peak < 1
    # everything else about the bottom class is cheap
    (anc, low, high), peak = bounded(lambda: (ladder.ancestors("/l44a"), ladder.depth("/l44a"),
                                              ladder.depth("/l44a", how="max")))
    assert len(anc) == 88 and low == high == 45
    assert peak < 1
    assert ladder.lowest_common_ancestors("/l44a", "/l44b") == {"/l43a", "/l43b"}


def test_diamond_ladder_paths_up_to_the_limit(ladder):
    assert DEFAULT_MAX_PATHS == 10_000
    paths, peak = bounded(lambda: ladder.paths_to_root("/l13b"))  # 2**13 = 8,192 paths
    assert len(paths) == 8192 and len(set(map(tuple, paths))) == 8192
    assert all(len(p) == 14 and p[-1] == "/l13b" for p in paths)
    assert paths == sorted(paths, key=lambda p: [ladder._order[c] for c in p])
    assert peak < 16
    with pytest.raises(OntologyError, match="'/l14a' .* has 16,384 paths"):
        ladder.paths_to_root("/l14a")
    assert len(ladder.paths_to_root("/l14a", max_paths=16_384)) == 16_384
    small = Ontology.from_records(diamond_ladder(6))  # networkx lists every path downwards
    g = small.graph
    for cid in small:
        expected = [p for r in small.roots() for p in nx.all_simple_paths(g, r, cid)] or [[cid]]
        assert sorted(small.paths_to_root(cid)) == sorted(expected)


def test_diamond_ladder_tree_rows_are_bounded(ladder, tmp_path):
    # drawn as a tree, every class repeats under each parent: 2**45 rows
    err, peak = bounded(lambda: tree_rows(ladder))
    assert isinstance(err, OntologyError)
    assert str(err).startswith(
        f"ladder.json: the tree under its roots has more than {MAX_TREE_ROWS:,} rows")
    assert peak < 64
    assert len(tree_rows(ladder, "/l40a")) == 2**5 - 1  # small enough near the bottom
    with pytest.raises(OntologyError, match="'/l0a' has more than 5,000 rows"):
        plot_subtree(ladder, "/l0a", tmp_path / "ladder.png")
    assert not (tmp_path / "ladder.png").exists()


# ---------------------------------------------------------------------- deeper than 1,000
def test_chain_deeper_than_1000_is_refused_by_default():
    err, peak = bounded(lambda: Ontology.from_records(chain(1001), "deep.json"))
    assert isinstance(err, OntologyError)
    assert "ends a path of 101 classes" in str(err) and "max_depth" in str(err)
    assert peak < 16


def test_chain_deeper_than_1000_answers_every_query_without_recursion(tmp_path):
    # deeper than Python's recursion limit (1,000): any recursive walk would raise
    # RecursionError; 1,200 classes hold 719,400 pairs, inside the closure limit
    n = 1200
    onto = Ontology.from_records(chain(n), "deep.json", max_depth=n)
    last = f"/c{n - 1}"
    assert onto.depth(last) == onto.depth(last, how="max") == n
    assert len(onto.ancestors(last)) == n - 1 and len(onto.descendants("/c0")) == n - 1
    assert onto.paths_to_root(last) == [[f"/c{i}" for i in range(n)]]
    assert onto.lowest_common_ancestors("/c7", last) == {"/c7"}
    assert onto.ancestor_matrix(list(onto)).nnz == n * (n + 1) // 2
    assert onto.leaves(under="/c3") == [last]
    sub = onto.subtree("/c1")  # keeps the raised depth limit
    assert len(sub) == n - 1 and sub.depth(last, how="max") == n - 1
    assert len(tree_rows(onto)) == n
    assert onto.to_frame()["max_depth"].max() == n
    again = Ontology.from_node_link(onto.to_node_link(), max_depth=n)
    assert again == onto
    assert nx.is_directed_acyclic_graph(onto.graph)


def test_depth_limit_is_exact():
    assert DEFAULT_MAX_DEPTH == 100
    assert Ontology.from_records(chain(100)).depth("/c99") == 100
    with pytest.raises(OntologyError, match="ends a path of 101 classes"):
        Ontology.from_records(chain(101))
    assert len(Ontology.from_records(chain(101), max_depth=101)) == 101
    with pytest.raises(OntologyError, match="max_depth must be 1 or more"):
        Ontology.from_records(chain(1), max_depth=0)


def test_depth_limit_counts_the_longest_path():
    # /c99 is 2 levels down through /short but 100 through the chain
    records = chain(100) + [{"id": "/short", "name": "Short", "child_ids": ["/c99"]}]
    onto = Ontology.from_records(records)
    assert onto.depth("/c99") == 2 and onto.depth("/c99", how="max") == 100
    records[98]["child_ids"].append("/extra")
    records.append({"id": "/extra", "name": "Extra", "child_ids": ["/c99"]})
    with pytest.raises(OntologyError, match=r"entry 99 \(id '/c99', 'C99'\) ends a path of 101"):
        Ontology.from_records(records)


# ---------------------------------------------------------------------- empty list
def test_empty_list_is_refused(tmp_path):
    message = "the list of classes is empty; an ontology needs at least one class"
    with pytest.raises(OntologyError, match=f"^<records>: {message}$"):
        Ontology.from_records([])
    with pytest.raises(OntologyError, match=f"^empty.json: {message}$"):
        Ontology.from_json_text("[]", "empty.json")
    path = tmp_path / "ontology.json"
    path.write_text("[]\n")
    with pytest.raises(OntologyError, match=f"^{path}: {message}$"):
        Ontology.from_file(path)
    with pytest.raises(OntologyError, match=message):
        Ontology.from_node_link({"nodes": [], "links": []})


# ---------------------------------------------------------------------- the real file
def test_real_ontology_fits_the_limits_with_room(shared_data):
    path = shared_data / "ontology" / "ontology.json"
    onto = Ontology.from_file(path)
    pairs = sum(len(onto.ancestors(c)) for c in onto)
    most_paths = max(len(onto.paths_to_root(c)) for c in onto)
    deepest = max(onto.depth(c, how="max") for c in onto)
    assert (deepest, pairs, most_paths, len(tree_rows(onto))) == (6, 1682, 4, 690)
    assert deepest * 10 < DEFAULT_MAX_DEPTH and pairs * 100 < DEFAULT_MAX_CLOSURE
    # the tightest limits it passes are its own figures
    tight = Ontology.from_file(path, max_depth=6, max_closure=1682)
    assert all(len(tight.paths_to_root(c, max_paths=4)) <= 4 for c in tight)
    with pytest.raises(OntologyError, match="max_depth"):
        Ontology.from_file(path, max_depth=5)
    with pytest.raises(OntologyError, match="max_closure"):
        Ontology.from_file(path, max_closure=1681).descendants("Animal")


# ---------------------------------------------------------------------- unknown names
def test_unknown_name_in_many_similar_names_stays_linear(monkeypatch):
    # one word of the key matches all 100,000 names: the close-name list used to test each
    # hit against a growing list (quadratic, about two minutes); now it stops at five
    onto = Ontology.from_records(
        [{"id": f"/x{i}", "name": f"Sound number {i}", "child_ids": []} for i in range(100_000)],
        "many.json")
    consumed = []
    search = Ontology.search

    def counting_search(self, text):
        hits = search(self, text)
        consumed.append(0)

        def walk():
            for hit in hits:
                consumed[-1] += 1
                yield hit
        return walk()

    monkeypatch.setattr(Ontology, "search", counting_search)
    t0 = time.perf_counter()
    with pytest.raises(KeyError, match=r"close names: 'Sound number 12' \(/x12\), "):
        onto.resolve("Sound numbr 12")
    assert time.perf_counter() - t0 < BACKSTOP_S
    assert consumed and max(consumed) <= 6
    assert onto.get("/nope") is None and onto.get("/x3").name == "Sound number 3"
