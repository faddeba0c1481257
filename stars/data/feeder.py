"""From a loaded split to batches on the device: valid lengths, temporal crop + resize, the
per-sample reference feeder (official semantics) and the fast batched loader.

Two paths compute the same numbers (tests/test_feeder.py pins it):

* `ReferenceFeeder` / `valid_crop_resize`: one NumPy sample `(C, T, V, M)` at a time, exactly as the
  MAMP/STARS feeders do it (spec §1.6).
* `DeviceSplit` + `BatchLoader`: the whole split as one tensor `(N, T, M, V, C)` on the device; a batch
  is cropped and resized with two gathers and a lerp, augmented with `stars.data.augment`, and
  returned as `(B, C, T', V, M)`. Every random draw comes from a `torch.Generator` seeded by
  (seed, epoch[, rank]), so an epoch is reproducible from its number alone.

References: MAMP feeder/feeder_ntu.py + feeder/tools.py `valid_crop_resize`; STARS
feeder/ntu_feeder.py (Feeder_dual: two views from one crop; Feeder_multi: DINO local views).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from stars.data.augment import AugmentConfig, augment_batch, rotation_matrix_reference
from stars.data.layouts import SkeletonLayout
from stars.data.npz import SkeletonSplit
from stars.dist import pick_device

_CHUNK = 512
_ORDER_STREAM, _CROP_STREAM, _LOCAL_CROP_STREAM, _AUGMENT_STREAM = range(4)


def valid_lengths(x: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
    """x: (N, T, ...) -> (N,) int64 number of frames holding at least one non-zero value.

    Official semantics (MAMP `valid_frame_num`): frames are counted, not located, i.e. the valid
    frames are assumed to be the first ones. (The official code tests the frame *sum* for zero; we
    test every value, which differs only when a frame's values cancel exactly.) `ReferenceFeeder`
    keeps this count; the fast path (`DeviceSplit`) uses `valid_spans`, which equals it on files
    without untracked zero frames at the start or inside a sequence.
    NumPy in -> NumPy out (processed in chunks), tensor in -> tensor out on the same device.
    """
    if x.ndim < 3:
        raise ValueError(f"valid_lengths: x must be (N, T, ...) with per-frame values, got shape {tuple(x.shape)}")
    if isinstance(x, torch.Tensor):
        return (x != 0).flatten(2).any(-1).sum(1)
    x = np.asarray(x)
    out = np.empty(len(x), dtype=np.int64)
    for start in range(0, len(x), _CHUNK):
        chunk = x[start : start + _CHUNK]
        out[start : start + len(chunk)] = (chunk != 0).reshape(len(chunk), chunk.shape[1], -1).any(-1).sum(1)
    return out


def valid_spans(x: np.ndarray | torch.Tensor) -> tuple:
    """x: (N, T, ...) -> (first, length), both (N,) int64: the first frame holding a non-zero value and
    the number of frames from it to the last such frame (0 and 0 for an all-zero sample).

    Unlike the official count (`valid_lengths`), untracked all-zero frames at the start are skipped
    and those inside a sequence do not shorten it, so the crop window covers the recorded motion.
    On files without such frames (the official NTU files: frames without bodies are dropped) both
    give the same window. NumPy in -> NumPy out, tensor in -> tensors out on the same device.
    """
    if x.ndim < 3:
        raise ValueError(f"valid_spans: x must be (N, T, ...) with per-frame values, got shape {tuple(x.shape)}")
    if isinstance(x, torch.Tensor):
        nonzero = (x != 0).flatten(2).any(-1)
        return _spans_of(nonzero, torch.arange(x.shape[1], device=x.device))
    x = np.asarray(x)
    first, length = np.zeros(len(x), dtype=np.int64), np.zeros(len(x), dtype=np.int64)
    frames = np.arange(x.shape[1])
    for start in range(0, len(x), _CHUNK):
        chunk = x[start : start + _CHUNK]
        nonzero = (chunk != 0).reshape(len(chunk), chunk.shape[1], -1).any(-1)
        f, n = _spans_of(nonzero, frames)
        first[start : start + len(chunk)], length[start : start + len(chunk)] = f, n
    return first, length


def _spans_of(nonzero, frames):
    """nonzero: (N, T) bool -> (first, length) of the span from the first to the last True."""
    any_frame = nonzero.any(1)
    if isinstance(nonzero, torch.Tensor):
        first = torch.where(nonzero, frames, nonzero.shape[1]).min(1).values
        last = torch.where(nonzero, frames, -1).max(1).values
        return torch.where(any_frame, first, 0), torch.where(any_frame, last - first + 1, 0)
    first = np.where(nonzero, frames, nonzero.shape[1]).min(1)
    last = np.where(nonzero, frames, -1).max(1)
    return np.where(any_frame, first, 0), np.where(any_frame, last - first + 1, 0)


def _check_interval(interval: tuple[float, ...], name: str, allow_single: bool) -> None:
    sizes = (1, 2) if allow_single else (2,)
    if len(interval) not in sizes or not all(0 < v <= 1 for v in interval) or interval != tuple(sorted(interval)):
        want = "one ratio p or two ratios a <= b" if allow_single else "two ratios a <= b"
        raise ValueError(f"{name} must be {want} in (0, 1], got {interval!r}")


@dataclass(frozen=True)
class CropConfig:
    """Temporal crop + resize; defaults are MAMP's (and the STARS evaluation's).

    train_interval: two values (a, b): crop ratio p ~ U(a, b), random start; one value (p,): centre
        crop keeping a fraction p (STARS tuning uses (1.0,), the full valid sequence).
    min_length: random crops are at least this many frames (or the whole sequence when shorter).
    eval_ratio: centre-crop ratio at evaluation.
    num_frames: every crop is linearly resized to this many frames.
    """

    train_interval: tuple[float, ...] = (0.5, 1.0)
    min_length: int = 64
    eval_ratio: float = 0.95
    num_frames: int = 120

    def __post_init__(self) -> None:
        interval = tuple(float(v) for v in self.train_interval)
        object.__setattr__(self, "train_interval", interval)
        _check_interval(interval, "CropConfig.train_interval", allow_single=True)
        if int(self.min_length) != self.min_length or self.min_length < 1:
            raise ValueError(f"CropConfig.min_length must be an integer >= 1, got {self.min_length!r}")
        if not 0 < self.eval_ratio <= 1:
            raise ValueError(f"CropConfig.eval_ratio must lie in (0, 1], got {self.eval_ratio!r}")
        if int(self.num_frames) != self.num_frames or self.num_frames < 1:
            raise ValueError(f"CropConfig.num_frames must be an integer >= 1, got {self.num_frames!r}")


MAMP_CROP = CropConfig()
FULL_LENGTH_CROP = CropConfig(train_interval=(1.0,))  # STARS tuning: p_interval [1.0]


# --------------------------------------------------------------------------------------------
# crop draws (shared by both paths)


def centre_crops(valid: torch.Tensor, ratio: float) -> tuple[torch.Tensor, torch.Tensor]:
    """valid: (B,) -> (start, length), start = int((1 - ratio) * valid / 2), length = valid - 2 start."""
    bias = ((1.0 - ratio) * valid.to(torch.float64) / 2).floor().long()
    return bias, valid.long() - 2 * bias


def random_crops(
    valid: torch.Tensor, interval: tuple[float, float], min_length: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """valid: (B,) -> (start, length): p ~ U(a, b), length = min(max(floor(valid p), min_length), valid),
    start uniform in [0, valid - length]."""
    low, high = interval
    valid = valid.long()
    ratio = torch.rand(valid.shape, generator=generator, dtype=torch.float64) * (high - low) + low
    length = torch.minimum((valid.double() * ratio).floor().long().clamp_min(min_length), valid)
    slack = valid - length + 1
    start = (torch.rand(valid.shape, generator=generator, dtype=torch.float64) * slack).floor().long()
    return torch.minimum(start, slack - 1), length


def draw_crops(
    valid: torch.Tensor, interval: tuple[float, ...], min_length: int, generator: torch.Generator | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(start, length) per sample: centre crop for a one-value interval, random crop for two values."""
    if len(interval) == 1:
        return centre_crops(valid, interval[0])
    if generator is None:
        raise ValueError("draw_crops: a random crop interval needs a torch.Generator")
    return random_crops(valid, (interval[0], interval[1]), min_length, generator)


# --------------------------------------------------------------------------------------------
# the per-sample reference


def valid_crop_resize(
    sample: np.ndarray,
    valid: int,
    p_interval: tuple[float, ...],
    window: int = 120,
    rng: np.random.Generator | None = None,
    *,
    crop: tuple[int, int] | None = None,
    min_length: int = 64,
) -> np.ndarray:
    """sample: (C, T, V, M) -> (C, window, V, M) float32, the official crop + resize of one sample.

    One-value `p_interval`: centre crop with bias int((1 - p) valid / 2). Two values: p ~ U(a, b)
    from `rng`, length = min(max(floor(valid p), min_length), valid), start uniform. An explicit
    `crop=(start, length)` replaces the draw. The crop, viewed as a (C·V·M, length) image, is resized
    bilinearly (align_corners=False) in float64 to (C·V·M, window), as the official code does.
    """
    if sample.ndim != 4:
        raise ValueError(f"valid_crop_resize: sample must be (C, T, V, M), got shape {sample.shape}")
    if not 1 <= valid <= sample.shape[1]:
        raise ValueError(f"valid_crop_resize: valid = {valid} frames, sample has {sample.shape[1]}")
    if crop is not None:
        start, length = int(crop[0]), int(crop[1])
    elif len(p_interval) == 1:
        bias = int((1 - p_interval[0]) * valid / 2)
        start, length = bias, valid - 2 * bias
    else:
        if rng is None:
            raise ValueError("valid_crop_resize: a random crop interval needs `rng`")
        p = rng.random() * (p_interval[1] - p_interval[0]) + p_interval[0]
        length = min(max(int(np.floor(valid * p)), min_length), valid)
        start = int(rng.integers(0, valid - length + 1))
    if start < 0 or length < 1 or start + length > valid:
        raise ValueError(f"valid_crop_resize: crop start {start}, length {length} outside {valid} valid frames")
    channels, _, joints, persons = sample.shape
    data = torch.from_numpy(np.ascontiguousarray(sample[:, start : start + length], dtype=np.float64))
    image = data.permute(0, 2, 3, 1).reshape(1, 1, channels * joints * persons, length)
    resized = F.interpolate(image, size=(channels * joints * persons, window), mode="bilinear", align_corners=False)
    return resized.view(channels, joints, persons, window).permute(0, 3, 1, 2).numpy().astype(np.float32)


class ReferenceFeeder(Dataset):
    """One sample at a time with the official semantics (MAMP feeder_ntu.py); slow, for tests.

    Item: ((C, num_frames, V, M) float32, label, index). Training crops (and MAMP random rotation,
    angles U(-r, r), R = Rz·Ry·Rx) are drawn from NumPy generators seeded by (seed, epoch, index);
    `crops=(start (N,), length (N,))` imposes explicit crops instead.
    """

    def __init__(
        self,
        split: SkeletonSplit,
        *,
        train: bool,
        crop: CropConfig = MAMP_CROP,
        random_rot: float = 0.0,
        seed: int = 0,
        crops: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> None:
        self.split = split
        self.train = train
        self.crop = crop
        self.random_rot = float(random_rot)
        self.seed = int(seed)
        self.epoch = 0
        self.crops = crops
        self.valid = valid_lengths(split.x)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, index: int):
        if not 0 <= index < len(self):
            raise IndexError(f"ReferenceFeeder: index {index} outside [0, {len(self)})")
        sample = self.split.x[index].transpose(3, 0, 2, 1)  # (T, M, V, C) -> (C, T, V, M)
        rng = np.random.default_rng([self.seed, self.epoch, index])
        interval = self.crop.train_interval if self.train else (self.crop.eval_ratio,)
        crop = None if self.crops is None else (int(self.crops[0][index]), int(self.crops[1][index]))
        out = valid_crop_resize(
            sample, int(self.valid[index]), interval, self.crop.num_frames, rng,
            crop=crop, min_length=self.crop.min_length,
        )
        if self.random_rot > 0:
            matrix = rotation_matrix_reference(rng.uniform(-self.random_rot, self.random_rot, 3))
            out = np.einsum("ij,jtvm->itvm", matrix, out).astype(np.float32)
        return out, int(self.split.y[index]), index


# --------------------------------------------------------------------------------------------
# the fast path


# Headroom kept free on a CUDA device for the model, optimiser state and activations when deciding
# whether a split is held on the device: a quarter of its memory, and at least 4 GiB.
DEVICE_HEADROOM_FRACTION = 0.25
DEVICE_HEADROOM_MIN_BYTES = 4 << 30


def device_data_budget(device: torch.device) -> int:
    """Bytes a split may take on `device` now: free memory minus the headroom (unbounded on a CPU).

    The free memory is read when the split is placed, so a split placed earlier (the training split
    before the test split) and a model already built count against it.
    """
    if device.type != "cuda":
        return 1 << 62
    free, total = torch.cuda.mem_get_info(device)
    headroom = max(int(total * DEVICE_HEADROOM_FRACTION), DEVICE_HEADROOM_MIN_BYTES)
    return max(free - headroom, 0)


@dataclass
class DeviceSplit:
    """A split held as tensors, producing its batches on `target`.

    x: (N, T, M, V, C), zero-padded frames at the end; y: (N,) int64; valid: (N,) int64 frames from the
    first to the last recorded frame; first: (N,) int64 index of the first recorded frame (None: all 0).
    Crops are drawn in [first, first + valid) (see `valid_spans`).
    x is stored on `target` when it fits the device's memory budget (`from_split`), otherwise in (pinned)
    host memory: batches are then gathered and resized on the host and copied to `target` without
    blocking, and are the same batches either way. y, valid and first always live on `target`.
    """

    x: torch.Tensor
    y: torch.Tensor
    valid: torch.Tensor
    layout: SkeletonLayout
    num_classes: int
    name: str = ""
    target: torch.device | None = None  # where batches go; None = where x is stored
    first: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if self.first is None:
            self.first = torch.zeros_like(self.valid)

    @classmethod
    def from_split(
        cls, split: SkeletonSplit, device: str | torch.device | None = None, dtype: torch.dtype = torch.float32,
        *, budget_bytes: int | None = None,
    ) -> DeviceSplit:
        """Place a loaded split for `device` (default: the GPU when present, else the CPU).

        x goes to the device when its size fits `budget_bytes` (default: `device_data_budget(device)`),
        otherwise it stays in host memory, pinned when CUDA is present.
        """
        where = f"{split.path or split.name or 'split'} ({split.split})"
        if split.x.ndim != 5:
            raise ValueError(f"{where}: x must be (N, T, M, V, C), got shape {split.x.shape}")
        split.layout.check_array(split.x, where)
        first, valid = valid_spans(split.x)
        empty = np.flatnonzero(valid == 0)
        if len(empty):
            raise ValueError(f"{where}: {len(empty)} samples have no non-zero frame, e.g. {empty[:5].tolist()} "
                             "(zero-length sequences); remove them from the dataset")
        single = np.flatnonzero(valid == 1)
        if len(single):
            warnings.warn(f"{where}: {len(single)} samples have a single frame, so no motion to learn from, e.g. "
                          f"{single[:5].tolist()}", stacklevel=2)
        device = pick_device() if device is None else torch.device(device)
        if device.type == "cuda" and device.index is None:  # "cuda" -> "cuda:N": comparable with x.device
            device = torch.device("cuda", torch.cuda.current_device())
        budget = device_data_budget(device) if budget_bytes is None else int(budget_bytes)
        size = split.x.size * torch.tensor([], dtype=dtype).element_size()
        array = split.x if split.x.flags.writeable else np.array(split.x)
        host = torch.from_numpy(array).to(dtype=dtype)
        if size <= budget:
            x = host.to(device)
        else:
            x = host.pin_memory() if torch.cuda.is_available() else host
        return cls(
            x=x,
            y=torch.as_tensor(split.y, dtype=torch.long).to(device),
            valid=torch.from_numpy(valid).to(device),
            layout=split.layout,
            num_classes=split.num_classes,
            name=split.name,
            target=device,
            first=torch.from_numpy(first).to(device),
        )

    def __len__(self) -> int:
        return self.x.shape[0]

    @property
    def device(self) -> torch.device:
        """Where batches are produced (and y, valid live)."""
        return self.target if self.target is not None else self.x.device

    @property
    def on_device(self) -> bool:
        """Whether x itself is stored where the batches go."""
        return self.x.device == self.device

    def subset(self, indices: np.ndarray | torch.Tensor) -> DeviceSplit:
        """A copy holding `indices` only; batch "index" values then refer to positions in the subset."""
        idx = torch.as_tensor(indices, dtype=torch.long)
        x = self.x[idx.to(self.x.device)]
        if not self.on_device and torch.cuda.is_available():
            x = x.pin_memory()
        idx = idx.to(self.device)
        return DeviceSplit(x, self.y[idx], self.valid[idx], self.layout, self.num_classes, self.name, self.target,
                           first=self.first[idx])


def crop_resize_batch(
    x: torch.Tensor, indices: torch.Tensor, start: torch.Tensor, length: torch.Tensor, num_frames: int
) -> torch.Tensor:
    """x: (N, T, M, V, C); indices, start, length: (B,) -> (B, num_frames, M, V, C).

    Frames [start, start + length) of each sample, linearly resized with align_corners=False:
    source position s = (i + 0.5) length / num_frames - 0.5 (clamped at 0), output = lerp of the two
    neighbouring frames; exactly torch's bilinear rule, for the whole batch at once.
    """
    device = x.device
    indices, start, length = indices.to(device), start.to(device), length.to(device)
    steps = torch.arange(num_frames, device=device, dtype=torch.float64) + 0.5
    source = ((length.double() / num_frames)[:, None] * steps - 0.5).clamp_min(0)  # (B, W)
    lower = source.long()
    upper = lower + (lower < length[:, None] - 1).long()
    compute = torch.promote_types(x.dtype, torch.float32)
    weight = (source - lower.double()).to(compute)[..., None, None, None]
    rows = indices[:, None]
    first = x[rows, start[:, None] + lower].to(compute)
    second = x[rows, start[:, None] + upper].to(compute)
    return torch.lerp(first, second, weight).to(x.dtype)


def _seeded_generator(*key: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A generator whose seed is a hash of the integer key (seed, stream, epoch[, rank])."""
    words = np.random.SeedSequence([int(k) for k in key]).generate_state(2, dtype=np.uint32)
    generator = torch.Generator(device=device)
    generator.manual_seed((int(words[0]) << 31) ^ int(words[1]))
    return generator


class BatchLoader:
    """Batches of a `DeviceSplit`, cropped, resized and augmented on its device.

    batch_size is per process; the global batch is batch_size * world_size. Every rank draws the
    same global permutation (seeded by (seed, epoch)) and takes its contiguous shard of each global
    batch. Training drops the last incomplete global batch; evaluation visits every sample exactly
    once (no padding duplicates), so its last batch may be short or empty on some ranks, while
    every rank yields the same number of batches. Crops are drawn for the whole global batch from a
    (seed, epoch) generator; augmentations from a (seed, epoch, rank) generator on the data device.

    Yields {"x": (B, C, T', V, M)} — or, when views > 1 or local_views > 0, {"views": [views x
    (B, C, T', V, M)], "local_views": [local_views x (B, C, T', V, M)]} — plus "y": (B,) labels,
    "index": (B,) positions in `data`, and "crop": (B, 2) the (start, length) of the shared crop, the
    start counted from the sample's first recorded frame.
    Views share ONE crop and are augmented independently (STARS Feeder_dual); each local view is its
    own random crop of `local_interval` of the valid frames (no minimum length), resized to
    num_frames (DINO).
    """

    def __init__(
        self,
        data: DeviceSplit,
        batch_size: int,
        *,
        train: bool,
        crop: CropConfig = MAMP_CROP,
        augment: AugmentConfig | None = None,
        layout: SkeletonLayout | None = None,
        views: int = 1,
        local_views: int = 0,
        local_interval: tuple[float, float] = (0.4, 0.8),
        shuffle: bool | None = None,
        drop_last: bool | None = None,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"BatchLoader: batch_size must be >= 1, got {batch_size}")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"BatchLoader: rank {rank} is not in a world of size {world_size}")
        if views < 1 or local_views < 0:
            raise ValueError(f"BatchLoader: need views >= 1 and local_views >= 0, got {views}, {local_views}")
        if seed < 0:
            raise ValueError(f"BatchLoader: seed must be >= 0, got {seed}")
        local_interval = tuple(float(v) for v in local_interval)
        _check_interval(local_interval, "BatchLoader local_interval", allow_single=False)
        self.data = data
        self.layout = layout or data.layout
        self.layout.check_array(data.x, "BatchLoader data.x")
        self.batch_size = int(batch_size)
        self.train = bool(train)
        self.crop = crop
        self.augment = None if augment is None or augment.is_identity else augment
        self.views = int(views)
        self.local_views = int(local_views)
        self.local_interval = local_interval
        self.shuffle = self.train if shuffle is None else bool(shuffle)
        self.drop_last = self.train if drop_last is None else bool(drop_last)
        self.seed = int(seed)
        self.rank = int(rank)
        self.world_size = int(world_size)
        self.epoch = 0
        self._valid = data.valid.cpu()
        if self.drop_last and len(data) < self.global_batch_size:
            raise ValueError(
                f"BatchLoader: {len(data)} samples are fewer than one global batch of "
                f"{self.global_batch_size} ({batch_size} x {world_size} processes) with drop_last"
            )

    @property
    def global_batch_size(self) -> int:
        return self.batch_size * self.world_size

    @property
    def crop_interval(self) -> tuple[float, ...]:
        return self.crop.train_interval if self.train else (self.crop.eval_ratio,)

    def set_epoch(self, epoch: int) -> None:
        if epoch < 0:
            raise ValueError(f"BatchLoader.set_epoch: epoch must be >= 0, got {epoch}")
        self.epoch = int(epoch)

    def __len__(self) -> int:
        samples, step = len(self.data), self.global_batch_size
        return samples // step if self.drop_last else -(-samples // step)

    def epoch_order(self) -> torch.Tensor:
        """(N,) the global visiting order of the current epoch (CPU), identical on every rank."""
        if not self.shuffle:
            return torch.arange(len(self.data))
        return torch.randperm(len(self.data), generator=_seeded_generator(self.seed, _ORDER_STREAM, self.epoch))

    def draw_crops(
        self, indices: torch.Tensor, generator: torch.Generator | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """indices: (B,) dataset positions -> (start, length) (B,) CPU int64 of the main crop."""
        return draw_crops(self._valid[indices.cpu()], self.crop_interval, self.crop.min_length, generator)

    def draw_local_crops(
        self, indices: torch.Tensor, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """indices: (B,) -> (start, length) of one DINO local view: local_interval of the valid frames."""
        return random_crops(self._valid[indices.cpu()], self.local_interval, 1, generator)

    def __iter__(self):
        order = self.epoch_order()
        crop_generator = _seeded_generator(self.seed, _CROP_STREAM, self.epoch)
        local_generator = _seeded_generator(self.seed, _LOCAL_CROP_STREAM, self.epoch)
        augment_generator = _seeded_generator(
            self.seed, _AUGMENT_STREAM, self.epoch, self.rank, device=self.data.device
        )
        step, shard = self.global_batch_size, slice(self.rank * self.batch_size, (self.rank + 1) * self.batch_size)
        for k in range(len(self)):
            global_indices = order[k * step : (k + 1) * step]
            start, length = self.draw_crops(global_indices, crop_generator)
            local_crops = [self.draw_local_crops(global_indices, local_generator) for _ in range(self.local_views)]
            yield self._batch(
                global_indices[shard], start[shard], length[shard],
                [(s[shard], n[shard]) for s, n in local_crops], augment_generator,
            )

    def _view(self, clip: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """(B, T', M, V, C) -> augmented (B, C, T', V, M)."""
        if self.augment is not None:
            clip = augment_batch(clip, self.augment, self.layout, generator)
        return clip.permute(0, 4, 1, 3, 2).contiguous()

    def _clip(self, indices: torch.Tensor, start: torch.Tensor, length: torch.Tensor) -> torch.Tensor:
        """(B, num_frames, M, V, C) on the batch device; gathered on the host for a host-held split.
        start: (B,) relative to each sample's first recorded frame (`DeviceSplit.first`)."""
        first = self.data.first[indices.to(self.data.first.device)]
        start = start.to(first.device) + first
        clip = crop_resize_batch(self.data.x, indices, start, length, self.crop.num_frames)
        if clip.device != self.data.device:
            if clip.device.type == "cpu" and self.data.device.type == "cuda":
                clip = clip.pin_memory()
            clip = clip.to(self.data.device, non_blocking=True)
        return clip

    def _batch(self, indices, start, length, local_crops, generator) -> dict:
        """start: (B,) crop starts relative to each sample's first recorded frame (as in "crop")."""
        device = self.data.device
        indices = indices.to(device)
        clip = self._clip(indices, start, length)
        batch = {
            "y": self.data.y[indices],
            "index": indices,
            "crop": torch.stack([start, length], 1).to(device),
        }
        global_views = [self._view(clip, generator) for _ in range(self.views)]
        if self.views == 1 and self.local_views == 0:
            batch["x"] = global_views[0]
            return batch
        batch["views"] = global_views
        batch["local_views"] = [
            self._view(self._clip(indices, s, n), generator) for s, n in local_crops
        ]
        return batch


def eval_loader(
    data: DeviceSplit, batch_size: int, crop: CropConfig = MAMP_CROP, *, rank: int = 0, world_size: int = 1
) -> BatchLoader:
    """Evaluation batches: centre crop `crop.eval_ratio`, no augmentation, every sample exactly once, in order."""
    return BatchLoader(data, batch_size, train=False, crop=crop, rank=rank, world_size=world_size)
