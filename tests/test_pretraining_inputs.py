"""How stage 1's crop, resize, motion-aware masking and target normalisation behave on short, small data
(docs/real-data.md): one test per mechanism, and the measured facts on the real datasets."""

import numpy as np
import pytest
import torch

from stars.analysis.pretraining_inputs import (
    NORM_EPS,
    mamp_probe,
    pretraining_input_report,
    resize_factors,
    still_token_fraction,
    visible_low_motion_fraction,
    whole_crop_fraction,
)
from stars.data.feeder import BatchLoader, CropConfig, DeviceSplit
from stars.data.layouts import get_layout
from stars.data.npz import SkeletonSplit
from stars.data.real import default_datasets_root
from stars.train.data_fit import adapt_min_crop_length


def _split(lengths, joints=15, seed=0):
    rng = np.random.default_rng(seed)
    x = np.zeros((len(lengths), max(lengths), 1, joints, 3), np.float32)
    for i, n in enumerate(lengths):
        x[i, :n] = np.cumsum(rng.normal(0, 0.01, (n, 1, joints, 3)), axis=0) + 0.1
    return SkeletonSplit(x, np.arange(len(lengths)) % 2, get_layout("openni15"), 2)


def test_crop_minimum_longer_than_the_sequences_never_crops():
    lengths = [30, 34, 40, 25, 31, 36, 28, 33]
    data = DeviceSplit.from_split(_split(lengths), "cpu")
    default = BatchLoader(data, 8, train=True, crop=CropConfig((0.5, 1.0), min_length=64, num_frames=16))
    crops = torch.cat([default.draw_crops(torch.arange(8), torch.Generator().manual_seed(s))[1] for s in range(20)])
    assert torch.equal(crops, data.valid.repeat(20))  # every crop is the whole sequence
    assert whole_crop_fraction(np.array(lengths), 64, (0.5, 1.0)) == 1.0
    adapted, _ = adapt_min_crop_length(64, np.array(lengths), 0.5)
    loader = BatchLoader(data, 8, train=True, crop=CropConfig((0.5, 1.0), min_length=adapted, num_frames=16))
    crops = torch.cat([loader.draw_crops(torch.arange(8), torch.Generator().manual_seed(s))[1] for s in range(20)])
    assert (crops < data.valid.repeat(20)).float().mean() > 0.5 and crops.min() >= adapted
    assert whole_crop_fraction(np.array(lengths), adapted, (0.5, 1.0)) == 0.0
    assert whole_crop_fraction(np.array(lengths), 16, (1.0, 1.0)) == 1.0  # full-length views never crop


def test_resizing_short_sequences_interpolates_unrecorded_frames():
    np.testing.assert_allclose(resize_factors(np.array([34, 120, 300]), 120, eval_ratio=1.0), [120 / 34, 1.0, 0.4])
    assert resize_factors(np.array([100]), 120)[0] == pytest.approx(120 / 96)  # centre crop 0.95 keeps 96 frames
    # a short recording upsampled 4x: a 4-frame token spans about one recorded step, so its motion target
    # is nearly constant; at the recorded rate the same jitter gives varied targets
    rng = np.random.default_rng(0)
    recorded = torch.from_numpy(np.cumsum(rng.normal(0, 0.003, (1, 30, 10, 3)), axis=1))
    upsampled = torch.nn.functional.interpolate(recorded.permute(0, 2, 3, 1).reshape(1, 30, 30), size=120,
                                                mode="linear", align_corners=False)
    upsampled = upsampled.reshape(1, 10, 3, 120).permute(0, 3, 1, 2)
    assert still_token_fraction(recorded[:, :28]) < 0.05 < 0.5 < still_token_fraction(upsampled)


def test_target_normalisation_shrinks_still_tokens_towards_zero():
    model = mamp_probe(num_joints=2, num_frames=8, tau=0.8, mask_ratio=0.5)
    t = torch.arange(8, dtype=torch.float64)[None, :, None, None]
    jitter = torch.tensor([1.0, -1.0, 0.5, -0.5, 1.0, -1.0, 0.5, -0.5], dtype=torch.float64)[None, :, None, None]
    moving = 0.05 * t + 0.02 * jitter * torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
    still = 1e-5 * jitter * torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)  # 0.01 mm tracking jitter
    sequences = torch.cat([moving, still], dim=2)  # (1, 8, 2 joints, 3)
    target = model.reconstruction_target(sequences).reshape(1, 2, 2, 12)  # (B, TP, V, P)
    moving_std = target[0, 0, 0].std(unbiased=True)
    still_std = target[0, 0, 1].std(unbiased=True)
    assert moving_std == pytest.approx(1.0, abs=1e-3)  # standardised: unit variance
    assert still_std < 0.05  # variance below the 1e-6 of the denominator: shrunk, not standardised
    assert still_token_fraction(sequences) == pytest.approx(0.5)
    assert NORM_EPS == 1e-6


def test_motion_aware_masking_is_scale_free_and_keeps_still_tokens_visible():
    model = mamp_probe(num_joints=10, num_frames=32, tau=0.8, mask_ratio=0.9)
    rng = np.random.default_rng(0)
    sequences = torch.from_numpy(np.cumsum(rng.normal(0, 0.01, (16, 32, 10, 3)), axis=1)).float()
    sequences[:, :, 5:] *= 0.05  # half of the joints nearly still
    intensity = model.token_motion_intensity(model.patchify(sequences))
    masks = [model.motion_aware_mask(intensity * scale, model.len_keep, torch.Generator().manual_seed(1))[1]
             for scale in (1.0, 1000.0)]  # metres or millimetres: the same draw
    assert torch.equal(masks[0], masks[1])
    probabilities = torch.softmax(intensity / (0.8 * intensity.amax(1, keepdim=True)), dim=1)
    ratio = probabilities.amax(1) / probabilities.amin(1)
    assert (ratio <= np.exp(1 / 0.8) + 1e-4).all()  # at most e^(1/tau) = 3.5 times as likely to be masked
    low = visible_low_motion_fraction(model, sequences)
    assert 0.6 < low < 0.95  # visible tokens lean to the still half; uniform masking gives 0.5


def test_report_on_a_short_dataset():
    report = pretraining_input_report(_split([30, 34, 40, 25, 31, 36, 28, 33]), num_frames=120)
    assert report["median_length"] == 32.0 and report["whole_crop_fraction"] == 1.0
    assert report["median_resize_factor"] > 3.5
    assert set(report) == {"median_length", "whole_crop_fraction", "median_resize_factor", "still_token_fraction",
                           "visible_low_motion_fraction", "median_motion_mm_per_frame"}


@pytest.mark.realdata
@pytest.mark.slow
def test_measured_on_the_real_datasets(tmp_path):
    root = default_datasets_root()
    if not (root / "utd_mhad").is_dir() or not (root / "nw_ucla").is_dir():
        pytest.skip(f"real datasets not found under {root} (set STARS_DATASETS)")
    from stars.data.npz import load_split
    from stars.data.real import prepare_nw_ucla, prepare_utd_mhad

    utd = load_split(prepare_utd_mhad(root / "utd_mhad", tmp_path, layout="kinect_v1_20").output, "train")
    ucla = load_split(prepare_nw_ucla(root / "nw_ucla", tmp_path).output, "train")
    reports = {(name, frames): pretraining_input_report(split, frames)
               for name, split in (("utd", utd), ("ucla", ucla)) for frames in (32, 120)}
    # crop: most NW-UCLA sequences are shorter than MAMP's 64-frame minimum crop
    assert reports["ucla", 32]["whole_crop_fraction"] > 0.8 and reports["utd", 32]["whole_crop_fraction"] > 0.4
    # resize: the paper's 120 frames interpolate 3.5x (NW-UCLA) and 1.8x (UTD-MHAD) the recorded frames
    assert reports["ucla", 120]["median_resize_factor"] > 3.4 and reports["utd", 120]["median_resize_factor"] > 1.8
    # normalisation: UTD-MHAD's smooth skeletons leave over a quarter of the tokens below the variance floor
    assert reports["utd", 32]["still_token_fraction"] > 0.25
    assert reports["utd", 120]["still_token_fraction"] > 2 * reports["utd", 32]["still_token_fraction"] - 0.01
    # masking: behaves as designed on both (visible tokens lean to low motion)
    assert all(0.55 < r["visible_low_motion_fraction"] < 0.75 for r in reports.values())
