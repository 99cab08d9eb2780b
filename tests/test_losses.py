"""The prior-balanced loss: weights follow the formula, beta 0 is plain BCE, beta 1 balances the
positive mass of every class to the mean prior."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from audioset_data.errors import ConfigError
from audioset_data.loaders.losses import PriorBalancedBCE, positive_weights, prior_balanced_bce
from audioset_data.segments.priors import ClassPriors


@pytest.fixture(scope="module")
def real_priors(shared_data, label_index) -> ClassPriors:
    """Priors of the full training crawl: real per-class counts over about 1.93 M clips."""
    return ClassPriors.from_counts_csv(shared_data / "segments" / "train_class_counts_panns.csv",
                                       1_930_000, label_index)


def _skewed_targets(n: int = 4000, c: int = 6, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    priors = np.array([0.6, 0.2, 0.05, 0.02, 0.005, 0.0025])[:c]
    return rng.random((n, c)) < priors


def test_weights_follow_the_formula_on_the_real_priors(real_priors):
    for beta in (0.0, 0.1, 0.25, 1.0):
        w = positive_weights(real_priors, beta)
        p = real_priors.priors
        assert w.shape == (527,)
        np.testing.assert_allclose(w, (p.mean() / p) ** beta, rtol=1e-12)
    # the mean prior of AudioSet is about 0.003-0.004: rare classes get weights in the hundreds
    assert 0.002 < real_priors.mean_prior < 0.005
    w1 = positive_weights(real_priors, 1.0)
    assert w1[real_priors.priors.argmax()] < 0.01 and w1.max() > 100
    assert positive_weights(real_priors, 1.0, max_weight=50).max() == 50


def test_beta_zero_is_plain_bce():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(32, 6, generator=g)
    y = torch.from_numpy(_skewed_targets(32)).float()
    p = _skewed_targets().mean(0)
    loss = PriorBalancedBCE.from_priors(p, beta=0.0)(logits, y)
    ref = torch.nn.BCEWithLogitsLoss()(logits, y)
    assert torch.equal(loss, ref)


def test_positive_term_weighted_negatives_not():
    y_np = _skewed_targets()
    p = y_np.mean(0)
    y = torch.from_numpy(y_np).double()
    logits = torch.randn(y.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    w = positive_weights(p, 0.5)
    loss = prior_balanced_bce(logits, y, torch.from_numpy(w), reduction="none")
    sig = torch.sigmoid(logits).numpy()
    manual = -(w * y_np * np.log(sig) + (1 - y_np) * np.log(1 - sig))
    np.testing.assert_allclose(loss.numpy(), manual, rtol=1e-9)


def test_beta_one_gives_every_class_the_positive_mass_of_the_mean_prior():
    y_np = _skewed_targets()
    p = y_np.mean(0)
    w = positive_weights(p, 1.0)
    mass = y_np.sum(0) * w  # total positive weight per class over the set
    np.testing.assert_allclose(mass, len(y_np) * p.mean(), rtol=1e-9)
    # with beta 0 the commonest class has over 100x the rarest's positive mass
    assert y_np.sum(0).max() / y_np.sum(0).min() > 100


def test_mask_keeps_only_known_entries():
    logits = torch.randn(4, 10, 3, generator=torch.Generator().manual_seed(2))
    y = (torch.rand(4, 10, 3, generator=torch.Generator().manual_seed(3)) > 0.7).float()
    mask = torch.zeros(4, 10, 1, dtype=torch.bool)
    mask[1, :5] = True
    loss = prior_balanced_bce(logits, y, mask=mask)
    ref = torch.nn.functional.binary_cross_entropy_with_logits(logits[1, :5], y[1, :5])
    torch.testing.assert_close(loss, ref)
    # garbage in the unknown entries changes nothing
    y2 = y.clone()
    y2[0] = 1 - y2[0]
    torch.testing.assert_close(prior_balanced_bce(logits, y2, mask=mask), loss)


def test_module_moves_and_saves_its_weights(tmp_path):
    loss = PriorBalancedBCE.from_priors([0.5, 0.1, 0.01], beta=1.0)
    assert "pos_weight" in loss.state_dict()
    torch.save(loss.state_dict(), tmp_path / "w.pt")
    again = PriorBalancedBCE([1.0, 1.0, 1.0])
    again.load_state_dict(torch.load(tmp_path / "w.pt", weights_only=True))
    assert torch.equal(again.pos_weight, loss.pos_weight)
    assert loss.double().pos_weight.dtype == torch.float64


@pytest.mark.parametrize("call, match", [
    (lambda: positive_weights([0.1, 0.2], beta=-1), "beta"),
    (lambda: positive_weights([0.0, 0.0], beta=1), "all zero"),
    (lambda: positive_weights([0.1, 1.5]), "fractions"),
    (lambda: PriorBalancedBCE([1.0, 2.0])(torch.zeros(2, 3), torch.zeros(2, 3)), "classes"),
    (lambda: prior_balanced_bce(torch.zeros(2, 3), torch.zeros(3, 2)), "shape"),
    (lambda: PriorBalancedBCE([1.0, -2.0]), "non-negative"),
])
def test_bad_input_is_named(call, match):
    with pytest.raises(ConfigError, match=match):
        call()
