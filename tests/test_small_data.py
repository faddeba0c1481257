"""Defaults sized for NTU are adapted to small datasets with a warning that names the key."""

import json

import numpy as np
import pytest

from stars.config import apply_overrides
from stars.data.byo import import_sequences
from stars.data.npz import load_split
from stars.train.data_fit import (
    MIN_STEPS_PER_EPOCH,
    SmallDataWarning,
    adapt_batch_size,
    adapt_min_crop_length,
    adapt_queue_size,
)
from stars.train.pretrain import fit_to_data as fit_pretrain
from stars.train.pretrain import pretrain_preset, run_pretraining
from stars.train.tune import fit_to_data as fit_tune
from stars.train.tune import tune_preset


def test_batch_is_kept_when_the_split_gives_enough_updates():
    assert adapt_batch_size(128, 128 * MIN_STEPS_PER_EPOCH) == (128, None)


def test_batch_larger_than_the_split_shrinks_and_names_the_key():
    batch, note = adapt_batch_size(128, 100)
    assert batch == 100 // MIN_STEPS_PER_EPOCH == 25
    assert note.key == "run.batch_size" and (note.old, note.new) == (128, 25)
    assert "100 samples, fewer than one batch" in str(note) and "set run.batch_size" in str(note)


def test_few_updates_shrink_the_batch_to_a_multiple_of_the_processes():
    batch, note = adapt_batch_size(128, 431, world_size=4)
    assert batch == 104 and batch % 4 == 0 and 431 // batch >= MIN_STEPS_PER_EPOCH
    assert "431 training samples give only 3 update(s) per epoch" in note.reason
    with pytest.raises(ValueError, match="run.batch_size: 3 training samples cannot fill"):
        adapt_batch_size(16, 3, world_size=4)


def test_a_batch_never_shrinks_below_two_samples_per_process():
    assert adapt_batch_size(2, 4) == (2, None)  # BatchNorm cannot train on one sample
    assert adapt_batch_size(8, 6, world_size=2)[0] == 4


def test_queue_never_exceeds_the_training_split():
    assert adapt_queue_size(1024, 5000, 64) == (1024, None)
    queue, note = adapt_queue_size(32768, 900, 128)
    assert queue == 896 and queue % 128 == 0 and note.key == "queue_size"
    assert "never filled" in note.reason


def test_minimum_crop_follows_the_median_length():
    lengths = np.array([20, 30, 31, 40, 200])
    crop, note = adapt_min_crop_length(64, lengths, 0.5)
    assert crop == 15 and note.key == "min_crop_length" and "median sequence has 31 frames" in note.reason
    assert adapt_min_crop_length(16, lengths, 0.5) == (16, None)


def _small_file(tmp_path, n=60, frames=(12, 30)):
    rng = np.random.default_rng(0)
    sequences = [rng.normal(0, 0.3, (int(rng.integers(*frames)), 20, 3)) for _ in range(n)]
    labels, subjects = [i % 3 for i in range(n)], [1 + i % 4 for i in range(n)]
    path = tmp_path / "small.npz"
    import_sequences(path, sequences, labels, subjects, layout="kinect_v1_20", train_subjects=[1, 2])
    return path


def test_pretraining_and_tuning_configs_adapt_with_warnings(tmp_path):
    split = load_split(_small_file(tmp_path), "train")
    cfg = pretrain_preset("mamp", "small")  # batch 64, min crop 64
    with pytest.warns(SmallDataWarning) as caught:
        fitted, notes = fit_pretrain(cfg, split)
    assert fitted.run.batch_size == len(split) // MIN_STEPS_PER_EPOCH
    assert fitted.min_crop_length < 30 and fitted.encoder.num_joints == 20
    assert len(notes) == len(caught) == 2
    assert any("run.batch_size 64 ->" in n for n in notes) and any("min_crop_length 64 ->" in n for n in notes)
    tuned, notes = (None, None)
    with pytest.warns(SmallDataWarning, match="queue_size 4096 ->"):
        tuned, notes = fit_tune(tune_preset("stars", "small"), split)
    assert tuned.queue_size <= len(split) and tuned.queue_size % tuned.run.batch_size == 0
    assert tuned.min_crop_length == 64  # STARS tunes on full-length views: no random crop to adapt


def test_a_run_records_what_it_adapted(tmp_path):
    data = _small_file(tmp_path)
    cfg = apply_overrides(pretrain_preset("mamp", "tiny"), ["run.epochs=1", "run.batch_size=128", "run.device=cpu"])
    with pytest.warns(SmallDataWarning, match="run.batch_size 128 ->"):
        run_pretraining(cfg, data, tmp_path / "run")
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run["adapted_to_data"] and run["adapted_to_data"][0].startswith("run.batch_size 128 ->")
    assert run["data"]["layout"]["name"] == "kinect_v1_20" and run["data"]["num_persons"] == 1


def test_classifier_protocols_adapt_their_batch(tmp_path):
    from stars.eval.linear import LinearConfig, run_linear

    data = _small_file(tmp_path)
    cfg = LinearConfig(epochs=1, batch_size=256, progress=False)
    with pytest.warns(SmallDataWarning, match="batch_size 256 -> 7: the training split has 30 samples"):
        metrics = run_linear("random", str(data), tmp_path / "lin", cfg, "cpu", "tiny")
    assert 0.0 <= metrics["test_top1"] <= 100.0


def test_adaptation_can_be_switched_off(tmp_path):
    import warnings

    split = load_split(_small_file(tmp_path), "train")
    with warnings.catch_warnings():
        warnings.simplefilter("error", SmallDataWarning)
        fitted, notes = fit_pretrain(apply_overrides(pretrain_preset("mamp", "small"), ["adapt_to_data=false"]), split)
    assert notes == [] and fitted.run.batch_size == 64 and fitted.min_crop_length == 64
    assert fitted.encoder.num_joints == 20  # the joints still come from the file
