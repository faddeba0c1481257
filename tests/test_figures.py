"""t-SNE (Fig. 2) and confusion-matrix (Fig. 3) figures: selection rules, numbers and written PNGs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import confusion_matrix

from stars.analysis.confusion import confusion_counts, confusion_figure, row_normalise, top_confusions
from stars.analysis.tsne import (
    OFFICIAL_TSNE_CLASSES,
    class_palette,
    random_projector_features,
    select_per_class,
    tsne_classes,
    tsne_figure,
)
from stars.results import write_figure


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _png_size(path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def test_shown_classes_follow_the_official_rule():
    assert tsne_classes(60) == OFFICIAL_TSNE_CLASSES == (1, 2, 5, 10, 15, 18, 20, 22, 25, 28, 30, 40, 50, 55, 57)
    assert tsne_classes(120) == tuple(range(15))
    assert tsne_classes(10) == tuple(range(10))
    assert tsne_classes(60, (3, 4)) == (3, 4)
    with pytest.raises(ValueError, match="outside"):
        tsne_classes(10, (12,))


def test_select_per_class_takes_the_first_samples_in_file_order():
    labels = np.array([2, 0, 2, 1, 2, 0, 2])
    assert select_per_class(labels, (2, 0), 2).tolist() == [0, 2, 1, 5]
    assert select_per_class(labels, (1,), 5).tolist() == [3]


def test_random_projector_standardises_with_batch_statistics_and_is_seeded():
    features = np.random.default_rng(0).normal(3.0, 5.0, (200, 8)).astype(np.float32)
    state = torch.random.get_rng_state()
    projected = random_projector_features(features, seed=42)
    assert torch.equal(torch.random.get_rng_state(), state)
    np.testing.assert_allclose(projected, random_projector_features(features, seed=42))
    assert not np.allclose(projected, random_projector_features(features, seed=1))
    # train-mode BatchNorm: per-dimension mean = bias (0), std = |weight| ~ N(1, 0.02)
    np.testing.assert_allclose(projected.mean(axis=0), 0.0, atol=1e-4)
    np.testing.assert_allclose(projected.std(axis=0), 1.0, atol=0.1)


def test_tsne_figure_has_one_labelled_panel_per_feature_set(tmp_path):
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(4), 12)
    features = np.eye(6)[labels] * 5 + rng.normal(0, 0.2, (48, 6))
    fig = tsne_figure(
        {"MAMP": (features, labels), "STARS": (features * 2, labels)}, per_class=10,
        class_names=["a", "b", "c", "d"],
    )
    axes = fig.get_axes()
    assert [ax.get_title() for ax in axes] == ["MAMP", "STARS"]
    assert all(ax.get_xlabel() == "t-SNE 1" and ax.get_ylabel() == "t-SNE 2" for ax in axes)
    points = [sum(len(c.get_offsets()) for c in ax.collections) for ax in axes]
    assert points == [40, 40]  # 4 classes x first 10 samples
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["a", "b", "c", "d"]
    path = write_figure(fig, tmp_path, "tsne", dpi=50)
    width, height = _png_size(path)
    assert width > height > 50


def test_palette_colours_are_distinct():
    for n in (4, 15, 25):
        assert len(set(class_palette(n))) == n


def test_confusion_counts_and_rates_match_sklearn():
    rng = np.random.default_rng(1)
    y_true, y_pred = rng.integers(0, 5, 300), rng.integers(0, 5, 300)
    counts = confusion_counts(y_true, y_pred, 6)
    np.testing.assert_array_equal(counts, confusion_matrix(y_true, y_pred, labels=range(6)))
    rates = row_normalise(counts)
    np.testing.assert_allclose(rates[:5].sum(axis=1), 1.0)
    assert rates[5].tolist() == [0.0] * 6  # class without samples
    with pytest.raises(ValueError, match="outside"):
        confusion_counts(np.array([0, 6]), np.array([0, 1]), 6)


def test_top_confusions_are_sorted_by_rate_then_count():
    y_true = np.array([0, 0, 0, 0, 1, 1, 2, 2, 2, 2, 2, 2])
    y_pred = np.array([1, 1, 0, 0, 0, 1, 0, 0, 1, 2, 2, 2])
    table = top_confusions(y_true, y_pred, ["clap", "rub", "wave"], top=3)
    assert table[["true", "predicted", "count"]].values.tolist() == [
        ["clap", "rub", 2], ["rub", "clap", 1], ["wave", "clap", 2]
    ]
    np.testing.assert_allclose(table["rate"], [0.5, 0.5, 1 / 3])


def test_confusion_figure_is_labelled_with_class_names(tmp_path):
    names = ["drink water", "eat meal", "brush teeth"]
    fig = confusion_figure(np.array([0, 1, 2, 2]), np.array([0, 2, 2, 1]), names, title="kNN k=10")
    ax = fig.get_axes()[0]
    assert (ax.get_xlabel(), ax.get_ylabel(), ax.get_title()) == ("Predicted", "True", "kNN k=10")
    assert [t.get_text() for t in ax.get_xticklabels()] == names
    assert [t.get_text() for t in ax.get_yticklabels()] == names
    heat = ax.collections[0].get_array().reshape(3, 3)
    np.testing.assert_allclose(heat, [[1, 0, 0], [0, 0, 1], [0, 0.5, 0.5]])
    path = write_figure(fig, tmp_path, "confusion", dpi=50)
    assert min(_png_size(path)) > 50
