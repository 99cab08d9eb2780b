"""What a new user meets on the command line (issue 20, defect 9): missing caches that say the
fix and the closest name, a download that caches nothing exits non-zero (and says "offline?"
when no host name resolves), messages that name this command's flags and never Python
arguments, and help texts."""

from __future__ import annotations

import csv
from pathlib import Path

import pandas as pd
import pytest

from audioset_data.cache.reader import cache_dir, open_cache
from audioset_data.cli import build_parser, main
from audioset_data.cli.common import reword
from audioset_data.downloader import job
from audioset_data.downloader.demo import make_tone_file
from audioset_data.errors import CacheError

from .loader_caches import build_cache


@pytest.fixture(scope="module")
def tone(tmp_path_factory) -> Path:
    return make_tone_file(tmp_path_factory.mktemp("media") / "tone.webm", 30.0)


def _list(path: Path, shared_data: Path, n: int, extra: str = "") -> Path:
    """The first ``n`` real eval segments (moved inside the tone file), as an official CSV."""
    rows = []
    with open(shared_data / "segments" / "eval_segments.csv") as fh:
        for row in csv.reader(fh, skipinitialspace=True):
            if not row[0].startswith("#"):
                rows.append(row)
            if len(rows) == n:
                break
    with open(path, "w") as fh:
        fh.write("# YTID, start_seconds, end_seconds, positive_labels\n")
        for i, r in enumerate(rows):
            fh.write(f'{r[0]}, {3.0 * i:.3f}, {3.0 * i + 10:.3f}, "{r[3]}"\n')
        fh.write(extra)
    return path


# -- missing caches -----------------------------------------------------------------------------
def test_missing_cache_says_how_to_make_it(capsys):
    with pytest.raises(CacheError) as err:
        open_cache("balanced")
    text = str(err.value)
    assert "manifest.sqlite is missing" in text
    assert "`audioset download --split balanced`" in text and "`audioset demo`" in text
    assert main(["cache", "--split", "balanced"]) == 2
    out = capsys.readouterr().err
    assert "`audioset download --split balanced`" in out and "`audioset demo`" in out


def test_missing_cache_suggests_the_closest_name(capsys):
    build_cache(cache_dir("eval"), 3)
    with pytest.raises(CacheError, match=r"did you mean 'eval'\?"):
        open_cache("evall")
    assert main(["cache", "--split", "evall"]) == 2
    out = capsys.readouterr().err
    assert "did you mean 'eval'?" in out and "caches here: eval" in out
    # a split not downloaded yet: the suggestion says how to make it
    assert main(["cache", "--split", "balnced"]) == 2
    assert ("did you mean 'balanced'? (`audioset download --split balanced` makes it)"
            in capsys.readouterr().err)


# -- a download that caches nothing -------------------------------------------------------------
def test_download_where_every_name_lookup_fails_exits_1_and_says_offline(
        mirror, shared_data, tmp_path, capsys):
    seg = _list(tmp_path / "two.csv", shared_data, 2)
    code = main(["download", "--segments", str(seg), "--url-template",
                 "http://audioset-probe.invalid/{ytid}.webm", "--max-attempts", "1",
                 "--no-progress", "--sample-rate", "16000"])
    captured = capsys.readouterr()
    assert code == 1
    assert "0/2 clips cached" in captured.out and "failed connection: 2" in captured.out
    assert "offline?" in captured.out
    assert "audioset: error: none of the 2 clips is cached" in captured.err
    assert "offline?" in captured.err
    failures = pd.read_csv(cache_dir("two") / "failures.csv")
    assert failures["detail"].str.contains("resolve|name or service", case=False).all()


def test_download_where_every_clip_fails_otherwise_exits_1_without_offline(
        mirror, http_server, shared_data, tmp_path, capsys):
    seg = _list(tmp_path / "gone.csv", shared_data, 2)
    code = main(["download", "--segments", str(seg), "--url-template",
                 http_server.url("v/") + "{ytid}.webm", "--max-attempts", "1",
                 "--no-progress", "--sample-rate", "16000"])
    captured = capsys.readouterr()
    assert code == 1 and "failed http_404: 2" in captured.out
    assert "offline?" not in captured.out + captured.err
    assert "failures.csv" in captured.err


def test_download_that_caches_something_exits_0(mirror, http_server, shared_data, tmp_path,
                                                 tone, capsys):
    seg = _list(tmp_path / "some.csv", shared_data, 2)
    with open(seg) as fh:
        rows = [r for r in csv.reader(fh, skipinitialspace=True) if not r[0].startswith("#")]
    http_server.add(f"v/{rows[0][0]}.webm", tone)  # the second video is gone (404)
    code = main(["download", "--segments", str(seg), "--url-template",
                 http_server.url("v/") + "{ytid}.webm", "--max-attempts", "1",
                 "--no-progress", "--sample-rate", "16000"])
    assert code == 0 and "1/2 clips cached" in capsys.readouterr().out


# -- messages name this command's flags ----------------------------------------------------------
def test_download_names_its_own_flag_for_bad_rows(mirror, shared_data, tmp_path, capsys):
    seg = _list(tmp_path / "bad.csv", shared_data, 2, extra="not-an-id, x, y, z\n")
    assert main(["download", "--segments", str(seg), "--dry-run", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "--skip-bad-rows" in err and "on_bad_rows" not in err
    assert main(["download", "--segments", str(seg), "--dry-run", "--no-progress",
                 "--skip-bad-rows"]) == 0
    assert "2 segments" in capsys.readouterr().out


def test_download_of_an_empty_list_suggests_no_python_argument(mirror, tmp_path, capsys):
    seg = tmp_path / "empty.csv"
    seg.write_text("# YTID, start_seconds, end_seconds, positive_labels\n")
    assert main(["download", "--segments", str(seg), "--dry-run", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "no segment rows" in err and "allow_empty" not in err and "=True" not in err


def test_space_check_names_the_flag_only(mirror, shared_data, tmp_path, capsys, monkeypatch):
    seg = _list(tmp_path / "space.csv", shared_data, 2)
    monkeypatch.setattr(job, "free_bytes", lambda folder: 1000)
    assert main(["download", "--segments", str(seg), "--dry-run", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "pass --no-space-check" in err and "check_space" not in err
    assert "1.0 KB free" in err and "GB" not in err


@pytest.mark.parametrize(("message", "flags", "want"), [
    ("f.csv:3: bad; pass on_bad_rows='skip' (--skip-bad-rows) to keep the valid rows",
     {"on_bad_rows": "--skip-bad-rows"},
     "f.csv:3: bad; pass --skip-bad-rows to keep the valid rows"),
    ("f.csv:3: bad; pass on_bad_rows='skip' (--skip-bad-rows) to keep the valid rows", {},
     "f.csv:3: bad"),
    ("f.csv: no segment rows; pass allow_empty=True to accept an empty list", {},
     "f.csv: no segment rows"),
    ("'o' exists; pass overwrite=True to replace it", {"overwrite": "--overwrite"},
     "'o' exists; pass --overwrite to replace it"),
    ("unknown class 'x' (pass ontology= to resolve classes outside the labels)", {},
     "unknown class 'x'"),
    ("not pinned; pass accept_new_upstream=True (--accept-new-upstream) to use it", {},
     "not pinned"),
])
def test_reword(message, flags, want):
    assert reword(message, flags) == want


# -- help -----------------------------------------------------------------------------------------
def _sub(name: str):  # noqa: ANN202 - argparse.ArgumentParser
    parser = build_parser()
    action = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    return action.choices[name]


@pytest.mark.parametrize("name", ["download", "demo"])
def test_download_and_demo_have_descriptions(name):
    assert len(_sub(name).description or "") > 80


@pytest.mark.parametrize("name", ["download", "demo", "merge", "cache", "evaluate", "export",
                                  "mine", "refine"])
def test_root_is_shown_as_root(name):
    root = _sub(name)._option_string_actions["--root"]
    assert root.metavar == "ROOT"
