"""The evaluation harness: what a result was computed on, restrictions by id, ontology-aware
reports, gathering ranks, score files aligned with a cached split, the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest

from audioset_data.cache.manifest import clip_key
from audioset_data.cli import main
from audioset_data.errors import EvaluationError
from audioset_data.evaluation.harness import evaluate, gather_scores, id_list_hash
from audioset_data.evaluation.scores_io import read_scores


def _data(n=300, c=6, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.random((n, c)) < 0.2
    y[:, -1] = False  # an undefined class: no positives
    s = y * 1.0 + rng.normal(0, 0.8, (n, c))
    ids = [clip_key(f"clip{i:07d}", 10.0 * (i % 3)) for i in range(n)]
    return y, s, ids


def test_result_records_what_it_was_computed_on():
    y, s, ids = _data()
    r = evaluate(y_true=y, y_score=s, clip_ids=ids, n_listed=400)
    summary = r.summary()
    assert summary["clips_evaluated"] == 300 and summary["clips_listed"] == 400
    assert summary["clips_sha256"] == id_list_hash(reversed(ids))  # order does not matter
    assert summary["classes_undefined"] == 1
    assert np.isnan(r.metrics.ap[-1])
    assert summary["mAP"] == pytest.approx(
        float(np.nanmean(r.metrics.ap[:-1])))


def test_on_restricts_to_another_list_and_reports_the_ids_without_scores():
    y, s, ids = _data()
    other = ids[:100] + ["missing0000_0", "missing0001_0"]
    r = evaluate(y_true=y, y_score=s, clip_ids=ids, on=other)
    direct = evaluate(y_true=y[:100], y_score=s[:100], clip_ids=ids[:100])
    assert r.not_evaluated == ["missing0000_0", "missing0001_0"]
    assert r.summary()["clips_sha256"] == direct.summary()["clips_sha256"]
    np.testing.assert_array_equal(r.metrics.ap, direct.metrics.ap)
    with pytest.raises(EvaluationError, match="clip_ids"):
        evaluate(y_true=y, y_score=s, on=other)


def test_bad_input_gets_a_named_error():
    y, s, ids = _data()
    with pytest.raises(EvaluationError, match="shape"):
        evaluate(y_true=y, y_score=s[:, :5])
    bad = s.copy()
    bad[3, 2] = np.nan
    with pytest.raises(EvaluationError, match="NaN or infinite.*row 3, label column 2"):
        evaluate(y_true=y, y_score=bad)
    with pytest.raises(EvaluationError, match="2-D"):
        evaluate(y_true=y[:, 0], y_score=s[:, 0])
    with pytest.raises(EvaluationError, match="repeat"):
        evaluate(y_true=y[:2], y_score=s[:2], clip_ids=["a_0", "a_0"])


def test_ontology_aware_report_with_branches_and_propagation(label_index, ontology, eval_seg):
    y = eval_seg.label_matrix[:2000].toarray()
    rng = np.random.default_rng(1)
    s = y * 2.0 + rng.normal(0, 1.0, y.shape)
    r = evaluate(y_true=y, y_score=s, label_index=label_index, ontology=ontology,
                 priors=y.mean(axis=0) + 1e-6)
    frame = r.to_frame()
    assert len(frame) == 527 and frame.loc[frame["name"] == "Dog", "branch"].item() == "Animal"
    branches = r.branch_means()
    assert {"Animal", "Music", "Human sounds"} <= set(branches)
    assert r.propagated is not None and np.isfinite(r.propagated.mean_ap)
    assert "mAP_propagated" in r.summary()
    assert "prior_weighted_ap" in r.summary()


def test_report_outputs(tmp_path, label_index, ontology, eval_seg):
    y = eval_seg.label_matrix[:1000].toarray()
    s = y + np.random.default_rng(2).normal(0, 1, y.shape)
    r = evaluate(y_true=y, y_score=s, label_index=label_index, ontology=ontology,
                 priors=y.mean(axis=0), bootstrap=50, seed=3)
    data = json.loads(r.to_json(tmp_path / "r.json"))
    assert data["summary"]["labels"] == 527 and len(data["classes"]) == 527
    lo, hi = data["summary"]["mAP_interval"]
    assert 0 < lo < hi < 1
    assert "| mAP (macro over defined classes) |" in r.to_markdown()
    files = r.plot(tmp_path / "plots", classes=["Music", "Speech"])
    assert {p.name for p in files} == {"ap_vs_prior.png", "map_per_branch.png",
                                       "precision_recall.png"}


def test_gather_scores_drops_the_padding_of_a_distributed_sampler():
    y, s, ids = _data(n=10)
    # two ranks, the second padded with the first clips again (as DistributedSampler does)
    rank0 = (ids[0:10:2], s[0:10:2])
    rank1 = (ids[1:10:2] + ids[:1], np.vstack([s[1:10:2], s[:1]]))
    got_ids, got = gather_scores([rank0, rank1])
    assert sorted(got_ids) == sorted(ids) and len(got) == 10
    order = [got_ids.index(k) for k in ids]
    np.testing.assert_array_equal(got[order], s)
    # a repeat is dropped by its id even when its scores differ (bf16 on another rank)
    got_ids, got = gather_scores([rank0, (ids[:1], s[1:2] + 1e-3), rank1])
    assert got_ids.count(ids[0]) == 1 and len(got) == 10
    np.testing.assert_array_equal(got[got_ids.index(ids[0])], s[0])


def test_score_files_and_the_cli_align_by_id(tmp_path, data_root, label_index, capsys):
    from audioset_data.cache.reader import cache_dir
    from audioset_data.cache.store import CacheWriter, open_manifest

    folder = cache_dir("evalmini", root=data_root)
    mids = list(label_index.mids)
    manifest = open_manifest(folder, fmt="pcm16", sample_rate=100, clip_samples=10,
                             label_mids=mids)
    rng = np.random.default_rng(4)
    keys, truth = [], []
    rows = []
    for i in range(40):
        ytid = f"evm{i:08d}"
        t = np.zeros(len(mids), dtype=bool)
        t[rng.choice(5, size=2, replace=False)] = True
        keys.append(clip_key(ytid, 0.0))
        truth.append(t)
        labels = ",".join(m for m, b in zip(mids, t, strict=True) if b)
        rows.append((keys[-1], ytid, 0.0, 10.0, labels))
    manifest.add_segments(rows)
    writer = CacheWriter(folder, manifest, fmt="pcm16", sample_rate=100, clip_samples=10,
                         label_mids=mids, batch_size=8, shard_size=16)
    for (key, ytid, *_), t in zip(rows, truth, strict=True):
        writer.add(key, ytid, 0.0, 10.0, np.zeros(10, np.int16), 10, t)
    writer.close()
    manifest.close()
    scores = np.stack(truth) + rng.normal(0, 0.5, (40, len(mids)))
    # the file lists the clips in another order, misses two and adds one the cache lacks
    order = rng.permutation(38)
    ids = [keys[i] for i in order] + ["notcached00_0"]
    npz = tmp_path / "scores.npz"
    np.savez(npz, ids=np.array(ids), scores=np.vstack([scores[order], scores[:1]]))
    got_ids, got = read_scores(npz)
    assert got_ids == ids and got.shape == (39, 527)
    out_json = tmp_path / "res.json"
    assert main(["evaluate", "--scores", str(npz), "--split", "evalmini", "--root",
                 str(data_root), "--json", str(out_json)]) == 0
    summary = json.loads(out_json.read_text())["summary"]
    assert summary["clips_evaluated"] == 38 and summary["clips_listed"] == 40
    assert summary["unscored"] == 2
    assert summary["not_in_labels"] == 1
    direct = evaluate(y_true=np.stack(truth[:38]), y_score=scores[:38], clip_ids=keys[:38])
    assert summary["mAP"] == pytest.approx(direct.metrics.mean_ap)
    assert "| mAP" in capsys.readouterr().out
    assert main(["evaluate", "--scores", str(npz), "--split", "evalmini", "--root",
                 str(data_root), "--strict"]) == 2
    assert "notcached00_0" in capsys.readouterr().err
    np.save(tmp_path / "s.npy", scores)
    with pytest.raises(EvaluationError, match="--ids"):
        read_scores(tmp_path / "s.npy")
    with pytest.raises(EvaluationError, match="not found"):
        read_scores(tmp_path / "nope.npz")
    assert main(["evaluate", "--scores", str(tmp_path / "nope.npz"), "--split",
                 "evalmini", "--root", str(data_root)]) == 2


def test_frame_level_evaluation_excludes_unknown_pairs(shared_data, label_index, tmp_path):
    from sklearn.metrics import average_precision_score

    from audioset_data.evaluation.harness import evaluate_frames
    from audioset_data.strong.events import load_framed

    # the staged real file holds only PRESENT rows: add NOT_PRESENT rows for the other frames
    # of its clips (half of them, so that some pairs stay unknown), in the official format
    src = shared_data / "strong" / "gun_ov_audioset_eval_strong_framed_posneg.tsv"
    lines = src.read_text().splitlines()
    listed = {tuple(line.split("\t")[:4]) for line in lines[1:]}
    extra = []
    for seg in sorted({t[0] for t in listed}):
        for mid in sorted({t[3] for t in listed}):
            for f in range(10):
                start, end = f"{f * 0.96:.2f}".rstrip("0").rstrip("."), f"{(f + 1) * 0.96:.2f}"
                key = (seg, start, end.rstrip("0").rstrip("."), mid)
                if not any(t[0] == seg and t[3] == mid and abs(float(t[1]) - f * 0.96) < 0.01
                           for t in listed) and (f + len(seg)) % 2 == 0:
                    extra.append("\t".join([*key, "NOT_PRESENT"]))
    path = tmp_path / "framed.tsv"
    path.write_text("\n".join([*lines, *extra]) + "\n")
    framed = load_framed(path, label_index=label_index,
                         vocabulary=shared_data / "segments" / "mid_to_display_name.tsv")
    arrays = framed.to_arrays(label_index)
    n = len(arrays.keys) * arrays.n_frames
    keys = np.repeat(arrays.keys, arrays.n_frames)
    frames = np.tile(np.arange(arrays.n_frames), len(arrays.keys))
    rng = np.random.default_rng(5)
    present = arrays.present.toarray()
    scores = present * 1.5 + rng.normal(0, 1, (n, len(label_index)))
    # one scored frame the file does not know, and the last listed frame left unscored
    keys = np.append(keys[:-1], "unknownclip_0")
    frames = np.append(frames[:-1], 0)
    r = evaluate_frames(scores, keys, frames, arrays, label_index=label_index)
    assert r.level == "frame" and r.not_in_labels == 1
    known = arrays.known.toarray()[: n - 1]
    for j in np.flatnonzero(r.metrics.defined):
        k = known[:, j]
        assert r.metrics.n_pos[j] + r.metrics.n_neg[j] == k.sum()  # unknown pairs excluded
        want = average_precision_score(present[: n - 1][k, j], scores[: n - 1][k, j])
        assert r.metrics.ap[j] == pytest.approx(want, abs=1e-9)
    assert r.metrics.defined.sum() >= 1


def test_cli_frames_reads_frame_scores(tmp_path, shared_data, capsys, monkeypatch):
    monkeypatch.setenv("AUDIOSET_CSV_BASE_URL", str(shared_data / "segments"))
    monkeypatch.setenv("AUDIOSET_STRONG_BASE_URL", str(shared_data / "segments"))
    src = shared_data / "strong" / "gun_ov_audioset_eval_strong_framed_posneg.tsv"
    lines = src.read_text().splitlines()
    # one extra NOT_PRESENT frame per clip so that the gunshot class is defined
    segs = sorted({line.split("\t")[0] for line in lines[1:]})
    listed = {(line.split("\t")[0], round(float(line.split("\t")[1]) / 0.96))
              for line in lines[1:]}
    extra = [f"{s}\t0\t0.96\t/m/032s66\tNOT_PRESENT" for s in segs if (s, 0) not in listed]
    framed = tmp_path / "framed.tsv"
    framed.write_text("\n".join([*lines, *extra]) + "\n")
    pos = sorted({(line.split("\t")[0], round(float(line.split("\t")[1]) / 0.96))
                  for line in lines[1:]})
    neg = [(e.split("\t")[0], 0) for e in extra]
    ids = np.array([k for k, _ in pos + neg])
    frames = np.array([f for _, f in pos + neg])
    scores = np.zeros((len(ids), 527))
    scores[: len(pos)] = 1.0
    npz = tmp_path / "frames.npz"
    np.savez(npz, ids=ids, frames=frames, scores=scores)
    out = tmp_path / "r.json"
    assert main(["evaluate", "--frames", "--scores", str(npz), "--framed", str(framed),
                 "--root", str(tmp_path / "root"), "--json", str(out)]) == 0
    summary = json.loads(out.read_text())["summary"]
    assert summary["level"] == "frame" and summary["classes_defined"] >= 1
    assert summary["mAP"] == pytest.approx(1.0)


def test_summary_keys_are_short_and_stable_and_the_markdown_keeps_the_words():
    y, s, ids = _data()
    r = evaluate(y_true=y, y_score=s, clip_ids=ids, n_listed=400, bootstrap=20, seed=1)
    summary = r.summary()
    assert list(summary)[:10] == ["level", "mAP", "mean_auc", "dprime", "mean_dprime",
                                  "micro_ap", "classes_defined", "classes_undefined", "labels",
                                  "labels_sha256"]
    assert all(" " not in k for k in summary)
    assert summary["dprime"] == pytest.approx(r.metrics.dprime_of_mean_auc)
    assert summary["mAP_interval_level"] == 0.95 and len(summary["mAP_interval"]) == 2
    text = r.to_markdown()
    assert "| mAP (macro over defined classes) |" in text
    assert "| mAP 95% bootstrap interval |" in text and "mAP_interval_level" not in text
    assert json.loads(r.to_json())["summary"]["mAP"] == summary["mAP"]


def test_micro_ap_is_computed_only_when_asked_for_and_unchanged(monkeypatch):
    from audioset_data.evaluation import harness
    from audioset_data.evaluation.metrics import micro_average_precision

    calls = []

    def counted(**kwargs):
        calls.append(1)
        return micro_average_precision(**kwargs)

    monkeypatch.setattr(harness, "micro_average_precision", counted)
    y, s, ids = _data()
    s = np.round(s, 1)  # ties across clips and classes
    known = np.random.default_rng(3).random(y.shape) < 0.9
    for kwargs in ({}, {"known": known}):
        calls.clear()
        r = evaluate(y_true=y, y_score=s, clip_ids=ids, **kwargs)
        r.to_frame()
        r.with_context(priors="evaluated").to_frame()
        assert r.metrics.mean_ap > 0 and calls == []  # nothing asked for the micro AP yet
        want = micro_average_precision(y_true=y, y_score=s, **kwargs)
        assert r.micro_ap == want and calls == [1]
        assert r.summary()["micro_ap"] == want and calls == [1]  # kept, not recomputed
        assert json.loads(r.to_json())["summary"]["micro_ap"] == want
        assert "| micro AP (all pairs pooled) |" in r.to_markdown()
        assert r.with_context(priors="evaluated").micro_ap == want and calls == [1]
