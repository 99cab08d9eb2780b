"""Strong-label mids as label-index columns, and the report of the mids that have none.

The strong vocabulary is not the 527-label index; both the event tables and the frame matrices
map mids through :func:`label_columns` and count what does not map with :func:`unmapped_table`.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from audioset_data.segments.labels import LabelIndex


def label_columns(mids: pd.Series, label_index: LabelIndex) -> np.ndarray:
    """Column of each mid in ``label_index``, -1 where the mid is not a label."""
    codes, uniques = pd.factorize(mids)
    cols = np.array([label_index.index(m) if m in label_index else -1 for m in uniques],
                    dtype=np.int64)
    return cols[codes] if len(codes) else np.empty(0, dtype=np.int64)


def unmapped_table(rows: pd.DataFrame, vocabulary: Mapping[str, str]) -> pd.DataFrame:
    """Mids with no label column: display name, row count and clip count, most rows first."""
    sub = rows.loc[rows["label"] < 0, ["mid", "key"]]
    if sub.empty:
        return pd.DataFrame({"mid": pd.Series(dtype=str), "display_name": pd.Series(dtype=str),
                             "rows": pd.Series(dtype=np.int64),
                             "clips": pd.Series(dtype=np.int64)})
    out = sub.groupby("mid", sort=False).agg(rows=("key", "size"), clips=("key", "nunique"))
    out = out.reset_index()
    out.insert(1, "display_name", out["mid"].map(lambda m: vocabulary.get(m, "")))
    return out.sort_values(["rows", "mid"], ascending=[False, True], ignore_index=True)


__all__ = ["label_columns", "unmapped_table"]
