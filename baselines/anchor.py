"""The linear anchor: pooled log-mel statistics and one logistic regression per class.

A clip becomes 192 numbers, the mean, standard deviation and maximum over time of each of its
64 log-mel bands (the package's own VGGish front end, the features of the learned models), and
every class present in the training split gets a logistic regression on the standardised
statistics. This is what fifteen lines of librosa and scikit-learn do, and a baseline that
loses to it has not learnt anything a linear model on pooled features could not (the issue
that asked for it: on 10 classes of real recordings it reached mAP 0.830 where ``audioset
train --model fc`` with its old defaults reached 0.434). The benchmark reports it as a row.

scikit-learn's ``LogisticRegression`` (L2, ``C=1``, lbfgs) is used when it is installed;
otherwise the same objective is minimised with torch's L-BFGS (both convex, so they agree to
the optimiser's tolerance).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from tqdm.auto import tqdm

from audioset_data.config import PathLike
from audioset_data.errors import ConfigError
from audioset_data.evaluation.harness import EvaluationResult, evaluate
from audioset_data.loaders import VGGISH, AudioSetDataset, LogMel, collate
from audioset_data.segments.labels import LabelIndex

logger = logging.getLogger(__name__)

__all__ = ["FEATURE", "AnchorResult", "LinearAnchor", "pooled_logmel", "run_anchor"]

#: The anchor's feature, as the benchmark table names it.
FEATURE = "log-mel 64 bands, mean/std/max over the clip, 16 kHz"


@torch.no_grad()
def pooled_logmel(dataset: Any, *, batch_size: int = 16, device: str = "cpu",
                  progress: bool = False) -> tuple[list[str], np.ndarray]:
    """Clip keys and their pooled log-mel statistics ``(n, 192)`` float32: per band the mean,
    standard deviation and maximum over the clip's real frames (VGGish front end)."""
    frontend = LogMel(VGGISH, input_rate=dataset.cache.sample_rate).to(device)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, collate_fn=collate)
    keys: list[str] = []
    rows: list[np.ndarray] = []
    for batch in tqdm(loader, desc="log-mel statistics", disable=not progress, leave=False):
        wave = batch["waveform"].to(device)
        logmel = frontend(wave, batch["length"])
        counts = frontend.frame_counts(batch["length"], wave.shape[-1]).clamp_min(1)
        real = (torch.arange(logmel.shape[1])[None, :] < counts[:, None]).to(device)
        n = counts.to(device, logmel.dtype)[:, None]
        w = real[..., None].to(logmel.dtype)
        mean = (logmel * w).sum(1) / n
        std = (((logmel - mean[:, None]) ** 2 * w).sum(1) / n).sqrt()
        top = logmel.masked_fill(~real[..., None], -torch.inf).amax(1)
        rows.append(torch.cat([mean, std, top], 1).float().cpu().numpy())
        keys.extend(batch["key"])
    width = 3 * VGGISH.n_mels
    return keys, np.concatenate(rows) if rows else np.zeros((0, width), np.float32)


@dataclass
class LinearAnchor:
    """Standardisation and one logistic regression per class present in training."""

    mean: np.ndarray       # (d,)
    std: np.ndarray        # (d,)
    coef: np.ndarray       # (d, n_present)
    intercept: np.ndarray  # (n_present,)
    classes: np.ndarray    # (n_present,) class numbers the columns belong to
    always: np.ndarray     # classes every training clip has (scored 1)
    n_classes: int
    solver: str

    @classmethod
    def fit(cls, x: np.ndarray, y: Any, *, c: float = 1.0, solver: str = "auto") -> LinearAnchor:
        """Fit on features ``x`` (n, d) and targets ``y`` (n, classes, dense or sparse).

        A class with no positive (or no negative) clip gets no regression and scores 0 (1).
        ``solver``: ``"sklearn"``, ``"torch"`` or ``"auto"`` (scikit-learn when installed).
        """
        y = np.asarray(sp.csr_array(y).toarray() if sp.issparse(y) else y).astype(bool)
        x = np.asarray(x, np.float64)
        if x.ndim != 2 or y.ndim != 2 or x.shape[0] != y.shape[0] or not len(x):
            raise ConfigError(f"anchor: features {x.shape} and targets {y.shape} do not match")
        if not c > 0:
            raise ConfigError(f"anchor: C={c!r} must be positive")
        mean, std = x.mean(0), x.std(0) + 1e-6
        z = (x - mean) / std
        pos = y.sum(0)
        classes = np.flatnonzero((pos > 0) & (pos < len(y)))
        if solver == "auto":
            solver = "sklearn" if _have_sklearn() else "torch"
        if solver == "sklearn":
            coef, intercept = _fit_sklearn(z, y[:, classes], c)
        elif solver == "torch":
            coef, intercept = _fit_torch(z, y[:, classes], c)
        else:
            raise ConfigError(f"anchor: solver={solver!r}: use 'sklearn', 'torch' or 'auto'")
        return cls(mean, std, coef, intercept, classes, np.flatnonzero(pos == len(y)),
                   y.shape[1], solver)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Probabilities ``(n, n_classes)`` float32."""
        z = (np.asarray(x, np.float64) - self.mean) / self.std
        out = np.zeros((len(z), self.n_classes), np.float32)
        out[:, self.classes] = 1.0 / (1.0 + np.exp(-(z @ self.coef + self.intercept)))
        out[:, self.always] = 1.0
        return out


def _have_sklearn() -> bool:
    try:  # scikit-learn is optional (the dev extra)
        import sklearn.linear_model  # noqa: F401
    except ImportError:
        return False
    return True


def _fit_sklearn(z: np.ndarray, y: np.ndarray, c: float) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.linear_model import LogisticRegression  # optional dependency

    coef = np.zeros((z.shape[1], y.shape[1]))
    intercept = np.zeros(y.shape[1])
    for j in range(y.shape[1]):
        model = LogisticRegression(C=c, max_iter=2000).fit(z, y[:, j])
        coef[:, j], intercept[j] = model.coef_[0], model.intercept_[0]
    return coef, intercept


def _fit_torch(z: np.ndarray, y: np.ndarray, c: float) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's objective, ``C * sum(log loss) + |w|^2 / 2`` per class (intercept not
    penalised), for all classes at once with L-BFGS in float64."""
    zt, yt = torch.from_numpy(z), torch.from_numpy(y.astype(np.float64))
    w = torch.zeros(z.shape[1], y.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros(y.shape[1], dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=1000, tolerance_grad=1e-9,
                            tolerance_change=1e-12, history_size=20,
                            line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = c * torch.nn.functional.binary_cross_entropy_with_logits(
            zt @ w + b, yt, reduction="sum") + 0.5 * (w * w).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return w.detach().numpy(), b.detach().numpy()


@dataclass
class AnchorResult:
    """The anchor's evaluation on the held-out split, its scores file and its run time."""

    evaluation: EvaluationResult
    scores: Path | None
    seconds: float
    solver: str
    n_train: int


def _dataset(split: str, root: PathLike | None, max_clips: int) -> AudioSetDataset:
    data = AudioSetDataset(split, root=root)
    if max_clips and len(data) > max_clips:
        data = AudioSetDataset(data.cache, selection=np.arange(max_clips))
    return data


def run_anchor(train: str, eval_split: str, *, root: PathLike | None = None,
               max_clips: int = 0, out: PathLike | None = None, c: float = 1.0,
               solver: str = "auto", progress: bool = False) -> AnchorResult:
    """Fit the anchor on the cached ``train`` split, score ``eval_split`` and evaluate it with
    the harness; with ``out`` the scores are written to ``out/scores.npz`` (``ids``,
    ``scores``: the format ``audioset evaluate`` reads)."""
    t0 = time.perf_counter()
    train_set = _dataset(train, root, max_clips)
    eval_set = _dataset(eval_split, root, max_clips)
    if list(train_set.cache.label_mids) != list(eval_set.cache.label_mids):
        raise ConfigError(f"anchor: {train!r} and {eval_split!r} have different label sets")
    keys, x = pooled_logmel(train_set, progress=progress)
    where = {k: i for i, k in enumerate(train_set.keys)}
    anchor = LinearAnchor.fit(x, train_set.targets[[where[k] for k in keys]], c=c,
                              solver=solver)
    ids, xe = pooled_logmel(eval_set, progress=progress)
    scores = anchor.predict(xe)
    where = {k: i for i, k in enumerate(eval_set.keys)}
    mids = eval_set.cache.label_mids
    result = evaluate(scores, eval_set.targets[[where[k] for k in ids]], clip_ids=ids,
                      label_index=LabelIndex(mids, mids), n_listed=len(eval_set))
    path = None
    if out is not None:
        path = Path(out) / "scores.npz"
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, ids=np.asarray(ids), scores=scores)
    seconds = time.perf_counter() - t0
    logger.info("anchor (%s): mAP %.3f on %d clips in %.1f s", anchor.solver,
                float(result.metrics.mean_ap), len(ids), seconds)
    return AnchorResult(result, path, seconds, anchor.solver, len(keys))
