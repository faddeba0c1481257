"""Per-dataset recipes: the settings the released configs change from one dataset to the next.

The config dataclasses default to NTU-60. A run on NTU-120 or PKU-MMD gets that dataset's released
settings from `DATASET_RECIPES`, chosen from the dataset file (`detect_dataset`), applied after the size
preset and before the user's `--set` overrides, and recorded in the run's config as `dataset_preset`
(`--set dataset_preset=none` switches the recipe off, `--set dataset_preset=ntu120` forces one).

Sources (reference-stars-mamp.md): stage 1 §4.1, §4.3 (decoder depth 3 for NTU-60, 5 for NTU-120 and PKU;
motion-aware tau 0.80 for NTU-60 and PKU, 0.75 for NTU-120); stage 2 §5.1, §5.7 (layer-decay alpha 0.45
NTU-60, 0.40 NTU-120 third stage, 0.35 PKU third stage; base lr 1e-4 for PKU; NTU-120 and PKU exist only as
two-step configs, and the published NTU-60 XView weights are the two-step `clrtuning_thirdstage_ntu60_view.pt`,
§7); linear probe §6.1 (PKU-MMD II: 16 per GPU x 2 GPUs, lr 0.01).

A `<kind>:released` (or `<kind>:<method>:released`) entry holds settings of the released code that differ
from our defaults for that dataset only; it applies when the run asks for it (`released_recipe=true`, set by
the paper profile): STARS retrained MAMP for PKU-MMD with weight decay on every parameter and tuned the
checkpoint of epoch 300 of its 400-epoch schedule (§4.4, §4.6, §8.2 item 11, §10 item 8).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

# dataset preset -> kind -> {dotted config key: value}. "tune" applies to every tuning method except where
# "tune:<method>" narrows a key to one method; decoder sizes only apply to the paper-size preset.
DATASET_RECIPES: dict[str, dict[str, dict[str, Any]]] = {
    "none": {},
    "ntu60-xsub": {
        "pretrain": {"mamp.decoder_depth": 3, "mamp.motion_aware_tau": 0.80},
        "tune": {"alpha": 0.45, "optim.lr": 1e-3, "optim.min_lr": 1e-3},
        "tune:stars": {"workflow": "one-step"},  # the README's merged config
    },
    "ntu60-xview": {
        "pretrain": {"mamp.decoder_depth": 3, "mamp.motion_aware_tau": 0.80},
        "tune": {"alpha": 0.45, "optim.lr": 1e-3, "optim.min_lr": 1e-3},
        "tune:stars": {"workflow": "two-step"},  # the released XView weights are second + third stage
    },
    "ntu120": {
        "pretrain": {"mamp.decoder_depth": 5, "mamp.motion_aware_tau": 0.75},
        "tune": {"alpha": 0.40, "optim.lr": 1e-3, "optim.min_lr": 1e-3},
        "tune:stars": {"workflow": "two-step"},
    },
    "pku": {
        "pretrain": {"mamp.decoder_depth": 5, "mamp.motion_aware_tau": 0.80},
        "tune": {"alpha": 0.35, "optim.lr": 1e-4, "optim.min_lr": 1e-4},
        "pretrain:mamp:released": {"weight_decay_scope": "all", "stop_epoch": 300},
        "tune:stars": {"workflow": "two-step"},
        "linear": {"batch_size": 32, "lr": 0.01},
        "transfer": {"linear.batch_size": 32, "linear.lr": 0.01},
    },
}

# The released code's behaviour where our default differs and a published number can depend on it
# (docs/reproduction.md, rows marked "sets"): the `paper` profile applies these `--set` overrides.
PAPER_SWITCHES: dict[str, tuple[str, ...]] = {
    "pretrain": ("run.precision=fp32", "mamp.visible_rounding=official", "released_recipe=true"),
    "tune": (
        "run.precision=fp32", "weight_decay_scope=all", "optim.weight_decay=0.01", "optim.clip_mode=per-parameter",
        "select=test", "report_test_max=true", "monitor_feature=projection", "moco_extra_pointer_advance=32",
        "teacher_head_init=independent", "teacher_momentum_span=25040", "koleo_chunks=4",
        "sinkhorn_scope=process",
    ),
    "knn": ("precision=fp32",),
    "fewshot": ("precision=fp32",),
    "linear": ("precision=fp32", "report_test_max=true"),
    "finetune": ("precision=fp32", "report_test_max=true"),
    "semi": ("finetune.precision=fp32", "finetune.report_test_max=true", "sampling=released"),
    "transfer": ("finetune.precision=fp32", "linear.precision=fp32", "finetune.report_test_max=true",
                 "linear.report_test_max=true"),
}

_NAME_PATTERNS = (
    (re.compile(r"^NTU60_XSub", re.IGNORECASE), "ntu60-xsub"),
    (re.compile(r"^NTU60_XView", re.IGNORECASE), "ntu60-xview"),
    (re.compile(r"^NTU120_X(Sub|Set)", re.IGNORECASE), "ntu120"),
    (re.compile(r"^PKUv[12]_X(Sub|View)", re.IGNORECASE), "pku"),
)
SIZE_KEYS = ("mamp.decoder_depth",)


def detect_dataset(path: str | os.PathLike | None) -> str:
    """The recipe of a dataset file, from its official name (`NTU60_XSub.npz`, `NTU60_XView.npz`,
    `NTU120_XSub.npz` / `NTU120_XSet.npz`, `PKUv1_*.npz` / `PKUv2_*.npz`); "none" for any other file."""
    if not path:
        return "none"
    stem = Path(path).name
    for pattern, name in _NAME_PATTERNS:
        if pattern.match(stem):
            return name
    return "none"


def recipe_overrides(dataset: str, kind: str, method: str = "", size_preset: str = "paper",
                     released: bool = False) -> dict[str, Any]:
    """{dotted key: value} of `dataset`'s recipe for a `kind` run (pretrain, tune, or an eval protocol);
    `released` adds its `<kind>:released` / `<kind>:<method>:released` settings (the released code's)."""
    if dataset not in DATASET_RECIPES:
        raise ValueError(f"dataset_preset must be auto or one of {sorted(DATASET_RECIPES)}, got {dataset!r}")
    if kind == "tune" and method == "nnclr":
        return {}  # NNCLR from scratch (Table 5) trains every parameter; no released per-dataset config
    recipe = DATASET_RECIPES[dataset]
    items = dict(recipe.get(kind, {}))
    if method:
        items.update(recipe.get(f"{kind}:{method}", {}))
    if released:
        items.update(recipe.get(f"{kind}:released", {}))
        if method:
            items.update(recipe.get(f"{kind}:{method}:released", {}))
    if size_preset != "paper":
        items = {k: v for k, v in items.items() if k not in SIZE_KEYS}
    return items


def resolve_dataset_preset(requested: str, data: str | os.PathLike | None) -> str:
    """`auto` -> the recipe detected from the file name; any other value must name a recipe."""
    name = detect_dataset(data) if requested == "auto" else requested
    if name not in DATASET_RECIPES:
        raise ValueError(f"dataset_preset must be auto or one of {sorted(DATASET_RECIPES)}, got {requested!r}")
    return name


__all__ = ["DATASET_RECIPES", "PAPER_SWITCHES", "detect_dataset", "recipe_overrides", "resolve_dataset_preset"]
