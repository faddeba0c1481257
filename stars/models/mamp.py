"""Stage 1: masked motion prediction (MAMP) and its naive-MAE variant.

The encoder sees only the visible tokens (10% by default); a light transformer decoder receives the
encoded visible tokens plus a learned mask token at every masked position and predicts, for each token,
its 4-frame x 3-coordinate target. MAMP masks high-motion tokens preferentially (motion-aware masking)
and predicts frame differences; the naive MAE variant masks uniformly and predicts positions.

Shapes: N samples, M persons, B = N*M sequences, T frames, V joints, C = 3 coordinates,
TP = T / t_patch_size temporal patches, L = TP*V tokens per sequence, P = t_patch_size*C values per token.
`mask: (B, L)` with 1 = masked (removed from the encoder input), 0 = visible.

References: He et al. 2022 "Masked autoencoders are scalable vision learners" (MAE layout:
patchify / masking / forward_encoder / forward_decoder / forward_loss); Mao et al. 2023 "Masked motion
predictors are strong 3D action representation learners" (motion target and motion-aware masking).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from stars.models.blocks import Block, init_transformer_weights
from stars.models.encoder import EncoderConfig, SkeletonEncoder, fold_persons

MaskingKind = Literal["motion", "random"]
TargetKind = Literal["motion", "position"]
VisibleRounding = Literal["round", "official"]


@dataclass(frozen=True)
class MAMPConfig:
    """Pretraining hyper-parameters; defaults are MAMP's NTU-60 settings."""

    decoder_depth: int = 3  # decoder blocks: 3 for NTU-60, 5 for NTU-120 and PKU-MMD
    decoder_dim: int = 256  # decoder token width
    decoder_heads: int = 8  # decoder attention heads
    mask_ratio: float = 0.9  # fraction of the L tokens hidden from the encoder
    motion_aware_tau: float = 0.80  # temperature of motion-aware masking (0.75 for NTU-120)
    norm_target: bool = True  # standardise each token's target by its own mean / unbiased variance
    masking: MaskingKind = "motion"  # "motion": motion-aware (MAMP); "random": uniform (MAE)
    target: TargetKind = "motion"  # "motion": frame differences (MAMP); "position": coordinates (MAE)
    # "round": round(L * (1 - ratio)) visible tokens (75 of 750 at 0.9);
    # "official": int(L * (1 - ratio)) as the official code, 74 at 0.9 because of float error.
    visible_rounding: VisibleRounding = "round"

    def __post_init__(self) -> None:
        for name in ("decoder_depth", "decoder_dim", "decoder_heads"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"MAMPConfig.{name} must be a positive int, got {value!r}")
        if self.decoder_dim % self.decoder_heads != 0:
            raise ValueError(
                f"MAMPConfig.decoder_dim={self.decoder_dim} is not divisible by decoder_heads={self.decoder_heads}"
            )
        if isinstance(self.mask_ratio, bool) or not isinstance(self.mask_ratio, int | float):
            raise ValueError(f"MAMPConfig.mask_ratio must be a number, got {self.mask_ratio!r}")
        if not 0.0 < self.mask_ratio < 1.0:
            raise ValueError(f"MAMPConfig.mask_ratio must be in (0, 1), got {self.mask_ratio}")
        if not isinstance(self.norm_target, bool):
            raise ValueError(f"MAMPConfig.norm_target must be a bool, got {self.norm_target!r}")
        choices = {
            "masking": ("motion", "random"),
            "target": ("motion", "position"),
            "visible_rounding": ("round", "official"),
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"MAMPConfig.{name} must be one of {allowed}, got {getattr(self, name)!r}")
        if self.masking == "motion" and not (
            isinstance(self.motion_aware_tau, int | float) and self.motion_aware_tau > 0
        ):
            raise ValueError(
                f"MAMPConfig.motion_aware_tau must be > 0 for motion masking, got {self.motion_aware_tau!r}"
            )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> MAMPConfig:
        """Build from a plain dict; unknown keys are an error."""
        known = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown MAMPConfig keys {unknown}; known keys: {sorted(known)}")
        return cls(**values)


MAE_DEFAULTS = MAMPConfig(masking="random", target="position")
"""The naive MAE baseline: uniform random masking and per-token normalised position targets."""


def naive_mae_config(**overrides: Any) -> MAMPConfig:
    """`MAE_DEFAULTS` with field overrides (e.g. `decoder_depth=5`)."""
    return MAMPConfig.from_dict({**MAE_DEFAULTS.to_dict(), **overrides})


def visible_token_count(num_tokens: int, mask_ratio: float, rounding: VisibleRounding = "round") -> int:
    """Number of tokens the encoder sees.

    "round": `round(L * (1 - ratio))` -> 75 of 750 at ratio 0.9.
    "official": `int(L * (1 - ratio))` like the official code; `1 - 0.9` is 0.09999999999999998 in floating
    point, so it truncates to 74 (and to 149 at ratio 0.8, the setting of the paper's Table 11 MACs).
    """
    if rounding == "round":
        return round(num_tokens * (1 - mask_ratio))
    if rounding == "official":
        return int(num_tokens * (1 - mask_ratio))
    raise ValueError(f"visible rounding must be 'round' or 'official', got {rounding!r}")


def mask_from_scores(scores: torch.Tensor, len_keep: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Keep the `len_keep` tokens with the LOWEST score, mask the rest.

    scores: (B, L) -> ids_keep (B, len_keep), mask (B, L) float with 1 = masked, ids_restore (B, L)
    (the permutation that puts [kept tokens, masked tokens] back into the original order).
    """
    ids_shuffle = torch.argsort(scores, dim=1)
    ids_restore = torch.argsort(ids_shuffle, dim=1)
    mask = torch.ones_like(scores)
    mask[:, :len_keep] = 0
    mask = torch.gather(mask, 1, ids_restore)
    return ids_shuffle[:, :len_keep], mask, ids_restore


def gather_tokens(tokens: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """tokens: (B, L, D), ids: (B, K) -> (B, K, D) with row b = tokens[b, ids[b]]."""
    return torch.gather(tokens, 1, ids.unsqueeze(-1).expand(-1, -1, tokens.shape[-1]))


class MaskedMotionModel(SkeletonEncoder):
    """MAMP pretraining model: the skeleton encoder plus a transformer decoder.

    The class extends `SkeletonEncoder` so that the encoder parameters keep their flat official names
    (`joints_embed.*`, `temp_embed`, `pos_embed`, `blocks.*`, `norm.*`) next to the decoder's
    (`decoder_embed`, `mask_token`, `decoder_temp_embed`, `decoder_pos_embed`, `decoder_blocks.{i}`,
    `decoder_norm`, `decoder_pred`): `state_dict()` keys equal those of official MAMP checkpoints.
    `forward` is the pretraining step; `encoder_state_dict()` / `to_encoder()` give the encoder alone.
    `SkeletonEncoder.forward(model, x)` still gives the pooled (N, D) representation of the unmasked input.
    Visible tokens per sequence: `len_keep = visible_token_count(L, mask_ratio, visible_rounding)`, by default
    round(750 * 0.1) = 75; `visible_rounding="official"` reproduces the official int() truncation (74 at
    ratio 0.9 by float error; 149 at ratio 0.8, the setting behind the paper's Table 11 MACs).
    Decoder blocks use no drop-path (the official code reuses the encoder's schedule, 0 in every config).
    Configs default to the paper's (`EncoderConfig()`, `MAMPConfig()`).
    """

    def __init__(self, encoder_cfg: EncoderConfig | None = None, mamp_cfg: MAMPConfig | None = None):
        encoder_cfg = EncoderConfig() if encoder_cfg is None else encoder_cfg
        mamp_cfg = MAMPConfig() if mamp_cfg is None else mamp_cfg
        super().__init__(encoder_cfg)
        self.mamp_cfg = mamp_cfg
        if mamp_cfg.masking == "motion" and encoder_cfg.num_temporal_patches < 2:
            raise ValueError(
                "motion-aware masking needs at least 2 temporal patches (num_frames >= 2*t_patch_size)"
            )
        self.len_keep = visible_token_count(
            encoder_cfg.num_tokens, mamp_cfg.mask_ratio, mamp_cfg.visible_rounding
        )
        if not 1 <= self.len_keep < encoder_cfg.num_tokens:
            raise ValueError(
                f"mask_ratio {mamp_cfg.mask_ratio} leaves {self.len_keep} of {encoder_cfg.num_tokens} tokens visible; "
                "need at least one visible and one masked token"
            )
        dim = mamp_cfg.decoder_dim
        self.patch_values = encoder_cfg.t_patch_size * encoder_cfg.in_channels
        self.decoder_embed = nn.Linear(encoder_cfg.embed_dim, dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.decoder_temp_embed = nn.Parameter(torch.zeros(1, encoder_cfg.num_temporal_patches, 1, dim))
        self.decoder_pos_embed = nn.Parameter(torch.zeros(1, 1, encoder_cfg.num_joints, dim))
        self.decoder_blocks = nn.ModuleList(
            [Block(dim, mamp_cfg.decoder_heads, encoder_cfg.mlp_ratio) for _ in range(mamp_cfg.decoder_depth)]
        )
        self.decoder_norm = nn.LayerNorm(dim)
        self.decoder_pred = nn.Linear(dim, self.patch_values)
        for module in (self.decoder_embed, self.decoder_blocks, self.decoder_norm, self.decoder_pred):
            module.apply(init_transformer_weights)
        for parameter in (self.mask_token, self.decoder_temp_embed, self.decoder_pos_embed):
            nn.init.trunc_normal_(parameter, std=0.02)

    # ----------------------------------------------------------------------------------- encoder part
    def encoder_state_dict(self) -> dict[str, torch.Tensor]:
        """The encoder's parameters under their `SkeletonEncoder` names (decoder and mask token left out)."""
        return {
            key: value
            for key, value in self.state_dict().items()
            if not (key.startswith("decoder") or key.startswith("mask_token"))
        }

    def to_encoder(self) -> SkeletonEncoder:
        """A standalone `SkeletonEncoder` holding a copy of this model's encoder weights."""
        encoder = SkeletonEncoder(self.cfg)
        encoder.load_state_dict(self.encoder_state_dict())
        return encoder.to(self.pos_embed.device)

    # ------------------------------------------------------------------------------------- targets
    def motion_target(self, sequences: torch.Tensor) -> torch.Tensor:
        """sequences: (B, T, V, C) -> motion (B, T, V, C), m[t] = x[t+1] - x[t] and m[T-1] = 0."""
        motion = torch.zeros_like(sequences)
        motion[:, :-1] = sequences[:, 1:] - sequences[:, :-1]
        return motion

    def patchify(self, sequences: torch.Tensor) -> torch.Tensor:
        """sequences: (B, T, V, C) -> patches (B, L, P); token t*V + v holds frames 4t..4t+3 of joint v,
        values ordered frame-in-patch major, coordinate minor ([f0 x, f0 y, f0 z, f1 x, ...])."""
        batch, frames, joints, channels = sequences.shape
        patch = self.cfg.t_patch_size
        patches = sequences.reshape(batch, frames // patch, patch, joints, channels).permute(0, 1, 3, 2, 4)
        return patches.reshape(batch, (frames // patch) * joints, patch * channels)

    def reconstruction_target(self, sequences: torch.Tensor) -> torch.Tensor:
        """sequences: (B, T, V, C) -> target (B, L, P): patchified motion (MAMP) or positions (MAE),
        each token standardised by its own mean and unbiased variance when `norm_target`."""
        source = self.motion_target(sequences) if self.mamp_cfg.target == "motion" else sequences
        target = self.patchify(source)
        if self.mamp_cfg.norm_target:
            mean = target.mean(dim=-1, keepdim=True)
            var = target.var(dim=-1, keepdim=True, unbiased=True)
            target = (target - mean) / torch.sqrt(var + 1e-6)
        return target

    # ------------------------------------------------------------------------------------- masking
    def token_motion_intensity(self, patches: torch.Tensor) -> torch.Tensor:
        """patches: input positions (B, L, P) -> motion intensity I (B, L).

        I[t, v] = mean over the P values of |patch[t, v] - patch[t-1, v]| for t >= 1, and I[0] = I[1].
        """
        batch = patches.shape[0]
        grid = patches.reshape(batch, self.cfg.num_temporal_patches, self.cfg.num_joints, self.patch_values)
        difference = (grid[:, 1:] - grid[:, :-1]).abs()
        difference = torch.cat([difference[:, :1], difference], dim=1)
        return difference.mean(dim=-1).reshape(batch, -1)

    def motion_aware_mask(
        self, intensity: torch.Tensor, len_keep: int, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Mask tokens with probability increasing with their motion.

        intensity: (B, L) -> ids_keep (B, len_keep), mask (B, L) (1 = masked), ids_restore (B, L).
        pi = softmax(I / (tau * max_L I + 1e-10)); Gumbel-max ranking score = log pi + Gumbel noise
        (`-log(-log(U + 1e-10) + 1e-10)`, U ~ U[0, 1)); the len_keep lowest scores stay visible. This samples
        the masked set without replacement with probabilities proportional to pi. `generator` (same device
        as `intensity`) makes the draw reproducible.
        """
        tau = self.mamp_cfg.motion_aware_tau
        scaled = intensity / (tau * intensity.amax(dim=1, keepdim=True) + 1e-10)
        log_probs = torch.log_softmax(scaled, dim=1)
        uniform = torch.rand(
            intensity.shape, generator=generator, device=intensity.device, dtype=intensity.dtype
        )
        scores = log_probs - torch.log(-torch.log(uniform + 1e-10) + 1e-10)
        return mask_from_scores(scores, len_keep)

    def random_mask(
        self, batch: int, len_keep: int, device: torch.device, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Uniform masking (MAE): -> ids_keep (B, len_keep), mask (B, L) (1 = masked), ids_restore (B, L)."""
        noise = torch.rand((batch, self.cfg.num_tokens), generator=generator, device=device)
        return mask_from_scores(noise, len_keep)

    # ------------------------------------------------------------------------------------- forward
    def forward_encoder(
        self, x: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x: (N, C, T, V, M) -> latent (B, len_keep, D) of the visible tokens, mask (B, L), ids_restore (B, L)."""
        tokens = self.patchify_embed(x).flatten(1, 2)  # (B, L, D)
        sequences = fold_persons(x)
        if self.mamp_cfg.masking == "motion":
            with torch.no_grad():
                intensity = self.token_motion_intensity(self.patchify(sequences))
            ids_keep, mask, ids_restore = self.motion_aware_mask(intensity, self.len_keep, generator)
        else:
            ids_keep, mask, ids_restore = self.random_mask(
                tokens.shape[0], self.len_keep, x.device, generator
            )
        latent = self.encode_tokens(gather_tokens(tokens, ids_keep))
        return latent, mask, ids_restore

    def forward_decoder(self, latent: torch.Tensor, ids_restore: torch.Tensor) -> torch.Tensor:
        """latent: (B, len_keep, D), ids_restore: (B, L) -> prediction (B, L, P) for every token."""
        visible = self.decoder_embed(latent)
        batch, num_visible, dim = visible.shape
        num_tokens = ids_restore.shape[1]
        mask_tokens = self.mask_token.expand(batch, num_tokens - num_visible, dim)
        tokens = gather_tokens(torch.cat([visible, mask_tokens], dim=1), ids_restore)
        tokens = tokens.reshape(batch, self.cfg.num_temporal_patches, self.cfg.num_joints, dim)
        tokens = (tokens + self.decoder_temp_embed + self.decoder_pos_embed).flatten(1, 2)
        for block in self.decoder_blocks:
            tokens = block(tokens)
        return self.decoder_pred(self.decoder_norm(tokens))

    def forward_loss(self, x: torch.Tensor, pred: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x: (N, C, T, V, M), pred: (B, L, P), mask: (B, L) -> scalar loss.

        Per-token MSE over the P values, averaged over masked tokens only (all B sequences pooled,
        zero-padded persons included).
        """
        self.check_input(x)
        target = self.reconstruction_target(fold_persons(x))
        per_token = (pred - target).pow(2).mean(dim=-1)
        return (per_token * mask).sum() / mask.sum()

    def forward(
        self, x: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x: (N, C, T, V, M) -> (loss scalar, pred (N*M, L, P), mask (N*M, L) with 1 = masked)."""
        latent, mask, ids_restore = self.forward_encoder(x, generator)
        pred = self.forward_decoder(latent, ids_restore)
        return self.forward_loss(x, pred, mask), pred, mask
