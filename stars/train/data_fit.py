"""Fitting a run to its dataset: the encoder's joints come from the file, and defaults sized for NTU
are adapted, with a warning, when the data is small.

The paper's defaults assume about 40,000 training sequences of 30-300 frames. On a few hundred short
sequences four of them break a run or silently degrade it; `adapt_batch_size`, `adapt_queue_size` and
`adapt_min_crop_length` change them and return an `Adaptation` that says what changed, why, and which
config key sets it. The run prints it as a `SmallDataWarning` and records it in run.json. To keep the
configured values, set `adapt_to_data=false` (pretrain and tune configs); a batch the data cannot
support at all is then refused by the loader.

    a global batch larger than the training split      -> run.batch_size (no batch at all otherwise)
    fewer than MIN_STEPS_PER_EPOCH updates per epoch    -> run.batch_size
    a NNCLR/MoCo queue larger than the training split   -> queue_size (never filled: the nearest
                                                           "neighbours" stay the random initial rows)
    a minimum crop longer than most sequences           -> min_crop_length (no temporal crop at all)
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass

import numpy as np

from stars.data.layouts import SkeletonLayout
from stars.models.encoder import EncoderConfig

MIN_STEPS_PER_EPOCH = 4


class SmallDataWarning(UserWarning):
    """A default was adapted to a small dataset (the message names the key that sets it)."""


@dataclass(frozen=True)
class Adaptation:
    """One changed setting: `key` went from `old` to `new` because of `reason`."""

    key: str
    old: int
    new: int
    reason: str
    keep: str = "adapt_to_data=false"  # the setting that keeps the configured value ("" when none)

    def __str__(self) -> str:
        keep = f", {self.keep} to keep it" if self.keep else ""
        return f"{self.key} {self.old} -> {self.new}: {self.reason} (set {self.key} to choose another value{keep})"


def encoder_for_layout(cfg: EncoderConfig, layout: SkeletonLayout) -> EncoderConfig:
    """The encoder config with the layout's joint count (the dataset file decides it, never a flag)."""
    return dataclasses.replace(cfg, num_joints=layout.num_joints)


def check_joint_override(overrides: list[str], data: str) -> None:
    """ValueError when `--set encoder.num_joints=N` disagrees with the dataset file's layout (the file is
    only read when that override is given)."""
    for item in overrides:
        key, _, value = item.partition("=")
        if key.strip() != "encoder.num_joints":
            continue
        from stars.data.npz import read_header

        layout = read_header(data)["layout"]
        if value.strip() != str(layout.num_joints):
            raise ValueError(
                f"encoder.num_joints={value.strip()} disagrees with {data}: layout {layout.name!r} has "
                f"{layout.num_joints} joints; the joint count comes from the dataset file, drop the override"
            )


def adapt_batch_size(batch_size: int, num_samples: int, world_size: int = 1, key: str = "run.batch_size",
                     keep: str = "adapt_to_data=false") -> tuple[int, Adaptation | None]:
    """Global batch for `num_samples` training samples: at least MIN_STEPS_PER_EPOCH full batches per
    epoch (training drops the last partial batch), a multiple of `world_size`.

    -> (batch, None) when the batch fits, else (smaller batch, Adaptation). ValueError naming `key` when
    the split cannot give one batch per process.
    """
    if num_samples < world_size:
        raise ValueError(f"{key}: {num_samples} training samples cannot fill one batch on {world_size} processes")
    if num_samples // batch_size >= MIN_STEPS_PER_EPOCH:
        return batch_size, None
    floor = 2 * world_size if batch_size >= 2 * world_size else world_size  # BatchNorm trains on >= 2 samples
    new = max(floor, (num_samples // MIN_STEPS_PER_EPOCH) // world_size * world_size)
    if new >= batch_size:
        return batch_size, None
    steps = num_samples // batch_size
    why = (f"the training split has {num_samples} samples, fewer than one batch" if steps == 0 else
           f"{num_samples} training samples give only {steps} update(s) per epoch")
    return new, Adaptation(key, batch_size, new, f"{why}; now {num_samples // new} per epoch", keep)


def adapt_queue_size(queue_size: int, num_samples: int, global_batch: int,
                     key: str = "queue_size") -> tuple[int, Adaptation | None]:
    """A queue of at most as many entries as training samples (a multiple of the global batch), so that
    every row holds a real sample's embedding after one epoch."""
    if queue_size <= num_samples:
        return queue_size, None
    new = max(global_batch, num_samples // global_batch * global_batch)
    if new >= queue_size:
        return queue_size, None
    return new, Adaptation(key, queue_size, new, f"a queue larger than the {num_samples} training samples is "
                                                   "never filled, its random initial rows stay neighbours")


def adapt_min_crop_length(min_length: int, lengths: np.ndarray, low_ratio: float,
                          key: str = "min_crop_length") -> tuple[int, Adaptation | None]:
    """A minimum crop no longer than the median sequence: `floor(median * low_ratio)` when the minimum
    exceeds the median valid length (the crop would otherwise always be the whole sequence)."""
    lengths = np.asarray(lengths)
    if len(lengths) == 0 or low_ratio >= 1.0:  # full-length views: the minimum never matters
        return min_length, None
    median = float(np.median(lengths))
    if min_length <= median:
        return min_length, None
    new = max(1, int(median * low_ratio))
    return new, Adaptation(key, min_length, new, f"the median sequence has {median:g} frames, so crops of at "
                                                 f"least {min_length} frames never crop")


def describe(adaptations: list[Adaptation | None]) -> list[str]:
    """The texts of the adaptations made (None entries: nothing changed), for run.json and `warn`."""
    return [str(item) for item in adaptations if item is not None]


def warn(texts: list[str], where: str) -> None:
    """One SmallDataWarning per adaptation text. Runs call it once their inputs are validated, so that
    a run refused for bad input prints only its error."""
    for text in texts:
        warnings.warn(f"{where}: {text}", SmallDataWarning, stacklevel=3)


def report(adaptations: list[Adaptation | None], where: str) -> list[str]:
    """`describe` and `warn` at once; -> the texts."""
    texts = describe(adaptations)
    warn(texts, where)
    return texts


__all__ = [
    "MIN_STEPS_PER_EPOCH", "SmallDataWarning", "Adaptation", "encoder_for_layout", "check_joint_override",
    "adapt_batch_size", "adapt_queue_size", "adapt_min_crop_length", "describe", "warn", "report",
]
