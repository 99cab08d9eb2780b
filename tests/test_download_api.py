"""The download's public surface: the function and its options, the command line, the
job-array parts and their merge, and the inputs it refuses (all on loopback)."""

from __future__ import annotations

import csv
import dataclasses
import importlib
import inspect
import logging
import pkgutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import audioset_data
from audioset_data.cache.reader import cache_dir, open_cache
from audioset_data.cli import build_parser, main, verbosity
from audioset_data.downloader.demo import make_tone_file, run_demo
from audioset_data.downloader.fetcher import ClipFetcher
from audioset_data.downloader.job import download
from audioset_data.downloader.job_array import ShardSpec, merge
from audioset_data.downloader.options import DownloadOptions
from audioset_data.downloader.report import FAILURE_COLUMNS, DownloadReport
from audioset_data.errors import CacheError, ConfigError
from audioset_data.testing import LoopbackServer

FAST = {"backoff": 0.05, "progress": False, "batch_size": 3, "shard_size": 4,
        "sample_rate": 16000}


@pytest.fixture(scope="module")
def tone(tmp_path_factory) -> Path:
    return make_tone_file(tmp_path_factory.mktemp("media") / "tone.webm", 40.0)


@pytest.fixture(scope="module")
def rows(shared_data) -> pd.DataFrame:
    """The first 6 real eval segments, with times moved inside the 40-s tone file."""
    out = []
    with open(shared_data / "segments" / "eval_segments.csv") as fh:
        for row in csv.reader(fh, skipinitialspace=True):
            if not row[0].startswith("#"):
                out.append(row)
            if len(out) == 6:
                break
    frame = pd.DataFrame(out, columns=["ytid", "start", "end", "labels"])
    frame["start"] = [float(i % 5) * 3 for i in range(len(frame))]
    frame["end"] = frame["start"] + 10.0
    return frame


def _serve(server: LoopbackServer, frame: pd.DataFrame, tone: Path) -> str:
    for ytid in frame["ytid"]:
        server.add(f"v/{ytid}.webm", tone)
    return server.url("v/") + "{ytid}.webm"


def _csv(path: Path, frame: pd.DataFrame) -> Path:
    path.write_text("".join(f'{r.ytid}, {r.start:.3f}, {r.end:.3f}, "{r.labels}"\n'
                            for r in frame.itertuples()))
    return path


# -- the function and its options --------------------------------------------------------------
def test_download_can_be_called_twice_after_importing_every_submodule(http_server, rows, tone,
                                                                      label_index):
    for info in pkgutil.walk_packages(audioset_data.__path__, "audioset_data."):
        if not info.name.endswith("__main__"):
            importlib.import_module(info.name)
    submodules = {i.name for i in pkgutil.iter_modules(audioset_data.__path__)}
    assert not set(audioset_data.__all__) & submodules, "a public name shadows a submodule"
    assert inspect.isfunction(audioset_data.download)
    url = _serve(http_server, rows.iloc[:2], tone)
    for _ in range(2):
        report = audioset_data.download("t", segments=rows.iloc[:2], url_template=url,
                                        label_index=label_index, **FAST)
        assert isinstance(report, DownloadReport) and report.ok == 2
    assert callable(audioset_data.merge) and audioset_data.DownloadOptions is DownloadOptions


def test_no_function_of_the_download_takes_more_than_15_parameters():
    # a dataclass's generated constructor lists its fields: the options object is where the
    # settings went, so it is the one exception
    for name in ("downloader.job", "downloader.options", "downloader.plan", "downloader.loop",
                 "downloader.report", "downloader.job_array", "downloader.throttle",
                 "downloader.fetcher", "downloader.failures", "downloader.worker_pool",
                 "downloader.media_proxy", "segments.ids", "downloader.demo"):
        module = importlib.import_module(f"audioset_data.{name}")
        for _, obj in inspect.getmembers(module):
            fns = [obj] if inspect.isfunction(obj) else [
                f for _, f in inspect.getmembers(obj, inspect.isfunction)
            ] if inspect.isclass(obj) and obj.__module__ == module.__name__ else []
            for fn in fns:
                if fn.__name__ == "__init__" and dataclasses.is_dataclass(obj):
                    continue
                assert len(inspect.signature(fn).parameters) <= 15, fn.__qualname__


def test_the_options_build_the_fetcher_so_nothing_is_dropped(tmp_path):
    cookies = tmp_path / "cookies.txt"
    cookies.write_text("# Netscape HTTP Cookie File\n")
    opts = DownloadOptions(url_template="http://mirror.example/a/{ytid}.webm", clip_seconds=5.0,
                           sample_rate=16000, cookiefile=cookies,
                           fetcher_options={"socket_timeout": 7.0})
    fetcher = opts.make_fetcher()
    assert (fetcher.url_template, fetcher.clip_seconds, fetcher.sample_rate,
            fetcher.cookiefile, fetcher.socket_timeout) == (
        "http://mirror.example/a/{ytid}.webm", 5.0, 16000, str(cookies), 7.0)
    assert opts.clip_samples == 80000
    with pytest.raises(TypeError, match="fetcher_options"):
        download("t", fetcher=ClipFetcher())
    with pytest.raises(ConfigError, match="url_template="):
        DownloadOptions(fetcher_options={"url_template": "http://other.example/{ytid}"})
    with pytest.raises(ConfigError, match="no setting 'socket_timout'"):
        DownloadOptions(fetcher_options={"socket_timout": 3})
    with pytest.raises(TypeError, match="did you mean 'max_attempts'"):
        DownloadOptions().replace(max_attempt=2)


def test_options_and_keywords_combine(http_server, rows, tone, label_index):
    url = _serve(http_server, rows.iloc[:2], tone)
    opts = DownloadOptions(url_template=url, sample_rate=16000, progress=False, backoff=0.05)
    report = download("t", segments=rows.iloc[:2], options=opts, label_index=label_index,
                      dry_run=True)
    assert (report.requested, report.to_fetch) == (2, 2)
    assert sum(http_server.requests.values()) == 0


# -- inputs that are refused -------------------------------------------------------------------
def test_url_template_without_an_address_is_refused(rows, label_index):
    with pytest.raises(ConfigError, match="http"):
        download("t", segments=rows, url_template="{ytid}", label_index=label_index, **FAST)


def test_cookies_naming_a_missing_file_are_refused(http_server, mirror, rows, tone, tmp_path,
                                                   capsys):
    url = _serve(http_server, rows.iloc[:2], tone)
    path = _csv(tmp_path / "mine.csv", rows.iloc[:2])
    missing = tmp_path / "nope.txt"
    assert main(["download", "--segments", str(path), "--url-template", url,
                 "--cookies", str(missing), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "nope.txt" in err and "does not exist" in err and "Traceback" not in err
    assert not [p for p in http_server.requests if p.startswith("/v/")]


def test_limit_minus_one_is_refused(http_server, mirror, rows, tone, tmp_path, capsys):
    url = _serve(http_server, rows.iloc[:3], tone)
    path = _csv(tmp_path / "mine.csv", rows.iloc[:3])
    assert main(["download", "--segments", str(path), "--url-template", url, "--limit", "-1",
                 "--no-progress"]) == 2
    assert "limit=-1" in capsys.readouterr().err
    assert not cache_dir("mine").exists()
    with pytest.raises(ConfigError, match="limit"):
        DownloadOptions(limit=0)


def test_demo_with_zero_clips_is_an_error_not_a_traceback(capsys):
    with pytest.raises(SystemExit) as info:
        main(["demo", "--clips", "0"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "--clips" in err and "at least 1" in err and "Traceback" not in err
    with pytest.raises(ConfigError, match="n_clips=0"):
        run_demo(n_clips=0)


def test_a_segment_longer_than_a_clip_stores_the_end_fetched(http_server, rows, tone,
                                                            label_index, caplog):
    frame = rows.iloc[:2].copy()
    frame["start"] = [0.0, 3.0]
    frame["end"] = [35.0, 13.0]  # 0-35 s is cut to 0-10 s
    url = _serve(http_server, frame, tone)
    with caplog.at_level(logging.WARNING, logger="audioset_data.download"):
        report = download("t", segments=frame, url_template=url, label_index=label_index,
                          **FAST)
    assert report.ok == 2
    cache = open_cache("t")
    ends = {cache[i]["ytid"]: (cache[i]["start"], cache[i]["end"], cache[i]["length"])
            for i in range(len(cache))}
    assert ends[frame["ytid"].iloc[0]] == (0.0, 10.0, 160000)
    assert ends[frame["ytid"].iloc[1]] == (3.0, 13.0, 160000)
    warned = [r.getMessage() for r in caplog.records if "longer than clip_seconds" in r.message]
    assert len(warned) == 1 and warned[0].startswith("1 segment(s)")
    assert "0-35 s is stored as 0-10 s" in warned[0]


def test_starts_less_than_a_millisecond_apart_are_merged_with_a_warning(http_server, rows, tone,
                                                                        label_index, caplog):
    frame = pd.DataFrame({"ytid": [rows["ytid"].iloc[0]] * 2 + [rows["ytid"].iloc[1]],
                          "start": [30.0001, 30.0004, 1.0], "end": [40.0001, 40.0004, 11.0],
                          "labels": ["/m/09x0r", "/m/04rlf", "/m/09x0r"]})
    url = _serve(http_server, frame, tone)
    with caplog.at_level(logging.WARNING, logger="audioset_data.download"):
        report = download("t", segments=frame, url_template=url, label_index=label_index,
                          dry_run=True, **FAST)
    assert report.requested == 2
    text = caplog.text
    assert "start less than a millisecond apart" in text
    assert "rows 1, 2" in text and "30.0001" in text and "30.0004" in text
    assert f"clip {rows['ytid'].iloc[0]}_30000" in text


def test_split_names_are_folded_the_same_way_by_download_and_open_cache(http_server, rows, tone,
                                                                        label_index,
                                                                        data_root):
    url = _serve(http_server, rows.iloc[:2], tone)
    for name in ("EVAL", "eval ", "Eval_Segments"):
        report = download(name, segments=rows.iloc[:2], url_template=url,
                          label_index=label_index, **FAST)
        assert report.folder == data_root / "cache" / "eval" == cache_dir(name)
        assert len(open_cache(name)) == 2
    assert sorted(p.name for p in (data_root / "cache").iterdir()) == ["eval"]
    with pytest.raises(ConfigError, match="300 characters"):
        download("a" * 300, segments=rows.iloc[:2], url_template=url, label_index=label_index,
                 **FAST)


# -- failures.csv ------------------------------------------------------------------------------
def test_a_failed_name_lookup_is_a_connection_failure_with_its_detail(rows, label_index):
    report = download("t", segments=rows.iloc[:1], label_index=label_index, max_attempts=1,
                      url_template="http://no-such-host.invalid/{ytid}.webm", **FAST)
    assert report.by_reason == {"connection": 1}
    failures = pd.read_csv(report.folder / "failures.csv")
    assert tuple(failures.columns) == FAILURE_COLUMNS
    assert failures.loc[0, "reason"] == "connection" and not failures.loc[0, "permanent"]
    assert "resolve" in failures.loc[0, "detail"].lower()


# -- the command line --------------------------------------------------------------------------
def test_version_and_verbose_after_the_sub_command(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"audioset {audioset_data.__version__}"
    parser = build_parser()
    assert verbosity(parser.parse_args(["cache", "--split", "x", "-vv"])) == 2
    assert verbosity(parser.parse_args(["-v", "cache", "--split", "x", "-v"])) == 2
    assert verbosity(parser.parse_args(["ontology", "-v", "tree", "-v"])) == 2
    assert verbosity(parser.parse_args(["download", "--split", "eval"])) == 0


def test_ontology_tree_help_names_the_class_not_a_root(capsys):
    with pytest.raises(SystemExit):
        main(["ontology", "tree", "--help"])
    out = capsys.readouterr().out
    assert "[CLASS]" in out and "[ROOT]" not in out and "--root ROOT" in out


@pytest.mark.parametrize("argv,expected", [
    (["--shard", "2/8"], ShardSpec(2, 8)),
    (["--shard", "0/8", "--shard-from-zero"], ShardSpec(1, 8)),
    (["--shard", "7/8", "--shard-from-zero"], ShardSpec(8, 8)),
])
def test_shards_count_from_one_or_explicitly_from_zero(argv, expected):
    from audioset_data.cli.download import _shard

    assert _shard(build_parser().parse_args(["download", *argv])) == expected


@pytest.mark.parametrize("argv,message", [
    (["--shard", "0/8"], "--shard-from-zero"),
    (["--shard", "8/8", "--shard-from-zero"], "between 0 and 7"),
    (["--shard", "9/8"], "between 1 and 8"),
    (["--shard-from-zero"], "needs --shard"),
])
def test_shard_errors_say_how_to_count(argv, message):
    from audioset_data.cli.download import _shard

    with pytest.raises(ConfigError, match=message):
        _shard(build_parser().parse_args(["download", *argv]))


# -- job arrays --------------------------------------------------------------------------------
def test_merge_with_a_part_missing_is_refused_unless_allowed(http_server, mirror, rows, tone,
                                                             label_index, capsys):
    url = _serve(http_server, rows, tone)
    for i in (1, 3):
        download("t", segments=rows, url_template=url, label_index=label_index,
                 shard=f"{i}/3", **FAST)
    assert main(["merge", "--split", "t"]) == 2
    err = capsys.readouterr().err
    assert "2 of 3 parts found" in err and "(parts 1, 3)" in err
    assert "1 missing (parts 2)" in err and "--allow-partial" in err
    assert not (cache_dir("t") / "manifest.sqlite").exists()
    assert main(["merge", "--split", "t", "--allow-partial"]) == 0
    out = capsys.readouterr().out
    assert "merged 2 of 3 parts" in out and "missing 1: part 2/3" in out
    download("t", segments=rows, url_template=url, label_index=label_index, shard="2/3",
             **FAST)
    report = merge("t")
    assert report.complete and report.found == [1, 2, 3]
    assert sum(c["ok"] for c in report.clips.values()) == len(rows) == len(open_cache("t"))
    # parts of another array size in the same folder are refused
    download("t", segments=rows, url_template=url, label_index=label_index, shard="1/2", **FAST)
    with pytest.raises(CacheError, match="different sizes"):
        merge("t", allow_partial=True)


# -- structure ---------------------------------------------------------------------------------
@pytest.mark.parametrize("value", ["aaaaaaaaaaa\n", "aaaaaaaaaa", "aaaaaaaaaaaa", "aaaaaaaaa.a"])
def test_one_id_rule_for_the_fetcher_and_the_planner(value):
    import pyarrow as pa

    from audioset_data.downloader.failures import InvalidIdError, validate_ytid
    from audioset_data.downloader.plan import _check_ids

    with pytest.raises(InvalidIdError):
        validate_ytid(value)  # a trailing newline once passed a ^...$ match
    with pytest.raises(InvalidIdError):
        _check_ids(pa.array(["-0SdAVK79lg", value]))
    _check_ids(pa.array(["-0SdAVK79lg", "__zE-7_8ldA"]))


@pytest.mark.parametrize("template", ["{ytid}", "https://example.org/watch"])
def test_one_template_rule_for_the_fetcher_and_the_options(template):
    with pytest.raises(ConfigError) as a:
        ClipFetcher(url_template=template)
    with pytest.raises(ConfigError) as b:
        DownloadOptions(url_template=template)
    assert str(a.value) == str(b.value)


def test_targets_come_from_one_sparse_matrix_of_the_plan(label_index):
    import pyarrow as pa

    from audioset_data.downloader.plan import _plan

    table = pa.table({"ytid": ["-0SdAVK79lg", "__zE-7_8ldA"], "start": [0.0, 1.0],
                      "end": [10.0, 11.0],
                      "labels": ["/m/09x0r,/m/04rlf,/m/09x0r", "/m/not-a-label"]})
    plan = _plan(table, None, None)
    y = plan.targets(label_index)
    assert y.shape == (2, len(label_index)) and y.nnz == 2
    want = np.zeros(len(label_index), bool)
    want[label_index.indices(["/m/09x0r", "/m/04rlf"])] = True
    assert np.array_equal(plan.target(label_index, 0), want)
    assert not plan.target(label_index, 1).any()


def test_the_rate_limiter_never_blocks():
    import time

    from audioset_data.downloader.throttle import RateLimiter

    limiter = RateLimiter(2.0)
    t0 = now = time.monotonic()
    assert limiter.take(now) and not limiter.take(now)
    assert limiter.wait(now) == pytest.approx(0.5)
    assert limiter.wait(now + 0.5) == 0.0 and limiter.take(now + 0.5)
    assert time.monotonic() - t0 < 0.1
    assert not hasattr(limiter, "acquire")


def test_rate_limited_run_paces_its_starts(http_server, rows, tone, label_index):
    import time

    url = _serve(http_server, rows.iloc[:4], tone)
    t0 = time.monotonic()
    report = download("t", segments=rows.iloc[:4], url_template=url, label_index=label_index,
                      rate_limit=5.0, workers=4, **FAST)
    assert report.ok == 4 and time.monotonic() - t0 >= 0.6  # 4 starts, 0.2 s apart


def test_the_folder_lock_holds_across_processes_and_ends_with_its_holder(tmp_path):
    import subprocess
    import sys
    import time

    from audioset_data.cache.store import FolderLock

    lock = tmp_path / ".lock"
    code = ("import sys, time; from audioset_data.cache.store import FolderLock\n"
            "with FolderLock(sys.argv[1]):\n    print('held', flush=True); time.sleep(60)\n")
    child = subprocess.Popen([sys.executable, "-c", code, str(lock)], stdout=subprocess.PIPE,
                             text=True)
    try:
        assert child.stdout.readline().strip() == "held"
        with pytest.raises(CacheError, match="another process"), FolderLock(lock):
            pass
    finally:
        child.kill()
        child.wait()
    t0 = time.monotonic()
    with FolderLock(lock):  # free again once its holder was killed
        pass
    assert time.monotonic() - t0 < 1.0
