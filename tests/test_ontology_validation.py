"""Malformed ontology input: every problem raises OntologyError naming the entry and the fault."""

from __future__ import annotations

import copy
import json

import pytest

from audioset_data.errors import OntologyError
from audioset_data.ontology import Ontology


def good_records() -> list[dict]:
    return [
        {"id": "/m/a", "name": "Animal", "description": "", "citation_uri": "",
         "positive_examples": [], "child_ids": ["/m/p", "/m/d"], "restrictions": ["abstract"]},
        {"id": "/m/p", "name": "Pets", "description": "", "citation_uri": "",
         "positive_examples": [], "child_ids": ["/m/d"], "restrictions": []},
        {"id": "/m/d", "name": "Dog", "description": "Woof.", "citation_uri": "",
         "positive_examples": ["youtu.be/8uI9H5jGRV8?start=30&end=40"], "child_ids": [],
         "restrictions": []},
    ]


def mutated(change) -> list:
    records = good_records()
    out = change(records)
    return records if out is None else out


CASES = {
    "missing child_ids": (lambda r: r[1].__delitem__("child_ids"), r"'/m/p'.*missing.*child_ids"),
    "missing name": (lambda r: r[2].__delitem__("name"), r"'/m/d'.*missing.*name"),
    "missing id": (lambda r: r[0].__delitem__("id"), r"entry 0.*missing.*\bid\b"),
    "child_ids not a list": (lambda r: r[1].update(child_ids="/m/d"),
                             r"'/m/p'.*'child_ids' is a str, expected a list"),
    "restrictions not a list": (lambda r: r[2].update(restrictions="abstract"),
                                r"'/m/d'.*'restrictions' is a str"),
    "non-string child": (lambda r: r[0].update(child_ids=["/m/p", 7]),
                         r"'/m/a'.*'child_ids' holds 7"),
    "id not a string": (lambda r: r[2].update(id=12), r"entry 2.*'id' is a int"),
    "empty id": (lambda r: r[2].update(id=" "), r"entry 2.*'id' is empty"),
    "name not a string": (lambda r: r[2].update(name=None), r"'/m/d'.*'name' is a NoneType"),
    "description not a string": (lambda r: r[2].update(description=["x"]),
                                 r"'/m/d'.*'description' is a list"),
    "entry not an object": (lambda r: r.__setitem__(1, ["/m/p"]),
                            r"entry 1: is a list, expected an object"),
    "duplicate id": (lambda r: r.append(dict(r[2], name="Dog again")),
                     r"entry 3: duplicate id '/m/d' \(first defined by entry 2\)"),
    "unknown child": (lambda r: r[1]["child_ids"].append("/m/ghost"),
                      r"'/m/p'.*child id '/m/ghost' is not defined"),
    "cycle": (lambda r: r[2]["child_ids"].append("/m/p"), r"cycle: .*/m/p.*/m/d|/m/d.*/m/p"),
    "self loop": (lambda r: r[2]["child_ids"].append("/m/d"), r"cycle: /m/d -> /m/d"),
    "unknown restriction": (lambda r: r[2].update(restrictions=["blacklist", "hidden"]),
                            r"'/m/d'.*unknown restriction.*'hidden'"),
    "bad positive example": (lambda r: r[2].update(positive_examples=["vimeo.com/1"]),
                             r"'/m/d'.*positive example 'vimeo.com/1'"),
    "top level object": (lambda r: {"classes": r}, r"top level is a dict, expected a list"),
    "empty list": (lambda r: [], r"^test.json: the list of classes is empty"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_records_raise_ontology_error(case):
    change, pattern = CASES[case]
    records = mutated(change)
    with pytest.raises(OntologyError, match=pattern):
        Ontology.from_records(records, source="test.json")
    # the same through JSON text, with the source named
    with pytest.raises(OntologyError, match="^test.json"):
        Ontology.from_json_text(json.dumps(records), source="test.json")


def test_good_records_load():
    onto = Ontology.from_records(good_records())
    assert onto.paths_to_root("Dog") == [["/m/a", "/m/d"], ["/m/a", "/m/p", "/m/d"]]


def test_optional_fields_default_to_empty():
    onto = Ontology.from_records([{"id": "/x", "name": "X", "child_ids": []}])
    cls = onto["/x"]
    assert (cls.description, cls.citation_uri, cls.positive_examples, cls.restrictions) == (
        "", "", (), frozenset())


def test_repeated_child_counts_once():
    records = good_records()
    records[0]["child_ids"].append("/m/p")
    onto = Ontology.from_records(records)
    assert onto.children("/m/a") == ["/m/p", "/m/d"]


def test_not_json_reports_line_and_column(tmp_path):
    path = tmp_path / "ontology.json"
    path.write_text('[\n  {"id": "/m/a",\n   "name": "A" "child_ids": []}\n]\n')
    with pytest.raises(OntologyError, match=r"ontology.json: not valid JSON at line 3, column 16"):
        Ontology.from_file(path)


def test_not_utf8_and_missing_file(tmp_path):
    path = tmp_path / "ontology.json"
    path.write_bytes(b'[{"id": "/m/a", "name": "\xff", "child_ids": []}]')
    with pytest.raises(OntologyError, match="not UTF-8"):
        Ontology.from_file(path)
    with pytest.raises(OntologyError, match="does not exist"):
        Ontology.from_file(tmp_path / "missing.json")


def test_size_caps(tmp_path):
    path = tmp_path / "ontology.json"
    path.write_text(json.dumps(good_records()))
    with pytest.raises(OntologyError, match="over the limit of 100 .*max_bytes"):
        Ontology.from_file(path, max_bytes=100)
    with pytest.raises(OntologyError, match="3 entries is over the limit of 2"):
        Ontology.from_file(path, max_entries=2)
    with pytest.raises(OntologyError, match="max_bytes"):
        Ontology.from_json_text("[]" + " " * 50, max_bytes=10)
    assert len(Ontology.from_file(path, max_entries=3)) == 3


def test_deeply_nested_json_is_an_ontology_error():
    with pytest.raises(OntologyError):
        Ontology.from_json_text("[" * 100_000 + "]" * 100_000)


def test_later_changes_to_the_records_do_not_leak_in():
    records = good_records()
    onto = Ontology.from_records(records)
    records[2]["name"] = "Cat"
    records[2]["child_ids"].append("/m/a")
    assert onto["/m/d"].name == "Dog" and onto.children("/m/d") == []


def test_error_is_also_value_error():
    with pytest.raises(ValueError):
        Ontology.from_records("not a list")  # type: ignore[arg-type]


def test_a_failed_build_leaves_the_input_untouched():
    records = good_records()
    records[1]["child_ids"].append("/m/ghost")
    before = copy.deepcopy(records)
    with pytest.raises(OntologyError):
        Ontology.from_records(records)
    assert records == before
