"""Process-group helpers: one code path for a single process, one GPU, or many under torchrun.

Nothing here needs a launcher: without the torchrun environment variables every helper acts as a
world of size 1.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as torch_dist


@dataclass(frozen=True)
class DistInfo:
    rank: int
    local_rank: int
    world_size: int
    device: torch.device


def is_distributed() -> bool:
    return torch_dist.is_available() and torch_dist.is_initialized()


def get_rank() -> int:
    return torch_dist.get_rank() if is_distributed() else 0


def get_world_size() -> int:
    return torch_dist.get_world_size() if is_distributed() else 1


def is_main_process() -> bool:
    return get_rank() == 0


def pick_device(requested: str = "auto") -> torch.device:
    """`auto` -> cuda when present, else cpu; otherwise the named device."""
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(requested)
    except (RuntimeError, TypeError):
        raise ValueError(f"unknown device {requested!r}; use auto, cpu, cuda or cuda:N") from None
    if device.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"unsupported device {requested!r}; use auto, cpu, cuda or cuda:N")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {requested!r} asked for but CUDA is not available")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ValueError(f"device {requested!r} asked for but this machine has {torch.cuda.device_count()} "
                         "CUDA device(s)")
    return device


def init_distributed(device: str = "auto") -> DistInfo:
    """Join the process group when started by torchrun (env RANK/WORLD_SIZE, even a world of one process:
    the distributed code path then runs as it would on several GPUs), else run alone."""
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ and "LOCAL_RANK" in os.environ:
        rank = int(os.environ["RANK"])
        local_rank = int(os.environ.get("LOCAL_RANK", 0))
        world_size = int(os.environ["WORLD_SIZE"])
        use_cuda = torch.cuda.is_available() and device != "cpu"
        if use_cuda:
            torch.cuda.set_device(local_rank)
            dev = torch.device("cuda", local_rank)
        else:
            dev = torch.device("cpu")
        if not is_distributed():
            torch_dist.init_process_group(backend="nccl" if use_cuda else "gloo")
        return DistInfo(rank, local_rank, world_size, dev)
    return DistInfo(0, 0, 1, pick_device(device))


def barrier() -> None:
    if is_distributed():
        torch_dist.barrier()


class _GatherWithGrad(torch.autograd.Function):
    """All-gather whose backward returns each rank its slice of the summed gradient."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:
        world = get_world_size()
        parts = [torch.empty_like(tensor) for _ in range(world)]
        torch_dist.all_gather(parts, tensor.contiguous())
        ctx.rank, ctx.batch = get_rank(), tensor.shape[0]
        return torch.cat(parts, dim=0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous()
        torch_dist.all_reduce(grad)
        return grad[ctx.rank * ctx.batch : (ctx.rank + 1) * ctx.batch]


def all_gather_with_grad(tensor: torch.Tensor) -> torch.Tensor:
    """(B, ...) on every rank -> (world*B, ...), rank-major; gradients flow back to every rank."""
    if not is_distributed() or get_world_size() == 1:
        return tensor
    return _GatherWithGrad.apply(tensor)


@torch.no_grad()
def all_gather_no_grad(tensor: torch.Tensor) -> torch.Tensor:
    """(B, ...) on every rank -> (world*B, ...), rank-major, detached."""
    if not is_distributed() or get_world_size() == 1:
        return tensor.detach()
    parts = [torch.empty_like(tensor) for _ in range(get_world_size())]
    torch_dist.all_gather(parts, tensor.contiguous())
    return torch.cat(parts, dim=0)


def broadcast_object(obj):
    """Rank 0's python object on every rank."""
    if not is_distributed():
        return obj
    holder = [obj]
    torch_dist.broadcast_object_list(holder, src=0)
    return holder[0]
