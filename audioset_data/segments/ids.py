"""What a YouTube id and a video address template look like: the one definition of each.

Imports nothing heavy, so every layer (the segment parser, the fetcher, the download's
planning) can check ids and templates the same way.

>>> is_ytid("-0SdAVK79lg"), is_ytid("aaaaaaaaaaa\\n")
(True, False)
>>> check_url_template("https://mirror.example/audio/{ytid}.webm")
'https://mirror.example/audio/{ytid}.webm'
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from audioset_data.errors import ConfigError

#: A YouTube id: 11 characters of the URL-safe base64 alphabet (a leading ``-`` is valid).
#: No anchors: match it whole (``re.fullmatch``, or ``^...$`` in Arrow's RE2, where ``$`` is
#: the end of the text; Python's ``$`` also matches before a final newline).
YTID_REGEX = r"[A-Za-z0-9_-]{11}"
YTID_PATTERN = re.compile(YTID_REGEX)
#: What an id is, in words, for error messages.
YTID_RULE = "11 characters of A-Z a-z 0-9 _ -"

#: Default address of a video; ``{ytid}`` is replaced by the id.
DEFAULT_URL_TEMPLATE = "https://www.youtube.com/watch?v={ytid}"


def is_ytid(value: object) -> bool:
    """Whether ``value`` is a string that is a whole YouTube id."""
    return isinstance(value, str) and YTID_PATTERN.fullmatch(value) is not None


def check_url_template(template: object) -> str:
    """Return ``template`` if it is an ``http(s)://`` address with ``{ytid}`` in its path or
    query, else raise :class:`~audioset_data.errors.ConfigError`.

    A template without an address (``"{ytid}"``) would make every clip fail with an
    unclassified, transient error that each run retries; it is refused before any request.

    >>> check_url_template("{ytid}")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    audioset_data.errors.ConfigError: url_template '{ytid}' must be an http(s) address ...
    """
    example = "e.g. https://www.youtube.com/watch?v={ytid}"
    if not isinstance(template, str) or "{ytid}" not in template:
        raise ConfigError(f"url_template {template!r} must contain {{ytid}} ({example})")
    parts = urlsplit(template.replace("{ytid}", "aaaaaaaaaaa"))
    host = urlsplit(template).netloc
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname or "{ytid}" in host:
        raise ConfigError(
            f"url_template {template!r} must be an http(s) address with {{ytid}} in its path "
            f"or query ({example})")
    return template


__all__ = [
    "DEFAULT_URL_TEMPLATE",
    "YTID_PATTERN",
    "YTID_REGEX",
    "YTID_RULE",
    "check_url_template",
    "is_ytid",
]
