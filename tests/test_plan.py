"""The plan of `make tables`: the notebooks' own runs, counted once, and their estimated time."""

from __future__ import annotations

import pytest

from stars.plan import PlannedRun, estimate_seconds, format_plan, plan_profile, split_sizes

SPEEDS = {"pretrain": 100.0, "tune": 50.0, "eval": 400.0, "device": "test device", "precision": "fp32"}


@pytest.mark.slow
def test_plan_lists_every_notebook_run_once(tmp_path, monkeypatch):
    monkeypatch.setenv("STARS_CACHE", str(tmp_path / "cache"))
    runs = plan_profile("smoke", None, results_dir=str(tmp_path / "results"))
    kinds = {(run.kind, run.method) for run in runs}
    assert {("pretrain", "mamp"), ("tune", "stars"), ("eval", "knn"), ("eval", "linear")} <= kinds
    shared = [run for run in runs if run.kind == "pretrain" and run.method == "mamp"
              and run.data.endswith("SYN_XSub.npz")]
    assert len(shared) == 1 and {"headline", "figure2_tsne"} <= set(shared[0].notebooks)
    assert not list((tmp_path / "cache").glob("smoke/pretrain-*"))  # nothing was trained
    text = format_plan(runs, SPEEDS)
    assert "estimated time" in text and f"runs ({len(runs)})" in text


def test_estimates_are_samples_times_epochs_over_the_measured_speed(tmp_path):
    from stars.data.synthetic import prepare_synthetic

    data = str(prepare_synthetic(tmp_path, seed=0, num_subjects=4, num_classes=4, max_frames=40)["xsub"])
    train, test = split_sizes(data)
    pretrain = PlannedRun("pretrain", "mamp", data, {"run": {"epochs": 400}})
    assert estimate_seconds(pretrain, SPEEDS) == pytest.approx(400 * train / 100.0)
    stopped = PlannedRun("pretrain", "mamp", data, {"run": {"epochs": 400}, "stop_epoch": 300})  # PKU released
    assert estimate_seconds(stopped, SPEEDS) == pytest.approx(300 * train / 100.0)
    tune = PlannedRun("tune", "stars", data, {"run": {"epochs": 10}, "workflow": "two-step", "head_epochs": 20,
                                              "augment": {"mirror": False}, "select": "test"})
    assert estimate_seconds(tune, SPEEDS) == pytest.approx(30 * train / 50.0 + 10 * (train + test) / 400.0)
    knn = PlannedRun("eval", "knn", data, {})
    assert estimate_seconds(knn, SPEEDS) == pytest.approx((train + test) / 400.0)


def test_prefetch_substitutes_planned_checkpoints_and_folders_in_init_and_items():
    from stars.plan import PlannedRun, _substitute

    run = PlannedRun("eval", "tsne", "d.npz", {}, name="eval-tsne-9",
                     call=(["compare_ckpt=<planned tune-stars-1>/final.pt", "seed=0"], "d.npz",
                           "<planned pretrain-mamp-0>/final.pt", None))
    assert run.depends_on() == ["pretrain-mamp-0", "tune-stars-1"]
    done = {"pretrain-mamp-0": "/c/pretrain-mamp-a/final.pt", "tune-stars-1": "/c/tune-stars-b/best.pt",
            "eval-linear-2": "/c/eval-linear-c"}
    assert _substitute("<planned pretrain-mamp-0>/final.pt", done) == "/c/pretrain-mamp-a/final.pt"
    assert _substitute("compare_ckpt=<planned tune-stars-1>/final.pt", done) == "compare_ckpt=/c/tune-stars-b/best.pt"
    assert _substitute("<planned tune-stars-1>/head/final.pt", done) == "/c/tune-stars-b/head/final.pt"
    assert _substitute("<planned eval-linear-2>/encoder.pt", done) == "/c/eval-linear-c/encoder.pt"
    assert _substitute("seed=0", done) == "seed=0" and _substitute(None, done) is None


def test_prefetch_starts_the_run_with_the_longest_chain_ahead_first(tmp_path):
    from stars.data.synthetic import prepare_synthetic
    from stars.plan import critical_path_seconds

    data = str(prepare_synthetic(tmp_path, seed=0, num_subjects=4, num_classes=4, max_frames=40)["xsub"])
    train, test = split_sizes(data)
    short = PlannedRun("pretrain", "mamp", data, {"run": {"epochs": 10}}, name="pretrain-short")
    long = PlannedRun("pretrain", "mae", data, {"run": {"epochs": 20}}, name="pretrain-long")
    tunes = [PlannedRun("tune", "stars", data, {"run": {"epochs": 10}}, name=f"tune-{i}",
                        call=([], data, "<planned pretrain-short>/final.pt", None)) for i in range(3)]
    knn = PlannedRun("eval", "knn", data, {}, name="eval-knn", call=([], data, "<planned tune-0>/final.pt", None))
    ahead = critical_path_seconds([short, long, *tunes, knn], SPEEDS)
    assert ahead["eval-knn"] == pytest.approx((train + test) / 400.0)
    assert ahead["tune-0"] == pytest.approx(10 * train / 50.0 + ahead["eval-knn"])
    assert ahead["tune-1"] == pytest.approx(10 * train / 50.0)
    assert ahead["pretrain-short"] == pytest.approx(10 * train / 100.0 + ahead["tune-0"])
    assert ahead["pretrain-long"] == pytest.approx(20 * train / 100.0)
    # the short pretraining with three tunings behind it goes before the longer one that nothing waits for
    assert ahead["pretrain-short"] > ahead["pretrain-long"]
