"""Transfer learning: an encoder pretrained (and tuned) on a source dataset, evaluated by linear probe or
finetuning on a target dataset (`--data` = source, `--target-data` = target).

The official transfer runs (reference §6.6) finetune NTU-60/120 or PKU-I encoders on PKU-II, all in the
NTU 25-joint layout. Joints are tokens with their own learned spatial embedding, so the target must
store the same joints in the same order as the source: for NW-UCLA (Kinect v1 order, `kinect_v1_20`)
<-> UTD-MHAD (own order, `utd_mhad20`) the target is prepared in the source's layout
(`stars prepare utd-mhad ... --set layout=kinect_v1_20`). A differing layout is an error that says so.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch

from stars import dist
from stars.data.npz import load_split, read_header
from stars.eval.common import load_encoder_for_eval, resolve_device, write_result
from stars.eval.finetune import FINETUNE_PRESETS, FinetuneConfig, train_finetune
from stars.eval.linear import LINEAR_PRESETS, LinearConfig, train_linear_probe
from stars.models.encoder import SkeletonEncoder

PREPARE_TARGETS = {"utd_mhad20": "utd-mhad", "kinect_v1_20": "nw-ucla", "ntu25": "ntu60"}


@dataclass(frozen=True)
class TransferConfig:
    """Transfer protocol: which supervised protocol runs on the target, with its settings."""

    protocol: Literal["finetune", "linear"] = "finetune"  # finetune is the official transfer
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    linear: LinearConfig = field(default_factory=LinearConfig)

    def __post_init__(self) -> None:
        if self.protocol not in ("finetune", "linear"):
            raise ValueError(f"TransferConfig.protocol must be 'finetune' or 'linear', got {self.protocol!r}")


TRANSFER_PRESETS = {
    "paper": TransferConfig(),
    "small": TransferConfig(finetune=FINETUNE_PRESETS["small"], linear=LINEAR_PRESETS["small"]),
    "tiny": TransferConfig(finetune=FINETUNE_PRESETS["tiny"], linear=LINEAR_PRESETS["tiny"]),
}


def check_transfer_layouts(source_data: str | None, target_data: str, encoder: SkeletonEncoder) -> dict[str, str]:
    """ValueError unless the target stores the source's joints in the source's order.

    source_data: the dataset the encoder was trained on (None: only the joint count can be checked).
    -> {"source_layout", "target_layout"}.
    """
    target = read_header(target_data)["layout"]
    if source_data is not None:
        source = read_header(source_data)["layout"]
        if source.name != target.name:
            prepare = PREPARE_TARGETS.get(target.name, "<target>")
            raise ValueError(
                f"transfer: the encoder was trained on {source_data} in layout {source.name!r} "
                f"({source.num_joints} joints) but the target {target_data} uses layout {target.name!r} "
                f"({target.num_joints} joints); joints are tokens with learned embeddings, so prepare the "
                f"target in the source's layout, e.g. `stars prepare {prepare} --raw RAW --out DIR "
                f"--set layout={source.name}`"
            )
        source_name = source.name
    else:
        source_name = "unknown (no --data given)"
    if target.num_joints != encoder.cfg.num_joints:
        raise ValueError(
            f"transfer: the encoder expects {encoder.cfg.num_joints} joints but the target {target_data} has "
            f"{target.num_joints} (layout {target.name!r}); prepare the target in the encoder's layout"
        )
    return {"source_layout": source_name, "target_layout": target.name}


def run_transfer(
    ckpt: str | None,
    source_data: str | None,
    target_data: str,
    out: str | Path,
    cfg: TransferConfig = TransferConfig(),
    device: str | torch.device | None = None,
    preset: str | None = None,
    *,
    resume: bool = False,
    stop_after: int | None = None,
) -> dict[str, Any]:
    """`stars eval transfer`: layouts checked, then linear probe or finetune on the target's train split,
    top-1 on its test split. Writes metrics.json, config.yaml, run.json (+ training files) to `out`."""
    device = resolve_device(device)
    inner = cfg.finetune if cfg.protocol == "finetune" else cfg.linear
    drop_path = cfg.finetune.drop_path if cfg.protocol == "finetune" else 0.0
    encoder, info = load_encoder_for_eval(ckpt, preset, device, drop_path=drop_path, seed=inner.seed,
                                          data=target_data)
    layouts = check_transfer_layouts(source_data, target_data, encoder)
    train, test = load_split(target_data, "train"), load_split(target_data, "test")
    if cfg.protocol == "finetune":
        metrics = train_finetune(encoder, train, test, out, cfg.finetune, device, resume=resume, stop_after=stop_after)
    else:
        metrics = train_linear_probe(encoder, train, test, out, cfg.linear, device, resume=resume, stop_after=stop_after)
    if metrics and dist.is_main_process():
        write_result(
            out, "transfer", metrics, cfg, target_data, inner.seed, device, encoder=info,
            source_data=str(source_data or ""), **layouts,
        )
    return metrics


__all__ = ["TransferConfig", "TRANSFER_PRESETS", "check_transfer_layouts", "run_transfer"]
