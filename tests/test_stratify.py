"""Stratified train/validation splits on the real balanced list: every class keeps its share."""

from __future__ import annotations

import doctest
import time

import numpy as np
import pytest
import scipy.sparse as sp

import audioset_data.segments.stratify as stratify_module
from audioset_data.errors import ConfigError
from audioset_data.segments.stratify import split_segments, stratified_split
from audioset_data.segments.table import Segments

#: Largest |clips of a class in the 10 % part − 0.1 × its clips| allowed, for rare classes
#: (under 100 clips, which is 474 of the 527 in the balanced list) and for all classes.
RARE_TOLERANCE = 2.0
ALL_TOLERANCE = 6.0


@pytest.fixture(scope="module")
def balanced(shared_data, label_index) -> Segments:
    return Segments.from_file(shared_data / "segments" / "balanced_train_segments.csv",
                              label_index=label_index)


def _deviation(y, part, fraction):
    counts = np.asarray(y.sum(axis=0)).ravel()
    got = np.asarray(y[np.sort(part)].sum(axis=0)).ravel()
    return np.abs(got - fraction * counts), counts


def test_balanced_list_every_class_keeps_its_share_where_a_random_split_does_not(balanced):
    y = balanced.label_matrix
    n = y.shape[0]
    start = time.perf_counter()
    train, val = stratified_split(y, (0.9, 0.1), seed=0)
    took = time.perf_counter() - start
    assert took < 5, f"{took:.1f} s for {n} clips"
    assert len(np.intersect1d(train, val)) == 0
    assert np.array_equal(np.sort(np.concatenate([train, val])), np.arange(n))
    assert abs(len(val) - 0.1 * n) <= 0.01 * n
    dev, counts = _deviation(y, val, 0.1)
    rare = counts < 100
    assert rare.sum() > 400  # the property shows on many rare classes
    assert dev[rare].max() <= RARE_TOLERANCE
    assert dev.max() <= ALL_TOLERANCE
    # the same sizes drawn at random miss rare classes by far more
    rng = np.random.default_rng(0)
    random_val = rng.permutation(n)[: len(val)]
    random_dev, _ = _deviation(y, random_val, 0.1)
    assert random_dev[rare].max() > 2 * RARE_TOLERANCE
    assert random_dev[rare].mean() > 4 * dev[rare].mean()


def test_deterministic_per_seed_and_different_across_seeds(balanced):
    y = balanced.label_matrix[:4000]
    a = stratified_split(y, (0.8, 0.2), seed=3)
    b = stratified_split(y, (0.8, 0.2), seed=3)
    c = stratified_split(y, (0.8, 0.2), seed=4)
    assert all(np.array_equal(p, q) for p, q in zip(a, b, strict=True))
    assert not np.array_equal(a[1], c[1])


def test_three_parts_dense_input_and_clips_without_labels():
    rng = np.random.default_rng(1)
    y = np.zeros((600, 6), dtype=np.int8)
    y[:, 0] = rng.random(600) < 0.5  # frequent
    y[:30, 1] = 1  # rare, all at the top: a split by position would miss it
    y[::40, 2] = 1
    y[500:, :] = 0  # 100 clips without labels
    parts = stratified_split(y, (0.5, 0.3, 0.2), seed=0)
    assert sorted(np.concatenate(parts).tolist()) == list(range(600))
    for part, f in zip(parts, (0.5, 0.3, 0.2), strict=True):
        assert abs(len(part) - f * 600) <= 3
        for label in (1, 2):
            assert abs(y[part, label].sum() - f * y[:, label].sum()) <= 1
        assert abs((y[part].sum(axis=1) == 0).sum() - f * (y.sum(axis=1) == 0).sum()) <= 3
    # the same matrix as CSR (with a non-1 weight) gives the same parts
    weighted = sp.csr_array(y * 3)
    same = stratified_split(weighted, (0.5, 0.3, 0.2), seed=0)
    assert all(np.array_equal(p, q) for p, q in zip(parts, same, strict=True))


def test_split_segments_returns_segments_in_list_order(balanced):
    part = balanced[:3000]
    train, val = split_segments(part, 0.2, seed=0)
    assert len(train) + len(val) == 3000
    assert abs(len(val) - 600) <= 30
    keys = set(zip(part.ytids, part.start, strict=True))
    got_train = list(zip(train.ytids, train.start, strict=True))
    got_val = list(zip(val.ytids, val.start, strict=True))
    assert set(got_train) | set(got_val) == keys and not set(got_train) & set(got_val)
    order = {k: i for i, k in enumerate(zip(part.ytids, part.start, strict=True))}
    assert [order[k] for k in got_val] == sorted(order[k] for k in got_val)
    assert val.label_matrix.shape[1] == part.label_matrix.shape[1]


@pytest.mark.parametrize("fractions", [(0.9,), (0.5, 0.6), (1.0, 0.0), (0.5, float("nan"))])
def test_bad_fractions_are_refused(fractions):
    with pytest.raises(ConfigError, match="fractions"):
        stratified_split(np.ones((4, 2)), fractions)


def test_bad_inputs_are_refused(balanced):
    with pytest.raises(ConfigError, match="matrix"):
        stratified_split(np.ones(5))
    with pytest.raises(ConfigError, match="fraction=1.5"):
        split_segments(balanced[:10], 1.5)


def test_docstring_examples_run():
    result = doctest.testmod(stratify_module, optionflags=doctest.ELLIPSIS)
    assert result.attempted and not result.failed
