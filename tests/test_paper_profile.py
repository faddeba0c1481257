"""The paper profile is run before a user runs it: every notebook executes end to end in the `paper`
profile on small synthetic files under the official names, with the model and the epochs turned down
through the documented `STARS_OVERRIDES`, and the plan printed first lists exactly the runs trained."""

from __future__ import annotations

import contextlib
import io
import re
import shutil

import numpy as np
import pytest

from stars.data.npz import load_split, save_dataset
from stars.data.synthetic import prepare_synthetic
from stars.experiments import get_profile
from stars.notebooks import profile_notebooks, run_all

# Everything the paper profile trains, shortened: the tiny model, one epoch, small queues and batches,
# two semi-supervised runs with batches of 2 (1 % of these files is 2 labels per process, 4 in all).
QUICK = (
    "preset=tiny pretrain:run.epochs=1 pretrain:run.batch_size=32 tune:run.epochs=1 tune:head_epochs=1 "
    "tune:run.batch_size=32 tune:queue_size=128 linear:epochs=1 finetune:epochs=1 semi:finetune.epochs=1 "
    "semi:runs=2 semi:seeds=[0,1] semi:finetune.batch_size=2 transfer:finetune.epochs=1 "
    "transfer:linear.epochs=1 fewshot:episodes=10"
)


def official_files(folder):
    """NTU60_XSub / NTU60_XView (the synthetic XSub / XView), NTU120_XSub (XSub samples relabelled into the 60
    classes NTU-60 does not have, 6 test samples each for 5-shot episodes) and PKUv2_XSub (51 label columns)."""
    syn = prepare_synthetic(folder / "synthetic", seed=0, num_subjects=14, num_classes=10, max_frames=40)
    shutil.copy(syn["xsub"], folder / "NTU60_XSub.npz")
    shutil.copy(syn["xview"], folder / "NTU60_XView.npz")
    train, test = load_split(syn["xsub"], "train"), load_split(syn["xsub"], "test")
    repeats = -(-360 // len(test))  # at least 60 classes x 6 test samples
    unseen_x = np.concatenate([test.x] * repeats)[:360]
    save_dataset(folder / "NTU120_XSub.npz", train.x, 60 + np.arange(len(train)) % 60, unseen_x,
                 60 + np.arange(360) % 60, num_classes=120)
    save_dataset(folder / "PKUv2_XSub.npz", train.x, train.y, test.x, test.y, num_classes=51)
    shutil.rmtree(folder / "synthetic")
    return folder


@pytest.mark.slow
def test_every_notebook_runs_in_the_paper_profile_and_the_plan_lists_its_runs(tmp_path, monkeypatch):
    data = official_files(tmp_path / "data")
    cache = tmp_path / "cache"
    for name, value in (("STARS_CACHE", str(cache)), ("STARS_OVERRIDES", QUICK), ("JUPYTER_PLATFORM_DIRS", "1"),
                        ("MPLBACKEND", "Agg"), ("OMP_NUM_THREADS", "1")):
        monkeypatch.setenv(name, value)
    out = tmp_path / "results"
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer), contextlib.redirect_stderr(buffer):
        status = run_all("paper", str(data), out_dir=str(out), device="cpu", jobs=2)  # two kernels, as `make tables`
    log = buffer.getvalue()
    assert status == 0, log[-4000:]
    assert log.index("[plan]") < log.index("[tables]")  # the plan comes first
    assert "estimated time" in log
    for path in profile_notebooks(get_profile("paper", str(data))):
        assert (out / "notebooks" / f"{path.stem}.ipynb").exists(), path.stem
    planned = int(re.search(r"\[plan\] runs \((\d+)\)", log).group(1))
    trained = [p for p in (cache / "paper").iterdir() if p.name.startswith(("pretrain-", "tune-", "eval-"))]
    assert planned == len(trained), (planned, sorted(p.name for p in trained))
    for name in ("NTU60_XSub.npz", "NTU60_XView.npz", "NTU120_XSub.npz", "PKUv2_XSub.npz"):
        assert name in log
