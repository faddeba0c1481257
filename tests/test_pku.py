"""PKU-MMD preparation: segments, truncation/resampling, centring, split-file names, clear errors."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from stars.data.npz import load_split
from stars.data.pku import (
    PkuFileError,
    Segment,
    find_split_file,
    prepare_pku,
    read_pku_labels,
    read_pku_skeleton,
    read_split_file,
    resize_frames,
    segment_sample,
)


def video_frames(seed: int, length: int) -> np.ndarray:
    """(length, 150) float32: body 1 always present, body 2 present in the first half only."""
    rng = np.random.default_rng(seed)
    frames = rng.normal(size=(length, 150)).astype(np.float32) + 2.0
    frames[length // 2 :, 75:] = 0
    return frames


def write_video(root, video: str, frames: np.ndarray, segments: list[tuple[int, int, int]]) -> None:
    (root / "skeleton").mkdir(parents=True, exist_ok=True)
    (root / "label").mkdir(parents=True, exist_ok=True)
    np.savetxt(root / "skeleton" / f"{video}.txt", frames, fmt="%.9g")
    (root / "label" / f"{video}.txt").write_text("".join(f"{c},{s},{e},1\n" for c, s, e in segments))


def write_split(path, train: list[str], test: list[str]) -> None:
    path.write_text(f"Training videos: \n{', '.join(train)}\nValidation videos: \n{', '.join(test)}\n")


@pytest.fixture()
def pku_root(tmp_path):
    """Three videos; video 0002-M has a 350-frame segment and an all-zero segment."""
    root = tmp_path / "pku"
    frames = {"0002-L": video_frames(1, 120), "0002-M": video_frames(2, 420), "0003-L": video_frames(3, 80)}
    frames["0002-M"][400:] = 0
    write_video(root, "0002-L", frames["0002-L"], [(5, 10, 50), (51, 60, 120)])
    write_video(root, "0002-M", frames["0002-M"], [(7, 20, 370), (2, 400, 420), (1, 0, 30)])
    write_video(root, "0003-L", frames["0003-L"], [(3, 0, 40)])
    # v1 split files with a hyphen and with an underscore; the lists are not in sorted order.
    write_split(root / "cross-subject.txt", ["0002-M", "0002-L"], ["0003-L"])
    write_split(root / "cross_view.txt", ["0002-M", "0003-L"], ["0002-L"])
    return root, frames


def test_segments_become_samples_in_sorted_video_order(pku_root, tmp_path):
    root, frames = pku_root
    report = prepare_pku(root, tmp_path / "out", version=1, workers=1, progress=False)
    assert report.split_sizes == {"PKUv1_XSub": (4, 1), "PKUv1_XView": (3, 2)}
    assert report.skipped == [("0002-M", 1, "all-zero: the segment's values sum to 0 (or it lies past the "
                                           "video's end)")]
    train = load_split(tmp_path / "out" / "PKUv1_XSub.npz", "train")
    assert train.num_classes == 51 and train.x.shape == (4, 300, 2, 25, 3)
    assert train.y.tolist() == [4, 50, 6, 0]  # 0002-L before 0002-M; segments in label-file order
    assert train.meta["video"].tolist() == ["0002-L", "0002-L", "0002-M", "0002-M"]
    flat = train.x.reshape(4, 300, 150)
    np.testing.assert_array_equal(flat[0, :40], frames["0002-L"][10:50])  # [start, end): 40 frames, raw
    assert not flat[0, 40:].any()
    np.testing.assert_array_equal(flat[2], frames["0002-M"][20:320])  # 350 frames truncated to 300
    with np.load(tmp_path / "out" / "PKUv1_XSub.npz") as npz:
        assert npz["y_train"].shape == (4, 51) and npz["y_train"].dtype == np.float64
    rows = list(csv.DictReader(open(report.report_csv)))
    assert [r["status"] for r in rows if r["video"] == "0002-M"] == ["ok", "skipped", "ok"]
    assert json.loads(open(report.summary_json).read())["skipped_by_reason"] == {"all-zero": 1}


def test_resample_and_centre_switches(pku_root, tmp_path):
    root, frames = pku_root
    prepare_pku(root, tmp_path / "out", version=1, resample=True, centre=True, workers=1, progress=False,
                official_keys_only=True)
    with np.load(tmp_path / "out" / "PKUv1_XSub.npz") as npz:
        assert sorted(npz.files) == ["x_test", "x_train", "y_test", "y_train"]
        long_segment = npz["x_train"][2]
    clip = frames["0002-M"][20:370]
    origin = clip[0, 3:6]
    centred = clip - np.tile(origin, 50)
    centred[np.flatnonzero(clip[:, 75:].sum(1) == 0), 75:] = 0  # absent body 2 stays zero
    reference = np.stack([np.interp(np.linspace(0, 349, 300), np.arange(350), centred[:, c]) for c in range(150)], 1)
    np.testing.assert_allclose(long_segment, reference, atol=1e-5)
    np.testing.assert_allclose(long_segment[0, 3:6], 0, atol=1e-6)
    assert not long_segment[-1, 75:].any()


def test_resize_keeps_end_frames_and_is_linear():
    frames = np.arange(10, dtype=np.float32)[:, None] * [1.0, -2.0]
    out = resize_frames(frames, 4)
    np.testing.assert_allclose(out[:, 0], [0, 3, 6, 9])
    np.testing.assert_allclose(out[:, 1], [0, -6, -12, -18])


def test_segment_past_the_end_is_clipped_and_empty_segment_dropped():
    frames = video_frames(4, 50)
    np.testing.assert_array_equal(segment_sample(frames, Segment(1, 40, 70, 1)), frames[40:50])
    assert segment_sample(frames, Segment(1, 60, 70, 1)) is None


@pytest.mark.parametrize(
    ("version", "files", "expected"),
    [
        (1, ["cross-subject.txt"], "cross-subject.txt"),
        (1, ["cross_subject.txt", "cross_subject_v2.txt"], "cross_subject.txt"),
        (1, ["Cross-Subject-v1.txt"], "Cross-Subject-v1.txt"),
        (2, ["cross_subject_v2.txt", "cross-subject.txt"], "cross_subject_v2.txt"),
        (2, ["cross-subject-v2.txt"], "cross-subject-v2.txt"),
        (2, ["cross_subject.txt"], "cross_subject.txt"),
    ],
)
def test_split_file_name_variants(tmp_path, version, files, expected):
    for name in files:
        write_split(tmp_path / name, ["a"], ["b"])
    assert find_split_file([tmp_path], version, "XSub").name == expected
    with pytest.raises(FileNotFoundError, match="cross-view"):
        find_split_file([tmp_path], version, "XView")


def test_version_2_end_to_end_with_versioned_split_files(pku_root, tmp_path):
    root, _ = pku_root
    (root / "cross-subject.txt").rename(root / "cross_subject_v2.txt")
    (root / "cross_view.txt").rename(root / "cross-view-v2.txt")
    report = prepare_pku(root, tmp_path / "out", version=2, workers=2, progress=False)
    assert sorted(report.outputs) == ["PKUv2_XSub", "PKUv2_XView"]
    assert report.split_files["XView"].endswith("cross-view-v2.txt")
    assert report.split_sizes == {"PKUv2_XSub": (4, 1), "PKUv2_XView": (3, 2)}
    with pytest.raises(FileNotFoundError, match="PKU-MMD v1 XSub split file"):
        prepare_pku(root, tmp_path / "v1", version=1, workers=1, progress=False)


def test_read_split_file_lines_two_and_four(tmp_path):
    path = tmp_path / "cross-view.txt"
    path.write_text("Training videos: \n0002-L, 0002-M,0003-R, \nValidation videos: \n0001-L\n")
    assert read_split_file(path) == (("0002-L", "0002-M", "0003-R"), ("0001-L",))
    path.write_text("Training videos: \n0002-L\n")
    with pytest.raises(PkuFileError, match=r"cross-view.txt, line 4: no test list"):
        read_split_file(path)


def test_malformed_files_name_file_and_line(tmp_path, pku_root):
    label = tmp_path / "label.txt"
    label.write_text("1,0,10,1\n\n2,5,x,1\n")
    with pytest.raises(PkuFileError, match=r"label.txt, line 3: non-integer"):
        read_pku_labels(label)
    label.write_text("52,0,10,1\n")
    with pytest.raises(PkuFileError, match=r"line 1: class 52 outside 1..51"):
        read_pku_labels(label)
    label.write_text("3,0,10\n")
    with pytest.raises(PkuFileError, match=r"line 1: expected 'class,start,end,confidence'"):
        read_pku_labels(label)
    skeleton = tmp_path / "skeleton.txt"
    rows = [" ".join(["0.5"] * 150)] * 3
    rows[1] = " ".join(["0.5"] * 149)
    skeleton.write_text("\n".join(rows) + "\n")
    with pytest.raises(PkuFileError, match=r"skeleton.txt, line 2: 149 values, expected 150"):
        read_pku_skeleton(skeleton)
    rows[1] = " ".join(["0.5"] * 149 + ["nan"])
    skeleton.write_text("\n".join(rows) + "\n")
    with pytest.raises(PkuFileError, match=r"line 2: non-finite value 'nan'"):
        read_pku_skeleton(skeleton)

    root, _ = pku_root
    (root / "label" / "0003-L.txt").write_text("3,0,forty,1\n")
    with pytest.raises(PkuFileError, match=r"0003-L.txt, line 1"):
        prepare_pku(root, tmp_path / "out", workers=1, progress=False)
    report = prepare_pku(root, tmp_path / "out", workers=1, progress=False, skip_bad_files=True)
    assert report.skipped_by_reason == {"all-zero": 1, "bad-file": 1}
    assert report.split_sizes["PKUv1_XSub"] == (4, 0)
