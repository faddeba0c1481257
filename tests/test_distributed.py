"""torchrun with two CPU processes (gloo): pretraining and STARS tuning run with the same global batch."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from stars.data.synthetic import prepare_synthetic

TORCHRUN = Path(sys.executable).with_name("torchrun")


def _torchrun(args: list[str], tmp_path: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MASTER_PORT": "0"}
    cmd = [str(TORCHRUN), "--nproc_per_node=2", "--rdzv-backend=c10d", "--rdzv-endpoint=localhost:0",
           "-m", "stars", *args, "--device", "cpu"]
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600, cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


@pytest.mark.slow
@pytest.mark.skipif(not shutil.which(str(TORCHRUN)), reason="torchrun is not installed next to python")
def test_torchrun_two_processes_pretrain_and_tune(tmp_path):
    data = str(prepare_synthetic(tmp_path / "data", seed=4, num_subjects=10, num_classes=10,
                                 max_frames=120)["xsub"])
    _torchrun(["pretrain", "mamp", "--data", data, "--out", str(tmp_path / "mamp"), "--preset", "tiny",
               "--set", "run.epochs=1", "--set", "run.batch_size=32"], tmp_path)
    state = torch.load(tmp_path / "mamp" / "final.pt", weights_only=True)
    assert state["world_size"] == 2 and state["config"]["run"]["batch_size"] == 32
    _torchrun(["tune", "stars", "--init", str(tmp_path / "mamp" / "final.pt"), "--data", data, "--out",
               str(tmp_path / "stars"), "--preset", "tiny", "--set", "run.epochs=1", "--set", "run.batch_size=32",
               "--set", "queue_size=128"], tmp_path)
    tuned = torch.load(tmp_path / "stars" / "final.pt", weights_only=True)
    assert tuned["world_size"] == 2
    # the queue receives the all-gathered view-1 projections of both processes, 32 per step (16 without
    # the gather): the whole training split (150 samples, nothing held out) gives 4 steps, 128 entries
    filled = int((tuned["model"]["queue.ids"] >= 0).sum())
    assert filled == 128, filled
