"""Shared fixtures: every cache points at a temp folder; real files come from ../shared/data."""

from __future__ import annotations

import os
from pathlib import Path

if os.environ.get("PYTEST_XDIST_WORKER"):
    # one worker process per core: a second torch/OpenMP thread in each would only contend
    # (and OpenMP's default busy-wait makes that contention many times slower); set before
    # any test module imports torch
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest

from audioset_data.ontology import Ontology
from audioset_data.segments.labels import LabelIndex
from audioset_data.segments.table import Segments
from audioset_data.testing import LoopbackServer

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    """Point the data root at a fresh temp folder and forget any mirror settings."""
    root = tmp_path_factory.mktemp("audioset_home")
    monkeypatch.setenv("AUDIOSET_DATA_HOME", str(root))
    monkeypatch.delenv("AUDIOSET_ONTOLOGY_BASE_URL", raising=False)
    for name in ("AUDIOSET_CSV_BASE_URL", "AUDIOSET_STRONG_BASE_URL", "AUDIOSET_FEATURES_URL",
                 "AUDIOSET_SUBSETS_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    return root


@pytest.fixture
def data_root(_isolated_cache: Path) -> Path:
    """The temp data root of this test."""
    return _isolated_cache


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The folder of real public files (ontology.json, segment CSVs)."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"needs the real public files in {SHARED_DATA} (the folder 'shared/data' "
                    "beside the repository); this copy of the repository has none")
    return SHARED_DATA


@pytest.fixture(scope="session")
def label_index(shared_data: Path) -> LabelIndex:
    """The real 527-label index."""
    return LabelIndex.from_file(shared_data / "segments" / "class_labels_indices.csv")


@pytest.fixture(scope="session")
def index(label_index: LabelIndex) -> LabelIndex:
    """Short name for :func:`label_index`."""
    return label_index


@pytest.fixture(scope="session")
def ontology(shared_data: Path) -> Ontology:
    """The real ontology."""
    return Ontology.from_file(shared_data / "ontology" / "ontology.json")


@pytest.fixture(scope="session")
def eval_seg(shared_data: Path, label_index: LabelIndex) -> Segments:
    """The real eval segment list, parsed without the cache."""
    return Segments.from_file(shared_data / "segments" / "eval_segments.csv",
                              label_index=label_index)


@pytest.fixture
def http_server():
    """A running loopback server; tests add files and behaviours to it."""
    with LoopbackServer() as server:
        yield server


@pytest.fixture
def mirror(http_server: LoopbackServer, shared_data: Path, monkeypatch: pytest.MonkeyPatch):
    """Serve the real official files on loopback and point both base addresses at it."""
    http_server.add("ontology/ontology.json", shared_data / "ontology" / "ontology.json")
    for p in (shared_data / "segments").iterdir():
        http_server.add(f"csv/{p.name}", p)
    monkeypatch.setenv("AUDIOSET_ONTOLOGY_BASE_URL", http_server.url("ontology/"))
    monkeypatch.setenv("AUDIOSET_CSV_BASE_URL", http_server.url("csv/"))
    return http_server
