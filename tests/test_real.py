"""UTD-MHAD and NW-UCLA readers: joint reordering, centring, skipping, errors, and the real files."""

from __future__ import annotations

import csv
import json
import os

import numpy as np
import pytest
from scipy.io import savemat

from stars.data.layouts import KINECT_V1_20, NTU25, UTD_MHAD20
from stars.data.npz import DatasetError, load_split
from stars.data.real import (
    NW_UCLA_CLASSES,
    UTD_MHAD_CLASSES,
    centre_on_first_frame,
    default_datasets_root,
    prepare_nw_ucla,
    prepare_utd_mhad,
    read_nw_ucla_file,
    read_utd_mhad_file,
    resample_frames,
    to_layout,
)

ROOT = default_datasets_root()
UTD_DIR = ROOT / "utd_mhad"
NW_UCLA_DIR = ROOT / "nw_ucla" / "all_sqe"
needs_utd = pytest.mark.skipif(not UTD_DIR.is_dir(), reason=f"UTD-MHAD not found at {UTD_DIR} (set STARS_DATASETS)")
needs_nw_ucla = pytest.mark.skipif(
    not NW_UCLA_DIR.is_dir(), reason=f"NW-UCLA not found at {NW_UCLA_DIR} (set STARS_DATASETS)"
)


def body(frames: int, seed: int = 0) -> np.ndarray:
    """(frames, 20, 3) random-walk joints around z = 3 m, Kinect v1 order."""
    rng = np.random.default_rng(seed)
    return (np.array([0.0, 0.0, 3.0]) + rng.normal(0, 0.3, (1, 20, 3)) + np.cumsum(rng.normal(0, 0.01, (frames, 20, 3)), 0))


def write_nw_ucla(folder, action: int, subject: int, repetition: int, view: int, skeleton, label=None) -> str:
    name = f"a{action:02d}_s{subject:02d}_e{repetition:02d}_v{view:02d}"
    record = {"file_name": name, "skeletons": np.asarray(skeleton).tolist(),
              "label": label if label is not None else (1, 2, 3, 4, 5, 6, 8, 9, 11, 12).index(action) + 1}
    (folder / f"{name}.json").write_text(json.dumps(record))
    return f"{name}.json"


def write_utd(folder, action: int, subject: int, trial: int, skeleton) -> str:
    name = f"a{action}_s{subject}_t{trial}_skeleton.mat"
    savemat(folder / name, {"d_skel": np.transpose(np.asarray(skeleton), (1, 2, 0))})
    return name


# ---------------------------------------------------------------------------------------------------
# Layout conversion, centring, resampling
# ---------------------------------------------------------------------------------------------------

def test_to_layout_moves_joints_by_role():
    x = np.arange(20, dtype=np.float64)[:, None] * np.ones(3)  # joint j holds value j
    kinect = to_layout(x, "utd_mhad20", "kinect_v1_20")
    assert kinect[3, 0] == UTD_MHAD20.index("head") == 0  # head: UTD index 0 -> Kinect index 3
    assert kinect[0, 0] == UTD_MHAD20.index("hip_center") == 3
    np.testing.assert_array_equal(kinect[:, 0], [3, 2, 1, 0] + list(range(4, 20)))
    assert [KINECT_V1_20.joints[j] for j in range(4)] == ["hip_center", "spine", "shoulder_center", "head"]
    np.testing.assert_array_equal(to_layout(kinect, KINECT_V1_20, UTD_MHAD20), x)  # round trip
    ntu = to_layout(np.zeros((5, 25, 3)), NTU25, "kinect_v1_20")
    assert ntu.shape == (5, 20, 3)
    with pytest.raises(ValueError, match="20 joints"):
        to_layout(np.zeros((5, 19, 3)), "utd_mhad20", "kinect_v1_20")
    with pytest.raises(ValueError, match="no twin"):
        to_layout(np.zeros((20, 3)), "kinect_v1_20", NTU25)


def test_centre_and_resample():
    x = body(30)
    x[0] = 0.0  # an empty first frame is not the reference
    centred = centre_on_first_frame(x, centre_joint=1)
    np.testing.assert_array_equal(centred[0], 0.0)
    np.testing.assert_allclose(centred[1, 1], 0.0, atol=1e-12)
    np.testing.assert_allclose(centred[5] - centred[4], x[5] - x[4])
    short = resample_frames(x[1:], 10)
    assert short.shape == (10, 20, 3)
    np.testing.assert_allclose(short[0], x[1])
    np.testing.assert_allclose(short[-1], x[-1])
    np.testing.assert_allclose(resample_frames(np.arange(5.0)[:, None, None], 9)[:, 0, 0], np.arange(9) / 2)


# ---------------------------------------------------------------------------------------------------
# Preparation on small files written here
# ---------------------------------------------------------------------------------------------------

def test_nw_ucla_prepare_skips_short_files_and_reports(tmp_path):
    raw = tmp_path / "nw_ucla" / "all_sqe"
    raw.mkdir(parents=True)
    for view in (1, 2, 3):
        write_nw_ucla(raw, 1, 1, 0, view, body(12, view))
        write_nw_ucla(raw, 12, 2, 1, view, body(40, view + 3))
    short = write_nw_ucla(raw, 4, 3, 0, 2, body(1))
    report = prepare_nw_ucla(tmp_path / "nw_ucla", tmp_path / "out")  # the parent folder works too
    assert (report.num_train, report.num_test, report.num_frames) == (4, 2, 40)
    assert [r["file"] for r in report.skipped] == [short]
    assert "1 frames < min_frames=2" in str(report)
    with open(report.report_csv) as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 7 and {r["status"] for r in rows} == {"kept", "skipped"}
    train, test = load_split(report.output, "train"), load_split(report.output, "test")
    assert train.layout.name == "kinect_v1_20" and train.x.shape == (4, 40, 1, 20, 3)
    assert sorted(train.y.tolist()) == [0, 0, 9, 9] and set(test.meta["view"]) == {3}
    assert train.class_names == NW_UCLA_CLASSES
    sample = int(np.flatnonzero((train.y == 0) & (train.meta["view"] == 1))[0])
    expected = body(12, 1) - body(12, 1)[0, 1]  # centred on the spine of frame 0
    np.testing.assert_allclose(train.x[sample, :12, 0], expected, atol=1e-6)
    np.testing.assert_array_equal(train.x[sample, 12:], 0.0)
    assert train.meta["length"][sample] == 12

    report = prepare_nw_ucla(raw, tmp_path / "capped", max_frames=20, min_frames=13)
    assert report.num_frames == 20 and len(report.skipped) == 4 and len(report.resampled) == 3
    capped = load_split(report.output, "train")
    assert capped.x.shape == (2, 20, 1, 20, 3) and (capped.meta["length"] == 20).all()


def test_utd_prepare_layout_option(tmp_path):
    raw = tmp_path / "utd"
    raw.mkdir()
    for subject in (1, 2):
        write_utd(raw, 27, subject, 1, body(41, subject))
    (raw / "Skeleton_joint_order.txt").write_text("not a data file")
    own = prepare_utd_mhad(raw, tmp_path / "own")
    kinect = prepare_utd_mhad(raw, tmp_path / "kinect", layout="kinect_v1_20")
    a, b = load_split(own.output, "train"), load_split(kinect.output, "train")
    assert a.layout.name == "utd_mhad20" and b.layout.name == "kinect_v1_20"
    assert a.y.tolist() == [26] and a.class_names == UTD_MHAD_CLASSES
    np.testing.assert_array_equal(b.x[..., 3, :], a.x[..., 0, :])  # head
    np.testing.assert_allclose(a.x[0, 0, 0, 2], 0.0, atol=1e-7)  # UTD spine (index 2) is the origin
    with pytest.raises(ValueError, match="layout"):
        prepare_utd_mhad(raw, tmp_path / "bad", layout="ntu25")
    with pytest.raises(ValueError, match="min_frames"):
        prepare_utd_mhad(raw, tmp_path / "bad", min_frames=0)


def test_corrupt_files_raise_naming_the_file(tmp_path):
    broken = tmp_path / "a1_s1_t1_skeleton.mat"
    broken.write_bytes(b"MATLAB 5.0 MAT-file, truncated")
    with pytest.raises(DatasetError, match="a1_s1_t1_skeleton.mat.*not a readable MATLAB"):
        read_utd_mhad_file(broken)
    savemat(tmp_path / "a1_s1_t2_skeleton.mat", {"skeleton": np.zeros((20, 3, 5))})
    with pytest.raises(DatasetError, match="a1_s1_t2.*no variable 'd_skel'"):
        read_utd_mhad_file(tmp_path / "a1_s1_t2_skeleton.mat")
    savemat(tmp_path / "a1_s1_t3_skeleton.mat", {"d_skel": np.zeros((25, 3, 5))})
    with pytest.raises(DatasetError, match="a1_s1_t3.*20 joints"):
        read_utd_mhad_file(tmp_path / "a1_s1_t3_skeleton.mat")
    nan = np.ones((20, 3, 5))
    nan[4, 1, 3] = np.nan
    savemat(tmp_path / "a1_s1_t4_skeleton.mat", {"d_skel": nan})
    with pytest.raises(DatasetError, match="a1_s1_t4.*NaN.*frame 3"):
        read_utd_mhad_file(tmp_path / "a1_s1_t4_skeleton.mat")
    # the folder reader skips each bad file and names it in the report, written even when nothing is left
    with pytest.raises(DatasetError, match="0 train and 0 test sequences left"):
        prepare_utd_mhad(tmp_path, tmp_path / "out")
    report = (tmp_path / "out" / "prepare_report_UTD_MHAD_XSub.csv").read_text()
    assert "a1_s1_t1_skeleton.mat,,skipped,,not a readable MATLAB file" in report
    assert "a1_s1_t4_skeleton.mat,,skipped,,NaN or inf coordinates (first in frame 3)" in report

    (tmp_path / "a01_s01_e00_v01.json").write_text('{"skeletons": [[[0, 0, 1]]')
    with pytest.raises(DatasetError, match="a01_s01_e00_v01.json.*not a readable JSON"):
        read_nw_ucla_file(tmp_path / "a01_s01_e00_v01.json")
    write_nw_ucla(tmp_path, 1, 1, 1, 1, np.zeros((4, 19, 3)))
    with pytest.raises(DatasetError, match="a01_s01_e01_v01.json.*20 joints"):
        read_nw_ucla_file(tmp_path / "a01_s01_e01_v01.json")
    (tmp_path / "a01_s01_e02_v01.json").write_text('{"skeletons": [[[0, 0, 1]], [[0, 1]]], "label": 1}')
    with pytest.raises(DatasetError, match="a01_s01_e02_v01.json"):
        read_nw_ucla_file(tmp_path / "a01_s01_e02_v01.json")
    frames = body(6)
    frames[2, 5, 0] = np.nan
    write_nw_ucla(tmp_path, 1, 1, 3, 1, frames)
    with pytest.raises(DatasetError, match="a01_s01_e03_v01.json.*NaN.*frame 2"):
        read_nw_ucla_file(tmp_path / "a01_s01_e03_v01.json")

    folder = tmp_path / "labels"
    folder.mkdir()
    write_nw_ucla(folder, 8, 1, 0, 1, body(5), label=3)
    with pytest.raises(DatasetError, match="0 train and 0 test sequences left"):
        prepare_nw_ucla(folder, tmp_path / "out")
    report = (tmp_path / "out" / "prepare_report_NW_UCLA_XView.csv").read_text()
    assert "a08_s01_e00_v01.json,,skipped,,'label' is 3 but the file name says a08 (label 7)" in report
    (folder / "a08_s01_e00_v01.json").unlink()
    (folder / "notes.json").write_text("{}")
    with pytest.raises(DatasetError, match="no NW-UCLA files"):
        prepare_nw_ucla(folder, tmp_path / "out")
    with pytest.raises(DatasetError, match="no such folder"):
        prepare_nw_ucla(tmp_path / "absent", tmp_path / "out")


def test_default_datasets_root(monkeypatch, tmp_path):
    monkeypatch.setenv("STARS_DATASETS", str(tmp_path))
    assert default_datasets_root() == tmp_path
    monkeypatch.delenv("STARS_DATASETS")
    assert default_datasets_root().parts[-2:] == ("shared", "datasets")


# ---------------------------------------------------------------------------------------------------
# The real datasets (skipped when absent)
# ---------------------------------------------------------------------------------------------------

@pytest.mark.realdata
@needs_utd
def test_utd_mhad_real_files(tmp_path):
    report = prepare_utd_mhad(UTD_DIR, tmp_path, layout="kinect_v1_20")
    assert (report.num_train, report.num_test, report.num_frames) == (431, 430, 125)
    assert report.skipped == [] and report.resampled == []
    train, test = load_split(report.output, "train"), load_split(report.output, "test")
    assert set(train.meta["subject"]) == {1, 3, 5, 7} and set(test.meta["subject"]) == {2, 4, 6, 8}
    assert train.y.min() == 0 and train.y.max() == 26 and len(np.unique(test.y)) == 27
    lengths = np.concatenate([train.meta["length"], test.meta["length"]])
    assert lengths.min() == 41 and lengths.max() == 125
    # A known frame: a1_s1_t1, frame 0; the head (UTD index 0) lands at Kinect index 3.
    raw = read_utd_mhad_file(UTD_DIR / "a1_s1_t1_skeleton.mat")
    row = int(np.flatnonzero((train.y == 0) & (train.meta["subject"] == 1) & (train.meta["repetition"] == 1))[0])
    spine = raw[0, UTD_MHAD20.index("spine")]
    np.testing.assert_allclose(train.x[row, 0, 0, 3], raw[0, 0] - spine, atol=1e-6)
    np.testing.assert_allclose(train.x[row, 0, 0, 0], raw[0, 3] - spine, atol=1e-6)  # hip centre
    np.testing.assert_allclose(train.x[row, 0, 0, 1], 0.0, atol=1e-7)
    assert train.x[row, 0, 0, 3, 1] > 0.3  # the head is above the spine


@pytest.mark.realdata
@needs_nw_ucla
def test_nw_ucla_real_files(tmp_path):
    report = prepare_nw_ucla(NW_UCLA_DIR, tmp_path)
    skipped = {r["file"]: r for r in report.skipped}
    assert set(skipped) == {"a02_s09_e04_v02.json", "a02_s09_e04_v03.json"}  # single-frame files
    train_skipped = sum(r["split"] == "train" for r in skipped.values())
    assert report.num_train == 1020 - train_skipped and report.num_test == 464 - (len(skipped) - train_skipped)
    assert report.num_frames == 201
    train, test = load_split(report.output, "train"), load_split(report.output, "test")
    assert set(train.meta["view"]) == {1, 2} and set(test.meta["view"]) == {3}
    assert train.y.min() == 0 and train.y.max() == 9 and len(np.unique(test.y)) == 10
    assert set(train.meta["subject"]) == set(range(1, 11))
    np.testing.assert_allclose(train.x[:, 0, 0, 1], 0.0, atol=1e-6)  # spine of frame 0 is the origin
    head_above_hip = train.x[:, 0, 0, 3, 1] - train.x[:, 0, 0, 0, 1]
    assert np.median(head_above_hip) > 0.4


def test_bad_files_are_skipped_and_reported_and_the_rest_is_written(tmp_path):
    folder = tmp_path / "raw"
    folder.mkdir()
    for view in (1, 2, 3):
        write_nw_ucla(folder, 1, 1, 0, view, body(6, seed=view))
    (folder / "a01_s01_e01_v03.json").write_text('{"skeletons": [[[0, 0, 1]]')  # truncated JSON
    (folder / "a01_s01_e00_v01 (copy).json").write_text("{}")  # not a data file name
    with open(os.fsencode(folder) + b"/a01_s01_e02_v0\xff.json", "w") as handle:  # not UTF-8
        handle.write("{}")
    report = prepare_nw_ucla(folder, tmp_path / "out")
    assert (report.num_train, report.num_test) == (2, 1)
    reasons = {row["file"]: row["reason"] for row in report.skipped}
    assert reasons["a01_s01_e01_v03.json"].startswith("not a readable JSON file")
    assert reasons["a01_s01_e00_v01 (copy).json"].startswith("file name does not follow the NW-UCLA pattern")
    assert reasons["a01_s01_e02_v0\\xff.json"].startswith("file name does not follow")
    assert "a01_s01_e02_v0\\xff.json" in report.report_csv.read_text()
