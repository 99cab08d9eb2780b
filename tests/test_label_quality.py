"""Label quality (Google's ``qa_true_counts.csv``: ``label_id,num_rated,num_true``) beside each
class's AP, in the report, the JSON and a plot with the Spearman correlation. No real copy of
the file is reachable here; the fixture is written in its format."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from audioset_data.cache.manifest import clip_key
from audioset_data.cache.reader import cache_dir
from audioset_data.cache.store import CacheWriter, open_manifest
from audioset_data.cli import main
from audioset_data.evaluation import evaluate
from audioset_data.evaluation.quality import (
    LabelQualityError,
    load_quality,
    quality_correlation,
    quality_path,
    read_quality,
)

#: Dog, Speech, Music, Cat, Car, Bird, in an order of their own (not the index's)
MIDS = ["/m/0bt9lr", "/m/09x0r", "/m/04rlf", "/m/01yrx", "/m/0k4j", "/m/015p6"]
#: (num_rated, num_true) per mid; Bird is not rated
COUNTS = {"/m/0bt9lr": (10, 8), "/m/09x0r": (10, 10), "/m/04rlf": (20, 19),
          "/m/01yrx": (10, 3), "/m/0k4j": (10, 8)}


def write_quality(path, label_index, counts=COUNTS, extra=((5, 7, 1), (6, 4, 4))):
    """A ``qa_true_counts.csv`` for ``counts`` (by mid) plus a few other classes."""
    rows = [(label_index.mids.index(m), r, t) for m, (r, t) in counts.items()]
    rows += [e for e in extra if e[0] not in {r[0] for r in rows}]
    path.write_text("label_id,num_rated,num_true\n" + "".join(
        f"{i},{r},{t}\n" for i, r, t in sorted(rows)))
    return path


def small_cache(root, n: int = 40, seed: int = 7):
    folder = cache_dir("small", root)
    rng = np.random.default_rng(seed)
    manifest = open_manifest(folder, fmt="pcm16", sample_rate=100, clip_samples=10,
                             label_mids=MIDS)
    truth = rng.random((n, len(MIDS))) < 0.4
    truth[0], truth[1] = True, False
    rows = [(clip_key(f"qualclip{i:03d}", 0.0), f"qualclip{i:03d}", 0.0, 10.0,
             ",".join(m for m, b in zip(MIDS, truth[i], strict=True) if b)) for i in range(n)]
    manifest.add_segments(rows)
    writer = CacheWriter(folder, manifest, fmt="pcm16", sample_rate=100, clip_samples=10,
                         label_mids=MIDS, batch_size=8, shard_size=16)
    for (key, ytid, *_), t in zip(rows, truth, strict=True):
        writer.add(key, ytid, 0.0, 10.0, np.zeros(10, np.int16), 10, t)
    writer.close()
    manifest.close()
    return [r[0] for r in rows], truth


def test_read_gives_each_class_its_share_of_confirmed_labels(tmp_path, label_index):
    q = read_quality(write_quality(tmp_path / "qa_true_counts.csv", label_index),
                     label_index=label_index)
    assert len(q) == 527 and q.mids == tuple(label_index.mids)
    dog = label_index.mids.index("/m/0bt9lr")
    assert q.quality[dog] == pytest.approx(0.8) and q.num_rated[dog] == 10
    assert np.isnan(q.quality[label_index.mids.index("/m/015p6")])  # Bird: not rated
    aligned = q.aligned(MIDS)
    assert list(aligned.mids) == MIDS
    np.testing.assert_allclose(aligned.quality, [0.8, 1.0, 0.95, 0.3, 0.8, np.nan])


@pytest.mark.parametrize(("text", "match"), [
    ("index,rated,true\n0,1,1\n", "line 1: .*starts with the header label_id,num_rated"),
    ("label_id,num_rated,num_true\n0,10,8\n1,ten,3\n", "line 3: .*not three whole numbers"),
    ("label_id,num_rated,num_true\n0,10,11\n", "line 2: num_true 11 is over num_rated 10"),
    ("label_id,num_rated,num_true\n0,10,8\n0,5,5\n", "line 3: label_id 0 repeats line 2"),
    ("label_id,num_rated,num_true\n527,10,8\n", "line 2: label_id 527 is past"),
    ("label_id,num_rated,num_true\n3,-1,0\n", "line 2: negative"),
    ("label_id,num_rated,num_true\n", "no rows"),
    ("", "empty"),
])
def test_malformed_quality_files_name_the_file_and_line(tmp_path, label_index, text, match):
    path = tmp_path / "qa_true_counts.csv"
    path.write_text(text)
    with pytest.raises(LabelQualityError, match=match) as err:
        read_quality(path, label_index=label_index)
    assert str(path) in str(err.value) and isinstance(err.value, ValueError)


def test_spearman_uses_mean_ranks_for_ties_and_skips_undefined_classes():
    ap = np.array([0.9, 0.5, 0.5, 0.2, np.nan, 0.7, 0.5])
    quality = np.array([1.0, 0.8, 0.8, 0.8, 0.9, np.nan, 0.3])
    rho, n = quality_correlation(ap, quality)
    ok = np.isfinite(ap) & np.isfinite(quality)
    ranks = pd.DataFrame({"a": ap[ok], "q": quality[ok]}).rank(method="average")
    assert n == 5
    assert rho == pytest.approx(np.corrcoef(ranks["a"], ranks["q"])[0, 1], abs=1e-12)
    assert np.isnan(quality_correlation(ap[:2], quality[:2])[0])  # under three classes
    assert np.isnan(quality_correlation(ap, np.full(7, 0.5))[0])  # no spread: undefined


def test_numbered_columns_match_by_class_number_and_mids_need_the_index(tmp_path):
    path = tmp_path / "q.csv"
    path.write_text("label_id,num_rated,num_true\n0,10,9\n2,10,2\n3,4,1\n")
    rng = np.random.default_rng(0)
    y = rng.random((50, 4)) < 0.3
    s = y + rng.normal(0, 0.8, y.shape)
    r = evaluate(y_true=y, y_score=s, quality=path)
    np.testing.assert_allclose(r.to_frame()["quality"], [0.9, np.nan, 0.2, 0.25])
    with pytest.raises(LabelQualityError, match="label_index="):
        read_quality(path).aligned(["/m/09x0r", "/m/04rlf"])


def test_cli_quality_beside_ap_in_report_json_and_plot(data_root, mirror, label_index,
                                                      tmp_path, capsys, monkeypatch):
    keys, truth = small_cache(data_root)
    rng = np.random.default_rng(1)
    scores = np.round(truth + rng.normal(0, 0.7, truth.shape), 1)  # ties in the scores
    npz = tmp_path / "S.npz"
    np.savez(npz, ids=np.array(keys), scores=scores)
    qfile = write_quality(tmp_path / "qa.csv", label_index)
    import matplotlib.axes

    titles = []
    real = matplotlib.axes.Axes.set_title
    monkeypatch.setattr(matplotlib.axes.Axes, "set_title",
                        lambda self, text, *a, **k: (titles.append(text),
                                                     real(self, text, *a, **k))[1])
    plots, report = tmp_path / "plots", tmp_path / "r.json"
    assert main(["evaluate", "--scores", str(npz), "--split", "small", "--root",
                 str(data_root), "--quality", str(qfile), "--plots", str(plots), "--json",
                 str(report)]) == 0
    out = capsys.readouterr().out
    data = json.loads(report.read_text())
    classes = {c["name"]: c for c in data["classes"]}
    assert classes["Dog"]["quality"] == pytest.approx(0.8) and classes["Dog"]["num_rated"] == 10
    assert classes["Cat"]["quality"] == pytest.approx(0.3)
    assert classes["Bird"]["quality"] is None and classes["Bird"]["num_rated"] == 0
    ap = np.array([c["ap"] for c in data["classes"]])
    q = np.array([np.nan if c["quality"] is None else c["quality"] for c in data["classes"]])
    rho, n = quality_correlation(ap, q)
    assert data["summary"]["ap_quality_spearman"] == pytest.approx(rho) and n == 5
    assert data["summary"]["ap_quality_classes"] == 5
    assert "| name | ap | auc | dprime | n_pos | quality |" in out
    assert "| Cat |" in out and " 0.30 (10) |" in out and " — |" in out
    assert "| Spearman correlation of AP with label quality |" in out
    assert (plots / "ap_vs_quality.png").stat().st_size > 0
    assert any(t.startswith(f"AP against label quality: Spearman ρ = {rho:.2f} (5 classes)")
               for t in titles), titles


def test_quality_file_in_the_data_root_is_read_without_the_flag(data_root, mirror,
                                                               label_index, tmp_path, capsys):
    keys, truth = small_cache(data_root)
    npz = tmp_path / "S.npz"
    np.savez(npz, ids=np.array(keys), scores=truth + 0.2)
    assert load_quality(root=data_root) is None
    assert main(["evaluate", "--scores", str(npz), "--split", "small", "--root",
                 str(data_root)]) == 0
    assert "quality" not in capsys.readouterr().out  # nothing there: the report as before
    found = write_quality(quality_path(data_root), label_index)
    assert found == data_root / "remote" / "qa_true_counts.csv"
    assert main(["evaluate", "--scores", str(npz), "--split", "small", "--root",
                 str(data_root)]) == 0
    captured = capsys.readouterr()
    assert f"label quality from {found}" in captured.err
    assert "| name | ap | auc | dprime | n_pos | quality |" in captured.out
