"""Optimizer parameter groups: partial tuning (STARS stage 2), layer-wise lr decay (finetuning), and plain
weight-decay grouping (pretraining).

Layers of the encoder are numbered 0 (patch embedding `joints_embed`, `temp_embed`, `pos_embed`), i + 1 for
`blocks.i`, and depth + 1 for the final `norm` (and any other encoder parameter) and the heads; a parameter of
layer l gets lr_scale = decay ** (depth + 1 - l). Weight decay applies to parameters with >= 2 dimensions
(embeddings included) and never to 1-D parameters or biases.

Every group is a dict with `params`, `param_names`, `name`, `lr_scale`, `weight_decay`, and `lr` (= base_lr *
lr_scale) whenever a base lr is given; a scheduler sets `group["lr"] = lr_now * group["lr_scale"]`.

References: the layer-decay grouping of BEiT / MAE (`util/lr_decay.py`, reference §6.5) and the STARS partial
tuning rule (reference §5.4).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from torch import nn

EMBEDDING_PREFIXES = ("joints_embed", "temp_embed", "pos_embed")


def encoder_depth(encoder: nn.Module) -> int:
    """Number of transformer blocks, checked against `encoder.depth` when the encoder has one."""
    if not hasattr(encoder, "blocks"):
        raise ValueError(f"param_groups: encoder {type(encoder).__name__} has no `blocks`")
    depth = len(encoder.blocks)
    if hasattr(encoder, "depth") and int(encoder.depth) != depth:
        raise ValueError(f"param_groups: encoder.depth = {encoder.depth} but it has {depth} blocks")
    return depth


def encoder_layer_id(name: str, depth: int) -> int:
    """Layer of an encoder parameter name: 0 embeddings, i + 1 for `blocks.i.*`, depth + 1 otherwise."""
    if _matches(name, EMBEDDING_PREFIXES):
        return 0
    if name.startswith("blocks."):
        return int(name.split(".")[1]) + 1
    return depth + 1


def uses_weight_decay(name: str, parameter: nn.Parameter) -> bool:
    """Decay >= 2-D weights (embeddings included); not 1-D parameters (norms, BatchNorm affine) nor biases."""
    return parameter.ndim >= 2 and not name.endswith(".bias")


def _matches(name: str, prefixes: Iterable[str]) -> bool:
    return any(name == prefix or name.startswith(prefix + ".") for prefix in prefixes)


def _layer_name(layer_id: int, depth: int) -> str:
    if layer_id == 0:
        return "embeddings"
    if layer_id <= depth:
        return f"block{layer_id - 1}"
    return "norm"


class _GroupBuilder:
    """Collects (name, parameter) pairs into groups keyed by (label, decays), in order of first appearance."""

    def __init__(self, base_lr: float | None, weight_decay: float):
        self.base_lr = base_lr
        self.weight_decay = weight_decay
        self.groups: dict[tuple[str, bool], dict] = {}
        self.seen: set[int] = set()

    def add(self, label: str, name: str, parameter: nn.Parameter, lr_scale: float) -> None:
        if id(parameter) in self.seen:
            raise ValueError(f"param_groups: parameter {name} is listed twice (shared between modules?)")
        self.seen.add(id(parameter))
        decays = uses_weight_decay(name, parameter)
        key = (label, decays)
        if key not in self.groups:
            group = {
                "name": f"{label}/{'decay' if decays else 'no_decay'}",
                "params": [],
                "param_names": [],
                "lr_scale": lr_scale,
                "weight_decay": self.weight_decay if decays else 0.0,
            }
            if self.base_lr is not None:
                group["lr"] = self.base_lr * lr_scale
            self.groups[key] = group
        self.groups[key]["params"].append(parameter)
        self.groups[key]["param_names"].append(name)

    def result(self) -> list[dict]:
        return list(self.groups.values())


def _resolve_tuned_blocks(tuned_blocks: Sequence[int] | str | None, depth: int) -> list[int]:
    if tuned_blocks is None:
        return list(range(depth // 2, depth))
    if isinstance(tuned_blocks, str):
        if tuned_blocks != "all":
            raise ValueError(
                f"partial_tuning_groups: tuned_blocks must be None, 'all' or indices, got {tuned_blocks!r}"
            )
        return list(range(depth))
    blocks = sorted({int(index) for index in tuned_blocks})
    if any(not 0 <= index < depth for index in blocks):
        raise ValueError(f"partial_tuning_groups: tuned_blocks {blocks} outside 0..{depth - 1}")
    return blocks


def partial_tuning_groups(
    encoder: nn.Module,
    head_modules: Sequence[nn.Module],
    base_lr: float,
    alpha: float = 0.45,
    tuned_blocks: Sequence[int] | str | None = None,
    weight_decay: float = 0.05,
    also_tune: Sequence[str] = (),
    tune_norm: bool | None = None,
) -> list[dict]:
    """AdamW groups for STARS tuning; every encoder parameter outside them is frozen (requires_grad=False).

    Heads and the final `norm` train at base_lr, block i at base_lr * alpha ** (depth - i).
    tuned_blocks: None = the second half (indices >= depth // 2, official third stage), "all", or a list of
        indices; [] together with the default tune_norm=None gives the head-only phase of the 3-stage workflow.
    tune_norm: tune the final norm; None = only when some block is tuned.
    also_tune: further encoder parameter-name prefixes to tune (e.g. "pos_embed"), at their layer's lr.
    alpha = 1.0 tunes the chosen blocks uniformly at base_lr.
    """
    if alpha <= 0 or base_lr <= 0:
        raise ValueError(f"partial_tuning_groups: alpha and base_lr must be > 0, got {alpha} and {base_lr}")
    depth = encoder_depth(encoder)
    blocks = _resolve_tuned_blocks(tuned_blocks, depth)
    if tune_norm is None:
        tune_norm = bool(blocks)
    encoder_parameters = dict(encoder.named_parameters())
    tuned_prefixes = [f"blocks.{index}" for index in blocks] + (["norm"] if tune_norm else [])
    for prefix in list(also_tune):
        if not any(_matches(name, [prefix]) for name in encoder_parameters):
            raise ValueError(
                f"partial_tuning_groups: also_tune prefix {prefix!r} matches no encoder parameter"
            )
        tuned_prefixes.append(prefix)

    builder = _GroupBuilder(base_lr, weight_decay)
    for index, head in enumerate(head_modules):
        head_label = "head" if len(head_modules) == 1 else f"head{index}"
        for name, parameter in head.named_parameters():
            parameter.requires_grad_(True)
            builder.add(head_label, f"{head_label}.{name}", parameter, 1.0)
    for name, parameter in encoder_parameters.items():
        if not _matches(name, tuned_prefixes):
            parameter.requires_grad_(False)
            continue
        parameter.requires_grad_(True)
        layer_id = encoder_layer_id(name, depth)
        builder.add(_layer_name(layer_id, depth), name, parameter, alpha ** (depth + 1 - layer_id))
    return builder.result()


def finetune_layer_decay_groups(
    encoder: nn.Module, head: nn.Module, base_lr: float, decay: float = 0.8, weight_decay: float = 0.05
) -> list[dict]:
    """AdamW groups for full finetuning with layer-wise lr decay (every parameter trained).

    lr_scale = decay ** (depth + 1 - layer): embeddings decay ** (depth + 1), block i decay ** (depth - i),
    final norm and head 1. decay = 1.0 gives the from-scratch recipe (one lr everywhere).
    """
    depth = encoder_depth(encoder)
    builder = _GroupBuilder(base_lr, weight_decay)
    for name, parameter in encoder.named_parameters():
        parameter.requires_grad_(True)
        layer_id = encoder_layer_id(name, depth)
        builder.add(_layer_name(layer_id, depth), name, parameter, decay ** (depth + 1 - layer_id))
    for name, parameter in head.named_parameters():
        parameter.requires_grad_(True)
        builder.add("head", f"head.{name}", parameter, 1.0)
    return builder.result()


def decay_all(groups: list[dict], weight_decay: float) -> list[dict]:
    """`groups` with AdamW's decay on every group, biases and 1-D parameters included (`weight_decay_scope=all`,
    the released STARS code's behaviour)."""
    for group in groups:
        group["weight_decay"] = weight_decay
    return groups


def pretrain_param_groups(
    model: nn.Module, weight_decay: float = 0.05, base_lr: float | None = None
) -> list[dict]:
    """Two groups over the trainable parameters of `model`: `decay` (>= 2-D weights) and `no_decay` (1-D
    parameters and biases). Without base_lr the groups carry no `lr` (the optimizer's default applies)."""
    builder = _GroupBuilder(base_lr, weight_decay)
    for name, parameter in model.named_parameters():
        if parameter.requires_grad:
            builder.add("all", name, parameter, 1.0)
    return builder.result()
