"""Strong labels: parsers on real filtered rows, label mapping, frame targets, remotes."""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from audioset_data.cache.manifest import clip_key
from audioset_data.errors import (
    AudioSetError,
    ChecksumMismatchError,
    RemoteError,
    StrongLabelsError,
)
from audioset_data.remote import REMOTES, fetch
from audioset_data.strong.events import (
    load_framed,
    load_strong,
    load_vocabulary,
    vocabulary_mapping,
)
from audioset_data.strong.frames import frame_targets

GUN, MACHINE_GUN = "/m/032s66", "/m/04zjc"
HEADER = "segment_id\tstart_time_seconds\tend_time_seconds\tlabel\n"
FRAMED_HEADER = "segment_id\tstart_time_seconds\tend_time_seconds\tlabel\tpresent\n"


@pytest.fixture(autouse=True)
def _no_strong_mirror(monkeypatch):
    monkeypatch.delenv("AUDIOSET_STRONG_BASE_URL", raising=False)


@pytest.fixture(scope="module")
def strong_dir(shared_data: Path) -> Path:
    return shared_data / "strong"


@pytest.fixture(scope="module")
def vocab(shared_data: Path) -> dict[str, str]:
    return load_vocabulary(shared_data / "segments" / "mid_to_display_name.tsv")


@pytest.fixture(scope="module")
def gun_eval(strong_dir, label_index, vocab):
    return load_strong(strong_dir / "gun_ov_audioset_eval_strong.tsv",
                       label_index=label_index, vocabulary=vocab)


@pytest.fixture(scope="module")
def gun_framed(strong_dir, label_index, vocab):
    return load_framed(strong_dir / "gun_ov_audioset_eval_strong_framed_posneg.tsv",
                       label_index=label_index, vocabulary=vocab)


def _rows(path: Path) -> list[list[str]]:
    """The data rows of a TSV, read independently of the parser."""
    with path.open(newline="") as fh:
        return list(csv.reader(fh, delimiter="\t"))[1:]


# -- vocabulary and mapping facts ---------------------------------------------------------------

def test_vocabulary_has_456_mids_74_without_a_column_32_outside_the_ontology(
        vocab, label_index, ontology):
    assert len(vocab) == 456
    assert vocab["/t/dd00143"] == "Unknown sound"
    table = vocabulary_mapping(vocab, label_index, ontology)
    assert len(table) == 456
    assert int((table["column"] < 0).sum()) == 74
    assert int((~table["in_ontology"]).sum()) == 32
    # every mid missing from the ontology is also missing from the label index
    assert bool((table.loc[~table["in_ontology"], "column"] < 0).all())
    gun = table.set_index("mid").loc[GUN]
    assert gun["column"] == label_index.index(GUN)


# -- event files --------------------------------------------------------------------------------

@pytest.mark.parametrize("name, events, clips", [
    ("gun_ov_audioset_eval_strong.tsv", 543, 178),
    ("snore_ov_audioset_train_strong.tsv", 1278, 473),
    ("baby_cry_ov_audioset_train_strong.tsv", 1703, 481),
])
def test_event_files_parse_with_the_counts_of_the_files(
        strong_dir, label_index, vocab, name, events, clips):
    path = strong_dir / name
    rows = _rows(path)
    strong = load_strong(path, label_index=label_index, vocabulary=vocab)
    assert len(strong) == len(rows) == events
    assert strong.n_clips == len({r[0] for r in rows}) == clips
    assert Counter(strong.events["mid"]) == Counter(r[3] for r in rows)
    assert strong.events["line"].tolist() == list(range(2, events + 2))
    assert strong.unmapped.empty  # the six target labels are all label-index columns
    assert (strong.events["label"] >= 0).all()
    np.testing.assert_allclose(strong.events["onset"], [float(r[1]) for r in rows])
    np.testing.assert_allclose(strong.events["offset"], [float(r[2]) for r in rows])


def test_segment_ids_split_at_the_last_underscore(gun_eval, strong_dir, label_index, vocab):
    ev = gun_eval.events.drop_duplicates("key").set_index("key")
    assert ev.loc["2q4_wFFFG_U_30000", "ytid"] == "2q4_wFFFG_U"
    assert ev.loc["2q4_wFFFG_U_30000", "segment_start"] == 30.0
    assert ev.loc["0S2mvjzH_xQ_40000", "ytid"] == "0S2mvjzH_xQ"
    assert ev.loc["-9O1cb8z7Mk_0", "ytid"] == "-9O1cb8z7Mk"
    assert ev.loc["-9O1cb8z7Mk_0", "segment_start"] == 0.0
    baby = load_strong(strong_dir / "baby_cry_ov_audioset_train_strong.tsv",
                       label_index=label_index, vocabulary=vocab).events
    first = baby.iloc[0]
    assert (first["ytid"], first["segment_start"], first["key"]) == (
        "--EnKcYsPas", 210.0, "--EnKcYsPas_210000")
    for events in (gun_eval.events, baby):
        assert (events["ytid"].str.len() == 11).all()
        keys = [clip_key(y, s) for y, s in zip(events["ytid"], events["segment_start"],
                                                 strict=True)]
        assert keys == events["key"].tolist()


def test_overlapping_events_of_one_clip_are_all_kept(gun_eval, strong_dir, label_index, vocab):
    clip = gun_eval.clip("BAD9bQj86kY_540000")
    in_file = [r for r in _rows(strong_dir / "gun_ov_audioset_eval_strong.tsv")
               if r[0] == "BAD9bQj86kY_540000"]
    assert len(clip) == len(in_file)
    spans = set(zip(clip["mid"], clip["onset"], clip["offset"], strict=True))
    assert {(MACHINE_GUN, 2.709, 4.268), (GUN, 2.78, 4.283)} <= spans  # these two overlap
    snore = load_strong(strong_dir / "snore_ov_audioset_train_strong.tsv",
                        label_index=label_index, vocabulary=vocab)
    same = snore.clip("i6M0BNXBR7o_180000")
    spans = set(zip(same["mid"], same["onset"], same["offset"], strict=True))
    assert {("/m/01d3sd", 8.811, 9.978), ("/m/01d3sd", 9.591, 9.592)} <= spans


def test_unmapped_mids_are_kept_and_reported_with_counts(
        tmp_path, strong_dir, label_index, vocab):
    real = (strong_dir / "gun_ov_audioset_eval_strong.tsv").read_text().splitlines()[1:4]
    extra = [
        "-9O1cb8z7Mk_0\t0.0\t0.5\t/t/dd00143",  # Unknown sound: not in the ontology
        "-9O1cb8z7Mk_0\t0.2\t1.0\t/t/dd00143",
        "-sEh3pYmT1E_140000\t3.0\t4.0\t/t/dd00143",
        "-sEh3pYmT1E_140000\t3.0\t4.0\t/m/0174k2",  # Washing machine
    ]
    path = tmp_path / "mixed.tsv"
    path.write_text(HEADER + "\n".join(real + extra) + "\n")
    strong = load_strong(path, label_index=label_index, vocabulary=vocab)
    assert len(strong) == 7  # nothing dropped
    table = strong.unmapped.set_index("mid")
    assert table.loc["/t/dd00143"].tolist() == ["Unknown sound", 3, 2]
    assert table.loc["/m/0174k2"].tolist() == ["Washing machine", 1, 1]
    assert len(strong.mapped) == 3
    targets = frame_targets(strong)
    assert targets.unmapped.equals(strong.unmapped)
    # the unmapped events set nothing; the Gun events still do
    assert set(targets.targets.tocoo().col) == {label_index.index(GUN)}


def test_malformed_rows_name_the_file_and_line(tmp_path, label_index, vocab):
    def load(text, framed=False):
        path = tmp_path / "bad.tsv"
        path.write_text(text)
        loader = load_framed if framed else load_strong
        return loader(path, label_index=label_index, vocabulary=vocab)

    good = "-9O1cb8z7Mk_0\t1.598\t2.307\t/m/032s66\n"
    cases = [
        (HEADER + good + "-9O1cb8z7Mk0\t1.0\t2.0\t/m/032s66\n", ":3: segment_id"),
        (HEADER + good + "-9O1cb8z7Mk_x\t1.0\t2.0\t/m/032s66\n", ":3: segment_id"),
        (HEADER + good + good + "-9O1cb8z7Mk_0\tone\t2.0\t/m/032s66\n", ":4: start_time"),
        (HEADER + "-9O1cb8z7Mk_0\t3.0\t2.0\t/m/032s66\n", ":2: end_time_seconds is before"),
        (HEADER + good + "-9O1cb8z7Mk_0\t1.0\t2.0\n", ":3: expected 4 non-empty tab-separated"),
        ("segment_id,start,end,label\n" + good, ":1: header"),
        (HEADER + good + good.rstrip() + "\textra\n", ":3: expected 4 tab-separated fields, saw 5"),
    ]
    for text, message in cases:
        with pytest.raises(StrongLabelsError, match=message) as info:
            load(text)
        assert "bad.tsv" in str(info.value)
        assert isinstance(info.value, ValueError) and isinstance(info.value, AudioSetError)
    with pytest.raises(StrongLabelsError, match=":2: present is neither"):
        load(FRAMED_HEADER + "-9O1cb8z7Mk_0\t0.96\t1.92\t/m/032s66\tYES\n", framed=True)
    with pytest.raises(StrongLabelsError, match="neither"):
        load_strong("no-such-split", label_index=label_index, vocabulary=vocab)


# -- frame targets ------------------------------------------------------------------------------

def _frames(targets, key, column):
    rows = [targets.row(key, f) for f in range(targets.n_frames)]
    return set(np.flatnonzero(targets.targets[rows][:, [column]].toarray()[:, 0]).tolist())


def test_frame_targets_on_a_hand_checked_clip(gun_eval, label_index):
    # -9O1cb8z7Mk_0 has three Gun events: 1.598-2.307, 4.307-4.835, 9.724-10.0.
    # 0.96 s frames: 1 = [0.96, 1.92), 2 = [1.92, 2.88), 4 = [3.84, 4.80), 5 = [4.80, 5.76);
    # the last event lies after the tenth whole frame (8.64-9.60) and marks nothing.
    gun = label_index.index(GUN)
    t = frame_targets(gun_eval)
    assert t.n_frames == 10
    np.testing.assert_allclose(t.frame_starts, np.arange(10) * 0.96)
    assert t.targets.shape == (178 * 10, 527) and t.targets.dtype == bool
    assert list(t.keys) == list(gun_eval.keys)
    assert _frames(t, "-9O1cb8z7Mk_0", gun) == {1, 2, 4, 5}
    row = t.row("-9O1cb8z7Mk_0", 0)
    assert t.targets[row:row + 10].nnz == 4  # no other label in this clip
    # frame 4 is covered 0.493/0.96 = 51 %, frames 1, 2, 5 by 34 %, 40 % and 4 %
    assert _frames(frame_targets(gun_eval, min_overlap=0.5), "-9O1cb8z7Mk_0", gun) == {4}
    assert _frames(frame_targets(gun_eval, min_overlap=0.35), "-9O1cb8z7Mk_0", gun) == {2, 4}
    # any hop: 1 s frames [1,2) [2,3) [4,5) [9,10)
    t1 = frame_targets(gun_eval, hop=1.0)
    assert t1.n_frames == 10
    assert _frames(t1, "-9O1cb8z7Mk_0", gun) == {1, 2, 4, 9}
    assert (t1.frame == np.tile(np.arange(10), 178)).all()


def test_frame_rule_uses_the_union_of_a_labels_events_and_ignores_touching(
        tmp_path, label_index, vocab):
    path = tmp_path / "s.tsv"
    path.write_text(HEADER
                    + "-9O1cb8z7Mk_0\t0.0\t0.3\t/m/032s66\n"   # 31 % of frame 0
                    + "-9O1cb8z7Mk_0\t0.3\t0.6\t/m/032s66\n"   # another 31 %: 62 % together
                    + "-9O1cb8z7Mk_0\t0.2\t0.5\t/m/032s66\n"   # overlaps both: no double count
                    + "-9O1cb8z7Mk_0\t1.92\t2.88\t/m/04zjc\n"  # exactly frame 2, touches 1, 3
                    + "-9O1cb8z7Mk_0\t5.0\t5.0\t/m/04zjc\n")   # zero length: marks nothing
    strong = load_strong(path, label_index=label_index, vocabulary=vocab)
    gun, mg = label_index.index(GUN), label_index.index(MACHINE_GUN)
    assert _frames(frame_targets(strong, min_overlap=0.6), "-9O1cb8z7Mk_0", gun) == {0}
    assert _frames(frame_targets(strong, min_overlap=0.7), "-9O1cb8z7Mk_0", gun) == set()
    assert _frames(frame_targets(strong), "-9O1cb8z7Mk_0", mg) == {2}
    assert _frames(frame_targets(strong, min_overlap=1.0), "-9O1cb8z7Mk_0", mg) == {2}
    with pytest.raises(StrongLabelsError, match="min_overlap"):
        frame_targets(strong, min_overlap=1.5)
    with pytest.raises(StrongLabelsError, match="hop"):
        frame_targets(strong, hop=0.0)


# -- the framed file ----------------------------------------------------------------------------

def test_framed_file_parses_and_maps_to_present_and_known(gun_framed, strong_dir, label_index):
    rows = _rows(strong_dir / "gun_ov_audioset_eval_strong_framed_posneg.tsv")
    assert len(gun_framed) == len(rows) == 614
    assert gun_framed.n_clips == len({r[0] for r in rows}) == 164
    assert gun_framed.rows["present"].all()  # this subset keeps only PRESENT rows
    a = gun_framed.to_arrays(label_index)
    assert a.present.shape == a.known.shape == (164 * 10, 527)
    assert a.present.nnz == a.known.nnz == 614
    assert (a.frame == np.tile(np.arange(10), 164)).all()
    k = list(a.keys).index("-9O1cb8z7Mk_0")
    gun = label_index.index(GUN)
    # rows 1.92-2.88 and 3.84-4.80 -> frames 2 and 4
    block = a.present[k * 10:(k + 1) * 10][:, [gun]].toarray()[:, 0]
    assert np.flatnonzero(block).tolist() == [2, 4]
    assert a.row("-9O1cb8z7Mk_0", 2) == k * 10 + 2
    with pytest.raises(KeyError):
        a.row("-9O1cb8z7Mk_0", 10)
    with pytest.raises(KeyError):
        a.row("not-a-clip_0", 0)


def test_framed_negatives_are_known_unlisted_pairs_unknown_and_starts_rounded(
        tmp_path, label_index, vocab):
    path = tmp_path / "framed.tsv"
    path.write_text(FRAMED_HEADER
                    + "-9O1cb8z7Mk_0\t1.9200001\t2.88\t/m/032s66\tPRESENT\n"
                    + "-9O1cb8z7Mk_0\t0.959\t1.92\t/m/032s66\tNOT_PRESENT\n"
                    + "-9O1cb8z7Mk_0\t0.0\t0.96\t/t/dd00143\tNOT_PRESENT\n")
    framed = load_framed(path, label_index=label_index, vocabulary=vocab)
    a = framed.to_arrays(label_index)
    gun = label_index.index(GUN)
    assert a.known[[1, 2]][:, [gun]].toarray()[:, 0].tolist() == [True, True]
    assert a.present[[1, 2]][:, [gun]].toarray()[:, 0].tolist() == [False, True]
    assert a.known.nnz == 2 and a.present.nnz == 1  # everything else is unknown
    assert a.unmapped["mid"].tolist() == ["/t/dd00143"]
    path.write_text(FRAMED_HEADER + "-9O1cb8z7Mk_0\t0.96\t1.92\t/m/032s66\tPRESENT\n"
                    + "-9O1cb8z7Mk_0\t1.5\t2.46\t/m/032s66\tPRESENT\n")
    with pytest.raises(StrongLabelsError, match=r"framed.tsv:3: frame start is not on"):
        load_framed(path, label_index=label_index, vocabulary=vocab).to_arrays()
    path.write_text(FRAMED_HEADER + "-9O1cb8z7Mk_0\t9.6\t10.56\t/m/032s66\tPRESENT\n")
    with pytest.raises(StrongLabelsError, match=r":2: frame is past the last whole frame"):
        load_framed(path, label_index=label_index, vocabulary=vocab).to_arrays()


def test_event_targets_align_with_the_framed_arrays(gun_eval, gun_framed, label_index):
    a = gun_framed.to_arrays(label_index)
    t = frame_targets(gun_eval, keys=a.keys)
    assert t.targets.shape == a.present.shape
    assert list(t.keys) == list(a.keys)
    # clips of the framed subset that have no row in the event subset get empty rows
    assert len(t.missing) > 0 and set(t.missing) <= set(a.keys)
    assert not set(t.missing) & set(gun_eval.keys)
    # measured on these subsets: the any-overlap rule covers 605 of the 614 PRESENT pairs
    assert t.targets.multiply(a.present).nnz == 605


# -- remotes ------------------------------------------------------------------------------------

def test_strong_remotes_are_declared_with_their_git_blob_sha1():
    pins = {
        "train_strong": ("audioset_train_strong.tsv",
                         "e409b11779822235ad71b8fc80dbfb39e59cb2a8"),
        "eval_strong": ("audioset_eval_strong.tsv", "0acaf913fb334ad7f5e67ee4855a20697d48edb0"),
        "eval_strong_framed_posneg": ("audioset_eval_strong_framed_posneg.tsv",
                                      "63850af596a64d8bb53cee34d8206ee6addcb740"),
        "strong_mid_to_display_name": ("mid_to_display_name.tsv",
                                       "02b2bd69614d3966ec6f9ed564ac0346024538c8"),
    }
    base = "http://storage.googleapis.com/us_audioset/youtube_corpus/strong/"
    for name, (filename, sha1) in pins.items():
        r = REMOTES[name]
        assert (r.filename, r.git_sha1, r.group) == (filename, sha1, "strong")
        assert r.url() == base + filename
        assert r.url("file:///mirror") == "file:///mirror/" + filename


def test_vocabulary_is_fetched_from_a_mirror_folder_and_verified(
        shared_data, monkeypatch, data_root):
    monkeypatch.setenv("AUDIOSET_STRONG_BASE_URL", str(shared_data / "segments"))
    vocab = load_vocabulary()
    assert len(vocab) == 456
    cached = data_root / "remote" / "mid_to_display_name.tsv"
    assert cached.read_bytes() == (shared_data / "segments" / "mid_to_display_name.tsv"
                                   ).read_bytes()


def test_a_changed_upstream_file_is_refused_unless_accepted(
        tmp_path, strong_dir, label_index, vocab, http_server, monkeypatch):
    lines = (strong_dir / "gun_ov_audioset_eval_strong.tsv").read_text().splitlines(True)
    http_server.add("strong/audioset_eval_strong.tsv", "".join(lines[:5]).encode())
    monkeypatch.setenv("AUDIOSET_STRONG_BASE_URL", http_server.url("strong/"))
    with pytest.raises(ChecksumMismatchError, match="accept-new-upstream"):
        load_strong("eval", label_index=label_index, vocabulary=vocab)
    strong = load_strong("eval", label_index=label_index, vocabulary=vocab,
                         accept_new_upstream=True)
    assert len(strong) == 4 and strong.keys[0] == "-9O1cb8z7Mk_0"
    # a folder mirror passed as base_url works the same way
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "audioset_eval_strong_framed_posneg.tsv").write_text(
        FRAMED_HEADER + "-9O1cb8z7Mk_0\t1.92\t2.88\t/m/032s66\tPRESENT\n")
    with pytest.raises(ChecksumMismatchError):
        load_framed("eval", base_url=str(mirror), label_index=label_index, vocabulary=vocab)
    framed = load_framed("eval", base_url=str(mirror), label_index=label_index,
                         vocabulary=vocab, accept_new_upstream=True)
    assert len(framed) == 1


def test_offline_error_names_the_strong_mirror_setting(monkeypatch):
    monkeypatch.setenv("AUDIOSET_STRONG_BASE_URL", "http://no-such-host.invalid/strong/")
    with pytest.raises(RemoteError, match="AUDIOSET_STRONG_BASE_URL"):
        fetch("eval_strong", progress=False)


@pytest.mark.parametrize("hop, min_overlap", [(0.96, 0.0), (0.96, 0.3), (0.5, 0.0), (0.25, 0.8)])
def test_frame_targets_match_a_plain_loop_on_real_files(
        strong_dir, label_index, vocab, hop, min_overlap):
    strong = load_strong(strong_dir / "snore_ov_audioset_train_strong.tsv",
                         label_index=label_index, vocabulary=vocab)
    t = frame_targets(strong, hop=hop, min_overlap=min_overlap)
    us, hop_us = 1_000_000, round(hop * 1_000_000)
    n = 10_000_000 // hop_us
    expected = set()
    for (key, col), g in strong.events.groupby(["key", "label"]):
        spans = sorted((round(a * us), round(b * us)) for a, b in zip(g["onset"], g["offset"],
                                                                         strict=True))
        for f in range(n):
            lo, hi = f * hop_us, (f + 1) * hop_us
            cover, end = 0, lo  # microsecond-exact length of the union, spans by onset
            for a, b in spans:
                a, b = max(a, end), min(b, hi)
                if b > a:
                    cover += b - a
                    end = b
            if cover > 0 and cover >= min_overlap * hop_us - 0.5:
                expected.add((t.row(key, f), col))
    coo = t.targets.tocoo()
    assert set(zip(coo.row.tolist(), coo.col.tolist(), strict=True)) == expected
