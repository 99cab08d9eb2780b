"""``audioset predict`` on a folder of audio files: bad files named and skipped, long files
scored window by window in bounded memory, tiny files padded, damaged checkpoints named."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
import pytest
import torch

from audioset_data.audio.ffmpeg import FFmpegError, find_ffmpeg
from audioset_data.audio.stream import iter_windows
from audioset_data.baselines.checkpoint import save_checkpoint
from audioset_data.baselines.config import TrainConfig
from audioset_data.baselines.models import build_model, model_options
from audioset_data.baselines.prediction import predict
from audioset_data.baselines.refine import refine_split
from audioset_data.cli import main
from audioset_data.errors import CheckpointError, ConfigError

N_CLASSES = 3


class Opaque:
    """An object only pickle can store."""


def write_wav(path: Path, seconds: float, rate: int = 16000, seed: int = 0) -> Path:
    pcm = (np.random.default_rng(seed).standard_normal(int(round(seconds * rate))) * 3000)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.astype("<i2").tobytes())
    return path


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A tiny untrained fc model (VGGish front end, 960 ms examples), saved as training does."""
    torch.manual_seed(0)
    config = TrainConfig(model="fc", hidden=(16,))
    model = build_model("fc", n_classes=N_CLASSES, **model_options(config))
    path = tmp_path_factory.mktemp("ckpt") / "last.pt"
    return save_checkpoint(path, model=model, step=0, epoch=0, config=config.to_dict())


def read_failures(path: Path) -> dict[str, str]:
    with open(path, newline="") as fh:
        return {r["file"]: r["reason"] for r in csv.DictReader(fh)}


def test_folder_with_bad_files_scores_the_good_ones_and_names_the_bad(checkpoint, tmp_path,
                                                                       capsys):
    folder = tmp_path / "clips"
    folder.mkdir()
    write_wav(folder / "good.wav", 3.0, seed=1)
    subprocess.run([find_ffmpeg(), "-nostdin", "-loglevel", "error", "-i",
                    str(write_wav(tmp_path / "src.wav", 12.5, seed=2)),
                    str(folder / "long.flac")], check=True)
    write_wav(folder / "tiny.wav", 0.1, seed=3)  # shorter than one 0.975 s example
    (folder / "empty.wav").write_bytes(b"")  # zero-byte
    (folder / "corrupt.mp3").write_bytes(np.random.default_rng(4).bytes(4000))  # the probe's
    (folder / "notes.ogg").write_text("not audio at all, just text\n" * 20)
    good = (folder / "good.wav").read_bytes()
    (folder / "cut.wav").write_bytes(good[:30])  # a header cut off before its data chunk
    out = tmp_path / "S.npz"
    assert main(["predict", "--checkpoint", str(checkpoint), "--source", str(folder),
                 "--scores", str(out)]) == 0
    err = capsys.readouterr().err
    assert "scored 3 files (4 windows of 10 s, pooled by max)" in err
    assert "skipped 4 files" in err and "S.failures.csv" in err
    failures = read_failures(tmp_path / "S.failures.csv")
    assert set(failures) == {"empty.wav", "corrupt.mp3", "notes.ogg", "cut.wav"}
    assert failures["empty.wav"] == "empty file (0 bytes)"
    assert all(r.startswith(("ffmpeg cannot decode it", "no audio samples"))
               for f, r in failures.items() if f != "empty.wav"), failures
    with np.load(out) as z:
        assert z["ids"].tolist() == ["good", "long", "tiny"]
        assert z["scores"].shape == (3, N_CLASSES)
        assert z["files"].tolist() == ["good.wav", "long.flac", "tiny.wav"]
        pooled = z["scores"]
    with np.load(tmp_path / "S.windows.npz") as z:
        assert z["ids"].tolist() == ["good", "long", "long", "tiny"]
        assert z["starts"].tolist() == [0.0, 0.0, 10.0, 0.0]
        # the file's score is the max over its windows
        assert np.allclose(pooled[1], z["scores"][1:3].max(axis=0))
    with np.load(tmp_path / "S.frames.npz") as z:
        counts = dict(zip(*np.unique(z["ids"], return_counts=True), strict=True))
        # 3 s: 3 examples; 12.5 s: 10 + 2; 0.1 s: padded to one
        assert counts == {"good": 3, "long": 12, "tiny": 1}
        long = z["ids"] == "long"
        assert z["frames"][long].tolist() == list(range(12))
        assert np.allclose(z["starts"][long][10:], [10.0, 10.96])


def test_folder_where_nothing_decodes_fails_and_lists_every_file(checkpoint, tmp_path, capsys):
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "a.wav").write_bytes(b"")
    (folder / "b.mp3").write_bytes(b"\x00" * 4000)
    assert main(["predict", "--checkpoint", str(checkpoint), "--source", str(folder),
                 "--scores", str(tmp_path / "S.npz")]) == 2
    err = capsys.readouterr().err
    assert "none of the 2 audio files" in err and "a.wav: empty file" in err
    assert "b.mp3" in err
    assert set(read_failures(tmp_path / "S.failures.csv")) == {"a.wav", "b.mp3"}
    assert not (tmp_path / "S.npz").exists()


def test_stems_that_collide_keep_their_whole_names(checkpoint, tmp_path):
    folder = tmp_path / "clips"
    folder.mkdir()
    write_wav(folder / "a.wav", 1.5)
    subprocess.run([find_ffmpeg(), "-nostdin", "-loglevel", "error", "-i",
                    str(folder / "a.wav"), str(folder / "a.flac")], check=True)
    scores = predict(checkpoint, str(folder), tmp_path / "S", progress=False, pool="mean")
    assert scores.ids == ["a.flac", "a.wav"]
    with pytest.raises(ConfigError, match="pool 'median'"):
        predict(checkpoint, str(folder), tmp_path / "S", pool="median")


def test_iter_windows_streams_the_whole_decode(tmp_path):
    path = write_wav(tmp_path / "x.wav", 25.3, rate=8000)
    whole = np.frombuffer(subprocess.run(
        [find_ffmpeg(), "-nostdin", "-loglevel", "error", "-i", str(path), "-ac", "1", "-ar",
         "16000", "-f", "s16le", "pipe:1"], capture_output=True, check=True).stdout, "<i2")
    parts = list(iter_windows(path, sample_rate=16000, seconds=10.0))
    assert [len(p) for p in parts] == [160000, 160000, len(whole) - 320000]
    assert np.array_equal(np.concatenate(parts), whole)
    (tmp_path / "e.wav").write_bytes(b"")
    with pytest.raises(FFmpegError, match="e.wav"):
        list(iter_windows(tmp_path / "e.wav", sample_rate=16000))
    write_wav(tmp_path / "z.wav", 0.0)  # a valid header with no samples
    with pytest.raises(FFmpegError, match="no audio samples") as info:
        list(iter_windows(tmp_path / "z.wav", sample_rate=16000))
    assert info.value.kind == "no_audio"


LONG_SECONDS = 3600
#: The probe's file: an hour of audio, which the old code read whole (789 MB of memory) and cut
#: to its first 10 s. Decoded at the model's 16 kHz it is 115 MB of int16 (230 MB as float32).
#: The process first scores a five-minute file: its peak is what scoring batch after batch
#: costs (a one-minute file does not reach it yet: 18 MB less); bounded memory means the hour
#: adds next to nothing to it.
MEMORY_SCRIPT = r"""
import json, resource, sys
from pathlib import Path
import torch
torch.set_num_threads(1)
from audioset_data.baselines.prediction import predict

def peak():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

checkpoint, short, long, out = sys.argv[1:5]
predict(checkpoint, short, out, batch_size=4, device="cpu", progress=False)
before = peak()
scores = predict(checkpoint, long, out, batch_size=4, device="cpu", progress=False)
print(json.dumps({"before": before, "peak": peak(), "ids": scores.ids,
                  "windows": len(scores.window_ids)}))
"""


@pytest.mark.slow
def test_an_hour_long_file_is_scored_whole_in_bounded_memory(checkpoint, tmp_path):
    for name, seconds in (("short", 300), ("hour", LONG_SECONDS)):
        (tmp_path / name).mkdir()
        # noise bursts at 8 kHz (the hour: 57 MB), written by ffmpeg without holding them
        subprocess.run([find_ffmpeg(), "-nostdin", "-loglevel", "error", "-f", "lavfi", "-i",
                        f"anoisesrc=d={seconds}:r=8000:a=0.3:seed=5,"
                        "volume='0.2+0.8*gt(sin(t),0)':eval=frame", "-c:a", "pcm_s16le",
                        str(tmp_path / name / f"{name}.wav")], check=True)
    out = subprocess.run([sys.executable, "-c", MEMORY_SCRIPT, str(checkpoint),
                          str(tmp_path / "short"), str(tmp_path / "hour"),
                          str(tmp_path / "S.npz")], capture_output=True, text=True, check=True)
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["ids"] == ["hour"] and got["windows"] == LONG_SECONDS // 10
    with np.load(tmp_path / "S.windows.npz") as z:
        assert z["starts"][-1] == LONG_SECONDS - 10
    decoded = LONG_SECONDS * 16000 * 2  # int16 at the model's rate: 115 MB
    growth = got["peak"] - got["before"]
    # measured: 2-4 MB over the five minutes' peak (2 hours: the same). Reading the file whole
    # cost 789 MB; without trimming the heap after each batch the process grew by 100-120 MB
    # over the hour, and more with longer files
    assert growth < decoded / 10, f"peak RSS grew by {growth / 1e6:.0f} MB over the short's"


@pytest.mark.parametrize("damage", ["truncated", "empty", "pickle"])
def test_damaged_checkpoint_is_named_in_predict_and_refine(checkpoint, tmp_path, damage,
                                                          capsys):
    bad = tmp_path / f"{damage}.pt"
    if damage == "truncated":
        data = checkpoint.read_bytes()
        bad.write_bytes(data[: len(data) // 2])
    elif damage == "empty":
        bad.write_bytes(b"")
    else:
        torch.save({"format": "audioset_data.checkpoint", "model": Opaque()}, bad)
    folder = tmp_path / "clips"
    folder.mkdir()
    write_wav(folder / "a.wav", 1.0)
    with pytest.raises(CheckpointError, match=str(bad)):
        predict(bad, str(folder), tmp_path / "S.npz")
    with pytest.raises(CheckpointError, match=str(bad)):
        refine_split(bad, "balanced", root=tmp_path)
    assert main(["predict", "--checkpoint", str(bad), "--source", str(folder), "--scores",
                 str(tmp_path / "S.npz")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("audioset: error: checkpoint") and bad.name in err
    assert "Traceback" not in err
