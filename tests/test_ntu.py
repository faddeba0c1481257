"""NTU RGB+D preparation: parser, denoising, centring, padding, splits, robustness, resume."""

from __future__ import annotations

import csv
import json
import tempfile
from pathlib import Path

import numpy as np
import pytest

import stars.data.ntu as ntu
from stars.data.npz import load_split
from stars.data.ntu import (
    NTU60_XSUB,
    NTU60_XVIEW,
    NTU120_XSET,
    NTU120_XSUB,
    DenoiseThresholds,
    RawBody,
    RawSkeleton,
    SkeletonFileError,
    align_sequences,
    centre_on_first_spine_mid,
    parse_sample_name,
    prepare_ntu,
    read_missing_list,
    read_skeleton_file,
    select_actors,
    split_indices,
    write_skeleton_file,
)
from stars.data.ntu_names import (
    NTU60_MISSING_SKELETONS,
    NTU120_ADDED_MISSING_SKELETONS,
    NTU120_MISSING_SKELETONS,
    NTU_CLASS_NAMES,
)
from stars.data.real import default_datasets_root

RNG = np.random.default_rng(7)


def standing_body(seed: int, shift=(0.0, 0.0, 3.0), scale: float = 1.0) -> np.ndarray:
    """(25, 3) joints of a tall body: x extent ~0.5 m, y extent ~1.6 m (valid for the spread test)."""
    rng = np.random.default_rng(seed)
    joints = np.column_stack([rng.uniform(-0.25, 0.25, 25), rng.uniform(-0.8, 0.8, 25), rng.uniform(-0.1, 0.1, 25)])
    return (scale * joints + np.asarray(shift)).astype(np.float32)


def wide_body(seed: int) -> np.ndarray:
    """(25, 3) joints wider than tall: x extent ~1.2 m, y extent ~0.1 m (spread noise)."""
    rng = np.random.default_rng(seed)
    joints = np.column_stack([rng.uniform(-0.6, 0.6, 25), rng.uniform(-0.05, 0.05, 25), rng.uniform(-0.1, 0.1, 25)])
    return (joints + [0.5, -0.6, 3.5]).astype(np.float32)


def moving(base: np.ndarray, t: int, speed: float) -> np.ndarray:
    return (base + np.array([speed * t, 0.0, 0.0], dtype=np.float32)).astype(np.float32)


def two_body_frames(n=40, speed_a=0.001, speed_b=0.05):
    a, b = standing_body(1), standing_body(2, (1.0, 0.0, 3.2))
    return [[("111", moving(a, t, speed_a)), ("222", moving(b, t, speed_b))] for t in range(n)]


# ---------------------------------------------------------------------------------------------
# Parser
# ---------------------------------------------------------------------------------------------


def test_parser_round_trip_groups_bodies_and_drops_empty_frames(tmp_path):
    a, b = standing_body(1), standing_body(2, (1.0, 0.0, 3.0))
    frames = []
    for t in range(8):
        bodies = [("72057594037931101", moving(a, t, 0.01))]
        if t in (2, 3, 5):  # body 2 is seen in valid frames 2, 3 and (after the gap) 4
            bodies.append(("72057594037931102", moving(b, t, 0.03)))
        frames.append(bodies)
    frames.insert(4, [])  # an empty frame: dropped
    path = write_skeleton_file(tmp_path / "S001C001P001R001A001.skeleton", frames)

    raw = read_skeleton_file(path)
    assert raw.name == "S001C001P001R001A001"
    assert (raw.num_raw_frames, raw.num_frames, raw.dropped_frames) == (9, 8, (4,))
    assert list(raw.bodies) == ["72057594037931101", "72057594037931102"]
    first, second = raw.bodies.values()
    assert first.joints.shape == (8 * 25, 3) and first.joints.dtype == np.float32
    np.testing.assert_array_equal(first.joints.reshape(8, 25, 3), np.stack([moving(a, t, 0.01) for t in range(8)]))
    np.testing.assert_array_equal(first.interval, np.arange(8))
    # Official interval rule: first index, then consecutive, although the body skipped valid frame 4.
    np.testing.assert_array_equal(second.interval, [2, 3, 4])
    np.testing.assert_array_equal(second.joints.reshape(3, 25, 3)[2], moving(b, 5, 0.03))
    reference = first.joints.astype(np.float64).var(axis=0).sum()
    assert first.motion == pytest.approx(reference, rel=1e-5)


def test_single_body_has_no_motion_and_fills_a_75_wide_array(tmp_path):
    base = standing_body(3)
    path = write_skeleton_file(tmp_path / "x.skeleton", [[("5", moving(base, t, 0.01))] for t in range(5)])
    raw = read_skeleton_file(path)
    assert next(iter(raw.bodies.values())).motion is None
    selection = select_actors(raw)
    assert selection.joints.shape == (5, 75)
    np.testing.assert_array_equal(selection.joints[4].reshape(25, 3), moving(base, 4, 0.01))


def _good_text() -> str:
    """A valid 3-frame single-body file: 85 lines."""
    with tempfile.TemporaryDirectory() as folder:
        path = write_skeleton_file(Path(folder) / "t.skeleton", [[("9", standing_body(4))] for _ in range(3)])
        return path.read_text()


def _with_token(lines: list[str], line: int, index: int, value: str) -> list[str]:
    """Copy of `lines` with token `index` of 1-based line `line` replaced by `value`."""
    tokens = lines[line - 1].split()
    tokens[index] = value
    return lines[: line - 1] + [" ".join(tokens) + "\n"] + lines[line:]


@pytest.mark.parametrize(
    ("edit", "kind", "line"),
    [
        (lambda lines: [], "empty", 1),
        (lambda lines: lines[:40], "truncated", 41),  # frame 2 stops after 11 of its 25 joint lines
        (lambda lines: _with_token(lines, 6, 8, "abc"), "malformed", 6),
        (lambda lines: _with_token(lines, 31, 0, "7.5"), "malformed", 31),  # body ID must be an integer
        (lambda lines: _with_token(lines, 4, 0, "24"), "joint-count", 4),
        (lambda lines: _with_token(lines, 9, 1, "nan"), "non-finite", 9),
        (lambda lines: _with_token(lines, 62, 0, "-inf"), "non-finite", 62),
        (lambda lines: _with_token(lines, 36, 2, "1e999"), "non-finite", 36),  # overflows to inf
        (lambda lines: _with_token(lines, 30, 0, "1.5"), "malformed", 30),  # body count
        (lambda lines: ["3\n", "0\n", "0\n", "0\n"], "no-body", None),
        (lambda lines: lines + ["1 2 3\n"], "malformed", 86),  # data after the announced frames
    ],
)
def test_strict_parser_names_file_line_and_kind(tmp_path, edit, kind, line):
    lines = _good_text().splitlines(keepends=True)
    assert len(lines) == 1 + 3 * 28  # frame count + 3 x (body count, body info, joint count, 25 joints)
    path = tmp_path / "S001C001P001R001A001.skeleton"
    path.write_text("".join(edit(lines)))
    with pytest.raises(SkeletonFileError) as info:
        read_skeleton_file(path)
    assert info.value.kind == kind
    assert info.value.line == line
    assert str(path) in str(info.value)


def test_parser_accepts_crlf_line_endings(tmp_path):
    path = tmp_path / "crlf.skeleton"
    path.write_bytes(_good_text().replace("\n", "\r\n").encode())
    assert read_skeleton_file(path).num_frames == 3


# ---------------------------------------------------------------------------------------------
# Denoising and actor selection
# ---------------------------------------------------------------------------------------------


def _raw(frames, tmp_path, name="S001C001P001R001A050"):
    return read_skeleton_file(write_skeleton_file(tmp_path / f"{name}.skeleton", frames))


@pytest.mark.parametrize(("noise_frames", "kept"), [(11, False), (12, True)])
def test_length_filter_removes_bodies_seen_in_11_frames_or_fewer(tmp_path, noise_frames, kept):
    main, noise = standing_body(1), standing_body(9, (1.5, 0.0, 3.0))
    frames = [[("1", moving(main, t, 0.05))] + ([("2", noise)] if 5 <= t < 5 + noise_frames else []) for t in range(30)]
    selection = select_actors(_raw(frames, tmp_path))
    if kept:
        assert selection.joints.shape == (30, 150) and selection.actors == ("1", "2")
    else:
        assert selection.removed == {"2": "length"}
        assert selection.joints.shape == (30, 75)  # one body left: a single actor
        np.testing.assert_array_equal(selection.joints[7].reshape(25, 3), moving(main, 7, 0.05))


def test_spread_filter_removes_a_body_wider_than_tall(tmp_path):
    main = standing_body(1)
    frames = [[("1", moving(main, t, 0.001)), ("2", moving(wide_body(t), t, 0.05))] for t in range(30)]
    raw = _raw(frames, tmp_path)
    assert raw.bodies["2"].motion > raw.bodies["1"].motion  # it would be actor 1 without the filter
    selection = select_actors(raw)
    assert selection.removed == {"2": "spread"}
    assert selection.actors == ("1",) and selection.joints.shape == (30, 75)


def test_spread_filter_updates_motion_on_valid_frames(tmp_path):
    """Body 2: 30 calm valid frames + 20 wide, far-apart frames (ratio 0.4 < 0.69754): kept, but its
    motion drops to the valid-frame motion, so the steady walker body 1 becomes actor 1."""
    walker, calm = standing_body(1), standing_body(2, (1.0, 0.0, 3.0))
    frames = []
    for t in range(50):
        second = moving(calm, t, 0.001) if t < 30 else (wide_body(t) + [3.0 * (t % 2), 0, 0]).astype(np.float32)
        frames.append([("1", moving(walker, t, 0.04)), ("2", second)])
    raw = _raw(frames, tmp_path)
    assert raw.bodies["2"].motion > raw.bodies["1"].motion
    selection = select_actors(raw)
    assert selection.actors == ("1", "2") and not selection.removed
    np.testing.assert_array_equal(selection.joints[0, :75].reshape(25, 3), moving(walker, 0, 0.04))
    # With the noise ratio threshold above 0.4 the body would be deleted instead.
    strict = select_actors(raw, DenoiseThresholds(max_noise_ratio=0.4))
    assert strict.removed == {"2": "spread"}


def test_actors_are_ordered_by_motion(tmp_path):
    frames = two_body_frames(speed_a=0.001, speed_b=0.05)  # body "222" moves more
    raw = _raw(frames, tmp_path)
    assert raw.bodies["222"].motion > raw.bodies["111"].motion
    selection = select_actors(raw)
    assert selection.actors == ("222", "111")
    np.testing.assert_array_equal(selection.joints[3, :75].reshape(25, 3), frames[3][1][1])
    np.testing.assert_array_equal(selection.joints[3, 75:].reshape(25, 3), frames[3][0][1])


def test_non_overlapping_bodies_are_merged_into_actor_one(tmp_path):
    """A tracking-ID switch: body 1 in frames 0-30, body 2 in frames 30-59 (touching at frame 30
    counts as not overlapping); a third overlapping body fills actor 2, a fourth is discarded."""
    a, b = standing_body(1), standing_body(2)
    c, d = standing_body(3, (1.2, 0, 3)), standing_body(4, (-1.2, 0, 3), scale=0.3)
    frames = []
    for t in range(60):
        bodies = []
        if t <= 30:
            bodies.append(("1", moving(a, t, 0.08)))
        if t >= 30:
            bodies.append(("2", moving(b, t, 0.04)))
        if 10 <= t < 50:
            bodies.append(("3", moving(c, t, 0.001)))
        if 20 <= t < 40:
            bodies.append(("4", moving(d, t, 0.0005)))
        frames.append(bodies)
    raw = _raw(frames, tmp_path)
    motions = [raw.bodies[i].motion for i in "1234"]
    assert motions == sorted(motions, reverse=True)  # assembly order 1, 2, 3, 4
    selection = select_actors(raw)
    assert selection.joints.shape == (60, 150)
    assert selection.removed == {"4": "overlap"}
    actor1 = selection.joints[:, :75].reshape(60, 25, 3)
    np.testing.assert_array_equal(actor1[29], moving(a, 29, 0.08))
    np.testing.assert_array_equal(actor1[30], moving(b, 30, 0.04))  # the later body overwrites frame 30
    np.testing.assert_array_equal(actor1[59], moving(b, 59, 0.04))
    actor2 = selection.joints[:, 75:].reshape(60, 25, 3)
    assert not actor2[:10].any() and not actor2[50:].any()
    np.testing.assert_array_equal(actor2[10], moving(c, 10, 0.001))


def test_frames_without_selected_actors_are_removed(tmp_path):
    """Bodies in frames 0-19 and 30-59 become actor 1; frames 20-29 only held a noise body."""
    a, b, noise = standing_body(1), standing_body(2), standing_body(3, (2, 0, 3))
    frames = []
    for t in range(60):
        if t < 20:
            frames.append([("1", moving(a, t, 0.01))])
        elif t < 30:
            frames.append([("9", noise)])
        else:
            frames.append([("2", moving(b, t, 0.01))])
    selection = select_actors(_raw(frames, tmp_path))
    assert selection.removed == {"9": "length"}
    assert selection.joints.shape == (50, 150)
    np.testing.assert_array_equal(selection.joints[20, :75].reshape(25, 3), moving(b, 30, 0.01))


def test_all_bodies_too_short_is_an_error():
    body = RawBody("1", np.ones((5 * 25, 3), np.float32), np.arange(5), 1.0)
    other = RawBody("2", np.ones((5 * 25, 3), np.float32), np.arange(5), 2.0)
    with pytest.raises(SkeletonFileError) as info:
        select_actors(RawSkeleton("S001C001P001R001A001", {"1": body, "2": other}, 5, 5))
    assert info.value.kind == "too-short"


# ---------------------------------------------------------------------------------------------
# Centring and padding
# ---------------------------------------------------------------------------------------------


def test_centring_origin_is_actor1_spine_mid_of_first_present_frame():
    joints = RNG.normal(size=(6, 150)).astype(np.float32)
    joints[0, :75] = 0  # actor 1 absent in frame 0: the origin comes from frame 1
    joints[:2, 75:] = 0  # actor 2 absent in frames 0-1: stays zero
    out = centre_on_first_spine_mid(joints)
    origin = joints[1, 3:6]
    np.testing.assert_allclose(out[1, 3:6], 0, atol=1e-7)
    expected = joints - np.tile(origin, 50)
    expected[0, :75] = 0
    expected[:2, 75:] = 0
    np.testing.assert_array_equal(out, expected)
    single = centre_on_first_spine_mid(joints[2:, :75])
    np.testing.assert_array_equal(single, joints[2:, :75] - np.tile(joints[2, 3:6], 25))


def test_align_pads_at_the_end_with_zeros_or_a_copy_of_actor_one():
    one = RNG.normal(size=(4, 75)).astype(np.float32)
    two = RNG.normal(size=(310, 150)).astype(np.float32)
    zeros = align_sequences([one, two], "zeros")
    assert zeros.shape == (2, 310, 150)  # longer than 300: the longest sets T
    np.testing.assert_array_equal(zeros[0, :4, :75], one)
    assert not zeros[0, :, 75:].any() and not zeros[0, 4:].any()
    duplicate = align_sequences([one], "duplicate")
    assert duplicate.shape == (1, 300, 150)
    np.testing.assert_array_equal(duplicate[0, :4, 75:], one)


# ---------------------------------------------------------------------------------------------
# Splits
# ---------------------------------------------------------------------------------------------

SPLIT_NAMES = sorted([
    "S001C001P001R001A001", "S001C002P003R001A001", "S001C003P001R002A002", "S002C001P038R001A010",
    "S002C002P002R001A010", "S018C001P045R001A061", "S019C003P041R002A120", "S032C002P106R001A100",
])  # fmt: skip


def test_official_id_lists():
    assert len(NTU60_XSUB.train_ids) == 20 and len(NTU60_XSUB.test_ids) == 20
    assert NTU60_XSUB.test_ids[:4] == (3, 6, 7, 10)
    assert len(NTU120_XSUB.train_ids) == 53 and len(NTU120_XSUB.test_ids) == 53
    assert NTU120_XSET.train_ids == tuple(range(2, 33, 2))
    assert len(NTU_CLASS_NAMES) == 120 and NTU_CLASS_NAMES[58] == "walking towards each other"


def test_missing_list_matches_the_official_split_counts():
    """302 names; 28 from camera 1 (18,960 - 18,932) and 229 from XSub training subjects
    (40,320 - 40,091): the two counts the official NTU-60 split sizes imply."""
    ids = [parse_sample_name(n) for n in NTU60_MISSING_SKELETONS]
    assert len(set(NTU60_MISSING_SKELETONS)) == 302
    assert sum(i.camera == 1 for i in ids) == 28
    assert sum(i.subject in NTU60_XSUB.train_ids for i in ids) == 229
    assert max(i.setup for i in ids) == 17 and max(i.action for i in ids) == 60


def test_ntu120_list_is_the_ntu60_list_plus_233_names_from_the_new_setups():
    assert len(set(NTU120_MISSING_SKELETONS)) == len(NTU120_MISSING_SKELETONS) == 535
    assert len(set(NTU120_ADDED_MISSING_SKELETONS)) == 233
    assert set(NTU60_MISSING_SKELETONS) < set(NTU120_MISSING_SKELETONS)
    assert set(NTU120_MISSING_SKELETONS) - set(NTU60_MISSING_SKELETONS) == set(NTU120_ADDED_MISSING_SKELETONS)
    assert all(parse_sample_name(n).setup >= 18 for n in NTU120_ADDED_MISSING_SKELETONS)
    assert list(NTU120_MISSING_SKELETONS) == sorted(NTU120_MISSING_SKELETONS)


@pytest.mark.realdata
@pytest.mark.parametrize(
    ("file", "built_in"),
    [("NTU_RGBD_samples_with_missing_skeletons.txt", "ntu60"),
     ("NTU_RGBD120_samples_with_missing_skeletons.txt", "ntu120")],
)
def test_built_in_missing_lists_equal_the_official_files(file, built_in):
    path = default_datasets_root() / "ntu" / file
    if not path.exists():
        pytest.skip(f"{path} is absent")
    lists = {"ntu60": NTU60_MISSING_SKELETONS, "ntu120": NTU120_MISSING_SKELETONS}
    assert read_missing_list(path) == frozenset(lists[built_in])


@pytest.mark.parametrize(
    ("benchmark", "train", "test"),
    [
        (NTU60_XSUB, ["S001C001P001R001A001", "S001C003P001R002A002", "S002C002P002R001A010", "S002C001P038R001A010"],
         ["S001C002P003R001A001"]),
        (NTU60_XVIEW, ["S001C002P003R001A001", "S002C002P002R001A010", "S001C003P001R002A002"],
         ["S001C001P001R001A001", "S002C001P038R001A010"]),
        (NTU120_XSUB, ["S001C001P001R001A001", "S001C003P001R002A002", "S002C002P002R001A010", "S002C001P038R001A010",
                       "S018C001P045R001A061"],
         ["S001C002P003R001A001", "S019C003P041R002A120", "S032C002P106R001A100"]),
        (NTU120_XSET, ["S002C001P038R001A010", "S002C002P002R001A010", "S018C001P045R001A061", "S032C002P106R001A100"],
         ["S001C001P001R001A001", "S001C002P003R001A001", "S001C003P001R002A002", "S019C003P041R002A120"]),
    ],
)
def test_split_membership_and_order(benchmark, train, test):
    names = SPLIT_NAMES if benchmark.name.startswith("NTU120") else [n for n in SPLIT_NAMES if n < "S018"]
    train_index, test_index = split_indices([parse_sample_name(n) for n in names], benchmark)
    assert [names[i] for i in train_index] == train
    assert [names[i] for i in test_index] == test


# ---------------------------------------------------------------------------------------------
# prepare_ntu end to end
# ---------------------------------------------------------------------------------------------


def _single_body_file(folder, name, seed, length=20):
    base = standing_body(seed)
    return write_skeleton_file(folder / f"{name}.skeleton", [[(str(seed), moving(base, t, 0.01))] for t in range(length)])


def _six_files(folder):
    names = ["S001C001P001R001A001", "S001C002P001R001A002", "S001C003P002R001A003",
             "S002C001P003R001A004", "S002C002P004R002A005"]  # fmt: skip
    for seed, name in enumerate(names):
        _single_body_file(folder, name, seed, length=20 + seed)
    write_skeleton_file(folder / "S001C001P002R001A050.skeleton", two_body_frames(25))
    return names + ["S001C001P002R001A050"]


def test_prepare_writes_official_files_and_a_report(tmp_path):
    raw = tmp_path / "raw"
    _six_files(raw)
    (raw / "S003C001P001R001A001.skeleton").write_text("")  # empty
    (raw / "S003C001P002R001A001.skeleton").write_text("2\n1\n")  # truncated
    (raw / "S003C001P003R001A001.skeleton").write_text(_good_text().replace("1 0 0 0 2", "1 x 0 0 2", 1))
    (raw / "S003C001P004R001A001.skeleton").write_text(_good_text().replace("\n25\n", "\n24\n", 1))
    lines = _good_text().splitlines(keepends=True)
    lines[8] = "nan " + lines[8].split(" ", 1)[1]
    (raw / "S003C001P005R001A001.skeleton").write_text("".join(lines))
    missing = NTU60_MISSING_SKELETONS[0]
    _single_body_file(raw, missing, 99)
    _single_body_file(raw, "S018C001P001R001A061", 98)  # NTU-120 only: ignored for ntu60
    (raw / "notes.skeleton").write_text("x")

    report = prepare_ntu([raw], tmp_path / "out", "ntu60", workers=1, progress=False)
    reasons = {f.split("/")[-1].split(".")[0]: r for f, r, _ in report.skipped}
    assert reasons == {
        "S003C001P001R001A001": "empty", "S003C001P002R001A001": "truncated",
        "S003C001P003R001A001": "malformed", "S003C001P004R001A001": "joint-count",
        "S003C001P005R001A001": "non-finite", missing: "missing-list", "notes": "bad-name",
    }  # fmt: skip
    assert report.num_ok == 6 and report.split_sizes == {"NTU60_XSub": (5, 1), "NTU60_XView": (3, 3)}
    assert report.second_actor == "zeros"

    xsub = load_split(tmp_path / "out" / "NTU60_XSub.npz", "train")
    assert xsub.x.shape == (5, 300, 2, 25, 3)
    assert xsub.meta["subject"].tolist() == [1, 1, 2, 2, 4]
    assert xsub.y.tolist() == [0, 1, 49, 2, 4]  # subject 1, then 2 (in name order), then 4
    assert not np.delete(xsub.x, 2, axis=0)[:, :, 1].any()  # NTU-60: no second actor -> zeros
    assert xsub.x[2, :25, 1].all(axis=-1).any()  # the two-body sample has actor 2
    assert not xsub.x[0, 20:].any()  # zero padding at the end
    np.testing.assert_allclose(xsub.x[:, 0, 0, 1], 0, atol=1e-7)  # centred on actor-1 spine mid
    with np.load(tmp_path / "out" / "NTU60_XSub.npz") as npz:
        assert npz["y_train"].dtype == np.float64 and npz["y_train"].shape == (5, 60)
        assert npz["x_train"].dtype == np.float32
        assert "setup_train" in npz.files and "class_names" in npz.files

    rows = list(csv.DictReader(open(tmp_path / "out" / "prepare_report.csv")))
    by_file = {r["file"].split("/")[-1]: r for r in rows}
    assert by_file["S003C001P002R001A001.skeleton"]["status"] == "skipped"
    assert "line" in by_file["S003C001P003R001A001.skeleton"]["detail"]
    assert by_file["S001C001P001R001A001.skeleton"]["frames"] == "20"
    summary = json.loads((tmp_path / "out" / "prepare_summary.json").read_text())
    assert summary["skipped_by_reason"]["missing-list"] == 1 and summary["files_outside_variant"] == 1
    assert len(summary["skipped"]) == 7


def test_ntu60_pads_zeros_ntu120_duplicates_actor_one(tmp_path):
    raw = tmp_path / "raw"
    _six_files(raw)
    prepare_ntu(raw, tmp_path / "a", "ntu60", workers=1, progress=False)
    prepare_ntu(raw, tmp_path / "b", "ntu120", workers=1, progress=False)
    prepare_ntu(raw, tmp_path / "c", "ntu120", workers=1, progress=False, second_actor="zeros")
    zeros = load_split(tmp_path / "a" / "NTU60_XSub.npz", "train").x
    duplicate = load_split(tmp_path / "b" / "NTU120_XSub.npz", "train").x
    switched = load_split(tmp_path / "c" / "NTU120_XSub.npz", "train").x
    single = [0, 1, 3, 4]  # the two-body sample is row 2
    assert not zeros[single, :, 1].any()
    np.testing.assert_array_equal(duplicate[single, :, 1], duplicate[single, :, 0])
    np.testing.assert_array_equal(switched, zeros)
    np.testing.assert_array_equal(duplicate[2], zeros[2])


def test_ntu120_uses_the_built_in_list_and_accepts_a_list_file(tmp_path):
    raw = tmp_path / "raw"
    names = _six_files(raw)
    report = prepare_ntu(raw, tmp_path / "out", "ntu120", workers=1, progress=False)
    assert not report.warnings and "535 names" in report.missing_list
    listed = tmp_path / "missing.txt"
    listed.write_text(f"{names[0]}\n\n{names[2]}\n")
    report = prepare_ntu(raw, tmp_path / "out", "ntu120", workers=1, progress=False, missing_list=listed)
    assert sorted(f.split("/")[-1] for f, r, _ in report.skipped if r == "missing-list") == [
        f"{names[0]}.skeleton", f"{names[2]}.skeleton"]
    assert report.num_ok == 4


def test_resume_reuses_cached_results_and_writes_identical_files(tmp_path, monkeypatch):
    raw = tmp_path / "raw"
    _six_files(raw)
    out = tmp_path / "out"
    first = prepare_ntu(raw, out, workers=1, progress=False)
    assert (first.num_parsed, first.num_cached) == (6, 0)
    before = {k: v for k, v in np.load(out / "NTU60_XView.npz").items()}
    (out / "NTU60_XView.npz").unlink()

    calls = []
    original = ntu.read_skeleton_file
    monkeypatch.setattr(ntu, "read_skeleton_file", lambda path: calls.append(path) or original(path))
    second = prepare_ntu(raw, out, workers=1, progress=False)
    assert calls == [] and (second.num_parsed, second.num_cached) == (0, 6)
    after = dict(np.load(out / "NTU60_XView.npz").items())
    assert sorted(before) == sorted(after)
    for key in before:
        np.testing.assert_array_equal(before[key], after[key])

    prepare_ntu(raw, out, workers=1, progress=False, resume=False)
    assert len(calls) == 6


def test_an_interrupted_run_continues_where_it_stopped(tmp_path, monkeypatch):
    raw = tmp_path / "raw"
    _six_files(raw)
    calls = []
    original = ntu.read_skeleton_file

    def interrupted(path):
        calls.append(path)
        if len(calls) == 5:
            raise KeyboardInterrupt
        return original(path)

    monkeypatch.setattr(ntu, "read_skeleton_file", interrupted)
    with pytest.raises(KeyboardInterrupt):
        prepare_ntu(raw, tmp_path / "out", workers=1, progress=False, shard_size=2)
    assert not (tmp_path / "out" / "NTU60_XSub.npz").exists()
    monkeypatch.setattr(ntu, "read_skeleton_file", lambda path: calls.append(path) or original(path))
    report = prepare_ntu(raw, tmp_path / "out", workers=1, progress=False, shard_size=2)
    assert (report.num_cached, report.num_parsed) == (4, 2) and len(calls) == 7


def test_worker_pool_memory_map_and_official_keys_give_the_same_arrays(tmp_path, monkeypatch):
    raw = tmp_path / "raw"
    _six_files(raw)
    prepare_ntu(raw, tmp_path / "a", workers=1, progress=False)
    monkeypatch.setattr(ntu, "IN_MEMORY_LIMIT", 0)
    prepare_ntu(raw, tmp_path / "b", workers=2, progress=False, official_keys_only=True)
    with np.load(tmp_path / "a" / "NTU60_XSub.npz") as a, np.load(tmp_path / "b" / "NTU60_XSub.npz") as b:
        assert sorted(b.files) == ["x_test", "x_train", "y_test", "y_train"]
        for key in b.files:
            np.testing.assert_array_equal(a[key], b[key])
    assert not list((tmp_path / "b").glob(".assembly-*"))


def test_prepare_errors_are_clear(tmp_path):
    with pytest.raises(ValueError, match="variant"):
        prepare_ntu(tmp_path, tmp_path / "out", "ntu90")
    with pytest.raises(ValueError, match="does not exist"):
        prepare_ntu(tmp_path / "absent", tmp_path / "out")
    with pytest.raises(ValueError, match="second_actor"):
        prepare_ntu(tmp_path, tmp_path / "out", second_actor="copy")
    (tmp_path / "S001C001P001R001A001.skeleton").write_text("")
    with pytest.raises(ValueError, match="no usable"):
        prepare_ntu(tmp_path, tmp_path / "out", workers=1, progress=False)
    assert json.loads((tmp_path / "out" / "prepare_summary.json").read_text())["skipped"][0]["reason"] == "empty"
