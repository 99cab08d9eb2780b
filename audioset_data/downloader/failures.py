"""Why a clip could not be fetched: the failure reasons, and one ordered rule table that turns
any exception met while fetching (yt-dlp's, ffmpeg's, the network's) into a reason.

Permanent vs transient
----------------------
Permanent means a retry gives the same answer: the video is gone, private, blocked, needs an
account (age, membership), is geo-blocked, answers 404/410, or its media holds no decodable
audio in the range. Transient means the network or the site's rate limiting got in the way:
HTTP 403 (YouTube answers 403 when a signed media address expires or a client is throttled),
429, 5xx, timeouts, connection resets, failed name lookups and bodies that stop short.
``bot_check`` ("Sign in to confirm you're not a bot") is transient: it lifts with time or with
cookies.
"""

from __future__ import annotations

import importlib
import re
import socket
from dataclasses import dataclass
from functools import cache

from audioset_data.audio.ffmpeg import FFmpegError
from audioset_data.errors import DownloadError
from audioset_data.segments.ids import YTID_RULE, is_ytid

#: Every failure reason: whether it is permanent, and what it means.
REASONS: dict[str, tuple[bool, str]] = {
    "unavailable": (True, "the video is unavailable (deleted or never existed)"),
    "private": (True, "the video is private"),
    "removed": (True, "the video was removed (terms of service, uploader)"),
    "terminated": (True, "the uploader's account was terminated"),
    "copyright": (True, "the video was blocked by a copyright claim"),
    "age_restricted": (True, "the video needs a signed-in adult account"),
    "sign_in": (True, "the video needs a signed-in account (members only, etc.)"),
    "bot_check": (False, "the site asks to sign in to prove this is not a bot; use cookies"),
    "geo": (True, "the video is not available from this country"),
    "http_403": (False, "HTTP 403: expired media address or throttling"),
    "http_429": (False, "HTTP 429: too many requests"),
    "http_404": (True, "HTTP 404/410: no such media"),
    "http_5xx": (False, "HTTP 5xx: server error"),
    "timeout": (False, "no progress within the timeout"),
    "stalled": (False, "the transfer stalled: almost nothing arrived for the stall timeout"),
    "connection": (False, "connection refused, reset or name lookup failed"),
    "no_audio": (True, "no audio stream, or nothing in the requested time range"),
    "decode_error": (True, "the media could not be decoded"),
    "truncated": (False, "the media stopped before its announced end"),
    "too_large": (True, "the download would exceed the byte limit"),
    "invalid_id": (True, "not a valid YouTube id"),
    "unknown": (False, "an unclassified error"),
}


class ClipFailure(DownloadError):
    """A clip could not be fetched; ``reason`` is a stable short code from :data:`REASONS`.

    Attributes
    ----------
    reason
        e.g. ``"private"``, ``"http_429"``, ``"timeout"``.
    permanent
        True when retrying cannot help (record the clip as dead).
    status
        HTTP status when one was seen, else None.
    detail
        The underlying message (yt-dlp's or ffmpeg's log tail).
    ytid
        The video id, when known.
    """

    def __init__(
        self,
        reason: str,
        detail: str = "",
        *,
        ytid: str | None = None,
        status: int | None = None,
        permanent: bool | None = None,
    ):
        if reason not in REASONS:
            reason = "unknown"
        self.reason = reason
        self.permanent = REASONS[reason][0] if permanent is None else permanent
        self.status = status
        self.detail = detail
        self.ytid = ytid
        kind = "permanent" if self.permanent else "transient"
        who = f"{ytid}: " if ytid else ""
        first = detail.strip().splitlines()[0] if detail.strip() else REASONS[reason][1]
        super().__init__(f"{who}{reason} ({kind}): {first}")

    def __reduce__(self):  # keep attributes across processes (dask, multiprocessing)
        return (
            _rebuild_failure,
            (type(self), self.reason, self.detail, self.ytid, self.status, self.permanent),
        )


def _rebuild_failure(cls, reason, detail, ytid, status, permanent):  # noqa: ANN001, ANN202
    return cls(reason, detail, ytid=ytid, status=status, permanent=permanent)


class InvalidIdError(ClipFailure, ValueError):
    """The string is not a YouTube id; raised before any request is made."""

    def __init__(self, ytid: object, detail: str = ""):
        super().__init__(
            "invalid_id", detail or f"{ytid!r} is not a YouTube id ({YTID_RULE})", ytid=None)
        self.ytid = ytid  # type: ignore[assignment]

    def __reduce__(self):
        return (type(self), (self.ytid, self.detail))


def validate_ytid(ytid: object) -> str:
    """Return ``ytid`` if it is a valid YouTube id, else raise :class:`InvalidIdError`.

    >>> validate_ytid("-0SdAVK79lg")
    '-0SdAVK79lg'
    >>> validate_ytid("../../etc/pa")
    Traceback (most recent call last):
    ...
    audioset_data.downloader.failures.InvalidIdError: invalid_id (permanent): '../../etc/pa' is not a YouTube id (11 characters of A-Z a-z 0-9 _ -)
    """  # noqa: E501
    if not is_ytid(ytid):
        raise InvalidIdError(ytid)
    return ytid  # type: ignore[return-value]


# -- the rule table ----------------------------------------------------------------------------
@dataclass(frozen=True)
class _Evidence:
    """What :func:`classify_error` looks at, gathered once from the exception chain."""

    chain: tuple[BaseException, ...]
    text: str  # every message in the chain, lower-cased
    status: int | None  # an HTTP status from the exceptions, or ffmpeg's log
    ffmpeg_kind: str | None


@dataclass(frozen=True)
class Rule:
    """One row of :data:`RULES`: ``reason`` applies when every condition given holds.

    ``words`` is searched in the lower-cased messages; ``status`` is an inclusive range of HTTP
    statuses; ``ffmpeg_kind`` is :attr:`audioset_data.audio.ranges.FFmpegError.kind`; ``types`` are
    exception classes anywhere in the chain (dotted names are imported when first needed).
    ``permanent`` overrides the reason's own kind.
    """

    reason: str
    words: str | None = None
    status: tuple[int, int] | None = None
    ffmpeg_kind: str | None = None
    types: tuple[str | type[BaseException], ...] = ()
    permanent: bool | None = None

    def matches(self, ev: _Evidence) -> bool:
        if self.words is not None and not _compiled(self.words).search(ev.text):
            return False
        if self.status is not None and not (
                ev.status is not None and self.status[0] <= ev.status <= self.status[1]):
            return False
        if self.ffmpeg_kind is not None and ev.ffmpeg_kind != self.ffmpeg_kind:
            return False
        if self.types:
            classes = tuple(c for c in map(_resolve, self.types) if c is not None)
            if not any(isinstance(e, classes) for e in ev.chain):
                return False
        return True


@cache
def _compiled(words: str) -> re.Pattern[str]:
    return re.compile(words)


@cache
def _resolve(name: str | type[BaseException]) -> type[BaseException] | None:
    if not isinstance(name, str):
        return name
    module, _, attr = name.rpartition(".")
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError):  # pragma: no cover - yt-dlp is a dependency
        return None


_NAME_LOOKUP = (r"name resolution|failed to resolve|name or service not known"
                r"|nodename nor servname|no address associated with hostname|getaddrinfo")

def is_name_lookup(detail: str) -> bool:
    """Whether a failure's detail says a host name could not be resolved (no network, or no
    DNS): when every failure says so, the machine is likely offline."""
    return re.search(_NAME_LOOKUP, str(detail), re.IGNORECASE) is not None


#: Tried in order; the first rule that matches gives the reason. YouTube's own wording comes
#: first (it is specific), HTTP statuses next (from exceptions or ffmpeg's log), then what
#: ffmpeg says about the media it received ("moov atom not found" is a broken file, not a 404),
#: then generic wording and exception types.
RULES: tuple[Rule, ...] = (
    Rule("geo", types=("yt_dlp.utils.GeoRestrictedError",)),
    # ffmpeg's own verdicts on the run (killed at the time limit, output cap, short body)
    *(Rule(kind, ffmpeg_kind=kind) for kind in ("timeout", "too_large", "truncated", "no_audio")),
    # YouTube's wording
    Rule("terminated", words=r"account associated with this video has been terminated"),
    Rule("copyright", words=r"copyright"),
    Rule("removed", words=r"video has been removed|removed for violating|removed by the uploader"),
    Rule("private", words=r"private video|video is private"),
    Rule("age_restricted",
         words=r"confirm your age|age[- ]restricted|inappropriate for some users"),
    Rule("bot_check", words=r"not a bot"),
    Rule("geo", words=r"not (?:made this video )?available in your country|geo[- ]?restrict"),
    Rule("sign_in", words=r"sign in|members[- ]only|join this channel|login required"),
    Rule("no_audio", words=r"requested format is not available|no audio"
                           r"|does not contain any stream|matches no streams|output file is empty"),
    # an HTTP status seen anywhere
    Rule("http_429", status=(429, 429)),
    Rule("http_403", status=(403, 403)),
    Rule("http_404", status=(404, 404)),
    Rule("http_404", status=(410, 410)),
    Rule("http_5xx", status=(500, 599)),
    # ffmpeg received a body that is not media
    Rule("decode_error", words=r"moov atom not found|invalid data found|ebml header"
                               r"|could not find codec|error while decoding"),
    # generic wording
    Rule("unavailable", words=r"video unavailable|video is unavailable|video is not available"
                              r"|unsupported url|incomplete youtube id|not a valid url"),
    Rule("http_429", words=r"\b429\b|too many requests"),
    Rule("http_403", words=r"\b403\b|forbidden"),
    Rule("http_404", words=r"\b(?:404|410)\b|404 not found|http error 404"),
    # ffmpeg words a 5xx status as "Server returned 5XX Server Error reply"
    Rule("http_5xx", words=r"\b5\d\d\b|\b5xx\b|internal server error|bad gateway"
                           r"|service unavailable|gateway time-?out"),
    Rule("truncated", words=r"incompleteread|ends prematurely|content-length|ended after"),
    Rule("timeout", words=r"timed out|timeout"),
    Rule("connection", words=r"connection (?:refused|reset|aborted)|remote end closed"
                             r"|broken pipe|network is unreachable|unable to connect"
                             r"|errno 111|errno 104|" + _NAME_LOOKUP),
    Rule("decode_error", words=r"invalid argument"),
    Rule("timeout", types=(TimeoutError,)),
    Rule("connection", types=(ConnectionError, socket.gaierror)),
    # another 4xx answer: the server means it
    Rule("unknown", status=(400, 499), permanent=True),
)


def _exception_chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and everything it wraps (yt-dlp keeps the cause in ``exc_info``/``cause``)."""
    seen: list[BaseException] = []
    todo: list[BaseException | None] = [exc]
    while todo:
        e = todo.pop(0)
        if e is None or any(e is s for s in seen) or len(seen) > 20:
            continue
        seen.append(e)
        info = getattr(e, "exc_info", None)
        if isinstance(info, tuple) and len(info) > 1 and isinstance(info[1], BaseException):
            todo.append(info[1])
        cause = getattr(e, "cause", None)
        if isinstance(cause, BaseException):
            todo.append(cause)
        reason = getattr(e, "reason", None)  # urllib's URLError wraps the socket error
        if isinstance(reason, BaseException):
            todo.append(reason)
        todo += [e.__cause__, e.__context__]
    return seen


def _status_of(chain: list[BaseException]) -> int | None:
    for e in chain:
        if isinstance(e, FFmpegError):
            if e.status is not None:
                return e.status
            continue
        for attr in ("status", "code"):
            value = getattr(e, attr, None)
            if isinstance(value, int) and 100 <= value <= 599:
                return value
    return None


def _evidence(exc: BaseException) -> _Evidence:
    chain = _exception_chain(exc)
    texts = []
    for e in chain:
        texts.append(str(getattr(e, "orig_msg", "") or ""))
        texts.append(str(e))
        if isinstance(e, FFmpegError):
            texts.append(e.stderr)
    ffmpeg = next((e for e in chain if isinstance(e, FFmpegError)), None)
    return _Evidence(tuple(chain), "\n".join(t for t in texts if t).lower(), _status_of(chain),
                     ffmpeg.kind if ffmpeg is not None else None)


def classify_error(exc: BaseException, *, ytid: str | None = None,
                   rules: tuple[Rule, ...] = RULES) -> ClipFailure:
    """Turn any exception met while fetching a clip into a :class:`ClipFailure`.

    An existing :class:`ClipFailure` is returned as it is; anything else goes through
    :data:`RULES` in order, and the first rule that matches gives the reason (``unknown``,
    transient, when none does).

    >>> from yt_dlp.utils import DownloadError
    >>> classify_error(DownloadError("ERROR: [youtube] abc: Private video")).reason
    'private'
    >>> f = classify_error(DownloadError("ERROR: unable to download: HTTP Error 429"))
    >>> f.reason, f.permanent, f.status
    ('http_429', False, 429)
    """
    if isinstance(exc, ClipFailure):
        if ytid and not exc.ytid:
            exc.ytid = ytid
        return exc
    ev = _evidence(exc)
    detail = str(exc)
    rule = next((r for r in rules if r.matches(ev)), None)
    if rule is None:
        return ClipFailure("unknown", detail, ytid=ytid, status=ev.status)
    status = ev.status
    if status is None and rule.reason.startswith("http_"):
        m = re.search(r"\b([45]\d\d)\b", ev.text)
        status = int(m[1]) if m else None
    return ClipFailure(rule.reason, detail, ytid=ytid, status=status, permanent=rule.permanent)


__all__ = [
    "REASONS",
    "RULES",
    "ClipFailure",
    "InvalidIdError",
    "Rule",
    "classify_error",
    "is_name_lookup",
    "validate_ytid",
]
