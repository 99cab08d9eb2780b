"""Checkpoints: exact resume (weights, optimizer, scheduler, RNG), safe loading, clear errors."""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from audioset_data.baselines.checkpoint import (
    FORMAT,
    CheckpointError,
    file_digest,
    load_checkpoint,
    save_checkpoint,
)
from audioset_data.baselines.fc import FullyConnected
from audioset_data.baselines.resnet import ResNet50


class Opaque:
    """An object only pickle can store."""


def _setup(seed: int):
    torch.manual_seed(seed)
    model = FullyConnected(n_classes=20, hidden=(32, 16), dropout=0.5)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1e-2, total_steps=50)
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    return model, opt, sched, scaler


def _step(model, opt, sched) -> float:
    """One training step whose batch and noise come from all three global RNGs."""
    model.train()
    x = torch.randn(8, 96, 64) + float(np.random.normal()) + random.random()
    y = (torch.rand(8, 20) < 0.2).float()
    loss = torch.nn.functional.binary_cross_entropy_with_logits(model(x), y)
    opt.zero_grad()
    loss.backward()
    opt.step()
    sched.step()
    return loss.item()


def _seed_all(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)


def test_resume_reproduces_the_next_step_exactly(tmp_path: Path):
    _seed_all(0)
    model, opt, sched, scaler = _setup(0)
    for _ in range(3):
        _step(model, opt, sched)
    path = save_checkpoint(tmp_path / "ck.pt", model=model, optimizer=opt, scheduler=sched,
                           scaler=scaler, sampler_state={"epoch": 1, "position": 24},
                           step=3, epoch=1, config={"model": "fc", "lr": 1e-2},
                           extra={"map": 0.125, "labels_sha256": "ab" * 32})
    loss_a = _step(model, opt, sched)
    weights_a = {k: v.clone() for k, v in model.state_dict().items()}

    _seed_all(99)  # a resumed process starts from other RNG states and other weights
    model2, opt2, sched2, scaler2 = _setup(1)
    info = load_checkpoint(path, model=model2, optimizer=opt2, scheduler=sched2, scaler=scaler2)
    assert info == {"step": 3, "epoch": 1, "sampler_state": {"epoch": 1, "position": 24},
                    "config": {"model": "fc", "lr": 1e-2},
                    "extra": {"map": 0.125, "labels_sha256": "ab" * 32},
                    "model_class": "FullyConnected"}
    assert sched2.last_epoch == 3 and scaler2.get_scale() == 1024.0
    assert opt2.state_dict()["param_groups"][0]["lr"] == pytest.approx(sched2.get_last_lr()[0])
    loss_b = _step(model2, opt2, sched2)
    assert loss_b == loss_a  # same batch, same dropout masks, same optimizer moments
    for key, value in model2.state_dict().items():
        assert torch.equal(value, weights_a[key]), key


def test_without_rng_restore_the_next_step_differs(tmp_path: Path):
    _seed_all(0)
    model, opt, sched, _ = _setup(0)
    _step(model, opt, sched)
    path = save_checkpoint(tmp_path / "ck.pt", model=model, optimizer=opt, scheduler=sched,
                           step=1, epoch=0, config={})
    loss_a = _step(model, opt, sched)
    _seed_all(99)
    model2, opt2, sched2, _ = _setup(1)
    load_checkpoint(path, model=model2, optimizer=opt2, scheduler=sched2, restore_rng=False)
    assert _step(model2, opt2, sched2) != loss_a


def test_file_loads_with_weights_only_and_holds_plain_rng_states(tmp_path: Path):
    model, opt, sched, _ = _setup(0)
    save_checkpoint(tmp_path / "ck.pt", model=model, optimizer=opt, step=0, epoch=0,
                    config={"n": 1})
    payload = torch.load(tmp_path / "ck.pt", weights_only=True)
    assert payload["format"] == FORMAT and payload["scheduler"] is None
    rng = payload["rng"]
    assert isinstance(rng["torch"], torch.Tensor)
    assert isinstance(rng["python"]["state"], list) and len(rng["python"]["state"]) == 625
    assert isinstance(rng["numpy"]["keys"], torch.Tensor) and rng["numpy"]["kind"] == "MT19937"
    assert [p.name for p in tmp_path.iterdir()] == ["ck.pt"]  # no temporary left behind


@pytest.mark.parametrize("field, value, where", [
    ("extra", {"stats": Opaque()}, r"extra\['stats'\] is a .*Opaque"),
    ("config", {"lr": np.float32(0.1)}, r"config\['lr'\] is a numpy.float32.*\.tolist"),
    ("sampler_state", {"order": [1, np.arange(3)]}, r"sampler_state\['order'\]\[1\]"),
])
def test_values_the_safe_loader_refuses_are_refused_at_save(tmp_path: Path, field, value, where):
    model = FullyConnected(n_classes=3, hidden=(4,))
    good = save_checkpoint(tmp_path / "ck.pt", model=model, step=5, epoch=0, config={})
    before = good.read_bytes()
    kwargs = {"config": {}, field: value}
    with pytest.raises(CheckpointError, match=where):
        save_checkpoint(good, model=model, step=6, epoch=0, **kwargs)
    assert good.read_bytes() == before  # the previous checkpoint survives
    assert [p.name for p in tmp_path.iterdir()] == ["ck.pt"]
    assert load_checkpoint(good, model=model)["step"] == 5


def test_a_pickled_object_in_a_file_is_not_unpickled(tmp_path: Path):
    path = tmp_path / "evil.pt"
    torch.save({"format": FORMAT, "version": 1, "payload": Opaque()}, path)
    with pytest.raises(CheckpointError, match=r"evil\.pt.*refusing to unpickle"):
        load_checkpoint(path, model=FullyConnected(n_classes=3, hidden=(4,)))


def test_missing_and_truncated_files_name_the_file(tmp_path: Path):
    model = FullyConnected(n_classes=3, hidden=(4,))
    with pytest.raises(CheckpointError, match=r"nope\.pt.*does not exist"):
        load_checkpoint(tmp_path / "nope.pt", model=model)
    path = save_checkpoint(tmp_path / "ck.pt", model=model, step=0, epoch=0, config={})
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"ck\.pt.*truncated"):
        load_checkpoint(path, model=model)
    path.write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"ck\.pt.*truncated"):
        load_checkpoint(path, model=model)


def test_a_file_not_written_by_save_checkpoint_is_refused(tmp_path: Path):
    model = FullyConnected(n_classes=3, hidden=(4,))
    torch.save(model.state_dict(), tmp_path / "raw.pt")
    with pytest.raises(CheckpointError, match=r"raw\.pt.*not written by save_checkpoint"):
        load_checkpoint(tmp_path / "raw.pt", model=model)


def test_another_model_lists_missing_and_unexpected_keys(tmp_path: Path):
    path = save_checkpoint(tmp_path / "fc.pt", model=FullyConnected(n_classes=527), step=0,
                           epoch=0, config={})
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path, model=ResNet50())
    msg = str(info.value)
    assert "fc.pt" in msg and "saved from FullyConnected, loading into ResNet50" in msg
    assert "missing keys: conv1.weight" in msg and "unexpected keys: body.0.weight" in msg
    assert "in all)" in msg  # long lists are cut to a few names
    with pytest.raises(CheckpointError, match=r"shape mismatches.*body\.0\.weight \(1000, 6144\)"
                                              r" vs \(500, 6144\)"):
        load_checkpoint(path, model=FullyConnected(n_classes=527, hidden=(500, 1000, 1000)))


def test_asking_for_a_state_the_file_lacks_is_an_error(tmp_path: Path):
    model, opt, _, _ = _setup(0)
    path = save_checkpoint(tmp_path / "ck.pt", model=model, step=0, epoch=0, config={})
    with pytest.raises(CheckpointError, match="no optimizer state"):
        load_checkpoint(path, model=model, optimizer=opt)


@pytest.mark.filterwarnings("ignore:.*script_method.*:DeprecationWarning")  # torch.compile's import
@pytest.mark.parametrize("wrap", [torch.nn.DataParallel, torch.compile])
def test_wrapped_models_save_the_inner_names(tmp_path: Path, wrap):
    model = FullyConnected(n_classes=3, hidden=(4,))
    path = save_checkpoint(tmp_path / "ck.pt", model=wrap(model), step=0, epoch=0, config={})
    assert next(iter(torch.load(path, weights_only=True)["model"])) == "body.0.weight"
    fresh = FullyConnected(n_classes=3, hidden=(4,))
    load_checkpoint(path, model=wrap(fresh))
    assert torch.equal(fresh.head.weight, model.head.weight)


def test_plain_torch_values_pass_the_safe_loader(tmp_path: Path):
    extra = {"dtype": torch.bfloat16, "device": torch.device("cpu"), "size": torch.Size([2, 3]),
             "ids": {1, 2}, "z": 1 + 2j, 7: (None, True, [0.5])}
    path = save_checkpoint(tmp_path / "ck.pt", model=FullyConnected(n_classes=3, hidden=(4,)),
                           step=0, epoch=0, config={}, extra=extra)
    assert torch.load(path, weights_only=True)["extra"] == extra


def test_file_digest_is_the_sha256_of_the_bytes(tmp_path: Path):
    path = save_checkpoint(tmp_path / "ck.pt", model=FullyConnected(n_classes=3, hidden=(4,)),
                           step=0, epoch=0, config={})
    digest = file_digest(path)
    assert digest == hashlib.sha256(path.read_bytes()).hexdigest()
    save_checkpoint(path, model=FullyConnected(n_classes=3, hidden=(4,)), step=1, epoch=0,
                    config={})
    assert file_digest(path) != digest
