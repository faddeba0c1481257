"""STARS' retrained PKU-MMD MAMP (docs/reproduction.md): AdamW weight decay on every parameter
(`weight_decay_scope=all`) and the checkpoint of epoch 300 of a 400-epoch schedule (`stop_epoch`), applied by
the paper profile (`released_recipe=true`) to PKU-MMD files only."""

from __future__ import annotations

import csv

import pytest
import torch

from stars.cli import main as cli_main
from stars.config import ConfigError, apply_overrides, to_dict
from stars.data.npz import load_split
from stars.data.synthetic import prepare_synthetic
from stars.models.mamp import MaskedMotionModel
from stars.plan import PlannedRun, _epochs_of
from stars.recipes import PAPER_SWITCHES
from stars.train import pretrain as pretrain_module
from stars.train.engine import CHECKPOINT_NAME, FINAL_NAME, ResumeError, learning_rate
from stars.train.pretrain import param_groups, pretrain_preset, resolve_pretrain_config, run_pretraining


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("syn")
    return str(prepare_synthetic(folder, seed=2, num_subjects=8, num_classes=6, max_frames=60)["xsub"])


def tiny(epochs: int, **extra):
    items = [f"run.epochs={epochs}", "run.batch_size=16", "run.checkpoint_every=1", "run.device=cpu"]
    return apply_overrides(pretrain_preset("mamp", "tiny"), items + [f"{k}={v}" for k, v in extra.items()])


def interrupted(cfg, data, out, after: int):
    """A run of `cfg` killed after epoch `after` (its last checkpoint written, as at an interruption)."""
    original = pretrain_module.Trainer.fit
    pretrain_module.Trainer.fit = lambda self, stop_after=None: original(self, stop_after=after)
    try:
        run_pretraining(cfg, data, out)
    finally:
        pretrain_module.Trainer.fit = original


def weights(path):
    return torch.load(path, weights_only=True)["model"]


def assert_same(a, b):
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def lrs(run_dir):
    with open(run_dir / "metrics.csv") as handle:
        return {int(row["epoch"]): float(row["lr"]) for row in csv.DictReader(handle)}


# --- weight decay scope ------------------------------------------------------------------------------
def test_weight_decay_scope_all_decays_every_parameter_matrices_only_the_weights():
    cfg = pretrain_preset("mamp", "tiny")
    model = MaskedMotionModel(cfg.encoder, cfg.mamp)
    names = dict(model.named_parameters())
    one_d = {name for name, p in names.items() if p.ndim < 2}
    assert any(n.endswith(".bias") for n in one_d) and any("norm" in n for n in one_d)  # there is something to tell

    def decay_of(scope):
        groups = param_groups(apply_overrides(cfg, [f"weight_decay_scope={scope}"]), model)
        out = {name: group["weight_decay"] for group in groups for name in group["param_names"]}
        assert sorted(out) == sorted(names)  # every parameter, once
        return out

    matrices, everything = decay_of("matrices"), decay_of("all")
    assert cfg.weight_decay_scope == "matrices" and cfg.optim.weight_decay == 0.05  # the default: MAMP's
    assert matrices == {name: (0.05 if p.ndim >= 2 else 0.0) for name, p in names.items()}
    assert everything == dict.fromkeys(names, 0.05)


def test_bad_values_are_config_errors():
    with pytest.raises(ConfigError, match="weight_decay_scope must be matrices or all, got 'every'"):
        apply_overrides(pretrain_preset("mamp", "tiny"), ["weight_decay_scope=every"])
    with pytest.raises(ConfigError, match="stop_epoch must be >= 0"):
        apply_overrides(pretrain_preset("mamp", "tiny"), ["stop_epoch=-1"])


@pytest.mark.parametrize(("setting", "message"), [
    ("weight_decay_scope=bias", "weight_decay_scope must be matrices or all, got 'bias'"),
    ("stop_epoch=-3", "stop_epoch must be >= 0 (0 = the whole schedule), got -3"),
    ("stop_epoch=two", "stop_epoch: 'two' is not an integer"),
])
def test_bad_values_on_the_command_line_are_one_line(data, tmp_path, capsys, setting, message):
    argv = ["pretrain", "mamp", "--data", data, "--out", str(tmp_path / "o"), "--preset", "tiny", "--device", "cpu",
            "--set", "run.epochs=1", "--set", setting]
    assert cli_main(argv) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in err, err
    assert not (tmp_path / "o" / FINAL_NAME).exists()


# --- stop epoch ----------------------------------------------------------------------------------------
def test_a_stopped_run_is_the_full_schedule_cut_after_its_stop_epoch_and_continues_exactly(data, tmp_path):
    # reference: the 4-epoch run, killed after epoch 2, then resumed to its end
    interrupted(tiny(4), data, tmp_path / "full", after=2)
    after_two = weights(tmp_path / "full" / CHECKPOINT_NAME)
    full = run_pretraining(tiny(4), data, tmp_path / "full", resume=True)

    stopped_cfg = tiny(4, stop_epoch=2, weight_decay_scope="matrices")
    stopped = run_pretraining(stopped_cfg, data, tmp_path / "stopped")
    state = torch.load(stopped, weights_only=True)
    assert state["epoch"] == 2 and state["config"]["stop_epoch"] == 2
    assert_same(state["model"], after_two)  # bit-exact: the state of the 4-epoch schedule after epoch 2

    full_lrs, stopped_lrs = lrs(tmp_path / "full"), lrs(tmp_path / "stopped")
    assert sorted(stopped_lrs) == [0, 1] and sorted(full_lrs) == [0, 1, 2, 3]
    assert stopped_lrs == {e: full_lrs[e] for e in (0, 1)}
    steps = len(load_split(data, "train")) // 16  # full batches of 16 per epoch
    assert stopped_lrs[1] == pytest.approx(learning_rate(stopped_cfg.optim, 1 + (steps - 1) / steps, 4))
    assert stopped_lrs[1] != pytest.approx(learning_rate(stopped_cfg.optim, 1 + (steps - 1) / steps, 2))

    # a stop epoch is not part of what the run learns: the stopped run continues to the end of its schedule
    resumed = run_pretraining(tiny(4), data, tmp_path / "stopped", resume=True)
    assert torch.load(resumed, weights_only=True)["epoch"] == 4
    assert_same(weights(resumed), weights(full))
    # and a run cannot be stopped before the epoch its checkpoint is at
    with pytest.raises(ResumeError, match="past this run's last epoch 2"):
        run_pretraining(stopped_cfg, data, tmp_path / "stopped", resume=True)


def test_an_interrupted_stopped_run_resumes_bit_exactly(data, tmp_path):
    cfg = tiny(3, stop_epoch=2, weight_decay_scope="all")
    straight = run_pretraining(cfg, data, tmp_path / "a")
    interrupted(cfg, data, tmp_path / "b", after=1)
    assert not (tmp_path / "b" / FINAL_NAME).exists()
    resumed = run_pretraining(cfg, data, tmp_path / "b", resume=True)
    assert_same(weights(resumed), weights(straight))
    assert torch.load(resumed, weights_only=True)["epoch"] == 2
    optimizer = torch.load(tmp_path / "a" / CHECKPOINT_NAME, weights_only=True)["optimizer"]
    assert [group["weight_decay"] for group in optimizer["param_groups"]] == [0.05, 0.05]  # all: both groups


def test_a_stop_epoch_past_the_schedule_trains_the_whole_schedule():
    cfg = tiny(2, stop_epoch=300)  # e.g. the paper profile's PKU recipe with the epochs turned down
    assert cfg.trained_epochs == 2 and tiny(4, stop_epoch=3).trained_epochs == 3 and tiny(4).trained_epochs == 4


# --- the recipe and the paper profile --------------------------------------------------------------------
def test_the_paper_profile_gives_pku_pretraining_the_released_settings_and_ntu_keeps_ours():
    paper = list(PAPER_SWITCHES["pretrain"])
    assert "released_recipe=true" in paper
    pku = resolve_pretrain_config("mamp", "paper", "PKUv2_XSub.npz", paper)
    assert (pku.weight_decay_scope, pku.stop_epoch, pku.run.epochs, pku.trained_epochs) == ("all", 300, 400, 300)
    assert pku.optim.warmup_epochs == 20.0 and pku.dataset_preset == "pku"
    for name in ("NTU60_XSub.npz", "NTU60_XView.npz", "NTU120_XSub.npz"):
        ntu = resolve_pretrain_config("mamp", "paper", name, paper)
        assert (ntu.weight_decay_scope, ntu.stop_epoch, ntu.trained_epochs) == ("matrices", 0, 400), name
    # without the switch (every other profile, and a user's run) PKU keeps our defaults
    plain = resolve_pretrain_config("mamp", "paper", "PKUv2_XSub.npz")
    assert (plain.weight_decay_scope, plain.stop_epoch, plain.released_recipe) == ("matrices", 0, False)
    # the naive MAE was not retrained by STARS: no released PKU setting
    mae = resolve_pretrain_config("mae", "paper", "PKUv2_XSub.npz", paper)
    assert (mae.weight_decay_scope, mae.stop_epoch) == ("matrices", 0)
    # the user's overrides come last
    mine = resolve_pretrain_config("mamp", "paper", "PKUv2_XSub.npz", paper + ["stop_epoch=0"])
    assert (mine.weight_decay_scope, mine.trained_epochs) == ("all", 400)


def test_the_plan_counts_the_epochs_a_stopped_run_trains():
    pku = to_dict(resolve_pretrain_config("mamp", "paper", "PKUv2_XSub.npz", list(PAPER_SWITCHES["pretrain"])))
    ntu = to_dict(resolve_pretrain_config("mamp", "paper", "NTU60_XSub.npz", list(PAPER_SWITCHES["pretrain"])))
    assert _epochs_of(PlannedRun("pretrain", "mamp", "PKUv2_XSub.npz", pku).config) == 300
    assert _epochs_of(ntu) == 400
    assert _epochs_of({"epochs": 100}) == 100  # an evaluation protocol's config
