"""Skeleton augmentations, batched on the device.

Every transform acts on a batch `x: (B, T, M, V, 3)` (coordinates last) and is identical for all
frames and both persons of a sample, independent across samples. Each transform is split into a
*draw* (per-sample parameters from an explicit `torch.Generator`) and an *apply* (pure tensor ops);
next to every apply sits its per-sample NumPy reference `(T, M, V, 3)` used by the tests.

All-zero frames (padding, an absent second person) stay exactly zero: linear maps send 0 to 0,
noise and blur only touch present frames, and time reversal reverses only the present frames.

References: MAMP feeder/tools.py `random_rot` (angles U(-r, r), R = Rz·Ry·Rx) and STARS
feeder/tools.py (shear, '1' mirroring, '2' main-axis rotation, '3' noise, '4' blur, '5' axis mask,
'6' time reversal), applied in that order; spec §2.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np
import torch
import torch.nn.functional as F

from stars.data.layouts import SkeletonLayout

MIRROR_PROBABILITY = 0.5
MAIN_AXIS_MAX_DEGREES = 30.0
OTHER_AXES_MAX_DEGREES = 1.0
NOISE_PROBABILITY = 0.5
NOISE_STD = 0.01
BLUR_PROBABILITY = 0.5
BLUR_KERNEL_SIZE = 15
BLUR_SIGMA_RANGE = (0.1, 2.0)
AXIS_MASK_PROBABILITY = 0.5
TIME_REVERSAL_PROBABILITY = 0.5
# The official shear zeroes NTU joint 21 before shearing and restores it afterwards.
SHEAR_UNCHANGED_JOINT = "spine_shoulder"


@dataclass(frozen=True)
class AugmentConfig:
    """Which augmentations run; the defaults (all off) are the paper's STARS tuning (§2.2)."""

    random_rot: float = 0.0  # MAMP: angles U(-r, r) rad per axis, R = Rz·Ry·Rx, p' = R p; 0 = off
    mirror: bool = False  # STARS '1': p 0.5, negate x, swap left/right joints (layout.mirror)
    main_axis_rotation: bool = False  # STARS '2': main axis U(0, 30°), the other two U(0, 1°)
    shear: float = 0.0  # STARS shear amplitude r: off-diagonals U(-r, r); 0 = off
    gaussian_noise: bool = False  # STARS '3': p 0.5, sigma 0.01
    gaussian_blur: bool = False  # STARS '4': p 0.5, temporal kernel 15, sigma U(0.1, 2)
    axis_mask: bool = False  # STARS '5': p 0.5, zero one random coordinate axis
    time_reversal: bool = False  # STARS '6': p 0.5, play the sequence backwards

    def __post_init__(self) -> None:
        for name in ("random_rot", "shear"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
                raise ValueError(f"AugmentConfig.{name} must be a number >= 0, got {value!r}")
        for f in fields(self):
            if f.name not in ("random_rot", "shear") and not isinstance(getattr(self, f.name), bool):
                raise ValueError(f"AugmentConfig.{f.name} must be True or False, got {getattr(self, f.name)!r}")

    @property
    def is_identity(self) -> bool:
        return all(not getattr(self, f.name) for f in fields(self))


NO_AUGMENT = AugmentConfig()
MAMP_AUGMENT = AugmentConfig(random_rot=0.3)
MIRROR_ROTATE = AugmentConfig(mirror=True, main_axis_rotation=True)  # the paper's "Mirroring & Rotation"


# --------------------------------------------------------------------------------------------
# helpers


def _uniform(shape, low: float, high: float, generator: torch.Generator) -> torch.Tensor:
    return torch.rand(shape, generator=generator, device=generator.device) * (high - low) + low


def _coin(batch: int, probability: float, generator: torch.Generator) -> torch.Tensor:
    return torch.rand(batch, generator=generator, device=generator.device) < probability


def present_frames(x: torch.Tensor) -> torch.Tensor:
    """x: (B, T, M, V, C) -> (B, T, M) bool, True where a person's frame holds a non-zero value."""
    return (x != 0).flatten(3).any(-1)


def _select(flags: torch.Tensor, changed: torch.Tensor, original: torch.Tensor) -> torch.Tensor:
    """Per-sample choice between two (B, ...) tensors; flags: (B,) bool."""
    return torch.where(flags.view(-1, *([1] * (original.dim() - 1))), changed, original)


# --------------------------------------------------------------------------------------------
# rotation (MAMP random_rot and STARS main-axis rotation share the matrices)


def rotation_matrices(angles: torch.Tensor) -> torch.Tensor:
    """angles: (B, 3) radians about x, y, z -> (B, 3, 3) R = Rz·Ry·Rx (official row-wise matrices).

    Rx = [[1,0,0],[0,c,s],[0,-s,c]], Ry = [[c,0,-s],[0,1,0],[s,0,c]], Rz = [[c,s,0],[-s,c,0],[0,0,1]].
    """
    cos, sin = angles.cos(), angles.sin()
    one, zero = torch.ones_like(angles[:, 0]), torch.zeros_like(angles[:, 0])
    cx, cy, cz = cos.unbind(1)
    sx, sy, sz = sin.unbind(1)
    rx = torch.stack([one, zero, zero, zero, cx, sx, zero, -sx, cx], 1).view(-1, 3, 3)
    ry = torch.stack([cy, zero, -sy, zero, one, zero, sy, zero, cy], 1).view(-1, 3, 3)
    rz = torch.stack([cz, sz, zero, -sz, cz, zero, zero, zero, one], 1).view(-1, 3, 3)
    return rz @ ry @ rx


def rotation_matrix_reference(angles: np.ndarray) -> np.ndarray:
    """angles: (3,) radians -> (3, 3) Rz·Ry·Rx, one sample."""
    (cx, cy, cz), (sx, sy, sz) = np.cos(angles), np.sin(angles)
    rx = np.array([[1, 0, 0], [0, cx, sx], [0, -sx, cx]])
    ry = np.array([[cy, 0, -sy], [0, 1, 0], [sy, 0, cy]])
    rz = np.array([[cz, sz, 0], [-sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx


def draw_random_rotation(batch: int, max_angle: float, generator: torch.Generator) -> torch.Tensor:
    """MAMP: (B, 3) angles U(-max_angle, max_angle) radians about x, y, z."""
    return _uniform((batch, 3), -max_angle, max_angle, generator)


def draw_main_axis_rotation(batch: int, generator: torch.Generator) -> torch.Tensor:
    """STARS '2': (B, 3) radians; a main axis uniform in {x, y, z} gets U(0, 30°), the others U(0, 1°).

    Rotating sequentially about x, then y, then z is the single matrix Rz·Ry·Rx.
    """
    main_axis = torch.randint(0, 3, (batch,), generator=generator, device=generator.device)
    small = _uniform((batch, 3), 0.0, OTHER_AXES_MAX_DEGREES, generator)
    large = _uniform((batch, 3), 0.0, MAIN_AXIS_MAX_DEGREES, generator)
    is_main = F.one_hot(main_axis, 3).bool()
    return torch.deg2rad(torch.where(is_main, large, small))


def rotate(x: torch.Tensor, matrices: torch.Tensor) -> torch.Tensor:
    """x: (B, T, M, V, 3), matrices: (B, 3, 3) -> p' = R p for every joint of the sample."""
    columns = x.reshape(x.shape[0], -1, 3).transpose(1, 2)  # (B, 3, T*M*V)
    # R @ columns is fastest; the result is a coordinate-major view with x's shape
    return torch.bmm(matrices.to(x.dtype), columns).transpose(1, 2).view(x.shape)


def rotate_reference(sample: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """sample: (T, M, V, 3) row vectors -> sample @ R^T."""
    return sample @ matrix.T


# --------------------------------------------------------------------------------------------
# shear


def draw_shear(batch: int, amplitude: float, generator: torch.Generator) -> torch.Tensor:
    """(B, 3, 3) matrices: 1 on the diagonal, off-diagonal entries U(-amplitude, amplitude)."""
    offsets = _uniform((batch, 3, 3), -amplitude, amplitude, generator)
    eye = torch.eye(3, device=offsets.device, dtype=torch.bool)
    return torch.where(eye, torch.ones_like(offsets), offsets)


def _shear_unchanged_joint(layout: SkeletonLayout) -> int | None:
    return layout.index(SHEAR_UNCHANGED_JOINT) if SHEAR_UNCHANGED_JOINT in layout.joints else None


def shear(x: torch.Tensor, matrices: torch.Tensor, layout: SkeletonLayout) -> torch.Tensor:
    """x: (B, T, M, V, 3) -> p' = S p, except the spine-shoulder joint (official quirk), if any."""
    out = rotate(x, matrices)
    keep = _shear_unchanged_joint(layout)
    if keep is not None:
        out[:, :, :, keep] = x[:, :, :, keep]
    return out


def shear_reference(sample: np.ndarray, matrix: np.ndarray, layout: SkeletonLayout) -> np.ndarray:
    out = sample @ matrix.T
    keep = _shear_unchanged_joint(layout)
    if keep is not None:
        out[:, :, keep] = sample[:, :, keep]
    return out


# --------------------------------------------------------------------------------------------
# mirroring


def draw_mirror(batch: int, generator: torch.Generator) -> torch.Tensor:
    """(B,) bool, True with probability 0.5."""
    return _coin(batch, MIRROR_PROBABILITY, generator)


def mirror(x: torch.Tensor, flags: torch.Tensor, layout: SkeletonLayout) -> torch.Tensor:
    """x: (B, T, M, V, 3); flagged samples: x -> -x and new joint j = old joint layout.mirror[j]."""
    permutation = torch.tensor(layout.mirror, device=x.device)
    sign = torch.tensor([-1.0, 1.0, 1.0], device=x.device, dtype=x.dtype)
    return _select(flags, x[:, :, :, permutation] * sign, x)


def mirror_reference(sample: np.ndarray, flag: bool, layout: SkeletonLayout) -> np.ndarray:
    if not flag:
        return sample.copy()
    out = sample[:, :, list(layout.mirror)].copy()
    out[..., 0] = -out[..., 0]
    return out


# --------------------------------------------------------------------------------------------
# gaussian noise


def draw_gaussian_noise(shape: tuple[int, ...], generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """shape (B, T, M, V, 3) -> flags (B,) bool (p 0.5) and noise N(0, 0.01^2) of that shape."""
    flags = _coin(shape[0], NOISE_PROBABILITY, generator)
    noise = torch.randn(shape, generator=generator, device=generator.device) * NOISE_STD
    return flags, noise


def add_gaussian_noise(x: torch.Tensor, flags: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """Noise on the present frames of flagged samples; all-zero frames stay zero."""
    present = present_frames(x)[..., None, None]
    return _select(flags, x + noise.to(x.dtype) * present, x)


def add_gaussian_noise_reference(sample: np.ndarray, flag: bool, noise: np.ndarray) -> np.ndarray:
    present = np.any(sample != 0, axis=(2, 3))[..., None, None]
    return sample + noise * present if flag else sample.copy()


# --------------------------------------------------------------------------------------------
# gaussian temporal blur


def draw_gaussian_blur(batch: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """flags (B,) bool (p 0.5) and sigmas (B,) U(0.1, 2) in frames."""
    flags = _coin(batch, BLUR_PROBABILITY, generator)
    sigmas = _uniform((batch,), *BLUR_SIGMA_RANGE, generator)
    return flags, sigmas


def blur_kernels(sigmas: torch.Tensor) -> torch.Tensor:
    """sigmas: (B,) -> (B, 15) unnormalised Gaussian weights exp(-k^2 / 2 sigma^2), k = -7..7."""
    radius = BLUR_KERNEL_SIZE // 2
    offsets = torch.arange(-radius, radius + 1, device=sigmas.device, dtype=sigmas.dtype)
    return torch.exp(-(offsets[None] ** 2) / (2 * sigmas[:, None] ** 2))


def gaussian_blur(x: torch.Tensor, flags: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
    """Temporal Gaussian smoothing of flagged samples, x: (B, T, M, V, C).

    A normalised convolution over the present frames of each person: out[t] =
    sum_k w_k p[t+k] x[t+k] / sum_k w_k p[t+k] (p = frame present), so sequence ends and padding
    neither darken the signal nor leak into all-zero frames. (The official kernel is not
    normalised, which rescales the coordinates by about sigma·sqrt(2 pi); we do not keep that.)
    """
    batch, frames, persons, joints, channels = x.shape
    if batch == 0:
        return x
    present = present_frames(x).to(x.dtype)  # (B, T, M)
    kernels = blur_kernels(sigmas.to(x.device, x.dtype))  # (B, K)
    padding = BLUR_KERNEL_SIZE // 2
    signal = (x * present[..., None, None]).permute(0, 2, 3, 4, 1).reshape(1, -1, frames)
    weights = kernels.repeat_interleave(persons * joints * channels, 0)[:, None]
    numerator = F.conv1d(signal, weights, padding=padding, groups=signal.shape[1])
    numerator = numerator.view(batch, persons, joints, channels, frames).permute(0, 4, 1, 2, 3)
    mask_signal = present.permute(0, 2, 1).reshape(1, -1, frames)
    mask_weights = kernels.repeat_interleave(persons, 0)[:, None]
    denominator = F.conv1d(mask_signal, mask_weights, padding=padding, groups=mask_signal.shape[1])
    denominator = denominator.view(batch, persons, frames).permute(0, 2, 1)[..., None, None]
    blurred = torch.where(denominator > 0, numerator / denominator.clamp_min(1e-12), torch.zeros_like(x))
    return _select(flags, blurred * present[..., None, None], x)


def gaussian_blur_reference(sample: np.ndarray, flag: bool, sigma: float) -> np.ndarray:
    if not flag:
        return sample.copy()
    frames = sample.shape[0]
    radius = BLUR_KERNEL_SIZE // 2
    present = np.any(sample != 0, axis=(2, 3))  # (T, M)
    out = np.zeros_like(sample)
    for t in range(frames):
        for m in range(sample.shape[1]):
            if not present[t, m]:
                continue
            total, weight_sum = 0.0, 0.0
            for k in range(-radius, radius + 1):
                s = t + k
                if 0 <= s < frames and present[s, m]:
                    w = math.exp(-(k**2) / (2 * sigma**2))
                    total = total + w * sample[s, m]
                    weight_sum += w
            out[t, m] = total / weight_sum
    return out


# --------------------------------------------------------------------------------------------
# axis mask


def draw_axis_mask(batch: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """flags (B,) bool (p 0.5) and the coordinate axis (B,) in {0, 1, 2} to zero."""
    flags = _coin(batch, AXIS_MASK_PROBABILITY, generator)
    axes = torch.randint(0, 3, (batch,), generator=generator, device=generator.device)
    return flags, axes


def axis_mask(x: torch.Tensor, flags: torch.Tensor, axes: torch.Tensor) -> torch.Tensor:
    """Zero coordinate `axes[b]` of every joint of flagged samples."""
    keep = 1 - F.one_hot(axes.to(x.device), x.shape[-1]).to(x.dtype) * flags.to(x.device, x.dtype)[:, None]
    return x * keep[:, None, None, None, :]


def axis_mask_reference(sample: np.ndarray, flag: bool, axis: int) -> np.ndarray:
    out = sample.copy()
    if flag:
        out[..., axis] = 0
    return out


# --------------------------------------------------------------------------------------------
# time reversal


def draw_time_reversal(batch: int, generator: torch.Generator) -> torch.Tensor:
    """(B,) bool, True with probability 0.5."""
    return _coin(batch, TIME_REVERSAL_PROBABILITY, generator)


def time_reversal(x: torch.Tensor, flags: torch.Tensor) -> torch.Tensor:
    """Reverse the first L frames of flagged samples (L = number of frames with a non-zero value)."""
    frames = x.shape[1]
    lengths = present_frames(x).any(-1).sum(1)  # (B,)
    t = torch.arange(frames, device=x.device)[None]
    source = torch.where(t < lengths[:, None], lengths[:, None] - 1 - t, t)
    source = torch.where(flags.to(x.device)[:, None], source, t)
    return x[torch.arange(x.shape[0], device=x.device)[:, None], source]


def time_reversal_reference(sample: np.ndarray, flag: bool) -> np.ndarray:
    out = sample.copy()
    if flag:
        length = int(np.any(sample != 0, axis=(1, 2, 3)).sum())
        out[:length] = sample[:length][::-1]
    return out


# --------------------------------------------------------------------------------------------
# the whole pipeline


@dataclass
class AugmentDraws:
    """Every random parameter of one `augment_batch` call; None where the transform is off."""

    shear: torch.Tensor | None = None  # (B, 3, 3)
    mirror: torch.Tensor | None = None  # (B,) bool
    main_axis_angles: torch.Tensor | None = None  # (B, 3) radians
    random_rot_angles: torch.Tensor | None = None  # (B, 3) radians
    noise: tuple[torch.Tensor, torch.Tensor] | None = None  # flags (B,), noise (B, T, M, V, 3)
    blur: tuple[torch.Tensor, torch.Tensor] | None = None  # flags (B,), sigmas (B,)
    axis_mask: tuple[torch.Tensor, torch.Tensor] | None = None  # flags (B,), axes (B,)
    time_reversal: torch.Tensor | None = None  # (B,) bool


def draw_augmentations(cfg: AugmentConfig, shape: tuple[int, ...], generator: torch.Generator) -> AugmentDraws:
    """All per-sample parameters for a batch of `shape` (B, T, M, V, 3), drawn in a fixed order."""
    batch = shape[0]
    draws = AugmentDraws()
    if cfg.shear > 0:
        draws.shear = draw_shear(batch, cfg.shear, generator)
    if cfg.mirror:
        draws.mirror = draw_mirror(batch, generator)
    if cfg.main_axis_rotation:
        draws.main_axis_angles = draw_main_axis_rotation(batch, generator)
    if cfg.random_rot > 0:
        draws.random_rot_angles = draw_random_rotation(batch, cfg.random_rot, generator)
    if cfg.gaussian_noise:
        draws.noise = draw_gaussian_noise(tuple(shape), generator)
    if cfg.gaussian_blur:
        draws.blur = draw_gaussian_blur(batch, generator)
    if cfg.axis_mask:
        draws.axis_mask = draw_axis_mask(batch, generator)
    if cfg.time_reversal:
        draws.time_reversal = draw_time_reversal(batch, generator)
    return draws


def apply_augmentations(x: torch.Tensor, draws: AugmentDraws, layout: SkeletonLayout) -> torch.Tensor:
    """x: (B, T, M, V, 3) -> same shape; order: shear, mirror, main-axis rotation, MAMP rotation,
    noise, blur, axis mask, time reversal."""
    device = x.device
    if draws.shear is not None:
        x = shear(x, draws.shear.to(device), layout)
    if draws.mirror is not None:
        x = mirror(x, draws.mirror.to(device), layout)
    if draws.main_axis_angles is not None:
        x = rotate(x, rotation_matrices(draws.main_axis_angles.to(device)))
    if draws.random_rot_angles is not None:
        x = rotate(x, rotation_matrices(draws.random_rot_angles.to(device)))
    if draws.noise is not None:
        x = add_gaussian_noise(x, draws.noise[0].to(device), draws.noise[1].to(device))
    if draws.blur is not None:
        x = gaussian_blur(x, draws.blur[0].to(device), draws.blur[1].to(device))
    if draws.axis_mask is not None:
        x = axis_mask(x, draws.axis_mask[0].to(device), draws.axis_mask[1].to(device))
    if draws.time_reversal is not None:
        x = time_reversal(x, draws.time_reversal.to(device))
    return x


def augment_batch(
    x: torch.Tensor, cfg: AugmentConfig, layout: SkeletonLayout, generator: torch.Generator
) -> torch.Tensor:
    """x: (B, T, M, V, 3) -> augmented batch of the same shape (x itself is never modified).

    Parameters are drawn on `generator.device` and moved to x's device, so a CPU generator gives
    the same draws whatever device holds the batch.
    """
    if x.dim() != 5 or x.shape[-1] != 3:
        raise ValueError(f"augment_batch: x must be (B, T, M, V, 3), got shape {tuple(x.shape)}")
    layout.check_array(x, "augment_batch x")
    if cfg.is_identity:
        return x
    return apply_augmentations(x, draw_augmentations(cfg, tuple(x.shape), generator), layout)


def augment_sample_reference(
    sample: np.ndarray, draws: AugmentDraws, index: int, layout: SkeletonLayout
) -> np.ndarray:
    """The per-sample NumPy chain of `apply_augmentations` for sample `index` of the batch."""
    out = np.asarray(sample, dtype=np.float64)

    def item(t):
        return t[index].detach().cpu().double().numpy()

    if draws.shear is not None:
        out = shear_reference(out, item(draws.shear), layout)
    if draws.mirror is not None:
        out = mirror_reference(out, bool(draws.mirror[index]), layout)
    if draws.main_axis_angles is not None:
        out = rotate_reference(out, rotation_matrix_reference(item(draws.main_axis_angles)))
    if draws.random_rot_angles is not None:
        out = rotate_reference(out, rotation_matrix_reference(item(draws.random_rot_angles)))
    if draws.noise is not None:
        out = add_gaussian_noise_reference(out, bool(draws.noise[0][index]), item(draws.noise[1]))
    if draws.blur is not None:
        out = gaussian_blur_reference(out, bool(draws.blur[0][index]), float(draws.blur[1][index]))
    if draws.axis_mask is not None:
        out = axis_mask_reference(out, bool(draws.axis_mask[0][index]), int(draws.axis_mask[1][index]))
    if draws.time_reversal is not None:
        out = time_reversal_reference(out, bool(draws.time_reversal[index]))
    return out
