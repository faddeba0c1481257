"""What MAMP pretraining sees of a dataset: how its crop, resize, motion-aware masking and target
normalisation behave on it, to compare a small real dataset with NTU (docs/real-data.md).

Four measurements, each of one mechanism of stage 1 (`stars.models.mamp`, `stars.data.feeder`):

* crop: `whole_crop_fraction` - the share of training sequences that the random temporal crop
  [a, b] x length with a minimum of `min_crop_length` frames can only return whole (no temporal
  augmentation at all for them);
* resize: `resize_factors` - output frames per recorded frame of the evaluation crop (above 1 the
  feeder interpolates frames that were never recorded);
* target normalisation: `still_token_fraction` - the share of tokens whose motion target (4 frames
  x 3 coordinates) varies less than the 1e-6 added to its variance before standardising: their
  normalised target shrinks towards 0 instead of having unit variance;
* motion-aware masking: `visible_low_motion_fraction` - the share of the visible (unmasked) tokens
  that lie in the lower half of their sequence's motion (0.5 = uniform masking).

`pretraining_input_report` gathers them for a split.
"""

from __future__ import annotations

import numpy as np
import torch

from stars.data.feeder import CropConfig, DeviceSplit, eval_loader, valid_spans
from stars.data.npz import SkeletonSplit
from stars.models.encoder import EncoderConfig, fold_persons
from stars.models.mamp import MAMPConfig, MaskedMotionModel

NORM_EPS = 1e-6  # added to each token's target variance in `MaskedMotionModel.reconstruction_target`


def whole_crop_fraction(lengths: np.ndarray, min_length: int, interval: tuple[float, ...]) -> float:
    """Share of sequences whose random crop is always the whole sequence: length <= min_length, or a
    lower crop ratio of 1 (crop length = min(max(floor(length * p), min_length), length))."""
    lengths = np.asarray(lengths)
    if len(interval) == 1 or interval[0] >= 1.0:
        return 1.0
    return float(np.mean(lengths <= min_length)) if len(lengths) else float("nan")


def resize_factors(lengths: np.ndarray, num_frames: int, eval_ratio: float = 0.95) -> np.ndarray:
    """(N,) output frames per recorded frame of the centre crop `eval_ratio` resized to `num_frames`."""
    lengths = np.asarray(lengths, dtype=np.float64)
    bias = np.floor((1.0 - eval_ratio) * lengths / 2)
    return num_frames / np.maximum(lengths - 2 * bias, 1.0)


def mamp_probe(num_joints: int, num_frames: int, tau: float, mask_ratio: float) -> MaskedMotionModel:
    """A MAMP model used only for its patchify / target / masking methods (weights are irrelevant)."""
    return MaskedMotionModel(
        EncoderConfig(num_joints=num_joints, num_frames=num_frames, embed_dim=8, depth=1, num_heads=1),
        MAMPConfig(decoder_depth=1, decoder_dim=8, decoder_heads=1, motion_aware_tau=tau, mask_ratio=mask_ratio),
    )


def still_token_fraction(sequences: torch.Tensor, t_patch_size: int = 4, eps: float = NORM_EPS) -> float:
    """sequences (B, T, V, C) -> share of tokens whose motion target has variance < eps (unbiased, over the
    t_patch_size x C values, as `reconstruction_target` computes it)."""
    batch, frames, joints, channels = sequences.shape
    motion = torch.zeros_like(sequences)
    motion[:, :-1] = sequences[:, 1:] - sequences[:, :-1]
    patches = motion.reshape(batch, frames // t_patch_size, t_patch_size, joints, channels).permute(0, 1, 3, 2, 4)
    variance = patches.reshape(batch, -1, t_patch_size * channels).var(dim=-1, unbiased=True)
    return float((variance < eps).float().mean())


def visible_low_motion_fraction(model: MaskedMotionModel, sequences: torch.Tensor, seed: int = 0) -> float:
    """sequences (B, T, V, C) -> share of the visible tokens of one motion-aware mask draw that lie in the
    lower half of their sequence's token motion (0.5 for uniform masking)."""
    intensity = model.token_motion_intensity(model.patchify(sequences))
    generator = torch.Generator(device=sequences.device).manual_seed(seed)
    _, mask, _ = model.motion_aware_mask(intensity, model.len_keep, generator)
    low = intensity <= intensity.median(dim=1, keepdim=True).values
    visible = 1.0 - mask
    return float((visible * low).sum() / visible.sum())


@torch.no_grad()
def pretraining_input_report(
    split: SkeletonSplit, num_frames: int, *, min_crop_length: int = 64, crop_interval: tuple[float, ...] = (0.5, 1.0),
    tau: float = 0.8, mask_ratio: float = 0.9, eval_ratio: float = 0.95, batch_size: int = 256,
) -> dict[str, float]:
    """The four measurements on `split` (centre crops resized to `num_frames`, persons with data only).

    -> {"median_length", "whole_crop_fraction", "median_resize_factor", "still_token_fraction",
    "visible_low_motion_fraction", "median_motion_mm_per_frame"}.
    """
    _, lengths = valid_spans(split.x)
    model = mamp_probe(split.layout.num_joints, num_frames, tau, mask_ratio)
    data = DeviceSplit.from_split(split, "cpu")
    still, low, motion, weights = [], [], [], []
    for batch in eval_loader(data, batch_size, CropConfig(eval_ratio=eval_ratio, num_frames=num_frames)):
        sequences = fold_persons(batch["x"])
        sequences = sequences[sequences.flatten(1).abs().sum(1) > 0]  # absent persons carry no motion
        if len(sequences) == 0:
            continue
        still.append(still_token_fraction(sequences, model.cfg.t_patch_size))
        low.append(visible_low_motion_fraction(model, sequences))
        step = (sequences[:, 1:] - sequences[:, :-1]).norm(dim=-1)
        motion.append(float(step.median()) * 1000)
        weights.append(len(sequences))
    return {
        "median_length": float(np.median(lengths)),
        "whole_crop_fraction": whole_crop_fraction(lengths, min_crop_length, crop_interval),
        "median_resize_factor": float(np.median(resize_factors(lengths, num_frames, eval_ratio))),
        "still_token_fraction": float(np.average(still, weights=weights)),
        "visible_low_motion_fraction": float(np.average(low, weights=weights)),
        "median_motion_mm_per_frame": float(np.average(motion, weights=weights)),
    }


__all__ = [
    "NORM_EPS", "mamp_probe", "whole_crop_fraction", "resize_factors", "still_token_fraction", "visible_low_motion_fraction",
    "pretraining_input_report",
]
