"""Baseline models: shapes, embeddings, gradients, memory format, bf16 autocast, registry."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from audioset_data.baselines.cnn14 import Cnn14
from audioset_data.baselines.fc import FullyConnected
from audioset_data.baselines.models import MODELS, build_model, clip_logits
from audioset_data.baselines.resnet import ResNet50
from audioset_data.errors import ConfigError
from audioset_data.evaluation.aggregate import frames_to_clips

SHORT_FRAMES = 64  # the shortest input CNN14's five 2x2 poolings keep two time cells of


@pytest.fixture(scope="module")
def models() -> dict[str, torch.nn.Module]:
    torch.manual_seed(0)
    return {name: build_model(name) for name in MODELS}


def _input(name: str, batch: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    frames = SHORT_FRAMES if name == "cnn14" else 96
    # log-mel-like values: around -5 with structure along time (clicks) and frequency
    x = torch.randn(batch, frames, 64, generator=g) - 5.0
    x[:, ::16, :] += 6.0
    return x


def _first_weight(model: torch.nn.Module) -> torch.Tensor:
    return next(p for p in model.parameters() if p.dim() >= 2)


@pytest.mark.parametrize("name", ["fc", "resnet50", "cnn14"])
def test_forward_backward_shapes_and_gradient_reaches_first_layer(models, name):
    model = models[name].train()
    model.zero_grad(set_to_none=True)
    x = _input(name, batch=2)
    logits = model(x)
    assert logits.shape == (2, 527)
    assert logits.dtype == torch.float32
    target = torch.zeros_like(logits)
    target[:, 3] = 1
    torch.nn.functional.binary_cross_entropy_with_logits(logits, target).backward()
    grad = _first_weight(model).grad
    assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0
    model.eval()
    with torch.no_grad():
        emb = model.embedding(x)
    assert emb.shape == (2, model.embedding_dim)
    assert model.embedding_dim == {"fc": 1000, "resnet50": 2048, "cnn14": 2048}[name]


@pytest.mark.parametrize("name", ["fc", "resnet50", "cnn14"])
def test_embedding_is_what_the_head_reads(models, name):
    model = models[name].eval()
    x = _input(name, batch=2, seed=1)
    head = {"fc": "head", "resnet50": "fc", "cnn14": "fc_audioset"}[name]
    with torch.no_grad():
        torch.testing.assert_close(getattr(model, head)(model.embedding(x)), model(x))


def test_registry_frontends_and_input_shapes(models):
    assert {n: m.frontend for n, m in models.items()} == {
        "fc": "vggish", "resnet50": "vggish", "cnn14": "panns",
        "embedding-fc": "embeddings", "embedding-attention": "embeddings"}
    assert models["fc"].input_shape == (None, 96, 64)
    assert models["resnet50"].input_shape == (None, 96, 64)
    assert models["cnn14"].input_shape == (None, None, 64)


def test_parameter_counts(models):
    count = {n: sum(p.numel() for p in m.parameters()) for n, m in models.items()}
    assert 79e6 < count["cnn14"] < 82e6  # PANNs reports 80.8M for CNN14
    assert 23e6 < count["resnet50"] < 25e6
    # 6144 -> 1000 -> 1000 -> 1000 (no bias under batch norm) -> 527, two BN parameters a unit
    assert count["fc"] == 6144 * 1000 + 2 * 1000 * 1000 + 3 * 2 * 1000 + 1000 * 527 + 527


def test_build_model_errors_name_the_known_models():
    with pytest.raises(ConfigError, match="'vgg'.*cnn14, embedding-attention, "
                                          "embedding-fc, fc, resnet50"):
        build_model("vgg")
    with pytest.raises(ConfigError, match="bad options"):
        build_model("resnet50", depth=101)
    with pytest.raises(ConfigError, match="dropout"):
        build_model("fc", dropout=1.5)
    model = build_model("fc", n_classes=10, hidden=(16, 8), norm="layer")
    assert model(torch.zeros(3, 96, 64)).shape == (3, 10) and model.embedding_dim == 8


@pytest.mark.parametrize("name, shape", [("fc", (2, 96, 63)), ("resnet50", (2, 64, 96)),
                                         ("cnn14", (2, 31, 64)), ("cnn14", (2, 100, 128))])
def test_wrong_input_shape_is_a_clear_error(models, name, shape):
    with pytest.raises(ConfigError, match=r"expects .*got \(2, "):
        models[name](torch.zeros(shape))


@pytest.mark.parametrize("name", ["fc", "resnet50", "cnn14"])
def test_channels_last_and_bf16_autocast(name):
    torch.manual_seed(1)
    model = build_model(name).eval()
    x = _input(name, batch=2, seed=2)
    with torch.no_grad():
        ref = model(x)
        model = model.to(memory_format=torch.channels_last)
        same = model(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model(x)
    torch.testing.assert_close(same, ref, rtol=1e-4, atol=1e-4)
    assert low.dtype == torch.bfloat16 and torch.isfinite(low.float()).all()
    # bf16 keeps ~3 significant digits: the logits agree to a few percent of their spread
    err = (low.float() - ref).abs().max() / ref.std()
    assert err < 0.1, float(err)


def test_bf16_channels_last_training_step_updates_weights():
    torch.manual_seed(2)
    model = build_model("resnet50").to(memory_format=torch.channels_last).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    before = model.conv1.weight.detach().clone()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(_input("resnet50", batch=2))
    loss = torch.nn.functional.binary_cross_entropy_with_logits(
        logits.float(), torch.ones(2, 527))
    loss.backward()
    opt.step()
    assert model.conv1.weight.dtype == torch.float32
    assert not torch.equal(before, model.conv1.weight)


def test_eval_is_deterministic_and_train_uses_dropout(models):
    torch.manual_seed(3)
    model = models["cnn14"]
    x = _input("cnn14", batch=2, seed=3)
    with torch.no_grad():
        model.train()
        a, b = model(x), model(x)
        model.eval()
        c, d = model(x), model(x)
    assert not torch.equal(a, b)  # dropout draws differ
    assert torch.equal(c, d)
    fc = build_model("fc", dropout=0.5).eval()
    with torch.no_grad():
        assert torch.equal(fc(_input("fc", 4)), fc(_input("fc", 4)))


def test_cnn14_normalises_each_mel_bin_on_its_own(models):
    # batch statistics of bn0 remove a constant offset of one bin (over the whole batch);
    # a norm over the wrong axis would let it through
    model = models["cnn14"].train()
    x = _input("cnn14", batch=2, seed=4)
    shifted = x.clone()
    shifted[:, :, 5] += 30.0
    with torch.no_grad():
        torch.manual_seed(5)
        a = model(x)
        torch.manual_seed(5)
        b = model(shifted)
        torch.manual_seed(5)
        other = x.clone()
        other[0, :, 5] += 30.0  # the same offset in one clip only is not a batch constant
        c = model(other)
    torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-3)
    assert not torch.allclose(a, c, rtol=1e-3, atol=1e-3)


def test_cnn14_takes_a_full_ten_second_clip_and_pools_over_time(models):
    model = models["cnn14"].eval()
    seen = {}
    hook = model.conv_block6.register_forward_hook(lambda m, i, o: seen.update(shape=o.shape))
    try:
        with torch.no_grad():
            logits = model(torch.randn(1, 1001, 64) - 5)
    finally:
        hook.remove()
    assert logits.shape == (1, 527)
    assert tuple(seen["shape"]) == (1, 2048, 1001 // 32, 64 // 32)


def test_resnet_stem_stride_keeps_a_poolable_last_stage():
    shapes = {}
    for stride in (1, 2):
        model = ResNet50(stem_stride=stride).eval()
        hook = model.layer4.register_forward_hook(
            lambda m, i, o, s=stride: shapes.update({s: tuple(o.shape[2:])}))
        with torch.no_grad():
            model(torch.zeros(1, 96, 64))
        hook.remove()
    assert shapes == {1: (6, 4), 2: (3, 2)}


def test_clip_logits_pools_examples_per_clip():
    torch.manual_seed(6)
    model = FullyConnected(n_classes=7, hidden=(32,), dropout=0.5).eval()
    examples = _input("fc", batch=6, seed=6)
    clip_index = torch.tensor([2, 0, 0, 1, 2, 2])
    with torch.no_grad():
        frames = model(examples)
        mean = clip_logits(model, examples, clip_index, 3, pool="mean")
        mx = clip_logits(model, examples, clip_index, 3, pool="max", batch_size=4)
    torch.testing.assert_close(mean[0], frames[1:3].mean(0))
    torch.testing.assert_close(mean[2], frames[[0, 4, 5]].mean(0))
    torch.testing.assert_close(mean[1], frames[3])
    ids, ref = frames_to_clips(frames.numpy(), clip_index.numpy(), method="max")
    order = np.argsort(ids)
    # float32 GEMMs of 4 and of 6 rows round differently: a few 1e-7 apart
    np.testing.assert_allclose(mx.numpy(), ref[order], rtol=1e-5, atol=1e-6)
    with pytest.raises(ConfigError, match="no examples"):
        clip_logits(model, examples, clip_index, 4)
    with pytest.raises(ConfigError, match="pooling"):
        clip_logits(model, examples, clip_index, 3, pool="attention")


def test_clip_logits_passes_gradients():
    model = FullyConnected(n_classes=3, hidden=(8,))
    out = clip_logits(model, _input("fc", 4), torch.tensor([0, 1, 1, 0]), 2, pool="max")
    out.sum().backward()
    assert model.head.weight.grad is not None and model.head.weight.grad.abs().sum() > 0


def test_cnn14_is_exported_under_its_registry_name():
    assert MODELS["cnn14"] is Cnn14 and MODELS["fc"] is FullyConnected


@pytest.mark.parametrize("pooling", ["decision", "feature"])
def test_embedding_attention_logits_stay_finite_under_bf16_for_certain_clips(pooling):
    """Under bf16 autocast 1 - 1e-7 rounds to 1: the pooling and the logit must run in float32,
    or a clip the model is sure of gets an infinite logit and a NaN loss."""
    from audioset_data.baselines.embedding import EmbeddingAttention

    torch.manual_seed(0)
    model = EmbeddingAttention(n_classes=5, hidden=(16,), pooling=pooling).eval()
    with torch.no_grad():
        head = model.cla if pooling == "decision" else model.head
        head.bias.fill_(40.0)  # sigmoid(40) is 1 in bf16 and float32 alike
    x = torch.randn(4, 10, 128)
    mask = torch.ones(4, 10, dtype=torch.bool)
    mask[1, 3:] = False
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(x, mask)
    assert logits.dtype == torch.float32 and torch.isfinite(logits).all()
    loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, torch.zeros(4, 5))
    assert torch.isfinite(loss)


def test_auto_precision_uses_bf16_on_cpu_only_for_models_that_declare_it(monkeypatch):
    from audioset_data.baselines import models

    cpu = torch.device("cpu")
    monkeypatch.setattr(models, "native_cpu_bf16", lambda: True)
    assert models.trains_in_bf16("embedding-attention", "auto", cpu)
    assert not models.trains_in_bf16("fc", "auto", cpu)
    assert not models.trains_in_bf16("embedding-attention", "fp32", cpu)
    assert models.trains_in_bf16("fc", "bf16", cpu)
    monkeypatch.setattr(models, "native_cpu_bf16", lambda: False)
    assert not models.trains_in_bf16("embedding-attention", "auto", cpu)


@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
def test_byte_dropout_keeps_one_minus_p_and_preserves_the_mean(p):
    """Many random draws: the kept share is 1 - p (on the 1/256 grid), the kept values are
    scaled so the mean is preserved, gradients flow only through kept elements, eval is the
    identity, and two draws differ."""
    from audioset_data.baselines.embedding import ByteDropout

    torch.manual_seed(0)
    drop = ByteDropout(p)
    x = torch.full((400, 512), 3.0, requires_grad=True)
    y = drop(x)
    kept = y != 0
    q = round(256 * p) / 256
    assert abs(kept.float().mean().item() - (1 - q)) < 0.005
    assert torch.allclose(y[kept], torch.tensor(3.0 / (1 - q)))
    assert abs(y.mean().item() - 3.0) < 0.05
    y.sum().backward()
    assert torch.equal(x.grad != 0, kept)
    assert not torch.equal(drop(x) != 0, kept)
    drop.eval()
    assert drop(x) is x
    with pytest.raises(ConfigError):
        ByteDropout(1.0)
