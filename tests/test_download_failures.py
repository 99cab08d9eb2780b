"""How a download fails, stops and resumes: refusing videos vs a throttled client, stuck
servers, kill -9 and Ctrl-C, and the planning of a resumed run (all on loopback)."""

from __future__ import annotations

import csv
import logging
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from audioset_data.cache.manifest import Manifest, clip_key
from audioset_data.cache.reader import cache_dir, open_cache
from audioset_data.downloader.demo import make_tone_file
from audioset_data.downloader.failures import ClipFailure
from audioset_data.downloader.job import download
from audioset_data.downloader.job_array import ShardSpec
from audioset_data.downloader.options import DEFAULT_BATCH_SIZE, DEFAULT_FLUSH_INTERVAL
from audioset_data.downloader.plan import _clip_keys, _crc32_many, _has_duplicates
from audioset_data.downloader.throttle import CircuitBreaker
from audioset_data.downloader.worker_pool import ClipWorkerPool
from audioset_data.errors import DownloadError
from audioset_data.testing import Behaviour, LoopbackServer

FAST = {"backoff": 0.05, "progress": False, "batch_size": 3, "shard_size": 4,
        "sample_rate": 16000}
FOREVER = 3600.0


@pytest.fixture(scope="module")
def tone(tmp_path_factory) -> Path:
    return make_tone_file(tmp_path_factory.mktemp("media") / "tone.webm", 40.0)


def _eval_rows(shared_data: Path, n: int) -> pd.DataFrame:
    """The first ``n`` real eval segments, with times moved inside the 40-s tone file."""
    rows = []
    with open(shared_data / "segments" / "eval_segments.csv") as fh:
        for row in csv.reader(fh, skipinitialspace=True):
            if not row[0].startswith("#"):
                rows.append(row)
            if len(rows) == n:
                break
    frame = pd.DataFrame(rows, columns=["ytid", "start", "end", "labels"])
    frame["start"] = [float(i % 5) * 3 for i in range(len(frame))]
    frame["end"] = frame["start"] + 10.0
    return frame


@pytest.fixture(scope="module")
def rows16(shared_data) -> pd.DataFrame:
    return _eval_rows(shared_data, 16)


def _serve(server: LoopbackServer, frame: pd.DataFrame, tone: Path) -> str:
    for ytid in frame["ytid"]:
        server.add(f"v/{ytid}.webm", tone)
    return server.url("v/") + "{ytid}.webm"


def _refuse(server: LoopbackServer, ytid: str, status: int = 403) -> None:
    server.behaviour[f"/v/{ytid}.webm"] = Behaviour(until=time.monotonic() + FOREVER,
                                                    until_status=status)


def _table(folder: Path, name: str = "manifest.sqlite") -> pd.DataFrame:
    with Manifest.open(folder / name, readonly=True) as m:
        return m.table().set_index("key")


def _write_csv(path: Path, frame: pd.DataFrame) -> Path:
    with open(path, "w") as fh:
        fh.write("# YTID, start_seconds, end_seconds, positive_labels\n")
        for r in frame.itertuples():
            fh.write(f'{r.ytid}, {r.start:.3f}, {r.end:.3f}, "{r.labels}"\n')
    return path


# -- refusing videos vs a throttled client -----------------------------------------------------
def test_a_few_videos_that_always_refuse_fail_alone_without_pausing_the_run(
        http_server, rows16, tone, label_index):
    url = _serve(http_server, rows16, tone)
    bad = list(rows16["ytid"].iloc[[1, 4, 7, 10, 13]])
    for ytid in bad:
        _refuse(http_server, ytid)
    breaker = CircuitBreaker(cooldown=30.0)
    t0 = time.monotonic()
    report = download("t", segments=rows16, url_template=url, label_index=label_index,
                      breaker=breaker, workers=4, **FAST)
    assert time.monotonic() - t0 < 60
    assert (report.requested, report.ok, report.failed, report.pending) == (16, 11, 5, 0)
    assert report.by_reason == {"http_403": 5}
    assert breaker.total_trips == 0  # no pause: the client was never throttled
    table = _table(report.folder)
    failed = table[table["status"] == "failed"]
    assert set(failed["ytid"]) == set(bad)
    assert (failed["reason"] == "http_403").all()
    assert (failed["permanent"] == 0).all()  # transient: a later run tries them again
    assert (failed["attempts"] > 0).all() and (table["attempts"] > 0).all()
    # a bounded number of tries each (max_attempts=3 once proven to refuse alone)
    assert all(http_server.requests[f"/v/{y}.webm"] <= 10 for y in bad)
    failures = pd.read_csv(report.folder / "failures.csv")
    assert set(failures["ytid"]) == set(bad) and (failures["reason"] == "http_403").all()
    per_class = pd.read_csv(report.folder / "report.csv")
    assert per_class["failed_http_403"].sum() == sum(
        len(x.split(",")) for x in rows16[rows16["ytid"].isin(bad)]["labels"])
    # the next run retries them (transient), and they arrive once the videos answer
    for ytid in bad:
        http_server.behaviour.pop(f"/v/{ytid}.webm")
    again = download("t", segments=rows16, url_template=url, label_index=label_index, **FAST)
    assert (again.ok, again.failed, again.fetched_now) == (16, 0, 5)


def test_a_throttled_client_stops_quickly_with_attempts_reasons_and_reports(
        http_server, rows16, tone, label_index):
    frame = rows16.iloc[:6]
    url = _serve(http_server, frame, tone)
    for ytid in frame["ytid"]:
        _refuse(http_server, ytid)
    breaker = CircuitBreaker(threshold=2, cooldown=0.05, max_cooldown=0.1, max_trips=2)
    t0 = time.monotonic()
    with pytest.raises(DownloadError, match="throttling this client") as err:
        download("t", segments=frame, url_template=url, label_index=label_index,
                 breaker=breaker, workers=2, **FAST)
    assert time.monotonic() - t0 < 20
    assert "different videos" in str(err.value) and "pending" in str(err.value)
    folder = cache_dir("t")
    table = _table(folder)
    assert (table["status"] == "pending").all()  # the client's problem, not the videos'
    attempted = table[table["attempts"] > 0]
    assert len(attempted) >= 3
    assert attempted["reason"].isin(["http_403", "interrupted"]).all()
    assert (attempted["reason"] == "http_403").sum() >= 3
    assert (folder / "report.csv").is_file() and (folder / "failures.csv").is_file()
    assert pd.read_csv(folder / "report.csv")["pending"].sum() > 0
    assert not (folder / "manifest.sqlite-wal").exists()  # folded on the way out


def test_breaker_counts_different_videos_not_answers():
    breaker = CircuitBreaker(threshold=3, cooldown=1.0)
    assert not any(breaker.throttled(0.0, "a") for _ in range(10))  # one video, ten times
    assert not breaker.throttled(0.0, "b")
    assert breaker.throttled(0.0, "c") and breaker.is_open(0.5)
    breaker.success()
    assert breaker.streak == 0 and breaker.successes == 1


# -- a stuck server ----------------------------------------------------------------------------
def test_a_trickling_server_cannot_hold_the_download(http_server, rows16, tone, label_index):
    frame = rows16.iloc[:3]
    url = _serve(http_server, frame, tone)
    slow = f"/v/{frame['ytid'].iloc[1]}.webm"
    # yt-dlp's generic extractor reads the first 512 bytes: 25 s at this pace, and never a
    # pause long enough for a socket timeout
    http_server.behaviour[slow] = Behaviour(trickle_bytes_per_s=20.0)
    t0 = time.monotonic()
    report = download("t", segments=frame, url_template=url, label_index=label_index,
                      max_attempts=1, task_timeout=2.0, **FAST)
    took = time.monotonic() - t0
    assert took < 2.0 + 6.0, f"download() returned {took:.1f} s after it started"
    assert (report.ok, report.failed, report.by_reason) == (2, 1, {"timeout": 1})
    row = _table(report.folder).loc[clip_key(frame["ytid"].iloc[1], frame["start"].iloc[1])]
    assert (row["status"], row["reason"], row["attempts"]) == ("failed", "timeout", 1)
    # the fetch was ended, not abandoned: nobody reads the trickle any more
    sent = http_server.bytes_sent[slow]
    assert 0 < sent < 512
    time.sleep(1.5)
    assert http_server.bytes_sent[slow] <= sent + 1


def test_worker_pool_kills_a_task_with_what_it_started():
    marker = f"{31 + os.getpid() % 1000 / 1000:.3f}"
    pool = ClipWorkerPool(2, time_limit=1.5)
    try:
        stuck = pool.submit(subprocess.run, ["sleep", marker])
        quick = pool.submit(zlib.crc32, b"abc")
        assert quick.result(timeout=30) == zlib.crc32(b"abc")
        with pytest.raises(ClipFailure, match="time limit") as err:
            stuck.result(timeout=30)
        assert err.value.reason == "timeout" and not err.value.permanent
        assert pool.submit(zlib.crc32, b"x").result(timeout=30) == zlib.crc32(b"x")
    finally:
        t0 = time.monotonic()
        pool.shutdown(wait=False, cancel_futures=True)
        assert time.monotonic() - t0 < 1.0
    time.sleep(0.5)
    left = subprocess.run(["pgrep", "-f", f"sleep {marker}"], capture_output=True, text=True)
    assert left.stdout.strip() == ""


# -- kill -9 and Ctrl-C of the CLI -------------------------------------------------------------
def _default_sigint() -> None:
    # a job started in the background of a non-interactive shell (as CI may run) inherits an
    # ignored SIGINT, and Python then never raises KeyboardInterrupt: restore the default
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _cli(args: list[str], env: dict, log: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "audioset_data", "-vv", *args],
                            env=env, stdout=subprocess.DEVNULL, stderr=open(log, "wb"),  # noqa: SIM115
                            preexec_fn=_default_sigint)  # noqa: PLW1509


def _watch_fetched(log: Path, seen: dict[str, float]) -> None:
    """Note when each 'KEY fetched' line first shows up in the child's log."""
    now = time.monotonic()
    for line in log.read_text(errors="replace").splitlines():
        if line.startswith("DEBUG audioset_data.download:") and line.endswith(" fetched"):
            seen.setdefault(line.split()[-2], now)


@pytest.fixture
def paced_cli(mirror, shared_data, tone, tmp_path, _isolated_cache):
    """A 32-segment list served slowly enough that a run takes many seconds."""
    frame = _eval_rows(shared_data, 32)
    csv_path = _write_csv(tmp_path / "paced.csv", frame)
    with LoopbackServer(pace_bytes_per_s=150_000, chunk=4096) as server:
        url = _serve(server, frame, tone)
        env = {**os.environ, "AUDIOSET_DATA_HOME": str(_isolated_cache)}
        args = ["download", "--segments", str(csv_path), "--url-template", url,
                "--no-progress", "--sample-rate", "16000"]
        yield frame, csv_path, url, env, args


def _run_until(child: subprocess.Popen, log: Path, n: int, seen: dict[str, float]) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and child.poll() is None and len(seen) < n:
        time.sleep(0.05)
        _watch_fetched(log, seen)
    assert child.poll() is None, "the download finished before it could be stopped"
    assert len(seen) >= n


@pytest.mark.slow
def test_kill_9_with_the_default_flush_policy_loses_little(paced_cli, tmp_path, label_index):
    frame, csv_path, url, env, args = paced_cli
    log = tmp_path / "child.log"
    child = _cli(args, env, log)
    seen: dict[str, float] = {}
    _run_until(child, log, 12, seen)
    os.kill(child.pid, signal.SIGKILL)
    killed = time.monotonic()
    child.wait()
    _watch_fetched(log, seen)
    folder = cache_dir("paced")
    with Manifest.open(folder / "manifest.sqlite", readonly=True) as m:
        ok = set(m.keys_with_status("ok").to_pylist())
    lost = set(seen) - ok
    # what a kill loses is bounded by the policy: fewer than one batch of finished clips,
    # and only clips that finished within the last flush interval (plus a scheduling tick
    # and the time a flush takes)
    assert len(lost) <= DEFAULT_BATCH_SIZE, (len(lost), len(seen))
    assert all(killed - seen[k] <= DEFAULT_FLUSH_INTERVAL + 1.5 for k in lost)
    # the manifest file alone (no -wal) is a valid manifest after the kill: copy and open it
    copy = tmp_path / "copy"
    copy.mkdir()
    for p in [*folder.glob("*.sqlite"), *folder.glob("*.h5")]:
        shutil.copy2(p, copy / p.name)
    with Manifest.open(copy / "manifest.sqlite", readonly=True) as m:
        assert m.counts()["ok"] <= len(ok) and sum(m.counts().values()) == len(frame)
    # a rerun completes: nothing lost, nothing twice
    report = download("paced", segments=csv_path, url_template=url, label_index=label_index,
                      progress=False, sample_rate=16000)
    assert report.ok == len(frame) and report.fetched_now == len(frame) - len(ok)
    cache = open_cache("paced")
    keys = [clip_key(cache[i]["ytid"], cache[i]["start"]) for i in range(len(cache))]
    assert len(keys) == len(set(keys)) == len(frame)


@pytest.mark.slow
def test_ctrl_c_prints_one_line_keeps_the_clips_and_leaves_a_copyable_cache(paced_cli,
                                                                            tmp_path):
    frame, csv_path, url, env, args = paced_cli
    log = tmp_path / "child.log"
    child = _cli(args, env, log)
    seen: dict[str, float] = {}
    _run_until(child, log, 4, seen)
    child.send_signal(signal.SIGINT)
    assert child.wait(timeout=30) == 130
    text = log.read_text(errors="replace")
    assert "Traceback" not in text
    assert text.rstrip().splitlines()[-1] == (
        "audioset: interrupted: the clips finished so far are kept; run the same command "
        "again to resume")
    folder = cache_dir("paced")
    assert (folder / "report.csv").is_file() and (folder / "failures.csv").is_file()
    table = _table(folder)
    ok = set(table.index[table["status"] == "ok"])
    assert set(seen) <= ok  # every clip that arrived before Ctrl-C was published
    assert (table.loc[table["attempts"] > 0, "status"].eq("ok")
            | table.loc[table["attempts"] > 0, "reason"].notna()).all()
    # copying only the *.sqlite and *.h5 files gives a cache that opens, with every clip
    copy = tmp_path / "copy"
    copy.mkdir()
    for p in [*folder.glob("*.sqlite"), *folder.glob("*.h5")]:
        shutil.copy2(p, copy / p.name)
    cache = open_cache(folder=copy)
    assert len(cache) == len(ok)
    assert {clip_key(cache[i]["ytid"], cache[i]["start"]) for i in range(len(cache))} == ok


def test_keyboard_interrupt_records_attempts_and_writes_reports(http_server, rows16, tone,
                                                                label_index, monkeypatch):
    import audioset_data.downloader.loop as dl

    frame = rows16.iloc[:6]
    url = _serve(http_server, frame, tone)
    calls = {"n": 0}
    real = dl._Run._handle

    def interrupt_after_three(self, fut, item):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return real(self, fut, item)

    monkeypatch.setattr(dl._Run, "_handle", interrupt_after_three)
    with pytest.raises(KeyboardInterrupt):
        download("t", segments=frame, url_template=url, label_index=label_index, workers=2,
                 **FAST)
    folder = cache_dir("t")
    table = _table(folder)
    assert (table["status"] == "ok").sum() == 3  # the clips that arrived are published
    attempted = table[table["attempts"] > 0]
    assert len(attempted) >= 4
    assert attempted[attempted["status"] != "ok"]["reason"].eq("interrupted").all()
    assert (folder / "report.csv").is_file() and (folder / "failures.csv").is_file()
    assert not (folder / "manifest.sqlite-wal").exists()


# -- planning ----------------------------------------------------------------------------------
def test_vectorised_keys_and_parts_match_the_scalar_ones():
    rng = np.random.default_rng(1)
    alphabet = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"))
    ids = ["".join(rng.choice(alphabet, 11)) for _ in range(3000)]
    start = np.concatenate([rng.integers(0, 36000, 1000) / 1000.0,
                            rng.integers(0, 700, 1000) + 0.5,  # halves round to even
                            rng.random(1000) * 600])
    keys = _clip_keys(pa.array(ids), pa.array(start))
    assert keys.to_pylist() == [clip_key(y, s) for y, s in zip(ids, start, strict=True)]
    crc = _crc32_many(keys)
    assert crc.tolist() == [zlib.crc32(k.encode()) for k in keys.to_pylist()]
    for spec in (ShardSpec(1, 3), ShardSpec(3, 3), ShardSpec(5, 16)):
        assert spec.owns_many(keys).tolist() == [spec.owns(k) for k in keys.to_pylist()]
    assert not _has_duplicates(pa.array(ids), pa.array(start))
    assert _has_duplicates(pa.array([*ids, ids[7]]), pa.array([*start, start[7]]))
    assert not _has_duplicates(pa.array([*ids, ids[7]]), pa.array([*start, start[7] + 1]))


def test_an_unchanged_list_is_registered_once_and_any_change_registers_again(
        http_server, rows16, tone, label_index, monkeypatch, caplog):
    frame = rows16.iloc[:6].copy()
    url = _serve(http_server, frame, tone)
    registered = []
    real = Manifest.add_segments

    def spy(self, rows, fingerprint=None):
        rows = list(rows)
        registered.append(rows)
        return real(self, rows, fingerprint)

    monkeypatch.setattr(Manifest, "add_segments", spy)

    def plan(f, **kw):
        return download("t", segments=f, url_template=url, label_index=label_index,
                        dry_run=True, **{**FAST, **kw})

    first = plan(frame)
    assert (first.requested, first.pending, first.to_fetch) == (6, 6, 6)
    assert len(registered) == 1 and len(registered[0]) == 6
    assert plan(frame).to_fetch == 6 and len(registered) == 1  # unchanged: not again
    assert sum(http_server.requests.values()) == 0  # a dry run fetches nothing
    # labels of clips not yet cached follow the list
    relabelled = frame.copy()
    relabelled.loc[relabelled.index[2], "labels"] = "/m/09x0r"
    plan(relabelled)
    assert len(registered) == 2
    key2 = clip_key(frame["ytid"].iloc[2], frame["start"].iloc[2])
    assert _table(cache_dir("t")).loc[key2, "labels"] == "/m/09x0r"
    # a segment listed twice is one row with the union of its labels
    doubled = pd.concat([relabelled, relabelled.iloc[[2]].assign(labels="/m/0dgw9r")])
    assert plan(doubled).requested == 6 and len(registered[-1]) == 6
    assert _table(cache_dir("t")).loc[key2, "labels"] == "/m/09x0r,/m/0dgw9r"
    # a change to the manifest's segment rows by anyone else forgets the fingerprint
    plan(doubled)
    n = len(registered)
    with Manifest.open(cache_dir("t") / "manifest.sqlite") as m:
        assert m.segments_fingerprint() is not None
        with m.transaction() as conn:
            conn.execute("DELETE FROM clips WHERE key = ?", (key2,))
        assert m.segments_fingerprint() is None
    plan(doubled)
    assert len(registered) == n + 1
    assert key2 in _table(cache_dir("t")).index
    # fetch, then list a cached clip with other labels: warned, stored targets keep theirs
    done = download("t", segments=doubled, url_template=url, label_index=label_index, **FAST)
    assert done.ok == 6
    assert plan(doubled).to_fetch == 0
    with caplog.at_level(logging.WARNING, logger="audioset_data.download"):
        plan(relabelled)
    assert "other labels" in caplog.text


def test_cli_flush_options_and_dry_run(http_server, mirror, rows16, tone, tmp_path, capsys,
                                       monkeypatch):
    import audioset_data.downloader.job as dl
    from audioset_data.cli import main
    from audioset_data.cli.download import DEFAULTS

    assert (DEFAULTS["batch_size"], DEFAULTS["flush_interval"]) == (
        DEFAULT_BATCH_SIZE, DEFAULT_FLUSH_INTERVAL)
    frame = rows16.iloc[:3]
    url = _serve(http_server, frame, tone)
    csv_path = _write_csv(tmp_path / "mine.csv", frame)
    base = ["download", "--segments", str(csv_path), "--url-template", url, "--no-progress",
            "--sample-rate", "16000"]
    assert main([*base, "--dry-run"]) == 0
    assert "3 pending; 3 to fetch" in capsys.readouterr().out
    assert not [p for p in http_server.requests if p.startswith("/v/")]  # nothing fetched
    seen = {}
    real = dl.download

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(dl, "download", spy)
    assert main([*base, "--batch-size", "2", "--flush-interval", "0.5",
                 "--task-timeout", "60"]) == 0
    opts = seen["options"]
    assert (opts.batch_size, opts.flush_interval, opts.task_timeout) == (2, 0.5, 60)
    assert "3/3 clips cached" in capsys.readouterr().out


# -- issue 20: damage a size check cannot see; a manifest that lost its clip rows -------------
def test_a_zeroed_shard_header_is_set_aside_and_the_next_download_refetches_its_clips(
        http_server, rows16, tone, label_index):
    frame = rows16.iloc[:12]
    url = _serve(http_server, frame, tone)
    first = download("z", segments=frame, url_template=url, label_index=label_index, **FAST)
    assert first.ok == 12
    victim = first.folder / "shard-00001.h5"
    size = victim.stat().st_size
    with open(victim, "r+b") as fh:  # the first 512 bytes zeroed, the size unchanged
        fh.write(b"\0" * 512)
    assert victim.stat().st_size == size
    again = download("z", segments=frame, url_template=url, label_index=label_index, **FAST)
    assert (again.ok, again.fetched_now) == (12, 4)
    assert (first.folder / "shard-00001.h5.damaged").stat().st_size == size  # kept
    cache = open_cache("z")
    assert cache.check_files() == 0 and len(cache) == 12
    assert cache.read(np.arange(12))["waveform"].any(axis=1).all()


def test_a_manifest_whose_clips_table_was_emptied_adopts_its_shards(
        http_server, rows16, tone, label_index):
    frame = rows16.iloc[:8]
    url = _serve(http_server, frame, tone)
    first = download("e", segments=frame, url_template=url, label_index=label_index, **FAST)
    assert first.ok == 8
    files = sorted(p.name for p in first.folder.glob("*.h5"))
    conn = sqlite3.connect(first.folder / "manifest.sqlite")
    conn.execute("DELETE FROM clips")
    conn.commit()
    conn.close()
    http_server.reset_counters()
    again = download("e", segments=frame, url_template=url, label_index=label_index, **FAST)
    assert (again.ok, again.fetched_now) == (8, 0)
    assert http_server.total_bytes() == 0  # nothing fetched again
    assert sorted(p.name for p in first.folder.glob("*.h5")) == files  # no orphans
    assert len(open_cache("e")) == 8


# -- issue 20: a stall is not the time limit ----------------------------------------------------
def _busy(seconds: float) -> int:
    """Use the CPU for ``seconds`` of CPU time (no I/O): work, not a stall."""
    t0 = time.process_time()
    n = 0
    while time.process_time() - t0 < seconds:
        n += 1
    return n


@pytest.mark.skipif(not Path("/proc/self/io").exists(), reason="stalls are seen through /proc")
def test_worker_pool_stops_a_task_that_stalls_but_not_one_that_works():
    pool = ClipWorkerPool(2, time_limit=FOREVER, stall_timeout=0.5)
    try:
        stuck = pool.submit(time.sleep, FOREVER)  # reads nothing, computes nothing
        working = pool.submit(_busy, 2.0)  # four stall timeouts of CPU work
        with pytest.raises(ClipFailure, match="stalled") as err:
            stuck.result(timeout=60)
        assert err.value.reason == "stalled" and not err.value.permanent
        assert "1024 bytes" in err.value.detail and "0.5 s" in err.value.detail
        assert working.result(timeout=60) > 0
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


@pytest.mark.skipif(not Path("/proc/self/io").exists(), reason="stalls are seen through /proc")
def test_a_server_sending_a_byte_a_second_stalls_each_attempt_long_before_the_time_limit(
        http_server, rows16, tone, label_index):
    frame = rows16.iloc[:3]
    url = _serve(http_server, frame, tone)
    slow = f"/v/{frame['ytid'].iloc[1]}.webm"
    http_server.behaviour[slow] = Behaviour(trickle_bytes_per_s=1.0)
    report = download("s", segments=frame, url_template=url, label_index=label_index,
                      max_attempts=2, task_timeout=FOREVER, stall_timeout=2.0, **FAST)
    assert (report.ok, report.failed, report.by_reason) == (2, 1, {"stalled": 1})
    row = _table(report.folder).loc[clip_key(frame["ytid"].iloc[1], frame["start"].iloc[1])]
    assert (row["status"], row["reason"], row["attempts"]) == ("failed", "stalled", 2)
    assert "stalled" in row["detail"] and "--stall-timeout" in row["detail"]
    # each attempt was stopped, not abandoned: at a byte a second, both together got far less
    # than the 512 bytes yt-dlp waits for
    assert http_server.requests[slow] == 2 and http_server.bytes_sent[slow] < 512


def test_stall_timeout_is_checked_and_on_by_default():
    from audioset_data.downloader.options import DownloadOptions
    from audioset_data.errors import ConfigError

    assert DownloadOptions().stall_timeout == 30.0
    assert DownloadOptions(stall_timeout=None).stall_timeout is None
    with pytest.raises(ConfigError, match="--stall-timeout"):
        DownloadOptions(stall_timeout=0)
