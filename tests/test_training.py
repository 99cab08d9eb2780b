"""The training loop: it learns, it resumes to the same weights, DDP ranks agree, and the
commands around it (train, benchmark, predict → evaluate) work end to end."""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
import pytest
import torch

from audioset_data.baselines.config import TrainConfig, add_config_arguments, config_from_args
from audioset_data.cache.reader import cache_dir
from audioset_data.cli import main
from audioset_data.errors import ConfigError

from .training_caches import write_sound_cache

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def sound_caches(data_root):
    """A training and a held-out cache of four band-noise classes (different clips)."""
    write_sound_cache(cache_dir("snd_train", data_root), per_class=12, seed=1, prefix="trn")
    write_sound_cache(cache_dir("snd_eval", data_root), per_class=6, seed=2, prefix="evl")
    return data_root


def _tiny(out: Path, **kw) -> TrainConfig:
    base = dict(model="fc", train="snd_train", eval="snd_eval", out=str(out), batch_size=8,
                hidden=(64,), lr=3e-3, num_workers=0, epochs=1.0, checkpoint_every=0,
                log_every=1, seed=3)
    base.update(kw)
    return TrainConfig(**base)


def test_flags_follow_the_fields():
    parser = argparse.ArgumentParser()
    add_config_arguments(parser)
    args = parser.parse_args(["--model", "fc", "--lr", "0.01", "--hidden", "64,32",
                              "--specaugment", "yes", "--eval", "none", "--max-clips", "7"])
    config = config_from_args(args)
    assert (config.model, config.lr, config.hidden, config.specaugment, config.eval,
            config.max_clips) == ("fc", 0.01, (64, 32), True, None, 7)
    assert config.batch_size == TrainConfig().batch_size
    assert TrainConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    with pytest.raises(ConfigError, match="sampler"):
        TrainConfig(sampler="round-robin")
    with pytest.raises(ConfigError, match="unknown training options"):
        TrainConfig.from_dict({"modle": "fc"})


def test_learns_distinct_sounds_far_above_chance(sound_caches, tmp_path):
    from audioset_data.baselines import train

    result = train(_tiny(tmp_path / "run", epochs=8.0, hidden=(128,), sampler="balanced"),
                   progress=False)
    ev = result.evaluation
    assert ev is not None and len(ev.clip_ids) == 24
    defined = ev.metrics.defined
    assert defined.sum() == 4
    chance = float(np.mean(ev.metrics.n_pos[defined] / 24))
    assert chance < 0.4
    assert ev.metrics.mean_ap > 0.9, (ev.metrics.mean_ap, chance)
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in lines if "loss" in r]
    assert np.mean(losses[-5:]) < np.mean(losses[:5])
    assert any("eval" in r for r in lines) and (tmp_path / "run" / "eval.json").is_file()


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=True)["model"]


def test_a_resumed_run_ends_with_the_weights_of_an_uninterrupted_one(sound_caches, tmp_path):
    from audioset_data.baselines import train

    kw = dict(epochs=2.0, mixup=0.5, specaugment=True, sampler="balanced", eval=None)
    whole = train(_tiny(tmp_path / "whole", **kw), progress=False)
    part = train(_tiny(tmp_path / "part", stop_after=4, **kw), progress=False)
    assert part.step == 4
    part = train(_tiny(tmp_path / "part", stop_after=5, **kw), progress=False)  # crosses an epoch
    assert part.step == 9
    done = train(_tiny(tmp_path / "part", **kw), progress=False)
    assert done.step == whole.step == 12
    a, b = _weights(whole.checkpoint), _weights(done.checkpoint)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    # and a run that is not resumed differs (the check above can fail)
    other = train(_tiny(tmp_path / "other", **{**kw, "seed": 4}), progress=False)
    c = _weights(other.checkpoint)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_process_ddp_ends_with_identical_weights_on_both_ranks(sound_caches, tmp_path):
    script = tmp_path / "ddp_run.py"
    # each rank writes its own weights: the trainer's model after fit
    script.write_text(
        "import sys, torch, torch.distributed as dist\n"
        "from audioset_data.baselines import TrainConfig\n"
        "from audioset_data.baselines.training import Trainer\n"
        "cfg = TrainConfig(model='fc', train='snd_train', eval='snd_eval', out=sys.argv[1],\n"
        "                  batch_size=4, hidden=(32,), num_workers=0, epochs=1.0,\n"
        "                  checkpoint_every=0, sampler='balanced', device='cpu')\n"
        "t = Trainer(cfg, progress=False)\n"
        "r = t.fit()\n"
        "torch.save(t.model.state_dict(), f'{sys.argv[1]}/rank{t.rank}.pt')\n"
        "if t.rank == 0:\n"
        "    open(f'{sys.argv[1]}/eval_clips.txt', 'w').write(str(len(r.evaluation.clip_ids)))\n"
        "dist.destroy_process_group()\n"
    )
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
         "--master_port", str(_free_port()), str(script), str(out)],
        capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    a = torch.load(out / "rank0.pt", weights_only=True)
    b = torch.load(out / "rank1.pt", weights_only=True)
    assert all(torch.equal(a[k], b[k]) for k in a)
    # the ranks split the eval set (padded); gathering keeps each of its 24 clips once
    assert (out / "eval_clips.txt").read_text() == "24"
    lines = (out / "metrics.jsonl").read_text().splitlines()
    steps = [json.loads(x)["step"] for x in lines if '"loss"' in x]
    assert steps[-1] == 48 // (4 * 2)  # each rank takes half of the 48-clip epoch


_DDP_SCRIPT = """
import hashlib, json, sys, torch, torch.distributed as dist
from audioset_data.baselines import TrainConfig
from audioset_data.baselines.training import Trainer
out, stop = sys.argv[1], int(sys.argv[2])
cfg = TrainConfig(model='fc', train='snd_train', eval=None, out=out, batch_size=4,
                  hidden=(32,), num_workers=0, epochs=2.0, checkpoint_every=0,
                  sampler='balanced', device='cpu', mixup=0.5, specaugment=True,
                  stop_after=stop, log_every=1)
t = Trainer(cfg, progress=False)
def digest(x):
    return hashlib.sha256(repr(x).encode()).hexdigest()
streams = {'torch': digest(torch.get_rng_state().tolist()),
           'mixup': digest(t.mixup.state_dict()),
           'specaugment': digest(t.specaugment.generator.get_state().tolist())}
json.dump(streams, open(f'{out}/streams{t.rank}-{stop}.json', 'w'))
t.fit()
torch.save(t.model.state_dict(), f'{out}/rank{t.rank}.pt')
dist.destroy_process_group()
"""


def _torchrun(script: Path, *args: str) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
         "--master_port", str(_free_port()), str(script), *args],
        capture_output=True, text=True, timeout=300, env=env, cwd=script.parent)
    assert proc.returncode == 0, proc.stderr[-3000:]


@pytest.mark.slow
def test_two_ranks_draw_their_own_augmentation_and_resume_bit_identical(sound_caches,
                                                                        tmp_path):
    script = tmp_path / "ddp_resume.py"
    script.write_text(_DDP_SCRIPT)
    whole, split = tmp_path / "whole", tmp_path / "split"
    whole.mkdir(), split.mkdir()
    _torchrun(script, str(whole), "0")
    _torchrun(script, str(split), "5")   # stops mid-epoch after 5 of 12 steps
    _torchrun(script, str(split), "0")   # resumes from split/last.pt and finishes
    # each rank has its own dropout, mixup and SpecAugment stream, reproducible by rank
    s0 = json.loads((whole / "streams0-0.json").read_text())
    s1 = json.loads((whole / "streams1-0.json").read_text())
    assert all(s0[k] != s1[k] for k in s0)
    assert s0 == json.loads((split / "streams0-5.json").read_text())
    for rank in (0, 1):
        a = torch.load(whole / f"rank{rank}.pt", weights_only=True)
        b = torch.load(split / f"rank{rank}.pt", weights_only=True)
        assert all(torch.equal(a[k], b[k]) for k in a), f"rank {rank} differs after resume"
    steps = [json.loads(x)["step"] for x in (split / "metrics.jsonl").read_text().splitlines()
             if '"loss"' in x]
    assert steps == list(range(1, 13))
    # the losses logged after the resume equal the uninterrupted run's
    loss = {json.loads(x)["step"]: json.loads(x)["loss"]
            for x in (whole / "metrics.jsonl").read_text().splitlines() if '"loss"' in x}
    resumed = [json.loads(x) for x in (split / "metrics.jsonl").read_text().splitlines()
               if '"loss"' in x]
    assert all(r["loss"] == loss[r["step"]] for r in resumed)


@pytest.mark.slow
def test_benchmark_smoke_and_predict_then_evaluate(data_root, tmp_path, capsys):
    # 2-s clips keep three models' training on a CPU short; frame models still get 2 examples
    write_sound_cache(cache_dir("snd_train", data_root), per_class=4, seed=1, prefix="trn",
                      seconds=2.0)
    write_sound_cache(cache_dir("snd_eval", data_root), per_class=6, seed=2, prefix="evl",
                      seconds=2.0)
    out = tmp_path / "bench"
    code = main(["benchmark", "--smoke", "--train", "snd_train", "--eval", "snd_eval",
                 "--models", "fc,resnet50,cnn14", "--out", str(out), "--max-clips", "16"])
    assert code == 0
    table = (out / "benchmark.md").read_text()
    for model in ("fc", "resnet50", "cnn14"):
        assert f"| {model} |" in table
    rows = json.loads((out / "benchmark.json").read_text())["rows"]
    assert [r["model"] for r in rows] == ["fc", "resnet50", "cnn14"]
    assert all(0 <= r["mAP"] <= 1 and r["eval clips"] == 16 for r in rows)
    assert (out / "fc-beta0" / "report.md").is_file()
    scores = tmp_path / "fc.npz"
    assert main(["predict", "--checkpoint", str(out / "fc-beta0" / "last.pt"),
                 "--source", "snd_eval", "--scores", str(scores)]) == 0
    with np.load(scores) as z:
        assert len(z["ids"]) == 24 and z["scores"].shape == (24, 4)
    with np.load(tmp_path / "fc.frames.npz") as z:
        assert len(z["ids"]) == 48 and z["frames"].max() == 1
    capsys.readouterr()
    assert main(["evaluate", "--scores", str(scores), "--split", "snd_eval"]) == 0
    assert "mAP" in capsys.readouterr().out
    # a folder of audio files: scored in 10-s windows, pooled per file, named by the file
    folder = tmp_path / "clips"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name, seconds in (("short", 1.5), ("long", 12.0)):
        pcm = (rng.standard_normal(int(16000 * seconds)) * 3000).astype("<i2")
        with wave.open(str(folder / f"{name}.wav"), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(16000)
            w.writeframes(pcm.tobytes())
    (folder / "notes.txt").write_text("not audio")
    assert main(["predict", "--checkpoint", str(out / "fc-beta0" / "last.pt"),
                 "--source", str(folder), "--scores", str(tmp_path / "files.npz")]) == 0
    with np.load(tmp_path / "files.npz") as z:
        assert sorted(z["ids"].tolist()) == ["long", "short"]
    with np.load(tmp_path / "files.frames.npz") as z:  # 1.5 s: one example; 12 s: 10 + 2
        counts = dict(zip(*np.unique(z["ids"], return_counts=True), strict=True))
        assert counts == {"long": 12, "short": 1}


def test_cli_without_torch_names_the_fix(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)
    for name in [m for m in sys.modules if m.startswith("audioset_data.baselines")]:
        monkeypatch.delitem(sys.modules, name)
    assert main(["predict", "--checkpoint", "x.pt", "--source", "eval", "--scores",
                 "s.npz"]) == 2


def test_training_on_refined_frame_targets_masks_the_dropped_frames(sound_caches, tmp_path):
    from audioset_data.baselines import RefinedTargets, refine_split, train
    from audioset_data.baselines.inference import model_inputs
    from audioset_data.baselines.training import Trainer
    from audioset_data.loaders.losses import prior_balanced_bce

    first = train(_tiny(tmp_path / "weak", epochs=3.0, eval=None), progress=False)
    # the sounds fill whole clips, so only a threshold near 1 drops frames here
    refined = refine_split(first.checkpoint, "snd_train", threshold=0.999)
    path = refined.path
    assert path.parent == cache_dir("snd_train", sound_caches) / "refined"
    assert RefinedTargets.load(path).kept.mean() < 1.0  # some frames were dropped
    trainer = Trainer(_tiny(tmp_path / "refined", eval=None, refined=str(path)), progress=False)
    batch = next(iter(trainer._loader(trainer.train_set, trainer.sampler, train=True)))
    with torch.no_grad():
        x, clip_index = model_inputs(trainer.frontend, True, batch["waveform"], batch["length"])
        logits = trainer.net(x)
    ft, fm = trainer.refined.for_examples(batch["index"].numpy(), clip_index.numpy())
    expected = prior_balanced_bce(logits, torch.from_numpy(ft), trainer.criterion.pos_weight,
                                  mask=torch.from_numpy(fm))
    weak = prior_balanced_bce(logits, batch["target"].float()[clip_index],
                              trainer.criterion.pos_weight)
    got = trainer.train_step(batch)
    assert float(got) == pytest.approx(float(expected), rel=1e-5)
    assert float(got) != pytest.approx(float(weak), rel=1e-3)
    with pytest.raises(ConfigError, match="scores whole clips"):
        Trainer(_tiny(tmp_path / "c", model="cnn14", eval=None, refined=str(path)))
    with pytest.raises(ConfigError, match="mixup"):
        Trainer(_tiny(tmp_path / "m", eval=None, refined=str(path), mixup=0.5))


def test_a_batch_larger_than_the_split_still_trains(sound_caches, tmp_path):
    from audioset_data.baselines import train

    result = train(_tiny(tmp_path / "big", batch_size=64, epochs=2.0, eval=None),
                   progress=False)
    assert result.step == 2 and result.epoch == 1  # one 48-clip batch per epoch
