"""Honest baselines beside every encoder: raw centred coordinates and a random-init encoder."""

import numpy as np
import pytest

from stars.data.feeder import valid_crop_resize, valid_lengths
from stars.data.layouts import get_layout
from stars.data.npz import SkeletonSplit, save_dataset
from stars.eval.common import is_random_init, load_encoder_for_eval
from stars.eval.knn import KNNConfig, below_raw_baseline, raw_coordinate_features, raw_coordinate_knn


def _split(n=12, frames=40, seed=0):
    rng = np.random.default_rng(seed)
    x = np.zeros((n, frames, 1, 15, 3), np.float32)
    for i in range(n):
        length = int(rng.integers(20, frames + 1))
        x[i, :length] = rng.normal(size=(length, 1, 15, 3))
    return SkeletonSplit(x, np.arange(n) % 3, get_layout("openni15"), 3)


def test_raw_features_are_the_encoder_input_flattened():
    split = _split()
    features, labels = raw_coordinate_features(split, num_frames=16, crop=0.95, batch_size=5, device="cpu")
    assert features.shape == (12, 3 * 16 * 15 * 1) and labels.tolist() == split.y.tolist()
    valid = valid_lengths(split.x)
    for i in range(len(split)):
        sample = split.x[i].transpose(3, 0, 2, 1)  # (C, T, V, M)
        expected = valid_crop_resize(sample, int(valid[i]), (0.95,), 16)
        np.testing.assert_allclose(features[i], expected.reshape(-1), atol=1e-5)


def test_raw_knn_finds_classes_that_the_coordinates_separate(tmp_path):
    rng = np.random.default_rng(1)
    means = rng.normal(size=(3, 1, 1, 15, 3))

    def part(n):
        y = np.arange(n) % 3
        return (means[y] + 0.05 * rng.normal(size=(n, 24, 1, 15, 3))).astype(np.float32), y

    x_train, y_train = part(30)
    x_test, y_test = part(15)
    path = save_dataset(tmp_path / "d.npz", x_train, y_train, x_test, y_test, num_classes=3, layout="openni15",
                        num_persons=1)
    metrics = raw_coordinate_knn(path, num_frames=8, cfg=KNNConfig(ks_majority=(1,), ks_weighted=(10,)), device="cpu")
    assert metrics == {"raw_majority_k1": 100.0, "raw_weighted_k10": 100.0}
    assert below_raw_baseline({"majority_k1": 90.0, **metrics}) is True
    assert below_raw_baseline({"majority_k1": 100.0, **metrics}) is False
    assert below_raw_baseline({"majority_k1": 100.0}) is None


def test_random_init_takes_the_data_layout(tmp_path):
    x = np.ones((4, 8, 1, 15, 3), np.float32)
    path = save_dataset(tmp_path / "o.npz", x, np.arange(4) % 2, x, np.arange(4) % 2, num_classes=2,
                        layout="openni15", num_persons=1)
    assert is_random_init(None) and is_random_init("random") and not is_random_init("runs/final.pt")
    encoder, info = load_encoder_for_eval("random", "tiny", "cpu", seed=3, data=path)
    again, _ = load_encoder_for_eval(None, "tiny", "cpu", seed=3, data=path)
    assert encoder.cfg.num_joints == 15 and info["layout"] == "openni15"
    assert all(np.array_equal(a.detach().numpy(), b.detach().numpy())
               for a, b in zip(encoder.parameters(), again.parameters(), strict=True))
    with pytest.raises(ValueError):
        load_encoder_for_eval("random", "nonexistent", "cpu", data=path)


def test_tables_report_the_baselines_and_name_encoders_below_raw():
    import pandas as pd

    from stars.tables import below_baseline_note, knn_baselines

    class FakeExperiment:  # records what the table helper asks for
        calls = []

        def evaluate(self, protocol, ckpt, dataset, **overrides):
            self.calls.append((protocol, ckpt, dataset))
            return {"protocol": "knn", "metrics": {"majority_k1": 38.0, "raw_majority_k1": 85.5}}

    exp = FakeExperiment()
    baselines = {"XSub": knn_baselines(exp, "xsub")}
    assert exp.calls == [("knn", None, "xsub")]  # the random-init encoder of the profile
    assert baselines["XSub"] == {"random init": 38.0, "raw coordinates": 85.5}
    table = pd.DataFrame([{"method": "MAMP", "dataset": "XSub", "KNN k=1": 40.0},
                          {"method": "STARS", "dataset": "XSub", "KNN k=1": 90.0},
                          {"method": "random init", "dataset": "XSub", "KNN k=1": 38.0}])
    note = below_baseline_note(table, "KNN k=1", baselines)
    assert note == "Below the raw-coordinate baseline (KNN k=1): MAMP XSub (40.0 < 85.5)."
    assert below_baseline_note(table.iloc[1:], "KNN k=1", baselines) == ""


def test_knn_baseline_note_for_tables_of_settings():
    from stars.tables import knn_baseline_note

    class FakeExperiment:
        def evaluate(self, protocol, ckpt, dataset, **overrides):
            return {"protocol": "knn", "metrics": {"majority_k10": 20.0, "raw_majority_k10": 50.0}}

    note = knn_baseline_note(FakeExperiment(), {"xsub": {"alpha 0.45": 55.0, "alpha 1.0": 45.0}}, "majority_k10")
    assert note == ("KNN baselines (majority_k10): XSub random init 20.0 %, raw coordinates 50.0 %. "
                    "Below the raw-coordinate baseline: alpha 1.0 XSub (45.0 < 50.0).")


def test_learning_curve_trains_one_mamp_per_budget_and_tunes_each():
    from stars.tables import learning_curve

    class FakeExperiment:
        def __init__(self):
            self.calls = []

        def pretrain(self, method, dataset, **overrides):
            self.calls.append(("pretrain", method, dataset, overrides))
            return f"mamp-{overrides['run.epochs']}.pt"

        def tune(self, method, init, dataset, **overrides):
            self.calls.append(("tune", method, init, dataset))
            return f"stars-from-{init}"

        def evaluate(self, protocol, ckpt, dataset, **overrides):
            epochs = int(ckpt.split("mamp-")[1].split(".")[0])
            return {"metrics": {"majority_k1": epochs / 10 + (1.0 if ckpt.startswith("stars") else 0.0)}}

    exp = FakeExperiment()
    curve = learning_curve(exp, "xview", (10, 40))
    assert curve.to_dict("list") == {"pretraining epochs": [10, 40], "MAMP": [1.0, 4.0], "STARS": [2.0, 5.0]}
    assert exp.calls == [("pretrain", "mamp", "xview", {"run.epochs": 10}), ("tune", "stars", "mamp-10.pt", "xview"),
                         ("pretrain", "mamp", "xview", {"run.epochs": 40}), ("tune", "stars", "mamp-40.pt", "xview")]
