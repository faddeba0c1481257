"""Index subsets of a split: semi-supervised labelled subsets, few-shot classes and episodes,
held-out classes, and validation hold-outs (index sets, or a dataset file) for model selection without the
test set.

Every function is a pure function of its arguments (NumPy PCG64 seeded by `seed`), so all
processes of a distributed run draw the same subset (unlike the official semi-supervised feeder,
which seeds each rank differently; spec §6.4, §8.2 item 6). Returned indices are sorted int64
unless stated otherwise.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

NTU120_FEWSHOT_SETUPS = range(18, 33)  # NTU-120 setups absent from NTU-60 (which is setups 1-17)


def _labels(labels, where: str) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"{where}: labels must be a 1-D integer array, got {labels.dtype} {labels.shape}")
    return labels.astype(np.int64)


def _rounded(value: float) -> int:
    """Round half up (Python's round() rounds half to even)."""
    return int(np.floor(value + 0.5))


def semi_supervised_subset(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Class-balanced labelled subset: max(1, round(fraction * n_c)) random samples of every class c.

    labels: (N,) -> sorted indices, about fraction * N of them. Depends only on (labels, fraction,
    seed). (The official feeder keeps a global random int(N * ratio) without class balancing.)
    """
    labels = _labels(labels, "semi_supervised_subset")
    if not 0 < fraction <= 1:
        raise ValueError(f"semi_supervised_subset: fraction must lie in (0, 1], got {fraction!r}")
    rng = np.random.default_rng(seed)
    chosen = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        keep = min(len(members), max(1, _rounded(fraction * len(members))))
        chosen.append(rng.permutation(members)[:keep])
    return np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, dtype=np.int64)


def released_semi_subsets(num_samples: int, fraction: float, processes: int = 2) -> list[np.ndarray]:
    """The labelled subsets of the official semi-supervised feeder, one per training process.

    Process r seeds NumPy's global generator with r, shuffles the indices 0..N-1 and keeps the first
    int(N * fraction): a global draw, not class-balanced, different in every process, and the same for all
    5 repeated runs (reference §6.4). -> `processes` arrays of int(N * fraction) indices (in drawn order).
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"released_semi_subsets: fraction must lie in (0, 1], got {fraction!r}")
    if processes < 1 or num_samples < 1:
        raise ValueError(f"released_semi_subsets: need num_samples, processes >= 1, got {num_samples}, {processes}")
    keep = int(num_samples * fraction)
    subsets = []
    for rank in range(processes):
        order = np.arange(num_samples)
        np.random.RandomState(rank).shuffle(order)  # = np.random.seed(0 + rank); np.random.shuffle(order)
        subsets.append(order[:keep])
    return subsets


def fewshot_ntu120_classes() -> np.ndarray:
    """The 60 NTU-120 classes A061-A120 unseen in NTU-60, as 0-based labels 60..119."""
    return np.arange(60, 120)


def ntu120_fewshot_mask(meta: Mapping[str, np.ndarray]) -> np.ndarray:
    """(N,) bool: samples recorded in NTU-120 setups 18-32 (meta["setup"], 1-based as in S018)."""
    if "setup" not in meta:
        raise ValueError(f"ntu120_fewshot_mask: metadata has no 'setup' array (has {sorted(meta)})")
    setup = np.asarray(meta["setup"])
    return (setup >= NTU120_FEWSHOT_SETUPS.start) & (setup < NTU120_FEWSHOT_SETUPS.stop)


def heldout_class_split(num_classes: int, n_heldout: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(seen, unseen): n_heldout random classes out of range(num_classes) are unseen; both sorted."""
    if not 0 < n_heldout < num_classes:
        raise ValueError(f"heldout_class_split: need 0 < n_heldout < num_classes, got {n_heldout}, {num_classes}")
    unseen = np.sort(np.random.default_rng(seed).permutation(num_classes)[:n_heldout])
    seen = np.setdiff1d(np.arange(num_classes), unseen)
    return seen, unseen


def sample_episode(
    labels: np.ndarray, classes: Sequence[int], shots: int, seed: int, queries: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """One few-shot episode over `classes`: (support, query) indices into labels (N,).

    support: `shots` random samples per class, grouped by class in the order of `classes`;
    query: the remaining samples of those classes (or `queries` random ones per class), sorted.
    """
    labels = _labels(labels, "sample_episode")
    if shots < 1:
        raise ValueError(f"sample_episode: shots must be >= 1, got {shots}")
    if queries is not None and queries < 1:
        raise ValueError(f"sample_episode: queries must be >= 1 or None, got {queries}")
    if len(set(int(c) for c in classes)) != len(classes):
        raise ValueError(f"sample_episode: classes repeat: {list(classes)}")
    rng = np.random.default_rng(seed)
    support, query = [], []
    for c in classes:
        members = rng.permutation(np.flatnonzero(labels == c))
        need = shots + (queries or 0)
        if len(members) < need:
            raise ValueError(f"sample_episode: class {c} has {len(members)} samples, needs {need}")
        support.append(members[:shots])
        query.append(members[shots:] if queries is None else members[shots : shots + queries])
    empty = np.zeros(0, dtype=np.int64)
    return (
        np.concatenate(support) if support else empty,
        np.sort(np.concatenate(query)) if query else empty,
    )


def validation_holdout(labels: np.ndarray, fraction: float = 0.1, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Class-stratified (train_idx, val_idx) of a training split, for model selection (KNN monitor)
    without touching the test set. Per class round(fraction * n_c) samples go to validation, at
    least one when the class has two or more, and at least one always stays in training."""
    labels = _labels(labels, "validation_holdout")
    if not 0 < fraction < 1:
        raise ValueError(f"validation_holdout: fraction must lie in (0, 1), got {fraction!r}")
    rng = np.random.default_rng(seed)
    val = []
    for c in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == c))
        if len(members) < 2:
            continue
        count = min(len(members) - 1, max(1, _rounded(fraction * len(members))))
        val.append(members[:count])
    val_idx = np.sort(np.concatenate(val)) if val else np.zeros(0, dtype=np.int64)
    train_idx = np.setdiff1d(np.arange(len(labels)), val_idx)
    return train_idx, val_idx


def write_validation_dataset(path: str | os.PathLike, out: str | os.PathLike, by: str) -> Path:
    """A dataset file made from the training split of `path` alone, for choosing settings without the test
    split: the training samples whose metadata `by` (e.g. "subject" or "view") has its largest value become
    the validation ("test") split, the others the training split, as the benchmark itself separates
    subjects or views. Layout, classes, names and the other metadata are kept. -> `out`."""
    from stars.data.npz import DatasetError, load_split, save_dataset

    train = load_split(path, "train")
    if by not in train.meta:
        raise DatasetError(f"{path}: no {by}_train metadata to hold out by; it has {sorted(train.meta) or 'none'}")
    groups = train.meta[by]
    held = groups == groups.max()
    if held.all():
        raise DatasetError(f"{path}: every training sample has {by} {groups.max()}; nothing is left to train on")
    fit, val = train.subset(np.flatnonzero(~held)), train.subset(np.flatnonzero(held))
    extra = {f"{key}_{part}": split.meta[key] for key in train.meta for part, split in (("train", fit), ("test", val))}
    return save_dataset(
        out, fit.x, fit.y, val.x, val.y, num_classes=train.num_classes, layout=train.layout,
        num_persons=train.num_persons, one_hot=False, class_names=train.class_names or None,
        name=f"{train.name or Path(path).stem} (validation: {by} {groups.max()} of the training split)",
        extra=extra,
    )
