"""Markers: `gpu` skips without CUDA, `realdata` skips when the real datasets folder is absent."""

from __future__ import annotations

import os

import pytest
import torch

from stars.data.real import default_datasets_root

os.environ.setdefault("JUPYTER_PLATFORM_DIRS", "1")
os.environ.setdefault("MPLBACKEND", "Agg")



def pytest_collection_modifyitems(config, items):
    no_cuda = pytest.mark.skip(reason="needs a CUDA device; none is available")
    root = default_datasets_root()
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
