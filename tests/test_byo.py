"""Bring-your-own data: import, custom layouts of any joint count, the encoder's joints from the file."""

import json
import re
import shlex
from pathlib import Path

import numpy as np
import pytest
import torch

from stars.cli import main as cli
from stars.data.byo import UnitsWarning, centre_like_ntu, import_sequences, map_labels
from stars.data.layouts import custom_layout, get_layout
from stars.data.npz import DatasetError, load_split, read_header, save_dataset
from stars.models.checkpoint import load_checkpoint_file

DOCS = Path(__file__).resolve().parent.parent / "docs" / "datasets.md"


def _chain(name: str, joints: int):
    """A chain skeleton with `joints` joints and two left/right pairs."""
    names = ["root"] + [f"j{i}" for i in range(1, joints - 4)] + ["left_a", "right_a", "left_b", "right_b"]
    parents = [0] + list(range(joints - 5)) + [1, 1, joints - 4, joints - 3]
    return custom_layout(name, names, parents, centre="root")


def _sequences(joints: int, n: int = 36, seed: int = 0, persons: int = 1):
    """Class-dependent motion of variable length; subjects 1..6."""
    rng = np.random.default_rng(seed)
    sequences, labels, subjects = [], [], []
    for i in range(n):
        label = i % 3
        frames = int(rng.integers(20, 50))
        t = np.linspace(0, 2 * np.pi, frames)[:, None, None, None]
        pose = rng.normal(0, 0.3, (1, persons, joints, 3))
        sequences.append(pose + 0.2 * np.sin((label + 1) * t + rng.normal(size=(1, persons, joints, 1))))
        labels.append(label)
        subjects.append(1 + i % 6)
    return sequences, labels, subjects


def _run(line: str) -> int:
    return cli(shlex.split(line)[1:])


# --------------------------------------------------------------------------------------------
# the import


def test_untracked_frames_are_dropped_and_centring_uses_the_first_tracked_frame(tmp_path):
    layout = get_layout("kinect_v1_20")
    rng = np.random.default_rng(1)
    seq = rng.normal(size=(12, 20, 3)) + 5.0
    seq[:2] = 0  # lost at the start
    seq[6:8] = 0  # and inside
    other = rng.normal(size=(9, 20, 3)) + 1.0
    report = import_sequences(tmp_path / "d.npz", [seq, other], [0, 1], [1, 2], layout=layout,
                              train_subjects=[1])
    assert report.dropped_frames == 4 and report.num_frames == 9
    train = load_split(tmp_path / "d.npz", "train")
    tracked = np.delete(seq, [0, 1, 6, 7], axis=0)
    expected = tracked - tracked[0, layout.centre]
    np.testing.assert_allclose(train.x[0, :8, 0], expected, atol=1e-5)
    assert np.all(train.x[0, 8:] == 0) and train.meta["length"].tolist() == [8]
    assert np.all(train.x[0, 0, 0, layout.centre] == 0)


def test_centring_keeps_absent_persons_zero():
    seq = np.ones((4, 2, 3, 3))
    seq[1, 1] = 0  # person 2 absent in frame 1
    seq[0, 0] = 0  # person 1 absent in frame 0
    seq[1, 0, 2] = [3.0, 4.0, 5.0]
    out = centre_like_ntu(seq, centre=2)
    np.testing.assert_allclose(out[1, 0, 2], [0, 0, 0])  # origin: person 1's centre in its first frame (1)
    assert np.all(out[1, 1] == 0) and np.all(out[0, 0] == 0)
    np.testing.assert_allclose(out[2, 0, 0], [-2.0, -3.0, -4.0])


def test_labels_map_to_indices_with_names_and_bad_labels_are_clear_errors():
    y, names, mapping = map_labels(["wave", "clap", "wave"])
    assert y.tolist() == [1, 0, 1] and names == ("clap", "wave") and mapping == {"clap": 0, "wave": 1}
    y, names, _ = map_labels([1, 3, 2, 3])  # integers without names: sorted distinct values
    assert y.tolist() == [0, 2, 1, 2] and names == ("1", "2", "3")
    y, names, _ = map_labels([1, 3], class_names=["a", "b", "c"], label_base=1)
    assert y.tolist() == [0, 2]
    with pytest.raises(DatasetError, match="label_base=1"):
        map_labels([1, 2, 3], class_names=["a", "b", "c"])
    with pytest.raises(DatasetError, match="'jump' is not one of"):
        map_labels(["wave", "jump"], class_names=["wave", "clap"])
    with pytest.raises(DatasetError, match="integers or strings"):
        map_labels([0.5, 1.0])


def test_npz_with_string_or_one_based_labels_is_refused(tmp_path):
    x = np.ones((2, 4, 45), np.float32)
    np.savez(tmp_path / "s.npz", x_train=x, y_train=np.array(["a", "b"]), x_test=x, y_test=np.array(["a", "b"]),
             layout=np.array("openni15"), num_persons=np.array(1))
    with pytest.raises(DatasetError, match="y_train holds <U1 values; labels must be integers"):
        read_header(tmp_path / "s.npz")
    np.savez(tmp_path / "o.npz", x_train=x, y_train=np.array([1, 2]), x_test=x, y_test=np.array([2, 1]),
             layout=np.array("openni15"), num_persons=np.array(1))
    with pytest.raises(DatasetError, match="never use 0"):
        read_header(tmp_path / "o.npz")


def test_millimetres_warn_and_scale_fixes_them(tmp_path):
    sequences, labels, subjects = _sequences(20, n=12)
    with pytest.warns(UnitsWarning, match="scale=0.001"):
        report = import_sequences(tmp_path / "mm.npz", [s * 1000 for s in sequences], labels, subjects,
                                  layout="kinect_v1_20", train_subjects=[1, 2, 3])
    assert report.median_extent > 100
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", UnitsWarning)
        metres = import_sequences(tmp_path / "m.npz", [s * 1000 for s in sequences], labels, subjects,
                                  layout="kinect_v1_20", train_subjects=[1, 2, 3], scale=0.001)
    assert metres.median_extent == pytest.approx(report.median_extent / 1000)


def test_short_sequences_are_skipped_and_long_ones_resampled(tmp_path):
    sequences, labels, subjects = _sequences(15, n=12)
    sequences[0] = sequences[0][:1]
    layout = get_layout("openni15")
    report = import_sequences(tmp_path / "r.npz", sequences, labels, subjects, layout=layout,
                              test_subjects=[6], max_frames=30)
    assert report.skipped == [(0, "1 tracked frames < min_frames=2")]
    assert report.num_frames == 30 and report.resampled == sum(len(s) > 30 for s in sequences[1:])
    assert report.num_train + report.num_test == 11


def test_custom_layout_round_trips_through_the_file(tmp_path):
    layout = _chain("chain31", 31)
    assert layout.mirror[layout.index("left_a")] == layout.index("right_a")
    x = np.random.default_rng(0).normal(size=(4, 6, 1, 31, 3)).astype(np.float32)
    save_dataset(tmp_path / "c.npz", x, np.array([0, 1, 0, 1]), x, np.array([1, 0, 1, 0]), num_classes=2,
                 layout=layout, num_persons=1)
    header = read_header(tmp_path / "c.npz")
    assert header["layout"] == layout and header["layout"].num_joints == 31
    with np.load(tmp_path / "c.npz") as npz:  # a built-in name with other joints is refused
        arrays = dict(npz)
    arrays["layout"] = np.array("openni15")
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(DatasetError, match="differs from it"):
        read_header(tmp_path / "bad.npz")
    with pytest.raises(ValueError, match="'nose' is not one of its joints"):
        custom_layout("x", ["a", "b"], [0, 0], centre="nose")


# --------------------------------------------------------------------------------------------
# any joint count, end to end


@pytest.mark.slow
@pytest.mark.parametrize("joints", [17, 31])
def test_any_joint_count_runs_prepare_pretrain_tune_eval(tmp_path, joints):
    layout = _chain(f"chain{joints}", joints)
    sequences, labels, subjects = _sequences(joints, persons=2 if joints == 17 else 1)
    data = tmp_path / "d.npz"
    import_sequences(data, sequences, labels, subjects, layout=layout, train_subjects=[1, 2, 3, 4])
    tiny = "--preset tiny --device cpu --set run.epochs=1"
    assert _run(f"stars pretrain mamp --data {data} --out {tmp_path / 'p'} {tiny}") == 0
    assert _run(f"stars tune stars --init {tmp_path / 'p' / 'final.pt'} --data {data} --out {tmp_path / 't'} "
                f"{tiny}") == 0
    assert _run(f"stars eval knn --ckpt {tmp_path / 't' / 'final.pt'} --data {data} --out {tmp_path / 'k'} "
                "--preset tiny --device cpu") == 0
    checkpoint = load_checkpoint_file(tmp_path / "t" / "final.pt")
    assert checkpoint["data"]["layout"]["joints"] == list(layout.joints)
    assert checkpoint["config"]["encoder"]["num_joints"] == joints
    metrics = json.loads((tmp_path / "k" / "metrics.json").read_text())["metrics"]
    assert {"majority_k1", "raw_majority_k1", "below_raw_baseline"} <= set(metrics)


def test_joint_count_comes_from_the_file_and_is_checked(tmp_path, capsys):
    a, b = _chain("chainA", 17), custom_layout("other17", [f"k{i}" for i in range(17)], [0] * 17, 0)
    sequences, labels, subjects = _sequences(17, n=24)
    import_sequences(tmp_path / "a.npz", sequences, labels, subjects, layout=a, train_subjects=[1, 2, 3, 4])
    import_sequences(tmp_path / "b.npz", sequences, labels, subjects, layout=b, train_subjects=[1, 2, 3, 4])
    tiny = "--preset tiny --device cpu --set run.epochs=1"
    assert _run(f"stars pretrain mamp --data {tmp_path / 'a.npz'} --out {tmp_path / 'x'} {tiny} "
                "--set encoder.num_joints=25") == 2
    assert "encoder.num_joints=25 disagrees" in capsys.readouterr().err
    assert _run(f"stars pretrain mamp --data {tmp_path / 'a.npz'} --out {tmp_path / 'p'} {tiny}") == 0
    # same joint count, other joints: refused by tune and eval, naming both layouts
    assert _run(f"stars tune stars --init {tmp_path / 'p' / 'final.pt'} --data {tmp_path / 'b.npz'} "
                f"--out {tmp_path / 't'} {tiny}") == 2
    assert "trained on layout 'chainA'" in capsys.readouterr().err
    assert _run(f"stars eval knn --ckpt {tmp_path / 'p' / 'final.pt'} --data {tmp_path / 'b.npz'} "
                f"--out {tmp_path / 'k'} --preset tiny --device cpu") == 2
    assert "'other17'" in capsys.readouterr().err
    # a random encoder of any layout
    assert _run(f"stars eval knn --ckpt random --data {tmp_path / 'b.npz'} --out {tmp_path / 'r'} "
                "--preset tiny --device cpu") == 0
    run = json.loads((tmp_path / "r" / "run.json").read_text())
    assert run["encoder"]["source"] == "random init" and run["encoder"]["encoder"]["num_joints"] == 17
    assert _run(f"stars features --data {tmp_path / 'b.npz'} --out {tmp_path / 'f.npy'} --preset tiny "
                "--device cpu") == 0
    assert np.load(tmp_path / "f.npy").shape == (len(load_split(tmp_path / "b.npz", "test")), 32)


# --------------------------------------------------------------------------------------------
# the docs


def _docs_section_blocks() -> list[tuple[str, str]]:
    text = DOCS.read_text()
    section = text[text.index("## Bring your own dataset"): text.index("## Preparing the supported datasets")]
    return re.findall(r"```(python|bash)\n(.*?)```", section, flags=re.S)


@pytest.mark.slow
def test_docs_bring_your_own_examples_run_exactly_as_written(tmp_path, monkeypatch):
    blocks = _docs_section_blocks()
    assert [kind for kind, _ in blocks] == ["python", "bash", "python", "bash", "python"]
    monkeypatch.chdir(tmp_path)
    for kind, code in blocks:
        if kind == "python":
            exec(compile(code, str(DOCS), "exec"), {"__name__": "__docs__"})
            continue
        for line in code.strip().splitlines():
            assert line.startswith("stars "), line
            assert _run(line) == 0, line
    trained = load_checkpoint_file("runs/mine-stars/final.pt")
    assert trained["data"]["layout"]["name"] == "coco17" and trained["config"]["encoder"]["num_joints"] == 17
    assert load_split("my_dataset.npz", "train").layout.name == "kinect_v1_20"  # the last example's file
    recordings = load_split("data/my_recordings.npz", "train")  # stars prepare byo
    assert recordings.layout.name == "my15" and recordings.class_names == ("sit", "stand")
    assert set(recordings.meta["subject"].tolist()) == {1, 2, 3} and np.abs(recordings.x).max() < 10  # metres
    metrics = json.loads(Path("runs/mine-knn/metrics.json").read_text())["metrics"]
    random = json.loads(Path("runs/random-knn/metrics.json").read_text())["metrics"]
    assert metrics["raw_majority_k1"] == random["raw_majority_k1"]  # the same baseline, any encoder


def test_valid_spans_skip_leading_and_keep_inner_untracked_frames():
    from stars.data.feeder import BatchLoader, CropConfig, DeviceSplit, valid_lengths, valid_spans
    from stars.data.npz import SkeletonSplit

    x = np.zeros((2, 10, 1, 3, 3), np.float32)
    x[0, 2:8] = 1.0
    x[0, 4] = 0.0  # inside
    x[1, :5] = 2.0
    first, length = valid_spans(x)
    assert first.tolist() == [2, 0] and length.tolist() == [6, 5]
    assert valid_lengths(x).tolist() == [5, 5]  # the official count shifts the window of sample 0
    t_first, t_length = valid_spans(torch.from_numpy(x))
    assert t_first.tolist() == [2, 0] and t_length.tolist() == [6, 5]
    layout = custom_layout("three", ["a", "b", "c"], [0, 0, 1], 0)
    split = SkeletonSplit(x * np.arange(1, 11, dtype=np.float32)[None, :, None, None, None], np.array([0, 1]),
                          layout, 2)
    data = DeviceSplit.from_split(split, "cpu")
    batch = next(iter(BatchLoader(data, 2, train=False, crop=CropConfig(eval_ratio=1.0, num_frames=6))))
    # the full-span crop of sample 0 starts at its first recorded frame (value 3) and ends at frame 7 (value 8)
    values = batch["x"][0, 0, :, 0, 0]
    assert values[0].item() == pytest.approx(3.0) and values[-1].item() == pytest.approx(8.0)


def test_prepare_byo_errors_name_the_file_and_option(tmp_path, capsys):
    folder = tmp_path / "rec"
    folder.mkdir()
    np.save(folder / "a.npy", np.ones((5, 15, 3)))
    (folder / "sequences.csv").write_text("file,label,subject\na.npy,x,one\n")
    assert _run(f"stars prepare byo --raw {folder} --out {tmp_path} --set layout=openni15 "
                "--set train_subjects=1") == 2
    assert "line 2: subject 'one' is not an integer" in capsys.readouterr().err
    assert _run(f"stars prepare byo --raw {folder} --out {tmp_path} --set train_subjects=1") == 2
    assert "exactly one of --set layout=NAME" in capsys.readouterr().err
    assert _run(f"stars prepare byo --raw {folder} --out {tmp_path} --set layout=openni15 --set units=mm") == 2
    assert "unknown prepare option 'units'" in capsys.readouterr().err
