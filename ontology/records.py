"""One class of ``ontology.json``: its record, its positive examples, and the checks each
entry passes before it joins the graph."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, NamedTuple
from urllib.parse import parse_qs, urlsplit

from audioset_data.errors import OntologyError

#: Restrictions the ontology format defines.
KNOWN_RESTRICTIONS = frozenset({"abstract", "blacklist"})
#: Fields every entry must have; the others default to empty values when absent.
REQUIRED_FIELDS = ("id", "name", "child_ids")
_STRING_FIELDS = ("id", "name", "description", "citation_uri")
#: The form every example in the official file takes; anything else goes through urllib.
_CANONICAL_EXAMPLE = re.compile(r"youtu\.be/([A-Za-z0-9_-]+)\?start=(\d+)&end=(\d+)")
_LIST_FIELDS = ("positive_examples", "child_ids", "restrictions")


class PositiveExample(NamedTuple):
    """One confirmed positive example: a segment of a YouTube video, in seconds."""

    youtube_id: str
    start_s: float
    end_s: float


def parse_example(text: str) -> PositiveExample:
    """Parse a positive-example address such as ``youtu.be/8uI9H5jGRV8?start=30&end=40``.

    ``youtube.com/watch?v=ID`` addresses (with or without a scheme) are accepted as well. A
    missing ``start`` means 0 and a missing ``end`` means ``start + 10`` (AudioSet segments are
    10 s long).

    Raises
    ------
    OntologyError
        The text is not a recognisable YouTube segment address.

    Examples
    --------
    >>> parse_example("youtu.be/8uI9H5jGRV8?start=30&end=40")
    PositiveExample(youtube_id='8uI9H5jGRV8', start_s=30.0, end_s=40.0)
    """
    if not isinstance(text, str):
        raise OntologyError(f"positive example {text!r} is not a string")
    fast = _CANONICAL_EXAMPLE.fullmatch(text)
    if fast and int(fast[2]) < int(fast[3]):
        return PositiveExample(fast[1], float(fast[2]), float(fast[3]))
    url = text.strip()
    parts = urlsplit(url if "//" in url else "//" + url)
    host = (parts.hostname or "").lower().removeprefix("www.").removeprefix("m.")
    query = parse_qs(parts.query)
    if host == "youtu.be":
        vid = parts.path.strip("/")
    elif host == "youtube.com" and parts.path.rstrip("/") == "/watch":
        vid = (query.get("v") or [""])[0]
    else:
        raise OntologyError(f"positive example {text!r} is not a youtu.be or youtube.com address")
    if not vid or "/" in vid:
        raise OntologyError(f"positive example {text!r} has no video id")
    try:
        start = float((query.get("start") or ["0"])[0])
        end = float(query["end"][0]) if "end" in query else start + 10.0
    except ValueError:
        raise OntologyError(f"positive example {text!r}: start/end are not numbers") from None
    if not (math.isfinite(start) and math.isfinite(end)) or start < 0 or end <= start:
        raise OntologyError(f"positive example {text!r}: need 0 <= start < end")
    return PositiveExample(vid, start, end)


@dataclass(frozen=True)
class OntologyClass:
    """One sound class, with the fields of ``ontology.json`` (lists become tuples/sets)."""

    id: str
    name: str
    description: str = ""
    citation_uri: str = ""
    positive_examples: tuple[str, ...] = ()
    child_ids: tuple[str, ...] = ()
    restrictions: frozenset[str] = frozenset()

    @property
    def examples(self) -> tuple[PositiveExample, ...]:
        """Positive examples parsed into ``(youtube_id, start_s, end_s)`` tuples."""
        return tuple(parse_example(u) for u in self.positive_examples)

    @property
    def abstract(self) -> bool:
        """True for container classes that have no examples of their own."""
        return "abstract" in self.restrictions

    @property
    def blacklisted(self) -> bool:
        """True for classes that were excluded from rating."""
        return "blacklist" in self.restrictions

    def to_record(self) -> dict[str, Any]:
        """The class as an ``ontology.json`` entry (restrictions sorted)."""
        return {
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "citation_uri": self.citation_uri,
            "positive_examples": list(self.positive_examples),
            "child_ids": list(self.child_ids),
            "restrictions": sorted(self.restrictions),
        }


def _label(entry: Any, position: int) -> str:
    """How to name an entry in an error message: its id when it has a usable one."""
    if isinstance(entry, dict) and isinstance(entry.get("id"), str) and entry["id"]:
        return f"entry {position} (id {entry['id']!r})"
    return f"entry {position}"


def _parse_entry(entry: Any, position: int, source: str) -> OntologyClass:
    where = f"{source}: {_label(entry, position)}"
    if not isinstance(entry, dict):
        raise OntologyError(f"{where}: is a {type(entry).__name__}, expected an object")
    missing = [f for f in REQUIRED_FIELDS if f not in entry]
    if missing:
        raise OntologyError(f"{where}: missing field(s) {', '.join(missing)}")
    for field in _STRING_FIELDS:
        value = entry.get(field, "")
        if not isinstance(value, str):
            raise OntologyError(
                f"{where}: field {field!r} is a {type(value).__name__}, expected a string"
            )
    if not entry["id"].strip():
        raise OntologyError(f"{where}: field 'id' is empty")
    lists: dict[str, tuple[str, ...]] = {}
    for field in _LIST_FIELDS:
        value = entry.get(field, [])
        if not isinstance(value, list):
            raise OntologyError(
                f"{where}: field {field!r} is a {type(value).__name__}, expected a list"
            )
        for item in value:
            if not isinstance(item, str):
                raise OntologyError(
                    f"{where}: field {field!r} holds {item!r}, expected strings only"
                )
        lists[field] = tuple(value)
    unknown = set(lists["restrictions"]) - KNOWN_RESTRICTIONS
    if unknown:
        raise OntologyError(
            f"{where}: unknown restriction(s) {', '.join(sorted(map(repr, unknown)))}; "
            f"known: {', '.join(sorted(KNOWN_RESTRICTIONS))}"
        )
    for url in lists["positive_examples"]:
        try:
            parse_example(url)
        except OntologyError as exc:
            raise OntologyError(f"{where}: {exc}") from None
    children = tuple(dict.fromkeys(lists["child_ids"]))  # a repeated child adds nothing
    return OntologyClass(
        id=entry["id"],
        name=entry["name"],
        description=entry.get("description", ""),
        citation_uri=entry.get("citation_uri", ""),
        positive_examples=lists["positive_examples"],
        child_ids=children,
        restrictions=frozenset(lists["restrictions"]),
    )


__all__ = ["KNOWN_RESTRICTIONS", "REQUIRED_FIELDS", "OntologyClass", "PositiveExample",
           "parse_example"]
