"""`stars eval PROTOCOL`: wiring from the command line to the protocol functions.

Each protocol has a config dataclass whose defaults are the paper's, with `small` / `tiny` presets
(fewer epochs, smaller batches) picked by `--preset`; `--set key=value` overrides are applied with
`stars.config.apply_overrides` (an unknown or mistyped key is an error naming it). Without `--ckpt`
(or with `--ckpt random`) the encoder is a random initialisation of the `--preset` size with the
dataset's joint count, the baseline every pretrained encoder must beat; `finetune` without `--ckpt` is the
from-scratch recipe (layer decay 1.0) unless overridden. `--resume` continues an interrupted training
protocol (linear, finetune, semi, transfer); the others train nothing and are recomputed.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from stars.analysis.confusion import CONFUSION_PRESETS, run_confusion
from stars.analysis.tsne import TSNE_PRESETS, run_tsne
from stars.config import ConfigError, apply_overrides
from stars.eval.common import is_random_init
from stars.eval.fewshot import FEWSHOT_PRESETS, run_fewshot
from stars.eval.finetune import FINETUNE_PRESETS, from_scratch, run_finetune
from stars.eval.knn import KNN_PRESETS, run_knn
from stars.eval.linear import LINEAR_PRESETS, run_linear
from stars.eval.semi import SEMI_PRESETS, run_semi
from stars.eval.transfer import TRANSFER_PRESETS, run_transfer
from stars.recipes import detect_dataset, recipe_overrides
from stars.rundir import run_folder


@dataclass(frozen=True)
class Protocol:
    presets: Mapping[str, Any]
    run: Callable[..., dict]
    trains: bool  # accepts resume


PROTOCOLS: dict[str, Protocol] = {
    "knn": Protocol(KNN_PRESETS, run_knn, trains=False),
    "linear": Protocol(LINEAR_PRESETS, run_linear, trains=True),
    "finetune": Protocol(FINETUNE_PRESETS, run_finetune, trains=True),
    "semi": Protocol(SEMI_PRESETS, run_semi, trains=True),
    "fewshot": Protocol(FEWSHOT_PRESETS, run_fewshot, trains=False),
    "transfer": Protocol(TRANSFER_PRESETS, run_transfer, trains=True),
    "tsne": Protocol(TSNE_PRESETS, run_tsne, trains=False),
    "confusion": Protocol(CONFUSION_PRESETS, run_confusion, trains=False),
}


def resolve_config(
    protocol: str, preset: str, overrides: list[str] | None, *, has_ckpt: bool = True, data: str | None = None
) -> Any:
    """The protocol's config: preset, from-scratch rule for finetune without a checkpoint, the recipe of the
    evaluated dataset `data` (`stars.recipes`, e.g. PKU-MMD's linear-probe batch and lr), then overrides."""
    if protocol not in PROTOCOLS:
        raise ConfigError(f"unknown protocol {protocol!r}; choose one of {sorted(PROTOCOLS)}")
    presets = PROTOCOLS[protocol].presets
    if preset not in presets:
        raise ConfigError(f"unknown preset {preset!r} for {protocol}; choose one of {sorted(presets)}")
    cfg = presets[preset]
    if protocol == "finetune" and not has_ckpt:
        cfg = from_scratch(cfg)
    cfg = apply_overrides(cfg, recipe_overrides(detect_dataset(data), protocol))
    return apply_overrides(cfg, overrides or [])


def run_protocol(
    protocol: str,
    *,
    ckpt: str | None,
    data: str,
    out: str,
    cfg: Any,
    target_data: str | None = None,
    preset: str | None = None,
    resume: bool = False,
    device: str | None = None,
    overwrite: bool = False,
) -> dict:
    """Call the protocol function with the arguments it takes, holding `out` (see `stars.rundir.run_folder`:
    a folder with a result needs `resume` or `overwrite`; `ckpt` may not lie inside it)."""
    with run_folder(out, resume=resume, overwrite=overwrite, inputs=[("--ckpt", ckpt)]):
        return _run_protocol(protocol, ckpt=ckpt, data=data, out=out, cfg=cfg, target_data=target_data,
                             preset=preset, resume=resume, device=device)


def _run_protocol(protocol, *, ckpt, data, out, cfg, target_data, preset, resume, device) -> dict:
    if protocol == "transfer":
        if not target_data:
            raise ValueError("transfer needs --target-data (the dataset to evaluate on); --data is the source")
        return run_transfer(ckpt, data, target_data, out, cfg, device, preset, resume=resume)
    if target_data:
        raise ValueError(f"--target-data is only used by the transfer protocol, not by {protocol}")
    entry = PROTOCOLS[protocol]
    if entry.trains:
        return entry.run(ckpt, data, out, cfg, device, preset, resume=resume)
    return entry.run(ckpt, data, out, cfg, device, preset)


def main(args: argparse.Namespace) -> int:
    evaluated = args.target_data if args.protocol == "transfer" else args.data
    cfg = resolve_config(args.protocol, args.preset, args.overrides, has_ckpt=not is_random_init(args.ckpt),
                         data=evaluated)
    metrics = run_protocol(
        args.protocol, ckpt=args.ckpt, data=args.data, out=args.out, cfg=cfg, target_data=args.target_data,
        preset=args.preset, resume=args.resume, device=args.device, overwrite=getattr(args, "overwrite", False),
    )
    if metrics:
        print(json.dumps({"protocol": args.protocol, "out": args.out, "metrics": metrics}, indent=2, default=str))
    if metrics and metrics.get("below_raw_baseline"):
        print(f"note: the encoder's kNN k=1 ({metrics['majority_k1']:.2f}%) is below the raw-coordinate baseline "
              f"({metrics['raw_majority_k1']:.2f}%): its features are worse than its input", file=sys.stderr)
    return 0
