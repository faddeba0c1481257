"""Evaluation protocols on a micro encoder and a tiny separable dataset written with save_dataset."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import yaml

from stars.config import ConfigError
from stars.data.feeder import CropConfig, ReferenceFeeder
from stars.data.layouts import NTU25
from stars.data.npz import SkeletonSplit, load_split, save_dataset
from stars.data.splits import released_semi_subsets, sample_episode
from stars.eval.cli import PROTOCOLS, resolve_config
from stars.eval.common import ProtocolResult, extract_features, load_encoder_for_eval, write_result
from stars.eval.fewshot import FewShotConfig, episode_seed, fewshot_accuracy, fewshot_pool, run_fewshot
from stars.eval.finetune import FinetuneConfig, train_finetune
from stars.eval.knn import knn_majority, knn_monitor, knn_weighted
from stars.eval.linear import LinearConfig, run_linear
from stars.eval.semi import SemiConfig, run_semi, summarise
from stars.eval.transfer import check_transfer_layouts
from stars.models.checkpoint import build_checkpoint, save_checkpoint
from stars.models.encoder import EncoderConfig, SkeletonEncoder

MICRO = EncoderConfig(num_frames=16, embed_dim=16, depth=1, num_heads=2)
NUM_CLASSES = 4


def make_dataset(path, n_train=8, n_test=6, frames=16, layout="ntu25", joints=25, seed=0, amplitude=1.0):
    """Class c lifts the whole skeleton by c x amplitude and joints 5c..5c+4 by amplitude more (static cues),
    person 2 absent, lengths vary."""
    rng = np.random.default_rng(seed)
    skeleton = rng.normal(0, 0.3, (joints, 3))

    def split(n):
        xs, ys = [], []
        for c in range(NUM_CLASSES):
            for _ in range(n):
                x = np.zeros((frames, 2, joints, 3), np.float32)
                length = int(rng.integers(3 * frames // 4, frames + 1))
                pose = skeleton + rng.normal(0, 0.05, (joints, 3))
                pose[:, 1] += c * amplitude
                pose[[(5 * c + k) % joints for k in range(5)], 1] += amplitude
                x[:length, 0] = pose + rng.normal(0, 0.05, (length, joints, 3))
                xs.append(x)
                ys.append(c)
        return np.stack(xs), np.array(ys)

    (x_train, y_train), (x_test, y_test) = split(n_train), split(n_test)
    return save_dataset(
        path, x_train, y_train, x_test, y_test, num_classes=NUM_CLASSES, layout=layout,
        class_names=[f"action {c}" for c in range(NUM_CLASSES)],
    )


@pytest.fixture(autouse=True)
def _one_thread():
    """Micro models run fastest on one thread (no OpenMP hand-offs on a busy CPU)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    data = make_dataset(root / "toy.npz")
    torch.manual_seed(0)
    encoder = SkeletonEncoder(MICRO)
    ckpt = save_checkpoint(root / "micro.pt", build_checkpoint("encoder", encoder.state_dict(), {"encoder": MICRO.to_dict()}))
    return {"root": root, "data": str(data), "ckpt": str(ckpt), "state": encoder.state_dict()}


# ------------------------------------------------------------------------------------------
# encoders, features, result files


def test_load_encoder_for_eval_from_our_and_official_checkpoints(files, tmp_path):
    ours, info = load_encoder_for_eval(files["ckpt"], None, "cpu")
    assert ours.cfg == MICRO and info["format"] == "stars"
    for key, value in files["state"].items():
        assert torch.equal(ours.state_dict()[key], value)
    # Official MAMP layout: {"model": encoder + decoder keys}; the config is inferred (8 heads assumed).
    official = dict(files["state"], **{"decoder_pred.weight": torch.zeros(3, 3), "mask_token": torch.zeros(1, 1, 16)})
    torch.save({"model": official, "epoch": 399}, tmp_path / "mamp.pth")
    inferred, info = load_encoder_for_eval(str(tmp_path / "mamp.pth"), None, "cpu", drop_path=0.3)
    assert info["format"] == "mamp-official" and info["dropped_keys"] == 2
    assert inferred.cfg.num_heads == 8 and inferred.cfg.drop_path_rate == 0.3
    assert (inferred.cfg.num_frames, inferred.cfg.embed_dim, inferred.cfg.depth) == (16, 16, 1)
    assert torch.equal(inferred.blocks[0].mlp.fc1.weight, files["state"]["blocks.0.mlp.fc1.weight"])


def test_random_init_is_seeded_and_leaves_the_global_rng_alone():
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    first, info = load_encoder_for_eval(None, "tiny", "cpu", seed=5)
    assert torch.equal(torch.random.get_rng_state(), before)
    second, _ = load_encoder_for_eval(None, "tiny", "cpu", seed=5)
    third, _ = load_encoder_for_eval(None, "tiny", "cpu", seed=6)
    assert info["source"] == "random init" and first.cfg.embed_dim == 32
    assert torch.equal(first.pos_embed, second.pos_embed) and not torch.equal(first.pos_embed, third.pos_embed)


def test_extract_features_equals_the_reference_feeder_path(files):
    encoder, _ = load_encoder_for_eval(files["ckpt"], None, "cpu")
    split = load_split(files["data"], "test")
    features, labels = extract_features(encoder, split, 0.95, batch_size=5, device="cpu", progress=False)
    assert features.shape == (len(split), MICRO.embed_dim) and features.dtype == np.float32
    np.testing.assert_array_equal(labels, split.y)
    feeder = ReferenceFeeder(split, train=False, crop=CropConfig(eval_ratio=0.95, num_frames=MICRO.num_frames))
    with torch.no_grad():
        for index in (0, 7, len(split) - 1):
            sample, label, _ = feeder[index]
            expected = encoder(torch.from_numpy(sample)[None]).numpy()[0]
            np.testing.assert_allclose(features[index], expected, rtol=1e-4, atol=1e-5)
            assert label == labels[index]
    encoder.train()
    extract_features(encoder, split, 0.95, 64, "cpu", progress=False)
    assert encoder.training


def test_extract_features_rejects_another_joint_count(files, tmp_path):
    data = make_dataset(tmp_path / "k20.npz", layout="kinect_v1_20", joints=20)
    encoder, _ = load_encoder_for_eval(files["ckpt"], None, "cpu")
    with pytest.raises(ValueError, match="20 joints but the encoder expects 25"):
        extract_features(encoder, load_split(data, "test"), 0.95, 64, "cpu", progress=False)


def test_write_result_records_dataset_seed_commit_and_device(tmp_path):
    result = write_result(tmp_path, "knn", {"majority_k1": 50.0}, LinearConfig(epochs=3), "/data/x.npz", 7, "cpu")
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    run = json.loads((tmp_path / "run.json").read_text())
    config = yaml.safe_load((tmp_path / "config.yaml").read_text())
    assert metrics == {"protocol": "knn", "metrics": {"majority_k1": 50.0}}
    assert run["dataset"] == "/data/x.npz" and run["seed"] == 7 and run["device"].startswith("cpu")
    assert "commit" in run and config["epochs"] == 3 and config["augment"]["random_rot"] == 0.3
    assert ProtocolResult.load(tmp_path).metrics == result.metrics


def test_knn_monitor_equals_weighted_knn_on_extracted_features(files):
    encoder, _ = load_encoder_for_eval(files["ckpt"], None, "cpu")
    split = load_split(files["data"], "train")
    bank, query = split.subset(np.arange(0, 32, 2)), split.subset(np.arange(1, 32, 2))
    metrics = knn_monitor(encoder, bank, query, ks=(1, 3), device="cpu")
    bank_f, bank_y = extract_features(encoder, bank, 0.95, 256, "cpu", progress=False)
    query_f, query_y = extract_features(encoder, query, 0.95, 256, "cpu", progress=False)
    expected = knn_weighted(bank_f, bank_y, query_f, query_y, (1, 3), 0.1, device="cpu").top1
    assert metrics == {"knn_k1": expected[1], "knn_k3": expected[3], "knn_best": max(expected.values())}


# ------------------------------------------------------------------------------------------
# linear probe and finetune


def test_linear_probe_separates_a_separable_dataset(files, tmp_path):
    cfg = LinearConfig(epochs=10, batch_size=8, progress=False, checkpoint_every=100, eval_batch_size=64)
    metrics = run_linear(files["ckpt"], files["data"], tmp_path, cfg, "cpu")
    assert metrics["test_top1"] >= 90.0 and metrics["selected_epoch"] == 9 and metrics["select"] == "last"
    assert {"metrics.json", "config.yaml", "run.json", "metrics.csv", "final.pt"} <= {p.name for p in tmp_path.iterdir()}
    assert json.loads((tmp_path / "metrics.json").read_text())["metrics"]["test_top1"] == metrics["test_top1"]
    final = torch.load(tmp_path / "final.pt", weights_only=True)
    for key, value in files["state"].items():  # the encoder stayed frozen
        assert torch.equal(final["model"][f"encoder.{key}"], value)
    assert final["config"]["encoder"] == MICRO.to_dict()


def _finetune(files, out, stop_after=None, resume=False):
    cfg = FinetuneConfig(
        epochs=2, batch_size=8, warmup_epochs=1.0, progress=False, eval_batch_size=64, select="val",
        val_fraction=0.25, report_test_max=True,
    )
    encoder, _ = load_encoder_for_eval(files["ckpt"], None, "cpu", drop_path=cfg.drop_path)
    train, test = load_split(files["data"], "train"), load_split(files["data"], "test")
    return train_finetune(encoder, train, test, out, cfg, "cpu", resume=resume, stop_after=stop_after)


def test_finetune_resumes_exactly_and_selects_on_validation_data(files, tmp_path):
    straight = _finetune(files, tmp_path / "straight")
    assert _finetune(files, tmp_path / "resumed", stop_after=1) == {}
    with pytest.raises(ValueError, match="--resume"):
        _finetune(files, tmp_path / "resumed")
    resumed = _finetune(files, tmp_path / "resumed", resume=True)
    assert resumed == straight
    a = torch.load(tmp_path / "straight" / "final.pt", weights_only=True)
    b = torch.load(tmp_path / "resumed" / "final.pt", weights_only=True)
    assert a["model"].keys() == b["model"].keys() and all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert a["selection"]["best_val_epoch"] == b["selection"]["best_val_epoch"]
    # Selection: best validation epoch (first maximum), its test accuracy, and the max-over-epochs column.
    lines = (tmp_path / "resumed" / "metrics.csv").read_text().splitlines()
    header, rows = lines[0].split(","), [line.split(",") for line in lines[1:]]
    assert len(rows) == 2
    val = [float(r[header.index("val_top1")]) for r in rows]
    test = [float(r[header.index("test_top1")]) for r in rows]
    assert straight["selected_epoch"] == int(np.argmax(val)) and straight["select"] == "val"
    assert straight["val_top1"] == pytest.approx(max(val), abs=1e-3)
    assert straight["test_top1"] == pytest.approx(test[straight["selected_epoch"]], abs=1e-3)
    assert straight["test_max_over_epochs"] == pytest.approx(max(test), abs=1e-3)
    assert a["config"]["protocol"] == "finetune" and a["config"]["encoder"]["drop_path_rate"] == 0.3
    selected, _ = load_encoder_for_eval(str(tmp_path / "straight" / "selected.pt"), None, "cpu")
    best = a["selection"]["best_state"]
    assert all(torch.equal(v, best[f"encoder.{k}"]) for k, v in selected.state_dict().items())


# ------------------------------------------------------------------------------------------
# semi-supervised


def test_semi_summary_is_mean_and_sample_std():
    import pandas as pd

    runs = pd.DataFrame({"fraction": [0.1, 0.1, 0.1, 0.01], "seed": [0, 1, 2, 0], "labelled": [4, 4, 4, 1],
                         "test_top1": [50.0, 60.0, 70.0, 30.0]})
    summary = summarise(runs)
    assert summary["fraction_0.1_mean"] == 60.0 and summary["fraction_0.1_std"] == pytest.approx(10.0)
    assert summary["fraction_0.01_std"] == 0.0 and summary["fraction_0.1_runs"] == [50.0, 60.0, 70.0]


def test_semi_runs_use_balanced_seeded_subsets_and_skip_completed_runs(files, tmp_path, monkeypatch):
    finetune = FinetuneConfig(epochs=1, batch_size=4, warmup_epochs=0.0, progress=False, eval_batch_size=64)
    cfg = SemiConfig(fractions=(0.25,), runs=2, seeds=(3, 4), finetune=finetune)
    first = run_semi(files["ckpt"], files["data"], tmp_path, cfg, "cpu")
    labels = load_split(files["data"], "train").y
    subsets = [np.load(tmp_path / "fraction_0.25" / f"seed_{s}" / "labelled_indices.npy") for s in (3, 4)]
    for subset in subsets:
        assert np.bincount(labels[subset], minlength=NUM_CLASSES).tolist() == [2, 2, 2, 2]
    assert not np.array_equal(subsets[0], subsets[1])
    assert first["fraction_0.25_labelled"] == [8, 8] and len(first["fraction_0.25_runs"]) == 2

    def must_not_train(*args, **kwargs):
        raise AssertionError("a completed run was trained again")

    monkeypatch.setattr("stars.eval.semi.train_finetune", must_not_train)
    assert run_semi(files["ckpt"], files["data"], tmp_path, cfg, "cpu") == first


def test_semi_config_checks_seeds():
    assert SemiConfig().run_seeds == (0, 1, 2, 3, 4)
    with pytest.raises(ValueError, match="seeds"):
        SemiConfig(runs=3, seeds=(0, 1))


# ------------------------------------------------------------------------------------------
# few-shot


def _clustered_features(rng, classes, per_class, spread):
    centres = np.eye(16)[: len(classes)] * 10
    features = np.concatenate([centres[i] + rng.normal(0, spread, (per_class, 16)) for i in range(len(classes))])
    labels = np.repeat(np.asarray(classes), per_class)
    return features, labels


@pytest.mark.parametrize("classifier", ["nearest", "prototype"])
def test_fewshot_is_perfect_on_separated_classes(classifier):
    features, labels = _clustered_features(np.random.default_rng(0), [60, 61, 70, 90], 12, 0.1)
    result = fewshot_accuracy(features, labels, [60, 61, 70, 90], 2, episodes=10, classifier=classifier, device="cpu")
    assert result["mean"] == 100.0 and result["ci95"] == 0.0 and len(result["accuracies"]) == 10


def test_fewshot_episodes_equal_a_loop_reference_and_the_interval_is_196_std_over_sqrt_n():
    rng = np.random.default_rng(1)
    classes = [0, 1, 2, 3, 4]
    features, labels = _clustered_features(rng, classes, 15, 6.0)  # overlapping clusters
    result = fewshot_accuracy(features, labels, classes, 1, episodes=12, seed=3, device="cpu")
    unit = features / np.linalg.norm(features, axis=1, keepdims=True)
    expected = []
    for episode in range(12):
        support, query = sample_episode(labels, classes, 1, episode_seed(3, 1, episode))
        correct = 0
        for q in query:
            best = max(support, key=lambda s: float(unit[q] @ unit[s]))
            correct += int(labels[best] == labels[q])
        expected.append(100.0 * correct / len(query))
    np.testing.assert_allclose(result["accuracies"], expected)
    assert 0 < result["mean"] < 100
    assert result["ci95"] == pytest.approx(1.96 * np.std(expected) / math.sqrt(12))
    assert result["std"] == pytest.approx(np.std(expected))


def test_fewshot_pool_filters_setups_when_every_unseen_class_is_present():
    labels = np.concatenate([np.arange(60, 120), np.arange(60, 120), np.arange(0, 60)])
    setups = np.concatenate([np.full(60, 18), np.full(60, 5), np.full(60, 3)])
    split = SkeletonSplit(
        x=np.zeros((len(labels), 4, 2, 25, 3), np.float32), y=labels, layout=NTU25, num_classes=120,
        path="ntu120.npz", split="test", meta={"setup": setups},
    )
    pool, classes, info = fewshot_pool(split, FewShotConfig())
    assert info["class_set"] == "ntu120-unseen" and classes.tolist() == list(range(60, 120))
    assert pool.tolist() == list(range(60))  # only setup-18 samples of classes 60..119


def test_fewshot_pool_of_other_files_is_a_seeded_heldout_class_set_or_all_classes():
    labels = np.arange(40) % 10
    split = SkeletonSplit(x=np.zeros((40, 4, 2, 25, 3), np.float32), y=labels, layout=NTU25, num_classes=10)
    pool, classes, info = fewshot_pool(split, FewShotConfig(heldout_classes=4, seed=2))
    again, _, _ = fewshot_pool(split, FewShotConfig(heldout_classes=4, seed=2))
    assert info["class_set"] == "heldout" and len(classes) == 4 and np.array_equal(pool, again)
    assert set(labels[pool].tolist()) == set(classes.tolist()) and len(pool) == 16
    pool, classes, info = fewshot_pool(split, FewShotConfig())
    assert info["class_set"] == "all" and len(pool) == 40 and classes.tolist() == list(range(10))
    with pytest.raises(ValueError, match="NTU-120"):
        fewshot_pool(split, FewShotConfig(classes="ntu120-unseen"))


def test_fewshot_config_limits():
    with pytest.raises(ValueError, match="episodes"):
        FewShotConfig(episodes=5)
    with pytest.raises(ValueError, match="classifier"):
        FewShotConfig(classifier="svm")


# ------------------------------------------------------------------------------------------
# transfer and command-line configs


def test_transfer_layout_mismatch_names_both_layouts_and_how_to_prepare(tmp_path):
    source = make_dataset(tmp_path / "ucla.npz", layout="kinect_v1_20", joints=20)
    target = make_dataset(tmp_path / "utd.npz", layout="utd_mhad20", joints=20)
    same = make_dataset(tmp_path / "utd_k.npz", layout="kinect_v1_20", joints=20, seed=1)
    encoder = SkeletonEncoder(EncoderConfig(num_joints=20, num_frames=16, embed_dim=16, depth=1, num_heads=2))
    with pytest.raises(ValueError, match=r"'kinect_v1_20'.*'utd_mhad20'.*stars prepare utd-mhad .*layout=kinect_v1_20"):
        check_transfer_layouts(str(source), str(target), encoder)
    assert check_transfer_layouts(str(source), str(same), encoder) == {
        "source_layout": "kinect_v1_20", "target_layout": "kinect_v1_20"
    }
    with pytest.raises(ValueError, match="expects 25 joints"):
        check_transfer_layouts(None, str(same), SkeletonEncoder(MICRO))


def test_every_protocol_has_paper_small_tiny_presets_and_strict_overrides():
    from stars.cli import EVAL_PROTOCOLS

    assert set(PROTOCOLS) == set(EVAL_PROTOCOLS)
    for name, protocol in PROTOCOLS.items():
        assert {"paper", "small", "tiny"} <= set(protocol.presets), name
    assert resolve_config("linear", "paper", ["lr=0.05"]).lr == 0.05
    assert resolve_config("semi", "paper", ["finetune.epochs=7"]).finetune.epochs == 7
    assert resolve_config("finetune", "paper", [], has_ckpt=False).layer_decay == 1.0
    assert resolve_config("finetune", "paper", [], has_ckpt=True).layer_decay == 0.8
    with pytest.raises(ConfigError, match="unknown config key 'lrr'"):
        resolve_config("linear", "paper", ["lrr=1"])
    with pytest.raises(ConfigError, match="unknown preset"):
        resolve_config("knn", "huge", [])
    paper = resolve_config("finetune", "paper", [])
    assert (paper.lr, paper.min_lr, paper.warmup_epochs, paper.batch_size, paper.label_smoothing) == (
        3e-4, 1e-5, 5.0, 48, 0.1
    )


def test_command_line_knn_and_features_write_their_files(files, tmp_path, capsys):
    from stars.cli import main

    out = tmp_path / "knn"
    argv = ["eval", "knn", "--ckpt", files["ckpt"], "--data", files["data"], "--out", str(out), "--device", "cpu",
            "--set", "ks_majority=[1,3]", "--set", "ks_weighted=[5]"]
    assert main(argv) == 0
    metrics = ProtocolResult.load(out).metrics
    encoder_keys = {"majority_k1", "majority_k3", "weighted_k5"}
    assert set(metrics) == encoder_keys | {f"raw_{k}" for k in encoder_keys} | {"below_raw_baseline"}
    assert metrics["below_raw_baseline"] == (metrics["majority_k1"] < metrics["raw_majority_k1"])
    predictions = np.load(out / "predictions_majority_k1.npy")
    labels = np.load(out / "labels.npy")
    assert metrics["majority_k1"] == pytest.approx(100 * np.mean(predictions == labels))
    assert main(argv[:-4] + ["--set", "ks=[1]"]) == 2
    assert "unknown config key 'ks'" in capsys.readouterr().err

    target = tmp_path / "features" / "test.npy"
    assert main(["features", "--ckpt", files["ckpt"], "--data", files["data"], "--out", str(target),
                 "--device", "cpu"]) == 0
    features, labels = np.load(target), np.load(tmp_path / "features" / "test_labels.npy")
    assert features.shape == (24, MICRO.embed_dim) and features.dtype == np.float32
    np.testing.assert_array_equal(labels, load_split(files["data"], "test").y)
    assert json.loads((tmp_path / "features" / "test.json").read_text())["split"] == "test"


def test_released_semi_subsets_reproduce_the_official_per_process_draw():
    state = np.random.get_state()
    try:
        expected = []
        for rank in range(2):
            np.random.seed(0 + rank)  # the official feeder, process `rank`
            order = np.arange(1000)
            np.random.shuffle(order)
            expected.append(order[: int(1000 * 0.1)])
    finally:
        np.random.set_state(state)
    subsets = released_semi_subsets(1000, 0.1, processes=2)
    assert all(np.array_equal(a, b) for a, b in zip(subsets, expected))
    union = np.unique(np.concatenate(subsets))
    assert len(subsets[0]) == 100 and 180 <= len(union) <= 200  # about twice the nominal labels are seen


def test_semi_released_sampling_trains_on_the_union_and_records_the_labels_seen(files, tmp_path):
    finetune = FinetuneConfig(epochs=1, batch_size=4, warmup_epochs=0.0, progress=False, eval_batch_size=64)
    cfg = SemiConfig(fractions=(0.25,), runs=2, seeds=(3, 4), finetune=finetune, sampling="released")
    metrics = run_semi(files["ckpt"], files["data"], tmp_path, cfg, "cpu")
    n = len(load_split(files["data"], "train").y)
    union = np.unique(np.concatenate(released_semi_subsets(n, 0.25, 2)))
    for seed in (3, 4):  # the same subsets in every run, as officially
        indices = np.load(tmp_path / "fraction_0.25" / f"seed_{seed}" / "labelled_indices.npy")
        assert np.array_equal(indices, union)
    assert metrics["fraction_0.25_labelled"] == [len(union)] * 2
    assert metrics["fraction_0.25_labelled_nominal"] == [int(n * 0.25)] * 2 and len(union) > int(n * 0.25)


def test_fewshot_released_knn_reading_is_majority_knn_of_test_against_train(files, tmp_path):
    cfg = FewShotConfig(classes="all", shots=(1,), episodes=10, released_knn_ks=(1, 2))
    metrics = run_fewshot(files["ckpt"], files["data"], tmp_path / "fs", cfg, "cpu")
    encoder, _ = load_encoder_for_eval(files["ckpt"], None, "cpu")
    train_f, train_y = extract_features(encoder, load_split(files["data"], "train"), 0.95, 64, "cpu")
    test_f, test_y = extract_features(encoder, load_split(files["data"], "test"), 0.95, 64, "cpu")
    expected = knn_majority(train_f, train_y, test_f, test_y, (1, 2), num_classes=NUM_CLASSES).top1
    assert metrics["released_knn_k1"] == expected[1] and metrics["released_knn_k2"] == expected[2]
    assert "1shot_mean" in metrics  # the episode reading stays, labelled separately
