"""Markers: `gpu` skips without CUDA, `realdata` skips when the real datasets folder is absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("JUPYTER_PLATFORM_DIRS", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

REPO_ROOT = Path(__file__).resolve().parent.parent


def datasets_root() -> Path:
    """STARS_DATASETS, or ../shared/datasets beside the repository."""
    return Path(os.environ.get("STARS_DATASETS", REPO_ROOT.parent / "shared" / "datasets"))


def pytest_collection_modifyitems(config, items):
    no_cuda = pytest.mark.skip(reason="needs a CUDA device; none is available")
    root = datasets_root()
    no_data = pytest.mark.skip(
        reason=f"real datasets folder {root} is absent (set STARS_DATASETS to a folder with utd_mhad/ and nw_ucla/)"
    )
    for item in items:
        if "gpu" in item.keywords and not torch.cuda.is_available():
            item.add_marker(no_cuda)
        if "realdata" in item.keywords and not root.is_dir():
            item.add_marker(no_data)


@pytest.fixture(autouse=True)
def _small_threads():
    torch.set_num_threads(1)  # small models: one thread is faster than two and immune to a loaded machine
    yield
