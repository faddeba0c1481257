"""Semi-supervised evaluation (supplementary Table 1): finetune on 1 % / 10 % of the labelled training
split, test on the full test split, mean ± standard deviation over 5 runs.

Subsets (`sampling`):
* "balanced" (default): `stars.data.splits.semi_supervised_subset(labels, fraction, seed)` keeps
  max(1, round(fraction * n_c)) random samples of every class c; run r uses seed `seeds[r]` for its subset,
  its head initialisation and its data order, so the 5 runs differ, and every process of a distributed
  run draws the same subset.
* "released": the official feeder (reference §6.4, §8.2 item 6). Each of its `released_processes` GPU
  processes kept its own global, unbalanced int(N * ratio) subset (`splits.released_semi_subsets`), the
  same in all 5 runs; together they trained on the union of those subsets. Every run here trains on that
  union (epochs unchanged; the seeds still vary the head initialisation and data order) and records how
  many labelled samples it actually saw (`labelled`) beside the nominal int(N * ratio) (`labelled_nominal`).

Each run lives in `OUT/fraction_<f>/seed_<s>/` with its own metrics.json, checkpoints and the indices of
its labelled samples; a rerun skips completed runs (and continues interrupted ones with --resume).
The summary in `OUT/metrics.json` reports per fraction the mean, the sample standard deviation
(ddof = 1) and every run's top-1; `OUT/runs.csv` lists the runs.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch

from stars import dist
from stars.data.npz import load_split
from stars.data.splits import released_semi_subsets, semi_supervised_subset
from stars.eval.common import (
    ProtocolResult,
    load_encoder_for_eval,
    resolve_device,
    write_result,
)
from stars.eval.finetune import FINETUNE_PRESETS, FinetuneConfig, train_finetune


@dataclass(frozen=True)
class SemiConfig:
    """Semi-supervised protocol: `runs` finetunes per labelled fraction."""

    fractions: tuple[float, ...] = (0.01, 0.1)  # labelled fraction of every class
    runs: int = 5
    seeds: tuple[int, ...] = ()  # one seed per run; () = 0 .. runs - 1
    sampling: Literal["balanced", "released"] = "balanced"  # per-class subsets | the official per-process draw
    released_processes: int = 2  # sampling=released: GPU processes of the official runs (script_semi.sh: 2)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)  # its seed must stay 0: runs use `seeds`

    def __post_init__(self) -> None:
        if not self.fractions or any(not 0 < f <= 1 for f in self.fractions):
            raise ValueError(f"SemiConfig.fractions must be non-empty and in (0, 1], got {self.fractions}")
        if self.runs < 1:
            raise ValueError(f"SemiConfig.runs must be >= 1, got {self.runs}")
        if self.seeds and len(self.seeds) != self.runs:
            raise ValueError(f"SemiConfig.seeds lists {len(self.seeds)} seeds for runs = {self.runs}")
        if self.finetune.seed != 0:
            raise ValueError("SemiConfig: set the runs' seeds with `seeds`; finetune.seed is replaced per run")
        if self.sampling not in ("balanced", "released"):
            raise ValueError(f"SemiConfig.sampling must be balanced or released, got {self.sampling!r}")
        if self.released_processes < 1:
            raise ValueError(f"SemiConfig.released_processes must be >= 1, got {self.released_processes}")
        if len(set(self.run_seeds)) != len(self.run_seeds):
            raise ValueError(f"SemiConfig.seeds repeat: {self.seeds}")

    @property
    def run_seeds(self) -> tuple[int, ...]:
        return self.seeds or tuple(range(self.runs))


SEMI_PRESETS = {
    "paper": SemiConfig(),
    "small": SemiConfig(runs=3, finetune=dataclasses.replace(FINETUNE_PRESETS["small"], batch_size=8)),
    "tiny": SemiConfig(fractions=(0.25, 0.5), runs=2, finetune=dataclasses.replace(FINETUNE_PRESETS["tiny"], batch_size=8)),
}


def run_folder(out: str | Path, fraction: float, seed: int) -> Path:
    return Path(out) / f"fraction_{fraction:g}" / f"seed_{seed}"


def labelled_subset(labels: np.ndarray, fraction: float, seed: int, cfg: SemiConfig) -> tuple[np.ndarray, int]:
    """-> (sorted indices of the labelled samples a run trains on, the nominal count).

    balanced: the class-balanced subset of `seed` (nominal = its size). released: the union of the official
    per-process subsets (`seed` unused, as officially); nominal = int(N * fraction), one process's share.
    """
    if cfg.sampling == "released":
        subsets = released_semi_subsets(len(labels), fraction, cfg.released_processes)
        return np.unique(np.concatenate(subsets)), int(len(labels) * fraction)
    chosen = semi_supervised_subset(labels, fraction, seed)
    return chosen, len(chosen)


def summarise(runs: pd.DataFrame) -> dict[str, Any]:
    """runs: rows (fraction, seed, labelled, test_top1) -> per fraction mean, std (ddof=1) and values."""
    metrics: dict[str, Any] = {}
    for fraction, group in runs.groupby("fraction", sort=True):
        values = group["test_top1"].to_numpy(dtype=np.float64)
        key = f"fraction_{fraction:g}"
        metrics[f"{key}_mean"] = float(values.mean())
        metrics[f"{key}_std"] = float(values.std(ddof=1)) if len(values) > 1 else 0.0
        metrics[f"{key}_runs"] = [float(v) for v in values]
        metrics[f"{key}_labelled"] = [int(v) for v in group["labelled"]]
        if "labelled_nominal" in group:
            metrics[f"{key}_labelled_nominal"] = [int(v) for v in group["labelled_nominal"]]
    return metrics


def run_semi(
    ckpt: str | None,
    data: str,
    out: str | Path,
    cfg: SemiConfig = SemiConfig(),
    device: str | torch.device | None = None,
    preset: str | None = None,
    *,
    resume: bool = False,
) -> dict[str, Any]:
    """`stars eval semi`: every (fraction, seed) finetune run, then the summary in `out/metrics.json`."""
    out = Path(out)
    device = resolve_device(device)
    train, test = load_split(data, "train"), load_split(data, "test")
    rows = []
    for fraction in cfg.fractions:
        for seed in cfg.run_seeds:
            folder = run_folder(out, fraction, seed)
            labelled, nominal = labelled_subset(train.y, fraction, seed, cfg)
            if len(labelled) < cfg.finetune.batch_size:
                raise ValueError(
                    f"{data}: fraction {fraction:g} keeps {len(labelled)} labelled samples, fewer than one batch "
                    f"(finetune.batch_size = {cfg.finetune.batch_size}); lower it with --set finetune.batch_size=N"
                )
            if (folder / "metrics.json").exists():
                result = ProtocolResult.load(folder)
            else:
                run_cfg = dataclasses.replace(cfg.finetune, seed=seed)
                encoder, info = load_encoder_for_eval(ckpt, preset, device, drop_path=run_cfg.drop_path, seed=seed,
                                                      data=data)
                if dist.is_main_process():
                    folder.mkdir(parents=True, exist_ok=True)
                    np.save(folder / "labelled_indices.npy", labelled)
                metrics = train_finetune(encoder, train.subset(labelled), test, folder, run_cfg, device, resume=resume)
                if dist.is_main_process():
                    write_result(
                        folder, "semi-run", metrics, run_cfg, data, seed, device, encoder=info, fraction=fraction,
                        labelled=len(labelled), labelled_nominal=nominal, sampling=cfg.sampling,
                    )
                result = ProtocolResult("semi-run", metrics, folder)
            rows.append(
                {"fraction": fraction, "seed": seed, "labelled": len(labelled), "labelled_nominal": nominal,
                 "test_top1": float(result.metrics["test_top1"])}
            )
    runs = pd.DataFrame(rows)
    metrics = summarise(runs)
    if dist.is_main_process():
        out.mkdir(parents=True, exist_ok=True)
        runs.to_csv(out / "runs.csv", index=False)
        write_result(out, "semi", metrics, cfg, data, cfg.run_seeds[0], device, seeds=list(cfg.run_seeds),
                     sampling=cfg.sampling)
    return metrics


__all__ = ["SemiConfig", "SEMI_PRESETS", "run_folder", "labelled_subset", "summarise", "run_semi"]
