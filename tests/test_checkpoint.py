"""Checkpoint I/O: our format round trip, official MAMP and STARS layouts, strict key checks,
clear errors for broken files, atomic saving and config inference."""

from __future__ import annotations

import argparse
import datetime
import os

import pytest
import torch

from stars.models.checkpoint import (
    CheckpointError,
    build_checkpoint,
    detect_format,
    encoder_config_from_checkpoint,
    encoder_config_from_state,
    extract_encoder_state,
    extract_stars_head_and_queue,
    load_checkpoint_file,
    load_encoder,
    save_checkpoint,
)
from stars.models.encoder import ENCODER_PRESETS, EncoderConfig, SkeletonEncoder
from stars.models.heads import Classifier, ProjectorPredictor
from stars.models.mamp import MAMPConfig, MaskedMotionModel

TINY = ENCODER_PRESETS["tiny"]
TINY_MAMP = MAMPConfig(decoder_depth=1, decoder_dim=32, decoder_heads=2)


def batch(cfg: EncoderConfig = TINY) -> torch.Tensor:
    return torch.randn(
        2, cfg.in_channels, cfg.num_frames, cfg.num_joints, 2, generator=torch.Generator().manual_seed(0)
    )


def pooled(encoder: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return SkeletonEncoder.forward(encoder.eval(), x)


def official_stars_state(encoder: SkeletonEncoder, head: ProjectorPredictor, queue_size: int = 64) -> dict:
    queue = torch.nn.functional.normalize(torch.randn(256, queue_size), dim=0)
    state = {f"encoder_student.{k}": v for k, v in encoder.state_dict().items()}
    state |= {f"encoder_student.head.{k}": v for k, v in head.state_dict().items()}
    state |= {"queue": queue, "queue_ptr": torch.tensor([5]), "queue_id": torch.arange(queue_size) - 1}
    return state


# --------------------------------------------------------------------------------------- round trips
def test_our_format_round_trip_gives_identical_outputs(tmp_path):
    encoder = SkeletonEncoder(TINY)
    checkpoint = build_checkpoint("encoder", encoder.state_dict(), {"encoder": TINY.to_dict()}, epoch=7)
    path = save_checkpoint(tmp_path / "sub" / "encoder.pt", checkpoint)
    loaded = load_checkpoint_file(path)
    assert detect_format(loaded) == "stars" and loaded["epoch"] == 7 and loaded["kind"] == "encoder"
    restored = SkeletonEncoder(encoder_config_from_checkpoint(loaded))
    report = load_encoder(path, restored)
    assert (report.format, report.missing, report.unexpected, report.mismatched, report.dropped) == (
        "stars",
        [],
        [],
        [],
        [],
    )
    x = batch()
    assert torch.equal(pooled(encoder, x), pooled(restored, x))


def test_our_mamp_and_classifier_checkpoints_load_encoder_only(tmp_path):
    model = MaskedMotionModel(TINY, TINY_MAMP)
    path = save_checkpoint(tmp_path / "mamp.pt", build_checkpoint("mamp", model.state_dict(), {}))
    encoder = SkeletonEncoder(TINY)
    report = load_encoder(path, encoder)
    assert "mask_token" in report.dropped and "decoder_pred.weight" in report.dropped
    x = batch()
    assert torch.equal(pooled(encoder, x), pooled(model, x))
    classifier = Classifier(SkeletonEncoder(TINY), "linear", 4)
    checkpoint = build_checkpoint("classifier", classifier.state_dict(), {})
    fresh = SkeletonEncoder(TINY)
    report = load_encoder(checkpoint, fresh)
    assert report.dropped == [
        "head.fc.bias",
        "head.fc.weight",
        "head.norm.num_batches_tracked",
        "head.norm.running_mean",
        "head.norm.running_var",
    ]
    assert torch.equal(pooled(fresh, x), pooled(classifier.encoder, x))


def test_official_mamp_checkpoint_with_namespace_loads_weights_only(tmp_path):
    model = MaskedMotionModel(TINY, TINY_MAMP)
    path = tmp_path / "checkpoint-399.pth"
    args = argparse.Namespace(
        batch_size=32, lr=1e-3, mask_ratio=0.9, output_dir="./output_dir", data_path=None
    )
    torch.save({"model": model.state_dict(), "args": args, "epoch": 3, "scaler": {"scale": 65536.0}}, path)
    loaded = load_checkpoint_file(path)
    assert loaded["args"].lr == 1e-3 and loaded["epoch"] == 3
    assert detect_format(loaded) == "mamp-official"
    assert set(extract_encoder_state(loaded)) == set(SkeletonEncoder(TINY).state_dict())
    encoder = SkeletonEncoder(TINY)
    report = load_encoder(path, encoder)
    assert report.format == "mamp-official" and report.missing == [] and len(report.dropped) > 0
    assert all(key.startswith("decoder") or key == "mask_token" for key in report.dropped)
    x = batch()
    assert torch.equal(pooled(encoder, x), pooled(model, x))


def test_official_stars_checkpoint_loads_encoder_head_and_queue(tmp_path):
    encoder, head = (
        SkeletonEncoder(EncoderConfig(embed_dim=256, depth=1, num_heads=8, num_frames=8)),
        ProjectorPredictor(),
    )
    state = official_stars_state(encoder, head)
    path = tmp_path / "best_epoch.pt"
    torch.save(state, path)
    loaded = load_checkpoint_file(path)
    assert detect_format(loaded) == "stars-official"
    fresh = SkeletonEncoder(encoder.cfg)
    report = load_encoder(path, fresh)
    assert report.format == "stars-official"
    assert {"queue", "queue_ptr", "queue_id", "encoder_student.head.predictor.0.weight"} <= set(
        report.dropped
    )
    x = batch(encoder.cfg)
    assert torch.equal(pooled(fresh, x), pooled(encoder, x))
    head_state, queue, pointer, ids = extract_stars_head_and_queue(loaded)
    new_head = ProjectorPredictor()
    new_head.load_state_dict(head_state)  # strict: key names match ours
    assert torch.equal(new_head.predictor[0].weight, head.predictor[0].weight)
    assert queue.shape == (64, 256) and torch.equal(queue, state["queue"].t())
    assert pointer == 5 and torch.equal(ids, torch.arange(64) - 1)


def test_stars_head_with_sequential_projector_and_our_continuation_layout():
    head = ProjectorPredictor()
    state = official_stars_state(SkeletonEncoder(TINY), head)
    for name in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked"):
        state[f"encoder_student.head.projector.0.{name}"] = state.pop(
            f"encoder_student.head.projector.{name}"
        )
    head_state, _, _, _ = extract_stars_head_and_queue(state)
    ProjectorPredictor().load_state_dict(head_state)
    ours = {f"encoder.{k}": v for k, v in SkeletonEncoder(TINY).state_dict().items()}
    ours |= {f"head.{k}": v for k, v in head.state_dict().items()}
    ours |= {
        "queue.features": torch.randn(32, 256),
        "queue.ptr": torch.tensor(3),
        "queue.ids": torch.arange(32),
    }
    head_state, queue, pointer, _ = extract_stars_head_and_queue(build_checkpoint("nnclr", ours, {}))
    assert queue.shape == (32, 256) and pointer == 3 and set(head_state) == set(head.state_dict())
    with pytest.raises(CheckpointError, match="no STARS head or queue"):
        extract_stars_head_and_queue({"model": SkeletonEncoder(TINY).state_dict()})


# ---------------------------------------------------------------------------------- strict key checks
def test_missing_extra_and_mismatched_keys_are_named():
    good = SkeletonEncoder(TINY).state_dict()
    missing = {k: v for k, v in good.items() if k != "blocks.1.attn.qkv.bias"}
    with pytest.raises(CheckpointError, match=r"missing keys \['blocks.1.attn.qkv.bias'\]"):
        load_encoder({"model": missing}, SkeletonEncoder(TINY))
    extra = good | {"cls_token": torch.zeros(1, 1, 32), "blocks.0.attn.q_bias": torch.zeros(32)}
    with pytest.raises(CheckpointError, match=r"unexpected keys \['blocks.0.attn.q_bias', 'cls_token'\]"):
        load_encoder({"model": extra}, SkeletonEncoder(TINY))
    with pytest.raises(
        CheckpointError, match=r"temp_embed: checkpoint \(1, 30, 1, 256\) vs model \(1, 8, 1, 32\)"
    ):
        load_encoder({"model": SkeletonEncoder(EncoderConfig(depth=2)).state_dict()}, SkeletonEncoder(TINY))
    # non-strict: loads what matches, reports the rest
    target = SkeletonEncoder(TINY)
    report = load_encoder({"model": missing | {"cls_token": torch.zeros(1)}}, target, strict=False)
    assert report.missing == ["blocks.1.attn.qkv.bias"] and report.unexpected == ["cls_token"]
    assert torch.equal(target.blocks[0].attn.qkv.weight, good["blocks.0.attn.qkv.weight"])


# ------------------------------------------------------------------------------------- broken files
def test_broken_files_raise_errors_naming_the_file(tmp_path):
    good = tmp_path / "good.pt"
    save_checkpoint(good, build_checkpoint("encoder", SkeletonEncoder(TINY).state_dict(), {}))
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="truncated.pt: not a readable torch checkpoint"):
        load_checkpoint_file(truncated)
    with pytest.raises(CheckpointError, match="truncated.pt"):
        load_encoder(truncated, SkeletonEncoder(TINY))
    text = tmp_path / "notes.txt"
    text.write_text("not a checkpoint\n")
    with pytest.raises(CheckpointError, match="notes.txt: not a readable torch checkpoint"):
        load_checkpoint_file(text)
    with pytest.raises(FileNotFoundError, match="absent.pt"):
        load_checkpoint_file(tmp_path / "absent.pt")
    unsafe = tmp_path / "unsafe.pt"
    torch.save({"model": {}, "when": datetime.date(2024, 1, 1)}, unsafe)
    with pytest.raises(CheckpointError, match="unsafe.pt: not a readable torch checkpoint"):
        load_checkpoint_file(unsafe)
    listing = tmp_path / "list.pt"
    torch.save([torch.zeros(1)], listing)
    with pytest.raises(CheckpointError, match="list.pt: expected a dict"):
        load_checkpoint_file(listing)
    odd = tmp_path / "odd.pt"
    torch.save({"weights": torch.zeros(1)}, odd)
    with pytest.raises(CheckpointError, match="odd.pt: unrecognised checkpoint structure"):
        load_encoder(odd, SkeletonEncoder(TINY))


# ---------------------------------------------------------------------------------------- saving
def test_atomic_save_leaves_no_temporary_files_and_keeps_old_file_on_failure(tmp_path):
    path = tmp_path / "ckpt.pt"
    save_checkpoint(path, {"format": "stars", "kind": "encoder", "model": {"a": torch.ones(2)}, "config": {}})
    save_checkpoint(
        path, {"format": "stars", "kind": "encoder", "model": {"a": torch.zeros(2)}, "config": {}}
    )
    assert os.listdir(tmp_path) == ["ckpt.pt"]
    assert torch.equal(load_checkpoint_file(path)["model"]["a"], torch.zeros(2))
    with pytest.raises(Exception):  # noqa: B017 - lambdas cannot be pickled; the error type is pickle's
        save_checkpoint(path, {"model": {"a": torch.ones(2)}, "bad": lambda: 0})
    assert os.listdir(tmp_path) == ["ckpt.pt"]
    assert torch.equal(load_checkpoint_file(path)["model"]["a"], torch.zeros(2))


def test_build_checkpoint_validation():
    with pytest.raises(ValueError, match="kind must be a non-empty string"):
        build_checkpoint("", {}, {})
    with pytest.raises(ValueError, match="reserved keys \\['format'\\]"):
        build_checkpoint("encoder", {}, {}, format="x")


# ----------------------------------------------------------------------------------- config inference
def test_encoder_config_inferred_from_shapes():
    small = ENCODER_PRESETS["small"]
    assert encoder_config_from_state(SkeletonEncoder(small).state_dict(), num_heads=4) == small
    assert encoder_config_from_state(SkeletonEncoder(EncoderConfig()).state_dict()) == EncoderConfig()
    assert encoder_config_from_state(SkeletonEncoder(TINY).state_dict()).num_heads == 8  # not inferable
    official = {"model": MaskedMotionModel(TINY, TINY_MAMP).state_dict()}
    inferred = encoder_config_from_checkpoint(official, num_heads=2)
    assert inferred == TINY
    with pytest.raises(CheckpointError, match="lacks \\['pos_embed'\\]"):
        encoder_config_from_state(
            {k: v for k, v in SkeletonEncoder(TINY).state_dict().items() if k != "pos_embed"}
        )
