"""Stage-1 pretraining end to end on the synthetic data: loss, KNN over random init, exact resume, CLI."""

from __future__ import annotations

import json

import pytest
import torch

from stars.cli import main as cli_main
from stars.config import apply_overrides
from stars.data.synthetic import prepare_synthetic
from stars.eval.knn import KNNConfig, run_knn
from stars.train.pretrain import pretrain_preset, run_pretraining

SMALL_DATA = {"num_subjects": 10, "num_classes": 10, "max_frames": 120}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("syn")
    return str(prepare_synthetic(folder, seed=1, **SMALL_DATA)["xsub"])


def tiny(epochs: int, **extra):
    items = [f"run.epochs={epochs}", "run.batch_size=32", "run.checkpoint_every=1", "run.device=cpu"]
    items += [f"{k}={v}" for k, v in extra.items()]
    return apply_overrides(pretrain_preset("mamp", "tiny"), items)


def test_mae_preset_switches_masking_and_target():
    cfg = pretrain_preset("mae", "paper")
    assert cfg.mamp.masking == "random" and cfg.mamp.target == "position"
    assert pretrain_preset("mamp", "paper").mamp.masking == "motion"
    paper = pretrain_preset("mamp", "paper")
    assert (paper.optim.lr, paper.optim.min_lr, paper.optim.warmup_epochs) == (1e-3, 5e-4, 20.0)
    assert paper.optim.betas == (0.9, 0.95) and paper.run.epochs == 400 and paper.run.batch_size == 128


def test_mamp_pretraining_lowers_the_loss(data, tmp_path):
    run_pretraining(tiny(4), data, tmp_path / "mamp")
    rows = (tmp_path / "mamp" / "metrics.csv").read_text().splitlines()
    losses = [float(r.split(",")[1]) for r in rows[1:]]
    assert losses[-1] < 0.8 * losses[0], losses


@pytest.fixture(scope="module")
def demo_data(tmp_path_factory):
    """A 20-subject synthetic set (600 training sequences in XSub): half the demo profile's."""
    return str(prepare_synthetic(tmp_path_factory.mktemp("demo"), seed=0, num_subjects=20)["xsub"])


@pytest.mark.slow
def test_short_pretraining_beats_random_init_in_knn(demo_data, tmp_path):
    """40 MAE epochs of the tiny model (seconds on a CPU) give clearly better KNN features than a
    random encoder on the synthetic data. (MAMP needs ~150 such epochs for a gap; see the demo profile.)"""
    cfg = apply_overrides(pretrain_preset("mae", "tiny"), [
        "run.epochs=40", "run.batch_size=32", "run.checkpoint_every=40", "run.device=cpu",
        "optim.warmup_epochs=3"])
    final = run_pretraining(cfg, demo_data, tmp_path / "mae")
    knn = KNNConfig(ks_majority=(1,), ks_weighted=(10,))
    trained = run_knn(str(final), demo_data, tmp_path / "knn", knn, "cpu")
    random = run_knn(None, demo_data, tmp_path / "knn0", knn, "cpu", preset="tiny")
    assert trained["majority_k1"] > random["majority_k1"] + 5.0, (trained, random)


def test_resumed_pretraining_equals_uninterrupted(data, tmp_path):
    straight = run_pretraining(tiny(2), data, tmp_path / "a")
    cfg = tiny(2)
    # interrupted after the first epoch: a run of the same config stopped early
    from stars.train import pretrain as module

    original = module.Trainer.fit
    module.Trainer.fit = lambda self, stop_after=None: original(self, stop_after=1)
    try:
        run_pretraining(cfg, data, tmp_path / "b")
    finally:
        module.Trainer.fit = original
    assert not (tmp_path / "b" / "final.pt").exists()
    resumed = run_pretraining(cfg, data, tmp_path / "b", resume=True)
    a = torch.load(straight, weights_only=True)["model"]
    b = torch.load(resumed, weights_only=True)["model"]
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_cli_writes_config_metrics_and_checkpoint(data, tmp_path):
    out = tmp_path / "run"
    code = cli_main(["pretrain", "mae", "--data", data, "--out", str(out), "--preset", "tiny",
                     "--set", "run.epochs=1", "--set", "run.batch_size=32", "--device", "cpu"])
    assert code == 0
    for name in ("config.yaml", "run.json", "metrics.csv", "final.pt", "checkpoint-last.pt"):
        assert (out / name).exists(), name
    info = json.loads((out / "run.json").read_text())
    assert info["dataset"] == data and "commit" in info and info["device"].startswith("cpu")
    state = torch.load(out / "final.pt", weights_only=True)
    assert state["kind"] == "mae" and state["config"]["mamp"]["masking"] == "random"


def test_joint_count_comes_from_the_data_and_a_conflicting_override_is_refused(data, tmp_path, capsys):
    cfg = apply_overrides(tiny(1), ["encoder.num_joints=20"])  # the file's 25 joints win in the library
    final = run_pretraining(cfg, data, tmp_path / "x")
    assert torch.load(final, weights_only=True)["config"]["encoder"]["num_joints"] == 25
    code = cli_main(["pretrain", "mamp", "--data", data, "--out", str(tmp_path / "y"), "--preset", "tiny",
                     "--set", "encoder.num_joints=20", "--device", "cpu"])
    assert code == 2 and "encoder.num_joints=20 disagrees" in capsys.readouterr().err
