"""First-in-first-out memory bank of L2-normalised embeddings, with nearest-neighbour look-up.

References: the support set of NNCLR (Dwibedi et al., 2021) and the negative queue of MoCo (He et al., 2020);
the entry-exclusion by sample id follows the STARS code (reference §5.3).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from stars.precision import at_least_fp32, fp32_island


class FeatureQueue(nn.Module):
    """A queue of `size` embeddings of width `dim`, kept as buffers (saved in the state dict, never trained).

    Policy:
      * size and layout: `features (size, dim)` row-major (one embedding per row; the official code keeps the
        transpose `(dim, size)`, see `load_official`), `ids (size,)` long, `ptr` long scalar = next write slot.
      * initialisation: rows drawn from N(0, 1) with `generator` and L2-normalised; `ids` = -1 ("no sample"),
        so the first `size / global_batch` steps of a fresh run look up random vectors (as in the official code).
      * exclusion: `nearest` never returns an entry whose id equals the query's own sample id (its own earlier
        embedding); ids are dataset indices, >= 0, so the -1 of unfilled rows never matches.
      * writing: `enqueue` writes a batch of B rows at `ptr, ptr+1, ...` modulo `size` (wrap-around for any
        B <= size, whether or not B divides `size`) and advances `ptr` once, by B, modulo `size`.
    """

    def __init__(self, size: int = 32768, dim: int = 256, generator: torch.Generator | None = None):
        super().__init__()
        if size < 1 or dim < 1:
            raise ValueError(f"FeatureQueue: size and dim must be >= 1, got size={size}, dim={dim}")
        initial = F.normalize(torch.randn(size, dim, generator=generator), dim=1)
        self.register_buffer("features", initial)
        self.register_buffer("ids", torch.full((size,), -1, dtype=torch.long))
        self.register_buffer("ptr", torch.zeros((), dtype=torch.long))

    @property
    def size(self) -> int:
        return self.features.shape[0]

    @property
    def dim(self) -> int:
        return self.features.shape[1]

    def filled_fraction(self) -> torch.Tensor:
        """Fraction of rows written at least once (0-d float tensor); 1.0 once the queue has wrapped."""
        return (self.ids >= 0).float().mean()

    @torch.no_grad()
    def nearest(
        self,
        z: torch.Tensor,
        sample_ids: torch.Tensor | None,
        topk: int = 0,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Nearest queue entry of every query by cosine similarity (inner product; `z` is L2-normalised).

        z: (B, dim); sample_ids: (B,) dataset indices of the queries, or None for no exclusion.
        topk = 0 takes the most similar entry; topk = k > 0 picks uniformly among the k most similar ones.
        Returns (neighbours (B, dim), a copy of the chosen rows (later enqueues do not change it); indices (B,) into the queue).
        The similarities and the selection run in fp32 even under bf16 autocast (`stars.precision`): near-tied
        neighbours would otherwise be picked by rounding.
        """
        if z.ndim != 2 or z.shape[1] != self.dim:
            raise ValueError(f"FeatureQueue.nearest: z must be (B, {self.dim}), got {tuple(z.shape)}")
        if topk < 0 or topk > self.size:
            raise ValueError(f"FeatureQueue.nearest: topk must be in [0, {self.size}], got {topk}")
        with fp32_island(z.device):
            bank = at_least_fp32(self.features)
            similarity = z.detach().to(bank.dtype) @ bank.T  # (B, size)
        if sample_ids is not None:
            if sample_ids.shape != (z.shape[0],):
                raise ValueError(
                    f"FeatureQueue.nearest: sample_ids must be ({z.shape[0]},), got {tuple(sample_ids.shape)}"
                )
            own_entry = self.ids.unsqueeze(0) == sample_ids.to(self.ids.device).unsqueeze(1)
            similarity = similarity.masked_fill(own_entry, float("-inf"))
        if topk == 0:
            best, chosen = similarity.max(dim=1)
            if torch.isinf(best).any():
                raise RuntimeError(
                    "FeatureQueue.nearest: a query's queue holds only its own sample's entries"
                )
        else:
            top_values, top_indices = similarity.topk(topk, dim=1)  # (B, k), sorted descending
            allowed = torch.isfinite(top_values)
            if not allowed[:, 0].all():
                raise RuntimeError(
                    "FeatureQueue.nearest: a query's queue holds only its own sample's entries"
                )
            # Uniform choice among the allowed top-k slots: the largest of i.i.d. uniform scores.
            scores = torch.rand(top_values.shape, generator=generator, device=top_values.device)
            slot = scores.masked_fill(~allowed, -1.0).argmax(dim=1, keepdim=True)
            chosen = top_indices.gather(1, slot).squeeze(1)
        return self.features[chosen], chosen

    @torch.no_grad()
    def enqueue(self, z: torch.Tensor, ids: torch.Tensor) -> None:
        """Write `z (B, dim)` with dataset indices `ids (B,)` at the pointer (FIFO) and advance it by B."""
        batch = z.shape[0]
        if z.ndim != 2 or z.shape[1] != self.dim:
            raise ValueError(f"FeatureQueue.enqueue: z must be (B, {self.dim}), got {tuple(z.shape)}")
        if ids.shape != (batch,):
            raise ValueError(f"FeatureQueue.enqueue: ids must be ({batch},), got {tuple(ids.shape)}")
        if batch > self.size:
            raise ValueError(
                f"FeatureQueue.enqueue: batch of {batch} rows does not fit a queue of {self.size}"
            )
        slots = (self.ptr + torch.arange(batch, device=self.ptr.device)) % self.size
        self.features[slots] = z.detach().to(self.features.dtype)
        self.ids[slots] = ids.to(self.ids.device, torch.long)
        self.ptr.copy_((self.ptr + batch) % self.size)

    @torch.no_grad()
    def load_official(self, queue_DK: torch.Tensor, ptr: torch.Tensor | int, ids: torch.Tensor) -> None:
        """Load the STARS checkpoint buffers `queue (dim, size)`, `queue_ptr`, `queue_id (size,)`."""
        if tuple(queue_DK.shape) != (self.dim, self.size):
            raise ValueError(
                f"FeatureQueue.load_official: queue must be (dim={self.dim}, size={self.size}) as in the "
                f"official layout, got {tuple(queue_DK.shape)}"
            )
        if tuple(ids.shape) != (self.size,):
            raise ValueError(
                f"FeatureQueue.load_official: queue_id must be ({self.size},), got {tuple(ids.shape)}"
            )
        pointer = int(torch.as_tensor(ptr).reshape(-1)[0])
        if not 0 <= pointer < self.size:
            raise ValueError(f"FeatureQueue.load_official: queue_ptr {pointer} outside [0, {self.size})")
        self.features.copy_(queue_DK.T.to(self.features.dtype))
        self.ids.copy_(ids.to(torch.long))
        self.ptr.fill_(pointer)
