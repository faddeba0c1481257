"""Augmentations: batched transforms against their per-sample NumPy references, invariants
(bone lengths, zero frames, mirror symmetry) and the official matrix conventions."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from stars.data.augment import (
    MAMP_AUGMENT,
    MIRROR_ROTATE,
    NO_AUGMENT,
    AugmentConfig,
    apply_augmentations,
    augment_batch,
    augment_sample_reference,
    draw_augmentations,
    draw_main_axis_rotation,
    draw_random_rotation,
    gaussian_blur,
    mirror,
    rotate,
    rotation_matrices,
    time_reversal,
)
from stars.data.layouts import NTU25


def make_batch(batch=6, frames=24, seed=0) -> torch.Tensor:
    """(B, T, 2, 25, 3) with zero-padded tails and an absent second person in even samples."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(batch, frames, 2, 25, 3)).astype(np.float32)
    for b in range(batch):
        x[b, rng.integers(frames // 2, frames + 1) :] = 0
    x[::2, :, 1] = 0
    return torch.from_numpy(x)


def bone_lengths(x: torch.Tensor) -> torch.Tensor:
    child = torch.tensor([c for c, _ in NTU25.bones])
    parent = torch.tensor([p for _, p in NTU25.bones])
    return (x[..., child, :] - x[..., parent, :]).norm(dim=-1)


def generator(seed=0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_rotation_matrix_is_rz_ry_rx_built_by_hand():
    angles = torch.tensor([[0.1, -0.25, 0.3], [0.0, 0.0, math.pi / 2]], dtype=torch.float64)
    matrices = rotation_matrices(angles)
    for (ax, ay, az), matrix in zip(angles.tolist(), matrices):
        rx = torch.tensor([[1, 0, 0], [0, math.cos(ax), math.sin(ax)], [0, -math.sin(ax), math.cos(ax)]], dtype=torch.float64)
        ry = torch.tensor([[math.cos(ay), 0, -math.sin(ay)], [0, 1, 0], [math.sin(ay), 0, math.cos(ay)]], dtype=torch.float64)
        rz = torch.tensor([[math.cos(az), math.sin(az), 0], [-math.sin(az), math.cos(az), 0], [0, 0, 1]], dtype=torch.float64)
        expected = rz @ ry @ rx
        torch.testing.assert_close(matrix, expected, atol=1e-12, rtol=0)
    # p' = R p with Rz(90°): the x unit vector goes to -y (official sign convention).
    x = torch.zeros(2, 1, 1, 1, 3, dtype=torch.float64)
    x[..., 0] = 1
    torch.testing.assert_close(rotate(x, matrices)[1, 0, 0, 0], torch.tensor([0.0, -1.0, 0.0], dtype=torch.float64))


def test_mamp_rotation_preserves_bone_lengths_and_zero_frames():
    x = make_batch(batch=8)
    out = augment_batch(x, MAMP_AUGMENT, NTU25, generator())
    torch.testing.assert_close(bone_lengths(out), bone_lengths(x), atol=1e-5, rtol=0)
    zero = (x == 0).all(-1).all(-1)  # (B, T, M) absent frames
    assert zero.any()
    assert (out[zero] == 0).all()
    assert not torch.allclose(out, x)  # it did rotate


def test_rotation_angles_follow_the_configured_ranges():
    angles = draw_random_rotation(4000, 0.3, generator())
    assert angles.abs().max() <= 0.3 and angles.abs().max() > 0.29
    assert angles.mean().abs() < 0.02
    degrees = torch.rad2deg(draw_main_axis_rotation(3000, generator(1)))
    assert (degrees >= 0).all()
    main = degrees > 1.0
    assert (main.sum(1) <= 1).all()  # never more than one axis beyond 1 degree
    assert degrees.max() <= 30.0 + 1e-4 and degrees.max() > 29.5
    counts = degrees.argmax(1).bincount(minlength=3).float() / 3000
    assert ((counts - 1 / 3).abs() < 0.05).all()  # main axis uniform over x, y, z


def test_mirror_twice_is_identity_and_swaps_left_and_right():
    x = make_batch()
    flags = torch.ones(len(x), dtype=torch.bool)
    once = mirror(x, flags, NTU25)
    torch.testing.assert_close(mirror(once, flags, NTU25), x, atol=0, rtol=0)
    left, right = NTU25.index("left_hand"), NTU25.index("right_hand")
    torch.testing.assert_close(once[..., left, 0], -x[..., right, 0], atol=0, rtol=0)
    torch.testing.assert_close(once[..., left, 1:], x[..., right, 1:], atol=0, rtol=0)
    spine = NTU25.index("spine_mid")
    torch.testing.assert_close(once[..., spine, 2], x[..., spine, 2], atol=0, rtol=0)
    kept = mirror(x, torch.zeros(len(x), dtype=torch.bool), NTU25)
    assert torch.equal(kept, x)


SINGLE_TRANSFORMS = {
    "random_rot": AugmentConfig(random_rot=0.3),
    "mirror": AugmentConfig(mirror=True),
    "main_axis_rotation": AugmentConfig(main_axis_rotation=True),
    "shear": AugmentConfig(shear=0.5),
    "gaussian_noise": AugmentConfig(gaussian_noise=True),
    "gaussian_blur": AugmentConfig(gaussian_blur=True),
    "axis_mask": AugmentConfig(axis_mask=True),
    "time_reversal": AugmentConfig(time_reversal=True),
    "mirror_rotate": MIRROR_ROTATE,
    "everything": AugmentConfig(
        random_rot=0.3, mirror=True, main_axis_rotation=True, shear=0.5, gaussian_noise=True,
        gaussian_blur=True, axis_mask=True, time_reversal=True,
    ),
}


@pytest.mark.parametrize("name", list(SINGLE_TRANSFORMS))
def test_batched_transform_equals_per_sample_reference(name):
    cfg = SINGLE_TRANSFORMS[name]
    x = make_batch(batch=8, frames=20, seed=3)
    draws = draw_augmentations(cfg, tuple(x.shape), generator(5))
    batched = apply_augmentations(x, draws, NTU25)
    for b in range(len(x)):
        reference = augment_sample_reference(x[b].numpy(), draws, b, NTU25)
        np.testing.assert_allclose(batched[b].numpy(), reference, atol=1e-5, rtol=0)
    zero = (x == 0).all(-1).all(-1)
    assert (batched[zero] == 0).all(), "all-zero frames must stay zero"


def test_augment_batch_draws_per_sample_and_is_reproducible():
    x = make_batch(batch=8)
    first = augment_batch(x, MAMP_AUGMENT, NTU25, generator(7))
    again = augment_batch(x, MAMP_AUGMENT, NTU25, generator(7))
    other = augment_batch(x, MAMP_AUGMENT, NTU25, generator(8))
    assert torch.equal(first, again)
    assert not torch.allclose(first, other)
    # identical samples get different rotations (independent across samples)
    twins = x[:1].expand(2, -1, -1, -1, -1).clone()
    out = augment_batch(twins, MAMP_AUGMENT, NTU25, generator(0))
    assert not torch.allclose(out[0], out[1])
    assert torch.equal(x, make_batch(batch=8))  # the input is untouched
    assert augment_batch(x, NO_AUGMENT, NTU25, generator()) is x


def test_coin_flips_have_probability_one_half():
    x = torch.ones(4000, 2, 1, 25, 3)
    draws = draw_augmentations(AugmentConfig(mirror=True, axis_mask=True), tuple(x.shape), generator())
    assert abs(draws.mirror.float().mean() - 0.5) < 0.03
    assert abs(draws.axis_mask[0].float().mean() - 0.5) < 0.03


def test_blur_is_normalised_and_keeps_padding():
    x = torch.zeros(2, 30, 2, 25, 3)
    x[:, :20, 0] = 2.5  # constant signal, 10 padded frames, absent second person
    flags = torch.ones(2, dtype=torch.bool)
    out = gaussian_blur(x, flags, torch.tensor([2.0, 0.5]))
    torch.testing.assert_close(out, x, atol=1e-6, rtol=0)
    ramp = torch.arange(30.0).view(1, 30, 1, 1, 1).expand(1, 30, 1, 25, 3).contiguous() + 1
    sharp = gaussian_blur(ramp, flags[:1], torch.tensor([0.1]))
    torch.testing.assert_close(sharp, ramp, atol=1e-5, rtol=0)
    smooth = gaussian_blur(ramp, flags[:1], torch.tensor([2.0]))
    torch.testing.assert_close(smooth[:, 7:-7], ramp[:, 7:-7], atol=1e-4, rtol=0)  # symmetric kernel


def test_time_reversal_reverses_only_the_valid_frames():
    x = torch.zeros(1, 10, 2, 25, 3)
    x[0, :6] = torch.arange(1.0, 7.0).view(6, 1, 1, 1)
    out = time_reversal(x, torch.tensor([True]))
    assert out[0, :, 0, 0, 0].tolist() == [6, 5, 4, 3, 2, 1, 0, 0, 0, 0]


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="random_rot"):
        AugmentConfig(random_rot=-0.1)
    with pytest.raises(ValueError, match="mirror"):
        AugmentConfig(mirror=1)
    with pytest.raises(ValueError, match="joints"):
        augment_batch(torch.zeros(1, 4, 2, 20, 3), MAMP_AUGMENT, NTU25, generator())
