"""Feeders: valid lengths, the official crop + resize, the batched loader against the per-sample
reference, reproducibility by (seed, epoch), and DDP sharding."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from stars.data.augment import MAMP_AUGMENT, AugmentConfig
from stars.data.feeder import (
    FULL_LENGTH_CROP,
    BatchLoader,
    CropConfig,
    DeviceSplit,
    ReferenceFeeder,
    centre_crops,
    crop_resize_batch,
    eval_loader,
    random_crops,
    valid_crop_resize,
    valid_lengths,
)
from stars.data.layouts import NTU25
from stars.data.npz import SkeletonSplit


def make_split(samples=24, frames=90, seed=0, min_valid=5) -> SkeletonSplit:
    """Random skeletons with zero-padded tails; odd samples lack the second person."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(samples, frames, 2, 25, 3)).astype(np.float32)
    for i in range(samples):
        x[i, rng.integers(min_valid, frames + 1) :] = 0
    x[1::2, :, 1] = 0
    return SkeletonSplit(x, rng.integers(0, 6, samples).astype(np.int64), NTU25, num_classes=6)


def bone_lengths(batch_x: torch.Tensor) -> torch.Tensor:
    """(B, C, T, V, M) -> (B, T, bones, M)."""
    child = torch.tensor([c for c, _ in NTU25.bones])
    parent = torch.tensor([p for _, p in NTU25.bones])
    return (batch_x[:, :, :, child] - batch_x[:, :, :, parent]).norm(dim=1)


def test_valid_lengths_counts_non_zero_frames():
    x = np.zeros((3, 10, 2, 25, 3), dtype=np.float32)
    x[0, :7, 0, 3, 1] = 1.0
    x[1, :10, 1] = -2.0  # only the second person present
    x[2, :4] = 1.0
    x[2, 2] = 0.0  # a zero frame inside: official semantics count, they do not locate
    assert valid_lengths(x).tolist() == [7, 10, 3]
    assert valid_lengths(torch.from_numpy(x)).tolist() == [7, 10, 3]
    big = np.zeros((1100, 4, 1, 2, 3), dtype=np.float32)  # crosses the chunk size
    big[np.arange(1100), np.arange(1100) % 4] = 1.0
    assert (valid_lengths(big) == 1).all()


def test_centre_crop_matches_the_official_bias():
    for ratio in (0.95, 1.0, 0.9, 0.5):
        valid = torch.arange(1, 301)
        start, length = centre_crops(valid, ratio)
        for v, s, n in zip(valid.tolist(), start.tolist(), length.tolist()):
            bias = int((1 - ratio) * v / 2)
            assert (s, n) == (bias, v - 2 * bias)
    start, length = centre_crops(torch.tensor([100, 50, 300]), 0.95)
    assert start.tolist() == [2, 1, 7] and length.tolist() == [96, 48, 286]


def test_random_crops_stay_inside_the_valid_frames():
    valid = torch.arange(1, 301).repeat(20)
    start, length = random_crops(valid, (0.5, 1.0), 64, torch.Generator().manual_seed(0))
    assert (length >= torch.clamp(valid, max=64)).all()
    assert (length >= (valid * 0.5).floor().long()).all() and (length <= valid).all()
    assert (start >= 0).all() and (start + length <= valid).all()
    long = valid == 300
    assert length[long].min() <= 160 and length[long].max() >= 290  # p spans [0.5, 1]
    assert start[long].max() >= 100  # random starts, not always 0


def test_resize_of_a_linear_ramp_stays_linear():
    frames, window = 80, 120
    sample = np.zeros((3, frames, 25, 2), dtype=np.float32)
    slope, offset = 0.25, -3.0
    sample[:, :70] = (slope * np.arange(70) + offset)[None, :, None, None]
    for start, length in [(0, 70), (5, 40), (30, 33), (10, 1)]:
        src = np.clip((np.arange(window) + 0.5) * length / window - 0.5, 0, length - 1)
        expected = slope * (start + src) + offset
        reference = valid_crop_resize(sample, 70, (0.5, 1.0), window, crop=(start, length))
        np.testing.assert_allclose(reference[0, :, 0, 0], expected, atol=1e-5)
        x = torch.from_numpy(sample.transpose(1, 3, 2, 0)[None].copy())  # (1, T, M, V, C)
        batched = crop_resize_batch(x, torch.tensor([0]), torch.tensor([start]), torch.tensor([length]), window)
        np.testing.assert_allclose(batched[0, :, 0, 0, 0].numpy(), expected, atol=1e-5)
    interior = valid_crop_resize(sample, 70, (1.0,), window)[0, 1:-1, 0, 0]
    np.testing.assert_allclose(np.diff(interior), slope * 70 / window, atol=1e-5)


def test_batched_training_crops_equal_the_reference():
    split = make_split()
    data = DeviceSplit.from_split(split, device="cpu")
    loader = BatchLoader(data, 5, train=True, seed=3)
    seen = 0
    for batch in loader:
        for row, index in enumerate(batch["index"].tolist()):
            start, length = batch["crop"][row].tolist()
            sample = split.x[index].transpose(3, 0, 2, 1)
            reference = valid_crop_resize(sample, int(data.valid[index]), (0.5, 1.0), 120, crop=(start, length))
            np.testing.assert_allclose(batch["x"][row].numpy(), reference, atol=1e-5, rtol=0)
            seen += 1
    assert seen == len(loader) * 5 == 20
    # the same draws through the per-sample Dataset
    starts, lengths = np.zeros(len(split), np.int64), np.zeros(len(split), np.int64)
    for batch in loader:
        starts[batch["index"].numpy()], lengths[batch["index"].numpy()] = batch["crop"].numpy().T
    feeder = ReferenceFeeder(split, train=True, crops=(starts, lengths))
    for batch in loader:
        for row, index in enumerate(batch["index"].tolist()):
            clip, label, item = feeder[index]
            assert clip.shape == (3, 120, 25, 2) and clip.dtype == np.float32
            assert label == int(split.y[index]) and item == index
            np.testing.assert_allclose(batch["x"][row].numpy(), clip, atol=1e-5, rtol=0)


def test_eval_batches_equal_the_reference_feeder():
    split = make_split(samples=11)
    loader = eval_loader(DeviceSplit.from_split(split, device="cpu"), 4)
    feeder = ReferenceFeeder(split, train=False)
    order = []
    for batch in loader:
        for row, index in enumerate(batch["index"].tolist()):
            np.testing.assert_allclose(batch["x"][row].numpy(), feeder[index][0], atol=1e-5, rtol=0)
            assert batch["y"][row] == feeder[index][1]
            order.append(index)
    assert order == list(range(11))


def test_batched_rotation_equals_reference_rotation_with_the_same_angles():
    split = make_split(samples=6)
    data = DeviceSplit.from_split(split, device="cpu")
    loader = BatchLoader(data, 6, train=False, augment=MAMP_AUGMENT, seed=1)
    batch = next(iter(loader))
    plain = next(iter(eval_loader(data, 6)))["x"]
    # recover each sample's matrix from the batch and check it is one rotation for all frames/persons
    for row in range(6):
        points = plain[row].permute(1, 2, 3, 0).reshape(-1, 3).double()
        rotated = batch["x"][row].permute(1, 2, 3, 0).reshape(-1, 3).double()
        solution = torch.linalg.lstsq(points, rotated).solution  # rotated = points @ R^T
        torch.testing.assert_close(points @ solution, rotated, atol=1e-4, rtol=0)
        torch.testing.assert_close(solution.T @ solution, torch.eye(3, dtype=torch.float64), atol=1e-4, rtol=0)


def test_epoch_is_reproducible_from_its_number():
    data = DeviceSplit.from_split(make_split(), device="cpu")

    def epoch_batches(loader, epoch):
        loader.set_epoch(epoch)
        return [(b["index"].clone(), b["x"].clone()) for b in loader]

    first = BatchLoader(data, 4, train=True, augment=MAMP_AUGMENT, seed=11)
    resumed = BatchLoader(data, 4, train=True, augment=MAMP_AUGMENT, seed=11)
    epoch2 = epoch_batches(first, 2)
    epoch3 = epoch_batches(first, 3)
    for (i, x), (j, y) in zip(epoch2, epoch_batches(resumed, 2)):
        assert torch.equal(i, j) and torch.equal(x, y)
    assert not torch.equal(torch.cat([i for i, _ in epoch2]), torch.cat([i for i, _ in epoch3]))
    for (i, x), (j, y) in zip(epoch3, epoch_batches(resumed, 3)):
        assert torch.equal(i, j) and torch.equal(x, y)
    other_seed = epoch_batches(BatchLoader(data, 4, train=True, augment=MAMP_AUGMENT, seed=12), 2)
    assert not torch.equal(epoch2[0][1], other_seed[0][1])


def test_ddp_shards_cover_each_global_batch_once():
    data = DeviceSplit.from_split(make_split(samples=23), device="cpu")
    ranks = [BatchLoader(data, 4, train=True, seed=5, rank=r, world_size=2) for r in range(2)]
    single = BatchLoader(data, 8, train=True, seed=5)  # the same global batch in one process
    for loader in (*ranks, single):
        loader.set_epoch(4)
    assert len(ranks[0]) == len(ranks[1]) == len(single) == 2  # 23 // 8, drop_last
    visited = []
    for part0, part1, whole in zip(*ranks, single):
        merged = torch.cat([part0["index"], part1["index"]])
        assert torch.equal(merged, whole["index"])
        assert torch.equal(torch.cat([part0["x"], part1["x"]]), whole["x"])  # crops drawn per global batch
        visited.append(merged)
    visited = torch.cat(visited)
    assert len(visited.unique()) == 16


@pytest.mark.parametrize("samples", [21, 17, 8])
def test_ddp_evaluation_visits_every_sample_exactly_once(samples):
    data = DeviceSplit.from_split(make_split(samples=samples), device="cpu")
    ranks = [eval_loader(data, 4, rank=r, world_size=2) for r in range(2)]
    assert len(ranks[0]) == len(ranks[1]) == -(-samples // 8)
    visited = []
    for part0, part1 in zip(*ranks):
        for part in (part0, part1):
            assert part["x"].shape[1:] == (3, 120, 25, 2) and len(part["x"]) == len(part["y"])
            visited.append(part["index"])
    visited = torch.cat(visited)
    assert sorted(visited.tolist()) == list(range(samples))
    if samples == 17:
        assert len(part1["index"]) == 0  # the last global batch holds one sample, on rank 0


def test_views_share_one_crop_and_are_augmented_independently():
    data = DeviceSplit.from_split(make_split(), device="cpu")
    plain = next(iter(BatchLoader(data, 6, train=True, views=2, seed=2)))
    assert torch.equal(plain["views"][0], plain["views"][1]) and plain["local_views"] == []
    batch = next(iter(BatchLoader(data, 6, train=True, views=2, augment=MAMP_AUGMENT, seed=2)))
    first, second = batch["views"]
    assert not torch.allclose(first, second)
    # rotations keep bone lengths, so equal lengths frame by frame prove the shared crop
    torch.testing.assert_close(bone_lengths(first), bone_lengths(second), atol=1e-5, rtol=0)
    torch.testing.assert_close(bone_lengths(first), bone_lengths(plain["views"][0]), atol=1e-5, rtol=0)


def test_local_views_are_short_random_crops():
    data = DeviceSplit.from_split(make_split(samples=40, frames=200, min_valid=100), device="cpu")
    loader = BatchLoader(data, 8, train=True, crop=FULL_LENGTH_CROP, views=2, local_views=3, seed=0)
    batch = next(iter(loader))
    assert len(batch["views"]) == 2 and len(batch["local_views"]) == 3
    assert all(v.shape == (8, 3, 120, 25, 2) for v in batch["views"] + batch["local_views"])
    valid = data.valid[batch["index"]]
    assert torch.equal(batch["crop"][:, 1], valid)  # full-length global crop
    generator = torch.Generator().manual_seed(0)
    for _ in range(20):
        start, length = loader.draw_local_crops(batch["index"], generator)
        assert (length >= (valid * 0.4).floor()).all() and (length <= (valid * 0.8).floor()).all()
        assert (start >= 0).all() and (start + length <= valid).all()
    assert not torch.allclose(batch["local_views"][0], batch["local_views"][1])


def test_subset_keeps_the_chosen_samples():
    split = make_split(samples=10)
    data = DeviceSplit.from_split(split, device="cpu")
    part = data.subset(np.array([7, 2]))
    assert torch.equal(part.x, torch.from_numpy(split.x[[7, 2]]))
    assert part.y.tolist() == split.y[[7, 2]].tolist() and part.valid.tolist() == data.valid[[7, 2]].tolist()


def test_loader_errors_and_lengths():
    data = DeviceSplit.from_split(make_split(samples=10), device="cpu")
    assert len(BatchLoader(data, 3, train=True)) == 3
    assert len(BatchLoader(data, 3, train=False)) == 4
    assert len(BatchLoader(data, 3, train=True, drop_last=False)) == 4
    with pytest.raises(ValueError, match="fewer than one global batch"):
        BatchLoader(data, 8, train=True, world_size=2)
    with pytest.raises(ValueError, match="rank"):
        BatchLoader(data, 2, train=True, rank=2, world_size=2)
    with pytest.raises(ValueError, match="train_interval"):
        CropConfig(train_interval=(0.9, 0.5))
    with pytest.raises(ValueError, match="local_interval"):
        BatchLoader(data, 2, train=True, local_interval=(0.4,))
    empty = make_split(samples=3)
    empty.x[1] = 0
    with pytest.raises(ValueError, match=r"no non-zero frame, e.g. \[1\]"):
        DeviceSplit.from_split(empty, device="cpu")


def test_augmented_batches_keep_absent_people_zero():
    split = make_split()
    data = DeviceSplit.from_split(split, device="cpu")
    everything = AugmentConfig(random_rot=0.3, mirror=True, main_axis_rotation=True, gaussian_noise=True,
                               gaussian_blur=True, axis_mask=True, time_reversal=True)
    for batch in BatchLoader(data, 6, train=True, augment=everything):
        absent = torch.from_numpy(np.all(split.x[batch["index"].numpy()] == 0, axis=(1, 3, 4)))  # (B, M)
        assert (batch["x"].permute(0, 4, 1, 2, 3)[absent] == 0).all()


@pytest.mark.gpu
def test_gpu_batches_match_cpu_batches():
    split = make_split()
    cpu = BatchLoader(DeviceSplit.from_split(split, device="cpu"), 4, train=True, seed=9)
    gpu = BatchLoader(DeviceSplit.from_split(split, device="cuda"), 4, train=True, seed=9)
    for a, b in zip(cpu, gpu):
        assert b["x"].is_cuda
        assert torch.equal(a["index"], b["index"].cpu())
        torch.testing.assert_close(a["x"], b["x"].cpu(), atol=1e-5, rtol=0)
