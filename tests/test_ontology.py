"""The ontology graph on the real ontology.json: measured facts, look-ups and DAG queries."""

from __future__ import annotations

import doctest
import random
from collections import Counter

import networkx as nx
import numpy as np
import pytest

import audioset_data.ontology as ontology_pkg
from audioset_data.errors import OntologyError, UnknownClassError
from audioset_data.ontology import Ontology, OntologyClass, PositiveExample, parse_example
from audioset_data.ontology import graph as graph_mod
from audioset_data.ontology import plot as plot_mod

DOG, PETS, ANIMAL = "/m/0bt9lr", "/m/068hy", "/m/0jbk"
CHILDREN_SHOUTING, SHOUT = "/t/dd00135", "/m/07p6fty"


@pytest.fixture(scope="module")
def onto(shared_data) -> Ontology:
    return Ontology.from_file(shared_data / "ontology" / "ontology.json")


def test_measured_counts(onto):
    assert len(onto) == 632
    assert len(onto.roots()) == 7
    assert len(onto.leaves()) == 474
    assert len(onto.filter(abstract=True)) == 23
    assert len(onto.filter(blacklist=True)) == 67
    assert len(onto.filter(abstract=True, blacklist=True)) == 1
    assert len(onto.filter(abstract=False, blacklist=False)) == 543
    parents = Counter(len(onto.parents(c)) for c in onto)
    assert parents == {0: 7, 1: 587, 2: 33, 3: 3, 4: 2}
    assert sum(1 for c in onto.values() if not c.positive_examples) == 153
    assert max(onto.depth(c) for c in onto) == 6
    assert max(onto.depth(c, how="max") for c in onto) == 6
    assert nx.is_directed_acyclic_graph(onto.graph)


def test_roots_by_name(onto):
    assert [onto[r].name for r in onto.roots()] == [
        "Human sounds", "Animal", "Music", "Natural sounds", "Sounds of things",
        "Source-ambiguous sounds", "Channel, environment and background",
    ]
    assert all(onto.depth(r) == 1 for r in onto.roots())


def test_dog_lineage(onto):
    assert onto.resolve("Dog") == DOG
    assert onto.parents("Dog") == [PETS]
    assert onto.parents(PETS) == [ANIMAL]
    assert onto.ancestors(DOG) == {PETS, ANIMAL}
    assert onto.ancestors("Dog", with_self=True) == {DOG, PETS, ANIMAL}
    assert onto.paths_to_root("Dog") == [[ANIMAL, PETS, DOG]]
    assert onto.depth("Dog") == 3
    assert DOG in onto.descendants("Animal")
    assert DOG not in onto.descendants("Animal", with_self=True) - onto.descendants(ANIMAL)
    assert onto[DOG].name == "Dog" and isinstance(onto[DOG], OntologyClass)
    assert "/m/05tny_" in onto.children("Dog")  # Bark


def test_deepest_path(onto):
    path = onto.paths_to_root("Clavinet")
    assert [[onto[c].name for c in p] for p in path] == [[
        "Music", "Musical instrument", "Keyboard (musical)", "Piano", "Electric piano",
        "Clavinet",
    ]]


def test_multi_parent_class_reports_every_path(onto):
    paths = onto.paths_to_root(CHILDREN_SHOUTING)
    assert len(paths) == 2
    assert {tuple(onto[c].name for c in p) for p in paths} == {
        ("Human sounds", "Human group actions", "Children shouting"),
        ("Human sounds", "Human voice", "Shout", "Children shouting"),
    }
    assert paths == sorted(paths, key=len)
    assert onto.depth(CHILDREN_SHOUTING) == 3
    assert onto.depth(CHILDREN_SHOUTING, how="max") == 4
    with pytest.raises(ValueError, match="how"):
        onto.depth(CHILDREN_SHOUTING, how="mean")  # type: ignore[arg-type]


def test_paths_match_networkx_for_every_class(onto):
    g = onto.graph
    for cid in onto:
        expected = sorted(
            (tuple(p) for r in onto.roots() for p in nx.all_simple_paths(g, r, cid)),
        ) if cid not in onto.roots() else [(cid,)]
        assert sorted(tuple(p) for p in onto.paths_to_root(cid)) == expected
        assert onto.depth(cid) == min(len(p) for p in expected)
        assert onto.depth(cid, how="max") == max(len(p) for p in expected)


def test_closures_match_networkx(onto):
    g = onto.graph
    for cid in onto:
        assert onto.ancestors(cid) == nx.ancestors(g, cid)
        assert onto.descendants(cid) == nx.descendants(g, cid)


def test_returned_sets_are_copies(onto):
    anc = onto.ancestors(DOG)
    anc.add("junk")
    assert "junk" not in onto.ancestors(DOG)


def test_lowest_common_ancestors(onto):
    assert onto.lowest_common_ancestors("Dog", "Cat") == {PETS}
    assert onto.lowest_common_ancestors("Dog", "Bark") == {DOG}
    assert onto.lowest_common_ancestors("Dog", "Speech") == set()
    assert onto.lowest_common_ancestors(CHILDREN_SHOUTING, SHOUT) == {SHOUT}
    rng = random.Random(0)
    ids = list(onto)
    for _ in range(300):
        a, b = rng.sample(ids, 2)
        lcas = onto.lowest_common_ancestors(a, b)
        assert lcas == onto.lowest_common_ancestors(b, a)
        common = onto.ancestors(a, with_self=True) & onto.ancestors(b, with_self=True)
        assert lcas <= common
        assert (not lcas) == (not common)
        for x in lcas:
            assert not (onto.descendants(x) & common)


def test_resolve_and_lookups(onto):
    assert onto.resolve(DOG) == DOG
    assert onto.resolve("chewing, MASTICATION") == "/m/03cczk"
    assert onto.by_name("Chewing, mastication").id == "/m/03cczk"
    assert onto.search("mastication") == ["/m/03cczk"]
    assert onto.search("DOG")[0] == DOG  # exact match first
    assert onto.search("") == []
    with pytest.raises(UnknownClassError, match=r"'Dgo'.*'Dog' \(/m/0bt9lr\)") as exc:
        onto.resolve("Dgo")
    assert "\n" not in str(exc.value)
    with pytest.raises(UnknownClassError, match="'Dog'"):
        onto.children("barking dog")
    with pytest.raises(KeyError):
        onto["/m/nope"]
    with pytest.raises(UnknownClassError):
        onto.by_name("nope")
    assert onto.get("/m/nope") is None
    assert "/m/nope" not in onto and DOG in onto and 5 not in onto


def test_unknown_class_is_key_and_ontology_error(onto):
    with pytest.raises(OntologyError):
        onto.ancestors("No such sound")
    with pytest.raises(UnknownClassError, match="no close names"):
        onto.resolve("qqqqqqq")


def test_restrictions_and_filters(onto):
    assert onto.is_abstract("Human sounds") and not onto.is_blacklisted("Human sounds")
    assert onto.is_blacklisted("Natural sounds")
    assert onto["/m/0dgw9r"].abstract
    blacklisted = set(onto.filter(blacklist=True))
    assert blacklisted == {c for c in onto if "blacklist" in onto[c].restrictions}
    assert all(onto[c].child_ids for c in onto.filter(abstract=True))  # abstract => children


def test_leaves_under(onto):
    leaves = onto.leaves(under="Dog")
    assert set(leaves) == set(onto.children("Dog"))
    assert onto.leaves(under="Bark") == ["/m/05tny_"]
    assert set(onto.leaves()) == {c for c in onto if not onto.children(c)}


def test_subtree(onto):
    animal = onto.subtree("Animal")
    assert animal.roots() == [ANIMAL]
    assert len(animal) == 1 + len(onto.descendants(ANIMAL))
    assert animal.ancestors("Dog") == {PETS, ANIMAL}
    assert "Speech" not in {animal[c].name for c in animal}
    assert "subtree" in animal.source


def test_positive_examples(onto):
    dog = onto[DOG]
    assert len(dog.examples) == len(dog.positive_examples) == 9
    ex = dog.examples[0]
    assert isinstance(ex, PositiveExample) and len(ex.youtube_id) == 11
    assert ex.end_s - ex.start_s == 10
    every = [e for c in onto.values() for e in c.examples]
    assert len(every) == sum(len(c.positive_examples) for c in onto.values())
    assert all(len(e.youtube_id) == 11 and 0 <= e.start_s < e.end_s for e in every)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("youtu.be/8uI9H5jGRV8?start=30&end=40", ("8uI9H5jGRV8", 30.0, 40.0)),
        ("https://youtu.be/8uI9H5jGRV8?start=0&end=6", ("8uI9H5jGRV8", 0.0, 6.0)),
        ("https://www.youtube.com/watch?v=8uI9H5jGRV8&start=5", ("8uI9H5jGRV8", 5.0, 15.0)),
        ("youtu.be/8uI9H5jGRV8", ("8uI9H5jGRV8", 0.0, 10.0)),
    ],
)
def test_parse_example(text, expected):
    assert parse_example(text) == expected


@pytest.mark.parametrize(
    "text",
    ["example.com/x?start=1&end=2", "youtu.be/?start=1", "youtu.be/abc?start=x&end=3",
     "youtu.be/abc?start=5&end=5", "youtu.be/abc?start=nan&end=5"],
)
def test_parse_example_rejects(text):
    with pytest.raises(OntologyError, match="positive example"):
        parse_example(text)


def test_ancestor_matrix_matches_per_row_sets(onto):
    ids = list(onto)
    m = onto.ancestor_matrix(ids)
    assert m.shape == (632, 632) and m.dtype == bool
    assert m.format == "csr"
    dense = m.toarray()
    for i, cid in enumerate(ids):
        expected = {cid} | onto.ancestors(cid)
        assert {ids[j] for j in np.flatnonzero(dense[i])} == expected
    strict = onto.ancestor_matrix(ids, with_self=False).toarray()
    assert not strict.diagonal().any()
    assert (dense & ~np.eye(632, dtype=bool) == strict).all()


def test_ancestor_matrix_with_columns_and_names(onto):
    m = onto.ancestor_matrix(["Dog", "Speech"], [ANIMAL, PETS, DOG, "Cat"]).toarray()
    assert m.tolist() == [[True, True, True, False], [False, False, False, False]]
    with pytest.raises(UnknownClassError):
        onto.ancestor_matrix(["Dog", "nope-nope"])


def test_graph_is_frozen_copy(onto):
    g = onto.graph
    assert g.number_of_nodes() == 632 and g.number_of_edges() == sum(
        len(c.child_ids) for c in onto.values())
    assert g.has_edge(PETS, DOG)
    assert g.nodes[DOG]["name"] == "Dog"
    assert set(g.nodes[DOG]) >= {"name", "description", "citation_uri", "positive_examples",
                                 "child_ids", "restrictions"}
    with pytest.raises(nx.NetworkXError):
        g.add_node("x")
    g.nodes[DOG]["name"] = "Cat"
    assert onto.graph.nodes[DOG]["name"] == "Dog"


def test_to_frame(onto):
    frame = onto.to_frame()
    assert len(frame) == 632 and frame["id"].is_unique
    dog = frame.set_index("id").loc[DOG]
    assert dog["name"] == "Dog" and dog["depth"] == 3 and dog["parents"] == [PETS]
    assert dog["n_children"] == 7
    assert frame["depth"].max() == 6
    assert int(frame["abstract"].sum()) == 23 and int(frame["blacklist"].sum()) == 67
    assert int((frame["n_parents"] > 1).sum()) == 38


def test_records_round_trip(onto):
    again = Ontology.from_records(onto.to_records())
    assert again == onto
    assert again.graph.edges == onto.graph.edges


def test_repr_and_mapping(onto):
    assert "632 classes" in repr(onto) and "7 roots" in repr(onto)
    assert list(onto)[0] == "/m/0dgw9r"  # file order
    assert len(dict(onto.items())) == 632


def test_doctests():
    for module in (graph_mod, plot_mod, ontology_pkg):
        result = doctest.testmod(module, raise_on_error=False)
        assert result.failed == 0, module.__name__
    assert doctest.testmod(graph_mod).attempted >= 8
