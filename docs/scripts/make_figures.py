"""Regenerate every figure of the documentation site from real files.

Run from the repository root::

    python docs/scripts/make_figures.py

Inputs: ``ontology.json``, ``class_labels_indices.csv``, the ``eval`` and ``balanced_train``
segment lists and the per-class counts of the full training crawl, all read from the folder of
official files (``--shared``, default ``../shared/data``), and one clip of a demo cache that
``audioset demo`` writes into a temporary data root (generated audio, no network). The two
figures of the embeddings benchmark are drawn from what ``audioset benchmark --features`` measured
on the real balanced part (``benchmarks/results/features_benchmark.json``, its ``features.json``;
rerunning the benchmark takes about 11 minutes). Outputs go to ``docs/figures/``: PNGs of modest
size and one self-contained HTML tree of the ontology.
"""

from __future__ import annotations

import argparse
import html
import logging
import os
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
FIGURES = REPO / "docs" / "figures"
SHARED = REPO.parent / "shared" / "data"
#: Clips in the full training crawl the PANNs counts were taken on (PROVENANCE.md: about 1.93 M).
N_CRAWL_CLIPS = 1_930_000
BETAS = (0.0, 0.1, 0.25, 0.5, 1.0)

logger = logging.getLogger("make_figures")


def ontology_subtree(shared: Path, out: Path) -> Path:
    """The ``Animal`` branch, two levels deep, drawn by the package's own plotter."""
    from audioset_data.ontology import Ontology

    onto = Ontology.from_file(shared / "ontology" / "ontology.json")
    return onto.plot_subtree("Animal", out / "ontology-animal.png", depth=2, dpi=90)


def _tree_html(onto, cid: str, labels: set[str], level: int) -> str:
    node = onto[cid]
    kids = onto.children(cid)
    marks = []
    if onto.is_abstract(cid):
        marks.append('<span class="m abs">abstract</span>')
    if onto.is_blacklisted(cid):
        marks.append('<span class="m bl">blacklisted</span>')
    if cid not in labels:
        marks.append('<span class="m nl">not a label</span>')
    parents = onto.parents(cid)
    if len(parents) > 1:
        others = ", ".join(html.escape(onto[p].name) for p in parents)
        marks.append(f'<span class="m mp">parents: {others}</span>')
    n_below = len(onto.descendants(cid))
    count = f' <span class="n">{n_below} below</span>' if kids else ""
    head = (f'<span class="c" title="{html.escape(node.description)}">'
            f'{html.escape(node.name)}</span> <code>{html.escape(cid)}</code>'
            f'{count} {" ".join(marks)}')
    if not kids:
        return f'<li class="leaf">{head}</li>'
    inner = "".join(_tree_html(onto, k, labels, level + 1) for k in kids)
    opened = " open" if level == 0 else ""
    return f"<li><details{opened}><summary>{head}</summary><ul>{inner}</ul></details></li>"


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>AudioSet ontology: every class</title>
<style>
body {{ font: 14px/1.45 system-ui, sans-serif; margin: 1em 2em; color: #222; }}
ul {{ list-style: none; padding-left: 1.3em; margin: 0; border-left: 1px dotted #bbb; }}
li.leaf {{ padding-left: 1.05em; }}
summary {{ cursor: pointer; }}
code {{ color: #777; font-size: 12px; }}
.n {{ color: #555; font-size: 12px; }}
.m {{ font-size: 11px; border-radius: 3px; padding: 0 4px; margin-left: 2px; }}
.abs {{ background: #eee; font-style: italic; }}
.bl {{ background: #fdd; color: #900; }}
.nl {{ background: #ffe9c7; }}
.mp {{ background: #e3efff; }}
.hit > summary > .c, li.leaf.hit > .c {{ background: #ff0; }}
#q {{ font-size: 15px; padding: 3px 6px; width: 22em; }}
</style></head><body>
<h1>AudioSet ontology</h1>
<p>{n_classes} classes under {n_roots} top-level categories, generated from
<code>ontology.json</code> by <code>docs/scripts/make_figures.py</code>. Click a class to open
it; hover a name for its description. A class with several parents is listed under each.</p>
<p><input id="q" placeholder="find a class (opens the branches that hold it)">
<button id="all">open all</button> <button id="none">close all</button> <span id="hits"></span></p>
<ul id="tree">{body}</ul>
<script>
const tree = document.getElementById("tree");
document.getElementById("all").onclick = () =>
  tree.querySelectorAll("details").forEach(d => d.open = true);
document.getElementById("none").onclick = () =>
  tree.querySelectorAll("details").forEach(d => d.open = false);
document.getElementById("q").oninput = (e) => {{
  const q = e.target.value.trim().toLowerCase();
  tree.querySelectorAll(".hit").forEach(n => n.classList.remove("hit"));
  if (!q) {{ document.getElementById("hits").textContent = ""; return; }}
  tree.querySelectorAll("details").forEach(d => d.open = false);
  let n = 0;
  tree.querySelectorAll("li").forEach(li => {{
    const name = li.querySelector(".c").textContent.toLowerCase();
    if (!name.includes(q)) return;
    n += 1;
    const own = li.querySelector(":scope > details") || li;
    own.classList.add("hit");
    for (let p = li.parentElement; p && p !== tree; p = p.parentElement)
      if (p.tagName === "DETAILS") p.open = true;
  }});
  document.getElementById("hits").textContent = n + " found";
}};
</script></body></html>
"""


def ontology_tree(shared: Path, out: Path) -> Path:
    """The whole ontology as one self-contained, collapsible and searchable HTML page."""
    from audioset_data.ontology import Ontology
    from audioset_data.segments.labels import LabelIndex

    onto = Ontology.from_file(shared / "ontology" / "ontology.json")
    labels = set(LabelIndex.from_file(shared / "segments" / "class_labels_indices.csv").mids)
    roots = onto.roots()
    body = "".join(_tree_html(onto, r, labels, 0) for r in roots)
    path = out / "ontology-tree.html"
    path.write_text(_PAGE.format(n_classes=len(onto), n_roots=len(roots), body=body),
                    encoding="utf-8")
    return path


def class_priors(shared: Path, out: Path) -> Path:
    """Ranked class priors of the balanced and eval lists (the package's own plot)."""
    from audioset_data.segments.labels import LabelIndex
    from audioset_data.segments.table import Segments

    index = LabelIndex.from_file(shared / "segments" / "class_labels_indices.csv")
    seg = Segments.from_file(shared / "segments" / "eval_segments.csv", label_index=index)
    return seg.priors().plot(out / "priors-eval.png", dpi=80,
                             title="eval: fraction of clips carrying each class")


def loss_weights(shared: Path, out: Path) -> Path:
    """Positive weight against class prior for several beta, on the real crawl's counts."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from audioset_data.loaders.losses import positive_weights
    from audioset_data.segments.labels import LabelIndex
    from audioset_data.segments.priors import ClassPriors

    index = LabelIndex.from_file(shared / "segments" / "class_labels_indices.csv")
    priors = ClassPriors.from_counts_csv(shared / "segments" / "train_class_counts_panns.csv",
                                         N_CRAWL_CLIPS, index)
    p = np.asarray(priors.priors, dtype=float)
    order = np.argsort(p)
    fig = Figure(figsize=(7.0, 4.2))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for beta in BETAS:
        w = positive_weights(priors, beta)
        ax.plot(p[order], w[order], marker=".", markersize=3, linewidth=1,
                label=f"beta = {beta:g}")
    ax.axvline(p.mean(), color="grey", linestyle=":", linewidth=1)
    ax.text(p.mean(), 1.2, " mean prior", color="grey",
            fontsize=8, va="bottom")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("class prior (fraction of the ~1.93 M training clips)")
    ax.set_ylabel("weight of the positive term")
    ax.set_title("w_c = (mean prior / prior_c) ** beta, 527 AudioSet classes", fontsize=10)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = out / "loss-weights.png"
    fig.savefig(path, dpi=90)
    return path


def _demo_clip(shared: Path) -> tuple[np.ndarray, int, int, str]:
    """Waveform, true length, rate and key of the first clip of a fresh demo cache."""
    import audioset_data
    from audioset_data.downloader.demo import run_demo

    with tempfile.TemporaryDirectory(prefix="docs-figures-") as root:
        run_demo(root=root, csv_base_url=str(shared / "segments"), n_clips=4, workers=2,
                 progress=False)
        cache = audioset_data.open_cache("demo", root=root)
        item = cache[0]
        return (np.asarray(item["waveform"]), int(item["length"]), int(cache.sample_rate),
                str(item["key"]))


def frontend(shared: Path, out: Path) -> Path:
    """A cached demo clip's VGGish log-mel with the boundaries of its 960 ms examples."""
    import torch
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from audioset_data.loaders.frontend import VGGISH, LogMel

    wave, length, rate, key = _demo_clip(shared)
    mel = LogMel(VGGISH, input_rate=rate)
    with torch.no_grad():
        spec = mel(torch.from_numpy(wave[None]), [length])[0].numpy()
    n_frames = mel.frame_counts([length], samples=wave.shape[-1])
    n_frames = int(np.asarray(n_frames).ravel()[0])
    hop_s = VGGISH.hop_length / VGGISH.sample_rate
    per_example = VGGISH.example_frames
    fig = Figure(figsize=(8.0, 3.2))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    shown = spec[:n_frames].T
    ax.imshow(shown, origin="lower", aspect="auto", cmap="magma",
              extent=(0, n_frames * hop_s, 0, shown.shape[0]))
    for i in range(0, n_frames // per_example + 1):
        ax.axvline(i * per_example * hop_s, color="white", linewidth=1, linestyle="--")
    ax.set_xlabel(f"seconds ({per_example} frames of {hop_s * 1000:g} ms = "
                  f"{per_example * hop_s * 1000:g} ms per example)")
    ax.set_ylabel("mel band (64, 125-7500 Hz)")
    ax.set_title(f"demo clip {key}: log(mel + 0.01), VGGish front end; dashed lines: "
                 "example boundaries", fontsize=9)
    fig.tight_layout()
    path = out / "frontend-logmel.png"
    fig.savefig(path, dpi=90)
    return path


FEATURES_RESULTS = REPO / "benchmarks" / "results" / "features_benchmark.json"


def _features_results() -> dict:
    import json

    return json.loads(FEATURES_RESULTS.read_text())


def features_map_vs_clips(shared: Path, out: Path) -> Path:
    """The seed's "mAP against training clips" on the real balanced part."""
    from audioset_data.baselines.features_benchmark import plot_sizes

    path = out / "features_map_vs_clips.png"
    plot_sizes(path, _features_results()["sizes"])
    return path


def features_dprime_vs_prior(shared: Path, out: Path) -> Path:
    """The seed's per-class "d′ against prior" of the attention model on the real data."""
    from audioset_data.baselines.features_benchmark import plot_dprime

    per_class = _features_results()["per_class"]
    dprime = np.array([np.nan if d is None else d for d in per_class["dprime"]], dtype=float)
    path = out / "features_dprime_vs_prior.png"
    plot_dprime(path, np.asarray(per_class["prior"], dtype=float), dprime,
                np.asarray(per_class["defined"], dtype=bool))
    return path


FIGURES_MADE = {
    "ontology-animal": ontology_subtree,
    "ontology-tree": ontology_tree,
    "priors-eval": class_priors,
    "loss-weights": loss_weights,
    "frontend-logmel": frontend,
    "features_map_vs_clips": features_map_vs_clips,
    "features_dprime_vs_prior": features_dprime_vs_prior,
}


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments and write the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=SHARED,
                        help="folder of the official files (ontology/, segments/)")
    parser.add_argument("--out", type=Path, default=FIGURES)
    parser.add_argument("--only", nargs="*", choices=sorted(FIGURES_MADE),
                        help="make only these figures")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    os.environ["AUDIOSET_ONTOLOGY_BASE_URL"] = str(args.shared / "ontology")
    os.environ["AUDIOSET_CSV_BASE_URL"] = str(args.shared / "segments")
    args.out.mkdir(parents=True, exist_ok=True)
    for name in args.only or FIGURES_MADE:
        path = FIGURES_MADE[name](args.shared, args.out)
        logger.info("%s: %s (%d kB)", name, path, path.stat().st_size // 1024)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
