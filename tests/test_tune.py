"""Stage-2 tuning end to end: every method runs from a stage-1 checkpoint, STARS improves KNN, resume is exact."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

from stars.config import apply_overrides
from stars.data.npz import load_split
from stars.data.splits import validation_holdout
from stars.data.synthetic import prepare_synthetic
from stars.eval.knn import KNNConfig, run_knn
from stars.train.pretrain import pretrain_preset, run_pretraining
from stars.train.tune import METHODS, build_model, param_groups, run_tuning, tune_preset

SMALL_DATA = {"num_subjects": 10, "num_classes": 10, "max_frames": 120}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("syn")
    return str(prepare_synthetic(folder, seed=2, **SMALL_DATA)["xsub"])


@pytest.fixture(scope="module")
def stage1(data, tmp_path_factory):
    cfg = apply_overrides(pretrain_preset("mamp", "tiny"),
                          ["run.epochs=6", "run.batch_size=32", "run.device=cpu"])
    return str(run_pretraining(cfg, data, tmp_path_factory.mktemp("mamp")))


def tiny(method: str, **extra):
    items = ["run.epochs=1", "run.batch_size=32", "run.device=cpu", "queue_size=128"]
    items += [f"{k}={v}" for k, v in extra.items()]
    return apply_overrides(tune_preset(method, "tiny"), items)


def test_paper_defaults():
    cfg = tune_preset("stars", "paper")
    assert cfg.queue_size == 32768 and cfg.temperature == 0.07 and cfg.alpha == 0.45
    assert cfg.run.epochs == 10 and cfg.run.batch_size == 128 and cfg.optim.clip_grad == 3.0
    assert cfg.optim.weight_decay == 0.05 and cfg.optim.schedule == "constant" and cfg.optim.lr == 1e-3
    assert not cfg.augment.mirror and cfg.crop_interval == (1.0, 1.0)
    assert tune_preset("moco", "paper").run.batch_size == 128 and tune_preset("dino", "paper").augment.mirror


@pytest.mark.parametrize("method", [m for m in METHODS if m != "stars"])
def test_every_method_runs_one_epoch(method, data, stage1, tmp_path):
    init = None if method == "nnclr" else stage1
    final = run_tuning(tiny(method), init, data, tmp_path / method)
    state = torch.load(final, weights_only=True)
    assert state["epoch"] == 1
    rows = (tmp_path / method / "metrics.csv").read_text().splitlines()
    assert "monitor_knn_best" in rows[0]  # leave-one-out KNN monitor on a fixed part of the training split


def test_frozen_half_gets_no_gradient(data, stage1):
    cfg = tiny("stars")
    model, heads, encoder = build_model(cfg, stage1)
    groups = param_groups(cfg, model, heads, encoder)
    x = torch.randn(4, 3, encoder.cfg.num_frames, 25, 2)
    loss, _ = model(x, x, torch.arange(4))
    loss.backward()
    depth = encoder.depth
    for index, block in enumerate(encoder.blocks):
        for p in block.parameters():
            assert (p.grad is None) == (index < depth // 2)
    assert encoder.joints_embed.proj.weight.grad is None and encoder.pos_embed.grad is None
    lrs = {g["name"]: g["lr"] for g in groups}
    assert any(abs(v - 1e-3 * 0.45) < 1e-12 for v in lrs.values())


def test_stars_tuning_lowers_the_nnclr_loss(data, stage1, tmp_path):
    cfg = tiny("stars", **{"run.epochs": 4, "queue_size": 256, "monitor_every": 0})
    run_tuning(cfg, stage1, data, tmp_path / "stars")
    rows = (tmp_path / "stars" / "metrics.csv").read_text().splitlines()
    losses = [float(r.split(",")[1]) for r in rows[1:]]
    assert losses[-1] < losses[0], losses


@pytest.mark.slow
def test_short_stars_tuning_raises_the_knn_accuracy_of_its_mamp_start(tmp_path_factory):
    """The demo recipe in miniature on the default synthetic set (40 subjects, 1,200 XSub training
    sequences): 50 MAMP epochs of the tiny model, then 10 epochs of STARS tuning as released (second half
    of the blocks, alpha 0.45, no augmentation, identical views) at the demo's 3e-3 learning rate.
    Measured on the 1,200 test sequences, from MAMP's 40.9 % (majority k=1) and 42.1 % (weighted k=10),
    tuning seeds 0 / 1 / 2: +2.3 / +4.1 / +2.7 and +4.3 / +3.9 / +3.4 points. About 2.5 min on one thread."""
    root = tmp_path_factory.mktemp("tune-gain")
    xsub = str(prepare_synthetic(root / "data", seed=0)["xsub"])
    mamp = apply_overrides(pretrain_preset("mamp", "tiny"), [
        "run.epochs=50", "run.batch_size=32", "optim.warmup_epochs=5", "run.checkpoint_every=50",
        "run.device=cpu"])
    start = run_pretraining(mamp, xsub, root / "mamp")
    cfg = apply_overrides(tune_preset("stars", "tiny"), [
        "run.epochs=10", "run.batch_size=64", "queue_size=1024", "optim.lr=3e-3", "monitor_every=0",
        "run.device=cpu"])
    assert cfg.tuned_blocks == "second_half" and cfg.alpha == 0.45 and not cfg.augment.mirror
    tuned = run_tuning(cfg, str(start), xsub, root / "stars")
    knn = KNNConfig(ks_majority=(1,), ks_weighted=(10,))
    before = run_knn(str(start), xsub, root / "knn-mamp", knn, "cpu")
    after = run_knn(str(tuned), xsub, root / "knn-stars", knn, "cpu")
    assert after["weighted_k10"] > before["weighted_k10"] + 1.5, (before, after)
    assert after["majority_k1"] > before["majority_k1"], (before, after)


def test_resumed_tuning_equals_uninterrupted_queue_included(data, stage1, tmp_path):
    cfg = tiny("stars", **{"run.epochs": 2})
    straight = run_tuning(cfg, stage1, data, tmp_path / "a")
    from stars.train import tune as module

    original = module.Trainer.fit
    module.Trainer.fit = lambda self, stop_after=None: original(self, stop_after=1)
    try:
        run_tuning(cfg, stage1, data, tmp_path / "b")
    finally:
        module.Trainer.fit = original
    resumed = run_tuning(cfg, stage1, data, tmp_path / "b", resume=True)
    a = torch.load(straight, weights_only=True)["model"]
    b = torch.load(resumed, weights_only=True)["model"]
    assert any(k.startswith("queue.") for k in a)
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_init_required_except_from_scratch(data, tmp_path):
    with pytest.raises(ValueError, match="--init"):
        run_tuning(tiny("stars"), None, data, tmp_path / "x")


def test_stage2_trains_on_the_whole_training_split_and_monitors_leave_one_out(data, stage1, tmp_path):
    out = tmp_path / "whole"
    run_tuning(tiny("stars", **{"report_test_max": True}), stage1, data, out)
    info = json.loads((out / "run.json").read_text())
    train = load_split(data, "train")
    assert info["num_train"] == len(train) and info["monitor"] == "leave-one-out"
    _, held = validation_holdout(train.y, 0.1, seed=0)
    assert info["num_monitor"] == len(held)
    rows = pd.read_csv(out / "metrics.csv")
    assert {"monitor_knn_k10", "monitor_knn_best", "test_knn_k10", "test_knn_best"} <= set(rows.columns)
    summary = json.loads((out / "test_max.json").read_text())
    assert summary["test_knn_max_over_epochs"] == pytest.approx(rows["test_knn_best"].max())
    # select=monitor holds the monitored part out of training
    run_tuning(tiny("stars", **{"select": "monitor"}), stage1, data, tmp_path / "held")
    held_info = json.loads((tmp_path / "held" / "run.json").read_text())
    assert held_info["num_train"] == len(train) - len(held) and held_info["monitor"] == "held-out"


def test_select_monitor_returns_the_best_held_out_epoch(data, stage1, tmp_path):
    out = tmp_path / "sel"
    chosen = run_tuning(tiny("stars", **{"run.epochs": 3, "select": "monitor"}), stage1, data, out)
    assert chosen.name == "best.pt"
    rows = (out / "metrics.csv").read_text().splitlines()
    header = rows[0].split(",")
    scores = [float(r.split(",")[header.index("monitor_knn_best")]) for r in rows[1:]]
    best_epoch = 1 + max(range(len(scores)), key=lambda i: (scores[i], -i))  # first epoch reaching the max
    assert torch.load(chosen, weights_only=True)["epoch"] == best_epoch


def test_three_stage_head_phase_stops_on_convergence(data, stage1, tmp_path):
    cfg = tiny("stars-3stage", **{"head_epochs": 5, "head_converge_tol": 1.0, "monitor_every": 0})
    run_tuning(cfg, stage1, data, tmp_path / "three")
    head_rows = (tmp_path / "three" / "head" / "metrics.csv").read_text().splitlines()
    # tolerance 100 %: any epoch improving by less than the whole loss stops the phase after epoch 2
    assert len(head_rows) - 1 == 2
    head = torch.load(tmp_path / "three" / "head" / "final.pt", weights_only=True)
    assert head["epoch"] == 2


def test_official_switches_weight_decay_on_every_parameter_and_test_selection(data, stage1, tmp_path):
    cfg = tiny("stars", **{"weight_decay_scope": "all", "optim.weight_decay": 0.01})
    model, heads, encoder = build_model(cfg, stage1)
    groups = param_groups(cfg, model, heads, encoder)
    assert {g["weight_decay"] for g in groups} == {0.01}  # biases and norms included, as officially
    default = param_groups(tiny("stars"), *build_model(tiny("stars"), stage1))
    assert {g["weight_decay"] for g in default} == {0.0, 0.05}

    out = tmp_path / "test-selected"
    chosen = run_tuning(tiny("stars", **{"run.epochs": 3, "select": "test", "monitor_feature": "projection"}),
                        stage1, data, out)
    rows = pd.read_csv(out / "metrics.csv")
    best_epoch = int(rows["test_knn_best"].idxmax()) + 1  # first epoch reaching the maximum
    assert chosen.name == "best.pt" and torch.load(chosen, weights_only=True)["epoch"] == best_epoch
    summary = json.loads((out / "test_max.json").read_text())
    assert summary["test_knn_max_over_epochs"] == pytest.approx(rows["test_knn_best"].max())


def test_official_dino_momentum_span_and_independent_teacher_heads(stage1):
    from stars.train.tune import _teacher_update

    seen = []

    class Recorder:
        def update_teacher(self, momentum):
            seen.append(momentum)

    update = _teacher_update(apply_overrides(tune_preset("dino", "paper"), ["teacher_momentum_span=25040"]), 20, 313)
    update(Recorder(), 0)
    update(Recorder(), 20 * 313 - 1)
    assert seen == pytest.approx([0.996, 0.99664], abs=1e-5)
    for method in ("moco", "dino"):
        copied, _, _ = build_model(tiny(method), stage1)
        independent, _, _ = build_model(tiny(method, teacher_head_init="independent"), stage1)
        same = [torch.equal(a, b) for a, b in zip(copied.head.parameters(), copied.teacher_head.parameters())]
        differ = [torch.equal(a, b) for a, b in zip(independent.head.parameters(),
                                                    independent.teacher_head.parameters())]
        assert all(same) and not all(differ)


def test_two_step_with_test_selection_carries_over_the_best_head_epoch(data, stage1, tmp_path):
    """Official two-step carry-over: with select=test the head-only epoch with the best test-split KNN of the
    monitor (projection) features starts the partial tuning, not the last head-only epoch."""
    out = tmp_path / "two-step"
    cfg = tiny("stars", **{"workflow": "two-step", "head_epochs": 3, "run.epochs": 1, "select": "test",
                           "monitor_feature": "projection"})
    run_tuning(cfg, stage1, data, out)
    head = pd.read_csv(out / "head" / "metrics.csv")
    best_epoch = int(head["test_knn_best"].idxmax()) + 1
    best = torch.load(out / "head" / "best.pt", weights_only=True)
    assert best["epoch"] == best_epoch
    # the partial tuning started from that state: its first epoch's queue holds the carried-over entries
    last = torch.load(out / "head" / "final.pt", weights_only=True)
    assert last["epoch"] == 3
    if best_epoch != 3:
        assert not torch.equal(best["model"]["queue.features"], last["model"]["queue.features"])
