"""A disk that fills up during a download (issue 20, defect 1): a named error that says which
folder is full and how much the run needs, a manifest that marks nothing cached whose bytes
are not in a published file, reports written atomically, and a resume once space is freed."""

from __future__ import annotations

import builtins
import csv
import errno
import os
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from audioset_data import fileio
from audioset_data.cache import shards
from audioset_data.cache.manifest import Manifest
from audioset_data.cache.reader import cache_dir, open_cache
from audioset_data.downloader import job
from audioset_data.downloader.demo import make_tone_file
from audioset_data.downloader.job import download
from audioset_data.errors import CacheError, DiskFullError
from audioset_data.fileio import atomic_write, format_bytes

FAST = {"backoff": 0.05, "progress": False, "sample_rate": 16000, "max_attempts": 1}


@pytest.fixture(scope="module")
def tone(tmp_path_factory) -> Path:
    return make_tone_file(tmp_path_factory.mktemp("media") / "tone.webm", 40.0)


@pytest.fixture(scope="module")
def rows(shared_data) -> pd.DataFrame:
    """The first 12 real eval segments, moved inside the 40-s tone file."""
    out = []
    with open(shared_data / "segments" / "eval_segments.csv") as fh:
        for row in csv.reader(fh, skipinitialspace=True):
            if not row[0].startswith("#"):
                out.append(row)
            if len(out) == 12:
                break
    frame = pd.DataFrame(out, columns=["ytid", "start", "end", "labels"])
    frame["start"] = [float(i % 5) * 3 for i in range(len(frame))]
    frame["end"] = frame["start"] + 10.0
    return frame


def _serve(server, frame, tone) -> str:
    for ytid in frame["ytid"]:
        server.add(f"v/{ytid}.webm", tone)
    return server.url("v/") + "{ytid}.webm"


def _write_csv(path: Path, frame: pd.DataFrame) -> Path:
    with open(path, "w") as fh:
        fh.write("# YTID, start_seconds, end_seconds, positive_labels\n")
        for r in frame.itertuples():
            fh.write(f'{r.ytid}, {r.start:.3f}, {r.end:.3f}, "{r.labels}"\n')
    return path


def _assert_consistent(folder: Path) -> int:
    """Every clip the manifest calls cached reads back from a published file; no temporary
    file is left; returns the clips cached."""
    with Manifest.open(folder / "manifest.sqlite", readonly=True) as m:
        ok = m.counts()["ok"]
        files = set(m.files()["name"])
    assert files <= {p.name for p in folder.glob("*.h5")}
    cache = open_cache(folder=folder)
    assert len(cache) == ok and cache.unavailable.empty
    if ok:
        got = cache.read(np.arange(ok))
        assert got["waveform"].shape == (ok, 160000)
    return ok


class _FakeDisk:
    """Files opened for writing share ``capacity`` bytes; a write past it fails with ENOSPC,
    as it does on a full disk (what reaches the disk is counted, nothing is ever freed)."""

    def __init__(self, capacity: int):
        self.capacity = capacity
        self.used = 0
        self.full_writes = 0
        self._open = builtins.open

    def open(self, file, mode="r", *args, **kwargs):  # noqa: ANN001, ANN201 - builtins.open
        fh = self._open(file, mode, *args, **kwargs)
        return _Metered(fh, self) if any(c in mode for c in "wxa+") else fh


class _Metered:
    def __init__(self, fh, disk: _FakeDisk):  # noqa: ANN001
        self._fh = fh
        self._disk = disk

    def write(self, data):  # noqa: ANN001, ANN201
        n = len(data)
        if self._disk.used + n > self._disk.capacity:
            self._disk.full_writes += 1
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self._disk.used += n
        return self._fh.write(data)

    def __enter__(self):  # noqa: ANN204
        return self

    def __exit__(self, *exc):  # noqa: ANN002, ANN204
        self._fh.close()

    def __iter__(self):  # noqa: ANN204
        return iter(self._fh)

    def __getattr__(self, name):  # noqa: ANN001, ANN204
        return getattr(self._fh, name)


def test_enospc_while_writing_a_cache_file_is_a_named_error_and_resume_completes(
        http_server, rows, tone, label_index, monkeypatch):
    url = _serve(http_server, rows, tone)
    first = download("full", segments=rows.iloc[:4], url_template=url, label_index=label_index,
                     batch_size=2, shard_size=4, **FAST)
    folder = first.folder
    assert first.ok == 4
    # room for about three more clips' batch files and nothing else (16 kHz pcm16: 320 kB)
    disk = _FakeDisk(capacity=3 * 330_000)
    with monkeypatch.context() as patch, pytest.raises(DiskFullError) as err:
        patch.setattr(shards, "open", disk.open, raising=False)
        patch.setattr(fileio, "open", disk.open, raising=False)
        download("full", segments=rows, url_template=url, label_index=label_index,
                 batch_size=2, shard_size=4, **FAST)
    text = str(err.value)
    assert disk.full_writes >= 1
    assert isinstance(err.value, CacheError) and err.value.folder == str(folder)
    assert f"the disk holding {str(folder)!r} is full" in text
    assert "clips still to fetch need about" in text and "MB" in text
    assert "run the same command again" in text
    # nothing half-written, nothing marked cached that is not in a published file
    assert not list(folder.glob(".*.part"))
    cached = _assert_consistent(folder)
    assert 4 <= cached < 12
    # the reports are whole files (written atomically), the stopped run's or the last one
    assert len(pd.read_csv(folder / "report.csv")) > 0
    # space freed: the same call resumes and fetches exactly what is missing
    again = download("full", segments=rows, url_template=url, label_index=label_index,
                     batch_size=2, shard_size=4, **FAST)
    assert (again.ok, again.fetched_now, again.pending) == (12, 12 - cached, 0)
    assert _assert_consistent(folder) == 12
    assert len(pd.read_csv(folder / "report.csv")) > 0


def test_atomic_write_on_a_full_disk_leaves_the_old_file(tmp_path, monkeypatch):
    dest = tmp_path / "report.csv"
    dest.write_text("old,report\n1,2\n")
    monkeypatch.setattr(fileio, "open", _FakeDisk(capacity=10).open, raising=False)
    with pytest.raises(DiskFullError, match=r"the disk holding .* is full: writing report\.csv"):
        with atomic_write(dest, "w") as fh:
            fh.write("new,report\n" * 10)
    assert dest.read_text() == "old,report\n1,2\n"
    assert [p.name for p in tmp_path.iterdir()] == ["report.csv"]


def test_space_check_of_a_small_list_prints_real_units(http_server, rows, tone, label_index,
                                                        monkeypatch):
    url = _serve(http_server, rows, tone)
    monkeypatch.setattr(job, "free_bytes", lambda folder: 1000)
    with pytest.raises(DiskFullError) as err:
        download("tiny", segments=rows.iloc[:2], url_template=url, label_index=label_index,
                 dry_run=True, **FAST)
    text = str(err.value)
    assert "0.00 GB" not in text
    # two clips plus room to compact them: 4 x 320,000 bytes
    assert "need about 1.28 MB" in text and "has 1.0 KB free" in text
    assert "--no-space-check" in text


@pytest.mark.parametrize(("n", "text"), [(0, "0 B"), (999, "999 B"), (1500, "1.5 KB"),
                                         (999_999, "1.00 MB"), (3_200_000, "3.20 MB"),
                                         (7.5e9, "7.50 GB")])
def test_format_bytes(n, text):
    assert format_bytes(n) == text


# -- the probe's exact input: a 3 MB tmpfs ------------------------------------------------------
@pytest.fixture
def tiny_disk(tmp_path):
    """A 3 MB tmpfs, when this process may mount one (root on Linux); else the test skips."""
    where = tmp_path / "tiny"
    where.mkdir()
    if sys.platform != "linux" or os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root on Linux")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(where)],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


@pytest.mark.parametrize("shard_size", [4, 100])
def test_cli_download_onto_a_3_mb_tmpfs(tiny_disk, shard_size, http_server, mirror, rows, tone,
                                        tmp_path):
    url = _serve(http_server, rows, tone)
    csv_path = _write_csv(tmp_path / f"list-{uuid.uuid4().hex[:6]}.csv", rows)
    root = tiny_disk / "root"
    args = [sys.executable, "-m", "audioset_data", "download", "--root", str(root),
            "--segments", str(csv_path), "--split", "t", "--url-template", url,
            "--sample-rate", "16000", "--shard-size", str(shard_size), "--batch-size", "2",
            "--no-space-check", "--no-progress", "--max-attempts", "1"]
    env = {**os.environ, "AUDIOSET_DATA_HOME": str(root)}
    full = subprocess.run(args, capture_output=True, text=True, env=env, check=False)
    assert full.returncode == 2, full.stderr[-3000:]  # a named error, no crash (139)
    folder = root / "cache" / "t"
    assert "Traceback" not in full.stderr and "Segmentation" not in full.stderr
    assert "audioset: error: the disk holding" in full.stderr
    assert str(folder) in full.stderr and "clips still to fetch need about" in full.stderr
    cached = _assert_consistent(folder)
    report = folder / "report.csv"
    assert not report.exists() or len(pd.read_csv(report)) > 0  # never an empty file
    # free space (grow the file system) and run the same command again
    subprocess.run(["mount", "-o", "remount,size=64m", str(tiny_disk)], check=True)
    again = subprocess.run(args, capture_output=True, text=True, env=env, check=False)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "12/12 clips cached" in again.stdout
    assert f"this run: {12 - cached} fetched" in again.stdout
    assert _assert_consistent(folder) == 12
    assert len(pd.read_csv(report)) > 0
    assert cache_dir("t", root) == folder
