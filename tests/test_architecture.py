"""The layout as rooms: imports run one way, no cycles between modules (function-level imports
counted), the documented imports work, and the module paths of the flat layout still import."""

from __future__ import annotations

import ast
import importlib
import re
import subprocess
import sys
import warnings
from pathlib import Path

import networkx as nx
import pytest

REPO = Path(__file__).resolve().parents[1]
#: Where each part of the package lives in the repository.
SOURCES = {
    "audioset_data": REPO / "audioset_data",
    "audioset_data.ontology": REPO / "ontology",
    "audioset_data.loaders": REPO / "loaders",
    "audioset_data.baselines": REPO / "baselines",
}
#: The rooms, lowest first: a room may import the rooms before it, never those after it.
LAYERS = ["ground", "ontology", "segments", "strong", "audio", "cache", "features",
          "downloader", "evaluation", "loaders", "baselines", "interop", "cli"]
#: The modules at the top of the package that every room may use.
GROUND = {"config", "errors", "fileio", "remote", "lazy", "testing", "loopback"}


def _modules() -> dict[str, Path]:
    found = {}
    for package, folder in SOURCES.items():
        for path in folder.rglob("*.py"):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join([package, *parts])] = path
    return found


MODULES = _modules()


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".")
    if not is_package:
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _known(name: str) -> str | None:
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _imports(module: str) -> list[tuple[str, bool]]:
    """(imported package module, inside a function) for every runtime import of ``module``;
    ``if TYPE_CHECKING:`` blocks are left out (they never run), lazy export tables are in."""
    path = MODULES[module]
    tree = ast.parse(path.read_text())
    typing_only: set[int] = set()
    in_function: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.dump(node.test):
            typing_only.update(id(n) for n in ast.walk(node))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            in_function.update(id(n) for n in ast.walk(node))
    out = []
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        targets: list[str] = []
        if isinstance(node, ast.ImportFrom):
            base = _resolve(module, path.name == "__init__.py", node)
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base
                       for a in node.names]
        elif isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif (isinstance(node, ast.Constant) and isinstance(node.value, str)
              and module != "audioset_data.lazy"  # its table of old paths is not an import
              and re.fullmatch(r"audioset_data(\.\w+)+", node.value)):
            targets = [node.value]  # lazy export tables name modules as strings
        for target in targets:
            if target.startswith("audioset_data"):
                known = _known(target)
                if known and known != module:
                    out.append((known, id(node) in in_function))
            elif isinstance(node, ast.Import | ast.ImportFrom):
                out.append((target, id(node) in in_function))
    return out


def _room(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1 or (len(parts) == 2 and parts[1] in GROUND):
        return "ground"
    return parts[1]


def test_no_cycles_between_modules() -> None:
    graph = nx.DiGraph()
    for module in MODULES:
        graph.add_node(module)
        for target, _ in _imports(module):
            if target in MODULES and not target.startswith(f"{module}."):
                graph.add_edge(module, target)
    # a package's export table naming its own modules is the package, not a dependency
    for a, b in list(graph.edges):
        if b.startswith(f"{a}."):
            graph.remove_edge(a, b)
    cycles = [sorted(c) for c in nx.strongly_connected_components(graph) if len(c) > 1]
    assert cycles == []


def test_rooms_import_downwards_only() -> None:
    wrong = []
    for module in MODULES:
        if module.endswith("__main__") or module == "audioset_data":
            continue
        mine = _room(module)
        for target, _ in _imports(module):
            if target in MODULES and target != "audioset_data":
                theirs = _room(target)
                if LAYERS.index(theirs) > LAYERS.index(mine):
                    wrong.append(f"{module} -> {target}")
    assert wrong == []


def test_function_level_imports_only_for_optional_dependencies() -> None:
    late = []
    for module in MODULES:
        for target, in_function in _imports(module):
            if not in_function:
                continue
            top = target.split(".")[0]
            # the CLI imports the torch-backed rooms only when a command needs them
            if (_room(module) == "cli"
                    and _room(target) in ("loaders", "baselines")):
                continue
            if top == "audioset_data":
                late.append(f"{module} -> {target}")
    assert late == []


def test_torch_only_in_loaders_and_baselines() -> None:
    for module in MODULES:
        room = _room(module)
        for target, _ in _imports(module):
            if target.split(".")[0] == "torch":
                assert room in ("loaders", "baselines"), module


def test_top_level_holds_only_what_every_room_uses() -> None:
    top = sorted(p.stem for p in SOURCES["audioset_data"].glob("*.py"))
    assert len(top) <= 12, top
    assert set(top) <= GROUND | {"__init__", "__main__"}
    for room in LAYERS[1:]:
        init = MODULES[f"audioset_data.{room}"]
        doc = ast.get_docstring(ast.parse(init.read_text()))
        assert doc and len(doc) > 40, f"{room}/__init__.py says what the room is for"


def _documented_imports() -> list[str]:
    texts = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
    found = []
    for path in texts:
        for line in path.read_text().splitlines():
            m = re.match(r"\s*(from audioset_data[\w.]* import [\w, ]+|import audioset_data[\w.]*)"
                         r"\s*(#.*)?$", line)
            if m:
                found.append(m.group(1).rstrip(", "))
    return sorted(set(found))


@pytest.mark.parametrize("statement", _documented_imports())
def test_documented_import_works(statement: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)  # the docs show the current place
        exec(statement, {})  # noqa: S102 - a fixed statement taken from our own docs


def test_reference_pages_name_real_modules() -> None:
    for page in (REPO / "docs" / "reference").glob("*.md"):
        for name in re.findall(r"^::: (\S+)", page.read_text(), flags=re.M):
            importlib.import_module(name)


def test_public_names_of_every_room_resolve() -> None:
    for room in LAYERS[1:]:
        package = importlib.import_module(f"audioset_data.{room}")
        for name in getattr(package, "__all__", []):
            assert getattr(package, name) is not None, f"audioset_data.{room}.{name}"


def test_flat_layout_paths_still_import_the_same_objects() -> None:
    from audioset_data.lazy import MOVED

    code = (
        "import importlib, warnings, sys\n"
        "from audioset_data.lazy import MOVED\n"
        "for old, new in MOVED.items():\n"
        "    with warnings.catch_warnings(record=True) as seen:\n"
        "        warnings.simplefilter('always')\n"
        "        mod = importlib.import_module(old)\n"
        "    assert mod is importlib.import_module(new), old\n"
        "    assert any(issubclass(w.category, DeprecationWarning) for w in seen), old\n"
        "from audioset_data.labels import LabelIndex\n"
        "from audioset_data.segments import LabelIndex as same\n"
        "assert LabelIndex is same\n"
        "import audioset_data, inspect\n"
        "import audioset_data.downloader.job\n"
        "assert inspect.isfunction(audioset_data.download)\n"
        "print(len(MOVED))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=REPO, check=False)
    assert out.returncode == 0, out.stderr
    assert int(out.stdout) == len(MOVED) >= 30
