"""MAMP / MAE pretraining model: key layout, visible-token counts, motion target and intensity against
loop references, masking probabilities, masked-only loss, target normalisation, and a loss that goes down."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from stand_ins import random_batch

from stars.models.encoder import ENCODER_PRESETS, EncoderConfig, SkeletonEncoder
from stars.models.mamp import (
    MAE_DEFAULTS,
    MAMPConfig,
    MaskedMotionModel,
    mask_from_scores,
    naive_mae_config,
    visible_token_count,
)

TINY = ENCODER_PRESETS["tiny"]  # T=32, V=25 -> TP=8, L=200
TINY_MAMP = MAMPConfig(decoder_depth=1, decoder_dim=32, decoder_heads=2)


def half_moving_sequence(cfg: EncoderConfig, seed: int = 0) -> torch.Tensor:
    """(1, C, T, V, 1): joints 0..12 follow a random walk, joints 13..24 stand still."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.zeros(1, cfg.in_channels, cfg.num_frames, cfg.num_joints, 1)
    steps = torch.randn(cfg.in_channels, cfg.num_frames, 13, generator=generator) * 0.2
    x[0, :, :, :13, 0] = steps.cumsum(dim=1)
    x[0, :, :, 13:, 0] = torch.randn(cfg.in_channels, 1, 12, generator=generator)
    return x


# ----------------------------------------------------------------------------------------------- config
def test_config_defaults_and_mae_variant():
    cfg = MAMPConfig()
    assert (cfg.decoder_depth, cfg.decoder_dim, cfg.decoder_heads, cfg.mask_ratio, cfg.motion_aware_tau) == (
        3,
        256,
        8,
        0.9,
        0.80,
    )
    assert (cfg.masking, cfg.target, cfg.norm_target, cfg.visible_rounding) == (
        "motion",
        "motion",
        True,
        "round",
    )
    assert (MAE_DEFAULTS.masking, MAE_DEFAULTS.target, MAE_DEFAULTS.mask_ratio) == ("random", "position", 0.9)
    mae5 = naive_mae_config(decoder_depth=5)
    assert (mae5.decoder_depth, mae5.masking, mae5.target) == (5, "random", "position")


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"mask_ratio": 1.0}, "mask_ratio must be in"),
        ({"mask_ratio": 0.0}, "mask_ratio must be in"),
        ({"masking": "gumbel"}, "masking must be one of"),
        ({"target": "velocity"}, "target must be one of"),
        ({"visible_rounding": "floor"}, "visible_rounding must be one of"),
        ({"decoder_dim": 30}, "not divisible by decoder_heads"),
        ({"motion_aware_tau": 0.0}, "motion_aware_tau must be > 0"),
        ({"norm_target": 1}, "norm_target must be a bool"),
    ],
)
def test_config_validation(overrides, message):
    with pytest.raises(ValueError, match=message):
        MAMPConfig(**overrides)


def test_config_rejects_unknown_keys_and_tau_is_free_for_random_masking():
    with pytest.raises(ValueError, match="unknown MAMPConfig keys \\['mask_rate'\\]"):
        MAMPConfig.from_dict({"mask_rate": 0.9})
    assert MAMPConfig(masking="random", motion_aware_tau=0.0).motion_aware_tau == 0.0


# ------------------------------------------------------------------------------------------ key layout
def official_decoder_layout(depth, dim=256, temporal_patches=30, joints=25, hidden=1024, patch_values=12):
    layout = {
        "decoder_embed.weight": (dim, 256),
        "decoder_embed.bias": (dim,),
        "mask_token": (1, 1, dim),
        "decoder_temp_embed": (1, temporal_patches, 1, dim),
        "decoder_pos_embed": (1, 1, joints, dim),
        "decoder_norm.weight": (dim,),
        "decoder_norm.bias": (dim,),
        "decoder_pred.weight": (patch_values, dim),
        "decoder_pred.bias": (patch_values,),
    }
    for i in range(depth):
        p = f"decoder_blocks.{i}."
        layout |= {
            p + "norm1.weight": (dim,),
            p + "norm1.bias": (dim,),
            p + "attn.qkv.weight": (3 * dim, dim),
            p + "attn.qkv.bias": (3 * dim,),
            p + "attn.proj.weight": (dim, dim),
            p + "attn.proj.bias": (dim,),
            p + "norm2.weight": (dim,),
            p + "norm2.bias": (dim,),
            p + "mlp.fc1.weight": (hidden, dim),
            p + "mlp.fc1.bias": (hidden,),
            p + "mlp.fc2.weight": (dim, hidden),
            p + "mlp.fc2.bias": (dim,),
        }
    return layout


@pytest.mark.parametrize("decoder_depth, total", [(3, 8_789_004), (5, 10_368_524)])
def test_state_dict_matches_official_mamp_layout(decoder_depth, total):
    model = MaskedMotionModel(EncoderConfig(), MAMPConfig(decoder_depth=decoder_depth))
    encoder_layout = {k: tuple(v.shape) for k, v in SkeletonEncoder(EncoderConfig()).state_dict().items()}
    layout = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert layout == encoder_layout | official_decoder_layout(decoder_depth)
    assert sum(p.numel() for p in model.parameters()) == total
    assert set(model.encoder_state_dict()) == set(encoder_layout)


def test_to_encoder_gives_the_same_representation():
    model = MaskedMotionModel(TINY, TINY_MAMP).eval()
    x = random_batch(TINY)
    with torch.no_grad():
        torch.testing.assert_close(
            model.to_encoder().eval()(x), SkeletonEncoder.forward(model, x), atol=0, rtol=0
        )


# ----------------------------------------------------------------------------------- visible tokens
def test_visible_token_counts():
    assert visible_token_count(750, 0.9, "round") == 75
    assert visible_token_count(750, 0.9, "official") == 74  # float error: 750 * (1 - 0.9) = 74.999...
    assert visible_token_count(750, 0.8, "official") == 149
    assert visible_token_count(750, 0.8, "round") == 150
    with pytest.raises(ValueError, match="leaves 0 of 200 tokens visible"):
        MaskedMotionModel(TINY, MAMPConfig(mask_ratio=0.999))


@pytest.mark.parametrize("rounding, masked", [("round", 675), ("official", 676)])
def test_forward_masks_the_expected_number_of_tokens(rounding, masked):
    model = MaskedMotionModel(EncoderConfig(), MAMPConfig(decoder_depth=1, visible_rounding=rounding))
    x = random_batch(EncoderConfig(), batch=1, persons=2)
    with torch.no_grad():
        loss, pred, mask = model(x, generator=torch.Generator().manual_seed(0))
    assert pred.shape == (2, 750, 12) and mask.shape == (2, 750)
    assert mask.sum(dim=1).tolist() == [masked, masked]
    assert set(mask.unique().tolist()) == {0.0, 1.0} and torch.isfinite(loss)


def test_mask_from_scores_bookkeeping():
    scores = torch.rand(3, 10, generator=torch.Generator().manual_seed(0))
    ids_keep, mask, ids_restore = mask_from_scores(scores, len_keep=4)
    for b in range(3):
        lowest = set(torch.topk(scores[b], 4, largest=False).indices.tolist())
        assert set(ids_keep[b].tolist()) == lowest
        assert set(torch.nonzero(mask[b] == 0).flatten().tolist()) == lowest
    shuffled = torch.argsort(scores, dim=1)
    assert torch.equal(torch.gather(shuffled, 1, ids_restore), torch.arange(10).expand(3, 10))


def test_encoder_sees_only_visible_tokens():
    """Changing the input of a masked token leaves the latent unchanged; a visible token changes it."""
    model = MaskedMotionModel(TINY, naive_mae_config(decoder_depth=1, decoder_dim=32, decoder_heads=2)).eval()
    x = random_batch(TINY, batch=1, persons=1)
    with torch.no_grad():
        latent, mask, _ = model.forward_encoder(x, torch.Generator().manual_seed(5))
        masked_token, visible_token = int(torch.nonzero(mask[0] == 1)[0]), int(torch.nonzero(mask[0] == 0)[0])
        for token, should_change in ((masked_token, False), (visible_token, True)):
            t, v = divmod(token, TINY.num_joints)
            changed = x.clone()
            changed[0, :, 4 * t : 4 * t + 4, v, 0] += 1.0
            latent2, mask2, _ = model.forward_encoder(changed, torch.Generator().manual_seed(5))
            assert torch.equal(mask, mask2)
            assert (not torch.allclose(latent, latent2)) == should_change


def test_generator_makes_masks_reproducible():
    model = MaskedMotionModel(TINY, TINY_MAMP)
    x = random_batch(TINY)
    with torch.no_grad():
        mask_a = model.forward_encoder(x, torch.Generator().manual_seed(1))[1]
        mask_b = model.forward_encoder(x, torch.Generator().manual_seed(1))[1]
        mask_c = model.forward_encoder(x, torch.Generator().manual_seed(2))[1]
    assert torch.equal(mask_a, mask_b) and not torch.equal(mask_a, mask_c)


# ------------------------------------------------------------------------------- targets and intensity
def test_motion_target_and_patchify_against_loops():
    model = MaskedMotionModel(TINY, TINY_MAMP)
    sequences = torch.randn(2, TINY.num_frames, TINY.num_joints, 3, dtype=torch.float64)
    motion = model.motion_target(sequences)
    np_seq = sequences.numpy()
    for t in range(TINY.num_frames - 1):
        np.testing.assert_allclose(motion[:, t].numpy(), np_seq[:, t + 1] - np_seq[:, t])
    assert torch.all(motion[:, -1] == 0)
    patches = model.patchify(sequences)
    assert patches.shape == (2, 200, 12)
    for t in range(TINY.num_temporal_patches):
        for v in range(TINY.num_joints):
            expected = [np_seq[:, 4 * t + f, v, c] for f in range(4) for c in range(3)]
            np.testing.assert_array_equal(
                patches[:, t * TINY.num_joints + v].numpy(), np.stack(expected, axis=1)
            )


def test_token_motion_intensity_against_loops():
    model = MaskedMotionModel(TINY, TINY_MAMP)
    patches = torch.randn(2, 200, 12, dtype=torch.float64)
    intensity = model.token_motion_intensity(patches).numpy()
    grid = patches.numpy().reshape(2, 8, 25, 12)
    for t in range(8):
        source, previous = (1, 0) if t == 0 else (t, t - 1)
        expected = np.abs(grid[:, source] - grid[:, previous]).mean(axis=-1)
        np.testing.assert_allclose(intensity[:, t * 25 : (t + 1) * 25], expected)


def test_target_normalisation():
    model = MaskedMotionModel(TINY, TINY_MAMP)
    sequences = torch.randn(3, TINY.num_frames, TINY.num_joints, 3) * 5 + 2
    target = model.reconstruction_target(sequences)
    torch.testing.assert_close(target.mean(dim=-1), torch.zeros(3, 200), atol=1e-5, rtol=0)
    raw_var = model.patchify(model.motion_target(sequences)).var(dim=-1)
    torch.testing.assert_close(
        target.var(dim=-1, unbiased=True), raw_var / (raw_var + 1e-6), atol=1e-4, rtol=0
    )
    assert torch.all(target.var(dim=-1) > 0.99)
    raw_model = MaskedMotionModel(
        TINY, MAMPConfig(decoder_depth=1, decoder_dim=32, decoder_heads=2, norm_target=False)
    )
    torch.testing.assert_close(
        raw_model.reconstruction_target(sequences),
        model.patchify(model.motion_target(sequences)),
        atol=0,
        rtol=0,
    )
    mae = MaskedMotionModel(
        TINY, naive_mae_config(norm_target=False, decoder_depth=1, decoder_dim=32, decoder_heads=2)
    )
    torch.testing.assert_close(
        mae.reconstruction_target(sequences), model.patchify(sequences), atol=0, rtol=0
    )


# ----------------------------------------------------------------------------------------- masking
def test_motion_aware_mask_probabilities_match_softmax():
    """With one masked token out of four, P(token i masked) = softmax(I / (tau * max I))_i exactly."""
    model = MaskedMotionModel(TINY, TINY_MAMP)
    draws = 20000
    intensity = torch.tensor([0.0, 0.5, 1.0, 2.0]).expand(draws, 4)
    _, mask, _ = model.motion_aware_mask(intensity, len_keep=3, generator=torch.Generator().manual_seed(0))
    assert torch.all(mask.sum(dim=1) == 1)
    expected = torch.softmax(torch.tensor([0.0, 0.5, 1.0, 2.0]) / (0.8 * 2.0), dim=0)
    torch.testing.assert_close(mask.mean(dim=0), expected, atol=0.015, rtol=0)


def masking_frequencies(model: MaskedMotionModel, draws: int = 300) -> tuple[float, float, int]:
    """-> (frequency moving tokens are masked, frequency static tokens are masked, samples per group)."""
    x = half_moving_sequence(TINY).expand(draws, -1, -1, -1, -1).contiguous()
    with torch.no_grad():
        _, mask, _ = model.forward_encoder(x, torch.Generator().manual_seed(0))
    per_joint = mask.reshape(draws, TINY.num_temporal_patches, TINY.num_joints)
    moving, static = per_joint[..., :13], per_joint[..., 13:]
    return moving.mean().item(), static.mean().item(), static.numel()


def test_high_motion_tokens_are_masked_more_often():
    model = MaskedMotionModel(TINY, TINY_MAMP)
    moving, static, n = masking_frequencies(model)
    standard_error = math.sqrt(0.25 / n) * 2
    assert moving - static > 10 * standard_error
    assert static < 0.9 < moving
    # all tokens: the overall ratio stays 90 % masked (180 of 200)
    assert (13 * moving + 12 * static) / 25 == pytest.approx(0.9, abs=1e-6)


def test_mae_variant_masks_uniformly():
    model = MaskedMotionModel(TINY, naive_mae_config(decoder_depth=1, decoder_dim=32, decoder_heads=2))
    moving, static, n = masking_frequencies(model)
    standard_error = math.sqrt(0.09 / n) * 2
    assert abs(moving - static) < 4 * standard_error
    assert moving == pytest.approx(0.9, abs=0.01) and static == pytest.approx(0.9, abs=0.01)


def test_all_zero_person_gives_uniform_probabilities_and_finite_loss():
    model = MaskedMotionModel(TINY, TINY_MAMP)
    intensity = torch.zeros(1, 6)
    scaled = torch.log_softmax(intensity / (0.8 * intensity.amax() + 1e-10), dim=1)
    torch.testing.assert_close(scaled.exp(), torch.full((1, 6), 1 / 6))
    x = random_batch(TINY, batch=2, persons=2)
    x[..., 1] = 0  # zero-padded second person, as in NTU-60
    loss, _, mask = model(x)
    assert torch.isfinite(loss) and mask.sum().item() == 4 * 180


# -------------------------------------------------------------------------------------------- loss
def test_loss_uses_masked_tokens_only():
    model = MaskedMotionModel(TINY, TINY_MAMP)
    x = random_batch(TINY)
    with torch.no_grad():
        latent, mask, ids_restore = model.forward_encoder(x, torch.Generator().manual_seed(0))
        pred = model.forward_decoder(latent, ids_restore)
    pred = pred.clone().requires_grad_(True)
    loss = model.forward_loss(x, pred, mask)
    loss.backward()
    visible = mask == 0
    assert torch.all(pred.grad[visible] == 0)
    assert torch.all(pred.grad[~visible].abs().sum(dim=-1) > 0)
    target = model.reconstruction_target(
        x.permute(0, 4, 2, 3, 1).reshape(4, TINY.num_frames, TINY.num_joints, 3)
    )
    per_token = ((pred.detach() - target) ** 2).mean(dim=-1)
    torch.testing.assert_close(loss.detach(), per_token[~visible].mean(), atol=1e-6, rtol=1e-6)


def test_few_training_steps_lower_the_loss():
    torch.manual_seed(0)
    model = MaskedMotionModel(TINY, MAMPConfig(decoder_depth=2, decoder_dim=32, decoder_heads=2))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.95))
    # smooth random trajectories: a learnable motion structure
    x = torch.randn(4, 3, TINY.num_frames, TINY.num_joints, 2).cumsum(dim=2) * 0.1
    losses = []
    for _ in range(25):
        loss, _, _ = model(x, generator=torch.Generator().manual_seed(0))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[:5])
