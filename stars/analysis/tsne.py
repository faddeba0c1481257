"""t-SNE of pooled encoder features (supplementary Fig. 2).

Selection as the official `tsne_visualization.py`: the test split, centre crop 0.95, the first
`per_class` samples in file order of each of 15 classes (the fixed official list of 0-based labels
when the dataset has 60 classes, otherwise the first 15 classes, or all when fewer), pooled features
without normalisation, scikit-learn TSNE 2-D with random_state 42, learning_rate "auto", init "pca".

Figures are built with the object-oriented `matplotlib.figure.Figure` (Agg canvas, no pyplot state), so
they save from scripts and display in notebooks alike.

Fig. 2 compares the MAMP output, the same features passed through a freshly initialised STARS
projector, and the features after STARS tuning. The random projector is `ProjectorPredictor.projector`
(BatchNorm1d, weight N(1, 0.02), bias 0) applied in TRAIN mode, i.e. every dimension is standardised
with the statistics of the plotted samples (one batch) and then scaled/shifted by the random affine
parameters: this is the map the NNCLR loss sees when stage 2 starts. In eval mode a fresh BatchNorm
uses running statistics (0, 1) and is a near-identity, so that panel would trivially repeat the first.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from matplotlib.figure import Figure
from sklearn.manifold import TSNE

OFFICIAL_TSNE_CLASSES = (1, 2, 5, 10, 15, 18, 20, 22, 25, 28, 30, 40, 50, 55, 57)  # 0-based NTU-60 labels
DEFAULT_NUM_CLASSES_SHOWN = 15


@dataclass(frozen=True)
class TSNEConfig:
    """`stars eval tsne`: one panel for `--ckpt`, optionally a random-projector and a compared checkpoint."""

    classes: tuple[int, ...] = ()  # 0-based labels to show; () = official 15 for 60 classes, else first 15
    per_class: int = 100  # first samples in file order per class
    random_state: int = 42  # t-SNE seed, the random projector's, and the encoder's when no --ckpt
    split: Literal["train", "test"] = "test"
    crop: float = 0.95
    batch_size: int = 256
    label: str = "encoder output"  # panel title of --ckpt
    random_projector: bool = False  # add the --ckpt features through a random projector (Fig. 2)
    compare_ckpt: str = ""  # another checkpoint (e.g. after STARS tuning) shown as the last panel
    compare_label: str = "after tuning"
    dpi: int = 300
    precision: Literal["auto", "fp32", "bf16"] = "auto"  # feature extraction (stars.precision)

    def __post_init__(self) -> None:
        if self.per_class < 1:
            raise ValueError(f"TSNEConfig.per_class must be >= 1, got {self.per_class}")
        if self.split not in ("train", "test"):
            raise ValueError(f"TSNEConfig.split must be 'train' or 'test', got {self.split!r}")


TSNE_PRESETS = {
    "paper": TSNEConfig(),
    "small": TSNEConfig(per_class=50, dpi=150),
    "tiny": TSNEConfig(per_class=20, dpi=100),
}


def tsne_classes(num_classes: int, classes: Sequence[int] = ()) -> tuple[int, ...]:
    """Labels shown: `classes` if given, the official 15 for 60 classes, else the first 15 (or all)."""
    if classes:
        bad = [c for c in classes if not 0 <= c < num_classes]
        if bad:
            raise ValueError(f"t-SNE classes {bad} outside [0, {num_classes})")
        return tuple(int(c) for c in classes)
    if num_classes == 60:
        return OFFICIAL_TSNE_CLASSES
    return tuple(range(min(num_classes, DEFAULT_NUM_CLASSES_SHOWN)))


def select_per_class(labels: np.ndarray, classes: Sequence[int], per_class: int) -> np.ndarray:
    """Indices of the first `per_class` samples (file order) of each class, class by class. labels: (N,)."""
    labels = np.asarray(labels)
    picked = [np.flatnonzero(labels == c)[:per_class] for c in classes]
    return np.concatenate(picked) if picked else np.zeros(0, dtype=np.int64)


def random_projector_features(features: np.ndarray, seed: int = 42) -> np.ndarray:
    """features: (N, D) -> (N, D) through a freshly initialised STARS projector in train mode
    (batch statistics of these N samples, then the random affine parameters)."""
    from stars.models.heads import ProjectorPredictor

    generator_state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        projector = ProjectorPredictor(embed_dim=features.shape[1]).projector
    finally:
        torch.random.set_rng_state(generator_state)
    projector.train()
    with torch.no_grad():
        return projector(torch.as_tensor(features, dtype=torch.float32)).numpy()


def class_palette(n: int) -> list[tuple[float, float, float]]:
    """n distinct colours: tab20 with its ten dark shades first (= tab10 for n <= 10), husl beyond 20."""
    import seaborn as sns  # imported here: a second of start-up that only figures need

    if n > 20:
        return sns.color_palette("husl", n)
    tab20 = sns.color_palette("tab20", 20)
    return [tab20[i] for i in list(range(0, 20, 2)) + list(range(1, 20, 2))][:n]


def embed_tsne(features: np.ndarray, random_state: int = 42) -> np.ndarray:
    """features: (N, D) -> (N, 2) t-SNE embedding (perplexity 30, lowered for very small N)."""
    n = len(features)
    if n < 3:
        raise ValueError(f"t-SNE needs at least 3 samples, got {n}")
    perplexity = min(30.0, (n - 1) / 3.0)
    tsne = TSNE(n_components=2, perplexity=perplexity, learning_rate="auto", init="pca", random_state=random_state)
    return tsne.fit_transform(np.asarray(features, dtype=np.float64))


def tsne_figure(
    feature_sets: Mapping[str, tuple[np.ndarray, np.ndarray]],
    classes: Sequence[int] = (),
    per_class: int = 100,
    random_state: int = 42,
    *,
    num_classes: int | None = None,
    class_names: Sequence[str] = (),
    panel_size: float = 4.5,
    scores: Mapping[str, float] | None = None,
) -> Figure:
    """One t-SNE panel per feature set (seaborn scatter plots, one colour per class).

    feature_sets: title -> (features (N, D), labels (N,)), samples in file order of the split.
    classes: 0-based labels to show (default rule in `tsne_classes`); per_class: first samples per class.
    scores: title -> a number shown under the panel's title (the notebooks give the silhouette score).
    Axes are labelled "t-SNE 1" / "t-SNE 2"; the legend names the classes.
    """
    import seaborn as sns  # imported here: a second of start-up that only figures need

    if not feature_sets:
        raise ValueError("tsne_figure: no feature sets given")
    if num_classes is None:
        num_classes = int(max(np.max(labels) for _, labels in feature_sets.values())) + 1
    shown = tsne_classes(num_classes, classes)
    palette = class_palette(len(shown))
    fig = Figure(figsize=(panel_size * len(feature_sets) + 1.5, panel_size))
    axes = fig.subplots(1, len(feature_sets), squeeze=False)
    for ax, (title, (features, labels)) in zip(axes[0], feature_sets.items()):
        if len(features) != len(labels):
            raise ValueError(f"tsne_figure: panel {title!r} has {len(features)} features for {len(labels)} labels")
        index = select_per_class(labels, shown, per_class)
        points = embed_tsne(np.asarray(features)[index], random_state)
        picked = np.asarray(labels)[index]
        name_of = {label: class_names[label] if class_names else f"class {label}" for label in shown}
        names = list(name_of.values())
        hue = [name_of[int(label)] for label in picked]
        sns.scatterplot(x=points[:, 0], y=points[:, 1], hue=hue, hue_order=names, palette=palette, s=8,
                        linewidth=0, ax=ax, legend="full")
        legend = ax.get_legend()
        if legend is not None:
            legend.remove()
        ax.set_title(title if not scores or title not in scores else f"{title}\nsilhouette {scores[title]:.3f}")
        ax.set_xlabel("t-SNE 1")
        ax.set_ylabel("t-SNE 2")
        ax.set_xticks([])
        ax.set_yticks([])
    handles, names = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, names, loc="center right", fontsize=7, markerscale=2.5, frameon=False)
    fig.tight_layout(rect=(0, 0, 1 - 1.4 / fig.get_figwidth(), 1))
    return fig


def separation_caption(scores: Mapping[str, float], tolerance: float = 0.01) -> str:
    """In words, what per-panel silhouette scores show: every later panel compared with the first.

    scores: panel title -> silhouette score, in panel order. A difference within `tolerance` reads as
    "about as well as"; the sentence is computed from the numbers, never assumed.
    """
    if not scores:
        raise ValueError("separation_caption: no scores")
    titles = list(scores)
    base = titles[0]
    parts = [f"Silhouette (cosine): {', '.join(f'{t} {v:.3f}' for t, v in scores.items())}."]
    for title in titles[1:]:
        diff = scores[title] - scores[base]
        if abs(diff) <= tolerance:
            verb = "separates the classes about as well as"
        elif diff > 0:
            verb = "separates the classes better than"
        else:
            verb = "separates the classes less than"
        parts.append(f"{title} {verb} {base} ({diff:+.3f}).")
    return " ".join(parts)


def run_tsne(
    ckpt: str | None,
    data: str,
    out: str | Path,
    cfg: TSNEConfig = TSNEConfig(),
    device: str | torch.device | None = None,
    preset: str | None = None,
) -> dict[str, float]:
    """`stars eval tsne`: features of `cfg.split`, tsne.png (+ the selected features as npz) in `out`."""
    from stars.data.npz import load_split
    from stars.eval.common import extract_features, load_encoder_for_eval, resolve_device, write_result
    from stars.results import write_figure

    out = Path(out)
    device = resolve_device(device)
    split = load_split(data, cfg.split)
    shown = tsne_classes(split.num_classes, cfg.classes)
    index = select_per_class(split.y, shown, cfg.per_class)
    subset = split.subset(index)
    encoder, info = load_encoder_for_eval(ckpt, preset, device, seed=cfg.random_state, data=data)
    features, labels = extract_features(encoder, subset, cfg.crop, cfg.batch_size, device, precision=cfg.precision)
    panels = {cfg.label: (features, labels)}
    encoders = {"main": info}
    if cfg.random_projector:
        panels[f"{cfg.label} + random projector"] = (random_projector_features(features, cfg.random_state), labels)
    if cfg.compare_ckpt:
        other, other_info = load_encoder_for_eval(cfg.compare_ckpt, preset, device, seed=cfg.random_state,
                                                  data=data)
        panels[cfg.compare_label] = extract_features(
            other, subset, cfg.crop, cfg.batch_size, device, precision=cfg.precision
        )
        encoders["compare"] = other_info
    fig = tsne_figure(
        panels, shown, cfg.per_class, cfg.random_state, num_classes=split.num_classes,
        class_names=split.class_names,
    )
    out.mkdir(parents=True, exist_ok=True)
    write_figure(fig, out, "tsne", dpi=cfg.dpi)
    np.savez(out / "tsne_features.npz", labels=labels, **{f"panel{i}": f for i, (f, _) in enumerate(panels.values())})
    metrics = {"num_points": float(len(labels)), "num_classes_shown": float(len(shown))}
    write_result(out, "tsne", metrics, cfg, data, cfg.random_state, device, encoders=encoders, panels=list(panels))
    return metrics


__all__ = [
    "OFFICIAL_TSNE_CLASSES", "TSNEConfig", "TSNE_PRESETS", "tsne_classes", "select_per_class",
    "random_projector_features", "class_palette", "embed_tsne", "tsne_figure", "run_tsne",
]
