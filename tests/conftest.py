"""Shared fixtures: the real data folder beside the checkout, and small synthetic data sets."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

# measured machine speed (core/speed.py) is cached per test session, never in ~/.cache
os.environ.setdefault("SCANDX_CACHE_DIR", tempfile.mkdtemp(prefix="scandx-speed-"))
# the pseudonym secret (core/privacy.py) is the tests' own, never the user's, and fixed:
# patient pseudonyms order the seeded split, so a new secret per session would give
# every session other splits (the same installation always gives the same ones)
if "SCANDX_CONFIG_DIR" not in os.environ:
    os.environ["SCANDX_CONFIG_DIR"] = tempfile.mkdtemp(prefix="scandx-config-")
    (Path(os.environ["SCANDX_CONFIG_DIR"]) / "secret").write_text("5ca9d0" * 8 + "\n")

ROOT = Path(__file__).resolve().parents[1]
SHARED = (ROOT / ".." / "shared" / "data").resolve()
DICOM_TEST = SHARED / "dicom" / "pydicom-test-files"
DICOM_DATA = SHARED / "dicom" / "pydicom-data"
PNEUMONIA = SHARED / "medmnist" / "pneumoniamnist.npz"

# the top-level entries issue 2 requires in metrics.json of a binary task
REQUIRED_BINARY_METRICS = (
    "auc",
    "accuracy",
    "balanced_accuracy",
    "sensitivity",
    "specificity",
    "ppv",
    "npv",
    "f1",
)

needs_shared = pytest.mark.skipif(
    not SHARED.is_dir(), reason=f"real data folder {SHARED} is absent (CI always has it)"
)


@pytest.fixture(autouse=True)
def _environment_restored():
    """Each test leaves the process environment as it found it: Dask's LocalCluster sets
    OMP_NUM_THREADS=1 (and MKL_..., MALLOC_...) in the parent process, which made every
    later test's child processes run torch on one thread (the README tour took 2x)."""
    before = dict(os.environ)
    yield
    if os.environ != before:
        os.environ.clear()
        os.environ.update(before)


@pytest.fixture
def own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A preprocessed-cache folder of this test's own (the session's speed cache stays
    where it is)."""
    from scandx.data import cache as cache_mod

    root = tmp_path / "cache"
    monkeypatch.setattr(cache_mod, "cache_root", lambda: root)
    monkeypatch.delenv("SCANDX_CACHE", raising=False)
    return root


@pytest.fixture(scope="session")
def phantoms(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small folder-per-class phantom data set (DICOM + PNG), 32 px."""
    from scandx.tasks.classification.data.synthetic import make_phantom_dataset

    return make_phantom_dataset(tmp_path_factory.mktemp("phantoms"), n_patients=60, size=32, seed=1)


@pytest.fixture(scope="session")
def quick_run(phantoms: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A simple-cnn run on the phantoms, trained once through the CLI; read it, don't write it."""
    from scandx.cli import main

    run = tmp_path_factory.mktemp("quick") / "run"
    args = [
        "train",
        "--data",
        phantoms,
        "--out",
        run,
        "--time-budget",
        "5",
        "--model",
        "simple-cnn",
    ]
    assert main(["-q", *map(str, args)]) == 0
    return run
