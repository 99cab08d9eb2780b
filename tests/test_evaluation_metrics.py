"""Evaluation metrics against scikit-learn, hand-computed cases, bootstrap and pooling."""

from __future__ import annotations

import warnings
from fractions import Fraction

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.special import ndtri

from audioset_data.errors import AudioSetError, EvaluationError
from audioset_data.evaluation import (
    BootstrapResult,
    ClassMetrics,
    bootstrap_map,
    class_metrics,
    dprime,
    frames_to_clips,
    micro_average_precision,
)

skm = pytest.importorskip("sklearn.metrics")


def _data(seed: int, n: int = 400, c: int = 30, decimals: int | None = None):
    rng = np.random.default_rng(seed)
    y = rng.random((n, c)) < rng.uniform(0.02, 0.4, size=c)
    y[0, :] = True  # every class defined
    y[1, :] = False
    s = rng.normal(size=(n, c)) + 1.5 * y
    if decimals is not None:
        s = np.round(1.0 / (1.0 + np.exp(-s)), decimals)
    return y, s


def _sk_per_class(y, s, known=None):
    ap, auc = [], []
    for j in range(y.shape[1]):
        m = slice(None) if known is None else known[:, j]
        ap.append(skm.average_precision_score(y[m, j], s[m, j]))
        auc.append(skm.roc_auc_score(y[m, j], s[m, j]))
    return np.array(ap), np.array(auc)


def _eer_brute(y, s):
    """DET points at every distinct threshold, highest first; first smallest |FPR - FNR|."""
    pos, neg = s[y], s[~y]
    p, n = len(pos), len(neg)
    best = None
    for t in np.unique(s)[::-1]:
        fp = int(np.sum(neg >= t))
        fn = int(np.sum(pos < t))
        gap = Fraction(abs(fp * p - fn * n), n * p)
        if best is None or gap < best[0]:
            best = (gap, (fp / n + fn / p) / 2)
    return best[1]


@pytest.mark.parametrize("decimals", [None, 2, 1])
@pytest.mark.parametrize("seed", [0, 1])
def test_matches_sklearn(seed, decimals):
    y, s = _data(seed, decimals=decimals)
    m = class_metrics(y, s)
    ap, auc = _sk_per_class(y, s)
    np.testing.assert_allclose(m.ap, ap, rtol=0, atol=1e-9)
    np.testing.assert_allclose(m.auc, auc, rtol=0, atol=1e-9)
    np.testing.assert_allclose(m.dprime, np.sqrt(2) * ndtri(auc), rtol=0, atol=1e-9)
    assert m.mean_ap == pytest.approx(ap.mean(), abs=1e-12)
    assert m.mean_auc == pytest.approx(auc.mean(), abs=1e-12)
    assert m.dprime_of_mean_auc == pytest.approx(np.sqrt(2) * ndtri(auc.mean()), abs=1e-12)
    assert m.n_undefined == 0
    np.testing.assert_array_equal(m.n_pos, y.sum(axis=0))
    np.testing.assert_array_equal(m.n_neg, (~y).sum(axis=0))


@pytest.mark.parametrize("decimals", [None, 1])
def test_eer_matches_brute_force(decimals):
    y, s = _data(3, n=200, c=12, decimals=decimals)
    m = class_metrics(y, s)
    expected = [_eer_brute(y[:, j], s[:, j]) for j in range(y.shape[1])]
    np.testing.assert_allclose(m.eer, expected, rtol=0, atol=1e-12)


def test_sparse_and_integer_targets():
    y, s = _data(4, decimals=2)
    dense = class_metrics(y, s)
    for t in (sp.csr_array(y), sp.csc_matrix(y), y.astype(np.int8)):
        m = class_metrics(t, s)
        np.testing.assert_array_equal(m.ap, dense.ap)
        np.testing.assert_array_equal(m.auc, dense.auc)


@pytest.mark.parametrize("decimals", [None, 1])
def test_known_mask_equals_sklearn_on_known_subset(decimals):
    y, s = _data(5, decimals=decimals)
    rng = np.random.default_rng(9)
    known = rng.random(y.shape) < 0.6
    known[:2, :] = True
    m = class_metrics(y, s, known=known)
    ap, auc = _sk_per_class(y, s, known)
    np.testing.assert_allclose(m.ap, ap, rtol=0, atol=1e-9)
    np.testing.assert_allclose(m.auc, auc, rtol=0, atol=1e-9)
    np.testing.assert_array_equal(m.n_pos, (y & known).sum(axis=0))
    np.testing.assert_array_equal(m.n_neg, (~y & known).sum(axis=0))
    # unknown pairs are not negatives: the sparse mask gives the same
    m2 = class_metrics(y, s, known=sp.csr_array(known))
    np.testing.assert_array_equal(m2.ap, m.ap)
    expected = [_eer_brute(y[known[:, j], j], s[known[:, j], j]) for j in range(y.shape[1])]
    np.testing.assert_allclose(m.eer, expected, rtol=0, atol=1e-12)


def test_micro_average_precision():
    y, s = _data(6, decimals=2)
    assert micro_average_precision(y, s) == pytest.approx(
        skm.average_precision_score(y.ravel(), s.ravel()), abs=1e-9)
    known = np.random.default_rng(1).random(y.shape) < 0.5
    assert micro_average_precision(y, s, known=known) == pytest.approx(
        skm.average_precision_score(y[known], s[known]), abs=1e-9)
    assert np.isnan(micro_average_precision(np.zeros((3, 2), bool), np.ones((3, 2))))


def test_hand_computed_small_case():
    # class 0: scores 0.9(+) 0.4(-) 0.3(+) -> AP = (1/1 + 2/3) / 2, AUC = 1/2
    # class 1: scores 0.8(-) 0.2(+) 0.1(-) -> AP = 1/2, AUC = 1/2
    y = np.array([[1, 0], [0, 1], [1, 0]], dtype=bool)
    s = np.array([[0.9, 0.2], [0.4, 0.1], [0.3, 0.8]])
    y[:, 1] = [False, True, False]
    s[:, 1] = [0.8, 0.2, 0.1]
    m = class_metrics(y, s)
    np.testing.assert_allclose(m.ap, [(1 + 2 / 3) / 2, 0.5])
    np.testing.assert_allclose(m.auc, [0.5, 0.5])
    np.testing.assert_allclose(m.dprime, [0.0, 0.0], atol=1e-15)
    # class 0 DET points (FPR, FNR): t=.9 (0, 1/2); t=.4 (1, 1/2); t=.3 (1, 0) -> gap 1/2
    # at .9 and .4: the first (highest threshold) wins, EER = (0 + 1/2) / 2
    # class 1: t=.8 (1/2, 1); t=.2 (1/2, 0); t=.1 (1, 0): gaps 1/2, 1/2, 1 -> (1/2 + 1) / 2
    np.testing.assert_allclose(m.eer, [0.25, 0.75])


def test_eer_matches_brute_force_small_tied_classes():
    rng = np.random.default_rng(21)
    for _ in range(150):
        n = int(rng.integers(2, 30))
        y = rng.random((n, 4)) < rng.random()
        s = np.round(rng.random((n, 4)), int(rng.integers(0, 3)))
        m = class_metrics(y, s)
        for j in np.flatnonzero(m.defined):
            assert m.eer[j] == pytest.approx(_eer_brute(y[:, j], s[:, j]), abs=1e-12)


def test_eer_perfect_and_inverted():
    y = np.array([[1], [1], [0], [0]], dtype=bool)
    m = class_metrics(y, np.array([[0.9], [0.8], [0.2], [0.1]]))
    assert m.eer[0] == 0.0 and m.auc[0] == 1.0 and m.ap[0] == 1.0
    # 2 positives, 2 negatives: the AUC is kept half a pair (1/8) from 1 for the d-prime
    assert m.dprime[0] == pytest.approx(np.sqrt(2) * ndtri(1 - 1 / 8))
    m = class_metrics(y, np.array([[0.1], [0.2], [0.8], [0.9]]))
    assert m.eer[0] == 1.0 and m.auc[0] == 0.0
    assert m.dprime[0] == pytest.approx(-np.sqrt(2) * ndtri(1 - 1 / 8))
    # all tied: one DET point (1, 0), AUC 1/2, AP = prior
    m = class_metrics(y, np.full((4, 1), 0.5))
    assert m.auc[0] == 0.5 and m.ap[0] == 0.5 and m.eer[0] == 0.5


def test_dprime_values():
    np.testing.assert_allclose(dprime([0.5, 0.75, 0.9]),
                               [0.0, np.sqrt(2) * 0.6744897501960817,
                                np.sqrt(2) * 1.2815515655446004])
    assert dprime(1.0) == np.inf
    assert np.isnan(dprime(np.nan))


def test_perfect_and_inverted_classes_give_a_finite_mean_dprime_without_warnings():
    """Issue 20: a small evaluation set with one perfectly ranked and one inverted class made
    the mean of the per-class d-primes inf - inf: NaN, shown as None, with NumPy's
    "RuntimeWarning: invalid value encountered in reduce" on every train and evaluate."""
    y = np.array([[1, 0, 1], [0, 1, 0], [1, 0, 0], [0, 1, 1]], dtype=bool)
    s = np.array([[0.9, 0.9, 0.5], [0.1, 0.1, 0.2], [0.8, 0.8, 0.1], [0.2, 0.2, 0.15]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = class_metrics(y, s)
        assert m.auc.tolist() == [1.0, 0.0, 0.75]
        assert np.isfinite(m.dprime).all() and np.isfinite(m.mean_dprime)
        assert m.dprime[0] == pytest.approx(-m.dprime[1])
        assert m.mean_dprime == pytest.approx(np.mean(m.dprime))


def test_undefined_classes_are_nan_counted_and_excluded():
    y, s = _data(7, n=100, c=6)
    y[:, 2] = False  # no positive
    y[:, 4] = True  # no negative
    m = class_metrics(y, s)
    for arr in (m.ap, m.auc, m.dprime, m.eer):
        assert np.isnan(arr[[2, 4]]).all()
        assert np.isfinite(arr[[0, 1, 3, 5]]).all()
    np.testing.assert_array_equal(m.defined, [True, True, False, True, False, True])
    assert m.n_undefined == 2
    keep = [0, 1, 3, 5]
    assert m.mean_ap == pytest.approx(np.mean(m.ap[keep]))
    assert m.mean_auc == pytest.approx(np.mean(m.auc[keep]))
    assert m.mean_dprime == pytest.approx(np.mean(m.dprime[keep]))
    assert m.n_pos[2] == 0 and m.n_neg[4] == 0
    # prior-weighted: undefined classes get no weight
    prior = np.arange(1.0, 7.0)
    assert m.weighted_ap(prior) == pytest.approx(
        np.dot(m.ap[keep], prior[keep]) / prior[keep].sum())
    assert m.weighted_ap() == pytest.approx(
        np.dot(m.ap[keep], m.n_pos[keep]) / m.n_pos[keep].sum())
    assert set(m.summary()) >= {"mean_ap", "mean_auc", "dprime_of_mean_auc", "n_undefined"}
    with pytest.raises(EvaluationError):
        m.weighted_ap(prior[:3])
    # all undefined: averages are NaN without warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        none = class_metrics(np.zeros((4, 2), bool), np.ones((4, 2)))
    assert none.n_undefined == 2 and np.isnan(none.mean_ap) and np.isnan(none.mean_auc)


def test_result_types():
    y, s = _data(8, n=50, c=4)
    m = class_metrics(y, s)
    assert isinstance(m, ClassMetrics)
    for arr in (m.ap, m.auc, m.dprime, m.eer):
        assert arr.dtype == np.float64 and arr.shape == (4,)
    assert m.n_pos.dtype == np.int64 and m.n_neg.dtype == np.int64
    assert m.defined.dtype == np.bool_


def test_many_columns_span_several_blocks(monkeypatch):
    from audioset_data.evaluation import metrics as metrics_mod

    monkeypatch.setattr(metrics_mod, "_BLOCK_ELEMENTS", 1000)  # 2 columns per block
    y, s = _data(10, n=400, c=7, decimals=1)
    m = class_metrics(y, s)
    ap, auc = _sk_per_class(y, s)
    np.testing.assert_allclose(m.ap, ap, rtol=0, atol=1e-9)
    np.testing.assert_allclose(m.auc, auc, rtol=0, atol=1e-9)


# --- bootstrap ------------------------------------------------------------------------------


def test_bootstrap_reproducible_per_seed():
    y, s = _data(11, n=200, c=10, decimals=2)
    a = bootstrap_map(y, s, n_resamples=80, seed=5)
    b = bootstrap_map(y, s, n_resamples=80, seed=5)
    c = bootstrap_map(y, s, n_resamples=80, seed=6)
    assert isinstance(a, BootstrapResult)
    np.testing.assert_array_equal(a.samples, b.samples)
    assert (a.low, a.high) == (b.low, b.high)
    assert not np.array_equal(a.samples, c.samples)
    assert a.samples.shape == (80,)
    # the first resamples do not depend on how many are asked for
    np.testing.assert_array_equal(bootstrap_map(y, s, n_resamples=30, seed=5).samples,
                                  a.samples[:30])


@pytest.mark.parametrize("with_known", [False, True])
def test_bootstrap_samples_equal_metrics_of_resampled_clips(with_known):
    from audioset_data.evaluation import bootstrap as boot

    y, s = _data(12, n=120, c=8, decimals=1)
    known = np.random.default_rng(2).random(y.shape) < 0.7 if with_known else None
    res = bootstrap_map(y, s, n_resamples=7, seed=3, known=known)
    draws = np.random.default_rng(3).integers(0, 120, size=(boot._CHUNK, 120))[:7]
    for i, rows in enumerate(draws):
        kr = None if known is None else known[rows]
        assert res.samples[i] == pytest.approx(
            class_metrics(y[rows], s[rows], known=kr).mean_ap, abs=1e-12)


def test_bootstrap_interval_contains_estimate_on_easy_data():
    rng = np.random.default_rng(13)
    y = rng.random((500, 20)) < 0.2
    s = 2.0 * y + rng.normal(size=y.shape)
    res = bootstrap_map(y, s, n_resamples=200, seed=0, confidence=0.9)
    assert res.estimate == pytest.approx(class_metrics(y, s).mean_ap)
    assert res.low < res.estimate < res.high
    assert 0 < res.high - res.low < 0.2
    assert res.std > 0
    assert res.bias == pytest.approx(np.mean(res.samples) - res.estimate)


def test_bootstrap_skips_classes_undefined_in_a_resample():
    y = np.zeros((30, 2), dtype=bool)
    y[0, 0] = True  # one positive: missing from many resamples
    y[::2, 1] = True
    s = np.linspace(0, 1, 60).reshape(30, 2)
    res = bootstrap_map(y, s, n_resamples=50, seed=1)
    assert np.isfinite(res.samples).all()


def test_bootstrap_bad_arguments():
    y, s = _data(14, n=20, c=3)
    with pytest.raises(EvaluationError):
        bootstrap_map(y, s, n_resamples=0)
    with pytest.raises(EvaluationError):
        bootstrap_map(y, s, confidence=1.5)
    with pytest.raises(EvaluationError):
        bootstrap_map(y, s[:5])


# --- frame pooling --------------------------------------------------------------------------


def test_frames_to_clips_non_contiguous():
    scores = np.array([[0.2, 0.0],   # b
                       [0.6, 0.0],   # a
                       [0.4, 0.0],   # b
                       [0.2, 0.0],   # a
                       [1.0, 0.5]])  # c
    ids = np.array(["b", "a", "b", "a", "c"])
    clips, mean = frames_to_clips(scores, ids, method="mean")
    assert clips.tolist() == ["b", "a", "c"]
    np.testing.assert_allclose(mean, [[0.3, 0.0], [0.4, 0.0], [1.0, 0.5]])
    _, mx = frames_to_clips(scores, ids, method="max")
    np.testing.assert_allclose(mx, [[0.4, 0.0], [0.6, 0.0], [1.0, 0.5]])
    _, ls = frames_to_clips(scores, ids, method="linear_softmax")
    # b: (0.04 + 0.16) / 0.6; a: (0.36 + 0.04) / 0.8; all-zero column -> 0
    np.testing.assert_allclose(ls, [[0.2 / 0.6, 0.0], [0.4 / 0.8, 0.0], [1.0, 0.5]])


def test_frames_to_clips_integer_ids_and_default():
    clips, pooled = frames_to_clips(np.arange(6.0).reshape(6, 1), [7, 3, 7, 3, 7, 3])
    assert clips.tolist() == [7, 3]
    np.testing.assert_allclose(pooled.ravel(), [2.0, 3.0])


@pytest.mark.parametrize("args", [
    (np.ones(4), ["a"] * 4, "mean"),  # 1-D scores
    (np.ones((4, 2)), ["a"] * 3, "mean"),  # length mismatch
    (np.full((2, 2), np.nan), ["a", "b"], "mean"),
    (np.ones((2, 2)), ["a", "b"], "median"),
    (-np.ones((2, 2)), ["a", "b"], "linear_softmax"),
    (np.ones((0, 2)), [], "mean"),
])
def test_frames_to_clips_bad_input(args):
    with pytest.raises(EvaluationError):
        frames_to_clips(*args)


# --- bad input ------------------------------------------------------------------------------


@pytest.mark.parametrize("case", [
    "shape", "one_d", "nan", "inf", "float_targets", "not_01", "known_shape", "empty",
    "string_scores",
])
def test_bad_inputs_raise_evaluation_error(case):
    y, s = _data(15, n=10, c=3)
    kwargs = {}
    if case == "shape":
        s = s[:, :2]
    elif case == "one_d":
        y, s = y[:, 0], s[:, 0]
    elif case == "nan":
        s[3, 1] = np.nan
    elif case == "inf":
        s[0, 0] = np.inf
    elif case == "float_targets":
        y = y.astype(np.float64)
    elif case == "not_01":
        y = y.astype(np.int64) * 2
    elif case == "known_shape":
        kwargs["known"] = np.ones((10, 2), bool)
    elif case == "empty":
        y, s = y[:0], s[:0]
    elif case == "string_scores":
        s = s.astype(str)
    with pytest.raises(EvaluationError) as info:
        class_metrics(y, s, **kwargs)
    assert isinstance(info.value, AudioSetError) and isinstance(info.value, ValueError)
    with pytest.raises(EvaluationError):
        micro_average_precision(y, s, **kwargs)


# --- real labels, and the library stays free of scikit-learn ---------------------------------


def test_real_eval_labels_match_sklearn(eval_seg):
    targets = eval_seg.label_matrix[:, :60]
    rng = np.random.default_rng(0)
    y = targets.toarray()
    scores = (1.5 * y + rng.normal(size=y.shape)).astype(np.float32)
    m = class_metrics(targets, scores)
    ap, auc = _sk_per_class(y, scores.astype(np.float64))
    np.testing.assert_allclose(m.ap, ap, rtol=0, atol=1e-9)
    np.testing.assert_allclose(m.auc, auc, rtol=0, atol=1e-9)
    np.testing.assert_array_equal(m.n_pos, y.sum(axis=0))


def test_library_does_not_import_sklearn():
    import subprocess
    import sys

    code = ("import sys, audioset_data.evaluation.metrics, audioset_data.evaluation.bootstrap, "
            "audioset_data.evaluation.aggregate; "
            "sys.exit(any(m.split('.')[0] in ('sklearn', 'torch') for m in sys.modules))")
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
