"""Fetching official files: loopback mirror, checksum pinning, cache reuse and repair."""

from __future__ import annotations

import hashlib
import json

import pytest

from audioset_data.config import data_home
from audioset_data.errors import AudioSetError, ChecksumMismatchError, ConfigError, RemoteError
from audioset_data.remote import REMOTES, cache_path, fetch, file_digests
from audioset_data.testing import Behaviour


def test_fetch_verifies_and_caches(mirror, shared_data):
    path = fetch("ontology", progress=False)
    assert path.read_bytes() == (shared_data / "ontology" / "ontology.json").read_bytes()
    assert mirror.requests["/ontology/ontology.json"] == 1
    # second call works from the cache: no request reaches the server
    assert fetch("ontology", progress=False) == path
    assert mirror.requests["/ontology/ontology.json"] == 1
    meta = json.loads(path.with_name("ontology.json.meta.json").read_text())
    assert meta["sha256"] == REMOTES["ontology"].sha256


def test_corrupted_cache_is_refetched(mirror):
    path = fetch("eval_segments", progress=False)
    data = bytearray(path.read_bytes())
    data[100] ^= 0xFF
    path.write_bytes(bytes(data))
    again = fetch("eval_segments", progress=False)
    assert file_digests(again)[1] == REMOTES["eval_segments"].sha256
    assert mirror.requests["/csv/eval_segments.csv"] == 2


def test_checksum_mismatch_is_an_error_then_accepted(http_server, monkeypatch):
    http_server.add("csv/class_labels_indices.csv", b"index,mid,display_name\n0,/m/x,X\n")
    monkeypatch.setenv("AUDIOSET_CSV_BASE_URL", http_server.url("csv/"))
    with pytest.raises(ChecksumMismatchError, match="accept-new-upstream"):
        fetch("class_labels_indices", progress=False)
    assert not cache_path("class_labels_indices").exists()
    path = fetch("class_labels_indices", accept_new_upstream=True, progress=False)
    assert path.read_bytes().startswith(b"index,mid")
    # later uses that accept it too verify against the accepted checksum, offline
    http_server.files.clear()
    assert fetch("class_labels_indices", accept_new_upstream=True, progress=False) == path


def test_an_accepted_upstream_file_is_not_used_by_later_runs_without_the_flag(
        http_server, shared_data, monkeypatch):
    changed = b"index,mid,display_name\n0,/m/x,X\n"
    http_server.add("csv/class_labels_indices.csv", changed)
    monkeypatch.setenv("AUDIOSET_CSV_BASE_URL", http_server.url("csv/"))
    path = fetch("class_labels_indices", accept_new_upstream=True, progress=False)
    assert path.read_bytes() == changed
    # a run without --accept-new-upstream against the same mirror requires the pinned file
    with pytest.raises(ChecksumMismatchError, match="accept-new-upstream"):
        fetch("class_labels_indices", progress=False)
    assert path.read_bytes() == changed  # the accepted copy stays for runs that accept it
    assert fetch("class_labels_indices", accept_new_upstream=True, progress=False) == path
    # ... and once the official file is back, a run without the flag gets exactly it
    pinned = shared_data / "segments" / "class_labels_indices.csv"
    http_server.add("csv/class_labels_indices.csv", pinned)
    assert fetch("class_labels_indices", progress=False) == path
    assert file_digests(path)[1] == REMOTES["class_labels_indices"].sha256
    meta = json.loads(path.with_name(path.name + ".meta.json").read_text())
    assert meta["accepted_new_upstream"] is False


def test_an_accepted_upstream_file_is_tied_to_its_source(http_server, monkeypatch):
    http_server.add("a/class_labels_indices.csv", b"index,mid,display_name\n0,/m/a,A\n")
    http_server.add("b/class_labels_indices.csv", b"index,mid,display_name\n0,/m/b,B\n")
    monkeypatch.setenv("AUDIOSET_CSV_BASE_URL", http_server.url("a/"))
    path = fetch("class_labels_indices", accept_new_upstream=True, progress=False)
    assert b"/m/a" in path.read_bytes()
    monkeypatch.setenv("AUDIOSET_CSV_BASE_URL", http_server.url("b/"))
    fetch("class_labels_indices", accept_new_upstream=True, progress=False)
    assert b"/m/b" in path.read_bytes()
    assert http_server.requests["/b/class_labels_indices.csv"] == 1


def test_git_blob_sha1_matches_git(tmp_path):
    p = tmp_path / "f.txt"
    p.write_bytes(b"hello\n")
    size, _, git = file_digests(p)
    assert size == 6
    assert git == hashlib.sha1(b"blob 6\0hello\n").hexdigest()
    assert git == "ce013625030ba8dba906f756967f9e9ca394464a"  # `git hash-object` of "hello\n"


def test_http_errors_and_retries(http_server, monkeypatch, shared_data):
    monkeypatch.setenv("AUDIOSET_ONTOLOGY_BASE_URL", http_server.url("/"))
    with pytest.raises(RemoteError, match="HTTP 404"):
        fetch("ontology", progress=False, retries=0)
    http_server.add("ontology.json", shared_data / "ontology" / "ontology.json")
    http_server.behaviour["/ontology.json"] = Behaviour(statuses=[503, 429])
    http_server.reset_counters()
    path = fetch("ontology", progress=False, retries=3)
    assert path.stat().st_size == REMOTES["ontology"].size
    assert http_server.requests["/ontology.json"] == 3


def test_truncated_body_is_rejected_and_nothing_left(http_server, monkeypatch, shared_data):
    monkeypatch.setenv("AUDIOSET_ONTOLOGY_BASE_URL", http_server.url("/"))
    http_server.add("ontology.json", shared_data / "ontology" / "ontology.json")
    http_server.behaviour["/ontology.json"] = Behaviour(truncate_at=1000)
    with pytest.raises(AudioSetError):
        fetch("ontology", progress=False, retries=0)
    folder = cache_path("ontology").parent
    assert [p.name for p in folder.iterdir()] == []


def test_file_mirror(shared_data):
    path = fetch("eval_segments", base_url=str(shared_data / "segments"), progress=False)
    assert path.stat().st_size == REMOTES["eval_segments"].size


def test_unknown_remote_and_bad_root(tmp_path):
    with pytest.raises(ConfigError, match="known remotes"):
        fetch("nope")
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(ConfigError, match="not a folder"):
        data_home(f)


def test_unchanged_cached_file_is_not_read_again(mirror, monkeypatch):
    import audioset_data.remote as remote

    path = fetch("eval_segments", progress=False)

    def boom(p):
        raise AssertionError("the verified, unchanged file was hashed again")

    with monkeypatch.context() as mp:
        mp.setattr(remote, "file_digests", boom)
        assert fetch("eval_segments", progress=False) == path
        assert remote.sha256_of(path) == REMOTES["eval_segments"].sha256
    # verify=True reads it whole; a touched file is read again too
    assert fetch("eval_segments", progress=False, verify=True) == path
    path.touch()
    assert remote.recorded_digests(path) is None
    assert fetch("eval_segments", progress=False) == path
    assert remote.recorded_digests(path) is not None


def test_offline_error_is_short_names_the_mirror_settings_and_retries_nothing(
        monkeypatch, caplog):
    import logging
    import time

    monkeypatch.setenv("AUDIOSET_CSV_BASE_URL", "http://no-such-host.invalid/csv/")
    caplog.set_level(logging.DEBUG)
    t0 = time.monotonic()
    with pytest.raises(RemoteError) as info:
        fetch("eval_segments", progress=False)
    message = str(info.value)
    assert "AUDIOSET_CSV_BASE_URL" in message and "--csv-url" in message
    assert "no-such-host.invalid" in message and len(message) < 300
    assert not [r for r in caplog.records if "Retrying" in r.getMessage()]
    assert time.monotonic() - t0 < 30
    monkeypatch.setenv("AUDIOSET_ONTOLOGY_BASE_URL", "http://no-such-host.invalid/")
    with pytest.raises(RemoteError, match="AUDIOSET_ONTOLOGY_BASE_URL"):
        fetch("ontology", progress=False)


def test_fetched_files_follow_the_umask(mirror):
    import os
    import stat

    old = os.umask(0o022)
    try:
        path = fetch("class_labels_indices", progress=False)
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    meta = next(path.parent.glob(f"*{path.name}*.json"), None) or next(
        p for p in path.parent.iterdir() if p != path)
    assert stat.S_IMODE(meta.stat().st_mode) == 0o644
