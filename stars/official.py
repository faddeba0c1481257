"""The official MAMP / STARS model code, imported from a checkout the user provides, for side-by-side timing.

Nothing of the official code is part of this package: `load_official(DIR)` imports the modules of a
checkout of github.com/maoyunyao/MAMP (``DIR/model_mamp``) or github.com/TaatiTeam/STARS (``DIR/net`` and
``DIR/MAMP/model_mamp``) under their own names, and the builders below instantiate them with the paper's
settings so that `stars bench --against-official DIR` can time their training steps against ours on the
same inputs in one process.

What is timed as "the official step" is their model's forward and backward plus the optimiser they use
(AdamW, betas 0.9/0.95); the host synchronisation of their loops (`loss.item()` every step) is kept, their
loss scaler and gradient-norm logging are left out (both would only slow them down). On a CPU the
official NNCLR batch shuffle, which calls `.cuda()`, is replaced by the same permutation done on the CPU.
"""

from __future__ import annotations

import contextlib
import importlib
import math
import socket
import sys
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as torch_dist
from torch import nn

from stars.models.encoder import EncoderConfig
from stars.models.mamp import MAMPConfig


class OfficialCodeError(ValueError):
    """The folder is not a usable checkout of the official MAMP or STARS code."""


@dataclass
class OfficialCode:
    """The imported official modules: `mamp` (model_mamp.transformer) and, for a STARS checkout,
    `stars_encoder` (net.transformer) and `stars_nnclr` (net.nnclr)."""

    root: Path
    mamp: types.ModuleType | None
    stars_encoder: types.ModuleType | None = None
    stars_nnclr: types.ModuleType | None = None

    @property
    def kind(self) -> str:
        return "STARS" if self.stars_nnclr is not None else "MAMP"


@contextlib.contextmanager
def _on_path(folder: Path) -> Iterator[None]:
    sys.path.insert(0, str(folder))
    try:
        yield
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(str(folder))


def _import_class(dotted: str):
    module_name, _, name = dotted.rpartition(".")
    return getattr(importlib.import_module(module_name), name)


@contextlib.contextmanager
def _torchlight_stand_in() -> Iterator[None]:
    """net/nnclr.py imports `import_class` from the STARS repo's `torchlight` package, whose other modules
    need h5py; only `import_class` is used by the model, so a minimal module provides it."""
    previous = sys.modules.get("torchlight")
    stand_in = types.ModuleType("torchlight")
    stand_in.import_class = _import_class
    sys.modules["torchlight"] = stand_in
    try:
        yield
    finally:
        if previous is None:
            sys.modules.pop("torchlight", None)
        else:
            sys.modules["torchlight"] = previous


def load_official(directory: str | Path) -> OfficialCode:
    """Import the model code of an official MAMP or STARS checkout at `directory`."""
    root = Path(directory).expanduser().resolve()
    if not root.is_dir():
        raise OfficialCodeError(f"{root}: no such folder (give a checkout of the official MAMP or STARS code)")
    stars_net = root / "net" / "nnclr.py"
    mamp_dir = root / "MAMP" if (root / "MAMP" / "model_mamp").is_dir() else root
    if not (mamp_dir / "model_mamp" / "transformer.py").is_file():
        raise OfficialCodeError(
            f"{root}: neither model_mamp/transformer.py (MAMP checkout) nor MAMP/model_mamp/transformer.py "
            "(STARS checkout) found"
        )
    for name in ("model_mamp", "net"):  # a second checkout in one process must not reuse the first one's
        for loaded in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
            del sys.modules[loaded]
    try:
        with _on_path(mamp_dir):
            mamp = importlib.import_module("model_mamp.transformer")
        stars_encoder = stars_nnclr = None
        if stars_net.is_file():
            with _on_path(root), _torchlight_stand_in():
                stars_encoder = importlib.import_module("net.transformer")
                stars_nnclr = importlib.import_module("net.nnclr")
    except Exception as err:  # their code failing to import is the user's checkout problem: one clear line
        raise OfficialCodeError(f"{root}: importing the official code failed: {type(err).__name__}: {err}") from err
    return OfficialCode(root=root, mamp=mamp, stars_encoder=stars_encoder, stars_nnclr=stars_nnclr)


def official_mamp_model(code: OfficialCode, encoder: EncoderConfig, mamp: MAMPConfig) -> nn.Module:
    """Their `model_mamp.transformer.Transformer` with the released pretraining config's arguments."""
    return code.mamp.Transformer(
        dim_in=encoder.in_channels, dim_feat=encoder.embed_dim, decoder_dim_feat=mamp.decoder_dim,
        depth=encoder.depth, decoder_depth=mamp.decoder_depth, num_heads=encoder.num_heads,
        mlp_ratio=encoder.mlp_ratio, num_frames=encoder.num_frames, num_joints=encoder.num_joints,
        patch_size=1, t_patch_size=encoder.t_patch_size, qkv_bias=True, qk_scale=None, drop_rate=0.0,
        attn_drop_rate=0.0, drop_path_rate=0.0, norm_skes_loss=mamp.norm_target,
    )


def official_stars_model(code: OfficialCode, encoder: EncoderConfig, queue_size: int = 32768,
                         hidden: int = 4096) -> nn.Module:
    """Their `net.nnclr.SkeletonNNCLR` around `net.transformer.Transformer`, as the released tuning config."""
    if code.stars_nnclr is None:
        raise OfficialCodeError(f"{code.root}: the STARS tuning step needs a STARS checkout (net/nnclr.py)")
    with _on_path(code.root), _torchlight_stand_in():
        model = code.stars_nnclr.SkeletonNNCLR(
            base_encoder="net.transformer.Transformer", pretrain=True, feature_dim=encoder.embed_dim,
            queue_size=queue_size, Temperature=0.07, topk=0, dim_in=encoder.in_channels,
            dim_feat=encoder.embed_dim, predictor_hidden_dim=hidden, depth=encoder.depth,
            num_heads=encoder.num_heads, mlp_ratio=encoder.mlp_ratio, num_frames=encoder.num_frames,
            num_joints=encoder.num_joints, patch_size=1, t_patch_size=encoder.t_patch_size, qkv_bias=True,
            qk_scale=None, drop_rate=0.0, attn_drop_rate=0.0, drop_path_rate=0.0, motion_aware_tau=0.0,
            mask_ratio=0.0, cls_token=False,
        )
    return model


def ensure_process_group(device: torch.device) -> None:
    """Their NNCLR gathers over a process group: start a one-process group on loopback when none exists."""
    if torch_dist.is_initialized():
        return
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    backend = "nccl" if device.type == "cuda" else "gloo"
    torch_dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1)


def _cpu_batch_shuffle(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    order = torch.randperm(x.shape[0], device=x.device)
    return x[order], torch.argsort(order)


def _cpu_batch_unshuffle(x: torch.Tensor, restore: torch.Tensor) -> torch.Tensor:
    return x[restore]


def _adamw_without_decay_on_biases(named: list[tuple[str, nn.Parameter]], weight_decay: float):
    decay = [p for n, p in named if p.ndim > 1 and not n.endswith(".bias")]
    no_decay = [p for n, p in named if not (p.ndim > 1 and not n.endswith(".bias"))]
    return torch.optim.AdamW([{"params": no_decay, "weight_decay": 0.0},
                              {"params": decay, "weight_decay": weight_decay}], lr=1e-3, betas=(0.9, 0.95))


def official_mamp_step(model: nn.Module, mamp: MAMPConfig) -> Callable[[torch.Tensor], float]:
    """One pretraining step as their engine does it (fp32): forward, loss.item(), backward, AdamW."""
    optimizer = _adamw_without_decay_on_biases(list(model.named_parameters()), 0.05)

    def step(x: torch.Tensor) -> float:
        loss, _, _ = model(x, mask_ratio=mamp.mask_ratio, motion_stride=1, motion_aware_tau=mamp.motion_aware_tau)
        value = loss.item()
        if not math.isfinite(value):
            raise FloatingPointError("official MAMP step: non-finite loss")
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return value

    return step


def official_stars_step(model: nn.Module, depth: int, device: torch.device,
                        layer_decay: float = 0.45, clip: float = 3.0) -> Callable[[torch.Tensor, torch.Tensor], float]:
    """One tuning step as their processor does it: forward on (view, view, ids), loss.item(), backward,
    per-parameter gradient clipping of the student, AdamW over the second half of the blocks, norm and head.
    As in their code every encoder parameter still receives a gradient (the freezing flag is misspelt)."""
    ensure_process_group(device)
    if device.type != "cuda":
        model._batch_shuffle_ddp = _cpu_batch_shuffle
        model._batch_unshuffle_ddp = _cpu_batch_unshuffle
    groups = []
    for name, param in model.encoder_student.named_parameters():
        if name.startswith("blocks") and int(name.split(".")[1]) >= depth // 2:
            groups.append({"params": [param], "lr": 1e-3 * layer_decay ** (depth - int(name.split(".")[1]))})
        elif name.startswith(("norm", "head")):
            groups.append({"params": [param], "lr": 1e-3})
    optimizer = torch.optim.AdamW(groups, lr=1e-3, betas=(0.9, 0.95))
    student = list(model.encoder_student.parameters())

    def step(x: torch.Tensor, ids: torch.Tensor) -> float:
        loss = model(x, x, ids)
        value = loss.item()
        if not math.isfinite(value):
            raise FloatingPointError("official STARS step: non-finite loss")
        optimizer.zero_grad()
        loss.backward()
        for param in student:  # their per-parameter clipping rule, rewritten
            if param.grad is not None:
                scale = clip / (param.grad.norm(2) + 1e-6)
                if scale < 1:
                    param.grad.mul_(scale)
        optimizer.step()
        return value

    return step


__all__ = [
    "OfficialCode", "OfficialCodeError", "load_official", "official_mamp_model", "official_stars_model",
    "official_mamp_step", "official_stars_step", "ensure_process_group",
]
