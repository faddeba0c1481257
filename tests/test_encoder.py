"""Skeleton encoder, transformer blocks and heads: shapes, official parameter layout, an independent
re-implementation of the official forward, and the head computations."""

from __future__ import annotations

import math

import pytest
import torch
from stand_ins import random_batch

from stars.models.blocks import DropPath
from stars.models.encoder import ENCODER_PRESETS, EncoderConfig, SkeletonEncoder, encoder_preset
from stars.models.heads import Classifier, FinetuneHead, LinearProbeHead, ProjectorPredictor


def randomise_parameters(module: torch.nn.Module, seed: int = 0, std: float = 0.1) -> None:
    """Give every parameter (including LayerNorm affine and biases) non-trivial values."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in module.named_parameters():
            noise = torch.randn(parameter.shape, generator=generator) * std
            parameter.copy_(
                1.0 + noise
                if name.endswith("norm1.weight") or name.endswith("norm2.weight") or name == "norm.weight"
                else parameter + noise
            )


# ----------------------------------------------------------------------------------------------- config
def test_presets_and_paper_defaults():
    assert ENCODER_PRESETS["paper"] == EncoderConfig()
    paper = EncoderConfig()
    assert (
        paper.num_joints,
        paper.num_frames,
        paper.t_patch_size,
        paper.embed_dim,
        paper.depth,
        paper.num_heads,
    ) == (25, 120, 4, 256, 8, 8)
    assert paper.num_tokens == 750 and paper.num_temporal_patches == 30
    small, tiny = ENCODER_PRESETS["small"], ENCODER_PRESETS["tiny"]
    assert (small.embed_dim, small.depth, small.num_heads) == (64, 4, 4)
    assert (tiny.embed_dim, tiny.depth, tiny.num_heads, tiny.num_frames) == (32, 2, 2, 32)
    for cfg in ENCODER_PRESETS.values():
        assert cfg.num_frames % cfg.t_patch_size == 0
    assert encoder_preset("tiny", drop_path_rate=0.1).drop_path_rate == 0.1


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"num_frames": 30}, "not divisible by t_patch_size"),
        ({"embed_dim": 30, "num_heads": 4}, "not divisible by num_heads"),
        ({"depth": 0}, "depth must be a positive int"),
        ({"depth": 2.0}, "depth must be a positive int"),
        ({"drop_path_rate": 1.0}, "drop_path_rate"),
        ({"mlp_ratio": -1.0}, "mlp_ratio"),
    ],
)
def test_config_validation(overrides, message):
    with pytest.raises(ValueError, match=message):
        EncoderConfig(**overrides)


def test_config_from_dict_rejects_unknown_keys_and_unknown_preset():
    with pytest.raises(ValueError, match="unknown EncoderConfig keys \\['embed_dims'\\]"):
        EncoderConfig.from_dict({"embed_dims": 3})
    with pytest.raises(ValueError, match="unknown encoder preset 'huge'"):
        encoder_preset("huge")
    assert EncoderConfig.from_dict(EncoderConfig().to_dict()) == EncoderConfig()


# ----------------------------------------------------------------------------------------------- shapes
@pytest.mark.parametrize("preset", ["tiny", "small", "paper"])
def test_shapes_for_presets(preset):
    cfg = ENCODER_PRESETS[preset]
    encoder = SkeletonEncoder(cfg).eval()
    batch, persons = (1, 1) if preset == "paper" else (3, 2)
    x = random_batch(cfg, batch=batch, persons=persons)
    sequences = batch * persons
    with torch.no_grad():
        embedded, tokens, pooled = encoder.patchify_embed(x), encoder.forward_tokens(x), encoder(x)
    assert embedded.shape == (sequences, cfg.num_temporal_patches, cfg.num_joints, cfg.embed_dim)
    assert tokens.shape == (sequences, cfg.num_tokens, cfg.embed_dim)
    assert pooled.shape == (batch, cfg.embed_dim)
    assert (
        encoder.depth == cfg.depth and encoder.embed_dim == cfg.embed_dim and len(encoder.blocks) == cfg.depth
    )


def test_wrong_input_shape_names_expected_and_got():
    cfg = ENCODER_PRESETS["tiny"]
    encoder = SkeletonEncoder(cfg)
    with pytest.raises(ValueError, match=r"T=32.*got \(2, 3, 40, 25, 2\)"):
        encoder(torch.zeros(2, 3, 40, 25, 2))
    with pytest.raises(ValueError, match=r"got \(2, 3, 32, 25\)"):
        encoder(torch.zeros(2, 3, 32, 25))


def test_pooled_is_mean_over_tokens_and_independent_persons():
    cfg = ENCODER_PRESETS["tiny"]
    encoder = SkeletonEncoder(cfg).eval()
    randomise_parameters(encoder)
    x = random_batch(cfg, batch=3, persons=2)
    pooled = encoder(x)
    # persons never attend to each other: the 2-person feature is the mean of the two 1-person features
    person0, person1 = encoder(x[..., :1]), encoder(x[..., 1:])
    torch.testing.assert_close(pooled, (person0 + person1) / 2, atol=1e-6, rtol=0)
    tokens = encoder.forward_tokens(x[..., :1])
    torch.testing.assert_close(person0, tokens.mean(dim=1), atol=1e-6, rtol=0)


def test_drop_path_schedule_and_behaviour():
    encoder = SkeletonEncoder(
        EncoderConfig(embed_dim=32, depth=4, num_heads=2, num_frames=8, drop_path_rate=0.3)
    )
    assert [block.drop_path.drop_prob for block in encoder.blocks] == pytest.approx([0.0, 0.1, 0.2, 0.3])
    drop = DropPath(0.5).train()
    x = torch.ones(2000, 3, 4)
    out = drop(x)
    per_sample = out.reshape(2000, -1)
    assert set(per_sample.unique().tolist()) <= {0.0, 2.0}
    assert torch.all(per_sample.min(dim=1).values == per_sample.max(dim=1).values)  # one decision per sample
    assert abs(per_sample[:, 0].mean().item() - 1.0) < 0.1
    assert torch.equal(drop.eval()(x), x)


# ------------------------------------------------------------------------------------- official layout
def official_encoder_layout(
    depth=8, dim=256, joints=25, temporal_patches=30, channels=3, t_patch=4, hidden=1024
):
    layout = {
        "joints_embed.proj.weight": (dim, channels, t_patch, 1),
        "joints_embed.proj.bias": (dim,),
        "temp_embed": (1, temporal_patches, 1, dim),
        "pos_embed": (1, 1, joints, dim),
        "norm.weight": (dim,),
        "norm.bias": (dim,),
    }
    for i in range(depth):
        layout |= {
            f"blocks.{i}.norm1.weight": (dim,),
            f"blocks.{i}.norm1.bias": (dim,),
            f"blocks.{i}.attn.qkv.weight": (3 * dim, dim),
            f"blocks.{i}.attn.qkv.bias": (3 * dim,),
            f"blocks.{i}.attn.proj.weight": (dim, dim),
            f"blocks.{i}.attn.proj.bias": (dim,),
            f"blocks.{i}.norm2.weight": (dim,),
            f"blocks.{i}.norm2.bias": (dim,),
            f"blocks.{i}.mlp.fc1.weight": (hidden, dim),
            f"blocks.{i}.mlp.fc1.bias": (hidden,),
            f"blocks.{i}.mlp.fc2.weight": (dim, hidden),
            f"blocks.{i}.mlp.fc2.bias": (dim,),
        }
    return layout


def test_paper_state_dict_equals_official_layout():
    encoder = SkeletonEncoder(EncoderConfig())
    layout = {key: tuple(value.shape) for key, value in encoder.state_dict().items()}
    assert layout == official_encoder_layout()
    assert sum(p.numel() for p in encoder.parameters()) == 6_336_000
    assert sum(p.numel() for p in encoder.blocks[0].parameters()) == 789_760
    assert encoder.blocks[0].attn.scale == pytest.approx(32**-0.5)


def test_initialisation():
    encoder = SkeletonEncoder(EncoderConfig())
    assert torch.all(encoder.blocks[0].attn.qkv.bias == 0) and torch.all(encoder.blocks[3].mlp.fc1.bias == 0)
    assert torch.all(encoder.norm.weight == 1) and torch.all(encoder.blocks[1].norm2.bias == 0)
    qkv = encoder.blocks[0].attn.qkv.weight
    bound = math.sqrt(6.0 / (256 + 768))  # xavier-uniform
    assert qkv.abs().max() <= bound and qkv.abs().max() > 0.9 * bound
    for embedding in (encoder.temp_embed, encoder.pos_embed):
        # trunc-normal std 0.02 with absolute bounds +-2 (timm default): effectively untruncated
        assert 0.018 < embedding.std().item() < 0.022 and abs(embedding.mean().item()) < 0.003


# ---------------------------------------------------------------------- independent reference forward
def reference_official_forward(state, x, depth, num_heads):
    """Plain re-implementation of the official MAMP encoder forward (float64, explicit attention)."""
    state = {key: value.double() for key, value in state.items()}
    x = x.double()
    batch, channels, frames, joints, persons = x.shape
    weight = state["joints_embed.proj.weight"][..., 0]  # (D, C, t_patch)
    dim, _, t_patch = weight.shape
    sequences = x.permute(0, 4, 2, 3, 1).reshape(
        batch * persons, frames // t_patch, t_patch, joints, channels
    )
    tokens = torch.einsum("bpfvc,dcf->bpvd", sequences, weight) + state["joints_embed.proj.bias"]
    tokens = tokens + state["temp_embed"] + state["pos_embed"]
    h = tokens.reshape(batch * persons, -1, dim)

    def layer_norm(y, prefix):
        mean = y.mean(-1, keepdim=True)
        var = ((y - mean) ** 2).mean(-1, keepdim=True)
        return (y - mean) / torch.sqrt(var + 1e-5) * state[prefix + ".weight"] + state[prefix + ".bias"]

    def linear(y, prefix):
        return y @ state[prefix + ".weight"].T + state[prefix + ".bias"]

    head_dim = dim // num_heads
    for i in range(depth):
        p = f"blocks.{i}."
        qkv = linear(layer_norm(h, p + "norm1"), p + "attn.qkv")
        q, k, v = (
            qkv[..., j * dim : (j + 1) * dim].reshape(h.shape[0], -1, num_heads, head_dim).transpose(1, 2)
            for j in range(3)
        )
        weights = torch.softmax(q @ k.transpose(-1, -2) * head_dim**-0.5, dim=-1)
        attended = (weights @ v).transpose(1, 2).reshape(h.shape)
        h = h + linear(attended, p + "attn.proj")
        hidden = linear(layer_norm(h, p + "norm2"), p + "mlp.fc1")
        hidden = 0.5 * hidden * (1 + torch.erf(hidden / math.sqrt(2)))
        h = h + linear(hidden, p + "mlp.fc2")
    h = layer_norm(h, "norm")
    return h, h.reshape(batch, -1, dim).mean(dim=1)


@pytest.mark.parametrize("preset", ["tiny", "small"])
def test_matches_independent_reference_implementation(preset):
    cfg = ENCODER_PRESETS[preset]
    encoder = SkeletonEncoder(cfg).eval()
    randomise_parameters(encoder, seed=1)
    x = random_batch(cfg, batch=2, persons=2, seed=2)
    reference = SkeletonEncoder(cfg)  # a different random init, then the same state dict
    reference.load_state_dict(encoder.state_dict())
    ref_tokens, ref_pooled = reference_official_forward(reference.state_dict(), x, cfg.depth, cfg.num_heads)
    with torch.no_grad():
        torch.testing.assert_close(encoder.forward_tokens(x), ref_tokens.float(), atol=1e-5, rtol=0)
        torch.testing.assert_close(encoder(x), ref_pooled.float(), atol=1e-5, rtol=0)


# ------------------------------------------------------------------------------------------------ heads
def test_projector_predictor_layout_and_counts():
    head = ProjectorPredictor(256, 4096, 256)
    shapes = {key: tuple(value.shape) for key, value in head.state_dict().items()}
    assert shapes["projector.weight"] == (256,) and shapes["projector.running_mean"] == (256,)
    assert shapes["predictor.0.weight"] == (4096, 256) and "predictor.0.bias" not in shapes
    assert shapes["predictor.1.weight"] == (4096,) and shapes["predictor.3.weight"] == (256, 4096)
    assert sum(p.numel() for p in head.parameters()) == 2_106_112
    pooled = torch.randn(8, 256)
    prediction, projection = head.train()(pooled)
    assert prediction.shape == (8, 256) and projection.shape == (8, 256)
    # projector = batch norm: per-feature standardised batch, scaled by the affine weight
    expected = (
        (pooled - pooled.mean(0)) / torch.sqrt(pooled.var(0, unbiased=False) + 1e-5) * head.projector.weight
    )
    torch.testing.assert_close(projection, expected + head.projector.bias, atol=1e-5, rtol=0)
    # STARS weights_init: BN weight ~ N(1, 0.02), Linear weight ~ N(0, 0.02), bias 0
    assert (
        abs(head.predictor[1].weight.mean().item() - 1) < 0.01
        and 0.015 < head.predictor[0].weight.std() < 0.025
    )
    assert torch.all(head.predictor[3].bias == 0)


def test_linear_probe_head():
    head = LinearProbeHead(256, 60)
    assert sum(p.numel() for p in head.parameters() if p.requires_grad) == 15_420
    assert not head.norm.affine and head.norm.eps == 1e-6
    assert 0.008 < head.fc.weight.std().item() < 0.012
    pooled = torch.randn(16, 256) * 3 + 1
    normalised = (pooled - pooled.mean(0)) / torch.sqrt(pooled.var(0, unbiased=False) + 1e-6)
    torch.testing.assert_close(head.train()(pooled), head.fc(normalised), atol=1e-5, rtol=0)


def test_finetune_head_matches_reference_computation():
    batch, persons, temporal, joints, dim, classes = 3, 2, 5, 4, 8, 7
    head = FinetuneHead(dim, joints, classes, hidden_dim=16).eval()
    randomise_parameters(head, seed=3)
    tokens = torch.randn(batch * persons, temporal * joints, dim)
    grid = tokens.reshape(batch, persons, temporal, joints, dim)
    features = grid.mean(dim=2).reshape(batch, persons, joints * dim).mean(dim=1)  # (N, V*D)
    hidden = features @ head.fc1.weight.T + head.fc1.bias
    bn = head.norm
    hidden = (hidden - bn.running_mean) / torch.sqrt(bn.running_var + bn.eps) * bn.weight + bn.bias
    expected = hidden.clamp(min=0) @ head.fc2.weight.T + head.fc2.bias
    torch.testing.assert_close(head(tokens, batch, persons, temporal, joints), expected, atol=1e-5, rtol=0)
    assert sum(p.numel() for p in FinetuneHead(256, 25, 60).parameters()) == 13_236_284
    assert FinetuneHead(256, 25, 60).dropout.p == 0.3


def test_classifier_both_heads():
    cfg = ENCODER_PRESETS["tiny"]
    x = random_batch(cfg, batch=4, persons=2)
    for kind in ("linear", "finetune"):
        model = Classifier(SkeletonEncoder(cfg), kind, num_classes=5)
        assert model(x).shape == (4, 5)
        assert {key.split(".")[0] for key in model.state_dict()} == {"encoder", "head"}
    paper = Classifier(SkeletonEncoder(EncoderConfig(drop_path_rate=0.3)), "finetune", 60)
    assert sum(p.numel() for p in paper.parameters()) == 19_572_284
    with pytest.raises(ValueError, match="head_kind"):
        Classifier(SkeletonEncoder(cfg), "mlp", 5)
    with pytest.raises(ValueError, match="num_classes"):
        Classifier(SkeletonEncoder(cfg), "linear", 0)


# ------------------------------------------------------------------------------ absent second persons
def _with_absent_persons(seed: int = 0) -> torch.Tensor:
    """(6, 3, 32, 25, 2) random batch whose second person is all zero in samples 0, 2, 3 and 5."""
    x = torch.randn(6, 3, 32, 25, 2, generator=torch.Generator().manual_seed(seed))
    x[[0, 2, 3, 5], ..., 1] = 0.0
    return x


def _encoded_batch_sizes(encoder: SkeletonEncoder) -> list[int]:
    sizes: list[int] = []
    encoder.blocks[0].register_forward_pre_hook(lambda module, args: sizes.append(args[0].shape[0]))
    return sizes


def _every_sequence(encoder: SkeletonEncoder, x: torch.Tensor) -> torch.Tensor:
    """Token features of every folded sequence encoded on its own, one at a time (no sharing)."""
    return torch.cat([encoder.forward_tokens(x[n : n + 1, ..., m : m + 1])
                      for n in range(x.shape[0]) for m in range(x.shape[-1])])


def test_absent_persons_are_encoded_once_with_the_same_features():
    torch.manual_seed(0)
    encoder = SkeletonEncoder(ENCODER_PRESETS["tiny"]).eval()
    randomise_parameters(encoder)
    x = _with_absent_persons()
    sizes = _encoded_batch_sizes(encoder)
    with torch.no_grad():
        tokens = encoder.forward_tokens(x)
        pooled = encoder(x)
    assert sizes[:2] == [6 + 2 + 1, 6 + 2 + 1]  # 6 first persons, 2 present second persons, 1 absent one
    with torch.no_grad():
        reference = _every_sequence(encoder, x)
    torch.testing.assert_close(tokens, reference, rtol=1e-5, atol=1e-6)
    expected = reference.reshape(6, 2 * reference.shape[1], -1).mean(dim=1)
    torch.testing.assert_close(pooled, expected, rtol=1e-5, atol=1e-6)


def test_absent_persons_share_gradients_like_separate_copies():
    torch.manual_seed(0)
    encoder = SkeletonEncoder(ENCODER_PRESETS["tiny"]).train()
    randomise_parameters(encoder)
    x = _with_absent_persons(1)
    encoder(x).pow(2).sum().backward()
    shared = {name: p.grad.clone() for name, p in encoder.named_parameters()}
    encoder.zero_grad()
    tokens = _every_sequence(encoder, x)
    tokens.reshape(6, 2 * tokens.shape[1], -1).mean(dim=1).pow(2).sum().backward()
    for name, p in encoder.named_parameters():
        torch.testing.assert_close(shared[name], p.grad, rtol=1e-4, atol=1e-6, msg=name)


def test_absent_persons_are_encoded_separately_under_stochastic_depth():
    torch.manual_seed(0)
    encoder = SkeletonEncoder(encoder_preset("tiny", drop_path_rate=0.2)).train()
    sizes = _encoded_batch_sizes(encoder)
    encoder(_with_absent_persons())
    assert sizes == [12]  # each absent person draws its own drop-path decisions
    encoder.eval()
    with torch.no_grad():
        encoder(_with_absent_persons())
    assert sizes[1] == 9
