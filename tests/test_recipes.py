"""Recipes and defaults that learn: named recipes stay faithful to their sources and the
benchmark names them, the logged loss says how the present classes fare, the bare smoke runs
on the demo, the schedule scales with the data, and the fc's defaults beat the old ones."""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from audioset_data.baselines.config import (
    RECIPES,
    TrainConfig,
    add_config_arguments,
    config_from_args,
)
from audioset_data.baselines.models import model_defaults
from audioset_data.baselines.pooling import POOLS, pool_clips
from audioset_data.cache.reader import cache_dir
from audioset_data.cli import main
from audioset_data.errors import ConfigError

from .training_caches import write_sound_cache

REPO = Path(__file__).resolve().parents[1]


def _small_set():
    """``benchmarks/small_set.py``, the generator of the ten-class small set."""
    if "small_set" not in sys.modules:
        spec = importlib.util.spec_from_file_location("small_set",
                                                      REPO / "benchmarks" / "small_set.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules["small_set"] = module
        spec.loader.exec_module(module)
    return sys.modules["small_set"]


@pytest.fixture
def one_thread():
    """Train on one torch thread: two threads on two cores shared with other jobs wait on each
    other (a step took 4x longer here; see benchmarks/bench_training.py)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _metrics(run: Path) -> list[dict]:
    return [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]


# -- recipes ---------------------------------------------------------------------------------
def test_recipes_set_their_sampler_beta_and_augmentation():
    seed = TrainConfig.from_recipe("seed")
    assert (seed.recipe, seed.sampler, seed.beta, seed.mixup, seed.specaugment) == (
        "seed", "shuffle", 0.0, 0.0, False)
    assert RECIPES["seed"].betas == (0.0, 0.1, 0.25, 1.0)
    for beta in RECIPES["seed"].betas:  # the seed's sweep is the seed's loss, not a new recipe
        assert TrainConfig.from_recipe("seed", beta=beta).beta == beta
    panns = TrainConfig.from_recipe("panns", model="cnn14")
    assert (panns.sampler, panns.beta, panns.mixup, panns.specaugment) == (
        "balanced", 0.0, 1.0, True)
    # the balanced sampler already corrects the imbalance: no loss weights on top of it
    with pytest.raises(ConfigError, match="recipe 'panns'.*beta=0.0"):
        TrainConfig.from_recipe("panns", beta=0.25)
    with pytest.raises(ConfigError, match="recipe 'seed'.*sampler='shuffle'"):
        panns.replace(recipe="seed")
    with pytest.raises(ConfigError, match="unknown recipe"):
        TrainConfig.from_recipe("vggish")
    # a recipe configuration survives a checkpoint's round trip
    assert TrainConfig.from_dict(json.loads(json.dumps(panns.to_dict()))) == panns


def test_recipe_flag_applies_the_recipe_then_the_flags():
    parser = argparse.ArgumentParser()
    add_config_arguments(parser)
    config = config_from_args(parser.parse_args(["--recipe", "seed", "--beta", "0.25",
                                                 "--model", "fc"]))
    assert (config.recipe, config.sampler, config.beta, config.model) == (
        "seed", "shuffle", 0.25, "fc")
    with pytest.raises(ConfigError, match="fixes sampler"):
        config_from_args(parser.parse_args(["--recipe", "seed", "--sampler", "balanced"]))


def test_schedule_has_a_floor_that_scales_with_the_data():
    auto = TrainConfig()
    assert auto.total_steps(625) == 6250          # AudioSet balanced: 10 epochs as before
    assert auto.total_steps(5) == 1000            # 160 clips: the floor, not 50 steps
    assert auto.total_steps(1) == 300             # a tiny split: at most 300 passes
    assert TrainConfig(epochs=10).total_steps(5) == 50   # --epochs keeps its meaning
    assert TrainConfig(epochs=10, steps=7).total_steps(5) == 7
    assert TrainConfig(min_steps=200).total_steps(5) == 200


def test_pool_clips_pools_each_clip_and_keeps_its_first_example():
    x = torch.tensor([[0.0, 3.0], [2.0, -1.0], [-1.0, 0.5], [4.0, 4.0]])
    clip = torch.tensor([0, 0, 1, 2])
    mx, first = pool_clips(x, clip, "max")
    torch.testing.assert_close(mx, torch.tensor([[2.0, 3.0], [-1.0, 0.5], [4.0, 4.0]]))
    assert first.tolist() == [0, 2, 3]
    mean, _ = pool_clips(x, clip, "mean")
    torch.testing.assert_close(mean[0], x[:2].mean(0))
    lse, _ = pool_clips(x, clip, "lse")
    torch.testing.assert_close(lse[0], torch.logsumexp(x[:2], 0) - np.log(2))
    lin, _ = pool_clips(x, clip, "linsoft")
    p = torch.sigmoid(x[:2])
    q = (p * p).sum(0) / p.sum(0)
    torch.testing.assert_close(torch.sigmoid(lin[0]), q)
    # one example: every pooling is that example's logit
    for how in ("mean", "max", "lse", "linsoft"):
        torch.testing.assert_close(pool_clips(x, clip, how)[0][1:], x[2:], atol=1e-5,
                                   rtol=1e-5)
    # a 5-s event among noise: max-like pooling is not diluted as the mean is
    event = torch.tensor([[4.0]] * 5 + [[-4.0]] * 5)
    ten = torch.zeros(10, dtype=torch.long)
    assert torch.sigmoid(pool_clips(event, ten, "linsoft")[0]) > 0.9
    assert torch.sigmoid(pool_clips(event, ten, "mean")[0]) == pytest.approx(0.5)
    with pytest.raises(ConfigError, match="pooling"):
        pool_clips(x, clip, "attention")


def test_fc_pools_its_examples_per_clip_as_configured():
    from audioset_data.baselines import config
    from audioset_data.baselines.fc import FullyConnected

    assert config.POOLS == POOLS  # the configuration's list (torch-free) is the models'
    torch.manual_seed(0)
    x = torch.randn(5, 96, 64)
    clip = torch.tensor([0, 0, 0, 1, 1])
    model = FullyConnected(n_classes=3, hidden=(16,), pool="feature-max",
                           input_norm=True).eval()
    with torch.no_grad():
        logits, first = model(x, clip)
        emb = model.embedding(x)
        torch.testing.assert_close(logits[0], model.head(emb[:3].amax(0)))
        torch.testing.assert_close(logits[1], model.head(emb[3:].amax(0)))
        assert first.tolist() == [0, 3]
        # an example alone is its own clip: example logits equal one-example clip logits
        torch.testing.assert_close(model(x[:1], torch.zeros(1, dtype=torch.long))[0],
                                   model(x[:1]))
        # the level of a recording says nothing of its class: +20 dB changes no logit
        torch.testing.assert_close(model(x + 4.6), model(x), atol=1e-4, rtol=1e-4)
    decision = FullyConnected(n_classes=3, hidden=(16,), pool="linsoft").eval()
    with torch.no_grad():
        torch.testing.assert_close(decision(x, clip)[0],
                                   pool_clips(decision(x), clip, "linsoft")[0])
    with pytest.raises(ConfigError, match="without clip_index"):
        FullyConnected(n_classes=3, hidden=(16,))(x, clip)


def test_the_anchor_is_the_same_logistic_regression_with_or_without_scikit_learn():
    from audioset_data.baselines.anchor import LinearAnchor

    pytest.importorskip("sklearn.linear_model")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((120, 12)) * rng.uniform(0.5, 5, 12) + rng.uniform(-3, 3, 12)
    y = np.zeros((120, 5), bool)
    y[:, 0] = x[:, 0] + 0.5 * rng.standard_normal(120) > 0
    y[:, 1] = x[:, 1] - x[:, 2] > 1
    y[:, 3] = True  # every clip: no regression, scored 1
    # class 2 never occurs (scored 0); class 4 once
    y[7, 4] = True
    a = LinearAnchor.fit(x, y, solver="sklearn")
    b = LinearAnchor.fit(x, y, solver="torch")
    assert a.classes.tolist() == b.classes.tolist() == [0, 1, 4]
    test = rng.standard_normal((30, 12))
    np.testing.assert_allclose(a.predict(test), b.predict(test), atol=2e-3)
    assert (a.predict(test)[:, 3] == 1).all() and (a.predict(test)[:, 2] == 0).all()


# -- the benchmark names its recipes ------------------------------------------------------------
@pytest.mark.slow
def test_benchmark_rows_name_recipe_sampler_and_beta(data_root, tmp_path, one_thread):
    from audioset_data.baselines import run_benchmark

    write_sound_cache(cache_dir("snd_train", data_root), per_class=4, seed=1, prefix="trn",
                      seconds=2.0)
    write_sound_cache(cache_dir("snd_eval", data_root), per_class=3, seed=2, prefix="evl",
                      seconds=2.0)
    out = tmp_path / "bench"
    report = run_benchmark("snd_train", "snd_eval", ("anchor", "fc"), recipes=("seed", "panns"),
                           out=out, smoke=True, progress=False)
    rows = [(r["model"], r["recipe"], r.get("sampler"), r.get("beta"), r.get("mixup"))
            for r in report.rows]
    assert rows[0][0] == "anchor" and rows[0][1].startswith("logistic regression (")
    assert rows[1:] == [("fc", "seed", "shuffle", b, 0.0) for b in (0.0, 0.1, 0.25, 1.0)] + [
        ("fc", "panns", "balanced", 0.0, 1.0)]
    table = (out / "benchmark.md").read_text()
    assert "| fc | seed | shuffle | 0.25 | 0 |" in table
    assert "| fc | panns | balanced | 0 | 1 |" in table
    assert "| anchor | logistic regression" in table
    assert all(0 <= r["mAP"] <= 1 for r in report.rows)
    assert (out / "fc-seed-beta0.25" / "report.md").is_file()
    assert (out / "anchor" / "scores.npz").is_file()
    # the run under a recipe trained with what the row says
    config = json.loads((out / "benchmark.json").read_text())["rows"][5]["config"]
    assert (config["recipe"], config["sampler"], config["specaugment"]) == (
        "panns", "balanced", True)


# -- logging -----------------------------------------------------------------------------------
def test_loss_over_present_classes_and_validation_map_are_logged(data_root, tmp_path,
                                                                 one_thread):
    from audioset_data.baselines import train

    small = _small_set()
    # 4 of 40 labels occur, as 10 of 527 do in a small download
    small.write_small_set(data_root, train_per_class=4, eval_per_class=2, n_classes=4,
                          n_labels=40, seconds=2.0, rate=16000, event_s=(1.0, 2.0))
    result = train(TrainConfig(model="fc", train="small_train", eval="small_eval",
                               out=str(tmp_path / "run"), batch_size=8, hidden=(32,),
                               num_workers=0, steps=30, lr=1e-2, log_every=3,
                               checkpoint_every=0),
                   progress=False)
    lines = _metrics(result.out)
    logged = [r for r in lines if "loss" in r]
    assert [r["step"] for r in logged] == list(range(3, 31, 3))
    # the mean over 40 outputs is mostly the 36 absent classes' loss, which falls first
    assert all(r["loss_present"] > 2 * r["loss"] for r in logged[len(logged) // 2:])
    # an evaluation split: validation mAP up to ten times a run (eval_every -1), spaced so that
    # scoring the 8 clips costs at most a tenth of training (every 4 steps of 8), and at the end
    evals = [r for r in lines if "eval" in r]
    assert [r["step"] for r in evals] == [*range(4, 30, 4), 30]
    assert all(0 <= r["eval"]["mAP"] <= 1 for r in evals)


def test_train_names_the_fast_model_without_a_gpu(monkeypatch, capsys, data_root):
    from audioset_data.cli import train as cli_train

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    cli_train._note_cpu("cnn14", "auto")
    err = capsys.readouterr().err
    assert "no GPU" in err and "--model fc" in err
    cli_train._note_cpu("fc", "auto")
    cli_train._note_cpu("cnn14", "cuda")
    assert capsys.readouterr().err == ""


@pytest.mark.slow
def test_a_resumed_run_with_the_fc_defaults_ends_with_the_same_weights(data_root, tmp_path,
                                                                      one_thread):
    from audioset_data.baselines import train

    write_sound_cache(cache_dir("snd_train", data_root), per_class=6, seed=1, prefix="trn",
                      seconds=3.0)
    # the fc's defaults draw time shifts and band masks from torch's global generator
    base = TrainConfig(**model_defaults("fc")).replace(
        model="fc", train="snd_train", eval=None, batch_size=8, hidden=(32,), steps=9,
        checkpoint_every=0, log_every=1)
    assert (base.pool, base.time_shift, base.band_mask, base.input_norm) == (
        "feature-max", True, 8, True)
    whole = train(base.replace(out=str(tmp_path / "whole")), progress=False)
    train(base.replace(out=str(tmp_path / "part"), stop_after=4), progress=False)
    done = train(base.replace(out=str(tmp_path / "part")), progress=False)
    assert done.step == whole.step == 9
    a = torch.load(whole.checkpoint, weights_only=True)["model"]
    b = torch.load(done.checkpoint, weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    other = train(base.replace(out=str(tmp_path / "other"), seed=5), progress=False)
    c = torch.load(other.checkpoint, weights_only=True)["model"]
    assert not all(torch.equal(a[k], c[k]) for k in a)


# -- the bare smoke -------------------------------------------------------------------------
@pytest.mark.slow
def test_bare_smoke_builds_the_demo_and_benchmarks_on_it(shared_data, data_root, tmp_path,
                                                          monkeypatch, one_thread):
    monkeypatch.setenv("AUDIOSET_ONTOLOGY_BASE_URL", str(shared_data / "ontology"))
    monkeypatch.setenv("AUDIOSET_CSV_BASE_URL", str(shared_data / "segments"))
    assert not cache_dir("demo", data_root).exists()
    out = tmp_path / "bench"
    assert main(["benchmark", "--smoke", "--out", str(out)]) == 0
    assert (cache_dir("demo", data_root) / "manifest.sqlite").is_file() or any(
        cache_dir("demo", data_root).iterdir())
    table = (out / "benchmark.md").read_text()
    for model in ("anchor", "fc", "resnet50", "cnn14"):
        assert f"| {model} |" in table
    assert "- train: demo" in table
    rows = json.loads((out / "benchmark.json").read_text())["rows"]
    assert all(r["eval clips"] == 4 for r in rows)
    # a second bare run reuses the demo cache
    assert main(["benchmark", "--smoke", "--models", "anchor", "--out", str(tmp_path / "b2")]) \
        == 0


# -- defaults that learn ---------------------------------------------------------------------
def _fc_map(root: Path, out: Path, flags: list[str]) -> tuple[float, int]:
    """``audioset train --model fc`` with ``flags`` then predict and evaluate, as a user."""
    assert main(["train", "--model", "fc", "--train", "small_train", "--eval", "none",
                 "--out", str(out), "--num-workers", "0", *flags]) == 0
    scores = out / "scores.npz"
    assert main(["predict", "--checkpoint", str(out / "last.pt"), "--source", "small_eval",
                 "--scores", str(scores)]) == 0
    report = out / "eval.json"
    assert main(["evaluate", "--scores", str(scores), "--split", "small_eval", "--json",
                 str(report)]) == 0
    steps = [r["step"] for r in _metrics(out) if "loss" in r][-1]
    return json.loads(report.read_text())["summary"]["mAP"], steps


@pytest.mark.slow
def test_fc_defaults_beat_the_old_defaults_and_the_anchor_on_a_small_noisy_set(
        data_root, tmp_path, capsys, one_thread):
    from audioset_data.baselines.anchor import run_anchor

    small = _small_set()
    # six classes, 2-s events in 6-s clips: most 0.96-s examples of a clip hold only noise
    small.write_small_set(data_root, train_per_class=8, eval_per_class=6, n_classes=6,
                          n_labels=527, seconds=6.0, rate=16000, event_s=(1.5, 2.5))
    assert model_defaults("fc")  # the fc has defaults of its own
    new, new_steps = _fc_map(data_root, tmp_path / "new", ["--min-steps", "300"])
    old, old_steps = _fc_map(data_root, tmp_path / "old", [
        "--epochs", "10", "--pool", "frame", "--input-norm", "no", "--time-shift", "no",
        "--band-mask", "0", "--specaugment", "no", "--lr", "0.001", "--dropout", "0",
        "--hidden", "1000,1000,1000"])
    anchor = run_anchor("small_train", "small_eval").evaluation.metrics.mean_ap
    capsys.readouterr()
    print(f"new {new:.3f} ({new_steps} steps), old {old:.3f} ({old_steps}), anchor {anchor:.3f}")
    # 48 clips in batches of 32: one batch an epoch, so the old 10 epochs were 10 steps
    assert (new_steps, old_steps) == (300, 10)
    assert new > old + 0.2, (new, old)      # measured 0.70 against 0.27
    assert new > anchor, (new, anchor)      # measured 0.70 against 0.65


def test_schedules_warm_up_then_decay_or_hold_and_the_embedding_recipe_holds():
    from audioset_data.baselines.config import TrainConfig
    from audioset_data.baselines.models import model_defaults
    from audioset_data.baselines.training import lr_schedule

    for kind in ("cosine", "constant"):
        f = lr_schedule(100, 0.1, kind)
        assert [f(i) for i in range(10)] == pytest.approx([(i + 1) / 10 for i in range(10)])
        assert f(10) == pytest.approx(1.0)
    cos, const = lr_schedule(100, 0.1, "cosine"), lr_schedule(100, 0.1, "constant")
    assert cos(55) == pytest.approx(0.5) and cos(99) < 0.01 and cos(100) == pytest.approx(0)
    assert all(const(i) == 1.0 for i in range(10, 200))
    assert lr_schedule(50, 0.0, "constant")(0) == 1.0
    d = model_defaults("embedding-attention")
    assert (d["schedule"], d["warmup"]) == ("constant", 0.0)
    assert TrainConfig().schedule == "cosine"
    with pytest.raises(ConfigError, match="schedule"):
        TrainConfig(schedule="linear")
