"""Segment lists: real files against a plain reference parse, every bad-row case, the fetch and
parsed-cache path, selections, writing back, and the ``audioset segments`` command."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from audioset_data.cli import main
from audioset_data.errors import ChecksumMismatchError, SegmentsError
from audioset_data.segments.labels import LabelIndex
from audioset_data.segments.load import load_segments
from audioset_data.segments.parser import Parser
from audioset_data.segments.splits import canonical_split, split_remote
from audioset_data.segments.table import Segments

SPEECH, MUSIC, DOG, VEHICLE, ANIMAL = "/m/09x0r", "/m/04rlf", "/m/0bt9lr", "/m/07yv9", "/m/0jbk"


def reference_rows(path: Path) -> list[tuple[str, float, float, list[str]]]:
    """A deliberately plain parse of an official segment list."""
    rows = []
    for line in path.read_text().splitlines():
        if line.startswith("#"):
            continue
        ytid, start, end, labels = line.split(", ", 3)
        rows.append((ytid, float(start), float(end), labels.strip('"').split(",")))
    return rows


@pytest.fixture(scope="module")
def eval_ref(shared_data: Path):
    return reference_rows(shared_data / "segments" / "eval_segments.csv")


@pytest.fixture
def tiny() -> LabelIndex:
    return LabelIndex(["/m/a", "/m/b", "/m/c"], ["Alpha", "Beta", "Gamma"])


HEADER = "# Segments csv\n# num_ytids=2\n# YTID, start_seconds, end_seconds, positive_labels\n"
GOOD = 'aaaaaaaaaaa, 0.000, 10.000, "/m/a,/m/b"\n-bbbbbbbbbb, 30.000, 40.000, "/m/c"\n'


# ---------------------------------------------------------------------- split names
def test_split_names_and_aliases():
    assert split_remote("eval") == "eval_segments"
    assert split_remote("balanced_train") == "balanced_train_segments"
    assert split_remote("Unbalanced") == "unbalanced_train_segments"
    assert canonical_split("unbalanced_train") == "unbalanced"
    with pytest.raises(SegmentsError, match="eval, balanced, unbalanced"):
        canonical_split("training")


# ---------------------------------------------------------------------- real files
@pytest.mark.parametrize(("name", "rows", "labels", "short"), [
    ("eval_segments.csv", 20371, 51804, 361),
    ("balanced_train_segments.csv", 22160, 52882, 345),
])
def test_real_files_exact_counts(shared_data, index, name, rows, labels, short):
    path = shared_data / "segments" / name
    seg = Segments.from_file(path, label_index=index)
    ref = reference_rows(path)
    assert len(seg) == len(ref) == rows
    assert seg.n_labels == sum(len(r[3]) for r in ref) == labels
    assert len(seg.rejected) == 0 and len(seg.unknown) == 0
    assert (seg.label_counts() > 0).all()  # all 527 classes occur
    assert int((np.rint((seg.end - seg.start) * 1000) < 10_000).sum()) == short
    assert seg.lines[0] == 4 and seg.lines[-1] == rows + 3
    assert seg.ytids.tolist() == [r[0] for r in ref]
    np.testing.assert_array_equal(seg.start, [r[1] for r in ref])
    assert list(seg.table["labels"].iloc[7]) == ref[7][3]


def test_label_counts_match_reference(eval_seg, eval_ref, index):
    counts = eval_seg.label_counts()
    for mid in (SPEECH, MUSIC, DOG, VEHICLE, "/m/028v0c", "/g/122z_qxw"):
        expected = sum(mid in r[3] for r in eval_ref)
        assert counts[index.index(mid)] == expected, mid
    assert counts[index.index(SPEECH)] == 5324


def test_balanced_has_at_least_59_per_class(shared_data, index):
    seg = Segments.from_file(shared_data / "segments" / "balanced_train_segments.csv",
                             label_index=index)
    assert seg.label_counts().min() >= 59


def test_label_matrix_rows_match_labels(eval_seg, index):
    y = eval_seg.label_matrix
    assert y.shape == (20371, 527) and y.dtype == bool
    for i in (0, 1, 5000, 20370):
        row = eval_seg[i]
        assert sorted(index.mids[j] for j in y[[i]].indices) == sorted(row.labels)


# ---------------------------------------------------------------------- truncated head
def test_truncated_head_default_raises(shared_data, index):
    path = shared_data / "segments" / "unbalanced_train_segments.TRUNCATED_HEAD.csv"
    with pytest.raises(SegmentsError) as err:
        Segments.from_file(path, label_index=index)
    msg = str(err.value)
    assert f"{path}:970:" in msg and "truncated" in msg and "on_bad_rows='skip'" in msg


def test_truncated_head_skip_reads_complete_rows(shared_data, index):
    path = shared_data / "segments" / "unbalanced_train_segments.TRUNCATED_HEAD.csv"
    seg = Segments.from_file(path, label_index=index, on_bad_rows="skip")
    assert len(seg) == 966
    assert seg.rejected["line"].tolist() == [970]
    assert seg.rejected["text"].iloc[0] == "--xxTngdXYI, 5.000, 15.000"
    assert "found 3" in seg.rejected["reason"].iloc[0]
    assert seg[0].ytid == "---1_cCGK4M"


# ---------------------------------------------------------------------- bad rows
BAD_ROWS = [
    ('ccccccccccc, 0.000, 10.000\n', "expected 4 fields"),
    ('ccccccccccc, 0.000, 10.000, "/m/a", "x"\n', "found 5"),
    ('ccccccccccc, zero, 10.000, "/m/a"\n', "start time 'zero' is not a"),
    ('ccccccccccc, 0.000, 1e1x, "/m/a"\n', "end time '1e1x'"),
    ('ccccccccccc, 10.000, 10.000, "/m/a"\n', "end 10 is not after start 10"),
    ('ccccccccccc, 20.000, 10.000, "/m/a"\n', "end 10 is not after start 20"),
    ('short, 0.000, 10.000, "/m/a"\n', "YouTube id 'short'"),
    ('ccccccccc!c, 0.000, 10.000, "/m/a"\n', "YouTube id 'ccccccccc!c'"),
    ('ccccccccccc, 0.000, 10.000, ""\n', "empty label list"),
    ('ccccccccccc, 0.000, 10.000, "/m/a,,/m/b"\n', "empty mid"),
    ('ccccccccccc, 0.000, 10.000, "/m/a,/m/zzz"\n', "unknown label mid '/m/zzz'"),
    ('ccccccccccc, 0.000, 10.000, "/m/a,/m/b\n', "unterminated quote"),
    ('ccccccccccc, 0.000, 10.000, /m/a\n', "must be quoted"),
]


@pytest.mark.parametrize(("bad", "reason"), BAD_ROWS)
def test_bad_row_raises_with_line(tiny, bad, reason):
    text = HEADER + GOOD + bad + GOOD.replace("aaaa", "dddd").replace("-bbb", "eeee")
    with pytest.raises(SegmentsError, match="^<text>:6: ") as err:
        Segments.from_csv_text(text, label_index=tiny)
    assert reason in str(err.value)


@pytest.mark.parametrize(("bad", "reason"), BAD_ROWS)
def test_bad_row_skipped_and_reported(tiny, bad, reason):
    text = HEADER + GOOD + bad + GOOD.replace("aaaa", "dddd").replace("-bbb", "eeee")
    seg = Segments.from_csv_text(text, label_index=tiny, on_bad_rows="skip")
    assert len(seg) == 4
    assert seg.lines.tolist() == [4, 5, 7, 8]
    assert seg.rejected["line"].tolist() == [6]
    assert seg.rejected["text"].iloc[0] == bad.rstrip("\n")
    assert reason in seg.rejected["reason"].iloc[0]
    assert seg.n_labels == 6


def test_error_counts_all_bad_rows(tiny):
    text = HEADER + "x, 1\n" + GOOD + "y, 2\n"
    with pytest.raises(SegmentsError, match=r"<text>:4: .*2 bad rows in all"):
        Segments.from_csv_text(text, label_index=tiny)


def test_truncated_last_line_mid_label_list(tiny):
    text = HEADER + GOOD + 'ccccccccccc, 0.000, 10.000, "/m/a,/m/'
    with pytest.raises(SegmentsError, match=r"<text>:6: unterminated quote.*truncated"):
        Segments.from_csv_text(text, label_index=tiny)


def test_complete_last_line_without_newline_is_fine(tiny):
    seg = Segments.from_csv_text(HEADER + GOOD.rstrip("\n"), label_index=tiny)
    assert len(seg) == 2 and seg[1].labels == ("/m/c",)


def test_crlf_blank_lines_and_spacing(tiny):
    text = (HEADER + 'aaaaaaaaaaa,0.5,10.5,"/m/a, /m/b"\r\n\r\n'
            '-bbbbbbbbbb ,  30.000 , 40 , "/m/c"\r\n')
    seg = Segments.from_csv_text(text, label_index=tiny)
    assert len(seg) == 2
    assert seg.lines.tolist() == [4, 6]
    assert seg[0].labels == ("/m/a", "/m/b")
    assert seg.start.tolist() == [0.5, 30.0] and seg.end.tolist() == [10.5, 40.0]


def test_unknown_labels_policies(tiny):
    text = HEADER + 'aaaaaaaaaaa, 0.000, 10.000, "/m/a,/m/new"\n' + \
        'zzzzzzzzzzz, 0.000, 10.000, "/m/new"\n'
    with pytest.raises(SegmentsError, match="<text>:4: unknown label mid '/m/new'"):
        Segments.from_csv_text(text, label_index=tiny)
    dropped = Segments.from_csv_text(text, label_index=tiny, unknown_labels="drop",
                                     on_bad_rows="skip")
    assert len(dropped) == 1 and dropped[0].labels == ("/m/a",)
    assert dropped.unknown.values.tolist() == [[4, "aaaaaaaaaaa", "/m/new"]]
    assert dropped.rejected["line"].tolist() == [5]
    assert "no known label" in dropped.rejected["reason"].iloc[0]
    kept = Segments.from_csv_text(text, label_index=tiny, unknown_labels="keep")
    assert len(kept) == 2 and kept[0].labels == ("/m/a", "/m/new")
    assert kept.n_labels == 1  # unknown mids stay out of the matrix
    assert kept.unknown["line"].tolist() == [4, 5]
    with pytest.raises(SegmentsError, match="unknown_labels='maybe'"):
        Segments.from_csv_text(text, label_index=tiny, unknown_labels="maybe")


def test_duplicates_reported_or_rejected(tiny):
    text = HEADER + GOOD + 'aaaaaaaaaaa, 0.000, 10.000, "/m/c"\n' + \
        'aaaaaaaaaaa, 5.000, 15.000, "/m/c"\n'
    seg = Segments.from_csv_text(text, label_index=tiny)
    assert len(seg) == 4
    dup = seg.duplicates()
    assert dup["line"].tolist() == [4, 6] and dup["first_line"].tolist() == [4, 4]
    with pytest.raises(SegmentsError, match="<text>:6: duplicate of line 4"):
        Segments.from_csv_text(text, label_index=tiny, duplicates="error")
    strict = Segments.from_csv_text(text, label_index=tiny, duplicates="error",
                                    on_bad_rows="skip")
    assert strict.lines.tolist() == [4, 5, 7] and strict.rejected["line"].tolist() == [6]


def test_repeated_mid_counts_once(tiny):
    seg = Segments.from_csv_text(HEADER + 'aaaaaaaaaaa, 0, 10, "/m/b,/m/a,/m/b"\n',
                                 label_index=tiny)
    assert seg.n_labels == 2 and seg.label_counts().tolist() == [1, 1, 0]


def test_non_utf8_names_line(tiny):
    data = (HEADER + GOOD).encode() + b'\xff\xfeaaaaaaaaa, 0, 10, "/m/a"\n'
    with pytest.raises(SegmentsError, match="<text>:6: not UTF-8"):
        Segments.from_csv_text(data, label_index=tiny)


def test_missing_file_and_unknown_split(tmp_path, tiny):
    with pytest.raises(SegmentsError, match="not found"):
        Segments.from_file(tmp_path / "nope.csv", label_index=tiny)
    with pytest.raises(FileNotFoundError, match="not found"):  # also a FileNotFoundError
        load_segments(str(tmp_path / "nope.csv"), label_index=tiny)
    with pytest.raises(SegmentsError, match="unknown split 'nope'"):
        load_segments("nope", label_index=tiny)


# ---------------------------------------------------------------------- writing back
def test_to_csv_round_trips_official_file(tmp_path, shared_data, eval_seg, index):
    out = eval_seg.to_csv(tmp_path / "eval.csv")
    original = (shared_data / "segments" / "eval_segments.csv").read_text().splitlines()
    written = out.read_text().splitlines()
    assert written[1:] == original[1:]  # identical apart from the creation date
    again = Segments.from_file(out, label_index=index)
    assert (again.label_matrix != eval_seg.label_matrix).nnz == 0
    assert again.ytids.tolist() == eval_seg.ytids.tolist()


def test_to_csv_of_empty_selection(tmp_path, eval_seg, index):
    empty = eval_seg[np.zeros(len(eval_seg), dtype=bool)]
    out = empty.to_csv(tmp_path / "none.csv")
    assert len(Segments.from_file(out, label_index=index, allow_empty=True)) == 0
    with pytest.raises(SegmentsError, match="no segment rows"):
        Segments.from_file(out, label_index=index)


# ---------------------------------------------------------------------- selection
def test_any_all_and_subtree_match_reference(eval_seg, eval_ref, ontology, index):
    dogs = eval_seg.any_of("Dog")
    assert dogs.ytids.tolist() == [r[0] for r in eval_ref if DOG in r[3]]
    assert len(eval_seg.any_of(DOG)) == len(dogs)
    both = eval_seg.all_of([SPEECH, "Music"])
    assert len(both) == sum(SPEECH in r[3] and MUSIC in r[3] for r in eval_ref)
    either = eval_seg.select([SPEECH, MUSIC], how="any")
    assert len(either) == sum(SPEECH in r[3] or MUSIC in r[3] for r in eval_ref)
    sub = ontology.descendants(ANIMAL, with_self=True)
    animals = eval_seg.any_of("Animal", ontology=ontology, subtree=True)
    assert animals.ytids.tolist() == [r[0] for r in eval_ref if sub & set(r[3])]
    assert len(animals) > len(eval_seg.any_of("Animal"))
    vehicle_and_speech = eval_seg.all_of([VEHICLE, SPEECH], ontology=ontology, subtree=True)
    vsub = ontology.descendants(VEHICLE, with_self=True)
    assert len(vehicle_and_speech) == sum(
        bool(vsub & set(r[3])) and bool(ontology.descendants(SPEECH, with_self=True)
                                        & set(r[3])) for r in eval_ref)


def test_selection_errors(eval_seg, ontology):
    with pytest.raises(SegmentsError, match="neither a mid nor a name"):
        eval_seg.any_of("No such sound")
    with pytest.raises(SegmentsError, match="needs an ontology"):
        eval_seg.any_of("Animal", subtree=True)
    with pytest.raises(SegmentsError, match="not one of the 527 labels"):
        eval_seg.any_of("Oboe", ontology=ontology)  # in the ontology, not a label
    with pytest.raises(SegmentsError, match="'any' or 'all'"):
        eval_seg.select(SPEECH, how="most")


def test_exclude_blacklisted(eval_seg, eval_ref, ontology, index):
    black = {m for m in index.mids if ontology.is_blacklisted(m)}
    assert len(black) == 12
    kept = eval_seg.exclude_blacklisted(ontology)
    assert len(kept) == sum(not set(r[3]) <= black for r in eval_ref)
    assert len(kept) < len(eval_seg)


def test_sample_per_class(eval_seg, eval_ref):
    a = eval_seg.sample_per_class(5, seed=3)
    b = eval_seg.sample_per_class(5, seed=3)
    assert a.ytids.tolist() == b.ytids.tolist()
    assert a.ytids.tolist() != eval_seg.sample_per_class(5, seed=4).ytids.tolist()
    assert (a.label_counts() >= 5).all()
    assert len(a) <= 5 * 527
    assert (np.diff(a.lines) > 0).all()  # source order kept
    only = eval_seg.sample_per_class(2, seed=0, classes=[DOG])
    assert len(only) == 2 and all(DOG in only[i].labels for i in range(2))


def test_set_operations(eval_seg):
    a = eval_seg[:1000]
    b = eval_seg[500:1500]
    key = lambda s: {(r.ytid, r.start) for r in (s[i] for i in range(len(s)))}  # noqa: E731
    assert key(a | b) == key(a) | key(b) and len(a | b) == 1500
    assert key(a & b) == key(a) & key(b) and len(a & b) == 500
    assert key(a - b) == key(a) - key(b) and len(a - b) == 500
    assert (a | b).n_labels == eval_seg[:1500].n_labels


def test_getitem_forms(eval_seg):
    assert len(eval_seg[[0, 2, 4]]) == 3
    assert eval_seg[[4, 0]].ytids.tolist() == [eval_seg[4].ytid, eval_seg[0].ytid]
    assert eval_seg[-1].ytid == eval_seg[len(eval_seg) - 1].ytid
    mask = np.zeros(len(eval_seg), dtype=bool)
    mask[10] = True
    assert eval_seg[mask][0] == eval_seg[10]
    with pytest.raises(IndexError):
        eval_seg[len(eval_seg)]
    with pytest.raises(IndexError):
        eval_seg[np.ones(3, dtype=bool)]


def test_propagated_adds_ancestors(eval_seg, ontology, index):
    y = eval_seg.propagated(ontology)
    dog_rows = eval_seg.label_matrix[:, [index.index(DOG)]].indices
    assert y[dog_rows][:, [index.index(ANIMAL)]].nnz == len(dog_rows)
    assert y.nnz > eval_seg.n_labels


# ---------------------------------------------------------------------- fetch and cache
def test_load_split_via_mirror_and_parsed_cache(mirror, data_root, monkeypatch):
    seg = load_segments("eval", progress=False)
    assert len(seg) == 20371 and seg.n_labels == 51804
    assert mirror.requests["/csv/eval_segments.csv"] == 1
    cached = list((data_root / "segments").glob("eval_segments-*.arrow"))
    assert len(cached) == 1

    def no_parse(self, progress=None):
        raise AssertionError("parsed again although the cache is valid")

    monkeypatch.setattr(Parser, "run", no_parse)
    again = load_segments("eval")
    assert mirror.requests["/csv/eval_segments.csv"] == 1
    assert (again.label_matrix != seg.label_matrix).nnz == 0
    assert again.ytids.tolist() == seg.ytids.tolist()
    assert again.lines.tolist() == seg.lines.tolist()


def test_parsed_cache_invalidated_by_changed_source(tmp_path, tiny, data_root):
    path = tmp_path / "list.csv"
    path.write_text(HEADER + GOOD)
    first = load_segments(path, label_index=tiny)
    assert len(first) == 2
    assert len(load_segments(path, label_index=tiny)) == 2
    path.write_text(HEADER + GOOD + 'ccccccccccc, 0.000, 10.000, "/m/b"\n')
    changed = load_segments(path, label_index=tiny)
    assert len(changed) == 3 and changed[2].labels == ("/m/b",)
    assert len(list((data_root / "segments").glob("list-*.arrow"))) == 2


def test_parsed_cache_keeps_rejected_report(tmp_path, tiny):
    path = tmp_path / "bad.csv"
    path.write_text(HEADER + GOOD + "truncated, 1")
    seg = load_segments(path, label_index=tiny, on_bad_rows="skip")
    again = load_segments(path, label_index=tiny, on_bad_rows="skip")
    assert again.rejected.values.tolist() == seg.rejected.values.tolist()
    assert again.rejected["line"].tolist() == [6]
    with pytest.raises(SegmentsError, match="bad.csv:6:"):  # other options, other cache entry
        load_segments(path, label_index=tiny)


def test_corrupt_parsed_cache_is_rebuilt(tmp_path, tiny, data_root):
    path = tmp_path / "list.csv"
    path.write_text(HEADER + GOOD)
    load_segments(path, label_index=tiny)
    (cache,) = (data_root / "segments").glob("list-*.arrow")
    cache.write_bytes(b"not an arrow file")
    assert len(load_segments(path, label_index=tiny)) == 2


def test_unbalanced_head_from_mirror(mirror, shared_data):
    mirror.add("csv/unbalanced_train_segments.csv",
               shared_data / "segments" / "unbalanced_train_segments.TRUNCATED_HEAD.csv")
    with pytest.raises(ChecksumMismatchError):
        load_segments("unbalanced")
    with pytest.raises(SegmentsError, match=r"unbalanced_train_segments\.csv:970: .*truncated"):
        load_segments("unbalanced_train", accept_new_upstream=True)
    seg = load_segments("unbalanced", accept_new_upstream=True, on_bad_rows="skip")
    assert len(seg) == 966 and seg.rejected["line"].tolist() == [970]


# ---------------------------------------------------------------------- command line
def test_cli_stats_and_plot(mirror, tmp_path, capsys):
    png = tmp_path / "priors.png"
    assert main(["segments", "stats", "--split", "eval", "--plot", str(png)]) == 0
    out = capsys.readouterr().out
    assert "rows: 20,371" in out and "labels: 51,804" in out
    assert "rejected rows: 0" in out and "shorter than 10 s: 361" in out
    assert "Music" in out.split("least frequent")[0]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_stats_truncated_unbalanced(mirror, shared_data, capsys):
    mirror.add("csv/unbalanced_train_segments.csv",
               shared_data / "segments" / "unbalanced_train_segments.TRUNCATED_HEAD.csv")
    args = ["segments", "stats", "--split", "unbalanced", "--accept-new-upstream"]
    assert main(args) == 2
    assert ":970:" in capsys.readouterr().err
    assert main([*args, "--allow-truncated"]) == 0
    out = capsys.readouterr().out
    assert "rows: 966" in out and "rejected rows: 1" in out and "line 970" in out


def test_cli_select_subtree_per_class(mirror, tmp_path, capsys, index, ontology, eval_seg):
    out_csv = tmp_path / "vehicles.csv"
    assert main(["segments", "select", "--split", "eval", "--class", "Vehicle", "--subtree",
                 "--output", str(out_csv)]) == 0
    assert "written to" in capsys.readouterr().out
    written = Segments.from_file(out_csv, label_index=index)
    expected = eval_seg.any_of("Vehicle", ontology=ontology, subtree=True)
    assert written.ytids.tolist() == expected.ytids.tolist()
    assert main(["segments", "select", "--split", "eval", "--class", "Dog", "--per-class", "4",
                 "--seed", "1", "-o", str(out_csv)]) == 0
    assert len(Segments.from_file(out_csv, label_index=index)) == 4


def test_cli_select_bad_class_is_one_line_error(mirror, tmp_path, capsys):
    assert main(["segments", "select", "--split", "eval", "--class", "Nope",
                 "-o", str(tmp_path / "x.csv")]) == 2
    assert "Nope" in capsys.readouterr().err


def test_class_typo_suggests_without_and_with_ontology(eval_seg, ontology):
    with pytest.raises(SegmentsError, match=r"did you mean 'Vehicle' \(/m/07yv9\)\?"):
        eval_seg.any_of("Vehicel")
    with pytest.raises(SegmentsError, match=r"close names: 'Vehicle' \(/m/07yv9\)"):
        eval_seg.any_of("Vehicel", ontology=ontology)
    with pytest.raises(SegmentsError, match=r"6,638 of these 20,371 rows: select the subtree"):
        eval_seg.any_of("Human voice", ontology=ontology)
    assert eval_seg.count_rows("Vehicle") == 780
    assert eval_seg.count_rows("Vehicle", ontology=ontology, subtree=True) == 2039


def test_cli_select_class_typo_suggests(mirror, tmp_path, capsys):
    out = tmp_path / "x.csv"
    assert main(["segments", "select", "--split", "eval", "--class", "Vehicel",
                 "-o", str(out)]) == 2
    assert "close names: 'Vehicle'" in capsys.readouterr().err and not out.exists()


def test_cli_select_hints_at_subtree(mirror, tmp_path, capsys):
    out = tmp_path / "x.csv"
    assert main(["segments", "select", "--split", "eval", "--class", "Vehicle",
                 "-o", str(out)]) == 0
    captured = capsys.readouterr()
    assert "780 of 20,371 rows" in captured.out
    assert "hint: 'Vehicle' itself is on 780 rows, its ontology subtree on 2,039: add " \
           "--subtree" in captured.err
    assert main(["segments", "select", "--split", "eval", "--class", "Dog",
                 "-o", str(out)]) == 0
    assert "hint" not in capsys.readouterr().err  # its subtree adds little
    assert main(["segments", "select", "--split", "eval", "--class", "Human voice",
                 "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "not one of the 527 labels, so no row carries it itself" in err
    assert "6,638" in err and "--subtree" in err


def test_cli_missing_file_says_not_found(mirror, capsys):
    assert main(["segments", "stats", "--file", "/nonexistent.csv"]) == 2
    err = capsys.readouterr().err
    assert "'/nonexistent.csv' not found" in err and err.count("\n") == 1


def test_cli_select_dash_writes_standard_output(mirror, tmp_path, capsys, monkeypatch, index):
    monkeypatch.chdir(tmp_path)
    assert main(["segments", "select", "--split", "eval", "--class", "Dog", "-o", "-"]) == 0
    captured = capsys.readouterr()
    assert not (tmp_path / "-").exists()
    assert captured.out.startswith("# Segments csv created")
    assert "230 of 20,371 rows" in captured.err and "standard output" in captured.err
    seg = Segments.from_csv_text(captured.out, label_index=index)
    assert len(seg) == 230 and seg.any_of("Dog").ytids.tolist() == seg.ytids.tolist()
