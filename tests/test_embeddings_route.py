"""The embeddings route end to end, as a user runs it: import a release, train an embedding
model with its defaults, predict a split, evaluate; every clip is scored, short and empty ones
included, and the models learn what a linear look at the frames can see."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from audioset_data.cli import main
from audioset_data.features.release import FeatureRecord, quantize, write_release

N_CLASSES = 6


def _records(n: int, seed: int, prefix: str) -> list[FeatureRecord]:
    """Clips whose frames carry their classes' directions in noise; the class shows in only
    some of a clip's frames (weak labels), a few clips are short and one has no frames."""
    rng = np.random.default_rng(seed)
    directions = np.random.default_rng(99).normal(0, 1, (N_CLASSES, 128))
    out = []
    for i in range(n):
        labels = tuple(sorted(rng.choice(N_CLASSES, size=rng.integers(1, 3), replace=False)))
        t = 10 if i % 7 else int(rng.integers(1, 10))
        if i == 3:
            t = 0
        x = rng.normal(0, 0.5, (t, 128))
        for c in labels:
            on = rng.random(t) < 0.6
            x[on] += 0.6 * directions[c]
        ytid = f"{prefix}{i:08d}"[-11:]
        out.append(FeatureRecord(ytid, float(i % 3) * 10.0, float(i % 3) * 10.0 + 10.0, labels,
                                 quantize(np.clip(x, -2, 2))))
    return out


@pytest.fixture
def release(tmp_path):
    train = write_release(tmp_path / "rel", _records(600, 1, "tr"), split="balanced")
    evaluation = write_release(tmp_path / "rel", _records(240, 2, "ev"), split="eval")
    return train, evaluation


@pytest.mark.slow
@pytest.mark.parametrize("model", ["embedding-attention", "embedding-fc"])
def test_import_train_predict_scores_every_clip(release, tmp_path, model, capsys):
    train, evaluation = release
    root = tmp_path / "data"
    assert main(["features", "import", str(train.parent.parent), "--root", str(root),
                 "--no-coverage"]) == 0
    assert main(["features", "import", str(evaluation), "--split", "eval",
                 "--root", str(root), "--no-coverage"]) == 0
    run = tmp_path / "run"
    assert main(["train", "--model", model, "--train", "balanced", "--eval", "none",
                 "--root", str(root), "--out", str(run)]) == 0
    scores = tmp_path / "S.npz"
    assert main(["predict", "--checkpoint", str(run / "last.pt"), "--source", "eval",
                 "--root", str(root), "--scores", str(scores)]) == 0
    with np.load(scores) as z:
        ids, s = z["ids"].astype(str), z["scores"]
    truth = _records(240, 2, "ev")
    keys = [f"{r.video_id}_{int(round(r.start * 1000))}" for r in truth]
    assert sorted(ids) == sorted(keys)  # every clip, the empty one included
    assert s.shape == (240, 527) and np.isfinite(s).all()
    y = np.zeros((240, N_CLASSES), bool)
    row = {k: i for i, k in enumerate(keys)}
    for r, k in zip(truth, keys, strict=True):
        y[row[k], list(r.labels)] = True
    order = [row[k] for k in ids]
    ap = [average_precision_score(y[order, c], s[:, c]) for c in range(N_CLASSES)]
    assert np.mean(ap) > 0.85, ap
    # evaluate finds the labels in the embeddings store when there is no audio cache
    report = tmp_path / "eval.json"
    assert main(["evaluate", "--scores", str(scores), "--split", "eval", "--root", str(root),
                 "--json", str(report)]) == 0
    import json

    summary = json.loads(report.read_text())["summary"]
    assert summary["clips_evaluated"] == 240
    assert summary["mAP"] == pytest.approx(np.mean(ap), abs=1e-9)


@pytest.mark.slow
def test_features_benchmark_smoke_writes_table_figures_and_probe(release, tmp_path, capsys):
    train, evaluation = release
    root = tmp_path / "data"
    assert main(["features", "import", str(train), "--root", str(root), "--no-coverage"]) == 0
    assert main(["features", "import", str(evaluation), "--split", "eval", "--root", str(root),
                 "--no-coverage"]) == 0
    out = tmp_path / "bench"
    capsys.readouterr()
    assert main(["benchmark", "--features", "--smoke", "--root", str(root),
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    for model in ("linear", "embedding-fc", "embedding-attention"):
        assert f"| {model} |" in printed
    import json

    report = json.loads((out / "features.json").read_text())
    assert [r["eval clips"] for r in report["rows"]] == [240, 240, 240]  # the eval store
    assert report["rows"][0]["mAP"] > 0.5  # the anchor sees the class directions
    probe = report["probe"]
    assert probe["trained on classes"] + probe["probed classes"] == N_CLASSES
    assert set(probe) >= {"learned embedding", "raw release embeddings (mean+max)"}
    per_class = report["per_class"]  # what the docs' figure script draws from
    assert len(per_class["prior"]) == len(per_class["dprime"]) == len(per_class["defined"])
    assert sum(per_class["defined"]) > 0 and sum(per_class["prior"]) > 0
    assert (out / "map_vs_clips.png").stat().st_size > 0
    assert (out / "dprime_vs_prior.png").stat().st_size > 0
    assert "## mAP against training clips" in (out / "features.md").read_text()
