"""The download job end to end on loopback: yt-dlp's generic extractor + ffmpeg + the store."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from audioset_data.cache.manifest import Manifest
from audioset_data.cache.reader import cache_dir, open_cache
from audioset_data.cache.store import FolderLock
from audioset_data.downloader.demo import make_tone_file
from audioset_data.downloader.job import download
from audioset_data.downloader.job_array import ShardSpec, merge
from audioset_data.downloader.plan import _merge_duplicates
from audioset_data.downloader.throttle import CircuitBreaker
from audioset_data.errors import CacheError, ConfigError, DownloadError, SegmentsError
from audioset_data.testing import Behaviour, LoopbackServer

FAST = {"backoff": 0.05, "progress": False, "batch_size": 3, "shard_size": 4,
        "sample_rate": 16000}


@pytest.fixture(scope="session")
def tone(tmp_path_factory) -> Path:
    return make_tone_file(tmp_path_factory.mktemp("media") / "tone.webm", 40.0)


@pytest.fixture(scope="session")
def eval_rows(shared_data) -> pd.DataFrame:
    """The first real eval segments (ids, labels), with times moved inside the tone file."""
    rows = []
    with open(shared_data / "segments" / "eval_segments.csv") as fh:
        for row in csv.reader(fh, skipinitialspace=True):
            if row[0].startswith("#"):
                continue
            rows.append(row)
            if len(rows) == 16:
                break
    frame = pd.DataFrame(rows, columns=["ytid", "start", "end", "labels"])
    frame["start"] = [float(i % 5) * 3 for i in range(len(frame))]
    frame["end"] = frame["start"] + 10.0
    return frame


def _serve(server: LoopbackServer, frame: pd.DataFrame, tone: Path, missing=()) -> str:
    for ytid in frame["ytid"]:
        if ytid not in missing:
            server.add(f"v/{ytid}.webm", tone)
    return server.url("v/") + "{ytid}.webm"


def _run(frame, url, label_index, **kw):
    opts = {**FAST, **kw}
    return download("t", segments=frame, url_template=url, label_index=label_index, **opts)


def test_download_statuses_audio_targets_and_report(http_server, eval_rows, tone, label_index):
    frame = eval_rows.iloc[:8]
    gone = {frame["ytid"].iloc[2], frame["ytid"].iloc[5]}
    url = _serve(http_server, frame, tone, missing=gone)
    report = _run(frame, url, label_index, workers=3)
    assert (report.requested, report.ok, report.failed, report.pending) == (8, 6, 2, 0)
    assert report.by_reason == {"http_404": 2}
    cache = open_cache("t")
    assert len(cache) == 6
    by_id = {cache[i]["ytid"]: cache[i] for i in range(len(cache))}
    assert set(by_id) == set(frame["ytid"]) - gone
    for _, row in frame[~frame["ytid"].isin(gone)].iterrows():
        item = by_id[row["ytid"]]
        assert item["length"] == 160000 and item["waveform"].shape == (160000,)
        assert np.abs(item["waveform"].astype(np.float32)).mean() > 100  # real audio
        expected = np.zeros(len(label_index), dtype=bool)
        expected[label_index.indices(row["labels"].split(","))] = True
        assert np.array_equal(item["target"], expected)
    per_class = pd.read_csv(report.folder / "report.csv")
    assert per_class["requested"].sum() == sum(len(x.split(",")) for x in frame["labels"])
    assert per_class["failed_http_404"].sum() == sum(
        len(x.split(",")) for x in frame[frame["ytid"].isin(gone)]["labels"])
    failures = pd.read_csv(report.folder / "failures.csv")
    assert set(failures["ytid"]) == gone


def test_broken_media_fails_with_a_reason_and_the_rest_goes_on(http_server, eval_rows, tone,
                                                                label_index):
    frame = eval_rows.iloc[:5]
    junk, cut = frame["ytid"].iloc[1], frame["ytid"].iloc[3]
    url = _serve(http_server, frame, tone, missing={junk})
    http_server.add(f"v/{junk}.webm", np.random.default_rng(0).bytes(200_000))
    http_server.behaviour[f"/v/{cut}.webm"] = Behaviour(truncate_at=tone.stat().st_size // 3)
    report = _run(frame, url, label_index, max_attempts=2)
    assert report.ok == 3 and report.failed == 2
    table = pd.read_csv(report.folder / "failures.csv").set_index("ytid")
    assert table.loc[junk, "reason"] in {"decode_error", "no_audio"}
    assert bool(table.loc[junk, "permanent"])
    assert table.loc[cut, "reason"] == "truncated" and not bool(table.loc[cut, "permanent"])


def test_subset_selected_through_the_metadata_layer_shares_the_split_cache(
        http_server, mirror, tone, label_index):
    from audioset_data.segments.load import load_segments

    seg = load_segments("eval", label_index=label_index)
    dogs = seg.any_of("Dog")[:3]
    frame = dogs.table
    for ytid in frame["ytid"]:
        http_server.add(f"v/{ytid}.webm", tone)
    url = http_server.url("v/") + "{ytid}.webm"
    report = download("eval_segments", segments=dogs, url_template=url,
                      label_index=label_index, **FAST)
    assert report.folder == cache_dir("eval") and report.ok == 3
    dog = label_index.index("/m/0bt9lr")
    cache = open_cache("eval")
    assert all(cache[i]["target"][dog] for i in range(len(cache)))
    # the short segments of the real list are padded and keep their true length
    for i in range(len(cache)):
        item = cache[i]
        want = round((item["end"] - item["start"]) * 16000)
        assert abs(item["length"] - min(want, 160000)) <= 16
        assert not item["waveform"][item["length"] + 16:].any()


def test_cli_download_cache_and_merge(http_server, mirror, eval_rows, tone, tmp_path, capsys):
    from audioset_data.cli import main

    frame = eval_rows.iloc[:4]
    url = _serve(http_server, frame, tone, missing={frame["ytid"].iloc[0]})
    csv_path = tmp_path / "mine.csv"
    csv_path.write_text("".join(
        f'{r.ytid}, {r.start:.3f}, {r.end:.3f}, "{r.labels}"\n' for r in frame.itertuples()))
    args = ["download", "--segments", str(csv_path), "--url-template", url, "--no-progress",
            "--sample-rate", "16000", "--max-attempts", "1"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "3/4 clips cached" in out and "failed http_404: 1" in out
    assert main(["cache", "--split", "mine", "--json"]) == 0
    assert '"clips": 3' in capsys.readouterr().out
    assert main(["download", "--segments", str(csv_path), "--url-template", "nope"]) == 2
    assert "{ytid}" in capsys.readouterr().err
    assert main(["merge", "--split", "mine"]) == 2
    assert "no part manifests" in capsys.readouterr().err


def test_resume_skips_finished_work(http_server, eval_rows, tone, label_index):
    frame = eval_rows.iloc[:6]
    url = _serve(http_server, frame, tone, missing={frame["ytid"].iloc[0]})
    first = _run(frame, url, label_index)
    assert first.ok == 5
    served = dict(http_server.requests)
    again = _run(frame, url, label_index)
    assert again.fetched_now == 0 and again.failed_now == 0 and again.ok == 5
    assert dict(http_server.requests) == served  # nothing was requested again
    # a permanent failure stays failed until asked; --retry-failed fetches it once it exists
    http_server.add(f"v/{frame['ytid'].iloc[0]}.webm", tone)
    assert _run(frame, url, label_index).failed == 1
    fixed = _run(frame, url, label_index, retry_failed=True)
    assert (fixed.ok, fixed.failed) == (6, 0)
    assert len(open_cache("t")) == 6


def test_transient_errors_are_retried_with_backoff(http_server, eval_rows, tone, label_index):
    frame = eval_rows.iloc[:4]
    url = _serve(http_server, frame, tone)
    flaky = f"/v/{frame['ytid'].iloc[1]}.webm"
    http_server.behaviour[flaky] = Behaviour(statuses=[503, 503])
    always = f"/v/{frame['ytid'].iloc[2]}.webm"
    http_server.behaviour[always] = Behaviour(statuses=[500] * 10)
    report = _run(frame, url, label_index, max_attempts=3)
    assert report.ok == 3 and report.by_reason == {"http_5xx": 1}
    table = Manifest.open(report.folder / "manifest.sqlite").table().set_index("ytid")
    assert table.loc[frame["ytid"].iloc[1], "attempts"] == 3
    assert table.loc[frame["ytid"].iloc[2], "attempts"] == 3
    assert table.loc[frame["ytid"].iloc[2], "permanent"] == 0
    # a transient failure is retried by the next run without any flag
    http_server.behaviour[always] = Behaviour()
    assert _run(frame, url, label_index).ok == 4


def test_throttling_pauses_instead_of_failing(http_server, eval_rows, tone, label_index):
    frame = eval_rows.iloc[:5]
    url = _serve(http_server, frame, tone)
    # each clip is throttled twice, then served: counted in requests, not in seconds, so
    # the outcome does not depend on how fast the workers start
    for ytid in frame["ytid"]:
        http_server.behaviour[f"/v/{ytid}.webm"] = Behaviour(statuses=[429, 429])
    breaker = CircuitBreaker(threshold=2, cooldown=0.05, max_cooldown=0.2)
    report = _run(frame, url, label_index, workers=2, max_attempts=1, breaker=breaker)
    # with one attempt a clip, only the pause-and-retry of throttled clips can cache them all
    assert (report.ok, report.failed) == (5, 0)
    assert breaker.total_trips >= 1
    assert http_server.error_statuses[429] == 10


def test_breaker_gives_up_and_leaves_clips_pending(http_server, eval_rows, tone, label_index):
    frame = eval_rows.iloc[:4]
    url = _serve(http_server, frame, tone)
    for ytid in frame["ytid"]:
        http_server.behaviour[f"/v/{ytid}.webm"] = Behaviour(statuses=[429] * 100)
    breaker = CircuitBreaker(threshold=2, cooldown=0.05, max_cooldown=0.1, max_trips=2)
    with pytest.raises(DownloadError, match="throttling"):
        _run(frame, url, label_index, workers=1, max_attempts=1, breaker=breaker)
    with Manifest.open(cache_dir("t") / "manifest.sqlite") as m:
        counts = m.counts()
    assert counts["failed"] == 0 and counts["pending"] == 4


def test_shards_of_a_job_array_merge_into_one_cache(http_server, eval_rows, tone, label_index):
    frame = eval_rows.iloc[:10]
    url = _serve(http_server, frame, tone)
    parts = [_run(frame, url, label_index, shard=f"{i}/3") for i in (1, 2, 3)]
    assert sum(p.requested for p in parts) == 10
    with pytest.raises(CacheError, match="merge"):
        open_cache("t")
    merge("t")
    cache = open_cache("t")
    assert sorted(cache[i]["ytid"] for i in range(len(cache))) == sorted(frame["ytid"])
    with pytest.raises(ConfigError):
        ShardSpec.parse("4/3")


def test_compact_flac_is_lossless_against_pcm16(http_server, eval_rows, tone, label_index):
    frame = eval_rows.iloc[:3]
    url = _serve(http_server, frame, tone)
    download("raw", segments=frame, url_template=url, label_index=label_index, **FAST)
    download("small", segments=frame, url_template=url, label_index=label_index, fmt="flac",
             **FAST)
    raw, small = open_cache("raw"), open_cache("small")
    raw_items = {raw[i]["ytid"]: raw[i]["waveform"] for i in range(3)}
    for i in range(3):
        item = small[i]
        assert np.array_equal(item["waveform"], raw_items[item["ytid"]])
    size = {n: sum(p.stat().st_size for p in cache_dir(n).glob("*.h5")) for n in ("raw", "small")}
    assert size["small"] < size["raw"]


def test_compact_opus_decodes_close_to_pcm16(http_server, eval_rows, tone, label_index):
    frame = eval_rows.iloc[:2]
    url = _serve(http_server, frame, tone)
    download("raw", segments=frame, url_template=url, label_index=label_index, **FAST)
    download("opus", segments=frame, url_template=url, label_index=label_index, fmt="opus",
             **FAST)
    raw, small = open_cache("raw"), open_cache("opus")
    ref = {raw[i]["ytid"]: raw[i]["waveform"].astype(np.float64) for i in range(2)}
    for i in range(2):
        item = small[i]
        got = item["waveform"].astype(np.float64)
        assert got.shape == ref[item["ytid"]].shape and item["length"] == 160000
        corr = np.corrcoef(got[2000:-2000], ref[item["ytid"]][2000:-2000])[0, 1]
        assert corr > 0.9


def test_bad_settings_and_inputs_fail_before_any_request(http_server, eval_rows, tone,
                                                         label_index, monkeypatch):
    frame = eval_rows.iloc[:3].copy()
    url = _serve(http_server, frame, tone)
    with pytest.raises(ConfigError, match="ytid"):
        _run(frame, "http://127.0.0.1:1/no-template", label_index)
    with pytest.raises(ConfigError, match="http"):
        _run(frame, "{ytid}", label_index)
    with pytest.raises(ConfigError, match="rate_limit"):
        _run(frame, url, label_index, rate_limit=-1)
    with pytest.raises(ConfigError, match="split="):
        download(segments=frame, url_template=url, label_index=label_index, **FAST)
    nan = frame.copy()
    nan.loc[0, "start"] = float("nan")
    with pytest.raises(SegmentsError, match="row 0"):
        _run(nan, url, label_index)
    bad = frame.copy()
    bad.loc[1, "ytid"] = "-rf;rm -rf /"
    with pytest.raises(DownloadError):
        _run(bad, url, label_index)
    assert sum(http_server.requests.values()) == 0
    with monkeypatch.context() as mp, pytest.raises(CacheError, match="no-space-check"):
        mp.setattr("shutil.disk_usage", lambda p: type("U", (), {"free": 1000})())
        _run(frame, url, label_index)
    folder = cache_dir("t")
    with FolderLock(folder / ".lock"), pytest.raises(CacheError, match="another process"):
        _run(frame, url, label_index)


@pytest.mark.slow
def test_dask_localcluster_executor_gives_the_same_cache(http_server, eval_rows, tone,
                                                         label_index):
    distributed = pytest.importorskip("distributed")
    frame = eval_rows.iloc[:6]
    url = _serve(http_server, frame, tone)
    local = download("local", segments=frame, url_template=url, label_index=label_index, **FAST)
    with (
        distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                 dashboard_address=None) as cluster,
        distributed.Client(cluster) as client,
    ):
        remote = download("dask", segments=frame, url_template=url, label_index=label_index,
                          executor=client.get_executor(), **FAST)
    assert (local.ok, remote.ok) == (6, 6)
    a, b = open_cache("local"), open_cache("dask")
    wa = {a[i]["ytid"]: a[i]["waveform"] for i in range(6)}
    for i in range(6):
        assert np.array_equal(b[i]["waveform"], wa[b[i]["ytid"]])


_CHILD = """
import sys
from audioset_data.downloader.job import download
from audioset_data.segments.labels import LabelIndex
download("k", segments=sys.argv[1], url_template=sys.argv[2],
         label_index=LabelIndex.from_file(sys.argv[3]), workers=2, batch_size=2, shard_size=4,
         sample_rate=16000, progress=False, backoff=0.05)
"""


@pytest.mark.slow
def test_kill_9_mid_download_then_resume(tmp_path, eval_rows, tone, label_index, shared_data,
                                         _isolated_cache):
    frame = eval_rows.iloc[:14]
    csv_path = tmp_path / "list.csv"
    with open(csv_path, "w") as fh:
        fh.write("# YTID, start_seconds, end_seconds, positive_labels\n")
        for r in frame.itertuples():
            fh.write(f'{r.ytid}, {r.start:.3f}, {r.end:.3f}, "{r.labels}"\n')
    labels_csv = shared_data / "segments" / "class_labels_indices.csv"
    with LoopbackServer(pace_bytes_per_s=400_000, chunk=4096) as server:
        url = _serve(server, frame, tone)
        child = subprocess.Popen(
            [sys.executable, "-c", _CHILD, str(csv_path), url, str(labels_csv)],
            env={**os.environ, "AUDIOSET_DATA_HOME": str(_isolated_cache)},
        )
        manifest_path = cache_dir("k") / "manifest.sqlite"
        deadline = time.monotonic() + 60
        ok = 0
        while time.monotonic() < deadline and child.poll() is None:
            time.sleep(0.2)
            if manifest_path.exists():
                with Manifest.open(manifest_path) as m:
                    ok = m.counts()["ok"]
                if ok >= 4:
                    break
        assert child.poll() is None, "the download finished before it could be killed"
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        with Manifest.open(manifest_path) as m:
            before = set(m.table().query("status == 'ok'")["key"])
        assert len(before) >= 4
        assert len(open_cache("k")) == len(before)  # the cache opens after the kill
        report = download("k", segments=csv_path, url_template=url, label_index=label_index,
                          **FAST)
        resumed = open_cache("k")
        keys = [f"{resumed[i]['ytid']}_{round(resumed[i]['start'] * 1000)}"
                for i in range(len(resumed))]
        assert len(keys) == len(set(keys)) == 14 == report.ok  # nothing lost, nothing twice
        assert before <= set(keys)
        clean = download("clean", segments=csv_path, url_template=url,
                         label_index=label_index, **FAST)
        assert clean.ok == 14
        ref = open_cache("clean")
        wave = {ref[i]["ytid"]: ref[i]["waveform"] for i in range(len(ref))}
        for i in range(len(resumed)):
            assert np.array_equal(resumed[i]["waveform"], wave[resumed[i]["ytid"]])


def test_a_segment_listed_twice_gets_the_union_of_its_labels():
    table = pd.DataFrame({"key": ["a_0", "b_0", "a_0"], "labels": ["/m/x", "/m/y", "/m/z,/m/x"]})
    out = _merge_duplicates(table).set_index("key")["labels"]
    assert out.to_dict() == {"a_0": "/m/x,/m/z", "b_0": "/m/y"}


def test_a_task_the_executor_never_answers_does_not_hang_the_run(http_server, eval_rows, tone,
                                                                  label_index):
    from concurrent.futures import Future, ThreadPoolExecutor

    class LosesFirstTask(ThreadPoolExecutor):
        lost = 0

        def submit(self, fn, *args, **kwargs):
            if not self.lost:
                self.lost += 1
                return Future()  # never runs, never completes
            return super().submit(fn, *args, **kwargs)

    frame = eval_rows.iloc[:3]
    url = _serve(http_server, frame, tone)
    with LosesFirstTask(max_workers=2) as pool:
        report = _run(frame, url, label_index, executor=pool, task_timeout=1.0)
    assert (report.ok, report.failed) == (3, 0)
    table = Manifest.open(report.folder / "manifest.sqlite").table()
    assert sorted(table["attempts"]) == [1, 1, 2]
