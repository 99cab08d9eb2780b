"""The documentation site: the quickstart's steps run as written on the offline demo, every
figure comes from the figure script, and ``mkdocs build --strict`` passes when mkdocs is there."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
QUICKSTART = DOCS / "quickstart.md"
BIN = Path(sys.executable).parent

#: A runnable block: a fence whose title starts with "step" (the quickstart) or "example" (a
#: guide's example run in a cache folder), e.g. ```bash title="step 2: download"
STEP = re.compile(r'^```(bash|python) title="((?:step|example)[^"]*)"\n(.*?)^```$', re.M | re.S)
DOWNLOAD = re.compile(r"^audioset download --split \S+.*$", re.M)
SPLIT_FLAG = re.compile(r"(--(?:split|train|eval|source)) (?:balanced|eval)\b")
SPLIT_STR = re.compile(r"""(["'])(?:balanced|eval)\1""")


def steps(text: str, kind: str = "step") -> list[tuple[str, str, str]]:
    """``(language, title, code)`` of every runnable block of ``kind``, in page order."""
    return [(m.group(1), m.group(2), m.group(3)) for m in STEP.finditer(text)
            if m.group(2).startswith(kind)]


def on_demo(lang: str, code: str, demo_done: bool) -> str:
    """The block as CI runs it: downloads become one ``audioset demo``, splits become demo."""
    if lang == "bash":
        first = [True]

        def _download(_: re.Match) -> str:
            run = first[0] and not demo_done
            first[0] = False
            return "audioset demo --workers 2" if run else "true"

        code = DOWNLOAD.sub(_download, code)
        return SPLIT_FLAG.sub(r"\1 demo", code)
    return SPLIT_STR.sub(r'\1demo\1', code)


def _load_figure_script():
    spec = importlib.util.spec_from_file_location("make_figures",
                                                  DOCS / "scripts" / "make_figures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_substitution_reaches_every_split_name():
    text = QUICKSTART.read_text()
    blocks = steps(text)
    titles = [t for _, t, _ in blocks]
    assert len(blocks) >= 4, titles
    assert any("download" in t for t in titles) and any("train" in t for t in titles)
    assert any("evaluate" in t for t in titles)
    done = False
    for lang, _, code in blocks:
        new = on_demo(lang, code, done)
        done = done or "audioset demo" in new
        assert "audioset download" not in new
        assert not SPLIT_FLAG.search(new) and not SPLIT_STR.search(new), new
    assert "--split balanced" in text and '"balanced"' in text
    assert done
    assert on_demo("python", 'x = f("balanced", "eval")', True) == 'x = f("demo", "demo")'
    assert on_demo("bash", "audioset download --split eval --workers 8", True) == "true"


def _env(data_root: Path, shared_data: Path) -> dict[str, str]:
    return dict(os.environ, AUDIOSET_DATA_HOME=str(data_root), OMP_NUM_THREADS="1",
                AUDIOSET_ONTOLOGY_BASE_URL=str(shared_data / "ontology"),
                AUDIOSET_CSV_BASE_URL=str(shared_data / "segments"),
                PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", MPLBACKEND="Agg")


def run_steps(page: Path, work: Path, env: dict[str, str], demo_done: bool = False
              ) -> dict[str, str]:
    """Run the page's step blocks in order in ``work``, as on the demo; their outputs."""
    outputs = {}
    for i, (lang, title, code) in enumerate(steps(page.read_text())):
        code = on_demo(lang, code, demo_done)
        demo_done = demo_done or "audioset demo" in code
        script = work / f"{page.stem}-step{i}.{'sh' if lang == 'bash' else 'py'}"
        script.write_text(("set -euo pipefail\n" if lang == "bash" else "") + code)
        cmd = ["bash", str(script)] if lang == "bash" else [sys.executable, str(script)]
        proc = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True,
                              timeout=240)
        assert proc.returncode == 0, f"{page.name}, {title} failed:\n{code}\n" \
                                     f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        outputs[title] = proc.stdout
    return outputs


@pytest.mark.slow
def test_quickstart_runs_as_written_on_the_demo(tmp_path, shared_data, data_root):
    work = tmp_path / "work"
    work.mkdir()
    outputs = run_steps(QUICKSTART, work, _env(data_root, shared_data))
    assert (data_root / "cache" / "demo").is_dir()
    assert (work / "runs" / "fc" / "last.pt").is_file()
    assert (work / "fc.npz").is_file() and (work / "fc-eval.json").is_file()
    batch = outputs["step 3: load a batch"]
    assert "(8, 527)" in batch.replace("torch.Size([8, 527])", "(8, 527)")
    assert "mAP" in outputs["step 5: evaluate in Python"]


@pytest.mark.slow
def test_interop_guide_runs_on_the_demo(tmp_path, shared_data, data_root):
    pytest.importorskip("datasets")
    pytest.importorskip("lhotse")
    from audioset_data.downloader.demo import run_demo

    run_demo(root=data_root, csv_base_url=str(shared_data / "segments"), n_clips=6,
             workers=2, progress=False)
    outputs = run_steps(DOCS / "guides" / "interop.md", tmp_path, _env(data_root, shared_data),
                        demo_done=True)
    n_cache, n_hf, n_rec, n_cuts = map(int, outputs["step 2: read the exports back"].split())
    assert n_cache == n_hf == n_rec == n_cuts > 0


def test_cache_format_examples_read_a_cache_without_the_package(tmp_path, shared_data):
    """The guide's h5py and sqlite3 examples, run in a demo cache, agree with the reader."""
    import audioset_data
    from audioset_data.downloader.demo import run_demo

    run_demo(root=tmp_path, csv_base_url=str(shared_data / "segments"), n_clips=6, workers=2,
             progress=False)
    folder = tmp_path / "cache" / "demo"
    blocks = steps((DOCS / "guides" / "cache-format.md").read_text(), "example")
    assert len(blocks) == 2
    out = []
    for _, title, code in blocks:
        proc = subprocess.run([sys.executable, "-c", code], cwd=folder, capture_output=True,
                              text=True, timeout=60)
        assert proc.returncode == 0, f"{title}:\n{proc.stderr[-2000:]}"
        out.append(proc.stdout.splitlines())
    cache = audioset_data.open_cache("demo", root=tmp_path)
    rows = [line.split() for line in out[1]]
    first = cache.position(next(r[0] for r in rows if r[1:3] == ["shard-00000.h5", "0"]))
    ytid, start, rate = out[0][0].split()[:3]
    assert (ytid, float(start), int(rate)) == (cache[first]["ytid"], cache[first]["start"],
                                               cache.sample_rate)
    assert [r[0] for r in rows] == list(cache.keys()) and len(rows) == len(cache) > 0


def test_every_picture_in_the_docs_comes_from_the_figure_script():
    made = set(_load_figure_script().FIGURES_MADE)
    referenced = set()
    for page in DOCS.rglob("*.md"):
        for name in re.findall(r"figures/([\w.-]+)\.(?:png|html)", page.read_text()):
            referenced.add(name)
    assert referenced, "no page shows a figure"
    assert referenced <= made, referenced - made
    for name in referenced:
        assert list((DOCS / "figures").glob(f"{name}.*")), f"figure {name} not generated"


def test_the_html_ontology_tree_holds_every_class(tmp_path, shared_data, ontology):
    path = _load_figure_script().ontology_tree(shared_data, tmp_path)
    text = path.read_text()
    ids = set(re.findall(r"<code>(/[mgt]/[\w-]+)</code>", text))
    assert ids == set(ontology)
    assert text.count("<details") > 50 and "<script>" in text
    assert "parents: " in text  # multi-parent classes are marked


def test_loss_weight_figure_is_drawn_from_the_real_counts(tmp_path, shared_data):
    path = _load_figure_script().loss_weights(shared_data, tmp_path)
    assert path.stat().st_size > 10_000


def test_mkdocs_build_strict(tmp_path):
    pytest.importorskip("mkdocs")
    pytest.importorskip("mkdocstrings")
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict",
                           "-f", str(REPO / "mkdocs.yml"), "-d", str(tmp_path / "site")],
                          cwd=REPO, capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, NO_MKDOCS_2_WARNING="1"))
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert (tmp_path / "site" / "reference" / "loaders" / "index.html").is_file()
    assert (tmp_path / "site" / "figures" / "ontology-tree.html").is_file()
