"""Parameter groups: partial-tuning lrs, real freezing, weight decay where it belongs, layer-decay finetuning."""

import functools

import pytest
import torch
from stand_ins import TinyEncoder as _TinyEncoder
from torch import nn

from stars.methods.param_groups import (
    encoder_layer_id,
    finetune_layer_decay_groups,
    partial_tuning_groups,
    pretrain_param_groups,
)

# the stand-in with the paper's depth, so block lrs run alpha^1 .. alpha^8
TinyEncoder = functools.partial(_TinyEncoder, depth=8)


def _head() -> nn.Module:
    return nn.Sequential(nn.BatchNorm1d(8), nn.Linear(8, 4))


def _lr_by_name(groups):
    return {name: group["lr"] for group in groups for name in group["param_names"]}


def _backward(encoder, head):
    head(encoder(torch.randn(4, 3, 4, 3, 2))).square().sum().backward()


def test_partial_tuning_lrs_follow_alpha_to_the_distance_from_the_top():
    torch.manual_seed(0)
    encoder, head = TinyEncoder(depth=8), _head()
    groups = partial_tuning_groups(encoder, [head], base_lr=1e-3, alpha=0.45)
    lrs = _lr_by_name(groups)
    expected_blocks = {7: 4.5e-4, 6: 2.025e-4, 5: 9.1125e-5, 4: 4.100625e-5}
    for index, lr in expected_blocks.items():
        for name in (f"blocks.{index}.fc.weight", f"blocks.{index}.fc.bias", f"blocks.{index}.norm1.weight"):
            assert lrs[name] == pytest.approx(lr, rel=1e-12), name
    for name in ("norm.weight", "norm.bias", "head.0.weight", "head.1.weight", "head.1.bias"):
        assert lrs[name] == pytest.approx(1e-3), name
    tuned = set(lrs)
    assert not any(
        name.startswith(("blocks.0.", "blocks.3.", "joints_embed", "temp_embed", "pos_embed"))
        for name in tuned
    )
    for group in groups:
        assert group["lr"] == pytest.approx(1e-3 * group["lr_scale"])
        assert set(group) >= {"name", "params", "lr", "lr_scale", "weight_decay"}
    assert len({group["name"] for group in groups}) == len(groups)


def test_frozen_parameters_get_no_gradient_and_tuned_ones_do():
    torch.manual_seed(0)
    encoder, head = TinyEncoder(depth=8), _head()
    groups = partial_tuning_groups(encoder, [head], base_lr=1e-3)
    tuned_ids = {id(p) for group in groups for p in group["params"]}
    _backward(encoder, head)
    for name, parameter in encoder.named_parameters():
        if id(parameter) in tuned_ids:
            assert parameter.requires_grad and parameter.grad is not None, name
        else:
            assert not parameter.requires_grad and parameter.grad is None, name
    assert all(p.grad is not None for p in head.parameters())
    frozen = [name for name, p in encoder.named_parameters() if id(p) not in tuned_ids]
    assert {name.split(".")[0] for name in frozen} == {"joints_embed", "temp_embed", "pos_embed", "blocks"}
    assert {name.split(".")[1] for name in frozen if name.startswith("blocks")} == {"0", "1", "2", "3"}


def test_weight_decay_sits_on_matrices_only_and_acts_in_adamw():
    torch.manual_seed(0)
    encoder, head = TinyEncoder(depth=4), _head()
    groups = partial_tuning_groups(encoder, [head], base_lr=1e-2, alpha=0.5, weight_decay=0.05)
    for group in groups:
        for name, parameter in zip(group["param_names"], group["params"]):
            if parameter.ndim >= 2 and not name.endswith(".bias"):
                assert group["weight_decay"] == 0.05, name
            else:
                assert group["weight_decay"] == 0.0, name
    assert any(group["weight_decay"] == 0.05 for group in groups)
    before = {id(p): p.detach().clone() for group in groups for p in group["params"]}
    optimizer = torch.optim.AdamW(groups, betas=(0.9, 0.95))
    for group in groups:  # zero gradients: AdamW's only change is the decoupled decay p *= 1 - lr * wd
        for parameter in group["params"]:
            parameter.grad = torch.zeros_like(parameter)
    optimizer.step()
    for group in groups:
        for parameter in group["params"]:
            factor = 1 - group["lr"] * group["weight_decay"]
            torch.testing.assert_close(parameter.detach(), before[id(parameter)] * factor)


def test_tuning_modes_uniform_all_blocks_head_only_and_extra_prefixes():
    torch.manual_seed(0)
    encoder, head = TinyEncoder(depth=4), _head()
    uniform = _lr_by_name(partial_tuning_groups(encoder, [head], 1e-3, alpha=1.0))
    assert {lr for name, lr in uniform.items() if name.startswith("blocks")} == {1e-3}
    assert {name.split(".")[1] for name in uniform if name.startswith("blocks")} == {"2", "3"}

    everything = _lr_by_name(partial_tuning_groups(encoder, [head], 1e-3, alpha=0.5, tuned_blocks="all"))
    assert everything["blocks.0.fc.weight"] == pytest.approx(1e-3 * 0.5**4)
    assert not any(name.startswith(("joints_embed", "pos_embed")) for name in everything)

    head_only = partial_tuning_groups(encoder, [head], 1e-3, tuned_blocks=[])
    assert {group["name"].split("/")[0] for group in head_only} == {"head"}
    assert not any(p.requires_grad for p in encoder.parameters())
    _backward(encoder, head)
    assert all(p.grad is None for p in encoder.parameters())

    extra = _lr_by_name(
        partial_tuning_groups(
            encoder, [head, nn.Linear(2, 2)], 1e-3, alpha=0.5, also_tune=["pos_embed", "temp_embed"]
        )
    )
    assert extra["pos_embed"] == pytest.approx(1e-3 * 0.5**5)  # layer 0, below block 0
    assert "head1.weight" in extra and "head0.1.weight" in extra
    assert encoder.pos_embed.requires_grad and not encoder.joints_embed.weight.requires_grad


def test_bad_arguments_are_errors():
    encoder, head = TinyEncoder(depth=4), _head()
    with pytest.raises(ValueError, match="outside"):
        partial_tuning_groups(encoder, [head], 1e-3, tuned_blocks=[4])
    with pytest.raises(ValueError, match="matches no encoder parameter"):
        partial_tuning_groups(encoder, [head], 1e-3, also_tune=["cls_token"])
    with pytest.raises(ValueError, match="'all'"):
        partial_tuning_groups(encoder, [head], 1e-3, tuned_blocks="half")
    with pytest.raises(ValueError, match="twice"):
        partial_tuning_groups(encoder, [encoder.norm], 1e-3)
    encoder.depth = 5
    with pytest.raises(ValueError, match="blocks"):
        partial_tuning_groups(encoder, [head], 1e-3)


def test_finetune_layer_decay_scales_and_coverage():
    torch.manual_seed(0)
    encoder, head = TinyEncoder(depth=8), _head()
    for parameter in encoder.parameters():  # a previous partial tuning froze some; finetuning trains all
        parameter.requires_grad_(False)
    groups = finetune_layer_decay_groups(encoder, head, base_lr=3e-4, decay=0.8)
    scales = {name: group["lr_scale"] for group in groups for name in group["param_names"]}
    assert scales["joints_embed.weight"] == pytest.approx(0.8**9)  # 0.134
    assert scales["temp_embed"] == pytest.approx(0.8**9)
    assert scales["blocks.0.fc.weight"] == pytest.approx(0.8**8)  # 0.168
    assert scales["blocks.7.fc.weight"] == pytest.approx(0.8)
    assert scales["norm.weight"] == 1.0 and scales["head.1.weight"] == 1.0
    all_parameters = list(encoder.parameters()) + list(head.parameters())
    assert sum(len(group["params"]) for group in groups) == len(all_parameters)
    assert all(p.requires_grad for p in all_parameters)
    decays = {name: group["weight_decay"] for group in groups for name in group["param_names"]}
    assert decays["temp_embed"] == 0.05 and decays["blocks.3.norm1.weight"] == 0.0
    for group in groups:
        assert group["lr"] == pytest.approx(3e-4 * group["lr_scale"])


def test_pretrain_groups_skip_frozen_and_split_decay():
    torch.manual_seed(0)
    model = TinyEncoder(depth=2)
    model.pos_embed.requires_grad_(False)
    groups = pretrain_param_groups(model, weight_decay=0.05)
    by_name = {group["name"]: group for group in groups}
    assert set(by_name) == {"all/decay", "all/no_decay"}
    assert "lr" not in by_name["all/decay"] and by_name["all/decay"]["lr_scale"] == 1.0
    assert set(by_name["all/decay"]["param_names"]) == {
        "joints_embed.weight",
        "temp_embed",
        "blocks.0.fc.weight",
        "blocks.1.fc.weight",
    }
    assert "pos_embed" not in by_name["all/no_decay"]["param_names"]
    assert all(
        name.endswith((".bias", "norm1.weight", "norm.weight"))
        for name in by_name["all/no_decay"]["param_names"]
    )
    assert pretrain_param_groups(model, base_lr=1.5e-4)[0]["lr"] == 1.5e-4


def test_layer_ids():
    assert encoder_layer_id("joints_embed.proj.weight", 8) == 0
    assert encoder_layer_id("pos_embed", 8) == 0
    assert encoder_layer_id("blocks.0.attn.qkv.weight", 8) == 1
    assert encoder_layer_id("blocks.7.mlp.fc2.bias", 8) == 8
    assert encoder_layer_id("norm.weight", 8) == 9
