"""The code routes that a GPU run takes, exercised on the CPU: bf16 autocast in every training and
evaluation step, regional torch.compile (no graph break inside the compiled blocks, compile before DDP),
and the memory-aware placement of a split (device or host memory, same batches)."""

from __future__ import annotations

import socket

import numpy as np
import pytest
import torch
import torch.distributed as torch_dist
from torch import nn

from stars.data.feeder import BatchLoader, CropConfig, DeviceSplit, device_data_budget
from stars.data.npz import SkeletonSplit
from stars.methods.dino import DINO
from stars.methods.moco import MoCo
from stars.methods.nnclr import NNCLR
from stars.models.blocks import Block
from stars.models.encoder import SkeletonEncoder, encoder_preset
from stars.models.heads import Classifier, ProjectorPredictor
from stars.models.mamp import MAMPConfig, MaskedMotionModel
from stars.train.engine import compile_regions, wrap_model
from tests.stand_ins import random_batch

TINY = encoder_preset("tiny")
BF16 = dict(device_type="cpu", dtype=torch.bfloat16)


def _mamp() -> MaskedMotionModel:
    torch.manual_seed(0)
    return MaskedMotionModel(TINY, MAMPConfig(decoder_depth=1, decoder_dim=32, decoder_heads=2))


def _grads_finite(model: nn.Module) -> bool:
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    return bool(grads) and all(torch.isfinite(g).all() for g in grads)


def _fp32_and_bf16(make_model, run):
    """Run the same step from the same weights in fp32 and under CPU bf16 autocast -> (fp32, bf16) losses."""
    losses = []
    for autocast in (False, True):
        model = make_model()
        with torch.autocast(**BF16, enabled=autocast):
            loss = run(model)
        assert loss.dtype == torch.float32 or autocast, "fp32 step must give an fp32 loss"
        loss.backward()
        assert _grads_finite(model)
        losses.append(float(loss))
    return losses


def test_mamp_step_under_cpu_bf16_autocast():
    x = random_batch(TINY, batch=4, seed=1)
    generator = lambda: torch.Generator().manual_seed(3)  # noqa: E731 - same masks in both runs
    fp32, bf16 = _fp32_and_bf16(_mamp, lambda model: model(x, generator())[0])
    assert np.isfinite(bf16) and bf16 == pytest.approx(fp32, rel=0.05)


def _nnclr():
    torch.manual_seed(0)
    encoder = SkeletonEncoder(TINY)
    return NNCLR(encoder, ProjectorPredictor(32, 64, 32), queue_size=64, queue_generator=torch.Generator().manual_seed(0))


def test_nnclr_step_under_cpu_bf16_autocast():
    x = random_batch(TINY, batch=8, seed=2)
    ids = torch.arange(8)
    fp32, bf16 = _fp32_and_bf16(_nnclr, lambda model: model(x, x, ids)[0])
    assert bf16 == pytest.approx(fp32, rel=0.05)


def test_moco_and_dino_steps_under_cpu_bf16_autocast():
    x = random_batch(TINY, batch=8, seed=4)
    x2 = random_batch(TINY, batch=8, seed=5)

    def moco():
        torch.manual_seed(0)
        return MoCo(SkeletonEncoder(TINY), ProjectorPredictor(32, 64, 32), feature_dim=32, queue_size=64,
                    queue_generator=torch.Generator().manual_seed(0))

    def dino():
        torch.manual_seed(0)
        return DINO(SkeletonEncoder(TINY), out_dim=16)

    fp32, bf16 = _fp32_and_bf16(moco, lambda model: model(x, x2, torch.arange(8))[0])
    assert bf16 == pytest.approx(fp32, rel=0.05)
    fp32, bf16 = _fp32_and_bf16(dino, lambda model: model([x, x2], [])[0])
    assert bf16 == pytest.approx(fp32, rel=0.05)


@pytest.mark.parametrize("head", ["linear", "finetune"])
def test_classifier_step_and_evaluation_forward_under_cpu_bf16_autocast(head):
    x = random_batch(TINY, batch=8, seed=6)
    y = torch.arange(8) % 5

    def make():
        torch.manual_seed(0)
        return Classifier(SkeletonEncoder(TINY), head, num_classes=5)

    fp32, bf16 = _fp32_and_bf16(make, lambda model: nn.functional.cross_entropy(model(x), y))
    assert bf16 == pytest.approx(fp32, rel=0.05)
    model = make().eval()
    with torch.no_grad(), torch.autocast(**BF16):
        logits = model(x)
    with torch.no_grad():
        reference = model(x)
    assert logits.shape == (8, 5) and torch.isfinite(logits).all()
    assert torch.allclose(logits.float(), reference, atol=0.1, rtol=0.05)


def test_training_loop_runs_in_bf16_on_the_cpu(tmp_path):
    from stars.methods.param_groups import pretrain_param_groups
    from stars.train.engine import OptimConfig, RunConfig, Trainer

    model = _mamp()
    data = [{"x": random_batch(TINY, batch=4, seed=s), "index": torch.arange(4)} for s in range(3)]

    class Loader(list):
        def set_epoch(self, epoch):
            pass

    run = RunConfig(epochs=2, batch_size=4, device="cpu", precision="bf16", progress=False)
    trainer = Trainer(model, pretrain_param_groups(model), Loader(data), lambda m, b: (m(b["x"])[0], {}),
                      OptimConfig(warmup_epochs=0), run, tmp_path, kind="mamp")
    assert trainer.autocast_dtype == torch.bfloat16
    history = trainer.fit()
    assert len(history) == 2 and all(np.isfinite(row["loss"]) for row in history)


# --- regional compilation ---------------------------------------------------------------------


def test_a_transformer_block_compiles_without_graph_breaks():
    torch._dynamo.reset()
    block = Block(32, 2)
    explanation = torch._dynamo.explain(block)(torch.randn(2, 10, 32))
    assert explanation.graph_break_count == 0, explanation.break_reasons
    assert explanation.graph_count == 1


def test_a_whole_mamp_forward_with_its_loss_compiles_without_graph_breaks():
    """`stars bench --compile model`: masking (random scores, argsort, gathers), encoder, decoder and the
    masked loss trace into one graph."""
    from stars.models.mamp import MAMPConfig, MaskedMotionModel

    torch._dynamo.reset()
    model = MaskedMotionModel(TINY, MAMPConfig())
    explanation = torch._dynamo.explain(model)(random_batch(TINY, batch=4, seed=3))
    assert explanation.graph_break_count == 0, explanation.break_reasons
    assert explanation.graph_count == 1


def test_the_eager_parts_are_where_the_graph_breaks_would_be():
    """Compiling a whole NNCLR step would break the graph (queue look-up checks, `.item`-like host reads);
    these parts are exactly the ones compile_regions leaves out."""
    torch._dynamo.reset()
    model = _nnclr()
    x = random_batch(TINY, batch=4, seed=7)
    explanation = torch._dynamo.explain(model)(x, x, torch.arange(4))
    assert explanation.graph_break_count >= 1
    reasons = " ".join(str(r) for r in explanation.break_reasons)
    assert "queue" in reasons or "nearest" in reasons or "Data-dependent" in reasons or "item" in reasons, reasons


def test_compile_regions_compiles_every_block_in_place_and_keeps_checkpoint_keys():
    model = _nnclr()
    keys = list(model.state_dict())
    names = compile_regions(model)
    assert names == [f"encoder.blocks.{i}" for i in range(TINY.depth)]
    assert list(model.state_dict()) == keys  # no `_orig_mod.` in checkpoint keys
    assert all(getattr(model.encoder.blocks[i], "_compiled_call_impl", None) is not None for i in range(TINY.depth))


@pytest.mark.slow
def test_compiled_blocks_give_the_eager_result():
    torch._dynamo.reset()
    torch.manual_seed(0)
    eager = SkeletonEncoder(TINY)
    compiled = SkeletonEncoder(TINY)
    compiled.load_state_dict(eager.state_dict())
    compile_regions(compiled)
    x = random_batch(TINY, batch=2, seed=8)
    out_eager, out_compiled = eager(x), compiled(x)
    assert torch.allclose(out_eager, out_compiled, atol=1e-5)
    out_eager.sum().backward()
    out_compiled.sum().backward()
    for (name, a), b in zip(eager.named_parameters(), compiled.parameters()):
        assert torch.allclose(a.grad, b.grad, atol=1e-4), name


def _compiled_mamp_run(tmp_path, epochs: int = 2):
    from stars.methods.param_groups import pretrain_param_groups
    from stars.train.engine import OptimConfig, RunConfig, Trainer

    model = _mamp()
    data = [{"x": random_batch(TINY, batch=b, seed=b), "index": torch.arange(b)} for b in (4, 3)]

    class Loader(list):
        def set_epoch(self, epoch):
            pass

    def monitor(module, epoch):  # feature extraction: no gradients, eval mode, another batch size
        with torch.no_grad():
            module.forward_encoder(random_batch(TINY, batch=5, seed=9))
        return {}

    run = RunConfig(epochs=epochs, batch_size=4, device="cpu", progress=False, compile=True)
    trainer = Trainer(model, pretrain_param_groups(model), Loader(data), lambda m, b: (m(b["x"])[0], {}),
                      OptimConfig(warmup_epochs=0), run, tmp_path, kind="mamp", end_of_epoch=monitor)
    return trainer.fit()


@pytest.mark.slow
def test_a_compiled_run_records_its_graphs_and_never_falls_back_to_eager(tmp_path):
    """Training steps, the monitor's no-grad extraction and changing batch sizes recompile the blocks; all
    of it stays compiled (no frame over the recompile limit) and each epoch's row says so."""
    torch._dynamo.reset()
    history = _compiled_mamp_run(tmp_path)
    last = history[-1]
    assert last["compiled_graphs"] >= 3  # encoder and decoder lengths, and the no-grad variant
    assert last["graph_breaks"] == 0 and last["eager_fallbacks"] == 0
    assert torch._dynamo.config.recompile_limit >= 32


@pytest.mark.slow
def test_a_compiled_run_warns_when_dynamo_gives_up(tmp_path, monkeypatch):
    import stars.train.engine as engine

    torch._dynamo.reset()
    monkeypatch.setattr(engine, "RECOMPILE_LIMIT", 1)
    with torch._dynamo.config.patch(recompile_limit=1), \
            pytest.warns(UserWarning, match=r"torch.compile gave up on \d+ frame"):
        history = _compiled_mamp_run(tmp_path, epochs=1)
    assert history[-1]["eager_fallbacks"] >= 1
    assert "eager_fallbacks" in (tmp_path / "metrics.csv").read_text()


@pytest.fixture
def one_process_group():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    torch_dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1)
    try:
        yield
    finally:
        torch_dist.destroy_process_group()


def test_compile_then_ddp_order(one_process_group):
    model = _nnclr()
    module = wrap_model(model, torch.device("cpu"), distributed=True, compile=True)
    assert isinstance(module, nn.parallel.DistributedDataParallel)
    assert module.module is model  # DDP wraps the model whose blocks were compiled in place
    assert all(getattr(block, "_compiled_call_impl", None) is not None for block in model.encoder.blocks)
    assert not hasattr(module, "_orig_mod")  # the collectives are outside any compiled region


# --- data placement ---------------------------------------------------------------------------


def _split(n: int = 24) -> SkeletonSplit:
    from stars.data.layouts import get_layout

    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 40, 2, 25, 3)).astype(np.float32)
    x[:, 30:] = 0  # 30 valid frames
    return SkeletonSplit(x=x, y=np.arange(n) % 4, layout=get_layout("ntu25"), num_classes=4, split="train")


def _batches(data: DeviceSplit) -> list[dict]:
    loader = BatchLoader(data, 8, train=True, crop=CropConfig(min_length=8, num_frames=32), seed=3, views=2)
    loader.set_epoch(1)
    return list(loader)


def test_a_split_over_the_budget_stays_in_host_memory_and_gives_the_same_batches():
    split = _split()
    held = DeviceSplit.from_split(split, "cpu")
    host = DeviceSplit.from_split(split, "cpu", budget_bytes=0)
    assert device_data_budget(torch.device("cpu")) > split.x.nbytes
    assert host.device == torch.device("cpu") and held.on_device
    for a, b in zip(_batches(held), _batches(host)):
        for va, vb in zip(a["views"], b["views"]):
            assert torch.equal(va, vb)
        assert torch.equal(a["index"], b["index"]) and torch.equal(a["y"], b["y"])


def test_ntu120_xsub_finetuning_data_fits_an_80_gb_gpu():
    """Train + test of NTU-120 XSub (63,026 + 50,919 sequences of 300 x 150 floats) against the budget
    rule on an 80 GB device with nothing else on it."""
    per_sample = 300 * 150 * 4
    train, test = 63_026 * per_sample, 50_919 * per_sample
    total = 80 * 10**9
    from stars.data import feeder

    headroom = max(int(total * feeder.DEVICE_HEADROOM_FRACTION), feeder.DEVICE_HEADROOM_MIN_BYTES)
    assert train + test <= total - headroom
    assert total - (train + test) > headroom  # left for the model, optimiser state and activations


@pytest.mark.gpu
def test_host_held_split_gives_the_same_batches_on_cuda():
    split = _split()
    held = DeviceSplit.from_split(split, "cuda")
    host = DeviceSplit.from_split(split, "cuda", budget_bytes=0)
    assert held.on_device and not host.on_device and host.x.is_pinned()
    for a, b in zip(_batches(held), _batches(host)):
        for va, vb in zip(a["views"], b["views"]):
            assert va.device.type == "cuda" and vb.device.type == "cuda"
            assert torch.allclose(va, vb, atol=1e-6)


@pytest.mark.gpu
def test_bf16_training_step_on_cuda_matches_fp32():
    model = _mamp().cuda()
    x = random_batch(TINY, batch=8, seed=9).cuda()
    losses = []
    for autocast in (False, True):
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
            losses.append(float(model(x, torch.Generator(device="cuda").manual_seed(0))[0]))
    assert losses[1] == pytest.approx(losses[0], rel=0.05)




# --- the gpu-check script itself, dry-run on the CPU --------------------------------------------


@pytest.mark.slow
def test_gpu_check_measurements_run_on_the_cpu(tmp_path):
    """The bf16-agreement and resume checks of `make gpu-check` are device-generic; run them small on
    the CPU so the script cannot rot between GPU runs."""
    from stars.gpu_check import check_bf16, check_resume, neighbour_agreement

    resume = check_resume(torch.device("cpu"), tmp_path, epochs=2)
    assert resume["ok"] and resume["max_abs_weight_difference"] == 0.0
    bf16 = check_bf16(torch.device("cpu"), tmp_path, preset="tiny", epochs=1)
    assert bf16["feature_cosine_mean"] > 0.9 and 0 <= bf16["knn_top1_bf16"] <= 100
    assert bf16["neighbours"]["ours_agreement"] == 1.0
    picks = neighbour_agreement(torch.device("cpu"), queries=256, queue=2048)
    assert picks["ours_agreement"] == 1.0
    assert picks["plain_bf16_agreement"] < 0.9  # the fp32 island is what makes the picks agree
