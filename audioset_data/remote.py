"""Official remote files, declared once as data, and a verified, atomic, cached fetch.

Each :class:`Remote` pins the size and checksum of the known release. :func:`fetch` streams the
file to a temporary name next to its destination, verifies it, and renames it into place, so a
crash never leaves a half-written file under the real name. A cached file is re-verified on every
use; a corrupted one is fetched again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

import requests
from requests.adapters import HTTPAdapter
from tqdm.auto import tqdm
from urllib3.util.retry import Retry

from .config import (
    ARCHIVE_SUFFIXES,
    CSV_BASE_URL_ENV,
    FEATURES_BASE_URL_ENV,
    ONTOLOGY_BASE_URL_ENV,
    STRONG_BASE_URL_ENV,
    SUBSETS_BASE_URL_ENV,
    PathLike,
    csv_base_url,
    data_home,
    features_base_url,
    ontology_base_url,
    strong_base_url,
    subsets_base_url,
)
from .errors import ChecksumMismatchError, ConfigError, RemoteError
from .fileio import atomic_path, atomic_write

logger = logging.getLogger(__name__)

#: Refuse downloads larger than this many bytes when no size is pinned.
DEFAULT_MAX_BYTES = 2 * 1024**3


@dataclass(frozen=True)
class Remote:
    """One official file: where it lives and what it must hash to.

    ``git_sha1`` is ``sha1(b"blob <size>\\0" + content)``, the id git gives a file; it is the
    only checksum known for some releases.
    """

    name: str
    filename: str
    group: str  # "ontology", "csv", "strong", "features" or "subsets": which base serves it
    size: int | None = None
    sha256: str | None = None
    git_sha1: str | None = None
    #: refuse a download larger than this (default: 4 × the pinned size, else 2 GiB)
    max_bytes: int | None = None
    #: an interrupted download continues from its ``.part`` file with a Range request
    resumable: bool = False
    #: recorded with the copy, e.g. that no checksum is published for the file
    note: str | None = None

    def url(self, base_url: str | None = None) -> str:
        """Full address of the file under ``base_url`` (or the configured default)."""
        if self.group == "features":
            base = features_base_url(base_url)
            return base if base.endswith(ARCHIVE_SUFFIXES) else base + self.filename
        if self.group == "ontology":
            base = ontology_base_url(base_url)
        elif self.group == "strong":
            base = strong_base_url(base_url)
        elif self.group == "subsets":
            base = subsets_base_url(base_url)
        else:
            base = csv_base_url(base_url)
        return base + self.filename


REMOTES: dict[str, Remote] = {
    r.name: r
    for r in (
        Remote(
            "ontology",
            "ontology.json",
            "ontology",
            size=342780,
            sha256="9c685f4403eecc3ca9be37fd7285cf212feaaea6ff7229d3e7ca89e0d1f2d15d",
            git_sha1="cee2c5055a4778833dd165cae4010086e6d4bdc5",
        ),
        Remote(
            "class_labels_indices",
            "class_labels_indices.csv",
            "csv",
            size=14675,
            sha256="cdd1049833c4b86127c2773ac0d14a2754b6a6d0d1798002ed5c66e699708429",
            git_sha1="3a2767e81114adecde59992cf6607f31c1862f4c",
        ),
        Remote(
            "eval_segments",
            "eval_segments.csv",
            "csv",
            size=1143389,
            sha256="f7055f53935f70e74e39494a5c8c4c78f1700fce275028bd36e31186f33d45db",
            git_sha1="e5532aef6147625c454d4c5cd75847907d593c2a",
        ),
        Remote(
            "balanced_train_segments",
            "balanced_train_segments.csv",
            "csv",
            size=1211931,
            sha256="3b83e5ff9ed72cfda37d4e36ce08250e107c1ea70f109f6ab6668ac200db5e94",
            git_sha1="22dfbeafdc2bfec562b3146687d44f42a03600f8",
        ),
        Remote(
            "unbalanced_train_segments",
            "unbalanced_train_segments.csv",
            "csv",
            git_sha1="09dd5a7ca8b5c9067007115ca053c455c502d55c",
        ),
        # Temporally-strong labels (2021): only the git blob SHA-1 is known for these.
        Remote(
            "train_strong",
            "audioset_train_strong.tsv",
            "strong",
            git_sha1="e409b11779822235ad71b8fc80dbfb39e59cb2a8",
        ),
        Remote(
            "eval_strong",
            "audioset_eval_strong.tsv",
            "strong",
            git_sha1="0acaf913fb334ad7f5e67ee4855a20697d48edb0",
        ),
        Remote(
            "eval_strong_framed_posneg",
            "audioset_eval_strong_framed_posneg.tsv",
            "strong",
            git_sha1="63850af596a64d8bb53cee34d8206ee6addcb740",
        ),
        # The embeddings release (2.4 GB): Google publishes no checksum for it; the size and
        # sha256 of the copy fetched are recorded beside it.
        Remote(
            "features",
            "features.tar.gz",
            "features",
            max_bytes=8 * 1024**3,
            resumable=True,
            note="Google publishes no checksum for features.tar.gz; the size and sha256 "
                 "recorded here are those of the copy fetched",
        ),
        Remote(
            "strong_mid_to_display_name",
            "mid_to_display_name.tsv",
            "strong",
            size=10477,
            sha256="6aeaa2144223933eab75566ca478366ad80e59f381611e308cbe536913d7ddf7",
            git_sha1="02b2bd69614d3966ec6f9ed564ac0346024538c8",
        ),
        # Evaluation subsets: the 19,185 eval YouTube ids AST evaluated (one per line).
        Remote(
            "ast_eval_ids",
            "our_as_eval_id.csv",
            "subsets",
            size=230220,
            sha256="d1ebb13f7b857bb3add2f5e73309d7a6b7453b761215d45e66c4bab440b574ff",
        ),
    )
}


def get_remote(name: str) -> Remote:
    """Look up a declared remote by name; raise :class:`ConfigError` naming the known ones."""
    try:
        return REMOTES[name]
    except KeyError:
        known = ", ".join(sorted(REMOTES))
        raise ConfigError(f"unknown remote {name!r}; known remotes: {known}") from None


def file_digests(path: PathLike) -> tuple[int, str, str]:
    """Return ``(size, sha256, git blob sha1)`` of a file, reading it once."""
    path = Path(path)
    size = path.stat().st_size
    sha256 = hashlib.sha256()
    git = hashlib.sha1(f"blob {size}\0".encode(), usedforsecurity=False)
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            sha256.update(block)
            git.update(block)
    return size, sha256.hexdigest(), git.hexdigest()


def _meta_path(path: Path) -> Path:
    return path.with_name(path.name + ".meta.json")


def recorded_digests(path: PathLike) -> dict | None:
    """Digests recorded when ``path`` was last verified, if the file is unchanged since.

    "Unchanged" means the same size and modification time (nanoseconds) as recorded, the
    marker that lets a verified file be used again without reading it whole.
    """
    path = Path(path)
    meta_path = _meta_path(path)
    if not path.is_file() or not meta_path.is_file():
        return None
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError):
        return None
    st = path.stat()
    if meta.get("size") != st.st_size or meta.get("mtime_ns") != st.st_mtime_ns:
        return None
    return meta


def sha256_of(path: PathLike) -> str:
    """SHA-256 of a file: the recorded one for an unchanged fetched file, else computed."""
    meta = recorded_digests(path)
    if meta and meta.get("sha256"):
        return str(meta["sha256"])
    return file_digests(path)[1]


def _expected(remote: Remote, meta: dict | None) -> dict[str, object]:
    """Checksums to verify against: the pinned ones, or those accepted for a new upstream."""
    if meta and meta.get("accepted_new_upstream"):
        return {k: meta[k] for k in ("size", "sha256") if meta.get(k) is not None}
    pinned: dict[str, object] = {}
    if remote.size is not None:
        pinned["size"] = remote.size
    if remote.sha256:
        pinned["sha256"] = remote.sha256
    if remote.git_sha1:
        pinned["git_sha1"] = remote.git_sha1
    return pinned


def _mismatches(path: Path, expected: dict[str, object]) -> tuple[list[str], dict[str, object]]:
    size, sha256, git_sha1 = file_digests(path)
    actual: dict[str, object] = {"size": size, "sha256": sha256, "git_sha1": git_sha1}
    bad = [f"{k} {actual[k]} != expected {v}" for k, v in expected.items() if actual[k] != v]
    return bad, actual


def _session(retries: int) -> requests.Session:
    session = requests.Session()
    retry = Retry(
        total=retries,
        connect=0,  # an unreachable or unresolvable host does not answer a retry either
        backoff_factor=0.5,
        status_forcelist=(429, 500, 502, 503, 504),
        allowed_methods=frozenset({"GET", "HEAD"}),
        raise_on_status=False,
    )
    adapter = HTTPAdapter(max_retries=retry)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def _local_source(url: str) -> Path | None:
    """A ``file://`` address or a plain path serves as a local mirror."""
    parsed = urlparse(url)
    if parsed.scheme == "file":
        return Path(unquote(parsed.path))
    if parsed.scheme == "" or (len(parsed.scheme) == 1 and os.name == "nt"):
        return Path(url)
    return None


def _download(
    url: str,
    tmp: Path,
    *,
    timeout: float,
    retries: int,
    max_bytes: int,
    progress: bool,
    remote: Remote | None = None,
) -> None:
    """Stream ``url`` into ``tmp``, enforcing ``max_bytes``."""
    local = _local_source(url)
    if local is not None:
        if not local.is_file():
            raise RemoteError(f"mirror file {str(local)!r} (from {url!r}) does not exist")
        if local.stat().st_size > max_bytes:
            raise RemoteError(f"{url!r} is larger than the limit of {max_bytes} bytes")
        shutil.copyfile(local, tmp)
        return
    session = _session(retries)
    try:
        # identity: the checksum and the length check are about the bytes of the file itself
        headers = {"Accept-Encoding": "identity"}
        with session.get(url, stream=True, timeout=timeout, headers=headers) as resp:
            if resp.status_code != 200:
                raise RemoteError(f"GET {url!r} answered HTTP {resp.status_code}")
            total = int(resp.headers.get("Content-Length") or 0) or None
            if total is not None and total > max_bytes:
                raise RemoteError(f"{url!r} announces {total} bytes, over the limit {max_bytes}")
            written = 0
            with (
                tmp.open("wb") as fh,
                tqdm(
                    total=total,
                    unit="B",
                    unit_scale=True,
                    desc=Path(urlparse(url).path).name,
                    disable=not progress,
                    leave=False,
                ) as bar,
            ):
                for block in resp.iter_content(chunk_size=1 << 16):
                    written += len(block)
                    if written > max_bytes:
                        raise RemoteError(f"{url!r} sent more than the limit of {max_bytes} bytes")
                    fh.write(block)
                    bar.update(len(block))
            if total is not None and written != total:
                raise RemoteError(f"{url!r} ended after {written} of {total} bytes")
    except requests.ConnectionError as exc:
        raise RemoteError(_unreachable(url, exc, remote)) from None
    except requests.RequestException as exc:
        raise RemoteError(f"could not fetch {url!r}: {_short(exc)}") from exc
    finally:
        session.close()


def _short(exc: BaseException, limit: int = 200) -> str:
    """The innermost cause's message, shortened (requests nests three levels of repr)."""
    while exc.__cause__ is not None or exc.__context__ is not None:
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    text = str(exc)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _unreachable(url: str, exc: BaseException, remote: Remote | None) -> str:
    """A short message for a host that cannot be reached, naming the mirror settings."""
    host = urlparse(url).hostname or url
    chain = []
    e: BaseException | None = exc
    while e is not None and len(chain) < 10:
        chain.append(e)
        e = e.__cause__ or e.__context__
    names = " ".join(type(x).__name__ for x in chain) + " " + " ".join(map(str, chain))
    what = ("cannot resolve the host name" if "NameResolution" in names
            or "Name or service not known" in names or "getaddrinfo" in names
            else "cannot connect")
    group = remote.group if remote is not None else "csv"
    env = {"ontology": ONTOLOGY_BASE_URL_ENV, "strong": STRONG_BASE_URL_ENV,
           "features": FEATURES_BASE_URL_ENV, "subsets": SUBSETS_BASE_URL_ENV}.get(
        group, CSV_BASE_URL_ENV)
    flag = " (or --csv-url)" if group == "csv" else ""
    name = remote.filename if remote is not None else url
    return (f"could not fetch {name} from {host}: {what} (offline?). Set {env}{flag} to a "
            "mirror folder or address holding the official files")


def cache_path(name: str, root: PathLike | None = None) -> Path:
    """Where the cached copy of remote ``name`` lives under the data root."""
    return data_home(root) / "remote" / get_remote(name).filename


def _download_resumable(url: str, part: Path, *, timeout: float, retries: int,
                        max_bytes: int, progress: bool, remote: Remote) -> None:
    """Append ``url`` to ``part`` from where it stops, with Range requests, until complete
    (a server that ignores the Range starts the file over)."""
    last = ""
    for attempt in range(retries + 1):
        have = part.stat().st_size if part.exists() else 0
        headers = {"Accept-Encoding": "identity"}
        if have:
            headers["Range"] = f"bytes={have}-"
        try:
            with requests.get(url, stream=True, timeout=timeout, headers=headers) as resp:
                if resp.status_code == 416 and have:  # nothing left past what we hold
                    return
                if resp.status_code == 200:
                    have = 0
                elif resp.status_code != 206:
                    raise RemoteError(f"GET {url!r} answered HTTP {resp.status_code}")
                length = int(resp.headers.get("Content-Length") or 0) or None
                total = have + length if length else None
                if total is not None and total > max_bytes:
                    raise RemoteError(f"{url!r} announces {total} bytes, over the limit "
                                      f"{max_bytes}")
                with part.open("ab" if have else "wb") as fh, tqdm(
                        total=total, initial=have, unit="B", unit_scale=True,
                        desc=remote.filename, disable=not progress, leave=False) as bar:
                    for block in resp.iter_content(chunk_size=1 << 20):
                        fh.write(block)
                        bar.update(len(block))
                got = part.stat().st_size
                if got > max_bytes:
                    part.unlink()
                    raise RemoteError(f"{url!r} sent more than the limit of {max_bytes} bytes")
                if total is None or got == total:
                    return
                last = f"the body ended after {got} of {total} bytes"
        except requests.ConnectionError as exc:
            if not have and not part.exists():
                raise RemoteError(_unreachable(url, exc, remote)) from None
            last = _short(exc)
        except requests.RequestException as exc:
            last = _short(exc)
        logger.warning("fetching %s stopped (%s); resuming (try %d of %d)", url, last,
                       attempt + 1, retries)
    raise RemoteError(f"could not fetch {url!r} after {retries + 1} tries ({last}); run again "
                      f"to resume from {str(part)!r}")


def fetch(
    name: str,
    *,
    root: PathLike | None = None,
    base_url: str | None = None,
    force: bool = False,
    accept_new_upstream: bool = False,
    verify: bool = False,
    timeout: float = 60.0,
    retries: int = 3,
    progress: bool = True,
) -> Path:
    """Return a verified local copy of the official file ``name``, fetching it if needed.

    Parameters
    ----------
    name
        A key of :data:`REMOTES`, e.g. ``"ontology"`` or ``"eval_segments"``.
    root
        Data root (see :func:`audioset_data.config.data_home`).
    base_url
        Mirror address (``http(s)://``, ``file://`` or a folder path) replacing the official one.
    force
        Fetch again even when a verified copy is cached.
    accept_new_upstream
        Keep a file whose checksum differs from the pinned release (``--accept-new-upstream``
        on the command line). Such a copy is verified against its own checksum on later uses
        that accept it too, from the same address; a use without it (or from another address)
        fetches the file again and requires the pinned release.
    verify
        Hash a cached copy again even when its size and modification time are unchanged since
        it was verified (by default those two are the marker that skips re-reading it).

    Raises
    ------
    RemoteError
        The file could not be fetched.
    ChecksumMismatchError
        The fetched file is not the pinned release and ``accept_new_upstream`` is false.
    """
    remote = get_remote(name)
    dest = cache_path(name, root)
    dest.parent.mkdir(parents=True, exist_ok=True)
    meta_path = _meta_path(dest)
    try:
        meta = json.loads(meta_path.read_text()) if meta_path.is_file() else None
    except ValueError:
        meta = None

    url = remote.url(base_url)
    if meta and meta.get("accepted_new_upstream") and not (
            accept_new_upstream and meta.get("url") == url):
        # a non-pinned copy serves only the runs that accept it, from the source it came from
        why = ("without accept_new_upstream" if not accept_new_upstream
               else f"it came from {meta.get('url')!r}, not {url!r}")
        logger.warning("cached %s is a non-pinned version accepted earlier; %s the pinned "
                       "release is required: fetching %s", dest, why, url)
        meta = None
        force = True
    if dest.is_file() and not force:
        expected = _expected(remote, meta)
        recorded = None if verify else recorded_digests(dest)
        if recorded is not None:
            bad = [k for k, v in expected.items() if recorded.get(k) != v]
        else:
            bad, actual = _mismatches(dest, expected)
            if not bad and meta is not None:
                _write_meta(meta_path, dest, {**meta, **actual})
        if not bad:
            logger.debug("using verified cached %s", dest)
            return dest
        logger.warning("cached %s is corrupted (%s); fetching it again", dest, "; ".join(bad))

    max_bytes = remote.max_bytes or (remote.size * 4 if remote.size else DEFAULT_MAX_BYTES)
    with atomic_path(dest) as tmp:
        logger.info("fetching %s from %s", remote.filename, url)
        if remote.resumable and _local_source(url) is None:
            part = dest.with_name(f".{dest.name}.part")  # a stable name: a re-run resumes
            if force:
                part.unlink(missing_ok=True)
            _download_resumable(url, part, timeout=timeout, retries=retries,
                                max_bytes=max_bytes, progress=progress, remote=remote)
            os.replace(part, tmp)
        else:
            _download(url, tmp, timeout=timeout, retries=retries, max_bytes=max_bytes,
                      progress=progress, remote=remote)
        bad, actual = _mismatches(tmp, _expected(remote, None))
        accepted = False
        if bad:
            if not accept_new_upstream:
                raise ChecksumMismatchError(
                    f"{remote.filename} fetched from {url!r} is not the pinned release "
                    f"({'; '.join(bad)}); pass accept_new_upstream=True "
                    "(--accept-new-upstream) to use a newer upstream version"
                )
            logger.warning("%s differs from the pinned release (%s); accepted as asked",
                           remote.filename, "; ".join(bad))
            accepted = True
    _write_meta(meta_path, dest, {
        "url": url,
        "fetched_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "accepted_new_upstream": accepted,
        **({"note": remote.note} if remote.note else {}),
        **actual,
    })
    return dest


def _write_meta(meta_path: Path, dest: Path, meta: dict) -> None:
    """Record digests with the file's size and mtime, atomically."""
    meta = {**meta, "mtime_ns": dest.stat().st_mtime_ns}
    with atomic_write(meta_path, "w", encoding="utf-8") as fh:
        json.dump(meta, fh, indent=1)


__all__ = [
    "REMOTES",
    "Remote",
    "cache_path",
    "fetch",
    "file_digests",
    "get_remote",
    "recorded_digests",
    "sha256_of",
]
