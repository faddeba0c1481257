"""Few-shot evaluation on classes the encoder never saw (supplementary Table 8).

No official code exists (reference §6.3, §10 item 4); our protocol, stated in full in docs/protocols.md:

* Class set. "ntu120-unseen": an NTU-60 encoder evaluated on an NTU-120 file, using the samples of the
  60 classes A061-A120 (0-based labels 60..119) recorded in setups 18-32 (when the file stores setups),
  i.e. the README's "NTU-120 minus NTU-60" set. "heldout": `heldout_classes` classes drawn with `seed`
  from the file's classes (`splits.heldout_class_split`). "all": every class. "auto" picks
  ntu120-unseen for a 120-class file, else heldout when heldout_classes > 0, else all.
* Pool: the samples of those classes in `split` (default: test); pooled features (centre crop 0.95)
  are computed once and reused by every episode.
* Episode e for k shots: `ways` classes (0 = all classes of the set), k support samples per class drawn
  with seed (seed, k, e) by `splits.sample_episode`, every other pool sample of those classes is a query.
* Classifier: cosine similarity of L2-normalised features; "nearest" assigns a query the label of its
  single nearest support sample (for k > 1 this is 1-NN over all k x ways supports, not a vote);
  "prototype" compares with the re-normalised mean of each class's supports.
* Report per k: mean episode accuracy (%) over `episodes` episodes, the population standard deviation
  (ddof = 0) and the 95 % interval half-width 1.96 * std / sqrt(episodes).

The second reading (`released_knn`, on by default) matches the released tools instead: the README's few-shot
file is NTU-120 XSub restricted to the classes absent from NTU-60, and the only evaluation script released
is `knn_eval.py` (reference §6.2-6.3). So: the pool classes of the TRAINING split form the bank, the pool of
the test split the queries, majority-vote cosine kNN with k in `released_knn_ks` = (1, 2, 5), reported as
`released_knn_k{k}` (k neighbours, not k shots per class).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from stars.data.npz import SkeletonSplit, load_split
from stars.data.splits import (
    fewshot_ntu120_classes,
    heldout_class_split,
    ntu120_fewshot_mask,
    sample_episode,
)
from stars.eval.common import (
    ArrayLike,
    extract_features,
    load_encoder_for_eval,
    resolve_device,
    write_result,
)
from stars.eval.knn import knn_majority
from stars.precision import at_least_fp32, fp32_island

CLASS_SETS = ("auto", "ntu120-unseen", "heldout", "all")
CLASSIFIERS = ("nearest", "prototype")


@dataclass(frozen=True)
class FewShotConfig:
    """Few-shot protocol settings (ours; the paper does not state them)."""

    shots: tuple[int, ...] = (1, 2, 5)
    episodes: int = 20  # episodes per shot count (>= 10)
    ways: int = 0  # classes per episode; 0 = every class of the set
    classes: Literal["auto", "ntu120-unseen", "heldout", "all"] = "auto"
    heldout_classes: int = 0  # "heldout": how many classes of the file are evaluated
    classifier: Literal["nearest", "prototype"] = "nearest"  # 1-NN to any support sample | class mean
    split: Literal["train", "test"] = "test"  # the split whose samples form the pool
    seed: int = 0  # episodes, held-out classes, and the random initialisation when no --ckpt
    crop: float = 0.95
    batch_size: int = 256
    precision: Literal["auto", "fp32", "bf16"] = "auto"  # feature extraction (stars.precision); episodes are fp32
    released_knn: bool = True  # also the released-script reading: majority kNN, train-split bank, test queries
    released_knn_ks: tuple[int, ...] = (1, 2, 5)

    def __post_init__(self) -> None:
        if not self.shots or any(k < 1 for k in self.shots):
            raise ValueError(f"FewShotConfig.shots must be positive, got {self.shots}")
        if self.episodes < 10:
            raise ValueError(f"FewShotConfig.episodes must be >= 10 for a meaningful interval, got {self.episodes}")
        if self.ways < 0 or self.ways == 1:
            raise ValueError(f"FewShotConfig.ways must be 0 (all) or >= 2, got {self.ways}")
        if self.classes not in CLASS_SETS:
            raise ValueError(f"FewShotConfig.classes must be one of {CLASS_SETS}, got {self.classes!r}")
        if self.classifier not in CLASSIFIERS:
            raise ValueError(f"FewShotConfig.classifier must be one of {CLASSIFIERS}, got {self.classifier!r}")
        if self.split not in ("train", "test"):
            raise ValueError(f"FewShotConfig.split must be 'train' or 'test', got {self.split!r}")
        if not self.released_knn_ks or any(k < 1 for k in self.released_knn_ks):
            raise ValueError(f"FewShotConfig.released_knn_ks must be positive, got {self.released_knn_ks}")
        if self.heldout_classes < 0:
            raise ValueError(f"FewShotConfig.heldout_classes must be >= 0, got {self.heldout_classes}")


FEWSHOT_PRESETS = {"paper": FewShotConfig(), "small": FewShotConfig(), "tiny": FewShotConfig(episodes=10)}


def episode_seed(seed: int, shots: int, episode: int) -> int:
    """The integer seed of episode `episode` of the `shots`-shot evaluation."""
    return int(np.random.SeedSequence([seed, shots, episode]).generate_state(1)[0])


def fewshot_pool(split: SkeletonSplit, cfg: FewShotConfig) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """-> (pool indices into split (sorted), evaluated classes (sorted), description)."""
    mode = cfg.classes
    if mode == "auto":
        mode = "ntu120-unseen" if split.num_classes == 120 else ("heldout" if cfg.heldout_classes > 0 else "all")
    info: dict[str, Any] = {"class_set": mode}
    in_pool = np.ones(len(split), dtype=bool)
    if mode == "ntu120-unseen":
        if split.num_classes != 120:
            raise ValueError(f"{split.path}: class set 'ntu120-unseen' needs an NTU-120 file (120 classes), "
                             f"this one has {split.num_classes}")
        classes = fewshot_ntu120_classes()
        if "setup" in split.meta:
            in_pool &= ntu120_fewshot_mask(split.meta)
            info["setups"] = "18-32"
        else:
            info["setups"] = "not stored in the file; classes 61-120 only"
    elif mode == "heldout":
        if cfg.heldout_classes < 2:
            raise ValueError("class set 'heldout' needs heldout_classes >= 2")
        _, classes = heldout_class_split(split.num_classes, cfg.heldout_classes, cfg.seed)
    else:
        classes = np.arange(split.num_classes)
    in_pool &= np.isin(split.y, classes)
    present = np.unique(split.y[in_pool])
    missing = np.setdiff1d(classes, present)
    if len(missing):
        raise ValueError(f"{split.path} ({split.split}): evaluated classes {missing.tolist()[:10]} have no samples")
    info["classes"] = [int(c) for c in classes]
    return np.flatnonzero(in_pool), np.asarray(classes, dtype=np.int64), info


def episode_predictions(
    features: torch.Tensor, labels: np.ndarray, support: np.ndarray, query: np.ndarray, classifier: str = "nearest"
) -> np.ndarray:
    """features: (P, D) L2-normalised on the device; support, query: indices into it -> (Q,) predicted labels."""
    support_labels = torch.as_tensor(labels[support], device=features.device)
    support_f = at_least_fp32(features[torch.as_tensor(support)])
    query_f = at_least_fp32(features[torch.as_tensor(query)])
    with fp32_island(features.device):  # similarities and argmax in fp32, also under autocast
        if classifier == "nearest":
            predicted = support_labels[(query_f @ support_f.T).argmax(dim=1)]
        elif classifier == "prototype":
            classes = torch.unique(support_labels)
            prototypes = torch.stack([support_f[support_labels == c].mean(dim=0) for c in classes])
            predicted = classes[(query_f @ F.normalize(prototypes, dim=1).T).argmax(dim=1)]
        else:
            raise ValueError(f"classifier must be one of {CLASSIFIERS}, got {classifier!r}")
    return predicted.cpu().numpy()


def fewshot_accuracy(
    features: ArrayLike,
    labels: ArrayLike,
    classes: Sequence[int],
    shots: int,
    episodes: int = 20,
    seed: int = 0,
    *,
    ways: int = 0,
    classifier: str = "nearest",
    device: str | torch.device | None = None,
) -> dict[str, Any]:
    """Episode accuracies of `shots`-shot classification over `classes`.

    features: (P, D) pool features; labels: (P,). -> {"mean", "std" (ddof 0), "ci95" (1.96 std / sqrt(E)),
    "accuracies": per-episode top-1 in %}.
    """
    device = resolve_device(device)
    labels = np.asarray(labels, dtype=np.int64)
    normalised = F.normalize(torch.as_tensor(np.asarray(features), dtype=torch.float32, device=device), dim=1)
    classes = np.asarray(classes, dtype=np.int64)
    if ways > len(classes):
        raise ValueError(f"fewshot: ways = {ways} exceeds the {len(classes)} evaluated classes")
    accuracies = []
    for episode in range(episodes):
        seed_e = episode_seed(seed, shots, episode)
        chosen = classes
        if ways:
            chosen = np.sort(np.random.default_rng([seed_e, 1]).choice(classes, size=ways, replace=False))
        support, query = sample_episode(labels, chosen, shots, seed_e)
        predicted = episode_predictions(normalised, labels, support, query, classifier)
        accuracies.append(100.0 * float((predicted == labels[query]).mean()))
    values = np.asarray(accuracies)
    std = float(values.std(ddof=0))
    return {
        "mean": float(values.mean()),
        "std": std,
        "ci95": 1.96 * std / np.sqrt(len(values)),
        "accuracies": [float(v) for v in values],
    }


def released_knn_reading(
    encoder, data: str, cfg: FewShotConfig, pool_features: np.ndarray, pool_labels: np.ndarray, device
) -> dict[str, float]:
    """Majority cosine kNN of the pool (queries) against the same classes of the other split (bank; the
    training split when the pool is the test split), k in cfg.released_knn_ks -> {"released_knn_k{k}": %}."""
    bank_split = load_split(data, "train" if cfg.split == "test" else "test")
    bank_pool, _, _ = fewshot_pool(bank_split, cfg)
    bank_features, bank_labels = extract_features(
        encoder, bank_split.subset(bank_pool), cfg.crop, cfg.batch_size, device, precision=cfg.precision
    )
    outcome = knn_majority(bank_features, bank_labels, pool_features, pool_labels, cfg.released_knn_ks,
                           num_classes=bank_split.num_classes, device=device)
    return {f"released_knn_k{k}": acc for k, acc in outcome.top1.items()}


def run_fewshot(
    ckpt: str | None,
    data: str,
    out: str | Path,
    cfg: FewShotConfig = FewShotConfig(),
    device: str | torch.device | None = None,
    preset: str | None = None,
) -> dict[str, Any]:
    """`stars eval fewshot`: features of the pool once, then `episodes` episodes per shot count.

    Writes metrics.json ({k}shot_mean / _ci95 / _std), episodes.csv (every episode), config.yaml, run.json.
    """
    out = Path(out)
    device = resolve_device(device)
    split = load_split(data, cfg.split)
    pool, classes, info = fewshot_pool(split, cfg)
    encoder, encoder_info = load_encoder_for_eval(ckpt, preset, device, seed=cfg.seed, data=data)
    features, labels = extract_features(
        encoder, split.subset(pool), cfg.crop, cfg.batch_size, device, precision=cfg.precision
    )
    metrics: dict[str, Any] = {}
    rows = []
    for shots in cfg.shots:
        result = fewshot_accuracy(
            features, labels, classes, shots, cfg.episodes, cfg.seed, ways=cfg.ways, classifier=cfg.classifier,
            device=device,
        )
        metrics[f"{shots}shot_mean"] = result["mean"]
        metrics[f"{shots}shot_ci95"] = result["ci95"]
        metrics[f"{shots}shot_std"] = result["std"]
        rows += [{"shots": shots, "episode": e, "top1": a} for e, a in enumerate(result["accuracies"])]
    if cfg.released_knn:
        metrics.update(released_knn_reading(encoder, data, cfg, features, labels, device))
    out.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(out / "episodes.csv", index=False)
    write_result(
        out, "fewshot", metrics, cfg, data, cfg.seed, device, encoder=encoder_info, pool_size=len(pool),
        num_classes_evaluated=len(classes), **info,
    )
    return metrics


__all__ = [
    "FewShotConfig", "FEWSHOT_PRESETS", "episode_seed", "fewshot_pool", "episode_predictions", "fewshot_accuracy",
    "released_knn_reading", "run_fewshot",
]
