"""Synthetic dataset: determinism, layout, splits, kinematics, difficulty, .skeleton export."""

from __future__ import annotations

import time
import zipfile

import numpy as np
import pytest

from stars.data.layouts import NTU25
from stars.data.npz import load_split, read_header
from stars.data.synthetic import (
    ACTIONS,
    SyntheticConfig,
    generate,
    generate_all,
    make_config,
    prepare_synthetic,
    split_protocol,
    write_skeleton_files,
)

SMALL = SyntheticConfig(num_subjects=12, seed=0)
CLEAN = SyntheticConfig(num_subjects=6, noise_std=0.0, dropout_prob=0.0, seed=3)
TWO_PERSON = [c for c, a in enumerate(ACTIONS[:20]) if a.two_person]
SIT_DOWN, STAND_UP = 13, 14
WAVE = 0


@pytest.fixture(scope="module")
def small():
    return generate_all(SMALL)


@pytest.fixture(scope="module")
def clean():
    return generate_all(CLEAN)


def valid_frames(x: np.ndarray) -> np.ndarray:
    """x: (N, T, M, V, 3) -> (N, T, M) bool, the person has a non-zero joint in that frame."""
    return np.any(x != 0, axis=(3, 4))


def bone_lengths(x: np.ndarray) -> np.ndarray:
    """x: (..., 25, 3) -> (..., 24) lengths of the NTU bones."""
    child, parent = np.array(NTU25.bones).T
    return np.linalg.norm(x[..., child, :] - x[..., parent, :], axis=-1)


def test_config_defaults_and_validation():
    cfg = SyntheticConfig()
    assert (cfg.num_classes, cfg.num_subjects, cfg.num_views, cfg.min_frames, cfg.max_frames, cfg.max_length) == (
        20, 40, 3, 40, 300, 300,
    )
    assert len(ACTIONS) >= 20 and len({a.name for a in ACTIONS}) == len(ACTIONS)
    for bad in ({"num_classes": len(ACTIONS) + 1}, {"num_subjects": 1}, {"num_views": 2},
                {"min_frames": 50, "max_frames": 40}, {"max_frames": 301}, {"dropout_prob": 1.5}):
        with pytest.raises(ValueError):
            SyntheticConfig(**bad)
    with pytest.raises(ValueError, match="num_subject"):
        make_config(0, num_subject=3)
    with pytest.raises(ValueError, match="noise_std"):
        make_config(0, noise_std="loud")
    parsed = make_config(5, num_views=2, view_angles="0,90", noise_std=0)
    assert parsed.view_angles == (0.0, 90.0) and parsed.seed == 5 and parsed.noise_std == 0.0


def test_same_seed_same_arrays_other_seed_different():
    cfg = SyntheticConfig(num_classes=6, num_subjects=4, seed=11)
    (first, train_first), (again, train_again) = generate_all(cfg), generate_all(cfg)
    np.testing.assert_array_equal(first.x, again.x)
    np.testing.assert_array_equal(first.y, again.y)
    for key in first.meta:
        np.testing.assert_array_equal(first.meta[key], again.meta[key])
    np.testing.assert_array_equal(train_first, train_again)
    other, _ = generate_all(SyntheticConfig(num_classes=6, num_subjects=4, seed=12))
    assert other.x.shape == first.x.shape
    assert np.abs(other.x - first.x).mean() > 0.01


def test_shapes_labels_metadata(small):
    samples, train_subjects = small
    n = SMALL.num_classes * SMALL.num_subjects * SMALL.num_views
    assert samples.x.shape == (n, 300, 2, 25, 3) and samples.x.dtype == np.float32
    assert np.array_equal(np.bincount(samples.y), np.full(20, n // 20))
    assert set(samples.meta["subject"]) == set(range(1, 13))
    assert set(samples.meta["view"]) == {1, 2, 3}
    assert len(train_subjects) == 6 and set(train_subjects) <= set(range(1, 13))
    assert np.isfinite(samples.x).all() and np.abs(samples.x).max() < 5.0


def test_lengths_and_padding(small):
    samples, _ = small
    length = samples.meta["length"]
    assert length.min() >= 40 and length.max() <= 300
    assert length.std() > 15  # lengths genuinely vary
    frames = valid_frames(samples.x)[:, :, 0]
    last = 299 - np.argmax(frames[:, ::-1], axis=1)
    np.testing.assert_array_equal(last + 1, length)  # the last real frame is never a gap
    assert frames[:, 0].all()  # every sequence starts with a real frame
    # NTU centring: actor-1 spine-middle joint of the first frame is the origin.
    np.testing.assert_allclose(samples.x[:, 0, 0, 1], 0.0, atol=1e-6)


def test_second_person_only_in_interactions(small):
    samples, _ = small
    frames = valid_frames(samples.x)
    interaction = np.isin(samples.y, TWO_PERSON)
    assert len(TWO_PERSON) == 4
    assert not frames[~interaction, :, 1].any()
    own = frames[interaction, :, 0].sum(1)
    second = frames[interaction, :, 1].sum(1)
    np.testing.assert_array_equal(second, own)  # the partner is tracked whenever actor 1 is


def test_splits_disjoint_in_subject_and_view(small):
    samples, train_subjects = small
    train, test = split_protocol(samples, "xsub", train_subjects)
    assert len(train) + len(test) == len(samples) and len(train) > 0 and len(test) > 0
    assert not set(train.meta["subject"]) & set(test.meta["subject"])
    assert np.all(np.diff(train.meta["subject"]) >= 0)  # grouped by subject, as NTU
    train, test = split_protocol(samples, "xview", train_subjects)
    assert set(train.meta["view"]) == {2, 3} and set(test.meta["view"]) == {1}
    assert len(test) == len(samples) // 3
    with pytest.raises(ValueError, match="protocol"):
        split_protocol(samples, "xset", train_subjects)


def test_bone_lengths_constant_over_time_and_per_subject(clean):
    samples, _ = clean
    frames = valid_frames(samples.x)
    spread = []
    per_sample = []
    for i in range(len(samples)):
        for m in range(2):
            present = frames[i, :, m]
            if present.any():
                bones = bone_lengths(samples.x[i, present, m])  # (T, 24)
                spread.append(np.ptp(bones, axis=0).max())
                if m == 0:
                    per_sample.append(bones[0])
    assert max(spread) < 1e-4  # a rigid skeleton: no bone stretches over time
    per_sample = np.array(per_sample)
    subject = samples.meta["subject"]
    for s in np.unique(subject):
        same = per_sample[subject == s]
        assert np.ptp(same, axis=0).max() < 1e-4  # same body in every class and view
    means = np.array([per_sample[subject == s][0] for s in np.unique(subject)])
    assert np.ptp(means, axis=0).min() > 0.005  # subjects differ in every bone


def test_views_are_rotations_of_one_performance(clean):
    samples, _ = clean
    meta = samples.meta
    for label in (WAVE, TWO_PERSON[0]):
        rows = [np.flatnonzero((samples.y == label) & (meta["subject"] == 2) & (meta["view"] == v))[0]
                for v in (1, 2, 3)]
        x = samples.x[rows, :, :, :, :].reshape(3, 300, -1, 3)[:, :, :, None, :]
        gaps = np.linalg.norm(x - x.transpose(0, 1, 3, 2, 4), axis=-1)  # (3, T, J, J) within-frame distances
        np.testing.assert_allclose(gaps[1], gaps[0], atol=1e-4)
        np.testing.assert_allclose(gaps[2], gaps[0], atol=1e-4)
        assert np.abs(samples.x[rows[1]] - samples.x[rows[0]]).max() > 0.2  # but seen from elsewhere


def test_handedness_switches_the_waving_arm():
    moves = {}
    for fraction in (0.0, 1.0):
        cfg = SyntheticConfig(num_classes=2, num_subjects=4, num_views=1, view_angles=(0.0,), noise_std=0.0,
                              dropout_prob=0.0, left_handed_fraction=fraction, seed=2)
        samples, _ = generate_all(cfg)
        x = samples.x[samples.y == WAVE]
        left, right = (np.abs(np.diff(x[:, :, 0, j], axis=1)).sum(axis=(1, 2)) for j in (7, 11))
        moves[fraction] = right > 3 * left
    assert moves[0.0].all() and not moves[1.0].any()


def _resampled(x: np.ndarray, frames: int = 16) -> np.ndarray:
    """(N, T, M, V, 3) -> (N, frames, M, V, 3): the real frames linearly resampled."""
    length = valid_frames(x)[:, :, 0].sum(1)
    position = np.linspace(0, 1, frames)[None, :] * (length[:, None] - 1)
    low = np.floor(position).astype(int)
    high = np.minimum(low + 1, length[:, None] - 1)
    weight = (position - low)[..., None, None, None]
    rows = np.arange(len(x))[:, None]
    return x[rows, low] * (1 - weight) + x[rows, high] * weight


def _mean_body_shape(x: np.ndarray) -> np.ndarray:
    """Static feature: per-frame pose relative to the spine middle, averaged over the real frames."""
    present = valid_frames(x)[..., None, None]
    centred = (x - x[:, :, :, 1:2]) * present
    return (centred.sum(1) / np.maximum(present.sum(1), 1)).reshape(len(x), -1)


def _nearest_neighbour_accuracy(train_f, train_y, test_f, test_y) -> float:
    distance = (test_f**2).sum(1)[:, None] - 2 * test_f @ train_f.T + (train_f**2).sum(1)[None]
    return float((train_y[distance.argmin(1)] == test_y).mean())


def test_classes_need_motion_not_a_static_pose(small):
    samples, train_subjects = small
    train, test = split_protocol(samples, "xsub", train_subjects)
    motion = lambda s: _resampled(s.x).reshape(len(s), -1)
    static_acc = _nearest_neighbour_accuracy(_mean_body_shape(train.x), train.y, _mean_body_shape(test.x), test.y)
    motion_acc = _nearest_neighbour_accuracy(motion(train), train.y, motion(test), test.y)
    assert 0.25 < static_acc < motion_acc - 0.08, (static_acc, motion_acc)
    assert motion_acc < 0.85  # far from trivially separable
    # Sit down / stand up are time reversals: same body shapes, opposite motion.
    tr = np.isin(train.y, (SIT_DOWN, STAND_UP))
    te = np.isin(test.y, (SIT_DOWN, STAND_UP))
    pair_static = _nearest_neighbour_accuracy(_mean_body_shape(train.x[tr]), train.y[tr],
                                              _mean_body_shape(test.x[te]), test.y[te])
    pair_motion = _nearest_neighbour_accuracy(motion(train.subset(np.flatnonzero(tr))), train.y[tr],
                                              motion(test.subset(np.flatnonzero(te))), test.y[te])
    assert pair_static < 0.7 and pair_motion > 0.9, (pair_static, pair_motion)


def test_noise_and_tracking_glitches():
    base = dict(num_classes=4, num_subjects=6, seed=4)
    clean, _ = generate_all(SyntheticConfig(**base, noise_std=0.0, dropout_prob=0.0))
    noisy, _ = generate_all(SyntheticConfig(**base, noise_std=0.01, dropout_prob=1.0))
    frames = valid_frames(clean.x)[:, :, 0]
    assert (frames.sum(1) == clean.meta["length"]).all()  # no gaps without glitches
    gaps = valid_frames(noisy.x)[:, :, 0].sum(1) < noisy.meta["length"]
    assert 0.05 < gaps.mean() < 0.3  # a short all-zero gap in some sequences
    # Sensor noise: frame-to-frame jitter of a still joint (the head) is larger with noise.
    jitter = lambda s: np.median(np.abs(np.diff(s.x[:, :40, 0, 3], axis=1)))
    assert jitter(noisy) > 2 * jitter(clean)


def test_prepare_writes_official_layout_deterministically(tmp_path):
    options = dict(num_classes=20, num_subjects=4, max_frames=120)
    first = prepare_synthetic(tmp_path / "a", seed=7, **options)
    second = prepare_synthetic(tmp_path / "b", seed=7, **options)
    assert sorted(p.name for p in first.values()) == ["SYN_XSub.npz", "SYN_XView.npz"]
    for protocol in ("xsub", "xview"):
        with zipfile.ZipFile(first[protocol]) as a, zipfile.ZipFile(second[protocol]) as b:
            assert a.namelist() == b.namelist()
            for member in a.namelist():
                assert a.read(member) == b.read(member), member  # same bytes in every array
        with np.load(first[protocol]) as npz:
            assert npz["x_train"].shape[1:] == (300, 150) and npz["x_train"].dtype == np.float32
            assert npz["y_train"].shape[1] == 20 and set(np.unique(npz["y_train"])) == {0.0, 1.0}
            for key in ("subject", "view", "length", "repetition"):
                assert len(npz[f"{key}_train"]) == len(npz["x_train"])
                assert len(npz[f"{key}_test"]) == len(npz["x_test"])
    header = read_header(first["xsub"])
    assert header["layout"].name == "ntu25" and header["num_persons"] == 2
    assert header["class_names"][:2] == ("wave", "raise one arm")
    train, test = load_split(first["xsub"], "train"), load_split(first["xsub"], "test")
    assert len(train) == len(test) == 20 * 2 * 3
    assert not set(train.meta["subject"]) & set(test.meta["subject"])
    assert train.meta["length"].max() <= 120


def test_generate_returns_protocol_splits():
    train, test = generate(SyntheticConfig(num_classes=3, num_subjects=2, seed=0), "xview")
    assert set(train.meta["view"]) == {2, 3} and set(test.meta["view"]) == {1}
    assert train.split == "train" and test.split == "test"


@pytest.mark.slow
def test_default_config_generates_in_seconds():
    start = time.perf_counter()
    samples, _ = generate_all(SyntheticConfig())
    elapsed = time.perf_counter() - start
    assert samples.x.shape == (2400, 300, 2, 25, 3)
    assert len(np.unique(samples.meta["subject"])) == 40 and samples.num_classes == 20
    assert elapsed < 20.0, elapsed


def test_skeleton_files_feed_the_ntu_pipeline(tmp_path):
    ntu = pytest.importorskip("stars.data.ntu")
    paths = write_skeleton_files(tmp_path, n=18, seed=3, two_body_fraction=1 / 3, noisy_body_fraction=0.5)
    names = [p.stem for p in paths]
    assert len(set(names)) == 18
    ids = [ntu.parse_sample_name(name) for name in names]
    assert sum(i.action in [c + 1 for c in TWO_PERSON] for i in ids) == 6
    removed = set()
    for path, sample in zip(paths, ids):
        raw = ntu.read_skeleton_file(path)
        assert 40 <= raw.num_frames <= 300
        selection = ntu.select_actors(raw)
        removed |= set(selection.removed.values())
        if sample.action in [c + 1 for c in TWO_PERSON]:
            assert selection.joints.shape[1] == 150
            assert np.any(selection.joints[:, 75:] != 0)
        # Camera space (not centred): the actors stand metres in front of the sensor.
        z = selection.joints[:, 2::3][selection.joints[:, 2::3] != 0]
        assert 0.8 < z.min() and z.max() < 6.5
    assert {"length", "spread"} <= removed  # both kinds of noise body occur and are removed
