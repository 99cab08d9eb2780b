"""Fetching, caching and exporting the ontology, and the ``audioset ontology`` command."""

from __future__ import annotations

import json

import networkx as nx
import pandas as pd
import pytest

from audioset_data.cli import main
from audioset_data.errors import ChecksumMismatchError, UnknownClassError
from audioset_data.ontology import Ontology
from audioset_data.remote import cache_path

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
ONTOLOGY_PATH = "/ontology/ontology.json"


@pytest.fixture(scope="module")
def onto(shared_data) -> Ontology:
    return Ontology.from_file(shared_data / "ontology" / "ontology.json")


def test_load_fetches_once_then_works_offline(mirror, data_root):
    first = Ontology.load(progress=False)
    assert len(first) == 632
    assert mirror.requests[ONTOLOGY_PATH] == 1
    assert cache_path("ontology").is_relative_to(data_root)
    mirror.files.clear()  # the mirror is gone: only the cache is left
    again = Ontology.load(progress=False)
    assert again == first
    assert mirror.requests[ONTOLOGY_PATH] == 1


def test_load_with_explicit_root_and_base_url(http_server, shared_data, tmp_path):
    url = http_server.add("elsewhere/ontology.json", shared_data / "ontology" / "ontology.json")
    onto = Ontology.load(root=tmp_path, base_url=url.rsplit("/", 1)[0], progress=False)
    assert len(onto) == 632
    assert (tmp_path / "remote" / "ontology.json").is_file()


def test_corrupted_cache_is_detected_and_refetched(mirror):
    Ontology.load(progress=False)
    path = cache_path("ontology")
    path.write_text(path.read_text().replace('"Dog"', '"Cat"', 1))
    onto = Ontology.load(progress=False)
    assert onto["/m/0bt9lr"].name == "Dog"
    assert mirror.requests[ONTOLOGY_PATH] == 2


def test_new_upstream_needs_consent(http_server, monkeypatch):
    tiny = [{"id": "/x", "name": "X", "child_ids": []}]
    http_server.add("o/ontology.json", json.dumps(tiny).encode())
    monkeypatch.setenv("AUDIOSET_ONTOLOGY_BASE_URL", http_server.url("o/"))
    with pytest.raises(ChecksumMismatchError, match="accept-new-upstream"):
        Ontology.load(progress=False)
    onto = Ontology.load(accept_new_upstream=True, progress=False)
    assert list(onto) == ["/x"]


def test_graphml_round_trip(onto, tmp_path):
    path = onto.to_graphml(tmp_path / "o.graphml")
    g = nx.read_graphml(path)
    assert g.is_directed()
    assert set(g.nodes) == set(onto)
    assert set(g.edges) == set(onto.graph.edges)
    assert g.nodes["/m/0bt9lr"]["name"] == "Dog"
    assert g.nodes["/m/0dgw9r"]["restrictions"] == "abstract"
    assert len(g.nodes["/m/0bt9lr"]["positive_examples"].split()) == 9


def test_node_link_round_trip(onto, tmp_path):
    data = onto.to_node_link()
    text = json.dumps(data)  # JSON-serialisable as returned
    assert isinstance(data["nodes"][0]["restrictions"], list)
    assert len(data["links"]) == onto.graph.number_of_edges()
    g = nx.node_link_graph(json.loads(text), directed=True, multigraph=False, edges="links")
    assert set(g.edges) == set(onto.graph.edges)
    assert Ontology.from_node_link(json.loads(text)) == onto
    path = onto.to_node_link(tmp_path / "o.json")
    assert Ontology.from_node_link(path) == onto


def test_png_is_written(onto, tmp_path):
    path = onto.plot_subtree("Animal", tmp_path / "animal.png", depth=2)
    data = path.read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 5000
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert height > width > 300  # one row per class: tall and narrow
    with pytest.raises(UnknownClassError):
        onto.plot_subtree("No such class", tmp_path / "x.png")


def run(capsys, *argv):
    code = main(["ontology", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_show(mirror, capsys):
    code, out, err = run(capsys, "show", "dog")
    assert code == 0, err
    assert "id:            /m/0bt9lr" in out
    assert "yes, label index 74 of 527" in out
    assert "Animal > Domestic animals, pets > Dog" in out
    assert "Bay (/m/07srf8z) [blacklist]" in out


def test_cli_show_multi_parent_and_non_label(mirror, capsys):
    code, out, _ = run(capsys, "show", "/t/dd00135")
    assert code == 0
    assert "paths to root (2)" in out
    assert "Human sounds > Human voice > Shout > Children shouting" in out
    code, out, _ = run(capsys, "show", "Yawn")
    assert "no, not among the 527 labels" in out


def test_cli_show_without_label_index_is_robust(mirror, capsys, monkeypatch, http_server):
    monkeypatch.setenv("AUDIOSET_CSV_BASE_URL", http_server.url("missing/"))
    code, out, _ = run(capsys, "show", "Dog")
    assert code == 0
    assert "trainable:     unknown (label index not available" in out
    code, out, _ = run(capsys, "show", "Dog", "--no-labels")
    assert "not checked" in out


def test_cli_ontology_url_option(http_server, shared_data, capsys):
    url = http_server.add("m/ontology.json", shared_data / "ontology" / "ontology.json")
    base = url[: -len("ontology.json")]
    code, out, _ = run(capsys, "search", "mastication", "--ontology-url", base)
    assert code == 0
    assert out == "/m/03cczk\tChewing, mastication\n"


def test_cli_unknown_class_is_one_line_exit_2(mirror, capsys):
    code, out, err = run(capsys, "show", "Dgo")
    assert code == 2 and out == ""
    assert err.strip().count("\n") == 0
    assert "unknown class 'Dgo'" in err and "'Dog' (/m/0bt9lr)" in err


def test_cli_tree(mirror, capsys, onto):
    code, out, _ = run(capsys, "tree", "Animal", "--depth", "1")
    hidden = len(nx.descendants(onto.graph, "/m/068hy"))
    lines = out.splitlines()
    assert code == 0
    assert lines[0] == "Animal (/m/0jbk)"
    assert lines[1] == f"  Domestic animals, pets (/m/068hy) (+{hidden})"
    assert all(line.startswith("  ") for line in lines[1:])
    code, out, _ = run(capsys, "tree", "--depth", "0")
    assert len(out.splitlines()) == 7
    assert "Human sounds (/m/0dgw9r) [abstract]" in out
    code, out, _ = run(capsys, "tree")
    assert len(out.splitlines()) > 632  # multi-parent classes appear under every parent
    assert "\n          Clavinet (" in out  # Music is level 0, Clavinet level 5


def test_cli_search_no_hit(mirror, capsys):
    code, out, err = run(capsys, "search", "zzzz")
    assert code == 1 and out == "" and "zzzz" in err


@pytest.mark.parametrize("fmt", ["csv", "graphml", "json", "png"])
def test_cli_export(mirror, capsys, tmp_path, fmt):
    out_path = tmp_path / f"music.{fmt}"
    code, out, err = run(capsys, "export", "--format", fmt, "--output", str(out_path),
                         "--root-class", "Music")
    assert code == 0, err
    assert "189 classes" in out
    if fmt == "csv":
        frame = pd.read_csv(out_path)
        assert len(frame) == 189 and frame["depth"].min() == 1
        assert frame.loc[frame["name"] == "Clavinet", "depth"].item() == 6
    elif fmt == "graphml":
        assert nx.read_graphml(out_path).number_of_nodes() == 189
    elif fmt == "json":
        assert len(Ontology.from_node_link(out_path).roots()) == 1
    else:
        assert out_path.read_bytes().startswith(PNG_MAGIC)


def test_cli_export_whole_ontology_csv(mirror, capsys, tmp_path):
    code, _, _ = run(capsys, "export", "--format", "csv", "--output", str(tmp_path / "o.csv"))
    assert code == 0
    assert len(pd.read_csv(tmp_path / "o.csv")) == 632


def test_cli_export_bad_output_folder(mirror, capsys, tmp_path):
    code, _, err = run(capsys, "export", "--format", "json", "--output",
                       str(tmp_path / "nope" / "o.json"))
    assert code == 2 and "does not exist" in err
