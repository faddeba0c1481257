"""Confusion matrix of kNN predictions (supplementary Fig. 3: NTU-60 XSub, k = 10) and its top confusions.

The official `draw_confusion_matrix.py` reads prediction files that no released code writes (reference
§8.2 item 18); here `run_confusion` computes the kNN predictions itself (uniform vote, k = 10 by default,
as in the figure caption) and draws the row-normalised matrix: entry (i, j) is the fraction of test
samples of true class i predicted as class j, so every row with samples sums to 1.

Figures are built with the object-oriented `matplotlib.figure.Figure` (Agg canvas, no pyplot state).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure


def confusion_counts(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """y_true, y_pred: (N,) labels in [0, num_classes) -> (num_classes, num_classes) counts, rows = true."""
    y_true, y_pred = np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)
    if y_true.shape != y_pred.shape or y_true.ndim != 1:
        raise ValueError(f"confusion: y_true and y_pred must be (N,), got {y_true.shape} and {y_pred.shape}")
    for name, values in (("y_true", y_true), ("y_pred", y_pred)):
        if len(values) and (values.min() < 0 or values.max() >= num_classes):
            raise ValueError(f"confusion: {name} has labels outside [0, {num_classes})")
    counts = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(counts, (y_true, y_pred), 1)
    return counts


def row_normalise(counts: np.ndarray) -> np.ndarray:
    """(C, C) counts -> (C, C) rates, each row divided by its sum (rows without samples stay 0)."""
    totals = counts.sum(axis=1, keepdims=True)
    return np.divide(counts, totals, out=np.zeros(counts.shape, dtype=np.float64), where=totals > 0)


def _names(class_names: Sequence[str], num_classes: int) -> list[str]:
    if class_names and len(class_names) != num_classes:
        raise ValueError(f"confusion: {len(class_names)} class names for {num_classes} classes")
    return list(class_names) if class_names else [str(c) for c in range(num_classes)]


def confusion_figure(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    class_names: Sequence[str] = (),
    *,
    num_classes: int | None = None,
    title: str = "",
) -> Figure:
    """Row-normalised confusion heat map with class names on both axes ("Predicted" x, "True" y)."""
    import seaborn as sns  # imported here: a second of start-up that only figures need

    if num_classes is None:
        num_classes = len(class_names) if class_names else int(max(np.max(y_true), np.max(y_pred))) + 1
    names = _names(class_names, num_classes)
    rates = row_normalise(confusion_counts(y_true, y_pred, num_classes))
    side = max(4.0, 0.16 * num_classes + 3.0)
    fontsize = max(4.0, min(9.0, 400.0 / max(num_classes, 1) / 2))
    fig = Figure(figsize=(side + 1.0, side))
    ax = fig.subplots()
    sns.heatmap(
        rates, ax=ax, vmin=0.0, vmax=1.0, cmap="Blues", square=True, xticklabels=names, yticklabels=names,
        cbar_kws={"label": "fraction of the true class", "shrink": 0.6},
    )
    ax.set_xlabel("Predicted")
    ax.set_ylabel("True")
    ax.tick_params(axis="both", labelsize=fontsize)
    for label in ax.get_xticklabels():
        label.set_rotation(90)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


def top_confusions(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    class_names: Sequence[str] = (),
    top: int = 20,
    *,
    num_classes: int | None = None,
) -> pd.DataFrame:
    """The `top` most frequent off-diagonal (true, predicted) pairs.

    Columns: true, predicted (names), true_label, predicted_label, count, rate (= count / samples of the
    true class). Sorted by rate, then count (both decreasing), then labels.
    """
    if num_classes is None:
        num_classes = len(class_names) if class_names else int(max(np.max(y_true), np.max(y_pred))) + 1
    names = _names(class_names, num_classes)
    counts = confusion_counts(y_true, y_pred, num_classes)
    rates = row_normalise(counts)
    rows = [
        (names[i], names[j], i, j, int(counts[i, j]), float(rates[i, j]))
        for i in range(num_classes)
        for j in range(num_classes)
        if i != j and counts[i, j] > 0
    ]
    rows.sort(key=lambda r: (-r[5], -r[4], r[2], r[3]))
    return pd.DataFrame(
        rows[:top], columns=["true", "predicted", "true_label", "predicted_label", "count", "rate"]
    )


@dataclass(frozen=True)
class ConfusionConfig:
    """`stars eval confusion`: kNN predictions on the test split, then Fig. 3 and the top confusions."""

    vote: Literal["majority", "weighted"] = "majority"
    k: int = 10  # Fig. 3 caption: k = 10
    temperature: float = 0.1  # weighted vote only: weight = exp(similarity / temperature)
    top: int = 20  # rows of top_confusions.csv
    batch_size: int = 256  # feature extraction
    crop: float = 0.95  # centre crop of both splits
    seed: int = 0  # random initialisation of the encoder when no --ckpt is given
    dpi: int = 200
    precision: Literal["auto", "fp32", "bf16"] = "auto"  # feature extraction (stars.precision); kNN is fp32

    def __post_init__(self) -> None:
        if self.vote not in ("majority", "weighted"):
            raise ValueError(f"ConfusionConfig.vote must be 'majority' or 'weighted', got {self.vote!r}")
        if self.k < 1:
            raise ValueError(f"ConfusionConfig.k must be >= 1, got {self.k}")
        if self.temperature <= 0:
            raise ValueError(f"ConfusionConfig.temperature must be > 0, got {self.temperature}")


CONFUSION_PRESETS = {"paper": ConfusionConfig(), "small": ConfusionConfig(), "tiny": ConfusionConfig(dpi=100)}


def run_confusion(
    ckpt: str | None,
    data: str,
    out: str | Path,
    cfg: ConfusionConfig = ConfusionConfig(),
    device: str | torch.device | None = None,
    preset: str | None = None,
) -> dict[str, float]:
    """`stars eval confusion`: confusion.png, confusion_counts.csv, top_confusions.csv, metrics.json."""
    from stars.data.npz import load_split
    from stars.eval.common import extract_features, load_encoder_for_eval, resolve_device, write_result
    from stars.eval.knn import knn_majority, knn_weighted
    from stars.results import write_figure

    out = Path(out)
    device = resolve_device(device)
    encoder, info = load_encoder_for_eval(ckpt, preset, device, seed=cfg.seed, data=data)
    train, test = load_split(data, "train"), load_split(data, "test")
    num_classes = max(train.num_classes, test.num_classes)
    train_f, train_y = extract_features(encoder, train, cfg.crop, cfg.batch_size, device, precision=cfg.precision)
    test_f, test_y = extract_features(encoder, test, cfg.crop, cfg.batch_size, device, precision=cfg.precision)
    if cfg.vote == "majority":
        outcome = knn_majority(train_f, train_y, test_f, test_y, (cfg.k,), num_classes=num_classes, device=device)
    else:
        outcome = knn_weighted(
            train_f, train_y, test_f, test_y, (cfg.k,), cfg.temperature, num_classes=num_classes, device=device
        )
    predictions = outcome.predictions[cfg.k]
    names = list(test.class_names) or [str(c) for c in range(num_classes)]
    fig = confusion_figure(
        test_y, predictions, names, num_classes=num_classes,
        title=f"kNN ({cfg.vote}, k={cfg.k}) on {test.name} test",
    )
    out.mkdir(parents=True, exist_ok=True)
    write_figure(fig, out, "confusion", dpi=cfg.dpi)
    counts = confusion_counts(test_y, predictions, num_classes)
    pd.DataFrame(counts, index=names, columns=names).to_csv(out / "confusion_counts.csv")
    top_confusions(test_y, predictions, names, cfg.top, num_classes=num_classes).to_csv(
        out / "top_confusions.csv", index=False
    )
    np.save(out / "predictions.npy", predictions)
    np.save(out / "labels.npy", test_y)
    metrics = {f"{cfg.vote}_k{cfg.k}": outcome.top1[cfg.k]}
    write_result(out, "confusion", metrics, cfg, data, cfg.seed, device, encoder=info)
    return metrics


__all__ = [
    "confusion_counts", "row_normalise", "confusion_figure", "top_confusions", "ConfusionConfig",
    "CONFUSION_PRESETS", "run_confusion",
]
