"""Class priors on the real lists and on the published per-class training counts."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from audioset_data.errors import SegmentsError
from audioset_data.segments.priors import ClassPriors

SPEECH, MUSIC, DOG, ANIMAL = "/m/09x0r", "/m/04rlf", "/m/0bt9lr", "/m/0jbk"


def test_eval_priors_figures(eval_seg, index):
    p = eval_seg.priors()
    assert p.n_clips == 20371 and p.n_labels == 51804
    assert p.priors[index.index(SPEECH)] == pytest.approx(5324 / 20371)
    assert p.mean_prior == pytest.approx(51804 / (20371 * 527))
    assert p.max_prior == pytest.approx(p.counts.max() / 20371)
    assert p.min_prior == pytest.approx(p.counts.min() / 20371)
    assert p.imbalance_ratio == pytest.approx(p.counts.max() / p.counts.min())
    assert p.n_absent == 0 and p.propagated_priors is None
    frame = p.to_frame()
    assert list(frame.columns) == ["index", "mid", "name", "count", "prior"]
    assert frame["mid"].iloc[0] == MUSIC and frame["name"].iloc[0] == "Music"
    assert (np.diff(frame["prior"].to_numpy()) <= 0).all()
    assert p.summary()["labels_per_clip"] == pytest.approx(51804 / 20371)


def test_propagated_priors(eval_seg, ontology, index):
    p = ClassPriors.from_segments(eval_seg, ontology=ontology)
    animal = index.index(ANIMAL)
    rows_with_animal_subtree = eval_seg.any_of(ANIMAL, ontology=ontology, subtree=True)
    assert p.propagated_counts[animal] == len(rows_with_animal_subtree)
    assert (p.propagated_counts >= p.counts).all()
    leaf = next(m for m in index.mids if not ontology.descendants(m))
    assert p.propagated_counts[index.index(leaf)] == p.counts[index.index(leaf)]
    assert p.propagated_counts[index.index(DOG)] > p.counts[index.index(DOG)]  # Bark, Howl...
    frame = p.to_frame()
    assert {"propagated_count", "propagated_prior"} <= set(frame.columns)


def test_from_counts_csv_of_training_crawl(shared_data, index):
    path = shared_data / "segments" / "train_class_counts_panns.csv"
    p = ClassPriors.from_counts_csv(path, n_clips=2_063_839, label_index=index)
    assert p.n_labels == 3_826_593
    assert p.counts[index.index(SPEECH)] == 937_432
    assert p.priors[index.index(SPEECH)] == pytest.approx(937_432 / 2_063_839)
    raw = pd.read_csv(path)["count"]
    assert p.imbalance_ratio == pytest.approx(raw.max() / raw.min())
    assert p.imbalance_ratio > 1000  # the full crawl is far more skewed than eval


def test_from_counts_mapping_and_validation(index):
    p = ClassPriors.from_counts({SPEECH: 10, MUSIC: 5}, 20, index)
    assert p.counts.sum() == 15 and p.n_absent == 525
    assert p.min_prior == 0 and p.imbalance_ratio == 2
    with pytest.raises(SegmentsError, match="not one of the labels"):
        ClassPriors.from_counts({"/m/nope": 1}, 20, index)
    with pytest.raises(SegmentsError, match="entries"):
        ClassPriors([1, 2], 10, index)
    with pytest.raises(SegmentsError, match="0..n_clips"):
        ClassPriors.from_counts({SPEECH: 30}, 20, index)
    with pytest.raises(SegmentsError, match="positive"):
        ClassPriors(np.zeros(527), 0, index)


def test_from_counts_csv_errors(tmp_path, index):
    bad = tmp_path / "c.csv"
    bad.write_text("mid,count\n/m/09x0r,many\n")
    with pytest.raises(SegmentsError, match="c.csv:2: count is not a number"):
        ClassPriors.from_counts_csv(bad, 10, index)
    bad.write_text("mid,n\n/m/09x0r,1\n")
    with pytest.raises(SegmentsError, match="lacks the columns"):
        ClassPriors.from_counts_csv(bad, 10, index)
    with pytest.raises(SegmentsError, match="does not exist"):
        ClassPriors.from_counts_csv(tmp_path / "none.csv", 10, index)


def test_plot_writes_png(eval_seg, ontology, tmp_path):
    out = ClassPriors.from_segments(eval_seg, ontology).plot(tmp_path / "sub" / "p.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert out.stat().st_size > 10_000
