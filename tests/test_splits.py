"""Split names: normalisation, aliases, refusals with a suggestion, and the module's isolation
from the parser (the cache layer imports it)."""

from __future__ import annotations

import doctest
import subprocess
import sys

import pytest

from audioset_data import segments
from audioset_data.cache.reader import cache_dir
from audioset_data.cli import main
from audioset_data.errors import ConfigError, SegmentsError
from audioset_data.segments import labels, splits, targets
from audioset_data.segments import table as segment_list
from audioset_data.segments.splits import (
    SplitNameError,
    canonical_split,
    looks_like_path,
    split_remote,
)


@pytest.mark.parametrize(("name", "canonical"), [
    ("EVAL", "eval"), ("eval ", "eval"), (" Eval\t", "eval"), ("balanced_train", "balanced"),
    ("Balanced-Train", "balanced"), ("unbalanced_train_segments", "unbalanced"),
    ("eval_segments", "eval"), ("UNBALANCED", "unbalanced"),
])
def test_names_are_normalised(name, canonical):
    assert canonical_split(name) == canonical
    assert split_remote(name) == segments.SPLITS[canonical]


def test_unknown_name_suggests_the_closest():
    with pytest.raises(SplitNameError, match=r"unknown split 'evl'; did you mean 'eval'\?"):
        canonical_split("evl")
    with pytest.raises(SplitNameError, match="did you mean 'balanced'"):
        canonical_split("balanced_trian")
    with pytest.raises(SplitNameError) as err:
        canonical_split("training")
    assert "did you mean" not in str(err.value) and "eval, balanced, unbalanced" in str(err.value)


def test_long_and_path_like_names_are_config_errors():
    with pytest.raises(ConfigError, match="split name of 300 characters") as err:
        canonical_split("x" * 300)
    assert len(str(err.value)) < 160  # the name is not echoed whole
    for name in ("data/eval_segments.csv", "eval.csv", "~/lists/eval", "./eval", r"C:\x\eval"):
        assert looks_like_path(name)
        with pytest.raises(ConfigError, match="looks like a file path"):
            canonical_split(name)
    with pytest.raises(ConfigError, match="empty split name"):
        canonical_split("  ")
    # one error class: a bad setting and a segment-list error, so old handlers still catch it
    assert issubclass(SplitNameError, SegmentsError) and issubclass(SplitNameError, ValueError)


def test_cli_split_typo_and_path_suggestions(capsys):
    assert main(["segments", "stats", "--split", "evl"]) == 2
    assert "did you mean 'eval'?" in capsys.readouterr().err
    assert main(["segments", "stats", "--split", "x" * 300]) == 2
    err = capsys.readouterr().err
    assert "300 characters" in err and len(err) < 200


def test_cache_folder_folds_aliases_without_the_parser(tmp_path):
    assert cache_dir("balanced_train", root=tmp_path).name == "balanced"
    code = ("import sys; import audioset_data.segments.splits; "
            "print(sorted(m for m in ('pyarrow', 'pandas', 'audioset_data.segments.parser') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                         text=True).stdout
    assert out.strip() == "[]"


def test_doctests_of_the_segment_modules():
    for module in (splits, labels, segment_list, targets):
        result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
        assert result.failed == 0, module.__name__
    assert doctest.testmod(splits).attempted >= 4
    assert doctest.testmod(targets).attempted >= 2
