"""What a new user met in ``audioset evaluate`` (issue 20): ``--plots`` wrote nothing, every run
printed a NumPy RuntimeWarning, the mean of per-class d-primes showed None, the name column
showed mids; and the harness's functions took their two arrays in opposite orders."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

from audioset_data.cache.manifest import clip_key
from audioset_data.cache.reader import cache_dir
from audioset_data.cache.store import CacheWriter, open_manifest
from audioset_data.cli import main
from audioset_data.errors import EvaluationError
from audioset_data.evaluation import bootstrap_map, class_metrics, evaluate
from audioset_data.evaluation.context import label_index_for, listed_clips, load_ontology
from audioset_data.evaluation.metrics import micro_average_precision

#: Dog, Speech, Music, Cat, Car, Bird, in an order of their own (not the index's)
MIDS = ["/m/0bt9lr", "/m/09x0r", "/m/04rlf", "/m/01yrx", "/m/0k4j", "/m/015p6"]
NAMES = ["Dog", "Speech", "Music", "Cat", "Car", "Bird"]


def write_small_cache(folder, n_listed: int = 24, n_cached: int = 22, seed: int = 4):
    """A cache of a subset of the labels that lists ``n_listed`` clips and holds
    ``n_cached`` (the rest failed): the probe's 24 listed, 22 cached."""
    rng = np.random.default_rng(seed)
    manifest = open_manifest(folder, fmt="pcm16", sample_rate=100, clip_samples=10,
                             label_mids=MIDS)
    rows, truth = [], []
    for i in range(n_listed):
        t = np.zeros(len(MIDS), dtype=bool)
        t[rng.choice(len(MIDS), size=2, replace=False)] = True
        t[0] = i % 2 == 0  # Dog on every other clip
        rows.append((clip_key(f"sml{i:08d}", 0.0), f"sml{i:08d}", 0.0, 10.0,
                     ",".join(m for m, b in zip(MIDS, t, strict=True) if b)))
        truth.append(t)
    manifest.add_segments(rows)
    writer = CacheWriter(folder, manifest, fmt="pcm16", sample_rate=100, clip_samples=10,
                         label_mids=MIDS, batch_size=8, shard_size=16)
    for (key, ytid, *_), t in list(zip(rows, truth, strict=True))[:n_cached]:
        writer.add(key, ytid, 0.0, 10.0, np.zeros(10, np.int16), 10, t)
    writer.close()
    for key, *_ in rows[n_cached:]:
        manifest.mark_failed(key, "unavailable", True)
    manifest.close()
    return [r[0] for r in rows[:n_cached]], np.stack(truth[:n_cached])


def test_evaluate_cli_plots_names_and_finite_dprime_without_warnings(data_root, mirror,
                                                                     tmp_path, capsys):
    keys, truth = write_small_cache(cache_dir("small", data_root))
    rng = np.random.default_rng(1)
    scores = truth + rng.normal(0, 0.4, truth.shape)
    scores[:, 0] = truth[:, 0]  # Dog ranked perfectly: AUC 1, d-prime inf before
    scores[:, 1] = 1.0 - truth[:, 1]  # Speech ranked backwards: AUC 0, d-prime -inf before
    npz = tmp_path / "s.npz"
    np.savez(npz, ids=np.array(keys), scores=scores)
    plots = tmp_path / "plots"
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # "invalid value encountered in reduce"
        assert main(["evaluate", "--scores", str(npz), "--split", "small", "--root",
                     str(data_root), "--plots", str(plots), "--json",
                     str(tmp_path / "r.json")]) == 0
    captured = capsys.readouterr()
    assert sorted(p.name for p in plots.iterdir()) == ["ap_vs_prior.png", "map_per_branch.png"]
    assert f"wrote {plots / 'ap_vs_prior.png'}" in captured.err
    report = json.loads((tmp_path / "r.json").read_text())
    summary = report["summary"]
    assert summary["mean_dprime"] is not None and np.isfinite(summary["mean_dprime"])
    assert summary["clips_evaluated"] == 22 and summary["clips_listed"] == 24
    assert summary["mAP_by_branch"] and summary["mAP_propagated"] is not None
    assert [c["name"] for c in report["classes"]] == NAMES
    assert report["classes"][0]["prior"] == pytest.approx(0.5)
    assert "| mean of per-class d-primes | None" not in captured.out
    assert "| Dog | 1.000 |" in captured.out  # the table names the classes
    assert "/m/0bt9lr" not in captured.out


def test_evaluate_cli_says_why_a_plot_is_missing(data_root, tmp_path, capsys, monkeypatch):
    keys, truth = write_small_cache(cache_dir("small", data_root))
    npz = tmp_path / "s.npz"
    np.savez(npz, ids=np.array(keys), scores=truth + 0.1)
    # no mirror and no network: the ontology cannot be fetched
    monkeypatch.setenv("AUDIOSET_ONTOLOGY_BASE_URL", "http://127.0.0.1:9/")
    monkeypatch.setenv("AUDIOSET_CSV_BASE_URL", "http://127.0.0.1:9/")
    assert main(["evaluate", "--scores", str(npz), "--split", "small", "--root",
                 str(data_root), "--plots", str(tmp_path / "p")]) == 0
    err = capsys.readouterr().err
    assert "wrote" in err and "ap_vs_prior.png" in err
    assert "no mAP-per-branch plot: the ontology is not available" in err
    assert "AUDIOSET_ONTOLOGY_BASE_URL" in err


def test_context_helpers(data_root, mirror):
    write_small_cache(cache_dir("small", data_root))
    assert listed_clips("small", data_root) == 24
    assert listed_clips(cache_dir("small", data_root)) == 24
    assert listed_clips("nothing", data_root) is None
    index = label_index_for([*MIDS, "/m/not-a-label"], data_root)
    assert list(index.names) == [*NAMES, "/m/not-a-label"]
    ontology, why = load_ontology(data_root)
    assert ontology is not None and why == ""


def test_one_argument_order_across_the_harness_by_keyword():
    rng = np.random.default_rng(0)
    y = rng.random((60, 4)) < 0.3
    s = y + rng.normal(0, 0.7, y.shape)
    by_position = class_metrics(y, s)  # truth first, as ever
    for m in (class_metrics(y_true=y, y_score=s), class_metrics(y_score=s, y_true=y),
              class_metrics(targets=y, scores=s)):
        np.testing.assert_array_equal(m.ap, by_position.ap)
    assert micro_average_precision(y_score=s, y_true=y) == micro_average_precision(y, s)
    assert bootstrap_map(y_true=y, y_score=s, n_resamples=5).estimate == pytest.approx(
        by_position.mean_ap)
    old = evaluate(s, y)  # the old positional order, scores first, still works
    for r in (evaluate(y_true=y, y_score=s), evaluate(scores=s, targets=y)):
        np.testing.assert_array_equal(r.metrics.ap, old.metrics.ap)
    with pytest.raises(EvaluationError, match="y_true or targets, not both"):
        evaluate(y_true=y, targets=y, y_score=s)
    with pytest.raises(EvaluationError, match="needs y_true"):
        evaluate(y_score=s)
    with pytest.raises(EvaluationError, match="needs y_true"):
        class_metrics(y_true=y)
