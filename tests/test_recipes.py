"""Per-dataset recipes: chosen from the dataset file, recorded in the run's config, overridable with --set."""

from __future__ import annotations

import shutil

import pytest
import torch
import yaml

from stars.config import ConfigError
from stars.data.synthetic import prepare_synthetic
from stars.eval.cli import resolve_config
from stars.recipes import DATASET_RECIPES, detect_dataset
from stars.train.pretrain import pretrain_preset, resolve_pretrain_config, run_pretraining
from stars.train.tune import resolve_tune_config, run_tuning, tune_preset


@pytest.mark.parametrize(
    ("name", "expected"),
    [("NTU60_XSub.npz", "ntu60-xsub"), ("/d/NTU60_XView.npz", "ntu60-xview"), ("NTU120_XSub.npz", "ntu120"),
     ("NTU120_XSet.npz", "ntu120"), ("PKUv2_XSub.npz", "pku"), ("PKUv1_XView.npz", "pku"),
     ("SYN_XSub.npz", "none"), (None, "none")],
)
def test_dataset_is_detected_from_the_official_file_name(name, expected):
    assert detect_dataset(name) == expected


def test_tuning_recipes_are_the_released_per_dataset_settings():
    ntu60 = resolve_tune_config("stars", "paper", "NTU60_XSub.npz")
    assert (ntu60.dataset_preset, ntu60.alpha, ntu60.optim.lr, ntu60.workflow) == ("ntu60-xsub", 0.45, 1e-3, "one-step")
    xview = resolve_tune_config("stars", "paper", "NTU60_XView.npz")
    assert (xview.alpha, xview.workflow) == (0.45, "two-step")
    ntu120 = resolve_tune_config("stars", "paper", "data/NTU120_XSub.npz")
    assert (ntu120.dataset_preset, ntu120.alpha, ntu120.optim.lr, ntu120.workflow) == ("ntu120", 0.40, 1e-3, "two-step")
    pku = resolve_tune_config("stars", "paper", "PKUv2_XSub.npz")
    assert (pku.alpha, pku.optim.lr, pku.workflow) == (0.35, 1e-4, "two-step")
    other = resolve_tune_config("stars", "paper", "SYN_XSub.npz")
    assert other == tune_preset("stars", "paper").__class__(**{**vars(tune_preset("stars", "paper")),
                                                                "dataset_preset": "none"})
    # the user's --set wins over the recipe, and dataset_preset switches it off or forces another
    assert resolve_tune_config("stars", "paper", "NTU120_XSub.npz", ["alpha=0.5"]).alpha == 0.5
    off = resolve_tune_config("stars", "paper", "NTU120_XSub.npz", ["dataset_preset=none"])
    assert (off.dataset_preset, off.alpha, off.workflow) == ("none", 0.45, "one-step")
    forced = resolve_tune_config("stars", "paper", "mine.npz", ["dataset_preset=pku"])
    assert (forced.dataset_preset, forced.optim.lr) == ("pku", 1e-4)
    with pytest.raises(ConfigError, match="dataset_preset"):
        resolve_tune_config("stars", "paper", "mine.npz", ["dataset_preset=ntu"])
    # Appendix A's STARS-3stage stays two-step everywhere; NNCLR from scratch takes no recipe
    assert resolve_tune_config("stars-3stage", "paper", "NTU60_XSub.npz").workflow == "two-step"
    assert resolve_tune_config("nnclr", "paper", "PKUv2_XSub.npz").alpha == 1.0


def test_moco_and_dino_follow_the_released_two_step_configs_at_global_batch_128():
    moco, dino = tune_preset("moco", "paper"), tune_preset("dino", "paper")
    for cfg in (moco, dino):
        assert cfg.run.batch_size == 128 and cfg.workflow == "two-step" and cfg.head_epochs == 20
        assert cfg.augment.mirror and cfg.augment.main_axis_rotation and cfg.alpha == 0.45
    assert (moco.run.epochs, dino.run.epochs) == (10, 20)
    assert (moco.queue_size, moco.momentum, moco.temperature) == (32768, 0.999, 0.07)
    assert (dino.teacher_momentum, dino.student_temperature, dino.teacher_temperature) == (0.996, 0.1, 0.04)


def test_pretraining_and_evaluation_recipes():
    ntu120 = resolve_pretrain_config("mamp", "paper", "NTU120_XSub.npz")
    assert (ntu120.mamp.decoder_depth, ntu120.mamp.motion_aware_tau) == (5, 0.75)
    pku = resolve_pretrain_config("mamp", "paper", "PKUv2_XSub.npz")
    assert (pku.mamp.decoder_depth, pku.mamp.motion_aware_tau) == (5, 0.80)
    assert resolve_pretrain_config("mamp", "paper", "NTU60_XSub.npz").mamp.decoder_depth == 3
    tiny = resolve_pretrain_config("mamp", "tiny", "NTU120_XSub.npz")  # the size preset keeps its decoder
    assert tiny.mamp.decoder_depth == pretrain_preset("mamp", "tiny").mamp.decoder_depth
    assert tiny.mamp.motion_aware_tau == 0.75
    linear = resolve_config("linear", "paper", [], data="PKUv2_XSub.npz")
    assert (linear.batch_size, linear.lr) == (32, 0.01)
    assert resolve_config("linear", "paper", ["lr=0.05"], data="PKUv2_XSub.npz").lr == 0.05
    assert resolve_config("linear", "paper", [], data="NTU60_XSub.npz").lr == 0.1
    assert resolve_config("transfer", "paper", [], data="PKUv2_XSub.npz").linear.lr == 0.01


def test_every_recipe_key_is_a_config_key():
    from stars.config import all_keys
    from stars.eval.cli import PROTOCOLS
    from stars.train.pretrain import PretrainConfig
    from stars.train.tune import TuneConfig

    classes = {"pretrain": PretrainConfig, "tune": TuneConfig}
    for recipe in DATASET_RECIPES.values():
        for kind, items in recipe.items():
            base = kind.split(":")[0]
            cls = classes.get(base) or type(PROTOCOLS[base].presets["paper"])
            assert set(items) <= set(all_keys(cls)), (kind, items)


def test_a_tuning_run_on_an_ntu120_file_records_and_uses_its_recipe(tmp_path):
    files = prepare_synthetic(tmp_path / "syn", seed=3, num_subjects=6, num_classes=6, max_frames=60)
    data = tmp_path / "NTU120_XSub.npz"
    shutil.copy(files["xsub"], data)
    stage1 = run_pretraining(
        resolve_pretrain_config("mamp", "tiny", data, ["run.epochs=1", "run.batch_size=16", "run.device=cpu"]),
        data, tmp_path / "mamp",
    )
    cfg = resolve_tune_config("stars", "tiny", data, ["run.epochs=1", "run.batch_size=16", "run.device=cpu",
                                                      "queue_size=64", "head_epochs=1", "monitor_every=0"])
    final = run_tuning(cfg, str(stage1), data, tmp_path / "stars")
    written = yaml.safe_load((tmp_path / "stars" / "config.yaml").read_text())
    assert written["dataset_preset"] == "ntu120" and written["alpha"] == 0.40 and written["workflow"] == "two-step"
    assert (tmp_path / "stars" / "head" / "final.pt").exists()  # the head-only step ran first
    assert torch.load(final, weights_only=True)["config"]["alpha"] == 0.40


def test_paper_profile_applies_the_released_switches_and_needs_all_four_files(tmp_path, monkeypatch):
    from stars.experiments import get_profile
    from stars.recipes import PAPER_SWITCHES

    monkeypatch.delenv("STARS_OVERRIDES", raising=False)
    for name in ("NTU60_XSub.npz", "NTU60_XView.npz", "NTU120_XSub.npz"):
        (tmp_path / name).touch()
    with pytest.raises(ConfigError, match="PKUv2_XSub.npz"):
        get_profile("paper", tmp_path)
    (tmp_path / "PKUv2_XSub.npz").touch()
    profile = get_profile("paper", tmp_path)
    assert profile.tune == PAPER_SWITCHES["tune"] and profile.evaluation["semi"] == PAPER_SWITCHES["semi"]
    assert {"xsub", "xview", "ntu120", "pku", "fewshot", "transfer_source", "transfer_target"} <= set(profile.datasets)
    monkeypatch.setenv("STARS_OVERRIDES", "preset=tiny tune:run.epochs=1 linear:epochs=2")
    shortened = get_profile("paper", tmp_path)
    assert shortened.preset == "tiny" and shortened.env == {"tune": ("run.epochs=1",), "linear": ("epochs=2",)}
    from stars.experiments import Experiment

    exp = Experiment.__new__(Experiment)
    exp.profile, exp.progress, exp.seed = shortened, False, 0
    items = exp._overrides("eval", "linear", {"epochs": 100})
    assert items.index("epochs=2") > items.index("epochs=100")  # applied after the notebook's own value
    monkeypatch.setenv("STARS_OVERRIDES", "tuen:run.epochs=1")
    with pytest.raises(ConfigError, match="tuen"):
        get_profile("paper", tmp_path)
