"""The 527-label index on the real class_labels_indices.csv, checked against the ontology."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from audioset_data.errors import LabelIndexError, UnknownClassError
from audioset_data.ontology import Ontology
from audioset_data.segments.labels import LabelIndex


@pytest.fixture(scope="module")
def onto(shared_data) -> Ontology:
    return Ontology.from_file(shared_data / "ontology" / "ontology.json")


@pytest.fixture(scope="module")
def labels(shared_data, onto) -> LabelIndex:
    return LabelIndex.from_file(shared_data / "segments" / "class_labels_indices.csv",
                                ontology=onto)


def test_real_index_shape_and_order(labels, onto):
    assert len(labels) == 527
    assert labels.mid(0) == "/m/09x0r" and labels.name(0) == "Speech"
    assert labels.index("/m/0bt9lr") == 74 and labels.name("/m/0bt9lr") == "Dog"
    assert labels.mid_of_name("male SPEECH, man speaking") == "/m/05zppz"
    for i, mid in enumerate(labels.mids):
        assert labels.index(mid) == i
        assert labels.name(i) == onto[mid].name == labels.names[i]
    assert list(labels) == list(labels.mids)
    frame = labels.to_frame()
    assert list(frame.columns) == ["index", "mid", "display_name"]
    assert frame["index"].tolist() == list(range(527))
    assert "527 labels" in repr(labels)


def test_trainability_comes_from_the_index_not_restrictions(labels, onto):
    in_index = set(labels.mids)
    assert sum(onto.is_blacklisted(m) for m in in_index) == 12
    assert not any(onto.is_abstract(m) for m in in_index)
    outside = [c for c in onto if c not in in_index]
    assert len(outside) == 105
    kinds = pd.Series([tuple(sorted(onto[c].restrictions)) for c in outside]).value_counts()
    assert kinds.to_dict() == {("blacklist",): 54, (): 28, ("abstract",): 22,
                               ("abstract", "blacklist"): 1}
    unrestricted = {onto[c].name for c in outside if not onto[c].restrictions}
    assert {"Yawn", "Oboe", "Bassoon", "Chipmunk", "Kettle whistle",
            "Background noise"} <= unrestricted


def test_lookup_errors(labels):
    with pytest.raises(UnknownClassError, match="not one of the 527 labels"):
        labels.index("/m/0bt9lrX")
    with pytest.raises(UnknownClassError, match="outside 0..526"):
        labels.mid(527)
    with pytest.raises(UnknownClassError):
        labels.name(-1)
    with pytest.raises(UnknownClassError):
        labels.mid_of_name("Dgo")
    with pytest.raises(KeyError):  # also a KeyError for callers who expect one
        labels.index("nope")
    assert np.array_equal(labels.indices(["/m/0bt9lr", "/m/09x0r"]), [74, 0])


def test_propagation_adds_labelled_ancestors(labels, onto):
    dog, pets, animal = "/m/0bt9lr", "/m/068hy", "/m/0jbk"
    y = np.zeros((2, 527), dtype=bool)
    y[0, labels.index("/m/05tny_")] = True  # Bark
    y[1, labels.index(dog)] = True
    out = labels.propagate(y, onto)
    assert isinstance(out, sp.csr_array) and out.dtype == bool and out.shape == (2, 527)
    expected_bark = {"/m/05tny_", dog, pets, animal}
    assert {labels.mid(j) for j in out[[0]].indices} == expected_bark
    assert {labels.mid(j) for j in out[[1]].indices} == {dog, pets, animal}


def test_propagation_matches_per_row_loop_on_eval_segments(labels, onto, shared_data):
    frame = pd.read_csv(shared_data / "segments" / "eval_segments.csv", skiprows=3, header=None,
                        skipinitialspace=True, names=["ytid", "start", "end", "labels"])
    frame = frame.iloc[:3000]
    rows, cols = [], []
    for i, text in enumerate(frame["labels"]):
        for mid in text.split(","):
            rows.append(i)
            cols.append(labels.index(mid))
    y = sp.csr_array((np.ones(len(rows), dtype=bool), (rows, cols)), shape=(len(frame), 527))
    out = labels.propagate(y, onto)
    label_set = set(labels.mids)
    for i, text in enumerate(frame["labels"]):
        expected = set()
        for mid in text.split(","):
            expected |= onto.ancestors(mid, with_self=True) & label_set
        assert {labels.mid(j) for j in out[[i]].indices} == expected, frame["ytid"].iloc[i]
    assert out.nnz > y.nnz  # propagation adds labels on the real eval list


def test_propagation_matrix_is_the_ontology_closure(labels, onto):
    p = labels.propagation_matrix(onto)
    assert p.shape == (527, 527) and p.diagonal().all()
    assert (p != onto.ancestor_matrix(labels.mids)).nnz == 0


def test_propagate_rejects_wrong_width(labels, onto):
    with pytest.raises(LabelIndexError, match="526 columns, the index has 527"):
        labels.propagate(np.zeros((3, 526), dtype=bool), onto)


def test_load_through_mirror_validates(mirror, onto):
    loaded = LabelIndex.load(ontology=onto)
    assert len(loaded) == 527
    mirror.files.clear()
    assert LabelIndex.load().mids == loaded.mids  # offline from the verified cache


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        ("mid,index,display_name\n0,/m/x,X\n", "line 1 must be the header"),
        ("index,mid,display_name\n0,/m/x\n", r"<text>:2: expected 3 fields, got 2"),
        ("index,mid,display_name\nzero,/m/x,X\n", r"<text>:2: index 'zero' is not an integer"),
        ("index,mid,display_name\n1,/m/x,X\n", r"<text>:2: index 1 out of order"),
        ("index,mid,display_name\n0,/m/x,X\n1,/m/x,Y\n", "appears at index 0 and again at 1"),
        ("index,mid,display_name\n", "no labels"),
    ],
)
def test_malformed_csv(text, pattern):
    with pytest.raises(LabelIndexError, match=pattern):
        LabelIndex.from_csv_text(text)


def test_disagreement_with_ontology(onto):
    with pytest.raises(LabelIndexError, match=r"index 1: mid '/m/nope' not in the ontology"):
        LabelIndex.from_csv_text("index,mid,display_name\n0,/m/09x0r,Speech\n1,/m/nope,X\n",
                                 ontology=onto)
    with pytest.raises(LabelIndexError, match="differs from the ontology's 'Dog'"):
        LabelIndex.from_csv_text("index,mid,display_name\n0,/m/0bt9lr,Doggo\n", ontology=onto)


def test_missing_file(tmp_path):
    with pytest.raises(LabelIndexError, match="does not exist"):
        LabelIndex.from_file(tmp_path / "none.csv")


def test_index_accepts_display_names_with_suggestions(labels):
    dog = labels.index("/m/0bt9lr")
    assert labels.index("Dog") == labels.index("dog") == labels.index(" DOG ") == dog
    assert labels.index("male speech, man speaking") == labels.index("/m/05zppz")
    assert labels.name("dog") == "Dog"
    assert labels.indices(["Dog", "/m/09x0r"]).tolist() == [dog, 0]
    with pytest.raises(UnknownClassError, match=r"close names: 'Dog' \(/m/0bt9lr\)") as err:
        labels.index("Dgo")
    assert isinstance(err.value, KeyError) and "not one of the 527 labels" in str(err.value)
    with pytest.raises(UnknownClassError, match="close names: 'Vehicle'"):
        labels.mid_of_name("Vehicel")
    assert "Dog" not in labels  # membership stays by mid
    assert labels.suggest("Vehicel") == ["/m/07yv9"] and labels.suggest("zzzzzz") == []
