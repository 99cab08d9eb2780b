"""What a download run reports: :class:`DownloadReport`, and the ``report.csv`` (per class)
and ``failures.csv`` (per failed segment) written into the cache folder by every run, also
one that stops early. Both are written atomically: a run stopped by a full disk leaves the
previous reports whole, never an empty file."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import scipy.sparse as sp

from audioset_data.cache.manifest import Manifest
from audioset_data.fileio import atomic_write
from audioset_data.segments.labels import LabelIndex

from .failures import is_name_lookup
from .plan import _FAILED, _OK, _PENDING, Plan, _statuses

logger = logging.getLogger("audioset_data.download")

#: Columns of ``failures.csv``.
FAILURE_COLUMNS = ("key", "ytid", "start", "end", "reason", "permanent", "attempts", "detail")


@dataclass
class DownloadReport:
    """What a run did and how far the cache is from the full list.

    ``to_fetch`` is the number of clips the run set out to fetch (pending ones, transient
    failures, and permanent ones with ``retry_failed``); a ``dry_run`` stops there.
    """

    folder: Path
    requested: int
    ok: int
    failed: int
    pending: int
    fetched_now: int
    failed_now: int
    elapsed_s: float
    by_reason: dict[str, int] = field(default_factory=dict)
    per_class: pd.DataFrame | None = None
    report_path: Path | None = None
    to_fetch: int = 0
    #: failed clips whose host name could not be resolved
    name_lookups: int = 0

    @property
    def offline(self) -> bool:
        """Whether every failure is a failed name lookup (the machine is likely offline)."""
        return self.failed > 0 and self.name_lookups == self.failed

    @property
    def nothing_cached(self) -> bool:
        """Whether not one clip of the list is cached (the command line then exits 1)."""
        return self.requested > 0 and self.ok == 0

    @property
    def clips_per_s(self) -> float:
        """Clips cached per second in this run."""
        return self.fetched_now / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def summary(self) -> str:
        """A few lines for people: totals, coverage, failures by reason."""
        cover = 100.0 * self.ok / self.requested if self.requested else 0.0
        lines = [
            f"cache {self.folder}: {self.ok}/{self.requested} clips cached ({cover:.1f} %), "
            f"{self.failed} failed, {self.pending} pending",
            f"this run: {self.fetched_now} fetched, {self.failed_now} failed in "
            f"{self.elapsed_s:.1f} s ({self.clips_per_s:.2f} clips/s)",
        ]
        for reason, n in sorted(self.by_reason.items(), key=lambda kv: -kv[1]):
            lines.append(f"  failed {reason}: {n}")
        if self.offline:
            lines.append("every failure is a failed name lookup: offline? (check the network "
                         "or proxy; failures.csv has each message)")
        if self.per_class is not None and self.failed:
            pc_ = self.per_class.assign(
                cover=self.per_class["cached"] / self.per_class["requested"])
            pc_ = pc_[pc_["cover"] < 1]
            worst = pc_.sort_values(["cover", "requested"], ascending=[True, False]).head(5)
            lines.append("lowest coverage: " + "; ".join(
                f"{r.display_name} {r.cached}/{r.requested}" for r in worst.itertuples()))
        return "\n".join(lines)


def _summary(folder: Path, plan: Plan, codes: np.ndarray, failed: pd.DataFrame,
             elapsed: float, to_fetch: int, fetched: int = 0,
             failed_now: int = 0) -> DownloadReport:
    counts = np.bincount(codes, minlength=3)
    reasons = failed["reason"].fillna("unknown").value_counts()
    return DownloadReport(
        folder=folder, requested=len(plan), ok=int(counts[_OK]), failed=int(counts[_FAILED]),
        pending=int(counts[_PENDING]), fetched_now=fetched, failed_now=failed_now,
        elapsed_s=elapsed, by_reason={str(k): int(v) for k, v in reasons.items()},
        to_fetch=to_fetch,
    )


def _details(manifest: Manifest) -> dict[str, str]:
    """The recorded detail (the underlying message) of every failed segment."""
    with manifest.transaction() as conn:
        return dict(conn.execute(
            "SELECT key, COALESCE(detail, '') FROM clips WHERE status = 'failed'").fetchall())


def _report(manifest: Manifest, folder: Path, plan: Plan, index: LabelIndex, elapsed: float,
            to_fetch: int, fetched: int = 0, failed_now: int = 0,
            suffix: str = "") -> DownloadReport:
    """The run's report, from the manifest's statuses; writes ``report{suffix}.csv`` (per
    class) and ``failures{suffix}.csv`` (per failed segment, with its detail)."""
    codes, failed = _statuses(manifest, plan.table["key"])
    report = _summary(folder, plan, codes, failed, elapsed, to_fetch, fetched, failed_now)
    report.per_class = _per_class(plan.targets(index), codes, failed, index)
    report.report_path = folder / f"report{suffix}.csv"
    with atomic_write(report.report_path, "w", encoding="utf-8") as fh:
        report.per_class.to_csv(fh, index=False)
    rows = plan.table.select(["ytid", "start", "end"]).take(pa.array(failed["pos"].to_numpy()))
    details = _details(manifest) if len(failed) else {}
    report.name_lookups = sum(is_name_lookup(details.get(k, "")) for k in failed["key"])
    failures = pd.DataFrame({
        "key": failed["key"].to_numpy(), "ytid": rows["ytid"].to_pylist(),
        "start": rows["start"].to_numpy(), "end": rows["end"].to_numpy(),
        "reason": failed["reason"].to_numpy(), "permanent": failed["permanent"].to_numpy(),
        "attempts": failed["attempts"].to_numpy(),
        "detail": [details.get(k, "") for k in failed["key"]],
    }, columns=list(FAILURE_COLUMNS))
    with atomic_write(folder / f"failures{suffix}.csv", "w", encoding="utf-8") as fh:
        failures.to_csv(fh, index=False)
    return report


def _write_reports_quietly(manifest: Manifest, folder: Path, plan: Plan, index: LabelIndex,
                           fetched: int, failed_now: int, suffix: str) -> None:
    """Write the reports of a run that stopped early; never raise over the stop's error."""
    try:
        _report(manifest, folder, plan, index, 0.0, 0, fetched, failed_now, suffix=suffix)
        logger.info("reports of the stopped run written to %s", folder)
    except Exception as exc:  # noqa: BLE001
        logger.warning("could not write the reports of the stopped run: %s", exc)


def _per_class(targets: sp.csr_array, codes: np.ndarray, failed: pd.DataFrame,
               index: LabelIndex) -> pd.DataFrame:
    """Per label: requested, cached, failed, pending, and failures by reason."""
    parent = np.repeat(np.arange(targets.shape[0]), np.diff(targets.indptr))
    mid = targets.indices.astype(np.int64)
    n = len(index)
    by_status = np.bincount(mid * 3 + codes[parent], minlength=3 * n).reshape(n, 3)
    reasons = failed["reason"].fillna("unknown")
    reason_names = sorted(set(reasons))
    width = max(1, len(reason_names))
    row_reason = np.full(len(codes), -1, np.int64)
    lookup = {r: i for i, r in enumerate(reason_names)}
    row_reason[failed["pos"].to_numpy()] = [lookup[r] for r in reasons]
    r = row_reason[parent]
    has = r >= 0
    by_reason = np.bincount(mid[has] * width + r[has], minlength=n * width).reshape(n, width)
    frame = index.to_frame()
    out = pd.DataFrame({"mid": frame["mid"], "index": frame["index"],
                        "display_name": frame["display_name"]})
    out["requested"] = by_status.sum(axis=1)
    out["cached"] = by_status[:, _OK]
    out["failed"] = by_status[:, _FAILED]
    out["pending"] = by_status[:, _PENDING]
    for j, reason in enumerate(reason_names):
        out[f"failed_{reason}"] = by_reason[:, j]
    return out[out["requested"] > 0].reset_index(drop=True)


__all__ = ["FAILURE_COLUMNS", "DownloadReport"]
