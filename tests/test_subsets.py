"""Named evaluation subsets: ``official``, ``ast`` (AST's 19,185 eval ids, the real file from
``../shared/data/subsets`` served on loopback), ``available`` and files of ids; one score set
evaluated on each, side by side, with what each was computed on."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from audioset_data.cache.manifest import clip_key
from audioset_data.cache.reader import cache_dir, open_cache
from audioset_data.cache.store import CacheWriter, open_manifest
from audioset_data.cli import main
from audioset_data.errors import ChecksumMismatchError, EvaluationError
from audioset_data.evaluation import evaluate
from audioset_data.evaluation.subsets import (
    SubsetError,
    id_list_hash,
    match_ids,
    read_id_file,
    resolve_subset,
    resolve_subsets,
)
from audioset_data.features.release import FeatureRecord, quantize, write_release
from audioset_data.remote import REMOTES

AST_URL = ("https://raw.githubusercontent.com/YuanGongND/ast/"
           "31088be8a3f6ef96416145c4b8d43c81f99eba7a/egs/audioset/data/sanity_check/"
           "our_as_eval_id.csv")
MIDS = ["/m/0bt9lr", "/m/09x0r", "/m/04rlf", "/m/01yrx", "/m/0k4j", "/m/015p6"]


@pytest.fixture
def ast_mirror(mirror, shared_data, monkeypatch):
    """The real AST id list served under its official name; the segment lists as usual."""
    mirror.add("subsets/our_as_eval_id.csv", shared_data / "subsets" / "ast_eval_ids.csv")
    monkeypatch.setenv("AUDIOSET_SUBSETS_BASE_URL", mirror.url("subsets/"))
    return mirror


def small_cache(root, n_listed: int = 24, n_cached: int = 22, seed: int = 3):
    """A cache ``small`` listing ``n_listed`` clips and holding ``n_cached``, written by the
    project's writer; ids are 11-character YouTube ids, two clips share one video."""
    folder = cache_dir("small", root)
    rng = np.random.default_rng(seed)
    manifest = open_manifest(folder, fmt="pcm16", sample_rate=100, clip_samples=10,
                             label_mids=MIDS)
    rows, truth = [], []
    for i in range(n_listed):
        ytid = f"smallclip{i:02d}" if i != 1 else "smallclip00"  # clip 1: video 0 at 30 s
        start = 30.0 if i == 1 else 0.0
        t = np.zeros(len(MIDS), dtype=bool)
        t[rng.choice(len(MIDS), size=2, replace=False)] = True
        t[0] = i % 2 == 0
        rows.append((clip_key(ytid, start), ytid, start, start + 10.0,
                     ",".join(m for m, b in zip(MIDS, t, strict=True) if b)))
        truth.append(t)
    manifest.add_segments(rows)
    writer = CacheWriter(folder, manifest, fmt="pcm16", sample_rate=100, clip_samples=10,
                         label_mids=MIDS, batch_size=8, shard_size=16)
    for (key, ytid, start, end, _), t in list(zip(rows, truth, strict=True))[:n_cached]:
        writer.add(key, ytid, start, end, np.zeros(10, np.int16), 10, t)
    writer.close()
    for key, *_ in rows[n_cached:]:
        manifest.mark_failed(key, "unavailable", True)
    manifest.close()
    return [r[0] for r in rows], np.stack(truth)


# ---------------------------------------------------------------- the declared AST file


def test_ast_list_is_declared_with_its_official_address_size_and_hash(shared_data):
    remote = REMOTES["ast_eval_ids"]
    assert remote.url() == AST_URL
    data = (shared_data / "subsets" / "ast_eval_ids.csv").read_bytes()
    assert remote.size == len(data) == 230220
    import hashlib

    assert remote.sha256 == hashlib.sha256(data).hexdigest()


def test_ast_subset_resolves_to_19185_eval_clips_by_youtube_id(ast_mirror, data_root):
    ast = resolve_subset("ast", split="eval", root=data_root)
    assert ast.n_ids == len(ast) == 19185 and ast.unknown == ()
    assert ast.matched_by == "ytid"  # the file holds bare YouTube ids, matched to keys
    assert ast.keys[0] == "--4gqARaEJE_0" and ast.sha256 == id_list_hash(ast.keys)
    official = resolve_subset("official", split="eval", root=data_root)
    assert len(official) == 20371 and set(ast.keys) < set(official.keys)
    assert ast_mirror.requests["/subsets/our_as_eval_id.csv"] == 1
    resolve_subset("ast", split="eval", root=data_root)  # verified copy reused
    assert ast_mirror.requests["/subsets/our_as_eval_id.csv"] == 1


def test_a_changed_ast_list_is_refused(mirror, shared_data, data_root, monkeypatch):
    data = (shared_data / "subsets" / "ast_eval_ids.csv").read_bytes()
    mirror.add("subsets/our_as_eval_id.csv", data.replace(b"--4gqARaEJE\n", b""))
    monkeypatch.setenv("AUDIOSET_SUBSETS_BASE_URL", mirror.url("subsets/"))
    with pytest.raises(ChecksumMismatchError, match="accept-new-upstream"):
        resolve_subset("ast", split="eval", root=data_root)


# ---------------------------------------------------------------- id files


def test_id_file_reads_ids_and_keys_with_header_comments_and_repeats(tmp_path):
    path = tmp_path / "ids.txt"
    path.write_text("\ufeffYTID\n# the clips we have\n\n--4gqARaEJE\n  -0BIyqJj9ZU_30000 \n"
                    "--4gqARaEJE\n")
    assert read_id_file(path) == ["--4gqARaEJE", "-0BIyqJj9ZU_30000"]


@pytest.mark.parametrize(("text", "line", "what"), [
    ("--4gqARaEJE\n--BfvyPmVMo, 20.000, 30.000\n", 2, "not a YouTube id"),
    ("# ids\n--4gqARaEJE\n\nsome words here\n", 4, "not a YouTube id"),
    (b"--4gqARaEJE\n\xff\xfe garbage\n", 2, "not UTF-8"),
])
def test_garbage_in_an_id_file_names_the_file_and_line(tmp_path, text, line, what):
    path = tmp_path / "bad.txt"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(SubsetError, match=f"line {line}: .*{what}") as err:
        read_id_file(path)
    assert str(path) in str(err.value)
    assert isinstance(err.value, EvaluationError) and isinstance(err.value, ValueError)


def test_empty_or_missing_id_files_and_unknown_names(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing\n\n")
    with pytest.raises(SubsetError, match="holds no clip ids"):
        read_id_file(empty)
    with pytest.raises(SubsetError, match="unknown subset 'astt'.*official, ast, available"):
        resolve_subset("astt", split="small")
    with pytest.raises(SubsetError, match="not found"):
        read_id_file(tmp_path / "nope.txt")


def test_ids_match_keys_or_every_clip_of_a_video():
    reference = ["abcdefghijk_0", "abcdefghijk_30000", "a_b_c_d_e_f_10000", "zyxwvutsrqp_0"]
    keys, unknown, how = match_ids(["abcdefghijk", "a_b_c_d_e_f_10000", "nothere0000"],
                                   reference)
    assert keys == ["a_b_c_d_e_f_10000", "abcdefghijk_0", "abcdefghijk_30000"]
    assert unknown == ["nothere0000"] and how == "key and ytid"


# ---------------------------------------------------------------- the harness


def test_harness_subset_counts_missing_scores_and_hashes_what_it_evaluated(data_root,
                                                                            tmp_path):
    keys, truth = small_cache(data_root)
    rng = np.random.default_rng(0)
    scores = np.round(truth + rng.normal(0, 0.6, truth.shape), 1)  # rounded: many ties
    ids_file = tmp_path / "ours.txt"
    ids_file.write_text("clip_id\n" + "\n".join(keys[2:12]) + "\nsmallclip00\nnotaclip000\n")
    full = evaluate(y_true=truth, y_score=scores, clip_ids=keys, subset=str(ids_file),
                    split="small", root=data_root)
    sub = full.subset.subset
    assert sub.n_ids == 12 and sub.unknown == ("notaclip000",)
    assert len(sub) == 12  # smallclip00 stands for both of its clips (0 s and 30 s)
    assert full.subset.scored == 12 and full.subset.missing == 0
    s = full.summary()
    assert s["subset_unknown_ids"] == 1 and s["subset_missing_scores"] == 0
    assert s["clips_evaluated"] == 12 and s["clips_listed"] == 12
    assert s["clips_sha256"] == s["subset_sha256"] == id_list_hash(keys[:12])
    # exact on the subset's rows, ties included
    ap = [average_precision_score(truth[:12, j], scores[:12, j]) for j in range(len(MIDS))
          if 0 < truth[:12, j].sum() < 12]
    assert s["mAP"] == pytest.approx(np.mean(ap), abs=1e-12)
    # scores missing for three clips of the subset: counted, and another clip list evaluated
    part = evaluate(y_true=truth[3:], y_score=scores[3:], clip_ids=keys[3:],
                    subset=str(ids_file), split="small", root=data_root)
    p = part.summary()
    assert p["subset_scored"] == 9 and p["subset_missing_scores"] == 3
    assert p["subset_sha256"] == s["subset_sha256"]
    assert p["clips_sha256"] != s["clips_sha256"] and p["clips_evaluated"] == 9
    assert "| subset clips missing from the scores | 3 |" in part.to_markdown()
    with pytest.raises(EvaluationError, match="none of the 12 clips of subset"):
        evaluate(y_true=truth[12:], y_score=scores[12:], clip_ids=keys[12:],
                 subset=str(ids_file), split="small", root=data_root)


def test_harness_subset_ast_on_the_real_eval_list(ast_mirror, data_root, eval_seg):
    keys = [clip_key(y, s) for y, s in zip(eval_seg.ytids, eval_seg.start, strict=True)]
    rng = np.random.default_rng(1)
    truth = rng.random((len(keys), 4)) < 0.2
    scores = truth * 0.5 + rng.random(truth.shape)
    r = evaluate(y_true=truth, y_score=scores, clip_ids=keys, subset="ast", root=data_root)
    assert r.n_clips == 19185 and r.subset.missing == 0
    ast_keys = set(r.subset.subset.keys)
    rows = np.array([k in ast_keys for k in keys])
    direct = evaluate(y_true=truth[rows], y_score=scores[rows])
    assert r.metrics.mean_ap == pytest.approx(direct.metrics.mean_ap, abs=1e-12)
    drop = np.ones(len(keys), bool)
    drop[np.flatnonzero(rows)[:10]] = False  # ten of AST's clips were not scored
    fewer = evaluate(y_true=truth[drop], y_score=scores[drop],
                     clip_ids=[k for k, d in zip(keys, drop, strict=True) if d],
                     subset="ast", root=data_root)
    assert fewer.subset.missing == 10 and fewer.n_clips == 19175
    assert fewer.summary()["clips_sha256"] != r.summary()["clips_sha256"]


# ---------------------------------------------------------------- the command line


def test_cli_subsets_side_by_side_on_a_cache(data_root, mirror, tmp_path, capsys):
    keys, truth = small_cache(data_root)
    rng = np.random.default_rng(2)
    scores = np.round(truth + rng.normal(0, 0.5, truth.shape), 1)
    # 20 of the 22 cached clips scored, plus one clip the cache does not hold
    ids = [*keys[:20], "elsewhere00_0"]
    npz = tmp_path / "S.npz"
    np.savez(npz, ids=np.array(ids), scores=np.vstack([scores[:20], scores[:1]]))
    ours = tmp_path / "ours.txt"
    ours.write_text("# YTIDs of the clips we could fetch\n" + "\n".join(
        k.rsplit("_", 1)[0] for k in keys[10:14]) + "\nunknownclip\n" + keys[21] + "\n")
    report = tmp_path / "r.json"
    assert main(["evaluate", "--scores", str(npz), "--split", "small", "--root",
                 str(data_root), "--subset", "official,available", "--subset", str(ours),
                 "--json", str(report)]) == 0
    out = capsys.readouterr().out
    data = json.loads(report.read_text())
    rows = data["subsets"]
    assert list(rows) == ["official", "available", str(ours)]
    off, avail, mine = rows["official"], rows["available"], rows[str(ours)]
    assert (off["subset_clips"], off["subset_scored"], off["subset_missing_scores"]) == (24, 20, 4)
    assert (avail["subset_clips"], avail["subset_scored"], avail["subset_missing_scores"]) == \
        (22, 20, 2)
    assert off["subset_sha256"] != avail["subset_sha256"]
    # both evaluate the same 20 clips: same hash and the same numbers as the whole result
    assert off["clips_sha256"] == avail["clips_sha256"] == data["summary"]["clips_sha256"]
    assert off["mAP"] == avail["mAP"] == data["summary"]["mAP"]
    assert (mine["subset_ids"], mine["subset_unknown_ids"]) == (6, 1)
    assert mine["subset_unknown_examples"] == ["unknownclip"]
    assert mine["subset_clips"] == 5 and mine["subset_missing_scores"] == 1  # keys[21]
    assert mine["clips_evaluated"] == 4 and mine["clips_sha256"] == id_list_hash(keys[10:14])
    sub = scores[10:14]
    t = truth[10:14]
    ap = [average_precision_score(t[:, j], sub[:, j]) for j in range(len(MIDS))
          if 0 < t[:, j].sum() < 4]
    assert mine["mAP"] == pytest.approx(np.mean(ap), abs=1e-12)
    header = f"| | `official` | `available` | `{ours}` |"
    assert header in out
    assert f"| clip list sha256 | `{off['clips_sha256'][:12]}` |" in out
    assert "| missing from the scores | 4 | 2 | 1 |" in out
    assert "| ids not in the small list | 0 | 0 | 1 |" in out


def test_cli_without_subset_prints_what_it_printed_before(data_root, mirror, tmp_path, capsys):
    keys, truth = small_cache(data_root)
    npz = tmp_path / "S.npz"
    np.savez(npz, ids=np.array(keys[:22]), scores=truth[:22] + 0.1)
    report = tmp_path / "r.json"
    assert main(["evaluate", "--scores", str(npz), "--split", "small", "--root",
                 str(data_root), "--json", str(report)]) == 0
    out = capsys.readouterr().out
    data = json.loads(report.read_text())
    assert set(data) == {"summary", "classes"}
    assert not any(k.startswith("subset") for k in data["summary"])
    assert "subset" not in out and out.startswith("| measure | value |")


def test_cli_subset_refuses_frames_and_garbage_files(data_root, mirror, tmp_path, capsys):
    keys, truth = small_cache(data_root)
    npz = tmp_path / "S.npz"
    np.savez(npz, ids=np.array(keys[:22]), scores=truth[:22] + 0.1)
    bad = tmp_path / "bad.txt"
    bad.write_text("smallclip02\nsmallclip03 smallclip04\n")
    assert main(["evaluate", "--scores", str(npz), "--split", "small", "--root",
                 str(data_root), "--subset", str(bad)]) != 0
    err = capsys.readouterr().err
    assert f"{bad}, line 2" in err
    assert main(["evaluate", "--frames", "--scores", str(npz), "--subset", "ast"]) != 0
    assert "--subset" in capsys.readouterr().err


def _records(n: int) -> list[FeatureRecord]:
    rng = np.random.default_rng(5)
    out = []
    for i in range(n):
        labels = tuple(sorted(rng.choice(4, size=rng.integers(1, 3), replace=False)))
        x = rng.normal(0, 0.5, (10, 128))
        out.append(FeatureRecord(f"storeclip{i:02d}", float(i % 2) * 10.0,
                                 float(i % 2) * 10.0 + 10.0, labels, quantize(np.clip(x, -2, 2))))
    return out


def test_cli_subsets_on_predictions_over_the_embeddings_store(ast_mirror, data_root, tmp_path,
                                                              capsys):
    """Scores keyed as an embedding model's predict writes them (``<ytid>_<ms>``) against an
    eval store: its clips are not on the official eval list, and the report says so."""
    release = write_release(tmp_path / "rel", _records(30), split="eval")
    assert main(["features", "import", str(release), "--split", "eval", "--root",
                 str(data_root), "--no-coverage"]) == 0
    keys = [f"{r.video_id}_{int(round(r.start * 1000))}" for r in _records(30)]
    rng = np.random.default_rng(3)
    npz = tmp_path / "S.npz"
    np.savez(npz, ids=np.array(keys[:25]), scores=rng.random((25, 527)))
    ours = tmp_path / "ours.txt"
    ours.write_text("\n".join(keys[:5]) + "\n")
    report = tmp_path / "r.json"
    capsys.readouterr()
    assert main(["evaluate", "--scores", str(npz), "--split", "eval", "--root", str(data_root),
                 "--subset", f"available,official,ast,{ours}", "--json", str(report)]) == 0
    rows = json.loads(report.read_text())["subsets"]
    assert rows["available"]["subset_clips"] == 30
    assert rows["available"]["subset_missing_scores"] == 5
    assert rows["available"]["clips_evaluated"] == 25 and rows["available"]["mAP"] is not None
    assert rows["official"]["subset_clips"] == 20371
    assert rows["official"]["clips_evaluated"] == 0 and rows["official"]["mAP"] is None
    assert rows["ast"]["subset_clips"] == 19185 and rows["ast"]["subset_missing_scores"] == 19185
    assert rows[str(ours)]["subset_unknown_ids"] == 0  # the store's clips are known too
    assert rows[str(ours)]["clips_evaluated"] == 5
    assert rows[str(ours)]["clips_sha256"] == id_list_hash(keys[:5])
    assert "| mAP | " in capsys.readouterr().out


def test_cli_subsets_on_the_demo(ast_mirror, data_root, shared_data, tmp_path, capsys):
    """``ours on AST's clips`` in one command, on the offline demo."""
    from audioset_data.downloader.demo import run_demo

    run_demo(root=data_root, csv_base_url=str(shared_data / "segments"), n_clips=6, workers=2,
             progress=False)
    cached = list(open_cache("demo", root=data_root).keys())
    rng = np.random.default_rng(4)
    npz = tmp_path / "S.npz"
    np.savez(npz, ids=np.array(cached), scores=rng.random((len(cached), 527)))
    report = tmp_path / "r.json"
    capsys.readouterr()
    assert main(["evaluate", "--scores", str(npz), "--split", "demo", "--root", str(data_root),
                 "--subset", "official,ast,available", "--json", str(report)]) == 0
    rows = json.loads(report.read_text())["subsets"]
    assert [r["subset_clips"] for r in rows.values()] == [6, 6, len(cached)]
    assert rows["ast"]["subset_unknown_ids"] == 19185 - 6  # AST's other eval clips
    assert rows["official"]["subset_missing_scores"] == 6 - len(cached)
    assert rows["available"]["subset_missing_scores"] == 0
    assert len({r["clips_sha256"] for r in rows.values()}) == 1
    assert "| | `official` | `ast` | `available` |" in capsys.readouterr().out


def test_resolve_subsets_reads_the_split_list_once_and_keeps_order(data_root, monkeypatch,
                                                                    tmp_path):
    keys, _ = small_cache(data_root)
    from audioset_data.evaluation import subsets as module

    calls = []
    real = module.official_clips

    def counted(split, root=None):
        calls.append(split)
        return real(split, root)

    ids = tmp_path / "ids.txt"
    ids.write_text("smallclip03\n")
    monkeypatch.setattr(module, "official_clips", counted)
    out = resolve_subsets(["official,available", "official", str(ids)], split="small",
                          root=data_root)
    assert [s.name for s in out] == ["official", "available", str(ids)] and calls == ["small"]
    with pytest.raises(SubsetError, match="neither"):
        resolve_subset("available", split="nosuchcache", root=data_root)
