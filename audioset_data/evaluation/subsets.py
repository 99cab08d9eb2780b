"""Named evaluation subsets: which clips a number was computed on, by name.

``official`` is the split's segment list (the official list of an official split, else the
list a cache was made from), ``ast`` the 19,185 eval clips AST evaluated (a declared remote
file, fetched and verified like the official ones), ``available`` the clips the split's audio
cache or embeddings store holds, and any other name a file of ids: one YouTube id or
``<ytid>_<start ms>`` key per line, ``#`` comments and a header line allowed. A bare YouTube id
stands for every clip of that video in the split's list; ids matching none are reported.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Container, Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from audioset_data.cache.manifest import MANIFEST_NAME, Manifest, clip_key
from audioset_data.cache.reader import cache_dir, open_cache
from audioset_data.config import PathLike
from audioset_data.errors import CacheError, EvaluationError
from audioset_data.features.errors import FeatureStoreNotFoundError
from audioset_data.features.store import open_store
from audioset_data.remote import fetch
from audioset_data.segments.ids import YTID_RULE
from audioset_data.segments.load import load_segments
from audioset_data.segments.splits import SplitNameError, canonical_split

if TYPE_CHECKING:
    from .harness import EvaluationResult

logger = logging.getLogger(__name__)

#: The named subsets; any other name is read as a file of clip ids.
SUBSET_NAMES = ("official", "ast", "available")
#: Named subsets that are a declared remote file (``audioset_data.remote.REMOTES``).
SUBSET_REMOTES = {"ast": "ast_eval_ids"}
#: First lines of an id file taken as its header, not as an id.
HEADER_WORDS = frozenset({"ytid", "youtube_id", "video_id", "id", "ids", "clip_id", "key",
                          "segment_id", "filename"})
#: Characters of a YouTube id or a clip key; a line with any other is not an id.
_ID = re.compile(r"[A-Za-z0-9_-]+")
#: Hex digits of a hash in the reports (the JSON carries the whole hash).
SHORT_HASH = 12


class SubsetError(EvaluationError):
    """A subset cannot be had: an unknown name, an unreadable id file (the message names the
    file and line), or a split with no list to resolve it against."""


def id_list_hash(ids: Iterable[str]) -> str:
    """SHA-256 of the sorted, newline-joined clip ids: the same set gives the same hash."""
    text = "\n".join(sorted(str(i) for i in ids))
    return hashlib.sha256(text.encode()).hexdigest()


def read_id_file(path: PathLike) -> list[str]:
    """The ids of a subset file, in file order, each once: one YouTube id or ``<ytid>_<start
    ms>`` key per line; blank lines and ``#`` comments are skipped, and a first line naming
    the column (``YTID``, ``clip_id``, ...) too.

    Raises
    ------
    SubsetError
        The file is missing, not text, holds a line that is not an id (file and line named),
        or holds no id.
    """
    p = Path(path)
    if not p.is_file():
        raise SubsetError(f"subset file {str(p)!r} not found (a file of clip ids, one per line, "
                          f"or one of the names {', '.join(SUBSET_NAMES)})")
    raw = p.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise SubsetError(f"{p}, line {line}: not UTF-8 text (byte {exc.start}); a subset file "
                          "holds one clip id per line") from None
    ids: list[str] = []
    seen: set[str] = set()
    first = True
    for number, line in enumerate(text.splitlines(), 1):
        value = line.strip()
        if not value or value.startswith("#"):
            continue
        if first and value.strip("\"'").lower() in HEADER_WORDS:
            first = False
            continue
        first = False
        if not _ID.fullmatch(value):
            shown = value if len(value) <= 60 else value[:57] + "..."
            raise SubsetError(f"{p}, line {number}: {shown!r} is not a YouTube id ({YTID_RULE}) "
                              "or a clip key (<ytid>_<start ms>); a subset file holds one per "
                              "line, '#' starts a comment")
        if value not in seen:
            seen.add(value)
            ids.append(value)
    if not ids:
        raise SubsetError(f"subset file {str(p)!r} holds no clip ids")
    return ids


@dataclass(frozen=True)
class Subset:
    """A named list of clips, resolved to the clip keys of one split."""

    name: str  #: ``official``, ``ast``, ``available`` or the path of an id file
    source: str  #: where the ids came from
    keys: tuple[str, ...]  #: the split's clip keys it stands for, sorted
    n_ids: int  #: ids the list holds (a bare YouTube id may stand for several clips)
    unknown: tuple[str, ...] = ()  #: ids matching no clip of the split's list
    matched_by: str = "key"  #: ``key``, ``ytid`` or ``key and ytid``: how its ids matched

    def __len__(self) -> int:
        return len(self.keys)

    @cached_property
    def sha256(self) -> str:
        """Hash of the subset's clip list (:func:`id_list_hash`)."""
        return id_list_hash(self.keys)


@dataclass(frozen=True)
class SubsetCoverage:
    """How a set of scores covers a subset: its clips with scores, without, and scored but
    without labels in the labels evaluated against."""

    subset: Subset
    scored: int
    missing: int
    no_labels: int = 0

    @classmethod
    def of(cls, subset: Subset, scored_ids: Iterable[str],
           labelled: Container[str] | None = None) -> SubsetCoverage:
        """Count the subset's clips among ``scored_ids`` (and, of those, not in ``labelled``)."""
        scored = set(map(str, scored_ids))
        have = [k for k in subset.keys if k in scored]
        no_labels = 0 if labelled is None else sum(k not in labelled for k in have)
        return cls(subset, len(have), len(subset) - len(have), no_labels)

    def fields(self) -> dict[str, Any]:
        """The subset's record under short stable keys (the JSON's and the summary's)."""
        s = self.subset
        out: dict[str, Any] = {
            "subset": s.name, "subset_source": s.source, "subset_ids": s.n_ids,
            "subset_clips": len(s), "subset_sha256": s.sha256,
            "subset_unknown_ids": len(s.unknown), "subset_scored": self.scored,
            "subset_missing_scores": self.missing,
        }
        if s.unknown:
            out["subset_unknown_examples"] = list(s.unknown[:5])
        if self.no_labels:
            out["subset_scored_without_labels"] = self.no_labels
        return out


#: What each key of :meth:`SubsetCoverage.fields` stands for (the reports' words).
SUBSET_LABELS = {
    "subset": "subset",
    "subset_source": "subset source",
    "subset_ids": "ids in the subset list",
    "subset_clips": "clips in the subset",
    "subset_sha256": "subset clip list sha256",
    "subset_unknown_ids": "subset ids not in the split's list (left out)",
    "subset_unknown_examples": "e.g.",
    "subset_scored": "subset clips with scores",
    "subset_missing_scores": "subset clips missing from the scores",
    "subset_scored_without_labels": "subset clips scored but without labels (left out)",
}


def _key_ytid(key: str) -> str:
    # ids may contain "_": the start is after the LAST underscore
    return key.rsplit("_", 1)[0]


def official_clips(split: str, root: PathLike | None = None) -> tuple[list[str], str]:
    """``(keys, source)``: the clip keys of ``split``'s list: the official segment list of an
    official split (cached under ``root`` or fetched; mirrors via ``$AUDIOSET_CSV_BASE_URL``),
    else the segment list of the cache of that name (its manifest), else the keys of its
    embeddings store.

    Raises
    ------
    SubsetError
        ``split`` is none of these.
    """
    try:
        name = canonical_split(split)
    except SplitNameError:
        name = None
    if name is not None:
        seg = load_segments(name, root=root)
        return ([clip_key(y, s) for y, s in zip(seg.ytids, seg.start, strict=True)],
                f"the official {name} segment list")
    manifest = cache_dir(split, root) / MANIFEST_NAME
    if manifest.is_file():
        with Manifest.open(manifest, readonly=True) as m:
            keys = [str(k) for k in m.statuses()["key"]]
        return keys, f"the segment list of the {split!r} cache"
    try:
        store = open_store(split, root)
    except (FeatureStoreNotFoundError, SplitNameError):  # stores exist for official splits
        raise SubsetError(f"split {split!r} is not an official split name and has no cache or "
                          "embeddings store under the data root: there is no clip list to "
                          "match the subset against (pass --split with a cached split or "
                          "--root with its data root)") from None
    return [str(k) for k in store.keys], f"the {split!r} embeddings store"


def available_clips(split: str, root: PathLike | None = None) -> tuple[list[str], str]:
    """``(keys, source)`` of the clips the split's audio cache holds, else its embeddings
    store; :class:`SubsetError` naming both when neither exists."""
    try:
        cache = open_cache(split, root=root)
    except CacheError as no_cache:
        try:
            store = open_store(split, root)
        except (FeatureStoreNotFoundError, SplitNameError):
            raise SubsetError(f"subset 'available' needs the {split!r} audio cache or "
                              f"embeddings store; neither is there ({no_cache}); download the "
                              "split or import the embeddings (audioset features import)"
                              ) from None
        return [str(k) for k in store.keys], f"the clips of the {split!r} embeddings store"
    return list(cache.keys()), f"the clips of the {split!r} audio cache"


class SplitLists:
    """The clip lists of one split, each read once: its list (:func:`official_clips`), the
    clips its cache or store holds (:func:`available_clips`), and both together, the clips a
    subset's ids are matched against."""

    def __init__(self, split: str, root: PathLike | None = None):
        self.split, self.root = split, root

    @cached_property
    def official(self) -> tuple[list[str], str]:
        """``(keys, source)`` of the split's list."""
        return official_clips(self.split, self.root)

    @cached_property
    def available(self) -> tuple[list[str], str]:
        """``(keys, source)`` of the clips the split's cache or store holds."""
        return available_clips(self.split, self.root)

    @cached_property
    def known(self) -> tuple[list[str], str]:
        """``(keys, source)``: the split's list, and any clip its cache or store holds besides."""
        keys, source = self.official
        try:
            held, where = self.available
        except SubsetError:
            return keys, source
        listed = set(keys)
        extra = [k for k in held if k not in listed]
        if not extra:
            return keys, source
        return [*keys, *extra], f"{source} and {where}"


def match_ids(ids: Sequence[str], reference: Sequence[str]) -> tuple[list[str], list[str], str]:
    """``(keys, unknown, matched_by)``: each id as a key of ``reference``, else as a YouTube
    id standing for every key of that video, else unknown."""
    ref = set(reference)
    by_ytid: dict[str, list[str]] = {}
    for k in reference:
        by_ytid.setdefault(_key_ytid(k), []).append(k)
    keys: list[str] = []
    unknown: list[str] = []
    kinds = set()
    for i in ids:
        if i in ref:
            keys.append(i)
            kinds.add("key")
        elif i in by_ytid:
            keys.extend(by_ytid[i])
            kinds.add("ytid")
        else:
            unknown.append(i)
    matched_by = " and ".join(sorted(kinds)) or "key"
    return sorted(set(keys)), unknown, matched_by


def resolve_subset(
    subset: str | Subset,
    *,
    split: str = "eval",
    root: PathLike | None = None,
    lists: SplitLists | None = None,
) -> Subset:
    """The clips of ``subset`` (a name of :data:`SUBSET_NAMES`, a file of ids, or a
    :class:`Subset`, returned as it is) in ``split``; ids of a list or file are matched
    against the split's list and the clips its cache or store holds.

    ``lists`` are the split's clip lists, read once; pass one to resolve several subsets.

    Raises
    ------
    SubsetError
        Unknown name or unreadable file; a split with no list or no cache.
    RemoteError, ChecksumMismatchError
        A named subset's file cannot be fetched, or is not the pinned one (mirrors via
        ``$AUDIOSET_SUBSETS_BASE_URL``).
    """
    if isinstance(subset, Subset):
        return subset
    name = str(subset).strip()
    lists = lists or SplitLists(split, root)
    if name == "official":
        keys, source = lists.official
        return Subset("official", source, tuple(sorted(set(keys))), len(keys))
    if name == "available":
        keys, source = lists.available
        return Subset("available", source, tuple(sorted(set(keys))), len(keys))
    if name in SUBSET_REMOTES:
        path = fetch(SUBSET_REMOTES[name], root=root, progress=False)
        ids = read_id_file(path)
        source = f"{path.name} ({SUBSET_REMOTES[name]}, verified)"
    elif Path(name).is_file():
        ids = read_id_file(name)
        source = name
    else:
        raise SubsetError(f"unknown subset {name!r}: one of {', '.join(SUBSET_NAMES)}, or a "
                          "file of clip ids (no such file)")
    keys, source_ref = lists.known
    matched, unknown, matched_by = match_ids(ids, keys)
    if unknown:
        logger.warning("%d of the %d ids of subset %s are not in %s (e.g. %s); left out",
                       len(unknown), len(ids), name, source_ref, unknown[0])
    return Subset(name, source, tuple(matched), len(ids), tuple(unknown), matched_by)


def resolve_subsets(subsets: Iterable[str | Subset], *, split: str = "eval",
                    root: PathLike | None = None) -> list[Subset]:
    """:func:`resolve_subset` of each, the split's clip lists read at most once; names may
    be comma-separated (``"official,ast"``)."""
    lists = SplitLists(split, root)
    out: list[Subset] = []
    for s in subsets:
        parts = [s] if isinstance(s, Subset) else [p for p in str(s).split(",") if p.strip()]
        for p in parts:
            resolved = resolve_subset(p, split=split, root=root, lists=lists)
            if all(r.name != resolved.name for r in out):
                out.append(resolved)
    if not out:
        raise SubsetError("no subset named (names: official, ast, available, or a file of ids)")
    return out


@dataclass
class SubsetComparison:
    """Headline metrics of one set of scores on several subsets, side by side."""

    split: str
    coverage: list[SubsetCoverage]
    #: the result on each subset's clips (None where none of them has scores and labels)
    results: list[EvaluationResult | None] = field(default_factory=list)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """Per subset: its record, the clips evaluated with their hash, mAP, mean AUC and d'."""
        out = {}
        for cov, r in zip(self.coverage, self.results, strict=True):
            row = cov.fields()
            row["split"] = self.split
            row["clips_evaluated"] = 0 if r is None or r.clip_ids is None else len(r.clip_ids)
            row["clips_sha256"] = id_list_hash(r.clip_ids or []) if r is not None else \
                id_list_hash([])
            m = None if r is None else r.metrics
            row["mAP"] = None if m is None else _num(m.mean_ap)
            row["mean_auc"] = None if m is None else _num(m.mean_auc)
            row["dprime"] = None if m is None else _num(m.dprime_of_mean_auc)
            row["classes_defined"] = 0 if m is None else int(m.defined.sum())
            out[cov.subset.name] = row
        return out

    def to_markdown(self) -> str:
        """One column per subset: the metrics, then what each was computed on."""
        rows = self.to_dict()
        names = list(rows)
        lines = ["| | " + " | ".join(f"`{n}`" for n in names) + " |",
                 "|---|" + "---|" * len(names)]
        spec: list[tuple[str, str]] = [
            ("mAP", "mAP"), ("mean_auc", "mean AUC"), ("dprime", "d′ (of the mean AUC)"),
            ("clips_evaluated", "clips evaluated"), ("clips_sha256", "clip list sha256"),
            ("subset_clips", "clips in the subset"), ("subset_scored", "scored"),
            ("subset_missing_scores", "missing from the scores"),
            ("subset_scored_without_labels", "scored, without labels"),
            ("subset_unknown_ids", f"ids not in the {self.split} list"),
            ("classes_defined", "classes defined"),
        ]
        for key, label in spec:
            values = [rows[n].get(key) for n in names]
            if key == "subset_scored_without_labels" and not any(values):
                continue
            lines.append(f"| {label} | " + " | ".join(_cell(key, v) for v in values) + " |")
        lines.append("")
        for n in names:
            lines.append(f"- `{n}`: {rows[n]['subset_source']}")
        return "\n".join(lines) + "\n"


def _cell(key: str, v: Any) -> str:
    if v is None:
        return "—"
    if key.endswith("sha256"):
        return f"`{str(v)[:SHORT_HASH]}`"
    if isinstance(v, float):
        return f"{v:.4f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def _num(x: Any) -> float | None:
    x = float(x)
    return x if x == x and abs(x) != float("inf") else None


__all__ = ["SHORT_HASH", "SUBSET_LABELS", "SUBSET_NAMES", "SUBSET_REMOTES", "Subset",
           "SplitLists", "SubsetComparison", "SubsetCoverage", "SubsetError",
           "available_clips", "id_list_hash", "match_ids", "official_clips", "read_id_file",
           "resolve_subset", "resolve_subsets"]
