"""fp32 islands: neighbour picks, contrastive logits, KNN and few-shot decisions are the same under CPU bf16
autocast as in fp32, on tightly clustered features where bf16 matmuls pick differently."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from stars.data.feeder import DeviceSplit, eval_loader
from stars.data.layouts import NTU25
from stars.data.npz import SkeletonSplit
from stars.eval.common import eval_crop, evaluate_classifier, extract_features
from stars.eval.fewshot import episode_predictions
from stars.eval.knn import knn_majority, knn_weighted, knn_weighted_leave_one_out, nearest_neighbours
from stars.methods.dino import DINO
from stars.methods.moco import MoCo
from stars.methods.nnclr import NNCLR, nnclr_logits
from stars.methods.queue import FeatureQueue
from stars.models.encoder import SkeletonEncoder, encoder_preset
from stars.models.heads import Classifier
from stars.precision import autocast, autocast_dtype

DIM, QUEUE, BATCH, SPREAD = 64, 2048, 64, 0.01


def _clustered(count: int, seed: int) -> torch.Tensor:
    """L2-normalised points within ~SPREAD of one centre: cosine similarities all within ~1e-4 of each other."""
    centre = F.normalize(torch.randn(DIM, generator=torch.Generator().manual_seed(123)), dim=0)
    noise = torch.randn(count, DIM, generator=torch.Generator().manual_seed(seed))
    return F.normalize(centre + SPREAD * noise, dim=1)


class PassThroughEncoder(nn.Module):
    """x (N, C, T, V, M) -> its first DIM values (N, DIM): no matmul, so autocast cannot change it."""

    embed_dim = DIM

    def forward(self, x):
        return x.flatten(1)[:, :DIM]


class IdentityHead(nn.Module):
    def __init__(self):
        super().__init__()
        self.projector = nn.Identity()
        self.predictor = nn.Identity()


def _as_batch(features: torch.Tensor) -> torch.Tensor:
    """(N, DIM) -> (N, C=1, T=DIM, V=1, M=1) so that PassThroughEncoder returns `features`."""
    return features.reshape(features.shape[0], 1, DIM, 1, 1).clone()


def _bf16():
    return torch.autocast("cpu", dtype=torch.bfloat16)


def test_without_fp32_the_bf16_neighbour_picks_differ_on_clustered_features():
    """The test data are sensitive: a plain bf16 matmul (the code before the fix) changes most picks."""
    queue, queries = _clustered(QUEUE, 1), _clustered(BATCH, 2)
    exact = (queries.double() @ queue.double().T).argmax(dim=1)
    with _bf16():
        rounded = (queries @ queue.T).argmax(dim=1)
    assert (rounded == exact).float().mean().item() < 0.6


def test_queue_nearest_picks_the_same_neighbours_under_bf16_autocast():
    queue = FeatureQueue(QUEUE, DIM)
    queue.features.copy_(_clustered(QUEUE, 1))
    queries = _clustered(BATCH, 2)
    exact = (queries.double() @ queue.features.double().T).argmax(dim=1)
    fp32_rows, fp32_idx = queue.nearest(queries, None)
    with _bf16():
        bf16_rows, bf16_idx = queue.nearest(queries, None)
        _, bf16_topk = queue.nearest(queries, None, topk=5, generator=torch.Generator().manual_seed(0))
    _, fp32_topk = queue.nearest(queries, None, topk=5, generator=torch.Generator().manual_seed(0))
    assert torch.equal(bf16_idx, fp32_idx) and torch.equal(fp32_idx, exact)
    assert torch.equal(bf16_topk, fp32_topk)
    assert bf16_rows.dtype == torch.float32 and torch.equal(bf16_rows, fp32_rows)


def test_nnclr_step_under_bf16_autocast_matches_fp32(monkeypatch):
    """One NNCLR step, fp32 vs CPU bf16 autocast: same neighbour indices, logits and loss within fp32 tolerance."""

    def step(precision: str):
        model = NNCLR(PassThroughEncoder(), IdentityHead(), queue_size=QUEUE)
        model.queue.features.copy_(_clustered(QUEUE, 1))
        picks = []
        nearest = model.queue.nearest

        def recording(z, ids, topk=0, generator=None):
            rows, idx = nearest(z, ids, topk, generator)
            picks.append(idx)
            return rows, idx

        monkeypatch.setattr(model.queue, "nearest", recording)
        view = _as_batch(_clustered(BATCH, 2))
        with autocast("cpu", precision):
            loss, _ = model(view, view, torch.arange(BATCH))
            neighbours, _ = nearest(F.normalize(view.flatten(1), dim=1), None)
            logits = nnclr_logits(neighbours, F.normalize(view.flatten(1), dim=1))
        return picks, logits, loss

    picks32, logits32, loss32 = step("fp32")
    picks16, logits16, loss16 = step("bf16")
    assert all(torch.equal(a, b) for a, b in zip(picks32, picks16)) and len(picks16) == 2
    assert logits16.dtype == torch.float32
    torch.testing.assert_close(logits16, logits32, rtol=1e-6, atol=1e-5)
    torch.testing.assert_close(loss16, loss32, rtol=1e-6, atol=1e-6)


def test_moco_and_dino_losses_under_bf16_autocast_match_fp32():
    view1, view2 = _as_batch(_clustered(BATCH, 3)), _as_batch(_clustered(BATCH, 4))
    losses = {}
    for precision in ("fp32", "bf16"):
        torch.manual_seed(0)
        moco = MoCo(PassThroughEncoder(), IdentityHead(), queue_size=QUEUE, feature_dim=DIM)
        moco.queue.features.copy_(_clustered(QUEUE, 1))
        torch.manual_seed(0)
        dino = DINO(PassThroughEncoder(), out_dim=32)
        with autocast("cpu", precision):
            moco_loss, _ = moco(view1, view2, torch.arange(BATCH))
            dino_loss, _ = dino([view1, view2])
        losses[precision] = (moco_loss, dino_loss)
    for exact, rounded in zip(losses["fp32"], losses["bf16"]):
        assert rounded.dtype == torch.float32
        torch.testing.assert_close(rounded, exact, rtol=1e-6, atol=1e-6)


def test_knn_and_fewshot_decisions_under_bf16_autocast_match_fp32():
    bank, queries = _clustered(512, 5), _clustered(128, 6)
    bank_y = torch.arange(512) % 7
    query_y = torch.arange(128) % 7
    exact = nearest_neighbours(bank, queries, 10)
    majority = knn_majority(bank, bank_y, queries, query_y, (1, 5))
    weighted = knn_weighted(bank, bank_y, queries, query_y, (10,))
    loo = knn_weighted_leave_one_out(bank, bank_y, (10,))
    labels = (torch.arange(512) % 7).numpy()
    support, query = torch.arange(0, 70).numpy(), torch.arange(70, 512).numpy()
    fewshot = episode_predictions(bank, labels, support, query)
    with _bf16():
        assert all(torch.equal(a, b) for a, b in zip(nearest_neighbours(bank, queries, 10), exact))
        assert knn_majority(bank, bank_y, queries, query_y, (1, 5)).top1 == majority.top1
        assert knn_weighted(bank, bank_y, queries, query_y, (10,)).top1 == weighted.top1
        assert knn_weighted_leave_one_out(bank, bank_y, (10,)).top1 == loo.top1
        assert (episode_predictions(bank, labels, support, query) == fewshot).all()


@pytest.mark.parametrize(
    ("precision", "device", "expected"),
    [("auto", "cpu", None), ("auto", "cuda", torch.bfloat16), ("fp32", "cuda", None), ("bf16", "cpu", torch.bfloat16)],
)
def test_precision_names_map_to_autocast_dtypes(precision, device, expected):
    assert autocast_dtype(precision, device) is expected


def test_unknown_precision_is_an_error_naming_it():
    with pytest.raises(ValueError, match="fp16"):
        autocast_dtype("fp16", "cpu")


def test_feature_extraction_and_test_passes_follow_precision():
    """precision=fp32 is the plain fp32 forward; precision=bf16 really autocasts (the features differ)."""
    torch.manual_seed(0)
    encoder = SkeletonEncoder(encoder_preset("tiny")).eval()
    x = np.random.default_rng(0).normal(size=(6, 40, 2, 25, 3)).astype(np.float32)
    split = SkeletonSplit(x=x, y=np.arange(6) % 3, layout=NTU25, num_classes=3)
    fp32, _ = extract_features(encoder, split, 0.95, 4, "cpu", progress=False, precision="fp32")
    bf16, _ = extract_features(encoder, split, 0.95, 4, "cpu", progress=False, precision="bf16")
    batch = next(iter(eval_loader(DeviceSplit.from_split(split, torch.device("cpu")), 6, eval_crop(encoder))))
    with torch.no_grad():
        direct = encoder(batch["x"]).numpy()
    np.testing.assert_array_equal(fp32, direct)
    assert fp32.dtype == bf16.dtype == np.float32 and np.abs(fp32 - bf16).max() > 1e-4

    model = Classifier(encoder, "linear", 3)
    data = DeviceSplit.from_split(split, torch.device("cpu"))
    calls = []
    original = torch.autocast.__init__

    def spy(self, device_type, *args, **kwargs):
        calls.append((device_type, kwargs.get("dtype"), kwargs.get("enabled", True)))
        original(self, device_type, *args, **kwargs)

    torch.autocast.__init__ = spy
    try:
        evaluate_classifier(model, data, eval_crop(encoder), 6, precision="bf16")
        evaluate_classifier(model, data, eval_crop(encoder), 6, precision="fp32")
    finally:
        torch.autocast.__init__ = original
    assert ("cpu", torch.bfloat16, True) in calls and ("cpu", None, False) in calls
