"""K-nearest-neighbour evaluation on pooled encoder features (cosine similarity).

Two classifiers, both computed on the device as a chunked matmul + top-k over the training bank:

* `knn_majority`: uniform vote among the k nearest training samples, as the official `knn_eval.py`
  (scikit-learn `KNeighborsClassifier(n_neighbors=k, metric="cosine")` on L2-normalised features).
  A tie in the vote goes to the smallest class label (scikit-learn: `argmax` over the sorted classes).
  Neighbours are ordered by similarity, equal similarities by training index, so when several training
  samples tie at the k-th distance the ones with the smallest indices are kept (scikit-learn's choice
  there depends on its partition algorithm; with continuous features such ties do not occur).
* `knn_weighted`: InstDisc-style weighted vote, each of the k neighbours adds `exp(similarity / T)` to
  its class; used by the official tuning monitor (k in {10, 20, 40}, T = 0.1).

`run_knn` is the `stars eval knn` protocol; `knn_monitor` scores an encoder during stage-2 tuning on the
TRAINING split (leave-one-out inside a fixed subset, or a held-out part; never the test split).

Baselines: `raw_coordinate_features` is the encoder's input without the encoder (the same centre crop,
resized to the same frame count, flattened: the centred coordinates), and `raw_coordinate_knn` runs the
same classifiers on it. `run_knn` reports it beside the encoder (`raw_majority_k1`, ...) and sets
`below_raw_baseline` when the encoder's majority k=1 accuracy is lower; `--ckpt random` gives the
random-init encoder of the data's layout. An encoder below either baseline has not learned features.

References: Wu et al. 2018 "Unsupervised feature learning via non-parametric instance discrimination"
(weighted kNN); scikit-learn `KNeighborsClassifier` (uniform vote and its tie rule).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from stars.data.feeder import CropConfig, DeviceSplit, eval_loader
from stars.data.npz import SkeletonSplit, load_split
from stars.eval.common import (
    ArrayLike,
    extract_features,
    load_encoder_for_eval,
    resolve_device,
    to_device_split,
    write_result,
)
from stars.precision import fp32_island


@dataclass(frozen=True)
class KNNConfig:
    """`stars eval knn`: defaults are the official knn_eval.py (majority) and tuning monitor (weighted)."""

    ks_majority: tuple[int, ...] = (1, 2, 5, 10)  # uniform-vote k values (README reports k = 1)
    ks_weighted: tuple[int, ...] = (10, 20, 40)  # weighted-vote k values (official tuning monitor)
    temperature: float = 0.1  # weighted vote: weight = exp(similarity / temperature)
    batch_size: int = 256  # feature extraction batch
    crop: float = 0.95  # centre crop ratio of both splits
    query_chunk: int = 1024  # test samples per similarity matmul
    seed: int = 0  # random initialisation of the encoder when no --ckpt is given (kNN draws nothing)
    raw_baseline: bool = True  # also the same kNN on the raw centred coordinates (raw_* metrics)
    precision: Literal["auto", "fp32", "bf16"] = "auto"  # feature extraction (stars.precision); kNN itself is fp32

    def __post_init__(self) -> None:
        for name in ("ks_majority", "ks_weighted"):
            if any(k < 1 for k in getattr(self, name)):
                raise ValueError(f"KNNConfig.{name}: every k must be >= 1, got {getattr(self, name)}")
        if self.temperature <= 0:
            raise ValueError(f"KNNConfig.temperature must be > 0, got {self.temperature}")
        if not 0 < self.crop <= 1:
            raise ValueError(f"KNNConfig.crop must be in (0, 1], got {self.crop}")
        if self.batch_size < 1 or self.query_chunk < 1:
            raise ValueError("KNNConfig.batch_size and query_chunk must be >= 1")


KNN_PRESETS = {"paper": KNNConfig(), "small": KNNConfig(), "tiny": KNNConfig(batch_size=64)}


@dataclass
class KNNOutcome:
    """Per-k results of one kNN classifier.

    top1: k -> top-1 accuracy in percent.
    predictions: k -> (Q,) int64 predicted labels of the test samples.
    k_used: k -> the number of neighbours actually used: min(k, training samples).
    """

    top1: dict[int, float]
    predictions: dict[int, np.ndarray]
    k_used: dict[int, int] = field(default_factory=dict)


def _features(values: ArrayLike, device: torch.device) -> torch.Tensor:
    """(N, D) features as an L2-normalised tensor on `device`; float64 stays float64, the rest is float32."""
    tensor = torch.as_tensor(values).to(device)
    if tensor.ndim != 2:
        raise ValueError(f"kNN: features must be (N, D) and (Q, D), got shape {tuple(tensor.shape)}")
    tensor = tensor.double() if tensor.dtype == torch.float64 else tensor.float()
    return F.normalize(tensor, dim=1)


def _check_inputs(train_f, train_y, test_f, test_y) -> None:
    if train_f.shape[1] != test_f.shape[1]:
        raise ValueError(
            f"kNN: features must be (N, D) and (Q, D), got {tuple(train_f.shape)} and {tuple(test_f.shape)}"
        )
    if train_y.shape != (train_f.shape[0],) or test_y.shape != (test_f.shape[0],):
        raise ValueError(
            f"kNN: labels must be (N,) and (Q,), got {tuple(train_y.shape)} and {tuple(test_y.shape)}"
        )
    if train_f.shape[0] == 0:
        raise ValueError("kNN: the training bank is empty")


def nearest_neighbours(
    bank: torch.Tensor, queries: torch.Tensor, k: int, chunk: int = 1024, exclude: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k cosine neighbours of every query in the bank (both already L2-normalised).

    bank: (N, D); queries: (Q, D) -> (similarities (Q, k), indices (Q, k)), ordered by decreasing
    similarity, equal similarities by increasing bank index (the first k of that total order).
    exclude: (Q,) bank index that query q may not return (leave-one-out, the query's own entry), or None.
    Computed in fp32 (float64 inputs in float64) even inside bf16 autocast.
    """
    with fp32_island(queries.device):  # similarities and top-k never in bf16, also under autocast
        return _nearest_neighbours(bank, queries, k, chunk, exclude)


def _nearest_neighbours(bank, queries, k, chunk, exclude):
    k = min(k, bank.shape[0] - (1 if exclude is not None else 0))
    if k < 1:
        raise ValueError("kNN: the training bank has no sample besides the query itself")
    if queries.dtype not in (torch.float32, torch.float64):
        queries = queries.float()
    bank = bank.to(queries.dtype)
    all_sims, all_idx = [], []
    for start in range(0, queries.shape[0], chunk):
        sims = queries[start : start + chunk] @ bank.T  # (B, N)
        if exclude is not None:
            own = exclude[start : start + chunk]
            sims[torch.arange(len(own), device=sims.device), own] = float("-inf")
        values, indices = sims.topk(k, dim=1)
        # Rows with more candidates than k at the k-th similarity: take the first k of a stable sort.
        boundary = (sims >= values[:, -1:]).sum(dim=1) > k
        if boundary.any():
            rows = boundary.nonzero(as_tuple=True)[0]
            order = torch.sort(sims[rows], dim=1, descending=True, stable=True).indices[:, :k]
            indices[rows] = order
        # Order within the k by (similarity desc, index asc).
        indices = indices.sort(dim=1).values
        values = sims.gather(1, indices)
        order = torch.sort(values, dim=1, descending=True, stable=True).indices
        all_sims.append(values.gather(1, order))
        all_idx.append(indices.gather(1, order))
    return torch.cat(all_sims), torch.cat(all_idx)


def _prepare(train_f, train_y, test_f, test_y, device, num_classes):
    device = resolve_device(device)
    bank, queries = _features(train_f, device), _features(test_f, device)
    if bank.dtype != queries.dtype:
        bank, queries = bank.double(), queries.double()
    bank_y = torch.as_tensor(train_y).to(device).long()
    query_y = torch.as_tensor(test_y).to(device).long()
    _check_inputs(bank, bank_y, queries, query_y)
    if num_classes is None:
        num_classes = int(max(bank_y.max().item(), query_y.max().item() if len(query_y) else 0)) + 1
    if bank_y.min().item() < 0 or bank_y.max().item() >= num_classes:
        raise ValueError(f"kNN: training labels must lie in [0, {num_classes})")
    return bank, bank_y, queries, query_y, num_classes


def _score(votes_fn, ks, bank, bank_y, queries, query_y, num_classes, chunk, exclude=None) -> KNNOutcome:
    k_max = max(ks)
    sims, idx = nearest_neighbours(bank, queries, k_max, chunk, exclude)
    neighbour_labels = bank_y[idx]  # (Q, k_max)
    top1, predictions, k_used = {}, {}, {}
    for k in ks:
        k_eff = k_used[k] = min(k, idx.shape[1])
        if k_eff < k:
            warnings.warn(f"kNN: k={k} exceeds the {idx.shape[1]} training samples that can be neighbours; all "
                          f"{k_eff} are used (reported as k{k}_used)", stacklevel=3)
        weights = votes_fn(sims[:, :k_eff])
        scores = torch.zeros(queries.shape[0], num_classes, dtype=weights.dtype, device=queries.device)
        scores.scatter_add_(1, neighbour_labels[:, :k_eff], weights)
        predicted = scores.argmax(dim=1)  # first maximum = smallest class label among tied classes
        predictions[k] = predicted.cpu().numpy().astype(np.int64)
        top1[k] = 100.0 * (predicted == query_y).double().mean().item() if len(query_y) else float("nan")
    return KNNOutcome(top1=top1, predictions=predictions, k_used=k_used)


def knn_majority(
    train_f: ArrayLike,
    train_y: ArrayLike,
    test_f: ArrayLike,
    test_y: ArrayLike,
    ks: Sequence[int] = (1, 2, 5, 10),
    *,
    num_classes: int | None = None,
    device: str | torch.device | None = None,
    chunk: int = 1024,
) -> KNNOutcome:
    """Uniform-vote cosine kNN. train_f: (N, D), train_y: (N,), test_f: (Q, D), test_y: (Q,).

    Features are L2-normalised here; float64 inputs are computed in float64, others in float32.
    """
    bank, bank_y, queries, query_y, num_classes = _prepare(train_f, train_y, test_f, test_y, device, num_classes)
    return _score(torch.ones_like, tuple(ks), bank, bank_y, queries, query_y, num_classes, chunk)


def knn_weighted(
    train_f: ArrayLike,
    train_y: ArrayLike,
    test_f: ArrayLike,
    test_y: ArrayLike,
    ks: Sequence[int] = (10, 20, 40),
    temperature: float = 0.1,
    *,
    num_classes: int | None = None,
    device: str | torch.device | None = None,
    chunk: int = 1024,
) -> KNNOutcome:
    """InstDisc weighted cosine kNN: class score = sum over the k neighbours of that class of exp(sim / T)."""
    if temperature <= 0:
        raise ValueError(f"knn_weighted: temperature must be > 0, got {temperature}")
    bank, bank_y, queries, query_y, num_classes = _prepare(train_f, train_y, test_f, test_y, device, num_classes)
    return _score(
        lambda sims: torch.exp(sims / temperature), tuple(ks), bank, bank_y, queries, query_y, num_classes, chunk
    )


def knn_weighted_leave_one_out(
    features: ArrayLike,
    labels: ArrayLike,
    ks: Sequence[int] = (10, 20, 40),
    temperature: float = 0.1,
    *,
    num_classes: int | None = None,
    device: str | torch.device | None = None,
    chunk: int = 1024,
) -> KNNOutcome:
    """Leave-one-out weighted kNN inside one set: features (N, D), labels (N,); sample i is classified by
    its k nearest other samples (its own entry is excluded), so no sample has to be held out of training."""
    if temperature <= 0:
        raise ValueError(f"knn_weighted_leave_one_out: temperature must be > 0, got {temperature}")
    bank, bank_y, queries, query_y, num_classes = _prepare(features, labels, features, labels, device, num_classes)
    own = torch.arange(bank.shape[0], device=bank.device)
    return _score(
        lambda sims: torch.exp(sims / temperature), tuple(ks), bank, bank_y, queries, query_y, num_classes, chunk,
        exclude=own,
    )


def knn_monitor(
    encoder: nn.Module,
    bank_split: SkeletonSplit,
    query_split: SkeletonSplit | None,
    *,
    ks: Sequence[int] = (10, 20, 40),
    temperature: float = 0.1,
    batch_size: int = 256,
    crop: float = 0.95,
    device: str | torch.device | None = None,
    feature_fn: Callable[[torch.Tensor], torch.Tensor] | None = None,
    precision: str = "auto",
) -> dict[str, float]:
    """Weighted-kNN accuracy for monitoring stage-2 tuning without touching the test split.

    bank_split / query_split: two disjoint parts of the TRAINING split (e.g. from
    `stars.data.splits.validation_holdout`); query_split None: leave-one-out inside bank_split (every sample
    scored against the others, nothing held out of training). feature_fn: maps a batch (N, C, T, V, M) to (N, D) features
    (default: `encoder(x)`, the pooled representation; pass the projector output to mirror the official
    monitor). -> {"knn_k10": %, "knn_k20": %, ..., "knn_best": max over k}.
    """
    bank_f, bank_y = extract_features(encoder, bank_split, crop, batch_size, device, feature_fn=feature_fn,
                                      progress=False, precision=precision)
    if query_split is None:
        outcome = knn_weighted_leave_one_out(
            bank_f, bank_y, ks, temperature, num_classes=bank_split.num_classes, device=device
        )
        metrics = {f"knn_k{k}": acc for k, acc in outcome.top1.items()}
        metrics["knn_best"] = max(outcome.top1.values())
        return metrics
    query_f, query_y = extract_features(encoder, query_split, crop, batch_size, device, feature_fn=feature_fn,
                                        progress=False, precision=precision)
    outcome = knn_weighted(
        bank_f, bank_y, query_f, query_y, ks, temperature,
        num_classes=max(bank_split.num_classes, query_split.num_classes), device=device,
    )
    metrics = {f"knn_k{k}": acc for k, acc in outcome.top1.items()}
    metrics["knn_best"] = max(outcome.top1.values())
    return metrics


@torch.no_grad()
def raw_coordinate_features(
    split: SkeletonSplit | DeviceSplit, num_frames: int, crop: float = 0.95, batch_size: int = 256,
    device: str | torch.device | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The encoder's input without the encoder: centre crop `crop` of the recorded frames, resized to
    `num_frames`, flattened. -> (features (N, C*num_frames*V*M) float32, labels (N,) int64), file order."""
    device = resolve_device(device)
    data = to_device_split(split, device)
    loader = eval_loader(data, batch_size, CropConfig(eval_ratio=crop, num_frames=num_frames))
    features, labels = [], []
    for batch in loader:
        features.append(batch["x"].flatten(1).float().cpu())
        labels.append(batch["y"].cpu())
    return torch.cat(features).numpy(), torch.cat(labels).numpy().astype(np.int64)


def raw_coordinate_knn(
    data: str | Path, num_frames: int, cfg: KNNConfig = KNNConfig(), device: str | torch.device | None = None,
    splits: tuple[SkeletonSplit, SkeletonSplit] | None = None,
) -> dict[str, float]:
    """The raw-coordinate baseline of `data`: kNN (cfg's classifiers and k) on `raw_coordinate_features`.

    -> {"raw_majority_k1": %, ..., "raw_weighted_k10": %, ...}. splits: the loaded (train, test), if at hand.
    """
    train, test = splits if splits is not None else (load_split(data, "train"), load_split(data, "test"))
    train_f, train_y = raw_coordinate_features(train, num_frames, cfg.crop, cfg.batch_size, device)
    test_f, test_y = raw_coordinate_features(test, num_frames, cfg.crop, cfg.batch_size, device)
    return {f"raw_{k}": v for k, v in _classify(train_f, train_y, test_f, test_y, cfg, train, test, device).items()}


def below_raw_baseline(metrics: dict[str, float], key: str = "majority_k1") -> bool | None:
    """True when the encoder's `key` accuracy is below the raw-coordinate one (`raw_<key>`); None without it."""
    if f"raw_{key}" not in metrics or key not in metrics:
        return None
    return bool(metrics[key] < metrics[f"raw_{key}"])


def _classify(train_f, train_y, test_f, test_y, cfg: KNNConfig, train, test, device) -> dict[str, float]:
    outcomes = _outcomes(train_f, train_y, test_f, test_y, cfg, max(train.num_classes, test.num_classes), device)
    return {f"{name}_k{k}": acc for name, outcome in outcomes.items() for k, acc in outcome.top1.items()}


def _outcomes(train_f, train_y, test_f, test_y, cfg: KNNConfig, num_classes: int, device) -> dict[str, KNNOutcome]:
    majority = knn_majority(
        train_f, train_y, test_f, test_y, cfg.ks_majority, num_classes=num_classes, device=device,
        chunk=cfg.query_chunk,
    )
    weighted = knn_weighted(
        train_f, train_y, test_f, test_y, cfg.ks_weighted, cfg.temperature, num_classes=num_classes,
        device=device, chunk=cfg.query_chunk,
    )
    return {"majority": majority, "weighted": weighted}


def run_knn(
    ckpt: str | None,
    data: str,
    out: str | Path,
    cfg: KNNConfig = KNNConfig(),
    device: str | torch.device | None = None,
    preset: str | None = None,
) -> dict[str, float]:
    """`stars eval knn`: features of both splits of `data`, majority and weighted kNN on the test split,
    and (cfg.raw_baseline) the raw-coordinate baseline beside them with the `below_raw_baseline` flag.

    Writes to `out`: metrics.json (top-1 % per classifier and k), config.yaml, run.json, and
    predictions_{majority,weighted}_k{k}.npy + labels.npy (for the confusion matrix).
    """
    out = Path(out)
    device = resolve_device(device)
    encoder, info = load_encoder_for_eval(ckpt, preset, device, seed=cfg.seed, data=data)
    train, test = load_split(data, "train"), load_split(data, "test")
    train_f, train_y = extract_features(encoder, train, cfg.crop, cfg.batch_size, device, precision=cfg.precision)
    test_f, test_y = extract_features(encoder, test, cfg.crop, cfg.batch_size, device, precision=cfg.precision)
    num_classes = max(train.num_classes, test.num_classes)
    outcomes = _outcomes(train_f, train_y, test_f, test_y, cfg, num_classes, device)
    metrics: dict[str, float] = {}
    out.mkdir(parents=True, exist_ok=True)
    for name, outcome in outcomes.items():
        for k, acc in outcome.top1.items():
            metrics[f"{name}_k{k}"] = acc
            if outcome.k_used[k] != k:
                metrics[f"{name}_k{k}_used"] = outcome.k_used[k]
            np.save(out / f"predictions_{name}_k{k}.npy", outcome.predictions[k])
    np.save(out / "labels.npy", test_y)
    if cfg.raw_baseline:
        metrics.update(raw_coordinate_knn(data, encoder.cfg.num_frames, cfg, device, splits=(train, test)))
        metrics["below_raw_baseline"] = below_raw_baseline(metrics)
    write_result(
        out, "knn", metrics, cfg, data, cfg.seed, device,
        encoder=info, num_train=len(train), num_test=len(test), feature_dim=int(train_f.shape[1]),
    )
    return metrics


__all__ = [
    "KNNConfig", "KNN_PRESETS", "KNNOutcome", "nearest_neighbours", "knn_majority", "knn_weighted",
    "knn_weighted_leave_one_out", "knn_monitor", "run_knn", "raw_coordinate_features", "raw_coordinate_knn",
    "below_raw_baseline",
]
